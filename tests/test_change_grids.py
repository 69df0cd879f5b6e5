"""Change rasters scored against georeferenced references on other grids, CRSs and several tiles.

Known answers by hand (nearest resampling onto a coarser reference grid; two overlapping tiles
combined as the patch merge combines them), the pixel-for-pixel path kept for references without a
georeference, the errors, the CLI, and the real OSCD Beihai pair scored through a reference
reprojected to UTM.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from rsmon.errors import InputError
from rsmon.validate.change import change_scores, masks_to_score, read_reference_mask
from rsmon.workflow.redline import run_change_validation
from tests.paths import ROOT

UTM = "EPSG:32650"


def _write(path: Path, data: np.ndarray, transform: Affine | None = None, crs: str | None = UTM) -> Path:
    profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype="uint8")
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.uint8), 1)
    return path


def _scores(s) -> tuple:
    return s.tp, s.fp, s.fn, s.tn, s.n_scored, s.n_excluded


def test_product_resampled_onto_a_coarser_reference_by_hand(tmp_path):
    # product: 9 x 9 at 10 m; reference: 3 x 3 at 30 m on the same origin. Nearest resampling takes
    # the product pixel under each reference pixel's centre: reference (i, j) <- product (3i+1, 3j+1).
    x0, y0 = 400000.0, 3500000.0
    product = np.zeros((9, 9), np.uint8)
    product[3:6, :] = 1          # reference row 1 samples product row 4: change
    product[1, 1] = 1            # reference (0, 0) samples it: change
    product[7, 7] = 255          # reference (2, 2) samples it: no data
    product[0, 0] = 1            # never sampled
    _write(tmp_path / "change.tif", product, Affine(10, 0, x0, 0, -10, y0))
    reference = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], np.uint8)
    _write(tmp_path / "reference.tif", reference, Affine(30, 0, x0, 0, -30, y0))
    pred, ref, scored_on = masks_to_score(tmp_path / "change.tif", tmp_path / "reference.tif")
    np.testing.assert_array_equal(pred, [[1, 0, 0], [1, 1, 1], [0, 0, 255]])
    assert scored_on == "reference grid, rows 0-3, columns 0-3"
    # TP (0,0) (1,0) (1,1); FP (1,2); FN none ((2,2) has no prediction); TN (0,1) (0,2) (2,0) (2,1)
    assert _scores(change_scores(pred, ref)) == (3, 1, 0, 4, 8, 1)


def test_same_shape_on_another_grid_is_resampled_not_compared_pixel_for_pixel(tmp_path):
    # the product's grid starts one pixel east of the reference's: its column k is the reference's k + 1
    reference = np.array([[0, 1, 1, 0, 0, 0]], np.uint8)
    product = np.array([[1, 1, 0, 0, 0, 0]], np.uint8)
    _write(tmp_path / "ref.tif", reference, Affine(10, 0, 0, 0, -10, 10))
    _write(tmp_path / "change.tif", product, Affine(10, 0, 10, 0, -10, 10))
    result = run_change_validation(tmp_path / "change.tif", tmp_path / "ref.tif")
    # reference columns 1-5 carry the product's columns 0-4: all agree
    assert result.scored_on == "reference grid, rows 0-1, columns 1-6"
    assert _scores(result.scores) == (2, 0, 0, 3, 5, 0) and result.scores.f1 == 1.0
    # the same product with no georeference is compared pixel for pixel, as the benchmark masks are
    _write(tmp_path / "plain.tif", product, crs=None)
    plain = run_change_validation(tmp_path / "plain.tif", tmp_path / "ref.tif")
    assert plain.scored_on == "product grid" and _scores(plain.scores) == (1, 1, 1, 3, 6, 0)


def test_two_overlapping_tiles_combined_by_hand(tmp_path):
    # reference: 2 x 15 at 10 m; west tile columns 0-5, east tile columns 4-9; columns 10-14 lie
    # outside both tiles and are not scored (nor counted as excluded: the reference is cut to the tiles)
    west = np.array([[1, 1, 0, 0, 1, 255], [0] * 6], np.uint8)
    east = np.array([[0, 255, 1, 0, 0, 0], [0] * 6], np.uint8)
    _write(tmp_path / "west.tif", west, Affine(10, 0, 0, 0, -10, 20))
    _write(tmp_path / "east.tif", east, Affine(10, 0, 40, 0, -10, 20))
    reference = np.zeros((2, 15), np.uint8)
    reference[0, :10] = [1, 0, 0, 1, 1, 1, 1, 0, 255, 0]
    reference[1, 9] = 1
    reference[:, 10:] = 1
    _write(tmp_path / "ref.tif", reference, Affine(10, 0, 0, 0, -10, 20))
    pred, ref, scored_on = masks_to_score([tmp_path / "west.tif", tmp_path / "east.tif"], tmp_path / "ref.tif")
    # column 4: west change, east none -> change; column 5: neither has data -> 255
    np.testing.assert_array_equal(pred, [[1, 1, 0, 0, 1, 255, 1, 0, 0, 0], [0] * 10])
    assert scored_on == "reference grid, rows 0-2, columns 0-10"
    # row 0 scored at columns 0-4, 6, 7, 9: TP 0, 4, 6; FP 1; FN 3; TN 2, 7, 9. Row 1: FN 9, TN 9 others
    s = change_scores(pred, ref)
    assert _scores(s) == (3, 1, 2, 12, 18, 2)
    # the order of the tiles does not matter
    again, _, _ = masks_to_score([tmp_path / "east.tif", tmp_path / "west.tif"], tmp_path / "ref.tif")
    np.testing.assert_array_equal(again, pred)


def test_reference_in_another_crs(tmp_path):
    """A reference in WGS 84 made from the product itself (GDAL nearest) scores perfectly; one made
    from the product moved 40 m east does not (the CRS and transforms are really used)."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    rng = np.random.default_rng(3)
    product = np.zeros((60, 80), np.uint8)
    for _ in range(12):
        r, c = rng.integers(0, 50), rng.integers(0, 70)
        product[r:r + rng.integers(3, 10), c:c + rng.integers(3, 10)] = 1
    transform = Affine(10, 0, 500000, 0, -10, 3400000)
    _write(tmp_path / "change.tif", product, transform)
    for name, shift in (("same", 0), ("moved", 40)):
        src_transform = transform @ Affine.translation(shift / 10, 0)
        dst_transform, width, height = calculate_default_transform(UTM, "EPSG:4326", 80, 60,
                                                                   *rasterio.transform.array_bounds(60, 80, src_transform))
        ref = np.full((height, width), 255, np.uint8)
        reproject(product, ref, src_transform=src_transform, src_crs=UTM, src_nodata=255, dst_transform=dst_transform,
                  dst_crs="EPSG:4326", dst_nodata=255, resampling=Resampling.nearest)
        _write(tmp_path / f"{name}.tif", ref, dst_transform, "EPSG:4326")
    same = run_change_validation(tmp_path / "change.tif", tmp_path / "same.tif").scores
    assert same.f1 == 1.0 and same.tp == int((read_reference_mask(tmp_path / "same.tif") == 1).sum())
    moved = run_change_validation(tmp_path / "change.tif", tmp_path / "moved.tif").scores
    assert moved.f1 < 0.8


def test_grids_that_cannot_be_matched_are_named(tmp_path):
    _write(tmp_path / "change.tif", np.zeros((4, 4), np.uint8), Affine(10, 0, 0, 0, -10, 40))
    _write(tmp_path / "other.tif", np.zeros((4, 4), np.uint8), Affine(10, 0, 1000, 0, -10, 40))
    _write(tmp_path / "plain.tif", np.zeros((3, 3), np.uint8), crs=None)
    _write(tmp_path / "plain_product.tif", np.zeros((3, 4), np.uint8), crs=None)
    _write(tmp_path / "far.tif", np.zeros((4, 4), np.uint8), Affine(10, 0, 90000, 0, -10, 40))
    _write(tmp_path / "bad.tif", np.full((4, 4), 7, np.uint8), Affine(10, 0, 0, 0, -10, 40))
    with pytest.raises(InputError, match=r"change.tif is 4x4 pixels but the reference .*plain.tif is 3x3 .*no georeference"):
        masks_to_score(tmp_path / "change.tif", tmp_path / "plain.tif")
    with pytest.raises(InputError, match=r"plain.tif: has no georeference .* 2 change rasters"):
        masks_to_score([tmp_path / "change.tif", tmp_path / "other.tif"], tmp_path / "plain.tif")
    with pytest.raises(InputError, match=r"plain_product.tif: no CRS"):
        masks_to_score(tmp_path / "plain_product.tif", tmp_path / "change.tif")
    with pytest.raises(InputError, match=r"none overlaps the reference .*far.tif"):
        masks_to_score([tmp_path / "change.tif", tmp_path / "other.tif"], tmp_path / "far.tif")
    with pytest.raises(InputError, match=r"bad.tif: values \[7\]"):
        masks_to_score(tmp_path / "bad.tif", tmp_path / "change.tif")          # pixel for pixel
    with pytest.raises(InputError, match=r"bad.tif: values \[7\]"):
        masks_to_score([tmp_path / "other.tif", tmp_path / "bad.tif"], tmp_path / "change.tif")  # resampled
    with pytest.raises(InputError, match=r"missing.tif: no such file"):
        masks_to_score([tmp_path / "change.tif", tmp_path / "missing.tif"], tmp_path / "far.tif")


def test_cli_scores_several_tiles_and_rejects_bad_grids(tmp_path, capsys):
    from rsmon.cli import main

    west = np.array([[1, 0, 0, 0]], np.uint8)
    east = np.array([[0, 0, 1, 1]], np.uint8)
    _write(tmp_path / "west.tif", west, Affine(10, 0, 0, 0, -10, 10))
    _write(tmp_path / "east.tif", east, Affine(10, 0, 20, 0, -10, 10))
    _write(tmp_path / "ref.tif", np.array([[1, 0, 0, 1, 1, 0]], np.uint8), Affine(10, 0, 0, 0, -10, 10))
    code = main(["validate", "--kind", "change", "--product", str(tmp_path / "west.tif"), str(tmp_path / "east.tif"),
                 "--reference", str(tmp_path / "ref.tif"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "reference grid" in out
    body = json.loads((tmp_path / "out" / "change_scores.json").read_text())
    assert body["product"] == [str(tmp_path / "west.tif"), str(tmp_path / "east.tif")]
    assert body["scored_on"] == "reference grid, rows 0-1, columns 0-6"
    # west covers columns 0-3, east 2-5: prediction 1 0 0 0 1 1 (columns 2-3: neither says change),
    # reference 1 0 0 1 1 0: TP 0, 4; FP 5; FN 3; TN 1, 2
    assert (body["tp"], body["fp"], body["fn"], body["tn"]) == (2, 1, 1, 2)
    _write(tmp_path / "plain.tif", np.zeros((1, 6), np.uint8), crs=None)
    code = main(["validate", "--kind", "change", "--product", str(tmp_path / "west.tif"), str(tmp_path / "east.tif"),
                 "--reference", str(tmp_path / "plain.tif"), "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and "plain.tif" in err and "georeference" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


BEIHAI = ROOT / "seeds" / "oscd" / "beihai"


@pytest.mark.skipif(not (BEIHAI / "imgs_2").is_dir(), reason=f"OSCD Beihai seed not found under {BEIHAI}")
def test_real_beihai_scores_through_a_utm_reference(tmp_path):
    """The real OSCD Beihai pair (EPSG:4326 grid) detected, then scored (a) pixel for pixel against
    its label raster, (b) against the label georeferenced on the images' grid (the same pixels: the
    same scores exactly) and (c) against the label reprojected to UTM 49N at 10 m (nearest): the
    product is resampled onto it; two nearest resamplings at about the same pixel size move the
    scores only a little."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from rsmon.workflow.redline import run_redline_detect

    run_redline_detect(BEIHAI / "imgs_1", BEIHAI / "imgs_2", tmp_path / "run", quicklooks=False, checksums=False)
    product = tmp_path / "run" / "change.tif"
    label = next((BEIHAI / "cm").glob("*-cm.tif"))
    plain = run_change_validation(product, label)
    assert plain.scored_on == "product grid" and plain.scores.n_scored > 600_000
    mask = read_reference_mask(label)
    with rasterio.open(product) as src:
        grid_crs, grid_transform = src.crs, src.transform
    _write(tmp_path / "label_4326.tif", mask, grid_transform, grid_crs)
    geo = run_change_validation(product, tmp_path / "label_4326.tif")
    assert geo.scored_on == "product grid" and _scores(geo.scores) == _scores(plain.scores)
    h, w = mask.shape
    utm_transform, width, height = calculate_default_transform(grid_crs, "EPSG:32649", w, h,
                                                               *rasterio.transform.array_bounds(h, w, grid_transform),
                                                               resolution=10)
    utm = np.full((height, width), 255, np.uint8)
    reproject(mask, utm, src_transform=grid_transform, src_crs=grid_crs, src_nodata=255, dst_transform=utm_transform,
              dst_crs="EPSG:32649", dst_nodata=255, resampling=Resampling.nearest)
    _write(tmp_path / "label_utm.tif", utm, utm_transform, "EPSG:32649")
    moved = run_change_validation(product, tmp_path / "label_utm.tif").scores
    assert moved.n_scored == pytest.approx(plain.scores.n_scored, rel=0.1)
    assert moved.f1 == pytest.approx(plain.scores.f1, abs=0.03)
    assert moved.kappa == pytest.approx(plain.scores.kappa, abs=0.03)
