"""COG writer: real COG layout, exact georeferencing, values that encode their own coordinates,
NaN-aware overviews, metadata round trip and atomic output."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import numpy as np
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate

import rsmon
import rsmon.io.cog as cog
from rsmon.errors import InputError, OutputError
from rsmon.grid import LonLatGrid
from rsmon.io.cog import COGProfile, read_cog_tags, write_cog
from rsmon.provenance import InputRef, Provenance

# 600 x 700 cells at 0.05 degrees: larger than one 512 block, so one overview level exists.
from l3fixtures import GRID, expected_value, make_product  # noqa: E402
VARS = ("tropospheric_no2_column", "weight", "count")


def make_provenance() -> Provenance:
    return Provenance(
        inputs=[
            InputRef("/data/S5P_OFFL_L2__NO2____20190612T040000_20190612T054000_08600_01_010302_20190618T061000.nc",
                     sha256="0" * 64, start=datetime(2019, 6, 12, 4, tzinfo=timezone.utc)),
            InputRef("/data/S5P_OFFL_L2__NO2____20190612T054000_20190612T072000_08601_01_010302_20190618T070000.nc"),
        ],
        parameters={"qa_min": 0.75, "grid": GRID.to_dict(), "bbox": [100.0, 20.0, 135.0, 50.0]},
        created=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    )


@pytest.fixture(scope="module")
def product() -> xr.Dataset:
    return make_product()


@pytest.fixture(scope="module")
def cog_path(tmp_path_factory, product) -> str:
    path = tmp_path_factory.mktemp("cog") / "no2_2019-06-12.tif"
    assert write_cog(path, product, GRID, make_provenance()) == path
    return str(path)


def test_cog_validates_as_cloud_optimized(cog_path):
    is_valid, errors, warnings = cog_validate(cog_path, quiet=True)
    assert is_valid, errors
    assert errors == []


def test_cog_layout_tiles_compression_overviews(cog_path):
    with rasterio.open(cog_path) as src:
        assert src.count == 3
        assert src.dtypes == ("float32",) * 3
        assert src.block_shapes == [(512, 512)] * 3
        structure = src.tags(ns="IMAGE_STRUCTURE")
        assert structure["COMPRESSION"] in ("ZSTD", "DEFLATE")
        assert structure["PREDICTOR"] == "3"
        assert structure.get("LAYOUT") == "COG"
        assert src.overviews(1) == [2]  # 700x600 -> 350x300 fits in one block
        assert np.isnan(src.nodata)
        assert src.descriptions == VARS


def test_cog_georeferencing_is_exact(cog_path):
    with rasterio.open(cog_path) as src:
        assert src.transform == GRID.transform
        assert src.crs.to_epsg() == 4326
        assert (src.height, src.width) == GRID.shape
        assert src.bounds == pytest.approx(GRID.bounds, abs=1e-12)


@pytest.mark.parametrize("row,col", [(0, 0), (1, 1), (0, 699), (599, 0), (599, 698), (123, 456), (300, 351)])
def test_cog_pixel_equals_value_of_its_cell_centre(cog_path, product, row, col):
    lon, lat = GRID.lon_centers()[col], GRID.lat_centers()[row]
    with rasterio.open(cog_path) as src:
        assert src.index(lon, lat) == (row, col)
        window = rasterio.windows.Window(col, row, 1, 1)
        mean, weight, count = (src.read(b, window=window)[0, 0] for b in (1, 2, 3))
    expected_count = (row + 3 * col) % 7
    assert count == expected_count
    if expected_count == 0:
        assert np.isnan(mean) and np.isnan(weight)
    else:
        assert mean == expected_value(lon, lat)
        assert weight == np.float32(expected_count * 0.25)


def test_cog_full_band_round_trip(cog_path, product):
    with rasterio.open(cog_path) as src:
        data = src.read()
    for i, name in enumerate(VARS):
        np.testing.assert_array_equal(data[i], product[name].values.astype(np.float32))


def test_cog_metadata_and_provenance_round_trip(cog_path):
    meta = read_cog_tags(cog_path)
    tags = meta["tags"]
    assert tags["product"] == "no2"
    assert tags["period"] == "day"
    assert tags["period_label"] == "2019-06-12"
    assert tags["time_coverage_start"] == "2019-06-12T00:00:00Z"
    assert tags["time_coverage_end"] == "2019-06-12T23:59:59Z"
    assert tags["rsmon_version"] == rsmon.__version__
    assert tags["rsmon_input_count"] == "2"
    assert tags["OVERVIEW_RESAMPLING"] == "AVERAGE"
    prov = meta["provenance"]
    expected = make_provenance()
    assert prov == expected
    assert prov.inputs[0].sha256 == "0" * 64
    assert prov.inputs[0].id.startswith("S5P_OFFL_L2__NO2____20190612T040000")
    assert prov.parameters["qa_min"] == 0.75

    bands = meta["bands"]
    assert [b["name"] for b in bands] == list(VARS)
    assert [b["units"] for b in bands] == ["mol m-2", "1", "1"]
    assert all(b["scale"] == 1.0 and b["offset"] == 0.0 for b in bands)
    no2 = bands[0]["tags"]
    assert no2["units"] == "mol m-2"
    assert no2["standard_name"] == "troposphere_mole_content_of_nitrogen_dioxide"
    assert no2["long_name"].startswith("tropospheric vertical column")
    assert float(no2["scale"]) == 1.0 and float(no2["offset"]) == 0.0
    assert bands[2]["tags"]["rsmon_dtype"] == "int32"
    assert bands[1]["tags"]["long_name"] == "sum of overlap fractions (HARP bin_spatial weight)"


def test_cog_file_is_world_readable_like_a_normal_file(cog_path):
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(cog_path).st_mode & 0o777 == 0o666 & ~umask


def test_overview_average_ignores_nan(tmp_path):
    ds = make_product()
    mean = ds["tropospheric_no2_column"].values
    # The 2x2 block at rows 10-11, cols 20-21 becomes overview pixel (5, 10).
    mean[10:12, 20:22] = [[1.0, 2.0], [6.0, np.nan]]
    mean[40:42, 60:62] = np.nan  # an all-NaN block stays NaN
    path = tmp_path / "ov.tif"
    write_cog(path, ds, GRID, make_provenance())
    with rasterio.open(path, overview_level=0) as ovr:
        assert (ovr.height, ovr.width) == (300, 350)
        band = ovr.read(1)
    assert band[5, 10] == pytest.approx(3.0)  # mean of 1, 2 and 6
    assert np.isnan(band[20, 30])


def test_dask_backed_input_gives_the_same_file_values(tmp_path, product):
    path = tmp_path / "lazy.tif"
    write_cog(path, product.chunk({"lat": 256, "lon": 300}), GRID, make_provenance())
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), product["tropospheric_no2_column"].values)


def test_fallback_compression_when_zstd_is_missing(tmp_path, monkeypatch, product):
    real = cog.compression_supported
    monkeypatch.setattr(cog, "compression_supported", lambda name: False if name.upper() == "ZSTD" else real(name))
    path = tmp_path / "deflate.tif"
    write_cog(path, product, GRID, make_provenance())
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
    assert cog_validate(str(path), quiet=True)[0]


def test_profile_overview_count_and_options():
    profile = COGProfile()
    assert profile.overview_count(700, 600) == 1
    assert profile.overview_count(512, 512) == 0
    assert profile.overview_count(1025, 10) == 2
    assert profile.predictor("float32") == 3
    assert profile.predictor("int32") == 2
    small = profile.creation_options("float32", 100, 100)
    assert small["OVERVIEWS"] == "NONE"
    assert small["BLOCKSIZE"] == 512 and small["BIGTIFF"] == "IF_SAFER"
    with pytest.raises(InputError, match="blocksize"):
        COGProfile(blocksize=500)


def test_small_grid_without_overviews_is_valid(tmp_path):
    grid = LonLatGrid(west=110.0, south=30.0, res=0.1, width=40, height=30)
    path = tmp_path / "small.tif"
    write_cog(path, make_product(grid), grid, make_provenance())
    assert cog_validate(str(path), quiet=True)[0]
    with rasterio.open(path) as src:
        assert src.overviews(1) == []
        assert src.transform == grid.transform


# --- atomicity ---------------------------------------------------------------------------
def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or p.name.startswith(".rsmon-cog-"))


def test_failure_in_translate_leaves_no_file(tmp_path, monkeypatch, product):
    def broken(src, dst_path, options):
        dst_path.write_bytes(b"half a tiff")  # fail after writing something
        raise RuntimeError("simulated crash while building the COG")

    monkeypatch.setattr(cog, "_translate", broken)
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_cog(target, product, GRID, make_provenance())
    assert not target.exists()
    assert _leftovers(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_an_existing_file(tmp_path, monkeypatch, product):
    target = tmp_path / "out.tif"
    target.write_bytes(b"previous good product")

    def broken(src, dst_path, options):
        raise rasterio.errors.RasterioIOError("simulated disk full")

    monkeypatch.setattr(cog, "_translate", broken)
    with pytest.raises(OutputError, match="out.tif"):
        write_cog(target, product, GRID, make_provenance())
    assert target.read_bytes() == b"previous good product"
    assert _leftovers(tmp_path) == []


def test_unwritable_folder_raises_output_error_naming_the_path(tmp_path, product):
    blocker = tmp_path / "file.txt"
    blocker.write_text("I am a file, not a folder")
    target = blocker / "out.tif"
    with pytest.raises(OutputError, match="file.txt") as info:
        write_cog(target, product, GRID, make_provenance())
    assert isinstance(info.value, OSError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


# --- input checks ------------------------------------------------------------------------
def test_flipped_latitude_is_refused(tmp_path, product):
    flipped = product.isel(lat=slice(None, None, -1))
    with pytest.raises(InputError, match="'lat'"):
        write_cog(tmp_path / "x.tif", flipped, GRID, make_provenance())
    assert list(tmp_path.iterdir()) == []


def test_wrong_grid_is_refused(tmp_path, product):
    other = LonLatGrid(west=100.0, south=20.0, res=0.05, width=700, height=601)
    with pytest.raises(InputError, match="shape"):
        write_cog(tmp_path / "x.tif", product, other, make_provenance())


def test_count_beyond_float32_exact_range_is_refused(tmp_path, product):
    ds = product.copy(deep=True)
    ds["count"].values[0, 0] = (1 << 24) + 1
    with pytest.raises(InputError, match="2\\*\\*24"):
        write_cog(tmp_path / "x.tif", ds, GRID, make_provenance())
    assert list(tmp_path.iterdir()) == []


def test_large_rasters_stage_on_disk_and_clean_up(tmp_path, product):
    path = tmp_path / "staged.tif"
    write_cog(path, product, GRID, make_provenance(), COGProfile(max_memory_bytes=0))
    assert cog_validate(str(path), quiet=True)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staged.tif"]
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(3), product["count"].values.astype(np.float32))


# --- provenance (stored in the tags above) ----------------------------------------------
def test_provenance_json_round_trip_and_normalisation(tmp_path):
    from pathlib import Path

    from rsmon.provenance import sha256_file

    data = tmp_path / "granule.nc"
    data.write_bytes(b"abc")
    ref = InputRef.from_path(data, start="2019-06-12T04:00:00Z", end=datetime(2019, 6, 12, 5))
    assert ref.sha256 == sha256_file(data) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert ref.id == "granule"
    assert ref.end.tzinfo is not None  # naive times are UTC
    prov = Provenance(
        inputs=[ref],
        parameters={"qa_min": np.float32(0.75), "bbox": (1, 2, 3, 4), "out": Path("/x"), "fill": float("nan")},
        created=datetime(2024, 1, 1),
    )
    text = prov.to_json()
    assert "NaN" not in text
    back = Provenance.from_json(text)
    assert back.inputs == prov.inputs
    assert back.created == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert back.parameters == {"qa_min": 0.75, "bbox": [1, 2, 3, 4], "out": "/x", "fill": None}
    assert back.software == f"rsmon {rsmon.__version__}"
    assert back.software_version == rsmon.__version__
    with pytest.raises(InputError, match="'bad'"):
        Provenance(parameters={"bad": object()})
