"""VIIRS L1B I-band reader: round trip through simulated granules, laziness, pickling and bad inputs."""

from __future__ import annotations

import csv
import pickle
import shutil
from datetime import datetime, timezone
from pathlib import Path

import dask
import dask.array
import netCDF4
import numpy as np
import pytest

from rsmon.errors import FormatError, InputError, NoDataError, RsmonError, UnsupportedFormatError
from rsmon.io.registry import find_reader, open_any, read_metadata_any
from rsmon.io.viirs import (
    OUTPUT_VARIABLES,
    QF_SATURATION,
    STATUS_BOWTIE_DELETED,
    STATUS_CALIBRATION_FAILURE,
    STATUS_FILL,
    STATUS_MISSING,
    STATUS_VALID,
    VALID_MAX_COUNT,
    find_geolocation_file,
    open_viirs_l1b,
    parse_viirs_filename,
    sniff_viirs_l1b,
)
from rsmon.sim.viirs import FireSpec, simulate_granule

LINES, PIXELS = 256, 800  # 8 scans, every 8th pixel of the swath: small and fast


class CountingScheduler:
    """A dask scheduler that counts computes (satpy's ``assert_maximum_dask_computes`` idea)."""

    def __init__(self) -> None:
        self.computes = 0

    def __call__(self, dsk, keys, **kwargs):
        self.computes += 1
        return dask.get(dsk, keys, **kwargs)


def _truth(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def granule_with_every_fire_state(folder: Path, seed: int):
    """A small granule with 80 fires on land, two of them saturating I4 and two folding it.

    A first run places 80 random fires on cloud-free land; the second reuses those pixels (same seed,
    same scene) with two 600 m2 / 1000 K fires (saturated) and two 8000 m2 / 1200 K fires (folded).
    """
    probe = simulate_granule(folder / "probe", seed=seed, n_lines=LINES, n_pixels=PIXELS, n_fires=80)
    rows = _truth(probe.truth_path)
    fires = [FireSpec(int(r["line"]), int(r["sample"]), float(r["fire_area_m2"]), float(r["fire_temp_k"]))
             for r in rows]
    for k, (area, temp) in enumerate([(600.0, 1000.0)] * 2 + [(8000.0, 1200.0)] * 2):
        fires[10 * k] = FireSpec(fires[10 * k].line, fires[10 * k].sample, area, temp)
    return simulate_granule(folder / "granule", seed=seed, n_lines=LINES, n_pixels=PIXELS, fires=fires)


@pytest.fixture(scope="module")
def granule(tmp_path_factory):
    return granule_with_every_fire_state(tmp_path_factory.mktemp("viirs"), seed=3)


@pytest.fixture(scope="module")
def loaded(granule):
    return open_viirs_l1b(granule.img_path).compute()


def _rewrite(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """Copy a NetCDF-4 file group by group, leaving out the groups/variables whose path is in ``skip``."""

    def copy(g_in, g_out, prefix: str) -> None:
        g_out.setncatts({k: g_in.getncattr(k) for k in g_in.ncattrs()})
        for name, dim in g_in.dimensions.items():
            g_out.createDimension(name, len(dim))
        for name, var in g_in.variables.items():
            if f"{prefix}{name}" in skip:
                continue
            var.set_auto_maskandscale(False)
            attrs = {k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"}
            fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
            out = g_out.createVariable(name, var.dtype, var.dimensions, fill_value=fill, zlib=True, complevel=1)
            out.set_auto_maskandscale(False)
            out.setncatts(attrs)
            out[...] = var[...]
        for name, grp in g_in.groups.items():
            if f"{prefix}{name}" not in skip:
                copy(grp, g_out.createGroup(name), f"{prefix}{name}/")

    with netCDF4.Dataset(src) as nc_in, netCDF4.Dataset(dst, "w", format="NETCDF4") as nc_out:
        copy(nc_in, nc_out, "")
    return dst


def _copy_pair(granule, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    img = Path(shutil.copy(granule.img_path, folder / granule.img_path.name))
    geo = Path(shutil.copy(granule.geo_path, folder / granule.geo_path.name))
    return img, geo


# --------------------------------------------------------------------------------------------------
# File names and discovery
# --------------------------------------------------------------------------------------------------

def test_parse_filenames():
    p = parse_viirs_filename("/data/VJ102IMG.A2023161.0524.021.2023161123456.nc")
    assert (p.prefix, p.level, p.kind, p.collection, p.platform) == ("VJ1", "02", "IMG", "021", "NOAA-20")
    assert p.start == datetime(2023, 6, 10, 5, 24, tzinfo=timezone.utc) and p.granule_key == "A2023161.0524"
    q = parse_viirs_filename("VNP03IMG_NRT.A2020001.1200.002.nc")
    assert (q.platform, q.level, q.nrt) == ("Suomi-NPP", "03", True)
    assert parse_viirs_filename("VJ202MOD.A2024100.0000.021.2024100050505.nc").platform == "NOAA-21"
    for bad in ("VJ102IMG.A2023400.0524.021.nc", "S5P_OFFL_L2__NO2____.nc", "VX102IMG.A2023161.0524.021.nc"):
        assert parse_viirs_filename(bad) is None


def test_geolocation_file_is_found_by_name(granule, tmp_path):
    assert find_geolocation_file(granule.img_path) == granule.geo_path
    lonely = Path(shutil.copy(granule.img_path, tmp_path / granule.img_path.name))
    with pytest.raises(FormatError, match="VJ103IMG"):
        open_viirs_l1b(lonely)


# --------------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------------

def test_contract_names_dtypes_attrs(granule):
    ds = open_viirs_l1b(granule.img_path)
    assert set(OUTPUT_VARIABLES) <= set(ds.data_vars) and {"latitude", "longitude"} <= set(ds.coords)
    assert ds.sizes == {"y": LINES, "x": PIXELS}
    for name in ("bt_i4", "bt_i5", "rad_i4", "refl_i1", "refl_i2", "refl_i3", "latitude", "longitude",
                 "solar_zenith", "solar_azimuth", "sensor_zenith", "sensor_azimuth"):
        assert ds[name].dtype == np.float32, name
        assert ds[name].dims == ("y", "x")
    assert ds["i4_status"].dtype == np.uint8 and ds["i5_status"].dtype == np.uint8
    assert ds["i4_saturated"].dtype == bool
    assert ds["qf_i4"].dtype == np.uint16 and ds["land_water_mask"].dtype == np.uint8
    assert ds["bt_i4"].attrs["units"] == "K" and ds["rad_i4"].attrs["units"] == "W m-2 sr-1 um-1"
    assert "Coastline" in ds["land_water_mask"].attrs["flag_meanings"]
    a = ds.attrs
    assert (a["platform"], a["satellite"], a["instrument"]) == ("NOAA-20", "N20", "VIIRS")
    assert a["time_coverage_start"] == "2023-06-10T05:24:00.000Z"
    assert a["time_coverage_end"] == "2023-06-10T05:30:00.000Z"
    assert a["day_night_flag"] == "Day" and a["granule_id"] == granule.img_path.name
    assert a["source_paths"] == [str(granule.img_path.resolve()), str(granule.geo_path.resolve())]


def test_brightness_temperatures_match_the_truth(granule, loaded):
    rows = _truth(granule.truth_path)
    assert len(rows) == 80
    with netCDF4.Dataset(granule.img_path) as nc:
        lut4 = nc["observation_data/I04_brightness_temperature_lut"][:].filled(np.nan)
        var = nc["observation_data/I04"]
        var.set_auto_maskandscale(False)
        counts = var[:]
    c1, c2 = 1.191042972e8, 1.438776877e4  # 2hc^2 (W m-2 sr-1 um4), hc/k (um K)
    planck = lambda wl, t: c1 / (wl ** 5 * np.expm1(c2 / (wl * t)))  # noqa: E731
    inverse = lambda wl, rad: c2 / (wl * np.log1p(c1 / (wl ** 5 * rad)))  # noqa: E731
    checked = 0
    for row in rows:
        line, sample = int(row["line"]), int(row["sample"])
        got = float(loaded["bt_i4"].values[line, sample])
        assert got == pytest.approx(float(row["bt_i4_k"]), abs=1e-3)
        assert float(loaded["bt_i5"].values[line, sample]) == pytest.approx(float(row["bt_i5_k"]), abs=1e-3)
        if row["i4_state"] != "normal":
            continue
        p = float(row["fire_fraction"])
        mixed = inverse(3.74, p * planck(3.74, float(row["fire_temp_k"]))
                        + (1 - p) * planck(3.74, float(row["bg_bt_i4_k"])))
        c = int(counts[line, sample])
        step = float(lut4[c + 1] - lut4[c])  # the LUT resolution at that count
        assert abs(got - mixed) <= 0.5 * step + 1e-3, row
        checked += 1
    assert checked > 50


def test_special_counts_are_nan_with_status_codes(granule, loaded):
    with netCDF4.Dataset(granule.img_path) as nc:
        raw = {}
        for band in ("I04", "I05", "I02"):
            var = nc[f"observation_data/{band}"]
            var.set_auto_maskandscale(False)
            raw[band] = var[:]
    expected = {65532: STATUS_MISSING, 65533: STATUS_BOWTIE_DELETED, 65534: STATUS_CALIBRATION_FAILURE,
                65535: STATUS_FILL}
    for band, status in (("I04", "i4_status"), ("I05", "i5_status")):
        got = loaded[status].values
        assert np.all(got[raw[band] <= VALID_MAX_COUNT] == STATUS_VALID)
        for count, code in expected.items():
            where = raw[band] == count
            assert where.any(), (band, count)  # the simulator injects every kind of special count
            assert np.all(got[where] == code), (band, count)
        bt = loaded["bt_" + status[:2]].values
        assert np.all(np.isnan(bt[got != STATUS_VALID])) and np.all(np.isfinite(bt[got == STATUS_VALID]))
    assert np.all(np.isnan(loaded["rad_i4"].values[loaded["i4_status"].values != 0]))
    assert np.all(np.isnan(loaded["refl_i2"].values[raw["I02"] > VALID_MAX_COUNT]))
    # geolocation stays valid under bow-tie deletion
    assert np.isfinite(loaded["latitude"].values).all()


def test_saturation_and_folding(granule, loaded):
    rows = _truth(granule.truth_path)
    states = {(int(r["line"]), int(r["sample"])): r["i4_state"] for r in rows}
    assert {"normal", "saturated", "folded"} <= set(states.values())
    sat = loaded["i4_saturated"].values
    for (line, sample), state in states.items():
        assert bool(sat[line, sample]) == (state == "saturated"), (line, sample, state)
        if state == "saturated":
            assert loaded["bt_i4"].values[line, sample] == pytest.approx(367.0, abs=0.01)
            assert loaded["qf_i4"].values[line, sample] & QF_SATURATION
        if state == "folded":  # fire.md: severe saturation folds to ~208 K with a nominal flag
            assert loaded["bt_i4"].values[line, sample] == pytest.approx(208.0, abs=0.01)
            assert loaded["qf_i4"].values[line, sample] == 0
            assert loaded["bt_i5"].values[line, sample] > loaded["bt_i4"].values[line, sample]
    assert sat.sum() == sum(s == "saturated" for s in states.values())


def test_geolocation_and_angles(loaded):
    lat, lon = loaded["latitude"].values, loaded["longitude"].values
    assert 29.0 < lat.min() and lat.max() < 38.5 and 100.0 < lon.min() and lon.max() < 135.0
    vza = loaded["sensor_zenith"].values
    assert vza.min() < 1.0 and 69.0 < vza.max() < 71.0
    sza = loaded["solar_zenith"].values
    assert 5.0 < sza.min() and sza.max() < 40.0
    codes = set(np.unique(loaded["land_water_mask"].values).tolist())
    assert {0, 1, 7} <= codes


def test_chunks_and_laziness(granule):
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        ds = open_viirs_l1b(granule.img_path, chunks={"y": 64})
        assert counter.computes == 0
        for name in (*OUTPUT_VARIABLES, "latitude"):
            assert isinstance(ds[name].data, dask.array.Array), name
        assert ds["bt_i4"].data.chunks[0] == (64,) * (LINES // 64)
        pickle.dumps(ds)
        assert counter.computes == 0
        n = int((ds["i4_status"] == STATUS_BOWTIE_DELETED).sum().compute())
        assert counter.computes == 1 and n > 0


def test_bad_chunks_and_geo_valid_range_units(granule):
    with pytest.raises(InputError, match="chunks"):
        open_viirs_l1b(granule.img_path, chunks={"scanline": 10})
    from rsmon.io.viirs import _decode_geo

    raw = np.array([-32768, -15000, 0, 17999], dtype=np.int16)
    packed = _decode_geo(raw, -32768, 0.01, 0.0, np.int16(-18000), np.int16(18000), True)
    physical = _decode_geo(raw, -32768, 0.01, 0.0, -180.0, 180.0, False)  # valid range in degrees
    np.testing.assert_allclose(packed, [np.nan, -150.0, 0.0, 179.99], rtol=1e-6)
    np.testing.assert_allclose(physical, packed, rtol=1e-6)


def test_pickled_dataset_computes(granule, loaded):
    clone = pickle.loads(pickle.dumps(open_viirs_l1b(granule.img_path)))
    np.testing.assert_array_equal(clone["bt_i5"].values, loaded["bt_i5"].values)


def test_registry_and_metadata(granule):
    assert find_reader(granule.img_path).name == "viirs_l1b"
    assert sniff_viirs_l1b(granule.img_path) and not sniff_viirs_l1b(granule.geo_path)
    assert open_any(granule.img_path).sizes == {"y": LINES, "x": PIXELS}
    meta = read_metadata_any(granule.img_path)
    assert meta["reader"] == "viirs_l1b" and meta["platform"] == "NOAA-20" and meta["satellite"] == "N20"
    assert meta["geo_path"] == str(granule.geo_path.resolve())
    west, south, east, north = meta["bbox"]
    assert 100 < west < east < 135 and 29 < south < north < 39
    assert meta["footprint"]["type"] == "Polygon" and meta["start_datetime"].hour == 5


def test_night_granule_has_nan_reflectance(tmp_path):
    g = simulate_granule(tmp_path, seed=1, n_lines=64, n_pixels=200, n_fires=5, day=False)
    ds = open_viirs_l1b(g.img_path)
    assert ds.attrs["day_night_flag"] == "Night"
    assert np.isnan(ds["refl_i1"].values).all() and np.isfinite(ds["bt_i5"].values).any()


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------

def test_mismatched_pair_names_both_files(granule, tmp_path):
    other = simulate_granule(tmp_path / "later", seed=3, n_lines=64, n_pixels=100, n_fires=0,
                             start=datetime(2023, 6, 10, 5, 30))
    with pytest.raises(FormatError) as err:
        open_viirs_l1b(granule.img_path, other.geo_path)
    assert str(granule.img_path.resolve()) in str(err.value) and str(other.geo_path.resolve()) in str(err.value)
    npp = simulate_granule(tmp_path / "npp", seed=3, n_lines=64, n_pixels=100, n_fires=0, platform="Suomi-NPP")
    with pytest.raises(FormatError, match="not a pair"):
        open_viirs_l1b(granule.img_path, npp.geo_path)


def test_pair_with_same_times_but_another_orbit_is_rejected(granule, tmp_path):
    """A re-stamped 03 file: same name and times, another orbit number."""
    shutil.copy(granule.img_path, tmp_path / granule.img_path.name)
    geo = _rewrite(granule.geo_path, tmp_path / granule.geo_path.name)
    with netCDF4.Dataset(geo, "a") as nc:
        nc.setncattr("OrbitNumber", np.int32(int(nc.getncattr("OrbitNumber")) + 1))
    with pytest.raises(FormatError, match="not a pair: orbit numbers"):
        open_viirs_l1b(tmp_path / granule.img_path.name)


def test_pair_with_another_end_time_is_rejected(granule, tmp_path):
    shutil.copy(granule.img_path, tmp_path / granule.img_path.name)
    geo = _rewrite(granule.geo_path, tmp_path / granule.geo_path.name)
    with netCDF4.Dataset(geo, "a") as nc:
        nc.setncattr("time_coverage_end", "2023-06-10T05:35:00.000Z")
    with pytest.raises(FormatError, match="time_coverage_end"):
        open_viirs_l1b(tmp_path / granule.img_path.name)


def test_missing_lut_names_the_variable(granule, tmp_path):
    img = _rewrite(granule.img_path, tmp_path / granule.img_path.name,
                   skip=("observation_data/I05_brightness_temperature_lut",))
    shutil.copy(granule.geo_path, tmp_path / granule.geo_path.name)
    with pytest.raises(FormatError, match="observation_data/I05_brightness_temperature_lut"):
        open_viirs_l1b(img)


def test_missing_group_names_the_group(granule, tmp_path):
    shutil.copy(granule.img_path, tmp_path / granule.img_path.name)
    _rewrite(granule.geo_path, tmp_path / granule.geo_path.name, skip=("geolocation_data",))
    with pytest.raises(FormatError, match="geolocation_data"):
        open_viirs_l1b(tmp_path / granule.img_path.name)


def test_truncated_file(granule, tmp_path):
    img, _ = _copy_pair(granule, tmp_path)
    size = img.stat().st_size
    with open(img, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(FormatError, match="truncated"):
        open_viirs_l1b(img)


def test_all_fill_granule(granule, tmp_path):
    img, _ = _copy_pair(granule, tmp_path)
    with netCDF4.Dataset(img, "a") as nc:
        for band in ("I01", "I02", "I03", "I04", "I05"):
            var = nc[f"observation_data/{band}"]
            var.set_auto_maskandscale(False)
            var[:] = np.full(var.shape, 65535, dtype=np.uint16)
    with pytest.raises(NoDataError, match="all-fill"):
        open_viirs_l1b(img)


def test_not_a_viirs_file(granule, tmp_path):
    plain = tmp_path / "plain.nc"
    with netCDF4.Dataset(plain, "w") as nc:
        nc.createDimension("x", 3)
        nc.createVariable("t", "f4", ("x",))[:] = [1, 2, 3]
    with pytest.raises(UnsupportedFormatError):
        open_viirs_l1b(plain, granule.geo_path)
    assert not sniff_viirs_l1b(plain)
    text = tmp_path / "VJ102IMG.A2023161.0524.021.2023161123456.nc"
    text.write_text("not a netcdf file")
    with pytest.raises(RsmonError):
        open_viirs_l1b(text, granule.geo_path)
    assert not sniff_viirs_l1b(text)
