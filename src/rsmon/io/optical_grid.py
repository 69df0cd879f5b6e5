"""Pixel grids and resampling between them (shared by the optical readers and ``align_pair``).

A :class:`PixelGrid` is a CRS plus an affine transform plus a shape (odc-geo's GeoBox habit).
Resampling between two north-up grids of one CRS (Sentinel-2 20 m -> 10 m, OSCD scenes of slightly
different pixel size) is separable NumPy indexing, :func:`resample_axis_aligned`, which gives the same
numbers as GDAL's bilinear warper (NaN excluded from the kernel, NaN where the nearest source pixel is
NaN) several times faster; other pairs (another CRS, rotated grids) go through GDAL's warper.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from affine import Affine

from rsmon.kernels.decode import bilinear_separable, nearest_gather

__all__ = ["PixelGrid", "integer_offset", "resample_axis_aligned", "same_crs", "source_window", "warp_array"]

# Source pixels added around a window before resampling, so bilinear kernels are complete.
_MARGIN = 2


@dataclass(frozen=True)
class PixelGrid:
    """A north-up raster grid: CRS (WKT, or None when the file has none), affine transform and shape.

    ``transform`` maps (col, row) of pixel corners to map coordinates, as in rasterio.
    """

    crs: str | None
    transform: Affine
    height: int
    width: int

    @classmethod
    def of(cls, src) -> "PixelGrid":
        """The grid of an open rasterio dataset."""
        return cls(src.crs.to_wkt() if src.crs else None, src.transform, src.height, src.width)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, positive."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the outer pixel edges."""
        from rasterio.transform import array_bounds

        west, south, east, north = array_bounds(self.height, self.width, self.transform)
        return west, south, east, north

    def same_crs(self, other: "PixelGrid") -> bool:
        return same_crs(self.crs, other.crs)

    def same_as(self, other: "PixelGrid", rtol: float = 1e-9) -> bool:
        """Same CRS, shape and transform (within ``rtol`` of a pixel)."""
        if self.shape != other.shape or not self.same_crs(other):
            return False
        return _transform_close(self.transform, other.transform, rtol)

    def window_transform(self, row0: int, col0: int) -> Affine:
        """The transform of the window starting at (row0, col0): ``transform @ translation(col0,
        row0)``, written out (the same floats, ~20 times faster than affine's product)."""
        t = self.transform
        return Affine(t.a, t.b, t.a * col0 + t.b * row0 + t.c, t.d, t.e, t.d * col0 + t.e * row0 + t.f)

    def coords(self) -> dict[str, np.ndarray]:
        """Pixel-centre coordinate vectors ``x`` (columns) and ``y`` (rows)."""
        t = self.transform
        return {"x": t.c + t.a * (np.arange(self.width) + 0.5), "y": t.f + t.e * (np.arange(self.height) + 0.5)}


@functools.lru_cache(maxsize=256)
def same_crs(a: str | None, b: str | None) -> bool:
    """Two CRS texts (WKT, "EPSG:n", PROJ) name the same CRS; None matches only None."""
    if a is None or b is None:
        return a is b
    if a == b:
        return True
    from rasterio.crs import CRS

    return CRS.from_user_input(a) == CRS.from_user_input(b)


def _transform_close(a: Affine, b: Affine, rtol: float) -> bool:
    pixel = max(abs(a.a), abs(a.e), 1e-300)
    return all(abs(x - y) <= rtol * pixel for x, y in zip(tuple(a)[:6], tuple(b)[:6]))


def integer_offset(src: PixelGrid, dst: PixelGrid, rtol: float = 1e-6) -> tuple[int, int] | None:
    """(row, col) of ``dst``'s first pixel in ``src`` when both share CRS, pixel size and pixel
    edges (only an integer shift apart); None otherwise."""
    if not src.same_crs(dst):
        return None
    s, d = src.transform, dst.transform
    if s.b or s.d or d.b or d.d or not math.isclose(s.a, d.a, rel_tol=rtol) or not math.isclose(s.e, d.e, rel_tol=rtol):
        return None
    col, row = (d.c - s.c) / s.a, (d.f - s.f) / s.e
    if abs(col - round(col)) > rtol * 100 or abs(row - round(row)) > rtol * 100:
        return None
    return int(round(row)), int(round(col))



def source_window(src_grid: PixelGrid, dst_crs: str | None, dst_transform: Affine, height: int,
                   width: int) -> tuple[int, int, int, int] | None:
    """(row0, col0, height, width) of ``src_grid`` pixels under a target window, with a margin and
    clipped to the source; None when they do not overlap."""
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    west, south, east, north = array_bounds(height, width, dst_transform)
    if dst_crs is not None and src_grid.crs is not None and not same_crs(dst_crs, src_grid.crs):
        west, south, east, north = transform_bounds(dst_crs, src_grid.crs, west, south, east, north, densify_pts=21)
    inv = ~src_grid.transform
    cols, rows = zip(*(inv @ (x, y) for x in (west, east) for y in (south, north)))
    row0 = max(int(math.floor(min(rows))) - _MARGIN, 0)
    col0 = max(int(math.floor(min(cols))) - _MARGIN, 0)
    row1 = min(int(math.ceil(max(rows))) + _MARGIN, src_grid.height)
    col1 = min(int(math.ceil(max(cols))) + _MARGIN, src_grid.width)
    if row1 <= row0 or col1 <= col0:
        return None
    return row0, col0, row1 - row0, col1 - col0


def warp_array(values: np.ndarray, src_transform: Affine, src_crs: str | None, dst_transform: Affine,
               dst_crs: str | None, shape: tuple[int, int], *, nearest: bool, fill) -> np.ndarray:
    """Resample a 2-D array onto another grid window.

    Float arrays: bilinear (nearest when ``nearest``), NaN is nodata in and out. Integer arrays:
    nearest, ``fill`` where the destination is outside the source. North-up grids in the same CRS
    use :func:`resample_axis_aligned` (separable, NumPy); anything else GDAL's warper.
    """
    if same_crs(src_crs, dst_crs) and not (src_transform.b or src_transform.d or dst_transform.b or dst_transform.d):
        return resample_axis_aligned(values, src_transform, dst_transform, shape,
                                     nearest=nearest or values.dtype.kind != "f", fill=fill)
    from rasterio.warp import Resampling, reproject

    crs = src_crs or dst_crs or "EPSG:4326"  # GDAL needs a CRS; with none, both grids share pixel space
    is_float = values.dtype.kind == "f"
    out = np.full(shape, fill, dtype=values.dtype)
    reproject(values, out, src_transform=src_transform, src_crs=crs, dst_transform=dst_transform,
              dst_crs=dst_crs or crs, resampling=Resampling.nearest if nearest or not is_float else Resampling.bilinear,
              src_nodata=np.nan if is_float else None, dst_nodata=np.nan if is_float else fill)
    return out


def _source_coords(dst_offset: float, dst_step: float, src_offset: float, src_step: float, n: int) -> np.ndarray:
    """Fractional source pixel-centre index of each destination pixel centre along one axis."""
    centres = dst_offset + dst_step * (np.arange(n) + 0.5)
    return (centres - src_offset) / src_step - 0.5


@functools.lru_cache(maxsize=1024)
def _axis_plan(dst_offset: float, dst_step: float, src_offset: float, src_step: float, n: int, size: int):
    """:func:`_axis` of :func:`_source_coords`, memoised: every block of a block row shares its
    row plan and every block of a block column its column plan (read-only arrays)."""
    plan = _axis(_source_coords(dst_offset, dst_step, src_offset, src_step, n), size)
    for array in plan:
        array.setflags(write=False)
    return plan


def _axis(coords: np.ndarray, size: int):
    """Bilinear indexes and weights along one axis (clamped at the edges), nearest index, inside mask."""
    lo = np.floor(coords)
    weight = (coords - lo).astype(np.float32)
    lo = lo.astype(np.intp)
    nearest = np.floor(coords + 0.5).astype(np.intp)
    inside = (coords > -0.5 - 1e-9) & (coords < size - 0.5 + 1e-9)
    return np.clip(lo, 0, size - 1), np.clip(lo + 1, 0, size - 1), weight, np.clip(nearest, 0, size - 1), inside


def resample_axis_aligned(values: np.ndarray, src_transform: Affine, dst_transform: Affine, shape: tuple[int, int],
                          *, nearest: bool, fill) -> np.ndarray:
    """Resample between two north-up grids of the same CRS (separable; the numba kernels of
    :mod:`rsmon.kernels.decode`, C-ordered output).

    Bilinear between source pixel centres (constant beyond the outermost centres, as GDAL), the
    weights renormalised over the valid (non-NaN) neighbours; NaN where the nearest source pixel is
    NaN. Nearest: the source pixel containing the destination centre. Destination pixels whose
    centre is outside the source array get ``fill``.
    """
    r0, r1, wy, rn, r_in = _axis_plan(dst_transform.f, dst_transform.e, src_transform.f, src_transform.e, shape[0],
                                      values.shape[0])
    c0, c1, wx, cn, c_in = _axis_plan(dst_transform.c, dst_transform.a, src_transform.c, src_transform.a, shape[1],
                                      values.shape[1])
    values = np.ascontiguousarray(values)
    out = np.empty(shape, values.dtype)
    if nearest:
        nearest_gather(values, rn, cn, out)
    else:
        bilinear_separable(values, r0, r1, wy, c0, c1, wx, rn, cn, out)
    if not (r_in.all() and c_in.all()):
        out[~r_in, :] = fill
        out[:, ~c_in] = fill
    return out
