"""`rsmon validate` on real data: AERONET vs MODIS AOD (Switzerland), CNEMC vs OMI NO2 (Beijing), bad input.

The numbers asserted here are the ones recorded in docs/validation.md (with a tolerance for the
bootstrap-free statistics, which are deterministic); a change in a reader's time or unit rule moves
them and fails the test.
"""

from __future__ import annotations

import json

import pytest

from paths import SHARED_DATA
from rsmon.cli import main

CH = SHARED_DATA / "aeronet-switzerland-giovanni"
OMI = SHARED_DATA / "omi-no2-giovanni-china-cities"
CNEMC = SHARED_DATA / "cnemc-no2-2019-beijing-wuhan"
SITES = SHARED_DATA / "cnemc-stations" / "NewSiteList.csv"

pytestmark = pytest.mark.skipif(not CH.is_dir() or not OMI.is_dir(), reason=f"real data absent under {SHARED_DATA}")


def aeronet_files():
    return sorted(str(p) for p in CH.glob("*Laegeren.txt")) + sorted(str(p) for p in CH.glob("*Payerne.lev15"))


def giovanni(pattern):
    (path,) = CH.glob(pattern)
    return str(path)


def run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


# (product glob, N, R, RMSE, MB, within EE) -- see docs/validation.md
SWISS_CASES = {
    "terra-dt": ("g4*MOD08*Land_Ocean_Mean*.csv", 41, 0.750, 0.0504, 0.0219, 0.854),
    "aqua-dt": ("g4*MYD08*Land_Ocean_Mean*.csv", 41, 0.439, 0.0651, -0.0040, 0.854),
}


@pytest.mark.parametrize("case", sorted(SWISS_CASES))
def test_aod_switzerland_aeronet_vs_modis_dark_target(case, tmp_path, capsys):
    pattern, n, r, rmse, mb, within = SWISS_CASES[case]
    rc, out, err = run(["validate", "--kind", "aod", "--product", giovanni(pattern), "--stations", *aeronet_files(),
                        "--max-distance-km", "50", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    stats = json.loads((tmp_path / "stats.json").read_text())
    for key in ("n", "r", "rmse", "mb", "within_ee", "slope_ols", "slope_rma", "spearman", "nmb", "mae"):
        assert key in stats
    assert stats["n"] == n
    assert stats["r"] == pytest.approx(r, abs=5e-3)
    assert stats["rmse"] == pytest.approx(rmse, abs=5e-4)
    assert stats["mb"] == pytest.approx(mb, abs=5e-4)
    assert stats["within_ee"] == pytest.approx(within, abs=5e-3)
    assert 0.0 <= stats["within_ee"] <= 1.0
    for name in ("matchups.csv", "scatter.png", "timeseries.png", "map.png", "report.html"):
        assert (tmp_path / name).stat().st_size > 0
    # both sites take part, each within 50 km of the 7-8E 47-48N cell
    import pandas as pd

    matchups = pd.read_csv(tmp_path / "matchups.csv")
    assert set(matchups["station_id"]) == {"Laegeren", "Payerne"}
    assert matchups["distance_km"].max() < 50


@pytest.mark.parametrize("pattern", ["g4*MOD08*Deep_Blue*.csv", "g4*MYD08*Deep_Blue*.csv"])
def test_aod_switzerland_deep_blue_runs(pattern, tmp_path, capsys):
    rc, out, err = run(["validate", "--kind", "aod", "--product", giovanni(pattern), "--stations", *aeronet_files(),
                        "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["n"] >= 10
    assert stats["r"] is None or -1 <= stats["r"] <= 1


def test_no2_beijing_omi_vs_cnemc_stations(tmp_path, capsys):
    """One matchup per station-day; ground = hour-ending values overlapping 13:45 local solar time +- 30 min."""
    if not CNEMC.is_dir() or not SITES.exists():
        pytest.skip(f"CNEMC data absent under {SHARED_DATA}")
    rc, out, err = run(["validate", "--kind", "no2", "--product", str(OMI / "beijingNO2.csv"),
                        "--stations", str(CNEMC / "cnemc_beijing_1001A-1012A_NO2_hourly_2019.csv"),
                        "--sites", str(SITES), "--overpass", "13:45", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["n"] == 2817
    assert stats["r"] == pytest.approx(0.616, abs=5e-3)
    assert stats["spearman"] == pytest.approx(0.590, abs=5e-3)
    assert stats["slope_ols"] > 0 and stats["slope_rma"] > stats["slope_ols"]
    # a column is not a concentration: no bias statistics
    assert stats["mb"] is None and stats["rmse"] is None and stats["bias_stats"] is False
    import pandas as pd

    matchups = pd.read_csv(tmp_path / "matchups.csv")
    assert not matchups.duplicated(["station_id", "time"]).any()
    assert matchups["station_id"].nunique() == 12


# --------------------------------------------------------------------------------------------------
# bad input: one line, exit 2, no stats.json
# --------------------------------------------------------------------------------------------------

def _assert_failed(rc, err, out_dir, *needles):
    assert rc == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rsmon: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (out_dir / "stats.json").exists()


def test_station_file_in_a_wrong_encoding(tmp_path, capsys):
    src = CH / "20240901_20240930_Payerne.lev15"
    bad = tmp_path / "Payerne_utf16.lev15"
    bad.write_text(src.read_text(encoding="latin-1"), encoding="utf-16")
    out = tmp_path / "out"
    rc, _, err = run(["validate", "--kind", "aod", "--product", giovanni("g4*MOD08*Land_Ocean_Mean*.csv"),
                      "--stations", str(bad), "--out", str(out)], capsys)
    _assert_failed(rc, err, out, bad.name)


def test_station_file_missing_its_aod_columns(tmp_path, capsys):
    src = CH / "20240901_20240930_Payerne.lev15"
    lines = src.read_text(encoding="latin-1").splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("Date(dd:mm:yyyy)"))
    keep = [i for i, name in enumerate(lines[header_at].split(",")) if not name.startswith(("AOD_", "440-870"))]
    cut = lines[:header_at] + [",".join(row.split(",")[i] for i in keep) for row in lines[header_at:]]
    bad = tmp_path / "20240901_20240930_Payerne.lev15"
    bad.write_text("\n".join(cut) + "\n", encoding="latin-1")
    out = tmp_path / "out"
    rc, _, err = run(["validate", "--kind", "aod", "--product", giovanni("g4*MOD08*Land_Ocean_Mean*.csv"),
                      "--stations", str(bad), "--out", str(out)], capsys)
    _assert_failed(rc, err, out, bad.name)


def test_product_with_no_overlap_writes_nothing(tmp_path, capsys):
    wuhan = sorted((SHARED_DATA / "giovanni-modis-aod-wuhan").glob("g4*MOD08*.csv"))
    if not wuhan:
        pytest.skip("giovanni-modis-aod-wuhan absent")
    out = tmp_path / "out"
    rc, _, err = run(["validate", "--kind", "aod", "--product", str(wuhan[0]), "--stations", *aeronet_files(),
                      "--out", str(out)], capsys)
    _assert_failed(rc, err, out, "no matchups")
    assert not out.exists() or not any(out.iterdir())


def test_station_file_without_rows_in_the_window(tmp_path, capsys):
    """Swiss AERONET stations against the Swiss series cut to a period without station data."""
    src = giovanni("g4*MOD08*Land_Ocean_Mean*.csv")
    lines = open(src, encoding="utf-8").read().splitlines()
    data_at = next(i for i, line in enumerate(lines) if line.startswith("time,"))
    # keep only the first week of August: Payerne starts in September and Laegeren's August is cut away
    week = [line for line in lines[data_at + 1:] if line[:10] <= "2024-08-05"]
    bad = tmp_path / "g4.areaAvgTimeSeries.MOD08_D3_6_1_Aerosol_Optical_Depth_Land_Ocean_Mean.20240801-20240805.7E_47N_8E_48N.csv"
    bad.write_text("\n".join(lines[: data_at + 1] + week) + "\n", encoding="utf-8")
    payerne = sorted(str(p) for p in CH.glob("*Payerne.lev15"))
    out = tmp_path / "out"
    rc, _, err = run(["validate", "--kind", "aod", "--product", str(bad), "--stations", *payerne,
                      "--out", str(out)], capsys)
    _assert_failed(rc, err, out, "no matchups")


def test_mixed_units_are_refused(tmp_path):
    """The same variable in two units (ug m-3 and ppb) must not be averaged together."""
    from rsmon.errors import InputError
    from rsmon.io.series import read_giovanni_series
    from rsmon.io.stations import read_csv_mapped
    from rsmon.validate.collocate import collocate_series

    mixed = tmp_path / "mixed_units.csv"
    mixed.write_text("station_id,lon,lat,time,value,units,variable\n"
                     "X1,116.40,39.90,2019-06-12T06:00:00Z,40.0,ug m-3,no2\n"
                     "X2,116.41,39.91,2019-06-12T06:00:00Z,20.0,ppb,no2\n", encoding="utf-8")
    table = read_csv_mapped(mixed, {c: c for c in ("station_id", "lon", "lat", "time", "value", "units", "variable")})
    with pytest.raises(InputError, match="units"):
        collocate_series(read_giovanni_series(OMI / "beijingNO2.csv"), table, variable="no2")


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    out = blocker / "out"
    rc, _, err = run(["validate", "--kind", "aod", "--product", giovanni("g4*MOD08*Land_Ocean_Mean*.csv"),
                      "--stations", *aeronet_files(), "--out", str(out)], capsys)
    assert rc == 2 and "afile" in err and len(err.strip().splitlines()) == 1


def test_unknown_kind(tmp_path, capsys):
    rc, _, err = run(["validate", "--kind", "so2", "--product", giovanni("g4*MOD08*Land_Ocean_Mean*.csv"),
                      "--stations", *aeronet_files(), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "--kind" in err


