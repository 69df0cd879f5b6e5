"""Change-map scores (hand-computed confusion matrices, kappa, objects) and reference-mask readers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio

from rsmon.errors import FormatError, InputError
from rsmon.validate.change import change_scores, object_match, read_reference_mask


def test_confusion_matrix_and_kappa_by_hand():
    # 4 x 4: reference row 0 unlabelled, prediction (3, 3) no data -> 16 - 4 - 1 = 11 scored
    ref = np.array([[255, 255, 255, 255],
                    [1, 1, 0, 0],
                    [1, 0, 0, 0],
                    [1, 1, 0, 0]], np.uint8)
    pred = np.array([[1, 1, 0, 0],
                     [1, 0, 1, 0],
                     [1, 0, 0, 0],
                     [0, 1, 0, 255]], np.uint8)
    s = change_scores(pred, ref)
    # row 1: TP, FN, FP, TN; row 2: TP, TN x 3; row 3: FN, TP, TN (last pixel not scored)
    assert (s.tp, s.fp, s.fn, s.tn) == (3, 1, 2, 5)
    assert (s.n_scored, s.n_excluded) == (11, 5)
    assert s.precision == pytest.approx(3 / 4)
    assert s.recall == pytest.approx(3 / 5)
    assert s.f1 == pytest.approx(2 / 3)
    assert s.iou == pytest.approx(3 / 6)
    assert s.overall_accuracy == pytest.approx(8 / 11)
    # p_o = 88/121; p_e = ((TP+FP)(TP+FN) + (FN+TN)(FP+TN))/N^2 = (4*5 + 7*6)/121 = 62/121
    # kappa = (88 - 62)/(121 - 62) = 26/59
    assert s.kappa == pytest.approx(26 / 59)


def test_valid_mask_and_degenerate_cases():
    ref = np.array([[0, 0], [1, 1]], np.uint8)
    pred = np.array([[0, 0], [0, 0]], np.uint8)
    s = change_scores(pred, ref)
    assert (s.tp, s.fn, s.tn) == (0, 2, 2)
    assert math.isnan(s.precision) and s.recall == 0.0 and s.f1 == 0.0 and s.kappa == 0.0
    s = change_scores(pred, ref, valid=np.array([[True, False], [True, False]]))
    assert s.n_scored == 2 and s.n_excluded == 2


def test_object_scores_iou_and_overlap_rules():
    ref = np.zeros((10, 10), np.uint8)
    ref[0:3, 0:3] = 1          # object A, 9 px
    ref[6:10, 6:10] = 1        # object B, 16 px
    pred = np.zeros((10, 10), np.uint8)
    pred[0:3, 0:2] = 1         # 6 px inside A: IoU 6/9 -> match
    pred[6:7, 6:8] = 1         # 2 px inside B: IoU 2/16 -> overlap only
    pred[0:2, 8:10] = 1        # false object
    s = change_scores(pred, ref)
    assert (s.n_objects_predicted, s.n_objects_reference) == (3, 2)
    assert s.object_precision == pytest.approx(1 / 3)
    assert s.object_recall == pytest.approx(1 / 2)
    assert s.object_precision_overlap == pytest.approx(2 / 3)
    assert s.object_recall_overlap == pytest.approx(1.0)
    # 8-connectivity: diagonal neighbours form one object
    diag = np.eye(4, dtype=bool)
    assert object_match(diag, diag)["n_predicted"] == 1


def test_bad_masks_raise():
    with pytest.raises(InputError, match="shape"):
        change_scores(np.zeros((2, 2), np.uint8), np.zeros((3, 2), np.uint8))
    with pytest.raises(InputError, match="values"):
        change_scores(np.full((2, 2), 7, np.uint8), np.zeros((2, 2), np.uint8))


def _write(path, data, driver="GTiff"):
    with rasterio.open(path, "w", driver=driver, width=data.shape[1], height=data.shape[0], count=1,
                       dtype="uint8") as dst:
        dst.write(data, 1)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_read_reference_pair_and_oscd(tmp_path):
    change = np.zeros((3, 4), np.uint8)
    unchanged = np.zeros((3, 4), np.uint8)
    change[0, :2] = 255
    unchanged[2, :] = 255
    _write(tmp_path / "change.bmp", change, "BMP")
    _write(tmp_path / "unchanged.bmp", unchanged, "BMP")
    expected = np.full((3, 4), 255, np.uint8)
    expected[0, :2] = 1
    expected[2, :] = 0
    np.testing.assert_array_equal(read_reference_mask((tmp_path / "change.bmp", tmp_path / "unchanged.bmp")), expected)
    np.testing.assert_array_equal(read_reference_mask(tmp_path), expected)
    np.testing.assert_array_equal(read_reference_mask(tmp_path / "change.bmp"), expected)

    cm = np.array([[1, 2], [2, 1]], np.uint8)
    _write(tmp_path / "city-cm.tif", cm)
    np.testing.assert_array_equal(read_reference_mask(tmp_path / "city-cm.tif"), cm - 1)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_read_reference_errors(tmp_path):
    _write(tmp_path / "odd.tif", np.array([[3, 7]], np.uint8))
    with pytest.raises(FormatError, match="encoding"):
        read_reference_mask(tmp_path / "odd.tif")
    with pytest.raises(FormatError):
        read_reference_mask(tmp_path / "missing.tif")
    a = np.full((2, 2), 255, np.uint8)
    _write(tmp_path / "c.bmp", a, "BMP")
    _write(tmp_path / "u.bmp", a, "BMP")
    with pytest.raises(InputError, match="both classes"):
        read_reference_mask((tmp_path / "c.bmp", tmp_path / "u.bmp"))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_picture_masks_are_binary_and_geotiffs_keep_their_encoding(tmp_path):
    """A 0/255 picture (OSCD's cm.png, RGBA) is a binary mask, 255 = change: the real Beihai
    cm.png reads as its cm.tif (1/2) does. A 0/255 GeoTIFF keeps rsmon's 0/1/255 encoding (255 =
    unlabelled). Before, cm.png came out as 'no change or unlabelled' with not one change pixel."""
    from tests.paths import ROOT

    cm = ROOT / "seeds" / "oscd" / "beihai" / "cm"
    if cm.is_dir():
        np.testing.assert_array_equal(read_reference_mask(cm / "cm.png"), read_reference_mask(cm / "beihai-cm.tif"))
    picture = np.array([[0, 255], [255, 0]], np.uint8)
    _write(tmp_path / "mask.png", picture, "PNG")
    _write(tmp_path / "mask.bmp", picture, "BMP")
    _write(tmp_path / "mask.tif", picture)
    for name in ("mask.png", "mask.bmp"):
        np.testing.assert_array_equal(read_reference_mask(tmp_path / name), picture // 255)
    np.testing.assert_array_equal(read_reference_mask(tmp_path / "mask.tif"), picture)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_window_of_a_reference_keeps_the_files_encoding(tmp_path):
    """An OSCD-encoded map (1 no change, 2 change) read through a window holding only 1s is still
    'no change' (the encoding is told from the whole file), not 'change' as 0/1/255 would say."""
    cm = np.ones((40, 60), np.uint8)
    cm[30:, 50:] = 2
    _write(tmp_path / "city-cm.tif", cm)
    got = read_reference_mask(tmp_path / "city-cm.tif", window=(slice(0, 20), slice(0, 30)))
    assert got.shape == (20, 30) and (got == 0).all()
    np.testing.assert_array_equal(read_reference_mask(tmp_path / "city-cm.tif", window=(slice(25, 40), slice(45, 60))),
                                  cm[25:40, 45:60] - 1)
