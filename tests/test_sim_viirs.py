"""Simulated VIIRS L1B granules: real layout, scan geometry, bow-tie deletion, Planck-mixed fires, truth."""

from __future__ import annotations

import csv
import math
import re

import netCDF4
import numpy as np
import pytest

from rsmon.errors import InputError
from rsmon.io.viirs import STATUS_BOWTIE_DELETED, STATUS_VALID, open_viirs_l1b
from rsmon.sim import viirs as sim
from rsmon.sim.viirs import FireSpec, TRUTH_COLUMNS, main, simulate_granule
from rsmon.sim.viirs_geometry import AGGREGATION_BOUNDARIES, bowtie_deleted, pixel_size_km

LINES, PIXELS = 256, 800

# Planck's law written out here on purpose (not imported from the simulator): 2hc^2 and hc/k, CODATA 2018.
C1, C2 = 1.191042972e8, 1.438776877e4  # W m-2 sr-1 um4, um K


def planck(wl_um, t_k):
    return C1 / (wl_um ** 5 * np.expm1(C2 / (wl_um * t_k)))


def inverse_planck(wl_um, radiance):
    return C2 / (wl_um * np.log1p(C1 / (wl_um ** 5 * radiance)))


def read_truth(path):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key in TRUTH_COLUMNS:
            if key != "i4_state":
                row[key] = float(row[key]) if key not in ("line", "sample") else int(row[key])
    return rows


@pytest.fixture(scope="module")
def granule(tmp_path_factory):
    """80 fires on land (from a first random run), two of them saturating I4 and two folding it."""
    folder = tmp_path_factory.mktemp("simviirs")
    probe = simulate_granule(folder / "probe", seed=5, n_lines=LINES, n_pixels=PIXELS, n_fires=80)
    fires = [FireSpec(r["line"], r["sample"], r["fire_area_m2"], r["fire_temp_k"])
             for r in read_truth(probe.truth_path)]
    for k, (area, temp) in enumerate([(600.0, 1000.0)] * 2 + [(8000.0, 1200.0)] * 2):
        fires[10 * k] = FireSpec(fires[10 * k].line, fires[10 * k].sample, area, temp)
    return simulate_granule(folder / "granule", seed=5, n_lines=LINES, n_pixels=PIXELS, fires=fires)


@pytest.fixture(scope="module")
def data(granule):
    return open_viirs_l1b(granule.img_path).compute()


# --------------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------------

def test_names_and_layout(granule):
    assert granule.img_path.name == "VJ102IMG.A2023161.0524.021.2023161123456.nc"
    assert granule.geo_path.name == "VJ103IMG.A2023161.0524.021.2023161123456.nc"
    assert re.fullmatch(r"VJ102IMG\.A2023161\.0524\.021\.\d{13}\.truth\.csv", granule.truth_path.name)
    with netCDF4.Dataset(granule.img_path) as nc:
        assert {d: len(v) for d, v in nc.dimensions.items()} == {
            "number_of_scans": LINES // 32, "number_of_lines": LINES, "number_of_pixels": PIXELS,
            "number_of_LUT_values": 65536}
        assert {"observation_data", "scan_line_attributes"} <= set(nc.groups)
        assert nc.platform == "JPSS-1" and nc.instrument == "VIIRS" and nc.DayNightFlag == "Day"
        assert nc.time_coverage_start == "2023-06-10T05:24:00.000Z" and nc.LocalGranuleID == granule.img_path.name
        obs = nc["observation_data"]
        for band in ("I01", "I02", "I03", "I04", "I05"):
            var = obs[band]
            assert var.dtype == np.uint16 and var.dimensions == ("number_of_lines", "number_of_pixels")
            assert var._FillValue == 65535 and var.valid_max == 65527
            assert list(var.flag_values) == [65532, 65533, 65534]
            assert var.flag_meanings == "Missing_EV Bowtie_Deleted Cal_Fail"
            assert var.scale_factor.dtype == np.float32
            assert obs[f"{band}_quality_flags"].dtype == np.uint16
            assert var.filters()["zlib"] and var.chunking() != "contiguous"
        assert obs["I01"].radiance_scale_factor > 0 and "units" not in obs["I01"].ncattrs()
        for band in ("I04", "I05"):
            lut = obs[f"{band}_brightness_temperature_lut"]
            assert lut.shape == (65536,) and lut.units == "Kelvin"
        lut4 = obs["I04_brightness_temperature_lut"][:]
        assert lut4[0] == pytest.approx(208.0, abs=1e-3) and lut4[65527] == pytest.approx(367.0, abs=1e-3)
        assert np.all(np.diff(lut4[:65528]) > 0)
        assert obs["I05"].scale_factor == np.float32(0.0003815221)
        times = nc["scan_line_attributes/scan_start_time"][:]
        assert np.allclose(np.diff(times), 1.7864)
    with netCDF4.Dataset(granule.geo_path) as nc:
        geo = nc["geolocation_data"]
        assert geo["latitude"].dtype == np.float32 and geo["solar_zenith"].dtype == np.int16
        assert geo["solar_zenith"].scale_factor == np.float32(0.01)
        lwm = geo["land_water_mask"]
        assert lwm.dtype == np.uint8 and lwm.flag_meanings.split()[2] == "Coastline"
        assert nc.OrbitNumber > 28000 and len(nc.GRingPointLatitude) == 4


def test_truth_table_and_frp(granule):
    rows = read_truth(granule.truth_path)
    assert len(rows) == 80
    with open(granule.truth_path) as fh:
        assert fh.readline().strip().split(",")[:7] == [
            "latitude", "longitude", "line", "sample", "frp_mw", "fire_area_m2", "fire_temp_k"]
    sigma = 5.670374419e-8
    for row in rows:
        assert row["frp_mw"] == pytest.approx(sigma * row["fire_area_m2"] * row["fire_temp_k"] ** 4 / 1e6, rel=1e-3)
        assert row["fire_fraction"] == pytest.approx(row["fire_area_m2"] / row["pixel_area_m2"], rel=1e-4)
        assert 2.0 <= row["fire_area_m2"] <= 8000.0 and 500.0 <= row["fire_temp_k"] <= 1200.0
    assert len({(r["line"], r["sample"]) for r in rows}) == len(rows)
    assert {"normal", "saturated", "folded"} <= {r["i4_state"] for r in rows}


def test_truth_position_matches_geolocation(granule, data):
    for row in read_truth(granule.truth_path):
        i, j = row["line"], row["sample"]
        assert data["latitude"].values[i, j] == pytest.approx(row["latitude"], abs=1e-4)
        assert data["longitude"].values[i, j] == pytest.approx(row["longitude"], abs=1e-4)
        assert data["land_water_mask"].values[i, j] == 1  # fires burn on land


# --------------------------------------------------------------------------------------------------
# Fires: Planck mixing
# --------------------------------------------------------------------------------------------------

def test_hand_computed_fire(granule, data):
    rows = [r for r in read_truth(granule.truth_path) if r["i4_state"] == "normal"]
    row = max(rows, key=lambda r: r["fire_fraction"])  # the strongest unsaturated fire
    i, j = row["line"], row["sample"]
    # pixel area from the scan geometry: along-scan x along-track footprint of that full-resolution pixel
    full_sample = int((j + 0.5) * 6400 / PIXELS)
    along_scan, along_track = pixel_size_km(full_sample)
    assert row["pixel_area_m2"] == pytest.approx(along_scan * along_track * 1e6, rel=0.01)
    p = row["fire_area_m2"] / (along_scan * along_track * 1e6)
    t_fire, t_bg = row["fire_temp_k"], row["bg_bt_i4_k"]
    expected = inverse_planck(3.74, p * planck(3.74, t_fire) + (1 - p) * planck(3.74, t_bg))
    assert expected - t_bg > 5.0
    assert data["bt_i4"].values[i, j] == pytest.approx(expected, abs=0.5)
    expected5 = inverse_planck(11.45, p * planck(11.45, t_fire) + (1 - p) * planck(11.45, row["bg_bt_i5_k"]))
    assert data["bt_i5"].values[i, j] == pytest.approx(expected5, abs=0.5)
    assert data["bt_i4"].values[i, j] - data["bt_i5"].values[i, j] > 10.0  # the fire signature BT4 >> BT5


def test_fires_are_hotter_than_neighbours_by_the_mixing(granule, data):
    rows = read_truth(granule.truth_path)
    fires = {(r["line"], r["sample"]) for r in rows}
    bt, status = data["bt_i4"].values, data["i4_status"].values
    checked = 0
    for row in rows:
        if row["i4_state"] != "normal":
            continue
        i, j = row["line"], row["sample"]
        p = row["fire_fraction"]
        mixed = p * planck(3.74, row["fire_temp_k"]) + (1 - p) * planck(3.74, row["bg_bt_i4_k"])
        increase = inverse_planck(3.74, mixed) - row["bg_bt_i4_k"]
        if increase < 5.0:
            continue
        ring = [bt[a, b] for a in range(i - 1, i + 2) for b in range(j - 1, j + 2)
                if (a, b) != (i, j) and 0 <= a < LINES and 0 <= b < PIXELS and (a, b) not in fires
                and status[a, b] == STATUS_VALID]
        assert len(ring) >= 3
        assert bt[i, j] > max(ring)
        # the excess over the neighbours is the Planck-mixing increase, up to the background texture
        assert bt[i, j] - np.median(ring) == pytest.approx(increase, abs=4.0)
        checked += 1
    assert checked >= 10


def test_explicit_fire_and_bad_fire(tmp_path):
    fire = FireSpec(line=20, sample=50, area_m2=100.0, temperature_k=900.0)
    g = simulate_granule(tmp_path, seed=2, n_lines=64, n_pixels=100, fires=[fire])
    [row] = read_truth(g.truth_path)
    assert (row["line"], row["sample"], row["fire_area_m2"], row["fire_temp_k"]) == (20, 50, 100.0, 900.0)
    bt = open_viirs_l1b(g.img_path)["bt_i4"].values
    p = row["fire_fraction"]
    expected = inverse_planck(3.74, p * planck(3.74, 900.0) + (1 - p) * planck(3.74, row["bg_bt_i4_k"]))
    assert bt[20, 50] == pytest.approx(expected, abs=0.5)
    with pytest.raises(InputError, match="bow-tie"):
        simulate_granule(tmp_path / "bad", n_lines=64, n_pixels=100, fires=[FireSpec(0, 0, 10.0, 800.0)])
    with pytest.raises(InputError, match="outside"):
        simulate_granule(tmp_path / "bad", n_lines=64, n_pixels=100, fires=[(64, 0, 10.0, 800.0)])


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------

def test_pixel_size_grows_along_scan():
    along_scan, along_track = pixel_size_km(np.arange(6400))
    nadir, edge = along_scan[3199], along_scan[0]
    assert 0.36 < nadir < 0.40 and 0.78 < edge < 0.85
    assert 0.35 < along_track[3199] < 0.40 and 0.75 < along_track[0] < 0.85
    # grows monotonically inside each aggregation zone, drops where fewer samples are aggregated
    for lo, hi in ((0, 1280), (1280, 2016), (2016, 3200)):
        assert np.all(np.diff(along_scan[lo:hi]) <= 1e-9)
    assert along_scan[2016] > 1.4 * along_scan[2015] and along_scan[1280] > 1.8 * along_scan[1279]


def test_geolocation_spacing_grows_along_scan(data):
    lat, lon = np.radians(data["latitude"].values[16]), np.radians(data["longitude"].values[16])
    hav = np.sin(np.diff(lat) / 2) ** 2 + np.cos(lat[:-1]) * np.cos(lat[1:]) * np.sin(np.diff(lon) / 2) ** 2
    spacing_km = 2 * 6371.0 * np.arcsin(np.sqrt(hav)) / 8.0  # 8 full-resolution pixels between columns
    assert 0.36 < spacing_km[PIXELS // 2] < 0.40
    assert 0.75 < spacing_km[0] < 0.85 and 0.75 < spacing_km[-1] < 0.85


def test_bowtie_pixels(data):
    status = data["i4_status"].values
    detector = np.arange(LINES)[:, None] % 32
    full = ((np.arange(PIXELS) + 0.5) * 6400 / PIXELS).astype(int)[None, :]
    expected = bowtie_deleted(detector, full)
    assert np.array_equal(status == STATUS_BOWTIE_DELETED, expected)
    per_column = expected[:32].sum(axis=0)
    zone = np.searchsorted(AGGREGATION_BOUNDARIES, full[0], side="right")
    assert set(per_column[zone == 0]) == {8} and set(per_column[zone == 1]) == {4}
    assert set(per_column[zone == 2]) == {0}
    assert np.isfinite(data["bt_i4"].values[~expected & (status == STATUS_VALID)]).all()


def test_scene_has_its_parts(data):
    lwm = data["land_water_mask"].values
    assert {0, 1, 3, 5, 7} <= set(np.unique(lwm).tolist())  # sea, land, river, lake, deep sea
    bt5 = data["bt_i5"].values
    refl = data["refl_i1"].values + data["refl_i2"].values
    cloud = (bt5 < 265) & (refl > 0.9)
    assert 0.02 < np.nanmean(cloud) < 0.5  # cold bright clouds
    glint = np.nanmax(np.where(lwm == 5, data["bt_i4"].values - bt5, np.nan))
    assert glint > 15.0  # the lake under the sun-glint spot is bright in I4
    desert = (data["refl_i3"].values > 0.4) & (bt5 > 300.0)
    assert desert.any() and np.nanmedian(data["bt_i4"].values[desert]) > 325.0


# --------------------------------------------------------------------------------------------------
# Determinism, night, CLI, arguments
# --------------------------------------------------------------------------------------------------

def test_deterministic_for_a_seed(tmp_path):
    a = simulate_granule(tmp_path / "a", seed=9, n_lines=64, n_pixels=120, n_fires=10)
    b = simulate_granule(tmp_path / "b", seed=9, n_lines=64, n_pixels=120, n_fires=10)
    c = simulate_granule(tmp_path / "c", seed=10, n_lines=64, n_pixels=120, n_fires=10)
    assert a.truth_path.read_text() == b.truth_path.read_text() != c.truth_path.read_text()
    with netCDF4.Dataset(a.img_path) as na, netCDF4.Dataset(b.img_path) as nb:
        assert np.array_equal(na["observation_data/I04"][:], nb["observation_data/I04"][:])


def test_night_granule(tmp_path):
    g = simulate_granule(tmp_path, seed=1, n_lines=64, n_pixels=100, n_fires=5, day=False)
    assert g.img_path.name.startswith("VJ102IMG.A2023161.1736.")
    with netCDF4.Dataset(g.img_path) as nc:
        assert "I01" not in nc["observation_data"].variables and nc.DayNightFlag == "Night"
        assert nc.startDirection == "Descending"
    ds = open_viirs_l1b(g.img_path)
    assert float(ds["solar_zenith"].min()) > 90.0
    assert np.nanmedian(ds["bt_i4"].values) < 300.0  # no reflected sunlight at 3.7 um


def test_cli_small(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--small", "--seed", "4", "--fires", "5", "--platform", "Suomi-NPP"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 3 and printed[0].endswith(".nc") and "VNP02IMG" in printed[0]
    ds = open_viirs_l1b(printed[0])
    assert ds.sizes == {"y": sim.SMALL_LINES, "x": sim.SMALL_PIXELS} and ds.attrs["satellite"] == "N"


@pytest.mark.parametrize("kwargs, name", [
    ({"n_lines": 100}, "n_lines"), ({"n_pixels": 7000}, "n_pixels"), ({"platform": "Terra"}, "platform"),
    ({"center": (117.0, 85.0)}, "center"), ({"seed": -1}, "seed"), ({"collection": "21"}, "collection"),
])
def test_bad_arguments(tmp_path, kwargs, name):
    with pytest.raises(InputError, match=name):
        simulate_granule(tmp_path, **kwargs)
    with pytest.raises(InputError, match="sim viirs"):
        main(["--small"])  # --out is required


def test_frp_is_stefan_boltzmann():
    # 100 m2 at 1000 K radiates 5.67 MW (sigma A T^4)
    assert 5.670374419e-8 * 100.0 * 1000.0 ** 4 / 1e6 == pytest.approx(5.670374419)
    assert math.isclose(sim.STEFAN_BOLTZMANN, 5.670374419e-8)
