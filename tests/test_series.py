"""Area-average series reader (NASA Giovanni and ESA eodash CSV): real files from ``shared/data`` and
small hand-made variants for the bad-input paths."""

from __future__ import annotations

import pandas as pd
import pytest

from paths import SHARED_DATA
from rsmon.errors import FormatError, InputError
from rsmon.io.series import read_giovanni_series, series_windows

SWISS = SHARED_DATA / "aeronet-switzerland-giovanni"
TERRA_DT = SWISS / ("g4.areaAvgTimeSeries.MOD08_D3_6_1_Aerosol_Optical_Depth_Land_Ocean_Mean."
                    "20240801-20241130.7E_47N_8E_48N.csv")
OMAERUV = SWISS / "g4.areaAvgTimeSeries.OMAERUVd_003_FinalAerosolOpticalDepth500.20240801-20241130.7E_47N_8E_48N.csv"
WUHAN = SHARED_DATA / "giovanni-modis-aod-wuhan" / (
    "g4.areaAvgTimeSeries.MOD08_D3_6_1_AOD_550_Dark_Target_Deep_Blue_Combined_Mean.20020101-20181231.114E_30N_115E_31N.csv")
OMI_BEIJING = SHARED_DATA / "omi-no2-giovanni-china-cities" / "beijingNO2.csv"
EODASH = SHARED_DATA / "tropomi-no2-beijing-biweekly" / "N1_Beijing_TROPOMI_biweekly_2018-07_2020-06.csv"


def need(path):
    if not path.is_file():
        pytest.skip(f"sample data {path} not present")
    return path


def test_giovanni_modis_switzerland_header():
    df = read_giovanni_series(need(TERRA_DT))
    assert list(df.columns) == ["time", "value", "time_start", "time_end"]
    assert df.attrs["box"] == (7.0, 47.0, 8.0, 48.0)
    assert df.attrs["box_source"] == "header: User Bounding Box"
    assert df.attrs["data_box"] == (7.5, 47.5, 7.5, 47.5)
    assert df.attrs["variable"] == "MOD08_D3_6_1_Aerosol_Optical_Depth_Land_Ocean_Mean"
    assert df.attrs["units"] == "1" and "inferred" in df.attrs["units_source"]
    assert df.attrs["fill_value"] == -9999.0
    assert df.attrs["period"] == "1D" and df.attrs["stamp"] == "start"
    assert len(df) == 122  # 2024-08-01 .. 2024-11-30
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    first = df.iloc[0]
    assert first["time"] == pd.Timestamp("2024-08-01", tz="UTC")
    assert first["value"] == pytest.approx(0.374000018)
    assert pd.isna(df.loc[df["time"] == pd.Timestamp("2024-08-03", tz="UTC"), "value"]).all()  # -9999
    assert (df["time_end"] - df["time_start"] == pd.Timedelta("1D")).all()
    assert df["value"].min() > 0  # no fill value survives


def test_giovanni_fill_value_omi_large_negative():
    df = read_giovanni_series(need(OMAERUV))
    assert df.attrs["fill_value"] == pytest.approx(-1.267651e30)
    assert df["value"].notna().sum() == 25
    assert (df["value"].dropna() > 0).all()


def test_giovanni_wuhan_and_omi_city_boxes():
    wuhan = read_giovanni_series(need(WUHAN))
    assert wuhan.attrs["box"] == (114.0, 30.0, 115.0, 31.0)
    assert wuhan.attrs["variable"] == "MOD08_D3_6_1_AOD_550_Dark_Target_Deep_Blue_Combined_Mean"  # mean_ stripped
    omi = read_giovanni_series(need(OMI_BEIJING))
    assert omi.attrs["box"] == (115.4239, 39.4396, 117.5067, 41.0608)
    assert omi.attrs["data_box"] == (115.625, 39.625, 117.375, 40.875)
    assert omi.attrs["units"] == "molec cm-2"
    assert omi["value"].notna().sum() == 2754  # valid days, as SOURCE.txt counts them


@pytest.mark.parametrize("stamp, start, end", [
    ("start", "2018-07-09", "2018-07-23"),
    ("center", "2018-07-02", "2018-07-16"),
    ("end", "2018-06-25", "2018-07-09"),
])
def test_eodash_biweekly_window_conventions(stamp, start, end):
    df = read_giovanni_series(need(EODASH), stamp=stamp)
    first = df.iloc[0]
    assert first["time"] == pd.Timestamp("2018-07-09", tz="UTC")
    assert first["time_start"] == pd.Timestamp(start, tz="UTC")
    assert first["time_end"] == pd.Timestamp(end, tz="UTC")
    assert df.attrs["period"] == "14D" and df.attrs["stamp"] == stamp
    assert df.attrs["box"] == (116.15, 39.67, 116.61, 40.13)
    assert df.attrs["units"] == "umol m-2"
    assert first["value"] == pytest.approx(131.98361)
    assert first["median"] == pytest.approx(132.44658) and first["valid_percent"] == 100.0
    assert len(df) == 52


def test_eodash_default_stamp_is_end_and_noted():
    df = read_giovanni_series(need(EODASH))
    assert df.attrs["stamp"] == "end"
    assert any("stamp 'end' assumed" in note for note in df.attrs["notes"])


def test_series_windows_calendar_month():
    times = pd.Series(pd.to_datetime(["2019-01-01", "2019-02-01"], utc=True))
    start, end = series_windows(times, "1MS", "start")
    assert list(end) == list(pd.to_datetime(["2019-02-01", "2019-03-01"], utc=True))
    start, end = series_windows(times, "1MS", "end")
    assert list(start) == list(pd.to_datetime(["2018-12-01", "2019-01-01"], utc=True))


# ---------------------------------------------------------------------------------------------------
# header variants and bad input (hand-made copies of the real layout)
# ---------------------------------------------------------------------------------------------------

def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_box_from_file_name_only_when_header_lacks_it(tmp_path):
    lines = [ln for ln in _lines(need(TERRA_DT)) if not ln.startswith("User Bounding Box")]
    copy = tmp_path / TERRA_DT.name.replace("7E_47N_8E_48N", "7p5E_46N_8E_48N")
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    df = read_giovanni_series(copy)
    assert df.attrs["box"] == (7.5, 46.0, 8.0, 48.0)
    assert df.attrs["box_source"].startswith("file name")
    assert any("file name" in note for note in df.attrs["notes"])
    # the header wins over the file name when both are present
    lines = _lines(TERRA_DT)
    copy2 = tmp_path / TERRA_DT.name.replace("7E_47N_8E_48N", "1E_1N_2E_2N")
    copy2.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_giovanni_series(copy2).attrs["box"] == (7.0, 47.0, 8.0, 48.0)


def test_no_box_anywhere_is_format_error(tmp_path):
    lines = [ln for ln in _lines(need(TERRA_DT)) if "Bounding Box" not in ln]
    copy = tmp_path / "series.csv"
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"series\.csv.*bounding box"):
        read_giovanni_series(copy)


def test_missing_value_column_is_format_error(tmp_path):
    lines = _lines(need(TERRA_DT))
    n = next(i for i, ln in enumerate(lines) if ln.startswith("time"))
    bad = lines[:n] + ["time"] + [ln.split(",")[0] for ln in lines[n + 1:n + 4]]
    path = tmp_path / "nocol.csv"
    path.write_text("\n".join(bad) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"nocol\.csv.*value column"):
        read_giovanni_series(path)


def test_unparseable_header_box_is_format_error(tmp_path):
    text = need(TERRA_DT).read_text(encoding="utf-8").replace('User Bounding Box:,"7,47,8,48"',
                                                              'User Bounding Box:,"7,47,8"')
    path = tmp_path / "badbox.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=r"badbox\.csv.*User Bounding Box"):
        read_giovanni_series(path)


def test_bad_value_and_time_name_the_column(tmp_path):
    lines = _lines(need(TERRA_DT))
    n = next(i for i, ln in enumerate(lines) if ln.startswith("time"))
    path = tmp_path / "badvalue.csv"
    path.write_text("\n".join(lines[:n + 1] + ["2024-08-01,abc"]) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"badvalue\.csv.*MOD08_D3_6_1_Aerosol_Optical_Depth_Land_Ocean_Mean"):
        read_giovanni_series(path)
    path = tmp_path / "badtime.csv"
    path.write_text("\n".join(lines[:n + 1] + ["not-a-day,0.3"]) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"badtime\.csv.*'time'"):
        read_giovanni_series(path)


def test_missing_file_and_bad_stamp(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        read_giovanni_series(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="stamp"):
        read_giovanni_series(need(TERRA_DT), stamp="middle")
