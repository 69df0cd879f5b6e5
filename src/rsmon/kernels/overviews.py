"""Overview kernel for class rasters: 2x2 mode (majority) decimation with nodata (numba).

GDAL's ``MODE`` overview resampling costs about 1.9 CPU-s per 10980 x 10980 uint8 raster (a
histogram per output pixel through its generic resampling code); the change workflow writes three
such rasters per Sentinel-2 tile. :func:`mode_halve` computes one 2x level of such a raster in
about 0.05 s, so :func:`rsmon.io.cog.write_raster_cog` computes every level itself, each from the
previous one (as GDAL's COG driver does), and hands them to GDAL's COG driver as existing
overviews.

Rule, for output pixel ``(i, j)`` and its source window ``rows 2i..2i+1, cols 2j..2j+1``:

* nodata pixels do not vote; a window of nodata only gives nodata;
* the most frequent value among the others wins, so a value absent from the window (an invented
  class) never appears;
* ties (2-2, 1-1 or 1-1-1-1 among the valid pixels) go to the tied value met first in row-major
  order (top-left, top-right, bottom-left, bottom-right). The rule does not prefer any value:
  "largest value wins" was tried and, applied level after level, doubled the share of change
  pixels in the coarsest overview of a real tile (5 % -> 10 %); with this rule the share stays
  within 0.1 point of GDAL's ``MODE`` at every level, and the first two levels equal GDAL's
  except 0.0003 % of pixels (GDAL takes the tied value that reaches the top count first, e.g.
  ``b`` for ``[[a, b], [b, a]]`` where this rule takes ``a``).

An odd size gives ``ceil(n / 2)`` pixels, the last window clipped to the raster (one row or
column), like ``gdaladdo``'s overview sizes; GDAL's COG driver rounds down instead and resamples
with a ratio slightly above 2, so its coarse levels are shifted by up to one pixel against these.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["mode_halve"]


@njit(cache=True, nogil=True, inline="always")
def _mode4(v0, v1, v2, v3, k0, k1, k2, k3, nodata):
    """Mode of the values ``v`` whose flag ``k`` is set (ties: the first in ``v`` order); ``nodata`` if none."""
    best = nodata
    top = 0
    if k0:
        n = 1 + (k1 and v1 == v0) + (k2 and v2 == v0) + (k3 and v3 == v0)
        best, top = v0, n
    if k1:
        n = 1 + (k0 and v0 == v1) + (k2 and v2 == v1) + (k3 and v3 == v1)
        if n > top:
            best, top = v1, n
    if k2:
        n = 1 + (k0 and v0 == v2) + (k1 and v1 == v2) + (k3 and v3 == v2)
        if n > top:
            best, top = v2, n
    if k3:
        n = 1 + (k0 and v0 == v3) + (k1 and v1 == v3) + (k2 and v2 == v3)
        if n > top:
            best = v3
    return best


#: The integer types a GeoTIFF holds, compiled (or loaded from numba's cache) at import so a call
#: pays no type inference; arrays of any layout (blocks are views of a larger array).
_SIGNATURES = [f"void({t}[:, :], {t}, boolean, {t}[:, :])"
               for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64")]


@njit(_SIGNATURES, cache=True, nogil=True)
def _mode_halve(src, nodata, has_nodata, out):
    """Fill ``out`` (``ceil(rows / 2)`` x ``ceil(cols / 2)``) with the 2x2 modes of ``src``."""
    rows, cols = src.shape
    for i in range(out.shape[0]):
        r0 = 2 * i
        r1 = min(r0 + 1, rows - 1)  # a clipped window repeats the last row, flagged invalid
        has_r1 = r0 + 1 < rows
        for j in range(out.shape[1]):
            c0 = 2 * j
            c1 = min(c0 + 1, cols - 1)
            has_c1 = c0 + 1 < cols
            v0, v1, v2, v3 = src[r0, c0], src[r0, c1], src[r1, c0], src[r1, c1]
            if v0 == v1 and v1 == v2 and v2 == v3:  # uniform window (most of a mask): its value
                out[i, j] = v0
                continue
            out[i, j] = _mode4(
                v0, v1, v2, v3,
                not (has_nodata and v0 == nodata),
                has_c1 and not (has_nodata and v1 == nodata),
                has_r1 and not (has_nodata and v2 == nodata),
                has_r1 and has_c1 and not (has_nodata and v3 == nodata),
                nodata,
            )


def mode_halve(values: np.ndarray, nodata: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """One 2x overview level of a class raster: the mode of each 2x2 window (module docstring).

    Parameters
    ----------
    values : numpy.ndarray
        2-D integer raster (any layout, e.g. a view of a block).
    nodata : int, optional
        Value that does not vote; None (or a value ``values.dtype`` cannot hold) when every pixel
        is valid.
    out : numpy.ndarray, optional
        Destination of shape ``(ceil(rows / 2), ceil(cols / 2))`` and ``values.dtype``, e.g. a
        view into a larger overview; allocated when None.

    Returns
    -------
    numpy.ndarray
        ``out``.

    Raises
    ------
    TypeError
        ``values`` is not an integer array (numba finds no matching signature).
    """
    rows, cols = values.shape
    if out is None:
        out = np.empty(((rows + 1) // 2, (cols + 1) // 2), dtype=values.dtype)
    info = np.iinfo(values.dtype) if np.issubdtype(values.dtype, np.integer) else None
    has_nodata = (nodata is not None and info is not None and float(nodata).is_integer()
                  and info.min <= nodata <= info.max)
    fill = values.dtype.type(nodata if has_nodata else 0)
    _mode_halve(values, fill, has_nodata, out)
    return out
