"""Mergeable L3 accumulators: swath pixels binned to a :class:`~rsmon.grid.LonLatGrid`.

An accumulator holds ``sum(w*y)``, ``sum(w)`` and the pixel count per cell. Orbits, days and dask
workers combine by addition (``a + b``), which is associative and commutative, so a tree reduction
over any number of workers gives the same sums as one sequential pass (up to float rounding order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rsmon.grid import LonLatGrid
from rsmon.kernels.binning import bin_quads


@dataclass
class BinAccumulator:
    """Sums of one L3 field on one grid.

    Attributes
    ----------
    grid : LonLatGrid
    sum_wy, sum_w : float64 arrays (height, width)
        ``sum(w * y)`` and ``sum(w)`` with ``w`` = overlap area / cell area (x extra weight).
    count : int64 array (height, width)
        Number of pixels overlapping each cell.
    n_pixels : int
        Pixels that reached the grid.
    inputs : tuple of str
        Source identifiers (paths) that contributed, in sorted order.
    time_start, time_end : numpy.datetime64 or None
        Earliest and latest observation time that contributed.
    """

    grid: LonLatGrid
    sum_wy: np.ndarray
    sum_w: np.ndarray
    count: np.ndarray
    n_pixels: int = 0
    inputs: tuple[str, ...] = ()
    time_start: np.datetime64 | None = None
    time_end: np.datetime64 | None = None
    meta: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, grid: LonLatGrid) -> "BinAccumulator":
        shape = grid.shape
        return cls(grid, np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=np.int64))

    def __add__(self, other: "BinAccumulator") -> "BinAccumulator":
        if other.grid != self.grid:
            raise ValueError(f"cannot merge accumulators on different grids: {self.grid} vs {other.grid}")
        times = [t for t in (self.time_start, self.time_end, other.time_start, other.time_end) if t is not None]
        return BinAccumulator(
            self.grid,
            self.sum_wy + other.sum_wy,
            self.sum_w + other.sum_w,
            self.count + other.count,
            self.n_pixels + other.n_pixels,
            tuple(sorted(set(self.inputs) | set(other.inputs))),
            min(times) if times else None,
            max(times) if times else None,
            {**self.meta, **other.meta},
        )

    def mean(self) -> np.ndarray:
        """Cell means ``sum(w*y)/sum(w)`` as float32, NaN where no pixel contributed."""
        out = np.full(self.grid.shape, np.nan, dtype=np.float64)
        np.divide(self.sum_wy, self.sum_w, out=out, where=self.sum_w > 0)
        return out.astype(np.float32)


def pixel_bbox_mask(lon_bounds: np.ndarray, lat_bounds: np.ndarray, grid: LonLatGrid, margin: float = 0.0) -> np.ndarray:
    """True for pixels whose corner bbox may touch ``grid`` (cheap prefilter; antimeridian-aware)."""
    west, south, east, north = grid.bounds
    lat_ok = (np.nanmax(lat_bounds, axis=-1) > south - margin) & (np.nanmin(lat_bounds, axis=-1) < north + margin)
    lon_min = np.nanmin(lon_bounds, axis=-1)
    lon_max = np.nanmax(lon_bounds, axis=-1)
    lon_ok = np.zeros(lat_ok.shape, dtype=bool)
    for shift in (-360.0, 0.0, 360.0):
        lon_ok |= (lon_max + shift > west - margin) & (lon_min + shift < east + margin)
    # pixels straddling the antimeridian have a corner spread near 360 degrees: keep them for the kernel
    lon_ok |= (lon_max - lon_min) > 180.0
    return lat_ok & lon_ok


def bin_pixels(
    acc: BinAccumulator,
    lon_bounds: np.ndarray,
    lat_bounds: np.ndarray,
    values: np.ndarray,
    extra_weight: np.ndarray | None = None,
) -> int:
    """Bin pixel quadrilaterals into ``acc`` in place; returns the number of pixels that hit the grid.

    Parameters
    ----------
    lon_bounds, lat_bounds : array (n, 4)
        Corner coordinates in degrees.
    values : array (n,)
        NaN values are skipped.
    extra_weight : array (n,), optional
        Multiplies the area weight (e.g. ``1/sigma**2``); default 1.
    """
    lon_bounds = np.ascontiguousarray(lon_bounds, dtype=np.float64).reshape(-1, 4)
    lat_bounds = np.ascontiguousarray(lat_bounds, dtype=np.float64).reshape(-1, 4)
    values = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    if extra_weight is None:
        extra_weight = np.ones_like(values)
    else:
        extra_weight = np.ascontiguousarray(extra_weight, dtype=np.float64).reshape(-1)
    g = acc.grid
    used = bin_quads(
        lon_bounds, lat_bounds, values, extra_weight, g.west, g.south, g.res, g.width, g.height,
        acc.sum_wy, acc.sum_w, acc.count,
    )
    acc.n_pixels += int(used)
    return int(used)
