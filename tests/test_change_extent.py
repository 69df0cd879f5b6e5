"""Examining only the blocks near the redlines (rsmon.products.change_extent): which blocks, and
that their values and the patches inside the redlines are those of a whole-scene run."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from affine import Affine
from scipy import ndimage
from shapely.geometry import box

from rsmon.cli import main
from rsmon.errors import InputError
from rsmon.io.optical_raster import SceneBlocks
from rsmon.products.change_blocks import detect_change_blocks, series_change_blocks
from rsmon.products.change_extent import blocks_reached, edge_mask, examined_blocks, reaching_pixels
from rsmon.products.change_fit import fit_block_indices
from rsmon.products.change_params import ChangeParams
from rsmon.products.coregister import _windows as coreg_windows
from rsmon.io.optical_align import grid_distance as _grid_distance
from tests import change_scenes as cs
from tests.patch_tables import assert_same_patches

RASTERS = ("change", "change_class", "confidence")


# ---- which blocks ------------------------------------------------------------------------------

#: a 10 m grid of 3 x 4 blocks: rows 0-512-1024-1100, columns 0-512-1024-1536-1600
GRID = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_000_000.0)
STARTS = (np.array([0, 512, 1024, 1100]), np.array([0, 512, 1024, 1536, 1600]))


def _xy(col: float, row: float) -> tuple[float, float]:
    return GRID @ (col, row)


def test_examined_blocks_known_answers():
    # a polygon inside block (1, 1): that block only; grown by 100 m it stays inside (its edges
    # are 600 m and more from the block's)
    x0, y0 = _xy(600, 600)
    x1, y1 = _xy(900, 900)
    inner = box(x0, y1, x1, y0)
    expected = np.zeros((3, 4), bool)
    expected[1, 1] = True
    np.testing.assert_array_equal(examined_blocks([inner], GRID, STARTS), expected)
    np.testing.assert_array_equal(examined_blocks([inner], GRID, STARTS, margin=100.0), expected)
    # 1000 m (100 pixels) reaches the blocks whose edges are within 100 pixels: the polygon
    # (rows and columns 600-900) is 88 pixels from block row and column 0 (which end at 512) and
    # 124 from block row and column 2 (which start at 1024): rows and columns 0 and 1
    grown = examined_blocks([inner], GRID, STARTS, margin=1000.0)
    expected[0:2, 0:2] = True
    np.testing.assert_array_equal(grown, expected)
    # the thin last block row and column; a polygon off the grid and an empty one: nothing
    x0, y0 = _xy(1590, 1090)
    corner = box(x0, y0 - 5.0, x0 + 5.0, y0)
    far = box(0.0, 0.0, 1.0, 1.0)
    got = examined_blocks([corner, far, shapely.Polygon(), None], GRID, STARTS)
    assert np.argwhere(got).tolist() == [[2, 3]]
    assert not examined_blocks([far], GRID, STARTS).any()
    assert not examined_blocks([], GRID, STARTS).any()
    with pytest.raises(InputError, match="margin"):
        examined_blocks([inner], GRID, STARTS, margin=-1.0)


def test_edge_mask_known_answers():
    core = (512, 1024, 512, 1024)
    assert edge_mask(core, [], 11) is None
    # the block to the right: the last 11 columns; the one above-left (diagonal): an 11 x 11 corner
    right = edge_mask(core, [(512, 1024, 1024, 1536)], 11)
    assert right.shape == (512, 512) and right.sum() == 512 * 11 and right[:, -11:].all()
    corner = edge_mask(core, [(0, 512, 0, 512)], 11)
    assert corner.sum() == 121 and corner[:11, :11].all()
    both = edge_mask(core, [(512, 1024, 1024, 1536), (0, 512, 0, 512)], 11)
    np.testing.assert_array_equal(both, right | corner)
    # a block farther than the halo: nothing; a thin last block below (76 rows): the last 11 rows
    assert edge_mask(core, [(0, 500, 0, 512)], 11) is None
    assert edge_mask(core, [(1024, 1100, 512, 1024)], 11)[-11:].all()


def _reported(examined: np.ndarray, chunks: int, shape, halo: int) -> np.ndarray:
    """The pixels a pass restricted to ``examined`` reports: those of examined blocks farther than
    ``halo`` (Chebyshev distance) from every pixel of a block left out."""
    inside = _block_mask(examined, chunks, shape)
    near_out = ndimage.binary_dilation(~inside, structure=np.ones((2 * halo + 1, 2 * halo + 1), bool))
    return inside & ~near_out


def test_margin_in_grid_units():
    utm = xr.Dataset(coords={"y": [4e6], "x": [5e5]}).rio.write_crs("EPSG:32650")
    assert _grid_distance(utm, 1000.0) == pytest.approx(1000.0)
    feet = xr.Dataset(coords={"y": [1e6], "x": [1e6]}).rio.write_crs("EPSG:2229")  # US survey feet
    assert _grid_distance(feet, 1000.0) == pytest.approx(1000.0 / 0.3048006096)
    geographic = xr.Dataset(coords={"y": [59.0, 60.0], "x": [10.0, 11.0]}).rio.write_crs("EPSG:4326")
    # degrees of longitude at 60 degrees N, the grid's latitude farthest from the equator
    assert _grid_distance(geographic, 1000.0) == pytest.approx(1000.0 / (111_320.0 * 0.5))


# ---- the pass on examined blocks equals the whole pass there -----------------------------------

def _planted_box(name: str, scene: xr.Dataset):
    """The map box of a planted 10 x 10 block of :mod:`tests.change_scenes` (pixel edges)."""
    row, col = cs.PLANTED[name][:2]
    x, y = scene["x"].values, scene["y"].values
    return box(x[col] - 5.0, y[row + cs.BLOCK - 1] - 5.0, x[col + cs.BLOCK - 1] + 5.0, y[row] + 5.0)


def _block_mask(blocks: np.ndarray, chunks: int, shape) -> np.ndarray:
    return np.kron(blocks, np.ones((chunks, chunks), bool))[:shape[0], :shape[1]]


@pytest.mark.parametrize("chunks", [20, 40])
def test_pair_on_examined_blocks_equals_the_whole_pass(chunks):
    before, after = cs.pair(chunks=chunks)
    within = [_planted_box("construction", after), _planted_box("water", after)]
    whole = detect_change_blocks(before, after)
    part = detect_change_blocks(before, after, within=within)
    # the margin is at least 1.5 x (halo + 1) pixels, so that no pixel of a redline is in the halo
    assert part.attrs["examined_margin"] == 1.5 * (ChangeParams().halo_px + 1) * 10.0
    examined = examined_blocks(within, after.rio.transform(recalc=True),
                               [np.cumsum((0,) + c) for c in after["red"].chunks], part.attrs["examined_margin"])
    assert 0 < examined.sum() < examined.size
    mask = _reported(examined, chunks, whole.change.shape, ChangeParams().halo_px)
    for name, nodata in zip(RASTERS, (255, 255, 0)):
        a, b = getattr(whole, name), getattr(part, name)
        np.testing.assert_array_equal(b[mask], a[mask], err_msg=name)
        assert (b[~mask] == nodata).all(), name
    # the planted changes inside are found as in the whole pass, their samples with them
    assert (part.change[cs._block(*cs.PLANTED["construction"][:2])] == 1).all()
    keep = mask.ravel()[whole.index_flat]
    np.testing.assert_array_equal(part.index_flat, whole.index_flat[keep])
    for name in whole.index_values:
        np.testing.assert_array_equal(part.index_values[name], whole.index_values[name][keep])
    assert part.n_change == int((part.change == 1).sum()) <= whole.n_change
    assert part.attrs["examined_blocks"] == examined.sum() and part.attrs["n_blocks"] == examined.size
    assert part.attrs["examined_fraction"] == pytest.approx(_block_mask(examined, chunks, mask.shape).mean())
    assert part.attrs["threshold"] == whole.attrs["threshold"]  # the fit is the whole scene's


def test_series_on_examined_blocks_equals_the_whole_pass():
    scenes = cs.series(chunks=20)
    within = [_planted_box("mining", scenes[1]), _planted_box("farmland", scenes[1])]
    whole = series_change_blocks(scenes)
    part = series_change_blocks(scenes, within=within, margin=300.0)
    examined = examined_blocks(within, scenes[1].rio.transform(recalc=True),
                               [np.cumsum((0,) + c) for c in scenes[1]["red"].chunks], 300.0)
    mask = _reported(examined, 20, whole.change.shape, ChangeParams().halo_px)
    assert 0 < mask.mean() < 1
    for name, nodata in zip(RASTERS, (255, 255, 0)):
        np.testing.assert_array_equal(getattr(part, name)[mask], getattr(whole, name)[mask], err_msg=name)
        assert (getattr(part, name)[~mask] == nodata).all(), name
    keep = mask.ravel()[whole.index_flat]
    np.testing.assert_array_equal(part.index_flat, whole.index_flat[keep])
    for name in whole.index_values:
        np.testing.assert_array_equal(part.index_values[name], whole.index_values[name][keep])


def test_no_block_examined():
    before, after = cs.pair(chunks=40)
    out = detect_change_blocks(before, after, within=[box(0, 0, 1, 1)], params=ChangeParams())
    assert (out.change == 255).all() and out.n_valid == 0 and out.n_change == 0
    assert out.attrs["examined_blocks"] == 0 and out.attrs["examined_fraction"] == 0.0


# ---- a redline run on a simulated Sentinel-2 scene ---------------------------------------------

@pytest.fixture(scope="module")
def s2scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2extent")
    assert main(["sim", "s2", "--size", "2560", "--seed", "11", "--changes", "160", "-o", str(root / "pair")]) == 0
    return root / "pair"


def _scene_bounds(path):
    with rasterio.open(next((path / "after").glob("*B04*"))) as src:
        return src.bounds, src.crs, src.transform


def _redline_file(path, folder, boxes_px, crs_out=None):
    """Redline polygons given as pixel boxes (col0, row0, col1, row1) of the scene, written in
    the scene's CRS (or reprojected to ``crs_out``)."""
    _, crs, transform = _scene_bounds(path)
    geoms = []
    for c0, r0, c1, r1 in boxes_px:
        (x0, y0), (x1, y1) = transform @ (c0, r0), transform @ (c1, r1)
        geoms.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    zones = gpd.GeoDataFrame({"id": [f"R{i + 1}" for i in range(len(geoms))]}, geometry=geoms, crs=crs)
    if crs_out is not None:
        zones = zones.to_crs(crs_out)
    out = folder / "redlines.gpkg"
    zones.to_file(out)
    return out


@pytest.mark.parametrize("mode", ["--no-stream", "--stream"])
def test_redline_run_reads_only_the_blocks_near_the_redlines(s2scene, tmp_path, monkeypatch, mode):
    """Two redlines (given in WGS 84) inside 2 of the 25 blocks: the pass reads those, the fit its
    own blocks, the co-registration its 3 x 3 matching windows (spread over the scene: one global
    shift), nothing else; the patches equal the whole-scene run's."""
    # 108/124 and 64/68 pixels from their block's edges: more than the 500 m (50 pixel) margin
    redlines = _redline_file(s2scene, tmp_path, [(620, 620, 900, 900), (1600, 1600, 1980, 1980)], "EPSG:4326")
    argv = ["redline", "detect", "--before", str(s2scene / "before"), "--after", str(s2scene / "after"),
            "--redlines", str(redlines), "--no-quicklooks", "--no-checksums", mode]
    assert main(argv + ["--whole-scene", "-o", str(tmp_path / "whole")]) == 0
    reads: list[tuple[int, int]] = []
    real = SceneBlocks.read

    def counting(self, rows, cols, bands=None):
        reads.append((rows.start // 512, cols.start // 512))
        return real(self, rows, cols, bands)

    monkeypatch.setattr(SceneBlocks, "read", counting)
    assert main(argv + ["--redline-margin-m", "500", "-o", str(tmp_path / "part")]) == 0
    summary = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert summary["examined"]["blocks"] == 2 and summary["examined"]["of_blocks"] == 25
    assert summary["streamed"] == (mode == "--stream")
    assert summary["examined"]["fraction"] == pytest.approx(2 / 25)
    assert json.loads((tmp_path / "whole" / "summary.json").read_text())["examined"] == "whole scene"
    inside = np.zeros((5, 5), bool)
    inside[1, 1] = inside[3, 3] = True
    fit = fit_block_indices(((512,) * 5, (512,) * 5), ChangeParams().fit_sample_px)
    coreg = [(rows.start // 512, cols.start // 512) for rows, cols in coreg_windows((2560, 2560), 512, 3)]
    assert len(coreg) == 9 and all(rows % 512 == 0 for win in coreg_windows((2560, 2560), 512, 3)
                                   for rows in (win[0].start, win[1].start))
    expected = Counter([(1, 1), (3, 3)] + fit + coreg)
    # each block position read by both scenes' readers: once for the pass, once for the fit, once
    # for the co-registration's window there
    assert Counter(reads) == Counter({ij: 2 * n for ij, n in expected.items()})
    with rasterio.open(tmp_path / "whole" / "change.tif") as a, rasterio.open(tmp_path / "part" / "change.tif") as b:
        whole, part = a.read(1), b.read(1)
    mask = _reported(inside, 512, whole.shape, ChangeParams().halo_px)
    np.testing.assert_array_equal(part[mask], whole[mask])
    assert (part[~mask] == 255).all()
    assert_same_patches(tmp_path / "whole", tmp_path / "part")


def test_redlines_off_the_scene_examine_nothing(s2scene, tmp_path, capsys):
    redlines = _redline_file(s2scene, tmp_path, [(5000, 5000, 5100, 5100)])
    out = tmp_path / "off"
    assert main(["redline", "detect", "--before", str(s2scene / "before"), "--after", str(s2scene / "after"),
                 "--redlines", str(redlines), "--no-quicklooks", "--no-checksums", "-o", str(out)]) == 0
    assert "no redline polygon lies on the scene" in capsys.readouterr().out
    with rasterio.open(out / "change.tif") as src:
        assert (src.read(1) == 255).all()
    assert len(gpd.read_file(out / "patches.gpkg")) == 0


@pytest.mark.parametrize("value", ["-5", "nan", "ten"])
def test_bad_margin_is_named(s2scene, tmp_path, capsys, value):
    redlines = _redline_file(s2scene, tmp_path, [(600, 700, 1000, 1000)])
    out = tmp_path / "bad"
    code = main(["redline", "detect", "--before", str(s2scene / "before"), "--after", str(s2scene / "after"),
                 "--redlines", str(redlines), "--redline-margin-m", value, "-o", str(out)])
    assert code == 2
    assert "--redline-margin-m" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_redlines_on_a_scene_without_crs_are_refused(tmp_path):
    """Multi-band GeoTIFFs without a CRS (read with a band map): the redlines cannot be placed."""
    from rsmon.errors import InputError
    from rsmon.workflow.redline import run_redline_detect

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", width=64, height=64, count=6,
                           dtype="float32", transform=Affine(10, 0, 0, 0, -10, 640)) as dst:
            dst.write(rng.uniform(0.05, 0.4, (6, 64, 64)).astype("float32"))
    gpd.GeoDataFrame({"id": ["R1"]}, geometry=[box(0, 0, 300, 300)], crs="EPSG:32650").to_file(tmp_path / "r.gpkg")
    bands = {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5, "swir2": 6}
    with pytest.raises(InputError, match="b.tif: the scene has no CRS"):  # (the reader logs a warning)
        run_redline_detect(tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "out", redlines=tmp_path / "r.gpkg",
                           band_map=bands, quicklooks=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_scene_without_a_date_is_refused_before_the_pass(tmp_path):
    """A multi-band stack whose name holds no date: the patches could not be dated, so the run
    says so, naming the file, before reading any block (it failed after the pass before)."""
    from rsmon.workflow.redline import run_redline_detect

    rng = np.random.default_rng(0)
    for name in ("scene_20230501T030000", "undated"):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", width=64, height=64, count=6,
                           dtype="float32", crs="EPSG:32650", transform=Affine(10, 0, 0, 0, -10, 640)) as dst:
            dst.write(rng.uniform(0.05, 0.4, (6, 64, 64)).astype("float32"))
    bands = {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5, "swir2": 6}
    with pytest.raises(InputError, match=r"--after .*undated.tif: no acquisition date"):
        run_redline_detect(tmp_path / "scene_20230501T030000.tif", tmp_path / "undated.tif", tmp_path / "out",
                           band_map=bands, quicklooks=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---- regions reaching beyond the examined blocks ----------------------------------------------

def test_reaching_pixels_and_blocks_reached_known_answers():
    # GRID's blocks; only block (1, 1) (rows and columns 512-1024) examined; reach 12 pixels
    examined = np.zeros((3, 4), bool)
    examined[1, 1] = True
    change = np.zeros((1100, 1600), np.uint8)
    change[520, 520] = 1    # 9 rows below block row 0 (left out), 9 columns right of block column 0
    change[600, 1012] = 1   # 12 columns left of block column 2 (starts at 1024)
    change[600, 1011] = 1   # 13: too far
    change[700, 700] = 1    # in the middle
    change[100, 100] = 1    # in a block left out: not the pass's
    change[513, 700] = 255  # no data is no change
    flat = reaching_pixels(change, examined, STARTS, 12)
    assert flat.tolist() == [520 * 1600 + 520, 600 * 1600 + 1012]
    # the blocks left out within 12 pixels of them: around (520, 520) the three above and left,
    # beside (600, 1012) block (1, 2)
    assert np.argwhere(blocks_reached(flat, examined, STARTS, 12)).tolist() == [[0, 0], [0, 1], [1, 0], [1, 2]]
    assert not blocks_reached(np.array([700 * 1600 + 700]), examined, STARTS, 12).any()
    # every block examined: nothing reaches out
    assert reaching_pixels(change, np.ones((3, 4), bool), STARTS, 12).size == 0


def _strip_scenes(folder, rows=1024, cols=1024):
    """A vegetated scene pair (6-band float32 GeoTIFFs, UTM 50N, 10 m) whose after date has one
    change region 20 rows tall from column 400 to 700: built-up (construction) up to column 511,
    bright rock (mining) beyond, so the region's majority class is mining; plus squares of change
    elsewhere so the automatic threshold has a change mode."""
    rng = np.random.default_rng(5)
    veg = np.array(cs.SPECTRA["vegetation"], np.float32)[:, None, None]
    relief = ndimage.uniform_filter(rng.uniform(0.85, 1.15, (rows, cols)), 9).astype(np.float32)
    before = veg * relief
    after = before.copy()
    after[:, 200:220, 400:512] = np.array(cs.SPECTRA["built"], np.float32)[:, None, None] * relief[200:220, 400:512]
    after[:, 200:220, 512:700] = np.array(cs.SPECTRA["rock"], np.float32)[:, None, None] * relief[200:220, 512:700]
    for r, c, cover in ((700, 150, "water"), (650, 700, "built"), (800, 850, "built"), (300, 850, "cleared")):
        after[:, r:r + 60, c:c + 60] = np.array(cs.SPECTRA[cover], np.float32)[:, None, None]
    transform = Affine(10, 0, 400_000, 0, -10, 3_500_000)
    paths = []
    for name, cube in (("scene_20230501T030000", before), ("scene_20230601T030000", after)):
        cube = cube + rng.normal(0, 0.004, cube.shape).astype(np.float32)
        with rasterio.open(folder / f"{name}.tif", "w", driver="GTiff", width=cols, height=rows, count=6,
                           dtype="float32", crs="EPSG:32650", transform=transform, tiled=True, blockxsize=512,
                           blockysize=512) as dst:
            dst.write(cube)
        paths.append(folder / f"{name}.tif")
    zones = gpd.GeoDataFrame({"id": ["R1"]}, geometry=[box(*(transform @ (380, 240)), *(transform @ (460, 180)))],
                             crs="EPSG:32650")
    zones.to_file(folder / "redlines.gpkg")
    return paths[0], paths[1], folder / "redlines.gpkg"


@pytest.mark.parametrize("mode", ["pair", "streamed", "series"])
def test_a_region_reaching_beyond_the_examined_blocks_is_examined_whole(tmp_path, monkeypatch, mode):
    """The redline (columns 380-460 of block (0, 0)) holds the built-up end of a region whose
    larger part (rock) lies in block (0, 1), left out with a margin of 0 (raised to 18 pixels, more
    than the halo, and so 34 pixels short of block (0, 1)): the run examines that block too and
    runs again, so the patch is the whole-scene run's (class mining). Without that second pass it
    would have been construction."""
    from rsmon.workflow import redline as run_module

    before, after, redlines = _strip_scenes(tmp_path)
    if mode == "series":  # the after scene seen again two weeks later: a series
        after = [after, shutil.copy(after, tmp_path / "scene_20230615T030000.tif")]
    bands = {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5, "swir2": 6}
    common = dict(redlines=redlines, band_map=bands, quicklooks=False, checksums=False, margin_m=0.0,
                  stream=mode == "streamed")
    run_module.run_redline_detect(before, after, tmp_path / "whole", whole_scene=True, **common)
    run_module.run_redline_detect(before, after, tmp_path / "part", **common)
    whole = gpd.read_file(tmp_path / "whole" / "patches.gpkg")
    assert whole["change_class"].tolist() == ["mining_quarrying"]
    assert_same_patches(tmp_path / "whole", tmp_path / "part")
    examined = json.loads((tmp_path / "part" / "summary.json").read_text())["examined"]
    assert (examined["blocks"], examined["added"], examined["passes"], examined["of_blocks"]) == (2, 1, 2, 4)
    assert not [p.name for p in (tmp_path / "part").iterdir() if p.name.startswith(".")]  # nothing left of pass 1
    # the same run without looking at the edge: one pass, one block, the region seen in part
    monkeypatch.setattr(run_module, "reaching_pixels", lambda *a: np.empty(0, np.int64))
    run_module.run_redline_detect(before, after, tmp_path / "blind", **common)
    blind = gpd.read_file(tmp_path / "blind" / "patches.gpkg")
    assert blind["change_class"].tolist() == ["construction"]
    assert json.loads((tmp_path / "blind" / "summary.json").read_text())["examined"]["blocks"] == 1
