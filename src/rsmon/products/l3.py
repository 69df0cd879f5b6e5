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
    west0, south0, col_off, row_off = g.edge_reference()
    used = bin_quads(
        lon_bounds, lat_bounds, values, extra_weight, west0, south0, g.res, col_off, row_off, g.width, g.height,
        acc.sum_wy, acc.sum_w, acc.count,
    )
    acc.n_pixels += int(used)
    return int(used)


@dataclass
class PixelSet:
    """Valid pixels of one swath (and one period) ready for binning, kept compact in memory.

    Corners stay float32 as stored in L2 files (no precision is lost); per-pixel corner extents are
    precomputed so each output block selects its pixels with one vectorised test.
    """

    lon_bounds: np.ndarray  # (n, 4) float32
    lat_bounds: np.ndarray  # (n, 4) float32
    values: np.ndarray  # (n,) float64
    extra_weight: np.ndarray | None = None  # (n,) float64
    source: str = ""
    time_start: np.datetime64 | None = None
    time_end: np.datetime64 | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        lon = self.lon_bounds.astype(np.float64)
        # unwrap relative to the first corner, as the kernel does, so extents are antimeridian-safe
        lon = lon[:, :1] + ((lon - lon[:, :1] + 180.0) % 360.0) - 180.0
        self._lon_min = lon.min(axis=1).astype(np.float32)
        self._lon_max = lon.max(axis=1).astype(np.float32)
        self._lat_min = self.lat_bounds.min(axis=1)
        self._lat_max = self.lat_bounds.max(axis=1)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def select(self, grid: LonLatGrid, margin_deg: float = 1e-4) -> np.ndarray:
        """Indices of pixels whose corner extent comes within ``margin_deg`` of ``grid``.

        The margin absorbs the float32 rounding of the stored extents; the kernel clips exactly, so a
        pixel selected in excess contributes nothing. Shifts of 360 degrees are included.
        """
        west, south, east, north = grid.bounds
        west, south, east, north = west - margin_deg, south - margin_deg, east + margin_deg, north + margin_deg
        sel = (self._lat_max > south) & (self._lat_min < north)
        lon_ok = np.zeros(sel.shape, dtype=bool)
        for shift in (-360.0, 0.0, 360.0):
            lon_ok |= (self._lon_max + shift > west) & (self._lon_min + shift < east)
        return np.flatnonzero(sel & lon_ok)

    def bin_into(self, acc: BinAccumulator) -> int:
        """Bin the pixels that may touch ``acc.grid`` into ``acc``; returns how many hit it."""
        idx = self.select(acc.grid)
        if idx.size == 0:
            return 0
        extra = None if self.extra_weight is None else self.extra_weight[idx]
        return bin_pixels(acc, self.lon_bounds[idx], self.lat_bounds[idx], self.values[idx], extra)


def bin_block(pixelsets: list[PixelSet], grid: LonLatGrid) -> np.ndarray:
    """Accumulate every pixel set on one block; returns ``[sum_wy, sum_w, count]`` stacked (3, h, w)."""
    acc = BinAccumulator.empty(grid)
    for ps in pixelsets:
        ps.bin_into(acc)
    return np.stack([acc.sum_wy, acc.sum_w, acc.count.astype(np.float64)])


def default_block_size(grid: LonLatGrid) -> int:
    """Output block edge (cells): small grids still split into several blocks so both cores work;
    continental grids use larger blocks so fewer pixels are tested against several blocks."""
    cells = grid.width * grid.height
    if cells <= 1024 * 1024:
        return 256
    return 512 if cells <= 4096 * 4096 else 1024


def lazy_sums(pixelsets: list[PixelSet], grid: LonLatGrid, block_size: int | None = None):
    """Dask arrays ``(sum_wy, sum_w, count)`` over ``grid``, one task per block.

    Memory is bounded by the pixel sets plus the blocks being computed, whatever the grid size
    (HARP holds the whole grid in memory); blocks compute in parallel (the kernel releases the GIL).
    """
    import dask
    import dask.array as da

    block_size = block_size or default_block_size(grid)
    node = dask.delayed(pixelsets, traverse=False)
    rows = []
    for r in range(0, grid.height, block_size):
        row = []
        for c in range(0, grid.width, block_size):
            h = min(block_size, grid.height - r)
            w = min(block_size, grid.width - c)
            sub = grid.window(r, c, h, w)
            row.append(da.from_delayed(dask.delayed(bin_block)(node, sub), (3, h, w), np.float64))
        rows.append(row)
    stacked = da.block(rows)
    return stacked[0], stacked[1], stacked[2]
