"""Ground-station readers (rsmon.io.stations) on the real files of shared/data, plus written fixtures.

Every reader must return the Station table of rsmon.validate exactly; conventions (hour-ending
Beijing time, AERONET daily intervals, reference state) are checked against the data themselves:
the CNEMC/PRSA cross-check below fails if either reader's hour convention is off by one hour.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from paths import SHARED_DATA as DATA  # noqa: E402

from rsmon.errors import FormatError, InputError, NoDataError, UnsupportedFormatError  # noqa: E402
from rsmon.io import stations as st  # noqa: E402
from rsmon.io.stations import STATION_COLUMNS, Constant  # noqa: E402

SITES_DIR = DATA / "cnemc-stations"
SITELIST = SITES_DIR / "NewSiteList.csv"
HOURLY_1410A = SITES_DIR / "PM2.5NO2SO2O3CO_1410A.csv"
DAILY_DIR = DATA / "cnemc-sites-daily"
DAILY_20170101 = DAILY_DIR / "china_sites_20170101.csv"
DAILY_20190112 = DAILY_DIR / "china_sites_20190112.csv"
DAILY_20190612 = DAILY_DIR / "china_sites_20190612.csv"
WIDE_DIR = DATA / "cnemc-no2-2019-beijing-wuhan"
WIDE_BEIJING = WIDE_DIR / "cnemc_beijing_1001A-1012A_NO2_hourly_2019.csv"
PRSA_DIR = DATA / "prsa-beijing"
PRSA_WSXG = PRSA_DIR / "PRSA_Data_Wanshouxigong_20130301-20170228.csv"
PRSA_DONGSI = PRSA_DIR / "PRSA_Data_Dongsi_20130301-20170228.csv"
AERONET_CH = DATA / "aeronet-switzerland-giovanni"
LAEGEREN_AUG = AERONET_CH / "20240801_20240831_Laegeren.txt"
PAYERNE_SEP = AERONET_CH / "20240901_20240930_Payerne.lev15"
TURLOCK = DATA / "aeronet-turlock" / "20230101_20241231_Turlock_CA_USA.lev15"
TAIHU = DATA / "aeronet-taihu-inversion" / "19930101_20190209_Taihu.all"
FIRMS_GLOBAL = DATA / "firms-modis-global-24h" / "MODIS_C6_1_Global_24h.csv"
FIRMS_DE_MODIS = DATA / "firms-germany-2023" / "modis_2023_Germany.csv"
FIRMS_DE_VIIRS = DATA / "firms-germany-2023" / "viirs-snpp_2023_Germany.csv"


def needs(*paths: Path):
    folders = sorted({str(p if p.suffix == "" else p.parent) for p in paths})
    missing = [f for f in folders if not Path(f).is_dir()]
    return pytest.mark.skipif(bool(missing), reason=f"sample folder(s) absent: {', '.join(missing)}")


def assert_station_table(df: pd.DataFrame) -> None:
    """The rsmon.validate Station-table contract, exactly."""
    assert tuple(df.columns) == STATION_COLUMNS
    for c in ("time_start", "time_end"):
        assert str(df[c].dtype) == "datetime64[ns, UTC]", (c, df[c].dtype)
    for c in ("lon", "lat", "value"):
        assert df[c].dtype == np.float64, (c, df[c].dtype)
    for c in ("station_id", "station_name", "variable", "units", "source"):
        assert pd.api.types.is_string_dtype(df[c]), (c, df[c].dtype)
        assert df[c].notna().all()
    assert df["value"].notna().all()
    assert (df["time_start"] <= df["time_end"]).all()
    assert len(df) > 0


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# --------------------------------------------------------------------------------------------------
# Shared (module-scoped) real reads, so each big file is parsed once
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sitelist():
    if not SITELIST.is_file():
        pytest.skip(f"{SITELIST} is absent")
    return st.read_cnemc_sitelist(SITELIST)


@pytest.fixture(scope="module")
def series_1410a():
    if not HOURLY_1410A.is_file():
        pytest.skip(f"{HOURLY_1410A} is absent")
    return st.read_cnemc_station_hourly(HOURLY_1410A)


@pytest.fixture(scope="module")
def prsa_both():
    if not PRSA_DIR.is_dir():
        pytest.skip(f"{PRSA_DIR} is absent")
    return pd.concat([st.read_prsa_beijing(PRSA_WSXG), st.read_prsa_beijing(PRSA_DONGSI)], ignore_index=True)


# --------------------------------------------------------------------------------------------------
# CNEMC site list
# --------------------------------------------------------------------------------------------------

@needs(SITELIST)
def test_sitelist_gb18030(sitelist):
    s = sitelist
    assert s.attrs["encoding"] == "gb18030"
    assert list(s.columns) == ["station_id", "station_name", "city", "lon", "lat", "is_control", "province",
                               "prefecture"]
    assert len(s) == 2026 and s["station_id"].is_unique
    row = s.set_index("station_id").loc["1001A"]
    assert row["station_name"] == "万寿西宫" and row["city"] == "北京"
    assert row["lon"] == pytest.approx(116.3621) and row["lat"] == pytest.approx(39.8784)
    assert not row["is_control"] and s.set_index("station_id").loc["1002A", "is_control"]
    assert s["is_control"].sum() == 250
    assert s.set_index("station_id").loc["1045A", ["lon", "lat"]].isna().all()  # a site without coordinates


@needs(SITELIST)
def test_sitelist_utf8_copy_reads_the_same(tmp_path, sitelist):
    copy = tmp_path / "NewSiteList.csv"
    copy.write_bytes(SITELIST.read_bytes().decode("gb18030").encode("utf-8-sig"))
    again = st.read_cnemc_sitelist(copy)
    assert again.attrs["encoding"] == "utf-8-sig"
    pd.testing.assert_frame_equal(again, sitelist, check_like=False)


@needs(SITELIST)
def test_sitelist_utf16_is_a_format_error_naming_file_and_encodings(tmp_path):
    bad = tmp_path / "NewSiteList_utf16.csv"
    bad.write_bytes(SITELIST.read_bytes().decode("gb18030").encode("utf-16"))
    with pytest.raises(FormatError) as exc:
        st.read_cnemc_sitelist(bad)
    msg = str(exc.value)
    assert bad.name in msg and "utf-8-sig" in msg and "gb18030" in msg


# --------------------------------------------------------------------------------------------------
# CNEMC national daily files
# --------------------------------------------------------------------------------------------------

@needs(DAILY_20170101, SITELIST)
def test_national_daily_values_times_and_sites(sitelist):
    df = st.read_cnemc_national_daily(DAILY_20170101, sites=sitelist, station_ids=["1001A", "1003A", "1325A"])
    assert_station_table(df)
    assert set(df["variable"]) == {"aqi", "pm25", "pm10", "so2", "no2", "o3", "co"}  # hourly types only
    assert df.attrs["reference_state"] == "273K"
    units = df.groupby("variable")["units"].first()
    assert units["co"] == "mg m-3" and units["no2"] == "ug m-3" and units["aqi"] == "1"
    # SOURCE.txt: 10h 1001A PM2.5 430 / NO2 134. Hour-ending 10:00 Beijing = [01:00, 02:00) UTC.
    at10 = df[(df.station_id == "1001A") & (df.time_end == utc("2017-01-01T02:00"))].set_index("variable")
    assert at10.loc["pm25", "value"] == 430 and at10.loc["no2", "value"] == 134
    assert at10.loc["pm25", "time_start"] == utc("2017-01-01T01:00")
    # hour 0 of 2017-01-01 covers 23:00-24:00 Beijing on 31 December
    first = df[df.station_id == "1001A"]["time_start"].min()
    assert first == utc("2016-12-31T15:00")
    # the file lacks hours 13, 14, 17, 20, 23: 19 hourly intervals per station and variable
    assert df[(df.station_id == "1001A") & (df.variable == "no2")]["time_end"].nunique() == 19
    r = df[df.station_id == "1001A"].iloc[0]
    assert r["station_name"] == "万寿西宫" and r["lon"] == pytest.approx(116.3621)


@needs(DAILY_20170101)
def test_national_daily_rolling_variants_on_request():
    df = st.read_cnemc_national_daily(DAILY_20170101, variables=["PM2.5_24h", "o3_8h", "NO2"],
                                      station_ids="1001A")
    assert set(df["variable"]) == {"pm25_24h", "o3_8h", "no2"}
    span = (df["time_end"] - df["time_start"]).groupby(df["variable"]).first()
    assert span["pm25_24h"] == pd.Timedelta(hours=24) and span["o3_8h"] == pd.Timedelta(hours=8)
    assert span["no2"] == pd.Timedelta(hours=1)
    assert df["lon"].isna().all() and (df["station_name"] == "").all()  # no site list given
    with pytest.raises(InputError, match="PM1"):
        st.read_cnemc_national_daily(DAILY_20170101, variables=["PM1"], station_ids="1001A")
    with pytest.raises(FormatError, match="9999A"):
        st.read_cnemc_national_daily(DAILY_20170101, station_ids=["9999A"])


# --------------------------------------------------------------------------------------------------
# One station's long series and the wide extracts: same labels as the national files
# --------------------------------------------------------------------------------------------------

@needs(HOURLY_1410A, DAILY_20170101, DAILY_20190612)
def test_station_hourly_labels_equal_the_national_files(series_1410a):
    """Evidence for the 1410A datetime convention: value-for-value equal to the national files."""
    s = series_1410a
    assert_station_table(s)
    assert s.attrs["reference_state"] == "as_reported"  # 2014-2023 spans the 2018-09-01 change
    assert s["time_end"].min() == utc("2014-05-12T16:00")  # label 2014-05-13 00:00 Beijing
    key = ["station_id", "variable", "time_start", "time_end"]
    for path in (DAILY_20170101, DAILY_20190612):
        n = st.read_cnemc_national_daily(path, station_ids=["1410A"], variables=["pm25", "o3", "no2", "co", "so2"])
        for shift_h, expect_all in ((0, True), (1, False), (-1, False)):
            q = s.assign(time_start=s.time_start + pd.Timedelta(hours=shift_h),
                         time_end=s.time_end + pd.Timedelta(hours=shift_h))
            m = n.merge(q[key + ["value"]], on=key, suffixes=("_nat", "_series"))
            agree = (m["value_nat"] == m["value_series"]).mean()
            if expect_all:
                assert len(m) == len(n) and agree == 1.0
            else:
                assert agree < 0.5


@needs(WIDE_BEIJING, DAILY_20190112, SITELIST)
def test_wide_extract_equals_the_national_file(sitelist):
    w = st.read_cnemc_wide_hourly(WIDE_BEIJING, sites=sitelist)
    assert_station_table(w)
    assert set(w["variable"]) == {"no2"} and set(w["units"]) == {"ug m-3"}
    assert w.attrs["reference_state"] == "298K"
    assert sorted(w["station_id"].unique())[0] == "1001A" and w["lat"].notna().all()
    codes = [f"{i:04d}A" for i in range(1001, 1013)]
    n = st.read_cnemc_national_daily(DAILY_20190112, variables="NO2", station_ids=codes)
    key = ["station_id", "variable", "time_start", "time_end"]
    m = n.merge(w[key + ["value"]], on=key)
    assert len(m) == len(n) > 200 and (m["value_x"] == m["value_y"]).all()
    with pytest.raises(InputError, match="variable"):
        st.read_cnemc_wide_hourly(WIDE_BEIJING, variable="benzene")


# --------------------------------------------------------------------------------------------------
# PRSA and the required cross-check
# --------------------------------------------------------------------------------------------------

@needs(PRSA_WSXG, SITELIST)
def test_prsa_reader(prsa_both, sitelist):
    p = prsa_both
    assert_station_table(p)
    assert set(p["station_id"]) == {"1001A", "1003A"}
    assert set(p["variable"]) == {"pm25", "pm10", "so2", "no2", "co", "o3"}
    assert p.attrs["reference_state"] == "273K"
    co = p[(p.station_id == "1001A") & (p.variable == "co") & (p.time_end == utc("2016-12-31T16:00"))]
    assert co["value"].item() == pytest.approx(5.2) and co["units"].item() == "mg m-3"  # 5200 ug m-3 in PRSA
    named = st.read_prsa_beijing(PRSA_DONGSI, sites=sitelist)
    assert named["station_name"].iloc[0] == "东四" and named["lon"].iloc[0] == pytest.approx(116.4174)
    assert (p[p.station_id == "1003A"]["station_name"] == "Dongsi").all()


@needs(DAILY_20170101, PRSA_WSXG)
def test_cross_check_cnemc_prsa(prsa_both):
    """CNEMC 2017-01-01 vs PRSA for 1001A (Wanshouxigong) and 1003A (Dongsi), NO2 and PM2.5.

    Both readers map their hour labels to UTC intervals by their own rules; the values must then
    agree at the same intervals. A one-hour error in either convention drops the agreement to ~5 %.
    """
    n = st.read_cnemc_national_daily(DAILY_20170101, variables=["no2", "pm25"], station_ids=["1001A", "1003A"])
    p = prsa_both[prsa_both["variable"].isin(["no2", "pm25"])]
    key = ["station_id", "variable", "time_start", "time_end"]
    results = {}
    for shift_h in (0, -1, 1):
        q = p.assign(time_start=p.time_start + pd.Timedelta(hours=shift_h),
                     time_end=p.time_end + pd.Timedelta(hours=shift_h))
        m = n.merge(q[key + ["value"]], on=key, suffixes=("_cnemc", "_prsa"))
        diff = (m["value_cnemc"] - m["value_prsa"]).abs()
        results[shift_h] = (len(n), len(m), int((diff == 0).sum()), float(diff.max()))
    print("\nCNEMC vs PRSA 2017-01-01 (n_cnemc, n_matched, n_exact, max_abs_diff) by PRSA shift:", results)
    n_cnemc, n_matched, n_exact, max_diff = results[0]
    assert n_cnemc == 76  # 19 hours present x 2 stations x 2 variables
    assert n_matched == n_cnemc and n_exact == n_cnemc and max_diff == 0.0
    for shift_h in (-1, 1):
        assert results[shift_h][2] / results[shift_h][1] < 0.25, "a one-hour shift must break the agreement"


# --------------------------------------------------------------------------------------------------
# Reference state and unit conversions
# --------------------------------------------------------------------------------------------------

@needs(HOURLY_1410A)
def test_harmonise_reference_state_on_the_1410a_series(series_1410a):
    s = series_1410a
    to298 = st.harmonise_reference_state(s, to="298K")
    assert to298.attrs["reference_state"] == "298K" and s.attrs["reference_state"] == "as_reported"
    before = s["time_end"] <= st.REFERENCE_STATE_CHANGE
    gas = s["variable"].isin(["no2", "so2", "o3", "co"])
    ratio = to298["value"] / s["value"]
    nz = s["value"] != 0
    assert np.allclose(ratio[before & gas & nz], 273.15 / 298.15)
    assert (to298.loc[~before | ~gas, "value"] == s.loc[~before | ~gas, "value"]).all()  # PM and post-change untouched
    assert (to298.loc[s.variable == "pm25", "value"] == s.loc[s.variable == "pm25", "value"]).all()
    to273 = st.harmonise_reference_state(s, to="273K")
    assert np.allclose((to273["value"] / s["value"])[~before & gas & nz], 298.15 / 273.15)
    assert (to273.loc[before, "value"] == s.loc[before, "value"]).all()
    back = st.harmonise_reference_state(to298, to="273K")  # uniform 298K -> every gas row converts
    assert np.allclose(back.loc[gas, "value"], to273.loc[gas, "value"])
    # the hour ending 2018-09-01 00:00 Beijing is still in the old state, the next one in the new
    edge = s[(s.variable == "no2") & s.time_end.isin([utc("2018-08-31T16:00"), utc("2018-08-31T17:00")])]
    got = to298.loc[edge.index, "value"] / edge["value"]
    assert got.iloc[0] == pytest.approx(273.15 / 298.15) and got.iloc[1] == 1.0
    with pytest.raises(InputError, match="to"):
        st.harmonise_reference_state(s, to="300K")


def test_no2_conversions():
    assert st.molar_volume_l_mol(298.15) == pytest.approx(24.465, abs=1e-3)
    assert st.molar_volume_l_mol(273.15) == pytest.approx(22.414, abs=1e-3)
    assert st.no2_ugm3_to_ppb(100.0, "298K") == pytest.approx(100 * 24.45 / 46.01, rel=1e-3)
    assert st.no2_ugm3_to_ppb(100.0, "273K") == pytest.approx(100 * 22.41 / 46.01, rel=1e-3)
    x = np.array([0.0, 12.5, 80.0])
    for state in ("298K", "273K"):
        assert np.allclose(st.no2_ppb_to_ugm3(st.no2_ugm3_to_ppb(x, state), state), x)
    series = pd.Series([10.0, 20.0], index=[5, 6])
    assert list(st.no2_ugm3_to_ppb(series).index) == [5, 6]
    with pytest.raises(InputError, match="reference_state"):
        st.no2_ugm3_to_ppb(1.0, "310K")


# --------------------------------------------------------------------------------------------------
# AERONET
# --------------------------------------------------------------------------------------------------

@needs(AERONET_CH)
def test_aeronet_daily_averages():
    df = st.read_aeronet(LAEGEREN_AUG)
    assert_station_table(df)
    assert df.attrs["averaging"] == "daily" and df.attrs["aeronet_level"] == "1.5"
    assert df.attrs["elevation_m"] == {"Laegeren": 763.0}
    assert set(df["station_id"]) == {"Laegeren"} and set(df["units"]) == {"1"}
    assert {"aod_500", "aod_440", "aod_870", "angstrom_440_870", "aod_550"} <= set(df["variable"])
    assert not any(v.startswith("aod_empty") or v in ("aod_865", "aod_551") for v in df["variable"])  # -999 only
    day = df[df.time_start == utc("2024-08-12")].set_index("variable")["value"]
    assert day["aod_500"] == pytest.approx(0.194909)  # SOURCE.txt: 2024-08-12 0.195
    assert day["aod_550"] == pytest.approx(0.194909 * (550 / 500) ** -1.791963)
    r = df.iloc[0]
    assert r["time_end"] - r["time_start"] == pd.Timedelta(days=1) and r["time_start"].hour == 0
    assert r["lat"] == pytest.approx(47.478349) and r["lon"] == pytest.approx(8.364352)
    pay = st.read_aeronet(PAYERNE_SEP)  # Latin-1 byte in the PI name
    assert set(pay["station_id"]) == {"Payerne"}


@needs(TURLOCK)
def test_aeronet_turlock():
    df = st.read_aeronet(TURLOCK)
    assert_station_table(df)
    assert set(df["station_id"]) == {"Turlock_CA_USA"} and df.attrs["averaging"] == "daily"
    assert df["lon"].iloc[0] == pytest.approx(-120.85586)


AP_COLUMNS = ["Date(dd:mm:yyyy)", "Time(hh:mm:ss)", "Day_of_Year", "Day_of_Year(Fraction)", "AOD_1640nm", "AOD_1020nm",
              "AOD_870nm", "AOD_675nm", "AOD_500nm", "AOD_440nm", "AOD_380nm", "AOD_Empty", "AOD_Empty",
              "440-870_Angstrom_Exponent", "Data_Quality_Level", "AERONET_Instrument_Number", "AERONET_Site_Name",
              "Site_Latitude(Degrees)", "Site_Longitude(Degrees)", "Site_Elevation(m)"]


def _all_points_rows(site: str) -> list[list[str]]:
    # row 2 has no 500 nm: aod_550 must come from 440 nm with the same exponent
    return [
        ["06:05:2023", "16:09:58", "126", "126.673588", "0.013", "0.021", "0.025", "0.030", "0.0400", "0.0450",
         "0.050", "-999.", "-999.", "1.200000", "lev15", "1410", site, "37.523870", "-120.855860", "40.000000"],
        ["06:05:2023", "17:10:00", "126", "126.715278", "0.014", "0.022", "0.026", "0.031", "-999.000000", "0.0500",
         "0.052", "-999.", "-999.", "1.100000", "lev15", "1410", site, "37.523870", "-120.855860", "40.000000"],
    ]


def write_all_points(path: Path, web: bool = False) -> Path:
    """AERONET V3 all-points direct-sun layouts: the classic .lev15 (6 header lines, 'All Points'
    averaging line) and the web-service download (an extra first line, site in the first column)."""
    site = "Turlock_CA_USA"
    if web:
        pre = ["AERONET Data Download (Version 3 Direct Sun)", "AERONET Version 3", "Version 3: AOD Level 1.5",
               "The following data are cloud cleared and quality controls have been applied ...",
               "Contact: Please visit https://aeronet.gsfc.nasa.gov/new_web/data_usage.html"]
        cols = ["AERONET_Site"] + AP_COLUMNS
        rows = [[site] + r for r in _all_points_rows(site)]
    else:
        pre = ["AERONET Version 3;", site, "Version 3: AOD Level 1.5",
               "The following data are cloud cleared and quality controls have been applied ...",
               "Contact: PI=Wing_To; PI Email=wto@csustan.edu",
               "All Points,UNITS can be found at,,, https://aeronet.gsfc.nasa.gov/new_web/units.html"]
        cols, rows = AP_COLUMNS, _all_points_rows(site)
    path.write_text("\n".join(pre + [",".join(cols)] + [",".join(r) for r in rows]) + "\n", encoding="latin-1")
    return path


@pytest.mark.parametrize("web", [False, True], ids=["lev15", "web-txt"])
def test_aeronet_all_points(tmp_path, web):
    f = write_all_points(tmp_path / ("download.txt" if web else "20230506_20230506_Turlock_CA_USA.lev15"), web)
    df = st.read_aeronet(f)
    assert_station_table(df)
    assert df.attrs["averaging"] == "all points"
    assert (df["time_start"] == df["time_end"]).all()
    a550 = df[df.variable == "aod_550"].set_index("time_start")["value"]
    assert a550[utc("2023-05-06T16:09:58")] == pytest.approx(0.04 * 1.1 ** -1.2)
    assert a550[utc("2023-05-06T17:10:00")] == pytest.approx(0.05 * (550 / 440) ** -1.1)  # 440 nm fallback
    assert "aod_500" in set(df.variable) and len(df[df.variable == "aod_500"]) == 1
    assert set(df.station_id) == {"Turlock_CA_USA"}


def test_aeronet_daily_without_marker_line(tmp_path):
    """A daily download with no 'Daily Averages' line, no N[] columns and Time 00:00:00 on every row."""
    f = tmp_path / "daily.txt"
    cols = ["AERONET_Site", "Date(dd:mm:yyyy)", "Time(hh:mm:ss)", "Day_of_Year", "AOD_500nm", "AOD_440nm",
            "440-870_Angstrom_Exponent"]
    rows = ["Malaga,01:07:2024,00:00:00,183,0.412,0.45,0.21", "Malaga,02:07:2024,00:00:00,184,-999.,-999.,-999."]
    f.write_text("\n".join(["AERONET Version 3;", "Malaga", "Version 3: AOD Level 1.5", "...", "Contact: PI=x",
                            ",".join(cols), *rows]) + "\n")
    df = st.read_aeronet(f)
    assert df.attrs["averaging"] == "daily" and set(df["time_start"]) == {utc("2024-07-01")}
    assert set(df["time_end"]) == {utc("2024-07-02")} and set(df["station_id"]) == {"Malaga"}


@needs(TAIHU)
def test_aeronet_inversion_taihu():
    df = st.read_aeronet_inversion(TAIHU)
    assert_station_table(df)
    counts = df["variable"].value_counts()
    assert counts["aod_440"] == 1733 and counts["aod_550"] == 1733 and counts["angstrom_440_870"] == 1733
    assert df.attrs["aeronet_level"] == "2.0" and df.attrs["elevation_m"] == {"Taihu": 20.0}
    first = df[df.time_start == df.time_start.min()].set_index("variable")["value"]
    assert df.time_start.min() == utc("2005-09-06T22:51:02")
    assert first["aod_440"] == pytest.approx(0.558970) and first["angstrom_440_870"] == pytest.approx(1.410480)
    assert first["aod_550"] == pytest.approx(0.558970 * (550 / 440) ** -1.410480)
    assert df["lat"].iloc[0] == pytest.approx(31.421) and df["lon"].iloc[0] == pytest.approx(120.215333)
    with pytest.raises(FormatError, match="read_aeronet_inversion"):
        st.read_aeronet(TAIHU)


# --------------------------------------------------------------------------------------------------
# TCCON (fixture written from the published format: TCCON/py_tccon_netcdf write_public_nc and the
# ncdump of a GGG2020 public file in the CaltechDATA README; see rsmon.io.stations_tccon)
# --------------------------------------------------------------------------------------------------

def write_tccon(path: Path, *, private: bool = True, ggg2014: bool = False) -> Path:
    import netCDF4

    t0 = pd.Timestamp("2020-07-01T10:00:00Z")
    n = 6
    seconds = np.array([(t0 - pd.Timestamp("1970-01-01T00:00Z")).total_seconds() + 90.0 * i for i in range(n)])
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
        nc.createDimension("time", n)
        v = nc.createVariable("time", "f8", ("time",))
        v.setncatts({"standard_name": "time", "long_name": "time", "description": "UTC time",
                     "units": "seconds since 1970-01-01 00:00:00", "calendar": "gregorian"})
        v[:] = seconds
        for name, units, value in (("lat", "degrees_north", 28.309), ("long", "degrees_east", -16.499),
                                   ("zobs", "km", 2.37)):
            v = nc.createVariable(name, "f4", ("time",))
            v.units = units
            v[:] = np.full(n, value)
        gas = "xch4_ppm" if ggg2014 else "xch4"
        scale = 1e-3 if ggg2014 else 1.0
        v = nc.createVariable(gas, "f4", ("time",), fill_value=np.float32(9.96921e36))
        v.units = "ppm" if ggg2014 else "ppb"
        v.standard_name = "dry_atmospheric_column_average_mole_fraction_of_methane"
        xch4 = np.ma.masked_array([1880.0, 1881.5, 1879.0, 1900.0, 1882.0, 1883.0],
                                  mask=[False, False, False, False, False, True])
        v[:] = xch4 * scale
        v = nc.createVariable(f"{gas}_error", "f4", ("time",))
        v.units = "ppm" if ggg2014 else "ppb"
        v[:] = np.full(n, 2.5) * scale
        if private:
            v = nc.createVariable("flag", "i2", ("time",))
            v[:] = np.array([0, 0, 0, 23, 0, 0])  # spectrum 4 flagged
        nc.setncatts({"long_name": "izana01", "location": "Izana, Tenerife, Spain",
                      "data_doi": "10.14291/tccon.ggg2020.izana01.R1", "file_format_version": "2020.C"})
    return path


def test_tccon_private_file_keeps_flag_zero(tmp_path):
    f = write_tccon(tmp_path / "iz20200701_20200701.private.nc")
    df = st.read_tccon(f)
    assert_station_table(df)
    x = df[df.variable == "xch4"]
    assert len(x) == 4  # 6 spectra - 1 flagged - 1 fill
    assert 1900.0 not in set(x["value"]) and set(x["units"]) == {"ppb"}
    assert (x["time_start"] == x["time_end"]).all() and x["time_start"].min() == utc("2020-07-01T10:00")
    assert x["station_id"].iloc[0] == "iz" and x["station_name"].iloc[0] == "izana01"
    assert x["lat"].iloc[0] == pytest.approx(28.309) and x["lon"].iloc[0] == pytest.approx(-16.499)
    assert set(df.variable) == {"xch4", "xch4_error"}
    assert df.attrs["flag_filter"] == "flag == 0" and df.attrs["altitude_km"]["iz"] == pytest.approx(2.37)
    assert len(st.read_tccon(f, flag_zero_only=False).query("variable == 'xch4'")) == 5


def test_tccon_public_and_ggg2014(tmp_path):
    pub = st.read_tccon(write_tccon(tmp_path / "iz20200701_20200701.public.qc.nc", private=False))
    assert len(pub[pub.variable == "xch4"]) == 5 and "public file" in pub.attrs["flag_filter"]
    old = st.read_tccon(write_tccon(tmp_path / "iz20200701_20200701.public.nc", private=False, ggg2014=True))
    assert old[old.variable == "xch4"]["value"].iloc[0] == pytest.approx(1880.0, rel=1e-6)  # ppm -> ppb
    assert set(old["units"]) == {"ppb"}
    with pytest.raises(FormatError, match="'xco2'"):
        st.read_tccon(tmp_path / "iz20200701_20200701.public.qc.nc", variables="xco2")
    not_nc = tmp_path / "iz20200701_20200701.public.qc2.nc"
    not_nc.write_text("hello")
    with pytest.raises(FormatError, match="not a netCDF"):
        st.read_tccon(not_nc)


# --------------------------------------------------------------------------------------------------
# FIRMS
# --------------------------------------------------------------------------------------------------

@needs(FIRMS_GLOBAL)
def test_firms_modis_global_24h():
    df = st.read_firms(FIRMS_GLOBAL)
    assert len(df) == 19416
    assert list(df.columns[:10]) == ["latitude", "longitude", "time", "satellite", "instrument", "confidence",
                                     "confidence_class", "frp", "daynight", "type"]
    assert str(df["time"].dtype) == "datetime64[ns, UTC]" and df["time"].iloc[0] == utc("2022-02-26T00:20")
    assert set(df["instrument"]) == {"MODIS"} and set(df["satellite"]) == {"T", "A"}
    assert df["type"].dtype == "Int64" and df["type"].isna().all()  # NRT: no type column
    c = df["confidence"]
    expected = np.where(c >= 80, "high", np.where(c >= 30, "nominal", "low"))
    assert (df["confidence_class"].astype(str).to_numpy() == expected).all()
    assert df["time"].dt.date.astype(str).value_counts().to_dict() == {"2022-02-27": 10328, "2022-02-26": 9088}


@needs(FIRMS_DE_VIIRS)
def test_firms_germany_viirs_and_modis():
    v = st.read_firms(FIRMS_DE_VIIRS)
    assert len(v) == 16480 and set(v["instrument"]) == {"VIIRS"} and "bright_ti4" in v and "brightness" not in v
    assert v["type"].value_counts().to_dict() == {2: 10912, 0: 5246, 3: 322}
    assert set(v["confidence"]) <= {"l", "n", "h"}
    assert (v["confidence_class"].astype(str) == v["confidence"].map({"l": "low", "n": "nominal", "h": "high"})).all()
    assert (v["confidence_class"] >= "nominal").sum() == (v["confidence"] != "l").sum()  # ordered categorical
    m = st.read_firms(FIRMS_DE_MODIS)
    assert len(m) == 2513 and set(m["instrument"]) == {"MODIS"} and m["type"].notna().all()
    assert m["confidence"].dtype == np.int64


# --------------------------------------------------------------------------------------------------
# Generic mapped CSV
# --------------------------------------------------------------------------------------------------

@needs(WIDE_BEIJING)
def test_read_csv_mapped_reproduces_the_cnemc_reader(tmp_path):
    wide = pd.read_csv(WIDE_BEIJING, nrows=48)
    long = wide.melt(id_vars=["date", "hour"], var_name="site", value_name="no2_ugm3")
    f = tmp_path / "long.csv"
    long.to_csv(f, index=False)
    got = st.read_csv_mapped(f, {"station_id": "site", "time": ["date", "hour"], "value": "no2_ugm3",
                                 "variable": Constant("no2"), "lon": 116.4, "lat": 39.9},
                             time_format="%Y%m%d %H", tz="Asia/Shanghai", hour_ending=True, units="ug m-3")
    assert_station_table(got)
    ref = st.read_cnemc_wide_hourly(WIDE_BEIJING)
    key = ["station_id", "variable", "time_start", "time_end"]
    m = got.merge(ref[key + ["value"]], on=key)
    assert len(m) == len(got) and (m["value_x"] == m["value_y"]).all()
    assert (got["lon"] == 116.4).all()
    with pytest.raises(FormatError) as exc:
        st.read_csv_mapped(f, {"station_id": "station", "time": "date", "value": "no2_ugm3",
                               "variable": Constant("no2")}, units="ug m-3")
    assert "'station'" in str(exc.value) and f.name in str(exc.value)
    with pytest.raises(InputError, match="units"):
        st.read_csv_mapped(f, {"station_id": "site", "time": "date", "value": "no2_ugm3", "variable": Constant("no2")})
    with pytest.raises(InputError, match="colour"):
        st.read_csv_mapped(f, {"colour": "x", "station_id": "site", "time": "date", "value": "no2_ugm3",
                               "variable": Constant("no2")}, units="1")


def test_read_csv_mapped_instantaneous_utc(tmp_path):
    f = tmp_path / "obs.csv"
    f.write_text("id,t,v,var\nA,2020-01-01T10:00:00Z,1.5,pm25\nB,2020-01-01T11:00:00Z,,pm25\n")
    df = st.read_csv_mapped(f, {"station_id": "id", "time": "t", "value": "v", "variable": "var"},
                            units={"pm25": "ug m-3"})
    assert len(df) == 1 and df["time_start"].iloc[0] == df["time_end"].iloc[0] == utc("2020-01-01T10:00")
    assert df["lon"].isna().all()


# --------------------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------------------

@needs(SITELIST, DAILY_20170101, WIDE_BEIJING, PRSA_WSXG, AERONET_CH, TAIHU, FIRMS_GLOBAL, FIRMS_DE_VIIRS)
@pytest.mark.parametrize("path, reader", [
    (SITELIST, "read_cnemc_sitelist"), (DAILY_20170101, "read_cnemc_national_daily"),
    (HOURLY_1410A, "read_cnemc_station_hourly"), (WIDE_BEIJING, "read_cnemc_wide_hourly"),
    (PRSA_WSXG, "read_prsa_beijing"), (LAEGEREN_AUG, "read_aeronet"), (PAYERNE_SEP, "read_aeronet"),
    (TAIHU, "read_aeronet_inversion"), (FIRMS_GLOBAL, "read_firms"), (FIRMS_DE_VIIRS, "read_firms"),
], ids=lambda x: x.name if isinstance(x, Path) else x)
def test_sniffing_real_files(path, reader):
    assert st.sniff_station_format(path)[1].__name__ == reader


def test_read_stations_dispatches_and_rejects(tmp_path):
    f = write_all_points(tmp_path / "x.lev15")
    assert st.read_stations(f).attrs["format"].startswith("AERONET V3 direct-sun")
    nc = write_tccon(tmp_path / "iz20200701_20200701.private.nc")
    assert st.read_stations(nc)["variable"].iloc[0].startswith("xch4")
    odd = tmp_path / "weather.csv"
    odd.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(UnsupportedFormatError) as exc:
        st.read_stations(odd)
    msg = str(exc.value)
    assert odd.name in msg and "CNEMC national daily" in msg and "AERONET" in msg and "TCCON" in msg
    assert isinstance(exc.value, FormatError)


# --------------------------------------------------------------------------------------------------
# Bad input, for every text reader: missing file, empty file, UTF-16, header only, missing column
# --------------------------------------------------------------------------------------------------

# reader, real file, encoding, preamble lines before the column row, column to drop
BAD_CASES = [
    (st.read_cnemc_sitelist, SITELIST, "gb18030", 0, "经度"),
    (st.read_cnemc_national_daily, DAILY_20170101, "utf-8", 0, "type"),
    (st.read_cnemc_station_hourly, HOURLY_1410A, "utf-8", 0, "datetime"),
    (st.read_cnemc_wide_hourly, WIDE_BEIJING, "utf-8", 0, "hour"),
    (st.read_prsa_beijing, PRSA_WSXG, "utf-8", 0, "station"),
    (st.read_aeronet, LAEGEREN_AUG, "latin-1", 6, "Date(dd:mm:yyyy)"),
    (st.read_aeronet_inversion, TAIHU, "latin-1", 6, "AOD_Coincident_Input[440nm]"),
    (st.read_firms, FIRMS_DE_MODIS, "utf-8", 0, "acq_time"),
]
BAD_IDS = [c[0].__name__ for c in BAD_CASES]


def _copy_head(src: Path, dst: Path, encoding: str, preamble: int, nrows: int, drop: str | None = None) -> Path:
    lines = src.read_bytes().decode(encoding).splitlines()
    pre, body = lines[:preamble], lines[preamble:preamble + 1 + nrows]
    if drop is not None:
        rows = list(csv.reader(body))
        i = rows[0].index(drop)
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([r[:i] + r[i + 1:] for r in rows])
        body = out.getvalue().splitlines()
    dst.write_bytes(("\n".join(pre + body) + "\n").encode(encoding))
    return dst


@pytest.mark.parametrize("reader, src, encoding, preamble, column", BAD_CASES, ids=BAD_IDS)
def test_bad_inputs(tmp_path, reader, src, encoding, preamble, column):
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    name = src.name
    missing = tmp_path / name
    with pytest.raises(FormatError, match="does not exist") as exc:
        reader(missing)
    assert name in str(exc.value)

    empty = tmp_path / ("empty_" + name)
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty") as exc:
        reader(empty)
    assert empty.name in str(exc.value)

    utf16 = tmp_path / ("utf16_" + name)
    utf16.write_bytes(src.read_bytes()[:20000].decode(encoding, errors="ignore").encode("utf-16"))
    with pytest.raises(FormatError) as exc:
        reader(utf16)
    assert utf16.name in str(exc.value)

    header = _copy_head(src, tmp_path / ("header_" + name), encoding, preamble, 0)
    with pytest.raises(NoDataError) as exc:
        reader(header)
    assert header.name in str(exc.value)

    dropped = _copy_head(src, tmp_path / ("dropped_" + name), encoding, preamble, 30, drop=column)
    with pytest.raises(FormatError) as exc:
        reader(dropped)
    assert dropped.name in str(exc.value) and repr(column) in str(exc.value)


def test_tccon_bad_inputs(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        st.read_tccon(tmp_path / "iz20200101_20200102.public.qc.nc")
    empty = tmp_path / "empty.nc"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        st.read_tccon(empty)
    f = write_tccon(tmp_path / "iz20200701_20200701.private.nc")
    import netCDF4
    with netCDF4.Dataset(f, "a") as nc:
        nc["flag"][:] = np.full(6, 7)
    with pytest.raises(NoDataError, match=f.name):
        st.read_tccon(f)
