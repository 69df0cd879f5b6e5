"""Per-block decoding and resampling of optical band windows (numba kernels).

The lazy optical readers (:mod:`rsmon.io.optical_raster`) decode every block of every band: DN
through a float32 lookup table, and 20 m bands onto the 10 m grid by separable bilinear
interpolation (:func:`rsmon.io.optical_grid.resample_axis_aligned`). With NumPy each step is a
few whole-block passes with temporaries (and fancy indexing along columns returns
Fortran-ordered arrays the change kernels must copy again); these kernels do each in one pass
into a C-ordered output, release the GIL and compute exactly the float32 operations of the NumPy
expressions they replace, in the same order, so their results are bit-identical
(``tests/test_decode_kernels.py`` checks this against the NumPy expressions).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["lut_decode", "bilinear_separable", "nearest_gather"]


@njit(cache=True, nogil=True)
def lut_decode(dn, table, out):
    """``out[i, j] = table[dn[i, j]]`` (``np.take(table, dn)`` into a preallocated array).

    ``dn`` is a 2-D uint8/uint16 array, ``table`` the float32 decoding table covering every DN
    value of the type, ``out`` a float32 array (or a view of one) of the same shape."""
    h, w = dn.shape
    for i in range(h):
        for j in range(w):
            out[i, j] = table[dn[i, j]]


@njit(cache=True, nogil=True, error_model="numpy")
def bilinear_separable(values, r0, r1, wy, c0, c1, wx, rn, cn, out):
    """Separable bilinear interpolation of a float32 window, NaN-aware, into ``out`` (C order).

    The NumPy reference (:func:`rsmon.io.optical_grid.resample_axis_aligned`) computes, with
    ``v`` the window and ``tmp = v[r0] * (1 - wy)[:, None] + v[r1] * wy[:, None]``,
    ``out = tmp[:, c0] * (1 - wx) + tmp[:, c1] * wx``. When the window has non-finite values the
    same is done on ``where(finite, v, 0)`` and on the finite mask (the weights), the first is
    divided by the second, and pixels whose nearest source pixel (``rn``, ``cn``) is not finite
    become NaN. Every product and sum is float32, as in NumPy.
    """
    h, w = out.shape
    one = np.float32(1)
    zero = np.float32(0)
    finite = True
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isfinite(values[i, j]):
                finite = False
                break
        if not finite:
            break
    if finite:
        # the row pass once per output row over the source columns (vectorised), then the column
        # pass gathers from it: the same products and sums as per pixel
        ux = np.empty(w, values.dtype)
        for j in range(w):
            ux[j] = one - wx[j]
        tmp = np.empty(values.shape[1], values.dtype)
        for i in range(h):
            vy = wy[i]
            uy = one - vy
            a = values[r0[i]]
            b = values[r1[i]]
            for c in range(values.shape[1]):
                tmp[c] = a[c] * uy + b[c] * vy
            for j in range(w):
                out[i, j] = tmp[c0[j]] * ux[j] + tmp[c1[j]] * wx[j]
        return
    for i in range(h):
        vy = wy[i]
        uy = one - vy
        a = values[r0[i]]
        b = values[r1[i]]
        nearest_row = values[rn[i]]
        for j in range(w):
            vx = wx[j]
            ux = one - vx
            a0, b0, a1, b1 = a[c0[j]], b[c0[j]], a[c1[j]], b[c1[j]]
            fa0, fb0, fa1, fb1 = np.isfinite(a0), np.isfinite(b0), np.isfinite(a1), np.isfinite(b1)
            s0 = (a0 if fa0 else zero) * uy + (b0 if fb0 else zero) * vy
            s1 = (a1 if fa1 else zero) * uy + (b1 if fb1 else zero) * vy
            w0 = (one if fa0 else zero) * uy + (one if fb0 else zero) * vy
            w1 = (one if fa1 else zero) * uy + (one if fb1 else zero) * vy
            value = (s0 * ux + s1 * vx) / (w0 * ux + w1 * vx)
            out[i, j] = value if np.isfinite(nearest_row[cn[j]]) else np.float32(np.nan)


@njit(cache=True, nogil=True)
def nearest_gather(values, rn, cn, out):
    """``out[i, j] = values[rn[i], cn[j]]`` (``values[rn][:, cn]``, C-ordered, any dtype)."""
    h, w = out.shape
    for i in range(h):
        row = values[rn[i]]
        for j in range(w):
            out[i, j] = row[cn[j]]
