"""Known-answer change detection on synthetic scenes: planted changes of every class, a cloud, a
radiometric difference between dates, and a series with known confidence."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from change_scenes import PLANTED, SERIES_EXPECTED, expected_masks, pair, series  # noqa: E402

from rsmon.products.change import ChangeParams, detect_change, detect_series  # noqa: E402
from rsmon.products.change_classes import confirm_observations  # noqa: E402


def _block(ds, var, name):
    row, col = PLANTED[name][:2]
    return np.unique(ds[var].values[row:row + 10, col:col + 10])


def test_pair_known_change_class_and_nodata():
    before, after = pair()
    out = detect_change(before, after)
    change, classes = expected_masks()
    np.testing.assert_array_equal(out.change.values, change)
    np.testing.assert_array_equal(out.change_class.values, classes)
    np.testing.assert_array_equal(out.confidence.values, change == 1)   # one pair: low (1) at most
    # the radiometric difference (after = 1.05 x + 0.01) is found on the unchanged pixels
    gain = float(out.attrs["normalisation_nir"].split()[0].split("=")[1])
    assert gain == pytest.approx(1.05, abs=0.02)
    for name in ("construction", "clearing", "farmland", "water"):
        assert _block(out, "rule", name).tolist() == [True], name


def test_pair_mmu_parameter():
    before, after = pair()
    out = detect_change(before, after, ChangeParams(mmu_px=101))   # every planted block has 100 px
    assert set(np.unique(out.change.values)) == {0, 255}


def test_series_confidence_and_class():
    out = detect_series(series())
    for name, (confidence, code) in SERIES_EXPECTED.items():
        assert _block(out, "confidence", name).tolist() == [confidence], name
        assert _block(out, "change_class", name).tolist() == [code], name
        assert _block(out, "change", name).tolist() == [1], name
    background = np.ones(out.change.shape, bool)
    for row, col, *_ in PLANTED.values():
        background[row:row + 10, col:col + 10] = False
    assert (out.confidence.values[background] == 0).all()
    assert str(_block(out, "first_detection", "mining")[0]).startswith("2021-02-10")
    assert out.n_clear.values.max() == 3
    # with a 2-observation window the unconfirmed clearing expires
    short = detect_series(series(), ChangeParams(confirm_window=2))
    assert _block(short, "confidence", "clearing").tolist() == [0]
    assert _block(short, "change", "clearing").tolist() == [0]


def test_confirmation_kernel_by_hand():
    # one pixel per column; rows are observations (1 change, 0 no change, 255 cloud)
    flags = np.array([[1, 1, 1, 0, 1, 1],
                      [255, 0, 1, 0, 0, 1],
                      [1, 0, 0, 1, 0, 255],
                      [0, 0, 0, 0, 1, 255]], np.uint8)[:, None, :]
    rules = np.zeros(flags.shape, bool)
    rules[0, 0, 0] = True
    sensors = np.array([0, 0, 1, 1])
    conf, first = confirm_observations(flags, rules, sensors, confirm_window=2, confirm_min=1)
    # px0: cloud skipped, confirmed at obs 2 by sensor 1 -> highest (rule and two sensors)
    # px1: flagged once, two contradictions -> expired
    # px2: confirmed at obs 1, same sensor, no rule -> high
    # px3: first flagged at the third observation -> low
    # px4: expired at obs 2, flagged again at obs 3 -> low from obs 3
    # px5: confirmed at obs 1 -> high, clouds after
    assert conf[0].tolist() == [3, 0, 2, 1, 1, 2]
    assert first[0].tolist() == [0, -1, 0, 2, 3, 0]
