"""Tests of the Sentinel-5P TROPOMI L2 NO2 simulator (:mod:`rsmon.sim.s5p`).

The layout is checked against the real files in ``shared/data`` (copied into ``seeds/s5p``): the
metadata-only NO2 orbit 12367 and the GES DISC subset of the CH4 orbit 07293. Geometry is checked
against the same real files and against the physics (pixel widths, shared corners, local time).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from rsmon.errors import InputError
from paths import SHARED_DATA
from rsmon.sim import s5p
from rsmon.sim.s5p import (
    DEFAULT_SOURCES,
    EmissionSource,
    main,
    orbit_start_time,
    orbits_of_day,
    scanlines_crossing,
    simulate_day,
    simulate_orbit,
    truth_column,
)

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [ROOT / "seeds" / "s5p", SHARED_DATA / "s5p-no2-metadata-only",
               SHARED_DATA / "s5p-ch4-subset"]
REAL_NO2 = next((p for d in _CANDIDATES for p in sorted(d.glob("S5P_OFFL_L2__NO2____*12367*.nc"))), None)
REAL_CH4 = next((p for d in _CANDIDATES for p in sorted(d.glob("S5P_OFFL_L2__CH4____*07293*.SUB.nc4"))), None)

DAY = date(2019, 6, 12)
EAST_CHINA = (105.0, 20.0, 125.0, 42.0)
ORBIT = 8609  # crosses eastern China on 2019-06-12 around 05:30 UTC
NAME_RE = re.compile(
    r"^S5P_(?P<mode>OFFL|NRTI|RPRO)_L2__NO2____(?P<start>\d{8}T\d{6})_(?P<end>\d{8}T\d{6})_(?P<orbit>\d{5})_"
    r"(?P<collection>\d{2})_(?P<processor>\d{6})_(?P<production>\d{8}T\d{6})\.nc$")
EARTH_KM = 6371.0088


def _km(lat1, lon1, lat2, lon2):
    la1, lo1, la2, lo2 = map(np.radians, (lat1, lon1, lat2, lon2))
    hav = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin((lo2 - lo1) / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(hav))


def _read(path, var, group="PRODUCT", raw=False):
    with netCDF4.Dataset(path) as ds:
        v = ds[group][var]
        if raw:
            v.set_auto_maskandscale(False)
        return v[...]


def _walk(group, prefix=""):
    """{path: variable} over all groups."""
    out = {}
    for name, var in group.variables.items():
        out[f"{prefix}/{name}"] = var
    for name, sub in group.groups.items():
        out.update(_walk(sub, f"{prefix}/{name}"))
    return out


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> Path:
    """200 scanlines of orbit 8609 over eastern China (the orbit's own scanline indices 2450..2649)."""
    return simulate_orbit(tmp_path_factory.mktemp("subset"), ORBIT, seed=7, scanline_range=(2450, 2650))


@pytest.fixture(scope="module")
def coarse_orbit(tmp_path_factory) -> Path:
    """A whole orbit with 300 coarse scanlines (11.7 s apart), pole to pole."""
    return simulate_orbit(tmp_path_factory.mktemp("coarse"), ORBIT, seed=7, n_scanlines=300)


@pytest.fixture(scope="module")
def day_files(tmp_path_factory) -> list[Path]:
    return simulate_day(tmp_path_factory.mktemp("day"), DAY, seed=3, bbox=EAST_CHINA)


# --------------------------------------------------------------------------------------------------
# Names and metadata
# --------------------------------------------------------------------------------------------------


def test_file_name_parses_and_matches_content(subset):
    m = NAME_RE.match(subset.name)
    assert m, subset.name
    assert int(m["orbit"]) == ORBIT
    assert m["processor"] == "020400" and m["collection"] == "03" and m["mode"] == "OFFL"
    start = datetime.strptime(m["start"], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    end = datetime.strptime(m["end"], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    assert abs((start - orbit_start_time(ORBIT)).total_seconds()) < 1
    assert 6085 < (end - start).total_seconds() < 6095
    with netCDF4.Dataset(subset) as ds:
        assert ds.id == subset.stem
        assert len(ds.id) == 83  # HARP parses collection and processor out of an 83-character id
        assert int(ds.orbit) == ORBIT
        assert ds.processor_version == "2.4.0"
        assert ds.time_coverage_resolution == "PT0.840S"
        t0 = datetime.strptime(ds.time_coverage_start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert start < t0 < end
        gd = ds["METADATA/GRANULE_DESCRIPTION"]
        assert gd.ProductShortName == "L2__NO2___"
        assert gd.ProcessingMode == "Offline"


@pytest.mark.skipif(REAL_NO2 is None, reason="real NO2 metadata file not found")
def test_global_and_granule_attributes_cover_the_real_ones(subset):
    with netCDF4.Dataset(REAL_NO2) as real, netCDF4.Dataset(subset) as sim:
        assert set(real.ncattrs()) <= set(sim.ncattrs())
        for name in real.ncattrs():
            assert type(sim.getncattr(name)) is type(real.getncattr(name)), name
        rg, sg = real["METADATA/GRANULE_DESCRIPTION"], sim["METADATA/GRANULE_DESCRIPTION"]
        assert set(rg.ncattrs()) <= set(sg.ncattrs())
        for name in rg.ncattrs():
            assert type(sg.getncattr(name)) is type(rg.getncattr(name)), name
        for name in ("ProductShortName", "InstrumentName", "MissionShortName", "MissionName", "ProcessLevel",
                     "ProductFormatVersion"):
            assert sg.getncattr(name) == rg.getncattr(name)
        assert set(real["METADATA"].groups) <= set(sim["METADATA"].groups)


@pytest.mark.skipif(REAL_NO2 is None, reason="real NO2 metadata file not found")
def test_dimensions_match_the_real_no2_file(subset, coarse_orbit):
    with netCDF4.Dataset(REAL_NO2) as real, netCDF4.Dataset(subset) as sim:
        rdims = {k: len(v) for k, v in real["PRODUCT"].dimensions.items()}
        sdims = {k: len(v) for k, v in sim["PRODUCT"].dimensions.items()}
    assert set(rdims) == set(sdims)
    for name, size in rdims.items():
        if name != "scanline":
            assert sdims[name] == size, name
    assert sdims["scanline"] == 200
    with netCDF4.Dataset(coarse_orbit) as ds:
        assert len(ds["PRODUCT"].dimensions["scanline"]) == 300
    assert rdims["scanline"] == s5p.N_SCANLINES


def test_groups_exist(subset):
    with netCDF4.Dataset(subset) as ds:
        for path in ("PRODUCT", "PRODUCT/SUPPORT_DATA/GEOLOCATIONS", "PRODUCT/SUPPORT_DATA/DETAILED_RESULTS",
                     "PRODUCT/SUPPORT_DATA/INPUT_DATA", "PRODUCT/SUPPORT_DATA/DETAILED_RESULTS/O22CLD",
                     "METADATA/GRANULE_DESCRIPTION", "METADATA/QA_STATISTICS", "METADATA/ALGORITHM_SETTINGS"):
            assert ds[path] is not None
        assert len(ds.variables) == 0  # like the real files, the root group holds no variables


@pytest.mark.skipif(REAL_CH4 is None, reason="real CH4 subset file not found")
def test_shared_variables_match_the_real_ch4_layout(subset):
    """Same path -> same dtype, dimensions, _FillValue, and at least the real attribute names."""
    with netCDF4.Dataset(REAL_CH4) as real, netCDF4.Dataset(subset) as sim:
        rvars, svars = _walk(real), _walk(sim)
        shared = sorted(set(rvars) & set(svars))
        assert len(shared) >= 25, shared
        for path in shared:
            rv, sv = rvars[path], svars[path]
            assert sv.dtype == rv.dtype, path
            assert sv.dimensions == rv.dimensions, path
            rattrs, sattrs = set(rv.ncattrs()), set(sv.ncattrs())
            missing = rattrs - sattrs - {"missing_value"}
            assert not missing, f"{path}: missing {missing}"
            if "_FillValue" in rattrs:
                rf, sf = rv.getncattr("_FillValue"), sv.getncattr("_FillValue")
                assert rf == sf and np.asarray(rf).dtype == np.asarray(sf).dtype, path
            for name in ("units", "scale_factor", "add_offset", "valid_min", "valid_max"):
                if name in rattrs and path != "/PRODUCT/time":
                    assert sv.getncattr(name) == rv.getncattr(name), (path, name)
        for path in ("/PRODUCT/qa_value", "/PRODUCT/time", "/PRODUCT/delta_time", "/PRODUCT/time_utc",
                     "/PRODUCT/SUPPORT_DATA/GEOLOCATIONS/latitude_bounds", "/PRODUCT/latitude"):
            assert path in shared


def test_no2_variables_harp_reads(subset):
    """The variables HARP 1.16's S5P_L2_NO2 ingestion needs (found by removing each in turn)."""
    float_2d = ("time", "scanline", "ground_pixel")
    with netCDF4.Dataset(subset) as ds:
        p = ds["PRODUCT"]
        for name in ("nitrogendioxide_tropospheric_column", "nitrogendioxide_tropospheric_column_precision",
                     "air_mass_factor_troposphere", "air_mass_factor_total"):
            assert p[name].dimensions == float_2d and p[name].dtype == np.float32
            assert "_FillValue" in p[name].ncattrs()
        col = p["nitrogendioxide_tropospheric_column"]
        assert col.units == "mol m-2"
        assert col.multiplication_factor_to_convert_to_molecules_percm2 == np.float32(6.02214e19)
        assert p["averaging_kernel"].dimensions == float_2d + ("layer",)
        assert p["tm5_constant_a"].dimensions == ("layer", "vertices")
        assert p["tm5_tropopause_layer_index"].dtype == np.int32
        qa = p["qa_value"]
        assert qa.dtype == np.uint8 and qa.scale_factor == np.float32(0.01) and qa.getncattr("_FillValue") == 255
        det = ds["PRODUCT/SUPPORT_DATA/DETAILED_RESULTS"]
        for name in ("nitrogendioxide_stratospheric_column", "nitrogendioxide_stratospheric_column_precision",
                     "nitrogendioxide_summed_total_column", "nitrogendioxide_summed_total_column_precision",
                     "nitrogendioxide_total_column", "nitrogendioxide_total_column_precision",
                     "nitrogendioxide_slant_column_density", "nitrogendioxide_slant_column_density_precision",
                     "air_mass_factor_stratosphere", "cloud_fraction_crb_nitrogendioxide_window",
                     "cloud_radiance_fraction_nitrogendioxide_window"):
            assert det[name].dimensions == float_2d, name
        assert det["processing_quality_flags"].dtype == np.uint32
        inp = ds["PRODUCT/SUPPORT_DATA/INPUT_DATA"]
        for name in ("surface_pressure", "surface_albedo_nitrogendioxide_window", "surface_altitude",
                     "surface_altitude_precision", "snow_ice_flag", "cloud_pressure_crb", "cloud_albedo_crb",
                     "scene_albedo", "apparent_scene_pressure", "aerosol_index_354_388", "eastward_wind",
                     "northward_wind"):
            assert inp[name].dimensions == float_2d, name


def test_time_variables(subset):
    with netCDF4.Dataset(subset) as ds:
        p = ds["PRODUCT"]
        ref = datetime(2010, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=int(p["time"][0]))
        assert ref == datetime(2019, 6, 12, tzinfo=timezone.utc)
        assert ds.time_reference == "2019-06-12T00:00:00Z"
        dt = p["delta_time"][0, :].astype(np.int64)
        assert np.all(np.diff(dt) == 840)
        utc = p["time_utc"][0, :]
        first = datetime.strptime(utc[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert first == ref + timedelta(milliseconds=int(dt[0]))
        assert list(p["scanline"][:][[0, -1]]) == [2450, 2649]  # the orbit's own indices, like GES DISC subsets


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------


def test_pixel_widths_grow_toward_the_swath_edges(subset):
    lat_b = _read(subset, "latitude_bounds", "PRODUCT/SUPPORT_DATA/GEOLOCATIONS")[0].astype(np.float64)
    lon_b = _read(subset, "longitude_bounds", "PRODUCT/SUPPORT_DATA/GEOLOCATIONS")[0].astype(np.float64)
    k = 100
    across = _km(lat_b[k, :, 0], lon_b[k, :, 0], lat_b[k, :, 1], lon_b[k, :, 1])
    along = _km(lat_b[k, :, 0], lon_b[k, :, 0], lat_b[k, :, 3], lon_b[k, :, 3])
    nadir = across[220:230].mean()
    assert 3.2 < nadir < 3.8, nadir  # 3.5 km at nadir
    assert across[0] > 4 * nadir and across[-1] > 4 * nadir  # ~17 km at the edges
    assert np.all(np.diff(across[:224]) < 1e-3) and np.all(np.diff(across[226:]) > -1e-3)
    assert 5.2 < along[225] < 5.9, along[225]  # 0.840 s x ~6.6 km/s
    swath = across.sum()
    assert 2550 < swath < 2750, swath  # ~2600 km


def test_neighbouring_pixels_share_corners(subset):
    lat_b = _read(subset, "latitude_bounds", "PRODUCT/SUPPORT_DATA/GEOLOCATIONS")[0]
    lon_b = _read(subset, "longitude_bounds", "PRODUCT/SUPPORT_DATA/GEOLOCATIONS")[0]
    for b in (lat_b, lon_b):
        np.testing.assert_array_equal(b[:, :-1, 1], b[:, 1:, 0])  # across track
        np.testing.assert_array_equal(b[:, :-1, 2], b[:, 1:, 3])
        np.testing.assert_array_equal(b[:-1, :, 3], b[1:, :, 0])  # along track
        np.testing.assert_array_equal(b[:-1, :, 2], b[1:, :, 1])


def test_corners_surround_centres_counter_clockwise(subset):
    lat = _read(subset, "latitude")[0].astype(np.float64)
    lon = _read(subset, "longitude")[0].astype(np.float64)
    lat_b = _read(subset, "latitude_bounds", "PRODUCT/SUPPORT_DATA/GEOLOCATIONS")[0].astype(np.float64)
    lon_b = _read(subset, "longitude_bounds", "PRODUCT/SUPPORT_DATA/GEOLOCATIONS")[0].astype(np.float64)
    x = (lon_b - lon[..., None]) * np.cos(np.radians(lat[..., None]))
    y = lat_b - lat[..., None]
    area = 0.5 * np.sum(x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y, axis=-1)
    assert np.all(area > 0)  # counter-clockwise, as in the real files
    # the centre is inside: the corner mean is within a fraction of a pixel of it
    d = _km(lat, lon, lat_b.mean(axis=-1), lon_b.mean(axis=-1))
    assert d.max() < 1.5
    # corner 0 is the south-western one in the ascending part of the orbit
    assert np.all(lat_b[..., 0] < lat_b[..., 3]) and np.all(lon_b[..., 0] < lon_b[..., 1])


def test_ground_track_curves_and_longitudes_wrap(coarse_orbit):
    lat = _read(coarse_orbit, "latitude")[0].astype(np.float64)
    lon = _read(coarse_orbit, "longitude")[0].astype(np.float64)
    assert lat.min() < -75 and lat.max() > 80  # pole to pole (the swath reaches past 81.3 deg)
    assert np.all((lon >= -180) & (lon < 180))
    sat_lat = _read(coarse_orbit, "satellite_latitude", "PRODUCT/SUPPORT_DATA/GEOLOCATIONS")[0]
    assert sat_lat.max() == pytest.approx(180 - s5p.INCLINATION_DEG, abs=0.5)  # 81.3 deg turning point
    nadir_lon = lon[:, 225]
    near_eq = np.abs(lat[:, 225]) < 40
    heading = np.degrees(np.arctan2(np.diff(nadir_lon[near_eq]) * np.cos(np.radians(lat[near_eq, 225][1:])),
                                    np.diff(lat[near_eq, 225])))
    assert np.all((heading < -5) & (heading > -25))  # ascending, drifting west (retrograde + Earth rotation)


#: Local solar time of the nadir pixel of the real CH4 orbit 07407 (ascending, 2019-03-19) at 0, 20,
#: 30 and 40 N: the sun-synchronous track reaches mid-latitudes earlier in local time than the node.
REAL_NADIR_LST = ([0.0, 20.0, 30.0, 40.0], [13 + 29 / 60, 13 + 16 / 60, 13 + 9 / 60, 13 + 0 / 60])


def test_overpass_local_solar_time_over_eastern_china(day_files):
    assert 1 <= len(day_files) <= 3
    lats, times = [], []
    for f in day_files:
        with netCDF4.Dataset(f) as ds:
            p = ds["PRODUCT"]
            lat, lon = p["latitude"][0], p["longitude"][0]
            t = int(p["time"][0]) + p["delta_time"][0].astype(np.float64) / 1000.0
        near_nadir = np.zeros(lat.shape, bool)
        near_nadir[:, 215:235] = True
        west, south, east, north = EAST_CHINA
        inside = near_nadir & (lat > south) & (lat < north) & (lon > west) & (lon < east)
        utc_h = (t[:, None] % 86400.0) / 3600.0 + np.zeros(lat.shape)
        times.append((utc_h + lon / 15.0)[inside] % 24)
        lats.append(lat[inside])
    lst, lat = np.concatenate(times), np.concatenate(lats)
    assert lst.size > 100
    assert abs(lst.mean() - 13.5) < 0.5, lst.mean()  # ~13:30 +- 30 min
    expected = np.interp(lat, *REAL_NADIR_LST)
    assert np.all(np.abs(lst - expected) < 4 / 60), np.abs(lst - expected).max() * 60  # within 4 min of real


@pytest.mark.skipif(REAL_CH4 is None, reason="real CH4 subset file not found")
def test_geolocation_close_to_the_real_ch4_orbit():
    """Model pixels at the real orbit 07293's times and scan angles land near the real pixels."""
    with netCDF4.Dataset(REAL_CH4) as ds:
        p = ds["PRODUCT"]
        lat = p["latitude"][0].astype(np.float64)
        lon = p["longitude"][0].astype(np.float64)
        t = float(p["time"][0]) + p["delta_time"][0].astype(np.float64) / 1000.0
        pixels = np.asarray(p["ground_pixel"][:])
        eq_lon = float(ds["METADATA/GRANULE_DESCRIPTION"].LongitudeOfDaysideNadirEquatorCrossing)
    geo = s5p._OrbitGeometry(7293, s5p._seconds(orbit_start_time(7293)), s5p._orbit_period_s(7293))
    rows = np.arange(0, len(t), 40)
    pts, _ = geo.ground_points(t[rows], ((pixels + 0.5) / 215 - 0.5) * s5p.FIELD_OF_VIEW_DEG)  # SWIR: 215
    mlon, mlat = s5p._lonlat(pts)
    geocentric = np.degrees(np.arctan(np.tan(np.radians(lat[rows])) * (6356.752314 / 6378.137) ** 2))
    d = np.ma.masked_invalid(_km(geocentric, lon[rows], mlat, mlon))
    assert np.ma.median(d) < 20 and d.max() < 40, (np.ma.median(d), d.max())
    assert abs(geo.anx_lon_deg - eq_lon) < 0.3


# --------------------------------------------------------------------------------------------------
# Orbits
# --------------------------------------------------------------------------------------------------


def test_orbit_numbers_follow_the_real_file_names():
    assert orbit_start_time(12367) == datetime(2020, 3, 3, 1, 35, 47, tzinfo=timezone.utc)
    assert orbit_start_time(7293) == datetime(2019, 3, 11, 10, 16, 55, tzinfo=timezone.utc)
    # later orbits of 2020-03-03 as listed in the real file's METADATA (extrapolated here)
    for orbit, stamp in ((12368, "20200303T031717"), (12373, "20200303T114449"), (12379, "20200303T215351")):
        real = datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
        assert abs((orbit_start_time(orbit) - real).total_seconds()) < 30, orbit
    assert s5p.orbit_at(datetime(2020, 3, 3, 2, 0, tzinfo=timezone.utc)) == 12367


def test_about_14_orbits_per_day():
    counts = [len(orbits_of_day(date(2021, 7, 1) + timedelta(days=i))) for i in range(16)]
    assert set(counts) <= {14, 15}
    assert abs(sum(counts) - 227) <= 1  # 227 orbits in the 16-day repeat cycle
    days = orbits_of_day(DAY)
    assert days == list(range(days[0], days[0] + len(days)))
    assert orbits_of_day(DAY + timedelta(days=1))[0] == days[-1] + 1


def test_real_granule_times_reproduced(tmp_path):
    """Orbit 12367: the real time_coverage_start is 01:57:22 and the node is at 165.467 E."""
    path = simulate_orbit(tmp_path, 12367, n_scanlines=20)
    with netCDF4.Dataset(path) as ds:
        assert ds.time_coverage_start == "2020-03-03T01:57:22Z"
        node = float(ds["METADATA/GRANULE_DESCRIPTION"].LongitudeOfDaysideNadirEquatorCrossing)
        assert node == pytest.approx(165.467, abs=0.2)
    assert path.name.startswith("S5P_OFFL_L2__NO2____20200303T013547_20200303T031717_12367_03_020400_")


def test_simulate_day_cuts_to_the_bbox(day_files):
    for f in day_files:
        assert NAME_RE.match(f.name)
        with netCDF4.Dataset(f) as ds:
            n = len(ds["PRODUCT"].dimensions["scanline"])
            lat, lon = ds["PRODUCT/latitude"][0], ds["PRODUCT/longitude"][0]
        assert 50 < n < 1500
        west, south, east, north = EAST_CHINA
        assert np.any((lat > south) & (lat < north) & (lon > west) & (lon < east))
    assert scanlines_crossing(ORBIT, (-60, -10, -50, 0)) is None  # South America: not on this pass


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


def test_truth_column_field():
    bj = next(s for s in DEFAULT_SOURCES if s.name == "Beijing")
    assert truth_column(bj.lon, bj.lat) == pytest.approx(s5p.BACKGROUND_MOL_M2 + bj.peak_mol_m2, rel=0.1)
    assert truth_column(0.0, 0.0) == pytest.approx(s5p.BACKGROUND_MOL_M2)
    assert truth_column(bj.lon + 360.0, bj.lat) == pytest.approx(truth_column(bj.lon, bj.lat))
    for src in DEFAULT_SOURCES:
        assert 1e-4 <= src.peak_mol_m2 <= 3e-4
    one = [EmissionSource("x", 10.0, 50.0, 2e-4, 20.0)]
    lat = 50.0 + np.array([0.0, 20.0, 40.0]) / 111.195
    values = truth_column(np.full(3, 10.0), lat, one) - s5p.BACKGROUND_MOL_M2
    np.testing.assert_allclose(values, 2e-4 * np.exp(-0.5 * np.array([0.0, 1.0, 4.0])), rtol=1e-3)


def test_values_noise_clouds_and_quality(subset):
    with netCDF4.Dataset(subset) as ds:
        p = ds["PRODUCT"]
        for v in (p["qa_value"], p["nitrogendioxide_tropospheric_column"]):
            v.set_auto_maskandscale(False)
        qa = p["qa_value"][0]
        col = p["nitrogendioxide_tropospheric_column"][0].astype(np.float64)
        prec_k = p["nitrogendioxide_tropospheric_column_precision_kernel"][0].astype(np.float64)
        prec = p["nitrogendioxide_tropospheric_column_precision"][0].astype(np.float64)
        lat, lon = p["latitude"][0], p["longitude"][0]
        crf = ds["PRODUCT/SUPPORT_DATA/DETAILED_RESULTS/cloud_radiance_fraction_nitrogendioxide_window"][0]
    assert set(np.unique(qa)) <= {0, 74, 100}
    assert np.all(col[qa == 0] == s5p.FILL_FLOAT)
    assert np.all(col[qa > 0] < 1.0)
    cloudy = np.mean(qa == 74)
    assert 0.1 < cloudy < 0.6, cloudy
    assert np.all(crf[qa == 74] > 0.5) and np.all(crf[qa == 100] <= 0.5)
    good = qa == 100
    z = (col[good] - truth_column(lon[good], lat[good])) / prec_k[good]
    assert abs(z.mean()) < 0.05 and 0.9 < z.std() < 1.1
    assert 0.5e-5 < np.median(np.ma.filled(prec[good], np.nan)) < 2e-5  # precision ~1e-5 mol m-2
    # cloud fraction has spatial structure: neighbours are strongly correlated, unlike noise
    a = crf[:, :-1].ravel()
    b = crf[:, 1:].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_night_pixels_are_fill(coarse_orbit):
    with netCDF4.Dataset(coarse_orbit) as ds:
        p = ds["PRODUCT"]
        p["qa_value"].set_auto_maskandscale(False)
        p["nitrogendioxide_tropospheric_column"].set_auto_maskandscale(False)
        qa = p["qa_value"][0]
        col = p["nitrogendioxide_tropospheric_column"][0]
        sza = ds["PRODUCT/SUPPORT_DATA/GEOLOCATIONS/solar_zenith_angle"][0]
        flags = ds["PRODUCT/SUPPORT_DATA/DETAILED_RESULTS/processing_quality_flags"][0]
    night = sza > s5p.SZA_MAX_DEG
    assert night.sum() > 1000  # June: the southern end of the day-side window is in polar night
    assert np.all(col[night] == s5p.FILL_FLOAT) and np.all(qa[night] == 0)
    assert np.all(flags[night] == s5p.FLAG_SZA_RANGE_ERROR)
    assert sza[~night].min() >= 0 and np.all(qa[~night & (col != s5p.FILL_FLOAT)] > 0)


def test_deterministic_with_seed_and_subsets_match_the_orbit(tmp_path, subset):
    a = simulate_orbit(tmp_path / "a", ORBIT, seed=7, scanline_range=(2500, 2560))
    b = simulate_orbit(tmp_path / "b", ORBIT, seed=8, scanline_range=(2500, 2560))
    col = "nitrogendioxide_tropospheric_column"
    ref = _read(subset, col, raw=True)[0, 50:110]
    np.testing.assert_array_equal(_read(a, col, raw=True)[0], ref)  # same seed: same values as the bigger slice
    np.testing.assert_array_equal(_read(a, "qa_value", raw=True)[0], _read(subset, "qa_value", raw=True)[0, 50:110])
    np.testing.assert_array_equal(_read(a, "latitude")[0], _read(b, "latitude")[0])  # geometry has no noise
    assert not np.array_equal(_read(b, col, raw=True)[0], ref)


# --------------------------------------------------------------------------------------------------
# Errors and CLI
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [dict(scanline_range=(10, 5)), dict(scanline_range=(0, 5000)),
                                    dict(mode="XXXX"), dict(processor="2.4.0"), dict(n_scanlines=1)])
def test_bad_arguments_raise_input_error(tmp_path, kwargs):
    with pytest.raises(InputError):
        simulate_orbit(tmp_path, ORBIT, **kwargs)


def test_cli_writes_and_prints_paths(tmp_path, capsys):
    assert main(["--orbit", str(ORBIT), "--bbox", "115,25,118,28", "--seed", "1", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out.split()
    assert len(out) == 1 and Path(out[0]).exists() and NAME_RE.match(Path(out[0]).name)


@pytest.mark.parametrize("argv", [[], ["--date", "2019-13-01", "-o", "x"], ["--date", "2019-06-12"],
                                  ["--date", "2019-06-12", "--bbox", "1,2,3", "-o", "x"],
                                  ["--date", "2019-06-12", "--bbox", "130,10,120,30", "-o", "x"],
                                  ["--orbit", "1", "--date", "2019-06-12", "-o", "x"]])
def test_cli_bad_arguments(argv):
    with pytest.raises(InputError):
        main(argv)
