"""Direct block access of a scene put on another grid (rsmon.io.optical_align.AlignedBlocks).

A co-registered (sub-pixel shifted), integer-shifted or reprojected before scene keeps its
reader's block access, so the change pass reads each source tile about once instead of
evaluating the alignment's dask graph per block (which decoded the source blocks under every
output block again). Known answers: every block of every variable equals the lazy alignment's;
the change rasters equal the graph path's; the tiles are decoded about once; a modified scene
is never read behind its back. Plus the helpers made faster on the way (window transforms,
block ranges)."""

from __future__ import annotations

import collections
import shutil
import threading

import numpy as np
import pytest
import rasterio
from affine import Affine

from rsmon.io import tiff_tiles
from rsmon.io.optical import open_optical
from rsmon.io.optical_align import AlignedBlocks, _block_ranges, align_pair, dataset_grid, shifted_georeference
from rsmon.io.optical_grid import PixelGrid
from rsmon.io.optical_raster import SCENE_BLOCKS
from rsmon.products.change import ChangeParams
from rsmon.products.change_blocks import detect_change_blocks
from rsmon.products.change_pixels import pair_inputs
from rsmon.products.coregister import estimate_shift
from rsmon.sim.s2 import simulate_s2_l2a_pair

SIZE = 1100  # 3 x 3 blocks of 512 (the last ones partial)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return simulate_s2_l2a_pair(tmp_path_factory.mktemp("aligned") / "pair", size=SIZE, seed=5, n_changes=30)


@pytest.fixture(scope="module")
def utm51(pair, tmp_path_factory):
    """The before scene's files reprojected into the neighbouring UTM zone (EPSG:32651), tiled."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    folder = tmp_path_factory.mktemp("utm51") / "before"
    shutil.copytree(pair.before, folder)
    for tif in folder.glob("*.tif"):
        with rasterio.open(pair.before / tif.name) as src:
            transform, width, height = calculate_default_transform(src.crs, "EPSG:32651", src.width, src.height,
                                                                   *src.bounds)
            profile = dict(src.profile, crs="EPSG:32651", transform=transform, width=width, height=height)
            data, out = src.read(1), np.zeros((height, width), src.dtypes[0])
            reproject(data, out, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                      dst_crs="EPSG:32651", resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
        with rasterio.open(tif, "w", **profile) as dst:
            dst.write(out, 1)
    return folder


def _cases(pair, utm51):
    after = open_optical(pair.after)
    grid = dataset_grid(after)
    before = open_optical(pair.before)
    return after, {
        "sub-pixel shift": shifted_georeference(before, 0.6, -0.4, grid),
        "whole-pixel shift": shifted_georeference(before, 3, -2, grid),
        "other CRS": open_optical(utm51),
    }


def _block_windows(blocks):
    rows, cols = np.cumsum((0,) + blocks.chunks[0]), np.cumsum((0,) + blocks.chunks[1])
    return [(slice(int(rows[i]), int(rows[i + 1])), slice(int(cols[j]), int(cols[j + 1])))
            for i in range(len(rows) - 1) for j in range(len(cols) - 1)]


@pytest.mark.parametrize("case", ["sub-pixel shift", "whole-pixel shift", "other CRS"])
def test_every_block_equals_the_lazy_alignment(pair, utm51, case):
    after, cases = _cases(pair, utm51)
    aligned, _ = align_pair(cases[case], after)
    blocks = aligned.encoding.get(SCENE_BLOCKS)
    assert isinstance(blocks, AlignedBlocks)
    assert aligned.attrs["alignment"] == ("shift" if case == "whole-pixel shift" else "resampled")
    lazy = {name: var.values for name, var in aligned.data_vars.items() if var.dims == ("y", "x")}
    assert {"red", "nir", "swir1", "scl", "clear"} <= set(lazy)
    valid = np.isfinite(lazy["red"])
    assert 0.9 < valid.mean() < 1.0  # part of the scene lies outside the before footprint
    for rows, cols in _block_windows(blocks):
        got = blocks.read(rows, cols)
        for name, want in lazy.items():
            block = want[rows, cols]
            assert got[name].dtype == block.dtype, name
            np.testing.assert_array_equal(got[name], block, err_msg=f"{case} {name} {rows} {cols}")
    # with bands=: those bands and the QA variables, the same values
    rows, cols = _block_windows(blocks)[4]
    some = blocks.read(rows, cols, bands=["red", "nir"])
    assert {"red", "nir", "clear"} <= set(some)
    np.testing.assert_array_equal(some["nir"], lazy["nir"][rows, cols])


def test_a_modified_scene_is_not_read_behind_its_back(pair):
    after = open_optical(pair.after)
    before = open_optical(pair.before)
    cropped = before.isel(y=slice(5, SIZE - 9), x=slice(7, SIZE - 3))  # its arrays are no longer the reader's
    aligned, _ = align_pair(cropped, after)
    assert SCENE_BLOCKS not in aligned.encoding
    shifted = shifted_georeference(before, 0.5, 0.5, dataset_grid(after))
    shifted["red"] = shifted["red"] * 2  # a modified variable: no direct access for the pair
    aligned, _ = align_pair(shifted, after)
    inputs = pair_inputs(aligned, after, ChangeParams(), "reflectance")
    assert inputs.scenes is None


def _count_decodes(monkeypatch):
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()
    original = tiff_tiles.TiledTiff._tile

    def counted(self, index):
        with lock:
            counts[(self.path, index)] += 1
        return original(self, index)

    monkeypatch.setattr(tiff_tiles.TiledTiff, "_tile", counted)
    return counts


def test_the_change_pass_reads_a_shifted_scene_directly(pair, monkeypatch):
    """The pass takes the direct path (the same rasters as the graph path) and decodes each
    source tile about once; through the graph every output block decoded the source blocks
    under it again (about four per block)."""
    after = open_optical(pair.after)
    before = shifted_georeference(open_optical(pair.before), 0.3, -0.45, dataset_grid(after))
    aligned, _ = align_pair(before, after)
    inputs = pair_inputs(aligned, after, ChangeParams(), "reflectance")
    assert inputs.scenes is not None and isinstance(inputs.scenes[0], AlignedBlocks)

    tiff_tiles.tile_cache().clear()
    counts = _count_decodes(monkeypatch)
    direct = detect_change_blocks(aligned, after)
    before_files = [key for key in counts if "/before/" in str(key[0])]
    per_tile = np.array([counts[key] for key in before_files])
    # (a tile that one window takes whole is not cached: on the scene's first row and column it is
    # decoded again for the neighbours' margins, up to three times)
    assert len(before_files) >= 7 * 9 and per_tile.max() <= 3 and per_tile.mean() <= 1.3, per_tile

    counts.clear()
    tiff_tiles.tile_cache().clear()
    graph = aligned.copy()
    graph.encoding = {k: v for k, v in aligned.encoding.items() if k != SCENE_BLOCKS}
    assert pair_inputs(graph, after, ChangeParams(), "reflectance").scenes is None
    through_graph = detect_change_blocks(graph, after)
    graph_per_tile = np.array([counts[key] for key in counts if "/before/" in str(key[0])])
    assert graph_per_tile.mean() > 2 * per_tile.mean(), graph_per_tile  # what the direct path saves
    for name in ("change", "change_class", "confidence"):
        np.testing.assert_array_equal(np.asarray(getattr(direct, name)), np.asarray(getattr(through_graph, name)),
                                      err_msg=name)
    assert direct.n_change == through_graph.n_change > 1000


def test_the_shift_is_measured_the_same_from_direct_reads(pair):
    after = open_optical(pair.after)
    before = shifted_georeference(open_optical(pair.before), 0.6, -0.4, dataset_grid(after))
    aligned, _ = align_pair(before, after)
    direct = estimate_shift(aligned, after)
    graph = aligned.copy()
    graph.encoding = {}
    through_graph = estimate_shift(graph, after)
    assert direct.estimates == through_graph.estimates and direct.applied
    assert (direct.dy, direct.dx) == pytest.approx((-0.6, 0.4), abs=0.1)


def test_window_transform_is_the_affine_product():
    for transform in (Affine(10, 0, 399960.123, 0, -10, 4500000.7), Affine(1e-4, 2e-5, 116.3, 3e-5, -1e-4, 39.9)):
        grid = PixelGrid(None, transform, 100, 100)
        for row, col in ((0, 0), (512, 1024), (-7, 10979), (10976, -3)):
            assert tuple(grid.window_transform(row, col)) == tuple(transform @ Affine.translation(col, row))


def test_block_ranges_by_hand():
    bounds = np.array([0, 512, 1024, 1100])
    assert _block_ranges(bounds, 0, 512) == [(0, 0, 512)]
    assert _block_ranges(bounds, 510, 1030) == [(0, 510, 512), (1, 0, 512), (2, 0, 6)]
    assert _block_ranges(bounds, 1024, 1100) == [(2, 0, 76)]
    assert _block_ranges(bounds, 600, 601) == [(1, 88, 89)]
    assert _block_ranges(bounds, 1100, 1200) == []


def test_a_composite_of_shifted_scenes_keeps_direct_access(pair):
    """Two before scenes, each co-registered by another sub-pixel shift, composited: the
    composite reads them by their aligned blocks (the pass's direct path), equal to its lazy value."""
    from rsmon.products.change_composite import CompositeBlocks, latest_clear_composite

    after = open_optical(pair.after)
    grid = dataset_grid(after)
    scenes = [align_pair(shifted_georeference(open_optical(pair.before), dy, dx, grid), after)[0]
              for dy, dx in ((0.4, 0.3), (-0.2, 0.6))]
    composite = latest_clear_composite(scenes)
    blocks = composite.encoding.get(SCENE_BLOCKS)
    assert isinstance(blocks, CompositeBlocks)
    assert all(isinstance(source, AlignedBlocks) for source, _, _ in blocks.scenes)
    assert pair_inputs(composite, after, ChangeParams(), "reflectance").scenes is not None
    got = blocks.read(slice(512, 1024), slice(0, 512))
    for name in ("red", "nir", "clear", "observation_index"):
        np.testing.assert_array_equal(got[name], composite[name].values[512:1024, 0:512], err_msg=name)


def test_quicklook_chips_of_a_shifted_scene_are_read_directly(pair, monkeypatch):
    """The patch quicklooks of a co-registered before scene read each chip through its aligned
    blocks (no dask graph), equal to the chips the graph gives, at the scene's edges and strided."""
    import dask

    from rsmon.io.change_output import _Image, _read_chips, _Window

    after = open_optical(pair.after)
    aligned, _ = align_pair(shifted_georeference(open_optical(pair.before), 0.35, -0.6, dataset_grid(after)), after)
    names = ["red", "green", "blue"]
    windows = {0: [_Window(slice(0, 37), slice(1050, 1100), (0, 0, 0, 0))],
               1: [_Window(slice(400, 700, 3), slice(300, 611, 3), (0, 0, 0, 0))],
               2: [_Window(slice(1093, 1100), slice(0, 5), (0, 0, 0, 0))]}

    def chips(ds):
        image = _Image(ds, names, "before", np.empty(0), ds.rio.transform(), (SIZE, SIZE))
        return _read_chips([image], windows, threads=2)

    computed = []
    original = dask.compute

    def counting(*args, **kwargs):
        computed.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(dask, "compute", counting)
    direct = chips(aligned)
    assert not computed  # no graph evaluated
    graph = aligned.copy()
    graph.encoding = {}
    through_graph = chips(graph)
    assert computed
    for k in windows:
        np.testing.assert_array_equal(direct[k][0], through_graph[k][0], err_msg=str(k))
        assert np.isfinite(direct[k][0]).mean() > 0.5
