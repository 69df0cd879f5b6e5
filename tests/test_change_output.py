"""Change outputs: patch GeoPackage/GeoJSON round trips, atomic writes, redline files, the change
COGs (valid COG, uint8, nodata 255, exact grid, 2x2 mode overviews, written concurrently) and
per-patch quicklook PNGs read lazily."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import tifffile
import xarray as xr
from matplotlib.image import imread
from rasterio.errors import RasterioError
from rio_cogeo.cogeo import cog_validate
from test_patches import UTM, make_scene, rect_box, split_redlines

import rsmon.io.cog as cog
import rsmon.io.vectors as vectors
from rsmon.errors import FormatError, InputError, OutputError
from rsmon.io.change_output import CHANGE_COG_PROFILE, write_change_cog, write_change_cogs, write_quicklooks
from rsmon.io.cog import read_cog_tags, write_raster_cog
from rsmon.io.vectors import read_vectors, write_patches
from rsmon.kernels.overviews import mode_halve
from rsmon.products.patches import PATCH_COLUMNS, patches_from_change
from rsmon.provenance import InputRef, Provenance


@pytest.fixture(scope="module")
def scene() -> xr.Dataset:
    return make_scene()


@pytest.fixture(scope="module")
def patches(scene) -> gpd.GeoDataFrame:
    """Patch A split by redlines R1/R2, patch B inside R9 (which has no zone)."""
    far = gpd.GeoDataFrame({"ID": ["R9"], "NAME": ["Far"], "zone": [None]},
                           geometry=[rect_box(slice(90, 170), slice(110, 180))], crs=UTM)
    redlines = pd.concat([split_redlines(UTM), far], ignore_index=True).to_crs(4326)
    return patches_from_change(scene, redlines=redlines)


def provenance() -> Provenance:
    return Provenance(inputs=[InputRef("/data/S2A_before.SAFE"), InputRef("/data/S2B_after.SAFE")],
                      parameters={"mmu_px": 4}, created=datetime(2024, 7, 1, tzinfo=timezone.utc))


def folder_files(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


# --------------------------------------------------------------------------------------------
# vectors
# --------------------------------------------------------------------------------------------
def test_gpkg_and_geojson_round_trip(patches, tmp_path):
    assert len(patches) == 3
    gpkg, geojson = tmp_path / "patches.gpkg", tmp_path / "patches.geojson"
    assert write_patches(patches, gpkg, geojson) == [gpkg, geojson]
    assert folder_files(tmp_path) == ["patches.geojson", "patches.gpkg"]
    back = gpd.read_file(gpkg, layer="patches")
    assert back.crs == UTM
    assert list(back.columns) == [*PATCH_COLUMNS, "geometry"]
    assert list(back["patch_id"]) == list(patches["patch_id"])
    for col in PATCH_COLUMNS:
        if PATCH_COLUMNS[col] == "object":
            assert [None if pd.isna(v) else v for v in back[col]] == list(patches[col]), col
        else:
            np.testing.assert_allclose(back[col].to_numpy(float), patches[col].to_numpy(float), rtol=1e-12)
    assert back.geometry.geom_equals(patches.geometry).all()
    assert (back.geometry.geom_type == "MultiPolygon").all()
    gj = gpd.read_file(geojson)
    assert gj.crs.to_epsg() == 4326
    assert list(gj["patch_id"]) == list(patches["patch_id"])
    features = json.loads(geojson.read_text())["features"]
    assert [f["properties"]["first_detected"] for f in features] == list(patches["first_detected"])  # ISO dates
    assert [f["properties"]["redline_zone"] for f in features] == list(patches["redline_zone"])
    moved = gj.to_crs(UTM).geometry.symmetric_difference(patches.geometry).area
    assert (moved < 1e-4 * patches.geometry.area).all()  # RFC 7946: 7 decimals, about 1 cm


def test_patches_read_back_from_geojson_serve_as_previous(scene, patches, tmp_path):
    write_patches(patches, None, tmp_path / "p.geojson")
    previous = read_vectors(tmp_path / "p.geojson")  # dates come back as Timestamps
    later = scene.assign_attrs(before_datetime="2023-08-01T03:00:00Z", after_datetime="2024-08-01T03:00:00Z")
    again = patches_from_change(later, redlines=split_redlines(), previous=previous)
    old = patches.set_index("patch_id")
    assert set(again["patch_id"]) <= set(old.index)
    assert list(again["first_detected"]) == ["2024-06-01"] * len(again)
    assert list(again["last_detected"]) == ["2024-08-01"] * len(again)


def test_empty_table_writes_valid_empty_files(scene, tmp_path):
    empty = patches_from_change(scene.assign(change=scene["change"] * 0))
    write_patches(empty, tmp_path / "p.gpkg", tmp_path / "p.geojson")
    back = gpd.read_file(tmp_path / "p.gpkg", layer="patches")
    assert len(back) == 0 and list(back.columns) == [*PATCH_COLUMNS, "geometry"]
    assert len(gpd.read_file(tmp_path / "p.geojson")) == 0


def test_failed_write_keeps_older_files_and_leaves_no_partial(patches, tmp_path, monkeypatch):
    gpkg, geojson = tmp_path / "patches.gpkg", tmp_path / "patches.geojson"
    write_patches(patches.iloc[:1], gpkg, geojson)
    before = gpkg.read_bytes(), geojson.read_bytes()
    real = vectors.write_vector

    def failing(tmp, gdf, driver, **kw):
        real(tmp, gdf, driver, **kw)
        if driver == "GeoJSON":
            tmp.write_bytes(tmp.read_bytes()[:50])  # a truncated file, then the disk "fills up"
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(vectors, "write_vector", failing)
    with pytest.raises(OSError, match="No space"):
        write_patches(patches, gpkg, geojson)
    assert (gpkg.read_bytes(), geojson.read_bytes()) == before
    assert folder_files(tmp_path) == ["patches.geojson", "patches.gpkg"]
    assert len(gpd.read_file(gpkg, layer="patches")) == 1


def test_read_vectors_redlines_any_format_and_errors(scene, tmp_path):
    shp = tmp_path / "redlines.shp"
    split_redlines("EPSG:3857").to_file(shp)
    red = read_vectors(shp)
    assert red.crs.to_epsg() == 3857
    assert sorted(patches_from_change(scene, redlines=red)["redline_id"]) == ["R1", "R2"]
    bad = tmp_path / "broken.gpkg"
    bad.write_bytes(b"not a geopackage at all")
    with pytest.raises(FormatError, match="broken.gpkg"):
        read_vectors(bad)
    with pytest.raises(FormatError, match="missing.geojson"):
        read_vectors(tmp_path / "missing.geojson")
    nocrs = tmp_path / "nocrs.shp"
    with pytest.warns(UserWarning, match="crs"):
        split_redlines(UTM).set_crs(None, allow_override=True).to_file(nocrs)
    with pytest.raises(InputError, match="nocrs.shp.*no CRS"):
        read_vectors(nocrs)


# --------------------------------------------------------------------------------------------
# change COG
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_scene() -> xr.Dataset:
    """600 x 1100 pixels (more than one 512 tile: overviews), dask-backed."""
    return make_scene(shape=(600, 1100)).chunk({"y": 256, "x": 256})


def test_change_cog_is_valid_uint8_on_the_exact_grid(big_scene, tmp_path):
    path = tmp_path / "change.tif"
    assert write_change_cog(path, big_scene, provenance()) == path
    ok, errors, _ = cog_validate(str(path), quiet=True)
    assert ok, errors
    with rasterio.open(path) as src:
        assert (src.count, src.dtypes[0], src.nodata) == (1, "uint8", 255)
        assert src.crs == rasterio.crs.CRS.from_user_input(UTM)
        assert src.transform == big_scene.rio.transform()
        assert src.block_shapes == [(512, 512)]
        assert src.overviews(1) == [2, 4]
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] in ("ZSTD", "DEFLATE")
        assert src.descriptions == ("change",)
        np.testing.assert_array_equal(src.read(1), big_scene["change"].values)
        assert set(np.unique(src.read(1, out_shape=(150, 275)))) <= {0, 1, 255}
    meta = read_cog_tags(path)
    assert meta["tags"]["before_datetime"] == "2023-06-03T03:10:00Z"
    assert meta["tags"]["OVERVIEW_RESAMPLING"] == "MODE"
    assert meta["provenance"].parameters == {"mmu_px": 4}


def overview_levels(path) -> list[np.ndarray]:
    with rasterio.open(path) as src:
        count = len(src.overviews(1))
    levels = []
    for level in range(count):
        with rasterio.open(path, overview_level=level) as ovr:
            levels.append(ovr.read(1))
    return levels


def test_overviews_are_the_2x2_mode_chain_whatever_the_block_size(big_scene, tmp_path):
    values = big_scene["change_class"].values.copy()
    values[100:140, 201:263] = 255  # nodata inside and across the 2x2 windows and the blocks
    band = big_scene["change_class"].copy(data=values)
    expected = [mode_halve(values, 255)]
    expected.append(mode_halve(expected[0], 255))
    for block_size in (2048, 126):  # blocks that split the raster, tiles and windows unevenly
        path = write_raster_cog(tmp_path / f"b{block_size}.tif", band, provenance(), nodata=255,
                                profile=CHANGE_COG_PROFILE, block_size=block_size)
        assert cog_validate(str(path), quiet=True)[0]
        got = overview_levels(path)
        assert [g.shape for g in got] == [(300, 550), (150, 275)]
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
    with pytest.raises(InputError, match="even"):
        write_raster_cog(tmp_path / "odd.tif", band, provenance(), nodata=255, profile=CHANGE_COG_PROFILE,
                         block_size=125)


def test_blocks_of_no_data_are_left_out_of_the_cog(big_scene, tmp_path):
    """A raster whose right part is all no data (as a redline run's outside the blocks near the
    redlines): its all-no-data 512-pixel tiles have no bytes in the COG (GDAL SPARSE_OK), every
    pixel and overview reads back as written, and the COG is valid."""
    values = big_scene["change_class"].values.copy()
    values[:, 512:] = 255
    band = big_scene["change_class"].copy(data=values)
    for block_size in (2048, 256):
        path = write_raster_cog(tmp_path / f"sparse{block_size}.tif", band, provenance(), nodata=255,
                                profile=CHANGE_COG_PROFILE, block_size=block_size)
        assert cog_validate(str(path), quiet=True)[0]
        with rasterio.open(path) as src:
            np.testing.assert_array_equal(src.read(1), values)
        expected = [mode_halve(values, 255)]
        expected.append(mode_halve(expected[0], 255))
        for got, want in zip(overview_levels(path), expected):
            np.testing.assert_array_equal(got, want)
        with tifffile.TiffFile(path) as tif:
            counts = tif.pages[0].databytecounts  # 2 x 3 tiles of 512: columns 512-1100 hold no data
            assert [c == 0 for c in counts] == [False, True, True, False, True, True]


def test_large_rasters_staged_on_disk_give_the_same_cog(scene, tmp_path):
    memory = write_change_cog(tmp_path / "memory" / "change.tif", scene, provenance())
    disk = write_change_cog(tmp_path / "disk" / "change.tif", scene, provenance(),
                            profile=replace(CHANGE_COG_PROFILE, max_memory_bytes=0))
    assert disk.read_bytes() == memory.read_bytes()
    assert folder_files(tmp_path / "disk") == ["change.tif"]  # the staging folder is gone


def test_several_cogs_written_concurrently_equal_the_single_writes(big_scene, tmp_path):
    names = ("change", "change_class", "confidence")
    paths = write_change_cogs(tmp_path / "many", big_scene, provenance(), names)
    assert paths == {name: tmp_path / "many" / f"{name}.tif" for name in names}
    for name in names:
        one = write_change_cog(tmp_path / "one" / f"{name}.tif", big_scene, provenance(), variable=name)
        assert paths[name].read_bytes() == one.read_bytes()
    with pytest.raises(InputError, match="'nope'"):
        write_change_cogs(tmp_path / "bad", big_scene, provenance(), ("change", "nope", "confidence"))
    assert folder_files(tmp_path / "bad") == ["change.tif", "confidence.tif"]  # complete files, no partial


def test_extra_variables_and_bad_input(scene, tmp_path):
    write_change_cog(tmp_path / "change_class.tif", scene, provenance(), variable="change_class")
    with rasterio.open(tmp_path / "change_class.tif") as src:
        np.testing.assert_array_equal(src.read(1), scene["change_class"].values)
    with pytest.raises(InputError, match="float32"):
        write_change_cog(tmp_path / "x.tif", scene, provenance(), variable="ndvi_after")
    with pytest.raises(InputError, match="'nope'"):
        write_change_cog(tmp_path / "x.tif", scene, provenance(), variable="nope")
    assert not (tmp_path / "x.tif").exists()


def test_failed_cog_write_keeps_the_older_file(scene, tmp_path, monkeypatch):
    path = tmp_path / "change.tif"
    write_change_cog(path, scene, provenance())
    before = path.read_bytes()

    def broken(src, dst, options):
        dst.write_bytes(b"II*\x00partial")
        raise RasterioError("disk full")

    monkeypatch.setattr(cog, "_translate", broken)
    with pytest.raises(OutputError, match="change.tif"):
        write_change_cog(path, scene.assign(change=scene["change"] * 0), provenance())
    assert path.read_bytes() == before
    assert folder_files(tmp_path) == ["change.tif"]


# --------------------------------------------------------------------------------------------
# overview kernel
# --------------------------------------------------------------------------------------------
def test_mode_halve_known_answer_with_nodata_ties_and_odd_size():
    n = 255
    values = np.array([[1, 1, 2, 3, 7],
                       [1, 0, 3, 2, n],
                       [n, n, 4, n, 9],
                       [n, n, 5, n, 9],
                       [0, 6, n, n, 8]], dtype=np.uint8)
    # windows: 3 votes for 1 | 2-2 tie, first in row-major order | clipped column, nodata ignored
    #          all nodata      | 1-1 tie among the valid           | clipped column
    #          clipped row tie | clipped row of nodata             | corner pixel alone
    np.testing.assert_array_equal(mode_halve(values, 255), [[1, 2, 7], [n, 4, 9], [0, n, 8]])
    # without nodata, 255 is a class like any other
    np.testing.assert_array_equal(mode_halve(values), [[1, 2, 7], [n, n, 9], [0, n, 8]])
    # other integer types; a nodata value the type cannot hold is no nodata; a view as input and output
    np.testing.assert_array_equal(mode_halve(np.where(values == n, -1, values.astype(np.int16)), -1),
                                  [[1, 2, 7], [-1, 4, 9], [0, -1, 8]])
    np.testing.assert_array_equal(mode_halve(values, -1), mode_halve(values))
    out = np.zeros((4, 5), np.uint8)
    mode_halve(np.asfortranarray(values)[1:, 1:], 255, out=out[1:3, 2:4])
    np.testing.assert_array_equal(out[1:3, 2:4], [[0, 2], [5, 9]])
    assert not out[0].any() and not out[3].any()


# --------------------------------------------------------------------------------------------
# quicklooks
# --------------------------------------------------------------------------------------------
class RecordingArray:
    """A numpy array that records every window dask reads from it."""

    def __init__(self, values: np.ndarray, reads: list):
        self.values, self.reads = values, reads
        self.shape, self.dtype, self.ndim = values.shape, values.dtype, values.ndim

    def __getitem__(self, key):
        out = self.values[key]
        if out.size:
            self.reads.append(out.size)
        return out


def image(scene: xr.Dataset, bands: tuple[str, ...], seed: int, reads: list) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    shape = scene["change"].shape
    data = {}
    for i, band in enumerate(bands):
        values = (rng.random(shape) * 0.05 + 0.05 * (i + 1)).astype(np.float32)
        values[scene["change"].values == 1] += 0.2 if seed else 0.0  # bright new surfaces after
        data[band] = (("y", "x"), da.from_array(RecordingArray(values, reads), chunks=(32, 32),
                                                 meta=np.empty((0, 0), np.float32)))
    ds = xr.Dataset(data, coords={"y": scene["y"], "x": scene["x"]})
    return ds.rio.write_crs(UTM).rio.write_transform(scene.rio.transform())


def test_quicklooks_one_png_per_patch_read_lazily(tmp_path):
    scene = make_scene(shape=(600, 1100))
    patches = patches_from_change(scene)
    reads: list[int] = []
    before = image(scene, ("red", "green", "blue", "nir"), 0, reads)
    after = image(scene, ("nir", "red", "green"), 1, reads)  # no blue: false colour
    paths = write_quicklooks(patches, before, after, tmp_path)
    assert [p.name for p in paths] == [f"{pid}.png" for pid in patches["patch_id"]]
    assert folder_files(tmp_path) == sorted(["quicklooks", *(p.name for p in paths)])
    for path in paths:
        png = imread(path)
        assert png.ndim == 3 and png.shape[0] > 100 and png.shape[1] > 200
    full = scene["change"].size * (3 + 3)
    assert 0 < sum(reads) < 0.06 * full  # only the 32 x 32 chunks around the two patches were read
    one = write_quicklooks(patches.to_crs(4326), before, after, tmp_path / "one", max_patches=1)
    assert [p.name for p in one] == [f"{patches['patch_id'].iat[0]}.png"]  # the largest patch


def test_quicklooks_need_display_bands(scene, tmp_path):
    patches = patches_from_change(scene)
    only_red = image(scene, ("red",), 0, [])
    with pytest.raises(InputError, match="red, green and blue"):
        write_quicklooks(patches, only_red, only_red, tmp_path)


def test_quicklooks_from_numpy_images_are_the_same_in_one_or_two_threads(tmp_path):
    scene = make_scene(shape=(300, 400))
    patches = patches_from_change(scene)
    before = image(scene, ("red", "green", "blue"), 0, []).compute()  # numpy-backed
    after = image(scene, ("red", "green", "blue"), 1, []).compute()
    one = write_quicklooks(patches, before, after, tmp_path / "one", threads=1)
    two = write_quicklooks(patches, before, after, tmp_path / "two", threads=2)
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]
    png = imread(one[0])[..., :3]
    yellow = (png[..., 0] > 0.9) & (png[..., 1] > 0.9) & (png[..., 2] < 0.1)
    width = png.shape[1]
    assert yellow[:, : width // 2].sum() > 50 and yellow[:, width // 2 :].sum() > 50  # outline on both chips


def test_quicklook_of_a_patch_outside_one_image_still_written(tmp_path):
    scene = make_scene(shape=(300, 400))
    patches = patches_from_change(scene)
    before = image(scene, ("red", "green", "blue"), 0, [])
    after = image(scene, ("red", "green", "blue"), 1, []).isel(x=slice(200, None))  # misses patch A
    paths = write_quicklooks(patches, before, after, tmp_path)
    assert len(paths) == 2 and all(imread(p).shape[:2] == (560, 1000) for p in paths)


def test_geojson_reads_back_as_gdals_rfc7946_output(patches, tmp_path):
    """The fast GeoJSON writer against OGR's RFC 7946 writer: same features, values and coordinates."""
    import pyogrio

    table = pd.concat([patches, patches.iloc[:1].assign(ndvi_after=np.nan, redline_zone=None)], ignore_index=True)
    table.loc[0, "geometry"] = table.geometry.iat[0].buffer(-5).difference(table.geometry.iat[0].centroid.buffer(4))
    ours = tmp_path / "ours.geojson"
    write_patches(table, None, ours)
    gdal = tmp_path / "gdal.geojson"
    pyogrio.write_dataframe(vectors._file_frame(table).to_crs(4326), gdal, layer="patches", driver="GeoJSON",
                            geometry_type="MultiPolygon", promote_to_multi=True, layer_options={"RFC7946": "YES"})
    a, b = gpd.read_file(ours), gpd.read_file(gdal)
    pd.testing.assert_frame_equal(a.drop(columns="geometry"), b.drop(columns="geometry"))
    assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all()  # 7 decimals, same ring order
    assert json.loads(ours.read_text())["name"] == "patches"
    back = [f["properties"] for f in json.loads(ours.read_text())["features"]]
    assert back[-1]["ndvi_after"] is None and back[-1]["redline_zone"] is None


def test_quicklooks_of_reader_scenes_read_directly_equal_the_graph_path(tmp_path):
    """Reader scenes are read chip by chip by the reader (no dask graph): same PNGs as the graph path."""
    from rsmon.io.optical import open_optical
    from rsmon.io.optical_raster import SCENE_BLOCKS
    from rsmon.products.change import detect_change_blocks
    from rsmon.sim.s2 import simulate_s2_l2a_pair

    pair = simulate_s2_l2a_pair(tmp_path / "sim", size=512, seed=3, n_changes=12)
    before, after = open_optical(pair.before), open_optical(pair.after)
    blocks = detect_change_blocks(before, after)
    patches = patches_from_change(blocks.to_dataset(after), index_samples=blocks.index_samples)
    assert len(patches) >= 5
    direct = write_quicklooks(patches, before, after, tmp_path / "direct", max_patches=8)
    graph_before, graph_after = before.copy(), after.copy()
    graph_before.encoding.pop(SCENE_BLOCKS)
    graph_after.encoding.pop(SCENE_BLOCKS)
    via_graph = write_quicklooks(patches, graph_before, graph_after, tmp_path / "graph", max_patches=8)
    assert [p.name for p in direct] == [p.name for p in via_graph]
    assert [p.read_bytes() for p in direct] == [p.read_bytes() for p in via_graph]


@pytest.mark.parametrize("codec", ["libpng", "pillow"])
def test_quicklook_png_is_lossless(codec, monkeypatch):
    """The quicklook PNG encoder (libpng through imagecodecs, Pillow where imagecodecs has no PNG
    codec) gives back every pixel of a drawn image: scaled-up chips, text, an outline."""
    import io

    import imagecodecs
    from PIL import Image, ImageDraw

    from rsmon.io.change_output import _png

    if codec == "pillow":
        monkeypatch.setattr(imagecodecs, "PNG", None)
    rng = np.random.default_rng(2)
    chip = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    image = Image.new("RGB", (1000, 560), (255, 255, 255))
    image.paste(Image.fromarray(chip).resize((480, 320), Image.NEAREST), (12, 80))
    draw = ImageDraw.Draw(image)
    draw.text((20, 10), "chg-0123456789abcdef: construction, high", fill=(0, 0, 0))
    draw.line([(30, 100), (200, 300), (400, 120)], fill=(255, 255, 0), width=2)
    data = _png(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), np.asarray(image))


def test_quicklook_stretch_known_answer():
    """2-98 % stretch common to both chips: the values 0..7 of a band over the two chips give the
    limits 0.14 and 6.86 (NumPy's linear percentiles), so v -> round((v - 0.14) / 6.72 * 255)
    clipped to 0..255; a pixel with no data is black in every band; a missing chip stays missing."""
    from rsmon.io.change_output import _stretch

    before = np.tile(np.array([[[0, 1, 2, 3]]], np.float32), (3, 1, 1))
    after = np.tile(np.array([[[4, 5, 6, 7, np.nan]]], np.float32), (3, 1, 1))
    got_before, got_after, missing = _stretch([before, after, None])
    assert missing is None and got_before.dtype == np.uint8 and got_before.shape == (1, 4, 3)
    for b in range(3):
        assert got_before[0, :, b].tolist() == [0, 33, 71, 109]
        assert got_after[0, :, b].tolist() == [146, 184, 222, 255, 0]
    # a large pair: the limits come from an even sample of the values, within a grey level
    rng = np.random.default_rng(4)
    big = [rng.uniform(0.0, 0.4, (3, 300, 380)).astype(np.float32) for _ in range(2)]
    fast = _stretch(big)
    lo, hi = np.percentile(np.concatenate([c[0].ravel() for c in big]), [2, 98])
    exact = np.clip(np.round((big[1][0].astype(np.float64) - lo) / (hi - lo) * 255), 0, 255)
    assert np.abs(fast[1][..., 0].astype(int) - exact).max() <= 1


@pytest.mark.parametrize("encoding,name,expected", [
    ("GBK", "泰州市生态保护红线", "泰州市生态保护红线"),        # Chinese GIS output without a .cpg
    ("UTF-8", "溱湖国家湿地公园 core zone", "溱湖国家湿地公园 core zone"),
    ("ISO-8859-1", "Zürich Süd", "Zürich Süd"),               # kept as GDAL reads it (ISO-8859-1)
    ("UTF-8", "Redline 7", "Redline 7"),
])
def test_shapefile_without_cpg_text_encoding(tmp_path, encoding, name, expected):
    """Redline shapefiles that declare no encoding (no .cpg, DBF language driver 0): Chinese (GBK)
    and UTF-8 names are read right, not as ISO-8859-1 mojibake; Latin-1 and ASCII ones unchanged."""
    from rsmon.io.vectors import read_vectors

    gpd.GeoDataFrame({"id": ["HX001"], "name": [name]}, geometry=[shapely.box(119.9, 32.4, 120.0, 32.5)],
                     crs="EPSG:4326").to_file(tmp_path / "redlines.shp", encoding=encoding)
    (tmp_path / "redlines.cpg").unlink(missing_ok=True)
    with open(tmp_path / "redlines.dbf", "rb") as fh:
        assert fh.read(32)[29] == 0  # no language driver: nothing says the encoding
    assert read_vectors(tmp_path / "redlines.shp")["name"].tolist() == [expected]
    from rsmon.io.maps import read_outlines  # admin boundaries (fire counts, maps) are read the same way

    assert read_outlines(tmp_path / "redlines.shp")["name"].tolist() == [expected]
    # a .cpg decides: the same GBK bytes declared as GBK
    if encoding == "GBK":
        (tmp_path / "redlines.cpg").write_text("GBK")
        assert read_vectors(tmp_path / "redlines.shp")["name"].tolist() == [expected]


def test_shapefile_without_cpg_chinese_field_names(tmp_path):
    """Field names are text of the .dbf too: GBK field names with ASCII values are read right."""
    from rsmon.io.vectors import read_vectors

    gpd.GeoDataFrame({"红线编号": ["HX-320"], "红线名称": ["Redline 7"]}, geometry=[shapely.box(119.9, 32.4, 120.0, 32.5)],
                     crs="EPSG:4490").to_file(tmp_path / "red.shp", encoding="GBK")
    (tmp_path / "red.cpg").unlink(missing_ok=True)
    got = read_vectors(tmp_path / "red.shp")
    assert list(got.columns[:2]) == ["红线编号", "红线名称"] and got["红线编号"].tolist() == ["HX-320"]
