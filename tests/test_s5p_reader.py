"""Sentinel-5P L2 reader: real sample files, written real-layout fixtures, and bad inputs."""

from __future__ import annotations

import pickle
import sys
from datetime import datetime, timezone
from pathlib import Path

import dask
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from s5pfixtures import (  # noqa: E402
    MOLECULES_FACTOR,
    SCANLINE_MS,
    centre,
    expected_qa_raw,
    expected_value,
    s5p_name,
    truncate,
    write_plain_netcdf,
    write_s5p_l2,
)

from rsmon.errors import FormatError, NoDataError, RsmonError, UnsupportedFormatError  # noqa: E402
from rsmon.io.s5p import (  # noqa: E402
    QA_RAW_FILL,
    open_s5p,
    parse_s5p_filename,
    read_metadata,
    sniff_s5p,
)

from paths import SHARED_DATA as DATA  # noqa: E402
CH4_DIR = DATA / "s5p-ch4-subset"
CH4_SUB = CH4_DIR / "S5P_OFFL_L2__CH4____20190311T101655_20190311T115825_07293_01_010202_20190317T121015.SUB.nc4"
CH4_ORBIT = CH4_DIR / ("test_var_subsetting_tropomi_S5P_OFFL_L2__CH4____20190319T110835_20190319T125006_07407_01_"
                       "010202_20190325T125810_subset.nc4")
NO2_META_DIR = DATA / "s5p-no2-metadata-only"
NO2_META = NO2_META_DIR / "S5P_OFFL_L2__NO2____20200303T013547_20200303T031717_12367_01_010302_20200306T053815.nc"

needs_ch4 = pytest.mark.skipif(not CH4_DIR.is_dir(), reason=f"sample folder {CH4_DIR} is absent")
needs_no2_meta = pytest.mark.skipif(not NO2_META_DIR.is_dir(), reason=f"sample folder {NO2_META_DIR} is absent")

START = datetime(2019, 8, 10, 4, 30, tzinfo=timezone.utc)


class CountingScheduler:
    """A dask scheduler that counts computes (satpy's ``assert_maximum_dask_computes`` idea)."""

    def __init__(self) -> None:
        self.computes = 0

    def __call__(self, dsk, keys, **kwargs):
        self.computes += 1
        return dask.get(dsk, keys, **kwargs)


# --------------------------------------------------------------------------------------------------
# File names
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, product, mode, orbit, processor", [
    ("S5P_OFFL_L2__NO2____20180709T170334_20180709T184504_03821_01_010002_20180715T184729.nc",
     "NO2", "OFFL", 3821, "010002"),
    (CH4_SUB.name, "CH4", "OFFL", 7293, "010202"),
    (CH4_ORBIT.name, "CH4", "OFFL", 7407, "010202"),
    ("S5P_RPRO_L2__NO2____20180430T001851_20180430T020219_02818_03_020400_20221220T142437_reduced.nc",
     "NO2", "RPRO", 2818, "020400"),
    ("S5P_PAL__L2__AER_AI_20190101T000000_20190101T014130_06389_03_020400_20221201T000000.nc",
     "AER_AI", "PAL_", 6389, "020400"),
    ("/some/folder/S5P_NRTI_L2__CH4____20200101T101010_20200101T102510_11500_01_010302_20200101T120000.nc4",
     "CH4", "NRTI", 11500, "010302"),
])
def test_parse_filename_lenient(name, product, mode, orbit, processor):
    parsed = parse_s5p_filename(name)
    assert parsed is not None
    assert (parsed.product, parsed.mode, parsed.orbit, parsed.processor) == (product, mode, orbit, processor)
    assert parsed.start.tzinfo is timezone.utc and parsed.start < parsed.end
    assert parsed.level == "L2"


def test_parse_filename_fields():
    parsed = parse_s5p_filename(CH4_SUB.name)
    assert parsed.start == datetime(2019, 3, 11, 10, 16, 55, tzinfo=timezone.utc)
    assert parsed.end == datetime(2019, 3, 11, 11, 58, 25, tzinfo=timezone.utc)
    assert parsed.production == datetime(2019, 3, 17, 12, 10, 15, tzinfo=timezone.utc)
    assert parsed.collection == 1
    assert parsed.processor_version == "1.2.2"


@pytest.mark.parametrize("name", [
    "LC08_L2SP_119038_20200101_20200113_02_T1.tif",
    "S5P_OFFL_L2__NO2____2018.nc",
    "S5P_OFFL_L2__NO2____20181309T170334_20180709T184504_03821_01_010002_20180715T184729.nc",  # month 13
    "stations.csv",
    "",
])
def test_parse_filename_rejects(name):
    assert parse_s5p_filename(name) is None


# --------------------------------------------------------------------------------------------------
# Real files
# --------------------------------------------------------------------------------------------------

@needs_ch4
def test_real_ch4_subset_values():
    ds = open_s5p(CH4_SUB)
    assert ds.sizes["scanline"] == 293 and ds.sizes["ground_pixel"] == 25 and ds.sizes["corner"] == 4
    assert ds.attrs["product"] == "CH4" and ds.attrs["main_variable"] == "xch4"
    assert ds.attrs["orbit"] == 7293 and ds.attrs["mode"] == "OFFL"
    assert ds.attrs["processor_version"] == "1.2.2" and ds.attrs["processor"] == "010202"
    assert ds.attrs["source_path"] == str(CH4_SUB.resolve())
    assert ds.attrs["platform"] == "Sentinel-5P" and ds.attrs["instrument"] == "TROPOMI"
    assert ds["xch4"].attrs["units"] == "ppb"
    assert ds["xch4"].attrs["source_variable"] == "methane_mixing_ratio"
    assert ds["xch4"].attrs["standard_name"] == "dry_atmosphere_mole_fraction_of_methane"
    assert ds["latitude"].dtype == np.float32 and ds["latitude_bounds"].dims == ("scanline", "ground_pixel", "corner")

    ds = ds.compute()
    # fill 9.96921e36 is masked everywhere
    for name in ("xch4", "xch4_bias_corrected", "xch4_precision", "latitude", "latitude_bounds"):
        assert np.nanmax(np.abs(ds[name].values)) < 1e30, name
    xch4 = ds["xch4"].values
    assert np.isfinite(xch4).sum() == 3
    assert np.all((xch4[np.isfinite(xch4)] > 1825) & (xch4[np.isfinite(xch4)] < 1915))
    # atmos.md 1.3 quotes 1825-1893 ppb: those are the bias-corrected values
    corrected = ds["xch4_bias_corrected"].values
    finite = corrected[np.isfinite(corrected)]
    assert finite.size == 3 and finite.min() >= 1825.0 and finite.max() <= 1893.0

    qa = ds["qa_value"].values
    assert qa.dtype == np.float32
    assert np.sum(qa == 0) == 3167
    assert np.sum(np.isclose(qa, 0.40)) == 3
    assert np.isnan(qa).sum() == 4155
    raw = ds["qa_value_raw"].values
    assert raw.dtype == np.uint8
    assert np.sum(raw == 0) == 3167 and np.sum(raw == 40) == 3 and np.sum(raw == QA_RAW_FILL) == 4155
    # the three retrievals are exactly the qa 0.4 pixels
    assert np.array_equal(np.isfinite(xch4), raw == 40)

    t = ds["time_utc"].values
    assert t.dtype == np.dtype("datetime64[ns]")
    assert np.all(t >= np.datetime64("2019-03-11T10:38")) and np.all(t <= np.datetime64("2019-03-11T11:37"))


@needs_ch4
def test_real_ch4_time_matches_file_time_utc_strings():
    import netCDF4

    ds = open_s5p(CH4_SUB)
    with netCDF4.Dataset(CH4_SUB) as nc:
        strings = nc["PRODUCT/time_utc"][0, [0, -1]]
    expected = np.array([np.datetime64(s.rstrip("Z")) for s in strings])
    got = ds["time_utc"].values[[0, -1]]
    assert np.all(np.abs(got - expected) < np.timedelta64(1, "ms"))


@needs_ch4
def test_real_full_orbit_opens_lazily():
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        with pytest.raises(FormatError, match="PRODUCT/SUPPORT_DATA/GEOLOCATIONS/latitude_bounds"):
            open_s5p(CH4_ORBIT)
        with pytest.raises(FormatError, match="PRODUCT/qa_value"):
            open_s5p(CH4_ORBIT, require_bounds=False)
        ds = open_s5p(CH4_ORBIT, require_bounds=False, require_qa=False)
        assert counter.computes == 0
        assert ds.sizes["scanline"] == 3245 and ds.sizes["ground_pixel"] == 215
        for name in ("xch4", "latitude", "longitude", "time_utc"):
            assert isinstance(ds[name].data, dask.array.Array), name
        # default dask chunks follow the file's own HDF5 chunking (here one chunk per variable)
        import netCDF4
        with netCDF4.Dataset(CH4_ORBIT) as nc:
            stored = nc["PRODUCT/methane_mixing_ratio"].chunking()
        assert ds["xch4"].data.chunksize[0] == (3245 if stored == "contiguous" else stored[1])
        explicit = open_s5p(CH4_ORBIT, require_bounds=False, require_qa=False, chunks={"scanline": 512})
        assert explicit["xch4"].data.chunksize[0] == 512
        assert "qa_value" not in ds and "latitude_bounds" not in ds
        pickle.dumps(ds)
        assert counter.computes == 0
        # the guard is live: one compute is counted
        n_valid = int(np.isfinite(ds["xch4"]).sum().compute())
        assert counter.computes == 1
    assert n_valid == 52210


@needs_ch4
def test_real_read_metadata_ch4_subset():
    meta = read_metadata(CH4_SUB)
    assert meta["product"] == "CH4" and meta["orbit"] == 7293 and meta["processor"] == "010202"
    west, south, east, north = meta["bbox"]
    # the subset lies in lon 13.7..20.0, lat 12.1..30.0 (pixel corners reach a little further)
    assert 13.0 < west < 13.8 and 19.9 < east < 20.5 and 11.8 < south < 12.2 and 29.9 < north < 30.3
    assert meta["footprint"]["type"] == "Polygon"
    assert meta["footprint_source"] == "pixel_bounds"
    assert meta["start_datetime"] >= datetime(2019, 3, 11, 10, 38, tzinfo=timezone.utc)
    assert meta["end_datetime"] <= datetime(2019, 3, 11, 11, 37, tzinfo=timezone.utc)
    assert "xch4" in meta["variables"] and meta["variable_details"]["xch4"]["units"] == "ppb"


@needs_no2_meta
def test_real_metadata_only_no2_raises_nodata():
    with pytest.raises(NoDataError) as info:
        open_s5p(NO2_META)
    assert str(NO2_META) in str(info.value)
    assert "metadata only" in str(info.value)


@needs_no2_meta
def test_real_metadata_only_no2_metadata():
    parsed = parse_s5p_filename(NO2_META.name)
    assert (parsed.orbit, parsed.processor, parsed.mode, parsed.product) == (12367, "010302", "OFFL", "NO2")
    meta = read_metadata(NO2_META)
    assert (meta["orbit"], meta["processor"], meta["mode"], meta["product"]) == (12367, "010302", "OFFL", "NO2")
    assert meta["processor_version"] == "1.3.2"
    assert meta["has_pixel_data"] is False and meta["variables"] == []
    assert meta["dims"] == {"scanline": 4172, "ground_pixel": 450}
    assert meta["start_datetime"] == datetime(2020, 3, 3, 1, 57, 22, tzinfo=timezone.utc)
    assert meta["footprint_source"] == "attributes"
    assert meta["bbox"][0] == -180.0 and meta["bbox"][2] == 180.0


# --------------------------------------------------------------------------------------------------
# Written fixtures
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def no2_file(tmp_path_factory) -> Path:
    return write_s5p_l2(tmp_path_factory.mktemp("no2"), "NO2", start=START)


def test_fixture_no2_round_trip(no2_file):
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        ds = open_s5p(no2_file)
    assert counter.computes == 0
    assert ds.attrs["product"] == "NO2" and ds.attrs["main_variable"] == "tropospheric_no2_column"
    assert ds.attrs["orbit"] == 9355 and ds.attrs["mode"] == "OFFL" and ds.attrs["collection"] == 1
    assert ds.attrs["time_coverage_start"] == "2019-08-10T04:30:00Z"
    assert set(ds.dims) == {"scanline", "ground_pixel", "corner"}

    col = ds["tropospheric_no2_column"]
    assert col.attrs["units"] == "mol m-2"
    assert col.attrs["standard_name"] == "troposphere_mole_content_of_nitrogen_dioxide"
    assert col.attrs["source_variable"] == "nitrogendioxide_tropospheric_column"
    factor = col.attrs["multiplication_factor_to_convert_to_molecules_percm2"]
    assert isinstance(factor, float) and factor == pytest.approx(float(MOLECULES_FACTOR))
    assert ds["tropospheric_no2_column_precision"].attrs["units"] == "mol m-2"

    ds = ds.compute()
    ii, jj = np.meshgrid(np.arange(12), np.arange(8), indexing="ij")
    fill = np.zeros(ii.shape, bool)
    fill[0, 0] = fill[3, 5] = True
    for name, source in (("tropospheric_no2_column", "nitrogendioxide_tropospheric_column"),
                         ("tropospheric_no2_column_precision", "nitrogendioxide_tropospheric_column_precision")):
        values = ds[name].values
        assert values.dtype == np.float32
        assert np.all(np.isnan(values[fill]))
        np.testing.assert_array_equal(values[~fill], expected_value(source, ii, jj)[~fill])

    lon, lat = centre(ii, jj, 116.0, 39.0, 0.05, 0.03)
    np.testing.assert_allclose(ds["longitude"].values, lon, rtol=1e-6)
    np.testing.assert_allclose(ds["latitude"].values, lat, rtol=1e-6)
    assert ds["longitude"].dtype == np.float32
    # corner 2 of pixel (i, j) is corner 0 of pixel (i+1, j+1)
    np.testing.assert_allclose(ds["latitude_bounds"].values[:-1, :-1, 2], ds["latitude_bounds"].values[1:, 1:, 0],
                               rtol=1e-6)

    raw = ds["qa_value_raw"].values
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(raw[fill], QA_RAW_FILL)
    np.testing.assert_array_equal(raw[~fill], expected_qa_raw(ii, jj)[~fill])
    qa = ds["qa_value"].values
    assert qa.dtype == np.float32
    assert np.all(np.isnan(qa[fill]))
    np.testing.assert_allclose(qa[~fill], raw[~fill] / 100.0, atol=1e-6)
    assert np.nanmax(qa) <= 1.0

    expected_t = np.datetime64("2019-08-10T04:30:00", "ns") + np.arange(12) * np.timedelta64(SCANLINE_MS, "ms")
    np.testing.assert_array_equal(ds["time_utc"].values, expected_t)


def test_fixture_pickles_and_computes_after_unpickling(no2_file):
    ds = open_s5p(no2_file)
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone["qa_value_raw"].values, ds["qa_value_raw"].values)
    np.testing.assert_array_equal(clone["time_utc"].values, ds["time_utc"].values)


def test_fixture_custom_chunks(no2_file):
    ds = open_s5p(no2_file, chunks={"scanline": 5})
    assert ds["tropospheric_no2_column"].data.chunks[0] == (5, 5, 2)
    assert ds["time_utc"].data.chunks[0] == (5, 5, 2)
    assert ds["latitude_bounds"].data.chunks[2] == (4,)


def test_fixture_delta_time_per_pixel(tmp_path):
    path = write_s5p_l2(tmp_path, "NO2", start=START, delta_time_per_pixel=True)
    ds = open_s5p(path)
    assert ds["time_utc"].dims == ("scanline",)
    expected_t = np.datetime64("2019-08-10T04:30:00", "ns") + np.arange(12) * np.timedelta64(SCANLINE_MS, "ms")
    # pixel (1, 0) of delta_time is fill: the scanline time comes from the other pixels
    np.testing.assert_array_equal(ds["time_utc"].values, expected_t)


def test_fixture_ch4_and_aer_ai(tmp_path):
    ch4 = open_s5p(write_s5p_l2(tmp_path / "ch4", "CH4", start=START)).compute()
    assert ch4.attrs["main_variable"] == "xch4"
    assert {"xch4", "xch4_bias_corrected", "xch4_precision"} <= set(ch4.data_vars)
    assert ch4["xch4"].attrs["units"] == "ppb"
    assert ch4["xch4"].values[2, 3] == pytest.approx(1802.03, abs=1e-3)
    assert ch4["xch4_bias_corrected"].values[2, 3] == pytest.approx(1792.03, abs=1e-3)
    assert "multiplication_factor_to_convert_to_molecules_percm2" not in ch4["xch4"].attrs

    aer = open_s5p(write_s5p_l2(tmp_path / "aer", "AER_AI", start=START)).compute()
    assert aer.attrs["product"] == "AER_AI" and aer.attrs["main_variable"] == "aerosol_index_354_388"
    for name in ("aerosol_index_354_388", "aerosol_index_340_380",
                 "aerosol_index_354_388_precision", "aerosol_index_340_380_precision"):
        assert name in aer.data_vars
        assert "standard_name" not in aer[name].attrs
    assert aer["aerosol_index_354_388"].values[5, 2] == pytest.approx(0.3)
    assert aer["aerosol_index_340_380"].values[5, 2] == pytest.approx(0.8)


def test_product_from_metadata_when_name_is_not_s5p(tmp_path):
    path = write_s5p_l2(tmp_path, "CH4", name="granule.nc")
    ds = open_s5p(path)
    assert ds.attrs["product"] == "CH4" and ds.attrs["orbit"] == 9355
    # no granule description either: the global id/title attributes still tell
    path = write_s5p_l2(tmp_path / "nometa", "AER_AI", name="granule.nc", omit_groups=("METADATA",))
    assert open_s5p(path).attrs["product"] == "AER_AI"


def test_explicit_product_overrides_detection(no2_file):
    assert open_s5p(no2_file, product="l2__no2___").attrs["product"] == "NO2"
    with pytest.raises(FormatError, match="PRODUCT/methane_mixing_ratio"):
        open_s5p(no2_file, product="CH4")
    with pytest.raises(UnsupportedFormatError, match="'O3'"):
        open_s5p(no2_file, product="O3")


def test_extra_variables(no2_file):
    ds = open_s5p(no2_file, extra_variables=["SUPPORT_DATA/INPUT_DATA/surface_pressure",
                                             "PRODUCT/SUPPORT_DATA/GEOLOCATIONS/solar_zenith_angle"])
    assert ds["surface_pressure"].dims == ("scanline", "ground_pixel")
    assert ds["surface_pressure"].attrs["units"] == "Pa"
    assert float(ds["surface_pressure"][4, 0]) == 100004.0
    assert float(ds["solar_zenith_angle"][2, 5]) == pytest.approx(32.5)
    with pytest.raises(FormatError, match="INPUT_DATA/no_such_thing"):
        open_s5p(no2_file, extra_variables=["SUPPORT_DATA/INPUT_DATA/no_such_thing"])


def test_optional_bounds_and_qa(tmp_path):
    path = write_s5p_l2(tmp_path, omit_groups=("GEOLOCATIONS",), omit_variables=("qa_value",))
    ds = open_s5p(path, require_bounds=False, require_qa=False)
    assert "latitude_bounds" not in ds and "qa_value" not in ds and "qa_value_raw" not in ds
    assert "bounds" not in ds["latitude"].attrs


def test_read_metadata_fixture(no2_file):
    meta = read_metadata(no2_file)
    assert meta["product"] == "NO2" and meta["orbit"] == 9355 and meta["mode"] == "OFFL"
    assert meta["start_datetime"] == START
    assert meta["end_datetime"] == datetime(2019, 8, 10, 4, 30, 9, 240000, tzinfo=timezone.utc)
    west, south, east, north = meta["bbox"]
    assert west == pytest.approx(115.975, abs=1e-4) and east == pytest.approx(116.375, abs=1e-4)
    assert south == pytest.approx(38.9845, abs=1e-4) and north == pytest.approx(39.3525, abs=1e-4)
    assert meta["footprint"]["type"] == "Polygon"


def test_read_metadata_antimeridian(tmp_path):
    path = write_s5p_l2(tmp_path, lon0=179.8, dlon=0.1)  # lon 179.8 .. 180.5 -> wraps to -179.5
    meta = read_metadata(path)
    west, _, east, _ = meta["bbox"]
    assert west > east  # RFC 7946: a bbox crossing the antimeridian has west > east
    assert west == pytest.approx(179.75, abs=1e-3) and east == pytest.approx(-179.45, abs=1e-3)
    assert meta["footprint"]["type"] == "MultiPolygon"


def test_sniff(no2_file, tmp_path):
    assert sniff_s5p(no2_file)
    renamed = write_s5p_l2(tmp_path, name="renamed.nc")
    assert sniff_s5p(renamed)  # by content: PRODUCT group + sensor TROPOMI
    assert not sniff_s5p(write_plain_netcdf(tmp_path / "plain.nc"))
    (tmp_path / "x.txt").write_text("hello")
    assert not sniff_s5p(tmp_path / "x.txt")
    assert not sniff_s5p(tmp_path / "missing.nc")


# --------------------------------------------------------------------------------------------------
# Bad inputs: the right class, and the path in the message
# --------------------------------------------------------------------------------------------------

def _bad_inputs(folder: Path) -> dict[str, tuple[Path, type, str]]:
    text = folder / "stations.txt"
    text.write_text("station,lat,lon\nA,39.9,116.4\n")
    return {
        "truncated": (truncate(write_s5p_l2(folder / "trunc")), FormatError, "truncated"),
        "no geolocations": (write_s5p_l2(folder / "geo", omit_groups=("GEOLOCATIONS",)), FormatError,
                            "PRODUCT/SUPPORT_DATA/GEOLOCATIONS"),
        "no longitude bounds": (write_s5p_l2(folder / "lonb", omit_variables=("longitude_bounds",)), FormatError,
                                "GEOLOCATIONS/longitude_bounds"),
        "no product variable": (write_s5p_l2(folder / "var", omit_variables=("nitrogendioxide_tropospheric_column",)),
                                FormatError, "PRODUCT/nitrogendioxide_tropospheric_column"),
        "no latitude": (write_s5p_l2(folder / "lat", omit_variables=("latitude",)), FormatError, "PRODUCT/latitude"),
        "no qa": (write_s5p_l2(folder / "qa", omit_variables=("qa_value",)), FormatError, "PRODUCT/qa_value"),
        "metadata only": (write_s5p_l2(folder / "meta", metadata_only=True), NoDataError, "metadata only"),
        "plain netcdf": (write_plain_netcdf(folder / "plain.nc"), UnsupportedFormatError,
                         "not a Sentinel-5P L2 file"),
        "text file": (text, FormatError, "not a NetCDF/HDF5 file"),
        "nonexistent": (folder / "S5P_missing.nc", FormatError, "does not exist"),
    }


def test_bad_inputs(tmp_path):
    for case, (path, cls, words) in _bad_inputs(tmp_path).items():
        with pytest.raises(cls) as info:
            open_s5p(path)
        assert isinstance(info.value, RsmonError), case
        if cls is FormatError:  # not a subclass (UnsupportedFormatError) by accident
            assert type(info.value) is FormatError, case
        message = str(info.value)
        assert str(path) in message, (case, message)
        assert words in message, (case, message)


def test_errors_are_builtin_compatible(tmp_path):
    with pytest.raises(OSError):
        open_s5p(tmp_path / "nothing.nc")
    with pytest.raises(ValueError):
        open_s5p(write_s5p_l2(tmp_path, metadata_only=True))


def test_shape_mismatch_is_reported(tmp_path):
    import netCDF4

    path = write_s5p_l2(tmp_path)
    with netCDF4.Dataset(path, "a") as nc:
        prod = nc["PRODUCT"]
        prod.createDimension("other", 3)
        prod.renameVariable("nitrogendioxide_tropospheric_column", "old")
        v = prod.createVariable("nitrogendioxide_tropospheric_column", "f4", ("time", "scanline", "other"))
        v[:] = 0.0
    with pytest.raises(FormatError, match=r"PRODUCT/nitrogendioxide_tropospheric_column has dimensions"):
        open_s5p(path)


def test_name_helper_matches_parser():
    parsed = parse_s5p_filename(s5p_name("AER_AI", START, 123))
    assert parsed.product == "AER_AI" and parsed.orbit == 123 and parsed.start == START


# --------------------------------------------------------------------------------------------------
# Threads: tasks open files by path and compute concurrently (dask.distributed workers do this)
# --------------------------------------------------------------------------------------------------

def test_concurrent_open_metadata_and_compute(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    paths = [write_s5p_l2(tmp_path / str(i), "NO2", n_scanline=200, n_ground_pixel=40, orbit=100 + i)
             for i in range(4)]
    if CH4_DIR.is_dir():
        paths.append(CH4_SUB)

    def task(path):
        meta = read_metadata(path)
        ds = open_s5p(path, chunks={"scanline": 32})
        total = float(np.isfinite(ds[ds.attrs["main_variable"]]).sum().compute())
        return meta["orbit"], total

    with ThreadPoolExecutor(6) as pool:
        results = [list(pool.map(task, paths)) for _ in range(4)]
    assert all(r == results[0] for r in results)
    assert [orbit for orbit, _ in results[0][:4]] == [100, 101, 102, 103]
    assert results[0][0][1] == 200 * 40 - 2  # two fill pixels per fixture


def test_pickled_dataset_shares_the_process_lock(no2_file):
    from rsmon.io import s5p

    ds = pickle.loads(pickle.dumps(open_s5p(no2_file)))
    assert pickle.loads(pickle.dumps(s5p._NC_LOCK)) is s5p._NC_LOCK
    assert float(ds["tropospheric_no2_column"].sum()) > 0
