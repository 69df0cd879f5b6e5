"""The raster cells of many polygons, strip by strip: per-polygon sums without a whole label raster.

Used wherever per-polygon statistics of a large raster are wanted for thousands of small polygons
(the cropland share of change patches, :func:`rsmon.io.landcover.class_share_of_polygons`; the
NDVI of watched patches, :func:`rsmon.products.change_screen.watch_observation`): the polygons of
each strip of rows are burnt into a label array the size of that strip only
(``rasterio.features.rasterize``: a cell belongs to a polygon when its centre lies inside), and
the caller sums its values per polygon with :meth:`StripCells.add`. Polygons must not overlap;
where they do, a cell counts for the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine

__all__ = ["PolygonCells", "StripCells"]


@dataclass(frozen=True)
class StripCells:
    """The cells inside the polygons of one strip: ``sel`` the polygons (indexes into the
    :class:`PolygonCells` polygons), ``rows``/``cols`` the window of the grid, ``at`` the flat
    indexes in that window of the cells inside a polygon and ``owner`` which one (1..len(sel))."""

    sel: np.ndarray
    rows: slice
    cols: slice
    at: np.ndarray
    owner: np.ndarray

    def values(self, window_values) -> np.ndarray:
        """The values of the cells inside a polygon, from an array on the window."""
        return np.asarray(window_values).ravel()[self.at]

    def add(self, total: np.ndarray, keep: np.ndarray | None = None, weights: np.ndarray | None = None) -> None:
        """Add to ``total`` (one slot per polygon) the count of the cells (where ``keep``), or
        the sum of ``weights`` over them."""
        owner = self.owner if keep is None else self.owner[keep]
        w = None if weights is None else (weights if keep is None else weights[keep])
        total[self.sel] += np.bincount(owner, weights=w, minlength=self.sel.size + 1)[1:]


class PolygonCells:
    """Polygons (in the grid's CRS) placed on a grid (``transform``, ``shape``), read in strips of
    ``strip_rows`` rows: :meth:`tops` gives the strips that hold polygons, :meth:`strip` one
    strip's cells. ``on_grid`` says which polygons reach the grid at all."""

    def __init__(self, geoms, transform: Affine, shape: tuple[int, int], strip_rows: int = 1024) -> None:
        import shapely

        self.geoms = np.asarray(geoms, dtype=object)
        self.transform, self.shape, self.strip_rows = transform, (int(shape[0]), int(shape[1])), int(strip_rows)
        height, width = self.shape
        box = shapely.bounds(self.geoms) if len(self.geoms) else np.zeros((0, 4))  # NaN for empty geometries
        ok = np.isfinite(box).all(axis=1)
        inv = ~transform
        c0, r0 = inv @ (np.where(ok, box[:, 0], 0), np.where(ok, box[:, 3], 0))
        c1, r1 = inv @ (np.where(ok, box[:, 2], 0), np.where(ok, box[:, 1], 0))
        self.rows0 = np.clip(np.floor(np.minimum(r0, r1)), 0, height).astype(np.int64)  # min/max: any row order
        self.rows1 = np.clip(np.ceil(np.maximum(r0, r1)), 0, height).astype(np.int64)
        self.cols0 = np.clip(np.floor(np.minimum(c0, c1)), 0, width).astype(np.int64)
        self.cols1 = np.clip(np.ceil(np.maximum(c0, c1)), 0, width).astype(np.int64)
        self.on_grid = ok & (self.rows1 > self.rows0) & (self.cols1 > self.cols0)

    def tops(self, which: np.ndarray | None = None) -> range:
        """First rows of the strips holding the polygons ``which`` (bool; default: all on the grid)."""
        which = self.on_grid if which is None else which & self.on_grid
        if not which.any():
            return range(0)
        return range(int(self.rows0[which].min()), int(self.rows1[which].max()), self.strip_rows)

    def strip(self, top: int, which: np.ndarray | None = None) -> StripCells | None:
        """The cells of the polygons ``which`` in the strip starting at row ``top`` (None: none)."""
        from rasterio.features import rasterize

        which = self.on_grid if which is None else which & self.on_grid
        bottom = min(top + self.strip_rows, self.shape[0])
        sel = np.flatnonzero(which & (self.rows0 < bottom) & (self.rows1 > top))
        if not sel.size:
            return None
        left, right = int(self.cols0[sel].min()), int(self.cols1[sel].max())
        # labels 1..len(sel) local to the strip: uint16 when they fit (half the array to fill)
        labels = rasterize(zip(self.geoms[sel], range(1, sel.size + 1)), out_shape=(bottom - top, right - left),
                           transform=self.transform * Affine.translation(left, top), fill=0,
                           dtype="uint16" if sel.size < 65535 else "int32")
        flat = labels.ravel()
        at = np.flatnonzero(flat)  # only the cells inside a polygon are looked at
        if not at.size:
            return None
        return StripCells(sel, slice(top, bottom), slice(left, right), at, flat[at].astype(np.int64))
