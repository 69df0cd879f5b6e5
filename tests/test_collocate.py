"""Collocation of swaths, grids and area-average series with stations: known answers on hand-made
data, the real Giovanni box of the Swiss AERONET comparison, and a simulation end to end."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from paths import SHARED_DATA
from rsmon.errors import InputError, NoDataError
from rsmon.grid import LonLatGrid
from rsmon.io.cog import write_cog
from rsmon.io.s5p import open_s5p
from rsmon.io.series import read_giovanni_series
from rsmon.provenance import Provenance
from rsmon.sim.s5p import EmissionSource, scanlines_crossing, simulate_orbit, truth_column
from rsmon.validate.collocate import (
    MATCHUP_COLUMNS,
    box_distance_km,
    collocate_grid,
    collocate_series,
    collocate_swath,
    nominal_overpass_utc,
)

R_KM = 6371.0088
BEIJING = pd.Timedelta(hours=8)


def hav_km(lon1, lat1, lon2, lat2):
    """Independent haversine (written out here so the test does not trust the module's)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * R_KM * math.asin(math.sqrt(a))


def station_table(rows, variable="no2", units="ug m-3", source="stations.csv"):
    """Station table from ``(id, lon, lat, time_start_utc, time_end_utc, value)`` rows."""
    df = pd.DataFrame(rows, columns=["station_id", "lon", "lat", "time_start", "time_end", "value"])
    df["station_name"] = "name " + df["station_id"]
    df["time_start"] = pd.to_datetime(df["time_start"], utc=True)
    df["time_end"] = pd.to_datetime(df["time_end"], utc=True)
    df["variable"] = variable
    df["units"] = units
    df["source"] = source
    return df


def hourly_beijing(station_id, lon, lat, day, labels, values=None, instant=False):
    """Hour-ending values labelled ``labels`` (Beijing hours) on ``day``; value = label unless given."""
    rows = []
    for k, h in enumerate(labels):
        end = pd.Timestamp(day) + pd.Timedelta(hours=h) - BEIJING
        start = end if instant else end - pd.Timedelta(hours=1)
        rows.append((station_id, lon, lat, start, end, float(h if values is None else values[k])))
    return rows


# ---------------------------------------------------------------------------------------------------
# A 3 x 3 swath in the reader's layout
# ---------------------------------------------------------------------------------------------------
# Pixel (i, j): scanline i runs north, ground pixel j east; edges are multiples of 1/8 degree so they
# are exact in float32 (as the reader's corner bounds are) and a station can sit exactly on an edge.
LON_EDGES = np.array([116.0, 116.125, 116.25, 116.375])
LAT_EDGES = np.array([39.75, 39.875, 40.0, 40.125])
T0 = np.datetime64("2019-06-12T05:55:00", "ns")  # 13:55 Beijing time


def centre(i, j):
    return (LON_EDGES[j] + LON_EDGES[j + 1]) / 2, (LAT_EDGES[i] + LAT_EDGES[i + 1]) / 2


def make_swath(qa_raw=None, times=None, values=None, n=3) -> xr.Dataset:
    lon_e = np.arange(n + 1) * 0.125 + 116.0
    lat_e = np.arange(n + 1) * 0.125 + 39.75
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    lon_c = (lon_e[jj] + lon_e[jj + 1]) / 2
    lat_c = (lat_e[ii] + lat_e[ii + 1]) / 2
    # corners as the reader orders them: 0 = (scanline-, pixel-), 1 = (-, +), 2 = (+, +), 3 = (+, -)
    lon_b = np.stack([lon_e[jj], lon_e[jj + 1], lon_e[jj + 1], lon_e[jj]], axis=-1)
    lat_b = np.stack([lat_e[ii], lat_e[ii], lat_e[ii + 1], lat_e[ii + 1]], axis=-1)
    if values is None:
        values = (10 * ii + jj).astype(np.float32)  # the value encodes the pixel
    qa_raw = np.full((n, n), 100, np.uint8) if qa_raw is None else np.asarray(qa_raw, np.uint8)
    times = T0 + np.arange(n) * np.timedelta64(1, "s") if times is None else np.asarray(times, "datetime64[ns]")
    dims = ("scanline", "ground_pixel")
    ds = xr.Dataset(
        {
            "tropospheric_no2_column": (dims, values, {"units": "mol m-2"}),
            "qa_value": (dims, np.where(qa_raw == 255, np.nan, qa_raw * 0.01).astype(np.float32)),
            "qa_value_raw": (dims, qa_raw),
        },
        coords={
            "latitude": (dims, lat_c.astype(np.float32)),
            "longitude": (dims, lon_c.astype(np.float32)),
            "latitude_bounds": (dims + ("corner",), lat_b.astype(np.float32)),
            "longitude_bounds": (dims + ("corner",), lon_b.astype(np.float32)),
            "time_utc": ("scanline", times),
        },
        attrs={"product": "NO2", "main_variable": "tropospheric_no2_column", "source_path": "/data/synthetic_swath.nc"},
    )
    return ds.chunk({"scanline": 1})  # lazy, as open_s5p returns it


def stations_with_hours(points, labels=range(11, 18), day="2019-06-12", instant=False):
    rows = []
    for sid, (lon, lat) in points.items():
        rows += hourly_beijing(sid, lon, lat, day, labels, instant=instant)
    return station_table(rows)


def test_matchup_table_contract():
    out = collocate_swath(make_swath(), stations_with_hours({"A": (116.19, 39.93)}))
    assert tuple(out.columns) == MATCHUP_COLUMNS
    assert str(out["time"].dtype) == "datetime64[ns, UTC]"
    assert out["sat_n"].dtype == np.int64 and out["ground_n"].dtype == np.int64
    assert out.attrs["mode"] == "containing" and out.attrs["variable"] == "no2"
    assert out.attrs["stations_source"] == ["stations.csv"]
    assert out["product"].iloc[0] == "/data/synthetic_swath.nc"


def test_containing_pixel_found_exactly():
    points = {"A": (116.19, 39.93), "B": (116.30, 40.05)}
    out = collocate_swath(make_swath(), stations_with_hours(points)).set_index("station_id")
    assert out.loc["A", "sat_mean"] == 11.0  # pixel (1, 1)
    assert out.loc["B", "sat_mean"] == 22.0  # pixel (2, 2)
    assert (out["sat_n"] == 1).all() and out["sat_std"].isna().all()
    assert out.loc["A", "distance_km"] == pytest.approx(hav_km(116.19, 39.93, *centre(1, 1)), rel=1e-6)
    assert out.loc["A", "time"] == pd.Timestamp("2019-06-12T05:55:01", tz="UTC")  # scanline 1
    assert out.loc["B", "time"] == pd.Timestamp("2019-06-12T05:55:02", tz="UTC")


def test_station_on_shared_edge_goes_east_and_south():
    """Documented tie rule: a station on a north-south edge goes to the pixel east of it, on an
    east-west edge to the pixel south of it, on a corner to the south-east pixel."""
    points = {"vertical_edge": (116.125, 39.93),    # between (1,0) and (1,1) -> east: (1,1)
              "horizontal_edge": (116.19, 40.0),    # between (1,1) and (2,1) -> south: (1,1)
              "corner": (116.25, 39.875)}           # corner of (0,1),(0,2),(1,1),(1,2) -> SE: (0,2)
    out = collocate_swath(make_swath(), stations_with_hours(points)).set_index("station_id")
    assert out.loc["vertical_edge", "sat_mean"] == 11.0
    assert out.loc["horizontal_edge", "sat_mean"] == 11.0
    assert out.loc["corner", "sat_mean"] == 2.0
    assert "east" in out.attrs["edge_rule"]


def test_radius_mean_equals_hand_mean():
    lon0, lat0 = centre(1, 1)
    # E/W neighbours are 0.125 deg x cos(40 deg) ~ 10.7 km away, N/S ones 13.9 km: 12 km takes 3 pixels
    dists = {(i, j): hav_km(lon0, lat0, *centre(i, j)) for i in range(3) for j in range(3)}
    inside = sorted(p for p, d in dists.items() if d <= 12.0)
    assert inside == [(1, 0), (1, 1), (1, 2)]
    out = collocate_swath(make_swath(), stations_with_hours({"A": (lon0, lat0)}), mode="radius", radius_km=12.0)
    row = out.iloc[0]
    hand = [10 * i + j for i, j in inside]
    assert row["sat_mean"] == pytest.approx(np.mean(hand))
    assert row["sat_std"] == pytest.approx(np.std(hand, ddof=1))
    assert row["sat_n"] == 3
    assert row["distance_km"] == pytest.approx(np.mean([dists[p] for p in inside]), rel=1e-6)


def test_qa_is_strictly_greater_on_the_stored_integer():
    qa = np.full((3, 3), 100, np.uint8)
    qa[1, 2] = 75   # qa_value 0.75 is not > 0.75
    qa[1, 0] = 255  # fill
    lon0, lat0 = centre(1, 1)
    st = stations_with_hours({"A": (lon0, lat0)})
    out = collocate_swath(make_swath(qa_raw=qa), st, mode="radius", radius_km=12.0, qa_min=0.75)
    assert out.iloc[0]["sat_n"] == 1 and out.iloc[0]["sat_mean"] == 11.0
    out = collocate_swath(make_swath(qa_raw=qa), st, mode="radius", radius_km=12.0, qa_min=0.74)
    assert out.iloc[0]["sat_n"] == 2 and out.iloc[0]["sat_mean"] == 11.5
    # containing pixel failing QA: no fallback to a neighbour, the station has no matchup
    qa[1, 1] = 50
    with pytest.raises(NoDataError, match="synthetic_swath.nc.*stations.csv.*'no2'"):
        collocate_swath(make_swath(qa_raw=qa), st, qa_min=0.75)


@pytest.mark.parametrize("overpass, window_min, labels", [
    ("05:55:00", 15, [14, 15]),   # 13:40-14:10 Beijing: hours [13,14) and [14,15)
    ("05:40:00", 10, [14]),       # 13:30-13:50: only [13,14)
    ("05:30:00", 30, [14]),       # 13:00-14:00 exactly: touching hours [12,13) and [14,15) are out
    ("06:00:00", 30, [14, 15]),   # 13:30-14:30: the 14:00 and 15:00 labels of atmos.md 5.2
])
def test_bracket_hours_picks_hour_ending_labels(overpass, window_min, labels):
    times = np.array([f"2019-06-12T{overpass}"] * 3, dtype="datetime64[ns]")
    lon0, lat0 = centre(1, 1)
    for instant in (False, True):  # intervals [h-1, h) or instants stamped at the label h
        st = stations_with_hours({"A": (lon0, lat0)}, instant=instant)
        out = collocate_swath(make_swath(times=times), st, ground_rule="bracket_hours", window_min=window_min)
        assert out.iloc[0]["ground_n"] == len(labels)
        assert out.iloc[0]["ground_mean"] == pytest.approx(np.mean(labels))


def test_window_rule_takes_instants_as_instants():
    times = np.array(["2019-06-12T05:55:00"] * 3, dtype="datetime64[ns]")  # 13:55 Beijing +- 15 min
    lon0, lat0 = centre(1, 1)
    st = stations_with_hours({"A": (lon0, lat0)}, instant=True)
    out = collocate_swath(make_swath(times=times), st, ground_rule="window", window_min=15)
    assert out.iloc[0]["ground_n"] == 1 and out.iloc[0]["ground_mean"] == 14.0  # the 14:00 stamp only


def test_bracket_hours_rejects_daily_values():
    rows = [("A", 116.19, 39.93, "2019-06-12", "2019-06-13", 30.0)]
    with pytest.raises(InputError, match="bracket_hours.*1 days"):
        collocate_swath(make_swath(), station_table(rows), ground_rule="bracket_hours")


def test_antimeridian_swath():
    """The swath moved so that pixel (1, 1) straddles 180 degrees: its corners are 179.9375 and
    -179.9375, and it still contains stations on both sides of the antimeridian."""
    ds = make_swath()
    for name in ("longitude", "longitude_bounds"):
        shifted = ((ds[name].values.astype(np.float64) - 116.1875 + 360.0) % 360.0) - 180.0
        ds[name] = (ds[name].dims, shifted.astype(np.float32))
    corners = ds["longitude_bounds"].values[1, 1]
    assert corners.min() == -179.9375 and corners.max() == 179.9375
    st = stations_with_hours({"west_of_180": (179.95, 39.93), "east_of_180": (-179.99, 39.93),
                              "next_pixel": (-179.90, 39.93), "as_180_plus": (180.10, 39.93)})
    out = collocate_swath(ds, st).set_index("station_id")
    assert out.loc["west_of_180", "sat_mean"] == 11.0
    assert out.loc["east_of_180", "sat_mean"] == 11.0
    assert out.loc["next_pixel", "sat_mean"] == 12.0   # -179.9375 .. -179.8125
    assert out.loc["as_180_plus", "sat_mean"] == 12.0  # 180.10 = -179.90
    assert out.loc["east_of_180", "distance_km"] < 5.0


def test_swath_reads_only_rows_near_the_stations():
    """Values, QA and corners are computed for the scanlines next to the station, not the swath."""
    n = 40
    computed = []

    def record(block, block_info=None):
        computed.append(block_info[0]["array-location"][0])
        return block

    base = make_swath(n=n)
    values = da.from_array((10 * np.arange(n)[:, None] + np.arange(n)[None, :]).astype(np.float32), chunks=(4, n))
    ds = base.assign(tropospheric_no2_column=(("scanline", "ground_pixel"),
                                              values.map_blocks(record, dtype=np.float32)))
    lon, lat = float(base["longitude"][20, 5]), float(base["latitude"][20, 5])
    out = collocate_swath(ds, stations_with_hours({"A": (lon, lat)}))
    assert out.iloc[0]["sat_mean"] == 205.0
    rows_read = sorted({r for loc in computed for r in range(*loc)})
    assert rows_read and min(rows_read) >= 16 and max(rows_read) < 24


# ---------------------------------------------------------------------------------------------------
# Local solar overpass
# ---------------------------------------------------------------------------------------------------

def test_local_solar_overpass_beijing_vs_urumqi():
    beijing = nominal_overpass_utc("2019-06-12", 116.4, "13:30")
    urumqi = nominal_overpass_utc("2019-06-12", 87.6, "13:30")
    assert urumqi - beijing == pd.Timedelta(hours=1, minutes=55, seconds=12)  # 28.8 deg / 15 deg per hour
    assert beijing + BEIJING == pd.Timestamp("2019-06-12T13:44:24", tz="UTC")  # ~13:45 Beijing time
    assert urumqi + BEIJING == pd.Timestamp("2019-06-12T15:39:36", tz="UTC")   # ~15:40 (atmos.md 5.2)


# ---------------------------------------------------------------------------------------------------
# L3 grid (a small COG written with rsmon's writer; values encode their cell centre)
# ---------------------------------------------------------------------------------------------------
GRID = LonLatGrid(west=115.0, south=39.0, res=0.25, width=8, height=8)
DAY = "2019-06-12"


def cell_code(lon, lat):
    return np.float32(np.asarray(lon) * 1000.0 + np.asarray(lat))


@pytest.fixture(scope="module")
def grid_product():
    lon, lat = np.meshgrid(GRID.lon_centers(), GRID.lat_centers())
    mean = cell_code(lon, lat).astype(np.float32)
    mean[(np.isclose(lon, 115.875)) & (np.isclose(lat, 39.875))] = np.nan  # an empty cell
    return xr.Dataset(
        {"tropospheric_no2_column": (("lat", "lon"), mean, {"units": "mol m-2"}),
         "count": (("lat", "lon"), np.ones_like(mean), {"units": "1"})},
        coords={"lat": GRID.lat_centers(), "lon": GRID.lon_centers()},
        attrs={"product": "no2", "time_coverage_start": f"{DAY}T00:00:00Z", "time_coverage_end": f"{DAY}T23:59:59Z"},
    )


@pytest.fixture(scope="module")
def cog_path(tmp_path_factory, grid_product):
    path = tmp_path_factory.mktemp("cog") / "no2_20190612.tif"
    return write_cog(path, grid_product, GRID, Provenance())


def day_of_hours(station_id, lon, lat):
    """Hour-ending values for the whole UTC day 2019-06-12 plus one hour either side."""
    rows = []
    for k in range(-1, 25):
        start = pd.Timestamp(DAY, tz="UTC") + pd.Timedelta(hours=k)
        rows.append((station_id, lon, lat, start, start + pd.Timedelta(hours=1), float(k)))
    return rows


def test_grid_containing_cell(cog_path, grid_product):
    st = station_table(day_of_hours("A", 116.1, 39.9) + day_of_hours("edge", 116.0, 40.0))
    for product in (cog_path, grid_product):
        out = collocate_grid(product, st).set_index("station_id")
        assert out.loc["A", "sat_mean"] == cell_code(116.125, 39.875)
        # on the edges 116.0 E and 40.0 N: the cell east and south of them, the same cell
        assert out.loc["edge", "sat_mean"] == cell_code(116.125, 39.875)
        assert out.loc["A", "distance_km"] == pytest.approx(hav_km(116.1, 39.9, 116.125, 39.875), rel=1e-6)
        assert (out["time"] == pd.Timestamp(DAY, tz="UTC")).all()
        # same_day: the 24 hours of the UTC day, not the hour before or after
        assert (out["ground_n"] == 24).all() and out.loc["A", "ground_mean"] == pytest.approx(11.5)


def test_grid_radius_mean_hand_checked(cog_path):
    lon0, lat0 = 116.125, 39.875
    # neighbours: 0.25 deg east/west = 21.3 km, north/south = 27.8 km; 25 km takes the row only,
    # and the west neighbour (115.875) is empty (NaN)
    assert hav_km(lon0, lat0, 116.375, lat0) < 25.0 < hav_km(lon0, lat0, lon0, 40.125)
    out = collocate_grid(cog_path, station_table(day_of_hours("A", lon0, lat0)), mode="radius", radius_km=25.0)
    row = out.iloc[0]
    hand = [cell_code(116.125, lat0), cell_code(116.375, lat0)]
    assert row["sat_n"] == 2
    assert row["sat_mean"] == pytest.approx(np.mean(np.asarray(hand, np.float64)))
    assert row["distance_km"] == pytest.approx((0.0 + hav_km(lon0, lat0, 116.375, lat0)) / 2, rel=1e-6)


def test_grid_window_rule_follows_local_solar_time(cog_path):
    """13:30 local solar: 13:44 Beijing at 116.4 E (labels 14, 15), 15:40 at 87.6 E (labels 16, 17)."""
    rows = hourly_beijing("east", 116.4, 39.9, DAY, range(10, 20))
    rows += hourly_beijing("west", 87.6, 39.9, DAY, range(10, 20))
    # the west station lies outside this small grid: use a Dataset spanning both
    big = LonLatGrid(west=85.0, south=39.0, res=0.5, width=70, height=4)
    lon, lat = np.meshgrid(big.lon_centers(), big.lat_centers())
    ds = xr.Dataset({"v": (("lat", "lon"), cell_code(lon, lat))},
                    coords={"lat": big.lat_centers(), "lon": big.lon_centers()},
                    attrs={"time_coverage_start": f"{DAY}T00:00:00Z", "time_coverage_end": f"{DAY}T23:59:59Z"})
    out = collocate_grid(ds, station_table(rows), ground_rule="window").set_index("station_id")
    assert out.loc["east", "ground_mean"] == 14.5 and out.loc["east", "ground_n"] == 2
    assert out.loc["west", "ground_mean"] == 16.5 and out.loc["west", "ground_n"] == 2


def test_grid_without_time_coverage(grid_product):
    ds = grid_product.copy()
    ds.attrs = {}
    st = station_table(day_of_hours("A", 116.1, 39.9))
    with pytest.raises(InputError, match="time_coverage_start"):
        collocate_grid(ds, st)
    out = collocate_grid(ds, st, time_start=f"{DAY}T00:00:00Z", time_end=f"{DAY}T23:59:59Z")
    assert out.iloc[0]["ground_n"] == 24


# ---------------------------------------------------------------------------------------------------
# Area-average series (real Giovanni file of the Swiss AERONET comparison)
# ---------------------------------------------------------------------------------------------------
SWISS = SHARED_DATA / "aeronet-switzerland-giovanni"
TERRA_DT = SWISS / ("g4.areaAvgTimeSeries.MOD08_D3_6_1_Aerosol_Optical_Depth_Land_Ocean_Mean."
                    "20240801-20241130.7E_47N_8E_48N.csv")
LAEGEREN_DAILY = SWISS / "20240801_20240831_Laegeren.txt"


def read_aeronet_daily(path):
    """Minimal AERONET V3 daily-average parse (6 header lines): a Station table of AOD 500 nm."""
    df = pd.read_csv(path, skiprows=6, encoding="latin-1")
    day = pd.to_datetime(df["Date(dd:mm:yyyy)"], format="%d:%m:%Y", utc=True)
    aod = df["AOD_500nm"].where(df["AOD_500nm"] > -999.0)
    rows = [(df["AERONET_Site_Name"].iloc[0], df["Site_Longitude(Degrees)"].iloc[0], df["Site_Latitude(Degrees)"].iloc[0],
             d, d + pd.Timedelta("1D"), v) for d, v in zip(day, aod)]
    return station_table(rows, variable="aod_500", units="1", source=str(path))


def need(path):
    if not path.is_file():
        pytest.skip(f"sample data {path} not present")
    return path


def test_series_box_distance_payerne_and_laegeren():
    series = read_giovanni_series(need(TERRA_DT))
    assert series.attrs["box"] == (7.0, 47.0, 8.0, 48.0)
    payerne = box_distance_km(6.944, 46.813, series.attrs["box"])
    assert payerne == pytest.approx(hav_km(6.944, 46.813, 7.0, 47.0), rel=1e-9)  # nearest point: the SW corner
    assert 20.0 < payerne < 22.0
    laegeren = box_distance_km(8.364352, 47.478349, series.attrs["box"])
    assert laegeren == pytest.approx(hav_km(8.364352, 47.478349, 8.0, 47.478349), rel=1e-9)  # east edge
    assert box_distance_km(7.5, 47.5, series.attrs["box"]) == 0.0


def test_series_same_day_with_real_laegeren_aod():
    series = read_giovanni_series(need(TERRA_DT))
    st = read_aeronet_daily(need(LAEGEREN_DAILY))
    out = collocate_series(series, st)
    assert tuple(out.columns) == MATCHUP_COLUMNS
    assert (out["station_id"] == "Laegeren").all() and (out["sat_n"] == 1).all() and (out["ground_n"] == 1).all()
    row = out.set_index("time").loc[pd.Timestamp("2024-08-12", tz="UTC")]
    assert row["sat_mean"] == pytest.approx(0.196, abs=1e-3)      # Terra DT over the 1-degree cell
    assert row["ground_mean"] == pytest.approx(0.194909)            # AERONET daily mean AOD 500 nm
    assert row["distance_km"] == pytest.approx(hav_km(8.364352, 47.478349, 8.0, 47.478349), rel=1e-6)
    assert out.attrs["product"] == TERRA_DT.stem and out.attrs["box"] == (7.0, 47.0, 8.0, 48.0)
    with pytest.raises(NoDataError, match="within 10.0 km"):
        collocate_series(series, st, max_distance_km=10.0)


def test_series_overpass_window_no2_rule():
    """13:45 local solar at 116.4 E is 13:59 Beijing: hours 14:00 and 15:00 (+-30 min)."""
    series = pd.DataFrame({"time": pd.to_datetime(["2019-06-12", "2019-06-13"], utc=True), "value": [1e16, np.nan]})
    series["time_start"] = series["time"]
    series["time_end"] = series["time"] + pd.Timedelta("1D")
    series.attrs = {"box": (116.0, 39.5, 117.0, 40.5), "name": "omi_beijing"}
    rows = hourly_beijing("1001A", 116.4, 39.9, "2019-06-12", range(8, 22))
    rows += hourly_beijing("far", 120.0, 30.0, "2019-06-12", range(8, 22))
    out = collocate_series(series, station_table(rows), ground_rule="overpass_window")
    assert list(out["station_id"]) == ["1001A"]  # "far" is > 50 km away; the NaN day gives no row
    assert out.iloc[0]["ground_mean"] == 14.5 and out.iloc[0]["ground_n"] == 2
    assert out.iloc[0]["distance_km"] == 0.0
    local = collocate_series(series, station_table(rows), ground_rule="overpass_window", day_basis="local")
    assert local.iloc[0]["ground_mean"] == 14.5


def test_series_multi_day_windows_pool_the_days():
    series = pd.DataFrame({"time": pd.to_datetime(["2019-06-14"], utc=True), "value": [120.0]})
    series["time_start"] = series["time"] - pd.Timedelta("2D")   # stamp "end" of a 2-day window
    series["time_end"] = series["time"]
    series.attrs = {"box": (116.15, 39.67, 116.61, 40.13), "name": "biweekly"}
    rows = hourly_beijing("1001A", 116.36, 39.88, "2019-06-12", [14, 15], values=[10, 20])
    rows += hourly_beijing("1001A", 116.36, 39.88, "2019-06-13", [14, 15], values=[30, 40])
    rows += hourly_beijing("1001A", 116.36, 39.88, "2019-06-14", [14, 15], values=[90, 90])  # outside
    out = collocate_series(series, station_table(rows), ground_rule="overpass_window", overpass_local_solar="13:30")
    assert out.iloc[0]["ground_n"] == 4 and out.iloc[0]["ground_mean"] == 25.0
    assert out.iloc[0]["time"] == pd.Timestamp("2019-06-12", tz="UTC")


# ---------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------

def test_no_overlap_is_no_data_error():
    st = stations_with_hours({"far": (100.0, 20.0)})
    with pytest.raises(NoDataError, match=r"synthetic_swath\.nc.*stations\.csv.*'no2'"):
        collocate_swath(make_swath(), st)
    with pytest.raises(NoDataError, match="synthetic_swath.nc"):
        collocate_swath(make_swath(), stations_with_hours({"A": (116.19, 39.93)}, day="2019-07-01"))


def test_stations_missing_lon_lat():
    st = stations_with_hours({"A": (116.19, 39.93), "B": (116.30, 40.05)})
    with pytest.raises(InputError, match="'lon'"):
        collocate_swath(make_swath(), st.drop(columns=["lon"]))
    no_lat = st.assign(lat=np.nan)
    with pytest.raises(InputError, match="'lat'.*every station"):
        collocate_swath(make_swath(), no_lat)
    # a station without coordinates (real site lists miss a few) is skipped and listed
    part = st.copy()
    part.loc[part["station_id"] == "B", "lat"] = np.nan
    part.loc[part.index[0], "lon"] = np.nan  # one row of A: A's other rows give its position
    out = collocate_swath(make_swath(), part)
    assert list(out["station_id"]) == ["A"] and out.iloc[0]["ground_n"] == 2
    assert out.attrs["stations_without_coordinates"] == ["B"]


def test_mixed_units_and_variable_choice():
    st = stations_with_hours({"A": (116.19, 39.93), "B": (116.30, 40.05)})
    st.loc[st["station_id"] == "B", "units"] = "ppb"
    with pytest.raises(InputError, match=r"mixed units \['ppb', 'ug m-3'\]"):
        collocate_swath(make_swath(), st)
    both = pd.concat([stations_with_hours({"A": (116.19, 39.93)}),
                      station_table([("A", 116.19, 39.93, "2019-06-12T05:00Z", "2019-06-12T06:00Z", 40.0)],
                                    variable="pm25")])
    with pytest.raises(InputError, match="choose one with variable="):
        collocate_swath(make_swath(), both)
    assert collocate_swath(make_swath(), both, variable="pm25").iloc[0]["ground_mean"] == 40.0
    naive = stations_with_hours({"A": (116.19, 39.93)})
    naive["time_start"] = naive["time_start"].dt.tz_localize(None)
    with pytest.raises(InputError, match="time_start.*timezone-naive"):
        collocate_swath(make_swath(), naive)


def test_bad_parameters():
    st = stations_with_hours({"A": (116.19, 39.93)})
    with pytest.raises(InputError, match="mode"):
        collocate_swath(make_swath(), st, mode="nearest")
    with pytest.raises(InputError, match="radius_km"):
        collocate_swath(make_swath(), st, mode="radius", radius_km=-1)
    with pytest.raises(InputError, match="overpass_local_solar"):
        collocate_series(pd.DataFrame({"time": [], "value": []}), st, overpass_local_solar="25:00")


# ---------------------------------------------------------------------------------------------------
# Simulation end to end
# ---------------------------------------------------------------------------------------------------
CNEMC_SITES = SHARED_DATA / "cnemc-stations" / "NewSiteList.csv"
CNEMC_DAY = SHARED_DATA / "cnemc-sites-daily" / "china_sites_20190612.csv"
SIM_BBOX = (113.0, 36.0, 120.0, 42.0)
SIM_ORBIT = 8609           # the orbit of 2019-06-12 crossing the North China Plain (~05:22 UTC)
NO2_TO_COLUMN = 4.0e-6     # mol m-2 of plume peak per ug m-3 of station NO2 (the "truth relation")
SIGMA_KM = 20.0


def cnemc_sources():
    """One CNEMC station per city of the North China Plain (>= 80 km apart) with its real NO2 of
    2019-06-12, labels 13:00 and 14:00 Beijing time (the hours bracketing the ~13:22 overpass)."""
    sites = pd.read_csv(need(CNEMC_SITES), encoding="gb18030")
    day = pd.read_csv(need(CNEMC_DAY))
    no2 = day[day["type"] == "NO2"].set_index("hour")
    sites = sites[sites["监测点编码"].isin(no2.columns)]
    sites = sites[sites["经度"].between(114.0, 119.5) & sites["纬度"].between(36.5, 41.5)]
    good = no2.loc[[13, 14], sites["监测点编码"]].notna().all().to_numpy()
    sites = sites[good].sort_values("监测点编码").groupby("城市", sort=False).first().reset_index()
    chosen = []
    for _, s in sites.sort_values("监测点编码").iterrows():
        if all(hav_km(s["经度"], s["纬度"], c["经度"], c["纬度"]) >= 80.0 for c in chosen):
            chosen.append(s)
    rows, sources = [], []
    for s in chosen:
        code = s["监测点编码"]
        values = no2.loc[[13, 14], code].to_numpy(dtype=float)
        rows += hourly_beijing(code, s["经度"], s["纬度"], "2019-06-12", [11, 12, 13, 14, 15, 16],
                               values=no2.loc[[11, 12, 13, 14, 15, 16], code].to_numpy(dtype=float))
        sources.append(EmissionSource(code, float(s["经度"]), float(s["纬度"]),
                                      NO2_TO_COLUMN * float(values.mean()), SIGMA_KM))
    return station_table(rows, source=str(CNEMC_DAY)), sources


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    stations, sources = cnemc_sources()
    rng = scanlines_crossing(SIM_ORBIT, SIM_BBOX)
    path = simulate_orbit(tmp_path_factory.mktemp("sim"), SIM_ORBIT, seed=3, scanline_range=rng, sources=sources)
    return open_s5p(path), stations, sources


def _fit(x, y):
    slope, intercept = np.polyfit(x, y, 1)
    return float(np.corrcoef(x, y)[0, 1]), float(slope), float(intercept)


@pytest.mark.parametrize("mode", ["containing", "radius"])
def test_simulated_swath_recovers_the_truth_relation(simulated, mode):
    """Machinery test, not a TROPOMI validation: the simulated swath's NO2 truth is built from real
    CNEMC station values (plume peak = NO2_TO_COLUMN x station NO2), and swath-level collocation must
    give back (a) the truth column at the stations and (b) the linear relation to the station values,
    within the simulated retrieval noise (~1e-5 mol m-2 per pixel)."""
    ds, stations, sources = simulated
    out = collocate_swath(ds, stations, qa_min=0.75, mode=mode, radius_km=10.0, ground_rule="bracket_hours")
    assert len(out) >= 10, f"only {len(out)} of {len(sources)} stations matched"
    assert (out["ground_n"] == 2).all()  # the hour-ending values labelled 13:00 and 14:00
    by_code = {s.name: s for s in sources}
    assert np.allclose(out["ground_mean"] * NO2_TO_COLUMN,
                       [by_code[c].peak_mol_m2 for c in out["station_id"]], rtol=1e-9)
    overpass_bj = (out["time"] + BEIJING).dt.strftime("%H:%M")
    assert overpass_bj.between("13:00", "13:45").all()

    truth = truth_column(out["lon"].to_numpy(), out["lat"].to_numpy(), sources)
    r, slope, _ = _fit(truth, out["sat_mean"].to_numpy())
    assert r > 0.9 and 0.8 < slope < 1.2, (r, slope)
    r, slope, intercept = _fit(out["ground_mean"].to_numpy(), out["sat_mean"].to_numpy())
    assert r > 0.9 and slope == pytest.approx(NO2_TO_COLUMN, rel=0.2), (r, slope)
    assert abs(intercept - 1.0e-5) < 1.5e-5  # the simulator's background column
    if mode == "radius":
        assert (out["sat_n"] > 1).all() and (out["distance_km"] < 10.0).all()
    else:
        assert (out["sat_n"] == 1).all() and (out["distance_km"] < 5.0).all()
