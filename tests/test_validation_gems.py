"""GEMS hourly NO2 grid vs CNEMC hourly stations, all of China (shared/data/gems-no2-cnemc-china).

The real-data numbers are those of docs/validation_cases.md. The SOURCE.txt of the data folder
records its own check (cell containing the station, same UTC hour label, 2023-10-28): 6,098
station-hours, 1,315 stations, r = 0.64; offset_hours=0 is that pairing and reproduces it exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from paths import SEEDS, SHARED_DATA
from rsmon.errors import FormatError, InputError, NoDataError
from rsmon.io.gems import GEMS_UNITS, GEMS_VARIABLE, read_cnemc_parquet, read_gems_hourly_grid
from rsmon.validate.hourly import add_provinces, collocate_hourly_grid, run_gems_case, station_provinces

GEMS = SHARED_DATA / "gems-no2-cnemc-china"
ADMIN = SEEDS / "china-admin" / "100000_full.json"

needs_data = pytest.mark.skipif(not GEMS.is_dir(), reason=f"gems-no2-cnemc-china absent under {SHARED_DATA}")
needs_admin = pytest.mark.skipif(not ADMIN.is_file(), reason=f"{ADMIN} absent")


# --------------------------------------------------------------------------------------------------
# readers on small files made here
# --------------------------------------------------------------------------------------------------

def _gems_frame():
    return pd.DataFrame({
        "lon": [100.0, 100.05, 100.15, 100.0],
        "lat": [30.0, 30.0, 30.1, 30.0],
        "time": ["2023102803", "2023102803", "2023102803", "2023102804"],
        "gems_no2": [1.5, 2.5, 3.5, 4.5],
    })


def test_gems_grid_is_rebuilt_exactly(tmp_path):
    path = tmp_path / "gems_no2_20231028.parquet"
    _gems_frame().to_parquet(path)
    ds = read_gems_hourly_grid(path)
    da = ds[GEMS_VARIABLE]
    assert da.dims == ("time", "lat", "lon") and da.attrs["units"] == GEMS_UNITS
    assert ds["lon"].values.tolist() == [100.0, 100.05, 100.1, 100.15]
    assert ds["lat"].values.tolist() == [30.1, 30.05, 30.0]  # north -> south
    assert list(pd.to_datetime(ds["time"].values)) == [pd.Timestamp("2023-10-28 03:00"), pd.Timestamp("2023-10-28 04:00")]
    assert int(np.isfinite(da.values).sum()) == 4
    assert float(da.sel(time="2023-10-28T03", lat=30.1, lon=100.15)) == 3.5
    assert float(da.sel(time="2023-10-28T04", lat=30.0, lon=100.0)) == 4.5
    assert np.isnan(float(da.sel(time="2023-10-28T04", lat=30.0, lon=100.05)))
    assert ds["lon_bnds"].values[0].tolist() == pytest.approx([99.975, 100.025])
    assert ds["lat_bnds"].values[0].tolist() == pytest.approx([30.125, 30.075])


def test_gems_missing_column_and_off_grid(tmp_path):
    path = tmp_path / "gems_bad.parquet"
    _gems_frame().drop(columns=["gems_no2"]).to_parquet(path)
    with pytest.raises(FormatError, match=r"gems_bad\.parquet.*'gems_no2'"):
        read_gems_hourly_grid(path)
    off = tmp_path / "gems_off.parquet"
    _gems_frame().assign(lon=[100.0, 100.03, 100.15, 100.0]).to_parquet(off)
    with pytest.raises(FormatError, match="not the centre"):
        read_gems_hourly_grid(off)
    text = tmp_path / "gems_text.parquet"
    text.write_text("lon,lat\n1,2\n")
    with pytest.raises(FormatError, match="parquet"):
        read_gems_hourly_grid(text)


def _cnemc_frame():
    return pd.DataFrame({
        "lon": [100.01, 100.01, 100.12], "lat": [30.02, 30.02, 30.09],
        "beijing_time": ["2023102811", "2023102812", "2023102812"],
        "time": ["2023102803", "2023102804", "2023102804"],
        "area": ["A", "A", "B"], "position_name": ["one", "one", "two"],
        "station_code": ["1001A", "1001A", "1002A"], "quality": ["x"] * 3,
        "cnemc_no2": [10.0, 20.0, 30.0],
    })


def test_cnemc_parquet_hour_ending_labels(tmp_path):
    path = tmp_path / "cnemc_no2_20231028.parquet"
    _cnemc_frame().to_parquet(path)
    st = read_cnemc_parquet(path)
    row = st[(st["station_id"] == "1001A") & (st["value"] == 10.0)].iloc[0]
    # beijing_time 11 = [10:00, 11:00) Beijing = [02:00, 03:00) UTC; the file's 'time' (03) is its end
    assert row["time_start"] == pd.Timestamp("2023-10-28 02:00", tz="UTC")
    assert row["time_end"] == pd.Timestamp("2023-10-28 03:00", tz="UTC")
    assert row["units"] == "ug m-3" and row["variable"] == "no2" and row["station_name"] == "one"
    assert st.attrs["reference_state"] == "298K"


def test_cnemc_parquet_errors(tmp_path):
    path = tmp_path / "cnemc_nocol.parquet"
    _cnemc_frame().drop(columns=["station_code"]).to_parquet(path)
    with pytest.raises(FormatError, match=r"cnemc_nocol\.parquet.*'station_code'"):
        read_cnemc_parquet(path)
    bad = tmp_path / "cnemc_badtime.parquet"
    _cnemc_frame().assign(time=["2023102803", "2023102805", "2023102804"]).to_parquet(bad)
    with pytest.raises(FormatError, match="'time' disagrees"):
        read_cnemc_parquet(bad)


# --------------------------------------------------------------------------------------------------
# collocation on a synthetic grid
# --------------------------------------------------------------------------------------------------

def _grid():
    lat = np.array([30.1, 30.05, 30.0])
    lon = np.array([100.0, 100.05, 100.1, 100.15])
    times = pd.to_datetime(["2023-10-28 03:00", "2023-10-28 04:00"]).to_numpy()
    data = np.arange(24, dtype=float).reshape(2, 3, 4)
    data[1, 2, 0] = np.nan
    return xr.Dataset({"no2col": (("time", "lat", "lon"), data, {"units": "1e15 molec cm-2"})},
                      coords={"time": times, "lat": lat, "lon": lon})


def _stations():
    rows = []
    for sid, lon, lat in (("S1", 100.01, 30.02), ("S2", 100.124, 30.076), ("S3", 105.0, 30.0)):
        for end_h, value in ((3, 1.0), (4, 2.0), (5, 3.0)):
            end = pd.Timestamp(f"2023-10-28 {end_h:02d}:00", tz="UTC")
            rows.append((sid, sid, lon, lat, end - pd.Timedelta("1h"), end, "no2", value + (sid == "S2") * 10,
                         "ug m-3", "t"))
    return pd.DataFrame(rows, columns=["station_id", "station_name", "lon", "lat", "time_start", "time_end",
                                       "variable", "value", "units", "source"])


def test_collocate_hourly_grid_offsets_and_cells():
    grid, st = _grid(), _stations()
    m0 = collocate_hourly_grid(grid, st, offset_hours=0)
    # S1 at (100.01, 30.02): cell lon 100.0, lat 30.0 (row 2, col 0); S2 at (100.124, 30.076): lon 100.1
    # (100.075 <= x < 100.125), lat 30.1 (30.075 <= y < 30.125) -> row 0, col 2; S3 off the grid
    s1 = m0[m0["station_id"] == "S1"]
    assert s1["sat_mean"].tolist() == [8.0]  # 04 UTC cell is NaN: only the 03 UTC scan
    assert s1["ground_mean"].tolist() == [1.0]  # label 03 = [02, 03)
    s2 = m0[m0["station_id"] == "S2"].sort_values("time")
    assert s2["sat_mean"].tolist() == [2.0, 14.0]
    assert s2["ground_mean"].tolist() == [11.0, 12.0]
    assert "S3" not in set(m0["station_id"])
    m1 = collocate_hourly_grid(grid, st, offset_hours=1)
    s2 = m1[m1["station_id"] == "S2"].sort_values("time")
    assert s2["ground_mean"].tolist() == [12.0, 13.0]  # labels 04 and 05: [h, h+1)
    assert m1.attrs["offset_hours"] == 1 and "[h+0 h, h+1 h)" in m1.attrs["ground_interval"]
    assert (m1["distance_km"] < 4).all()
    with pytest.raises(NoDataError):
        collocate_hourly_grid(grid, st, offset_hours=5)
    with pytest.raises(InputError, match="offset_hours"):
        collocate_hourly_grid(grid, st, offset_hours=0.5)
    daily = st.assign(time_start=st["time_end"] - pd.Timedelta("1D"))
    with pytest.raises(InputError, match="hourly"):
        collocate_hourly_grid(grid, daily)


@needs_admin
def test_provinces_from_polygons():
    names = station_provinces([116.36, 114.30, 121.47, 0.0], [39.88, 30.59, 31.23, 0.0], ADMIN)
    assert names.tolist() == ["北京市", "湖北省", "上海市", ""]
    m = add_provinces(pd.DataFrame({"station_id": ["a", "b"], "lon": [116.36, 114.3], "lat": [39.88, 30.59]}), ADMIN)
    assert m["province"].tolist() == ["北京市", "湖北省"]


# --------------------------------------------------------------------------------------------------
# the real case (both offsets, all three days)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gems_runs(tmp_path_factory):
    if not GEMS.is_dir():
        pytest.skip(f"gems-no2-cnemc-china absent under {SHARED_DATA}")
    if not ADMIN.is_file():
        pytest.skip(f"{ADMIN} absent")
    return {off: (run_gems_case(GEMS, tmp_path_factory.mktemp(f"gems{off}"), off, admin=ADMIN, n_boot=100),)
            for off in (0, 1)}


# (offset, day) -> (N, stations, r) as in docs/validation_cases.md
EXPECTED = {
    (0, "2023-10-28"): (6098, 1315, 0.6415),
    (0, "2023-10-29"): (6340, 1201, 0.6303),
    (0, "2025-12-29"): (5337, 1222, 0.6180),
    (1, "2023-10-28"): (6094, 1317, 0.6316),
    (1, "2023-10-29"): (6343, 1201, 0.6206),
    (1, "2025-12-29"): (5318, 1218, 0.6197),
}


@needs_data
@pytest.mark.parametrize("offset", [0, 1])
def test_gems_case_real(gems_runs, offset):
    (result,) = gems_runs[offset]
    assert result["offset_hours"] == offset
    for (off, day), (n, n_st, r) in EXPECTED.items():
        if off != offset:
            continue
        got = result["by_day"][day]
        assert got["n"] > 5000  # thousands of station-hours per day
        assert got["n"] == n and got["n_stations"] == n_st
        assert got["r"] == pytest.approx(r, abs=1e-3)
        assert 0 < got["slope_ols"] < got["slope_rma"]
    overall = result["overall"]
    assert overall["n"] == sum(v[0] for (o, _), v in EXPECTED.items() if o == offset)
    assert overall["r"] == pytest.approx({0: 0.5837, 1: 0.5786}[offset], abs=1e-3)
    assert result["n_provinces"] > 20 and not result["provinces_unassigned"]
    paths = {k: v for k, v in result["paths"].items()}
    for key in ("matchups", "stations", "stats", "scatter", "timeseries", "map", "report", "by_province", "by_day",
                "map_20231028", "map_20231029", "map_20251229", "summary"):
        assert key in paths, key
        assert pd.io.common.file_exists(paths[key])
    by_province = pd.read_csv(paths["by_province"])
    assert len(by_province) > 20 and {"province", "n", "r", "spearman", "slope_ols", "slope_rma", "n_stations"} <= set(
        by_province.columns)
    assert by_province["n"].sum() == overall["n"]
    by_day = pd.read_csv(paths["by_day"])
    assert by_day["day"].tolist() == ["2023-10-28", "2023-10-29", "2025-12-29"]
    stats = json.loads(Path(paths["stats"]).read_text(encoding="utf-8"))
    assert stats["bias_stats"] is False and stats["mb"] is None and stats["n"] == overall["n"]
    matchups = pd.read_csv(paths["matchups"])
    assert "province" in matchups.columns and not matchups.duplicated(["station_id", "time"]).any()
    assert matchups["distance_km"].max() < 4.0  # half-diagonal of a 0.05-degree cell at 20 N is 3.9 km
