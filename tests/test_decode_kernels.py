"""Known answers of the block decoding kernels (rsmon.kernels.decode) and their identity with the
NumPy expressions they replace."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from rsmon.io.optical_grid import resample_axis_aligned
from rsmon.kernels.decode import bilinear_separable, lut_decode, nearest_gather


def _numpy_separable(values, r0, r1, wy, c0, c1, wx):
    """The NumPy expression of rsmon.io.optical_grid before the kernels (the reference)."""
    tmp = values[r0] * (1 - wy)[:, None] + values[r1] * wy[:, None]
    return tmp[:, c0] * (1 - wx) + tmp[:, c1] * wx


def _numpy_bilinear(values, r0, r1, wy, c0, c1, wx, rn, cn):
    valid = np.isfinite(values)
    if valid.all():
        return _numpy_separable(values, r0, r1, wy, c0, c1, wx)
    weights = _numpy_separable(valid.astype(np.float32), r0, r1, wy, c0, c1, wx)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = _numpy_separable(np.where(valid, values, np.float32(0)), r0, r1, wy, c0, c1, wx) / weights
    out[~valid[rn][:, cn]] = np.nan
    return out


def test_lut_decode_known_answer():
    table = np.arange(65536, dtype=np.float32) * np.float32(0.5)
    table[0] = np.nan
    dn = np.array([[0, 1], [2, 65535]], np.uint16)
    out = np.empty(dn.shape, np.float32)
    lut_decode(dn, table, out)
    assert np.isnan(out[0, 0])
    np.testing.assert_array_equal(out.ravel()[1:], [0.5, 1.0, 32767.5])


def test_bilinear_known_answer_2x_upsampling():
    # a 2 x 2 source upsampled to 4 x 4 (20 m -> 10 m): centres at source coords -0.25, 0.25, 0.75, 1.25
    src = np.array([[0.0, 4.0], [8.0, 12.0]], np.float32)
    out = resample_axis_aligned(src, Affine(20, 0, 0, 0, -20, 40), Affine(10, 0, 0, 0, -10, 40), (4, 4),
                                nearest=False, fill=np.nan)
    # clamped beyond the outer centres, linear between them: x weights 0, .25, .75, 1 of the step 4, y of 8
    expected = np.array([[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]], np.float32)
    np.testing.assert_array_equal(out, expected)
    assert out.flags.c_contiguous


def test_bilinear_nan_renormalises_and_keeps_nearest_nan():
    src = np.array([[np.nan, 4.0], [8.0, 12.0]], np.float32)
    out = resample_axis_aligned(src, Affine(20, 0, 0, 0, -20, 40), Affine(10, 0, 0, 0, -10, 40), (4, 4),
                                nearest=False, fill=np.nan)
    assert np.isnan(out[:2, :2]).all()  # nearest source pixel is the NaN one
    # (1, 2): weights y .25/.75 (rows 0/1), x .75/.25 (cols 1/0 of the right half): NaN neighbour dropped
    wy, wx = np.float32(0.25), np.float32(0.75)
    zero, four, eight, twelve = (np.float32(v) for v in (0, 4, 8, 12))
    num = (four * (1 - wy) + twelve * wy) * wx + (zero * (1 - wy) + eight * wy) * (1 - wx)
    den = (1 - wy + wy) * wx + (np.float32(0) * (1 - wy) + wy) * (1 - wx)
    assert out[1, 2] == np.float32(num / den)


@pytest.mark.parametrize("with_nan", [False, True])
def test_bilinear_identical_to_numpy(with_nan):
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 1, (67, 71)).astype(np.float32)
    if with_nan:
        values[rng.uniform(size=values.shape) < 0.2] = np.nan
        values[5, 5] = np.inf
    rows = (np.arange(120) + 0.5) * 0.55 - 0.5
    cols = (np.arange(130) + 0.5) * 0.53 - 0.5
    lo_r, lo_c = np.floor(rows), np.floor(cols)
    wy, wx = (rows - lo_r).astype(np.float32), (cols - lo_c).astype(np.float32)
    r0 = np.clip(lo_r.astype(np.intp), 0, 66)
    c0 = np.clip(lo_c.astype(np.intp), 0, 70)
    r1, c1 = np.clip(r0 + 1, 0, 66), np.clip(c0 + 1, 0, 70)
    rn = np.clip(np.floor(rows + 0.5).astype(np.intp), 0, 66)
    cn = np.clip(np.floor(cols + 0.5).astype(np.intp), 0, 70)
    out = np.empty((120, 130), np.float32)
    bilinear_separable(values, r0, r1, wy, c0, c1, wx, rn, cn, out)
    expected = _numpy_bilinear(values, r0, r1, wy, c0, c1, wx, rn, cn)
    np.testing.assert_array_equal(out, expected)  # bit-identical, NaN at the same places


def test_nearest_gather():
    values = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rn, cn = np.array([0, 0, 2]), np.array([3, 1, 1, 0])
    out = np.empty((3, 4), np.uint8)
    nearest_gather(values, rn, cn, out)
    np.testing.assert_array_equal(out, values[rn][:, cn])
