"""Connected change regions of a change raster: labels, pixel-edge polygons, per-region statistics.

The steps behind :func:`rsmon.products.patches.patches_from_change`, written for a full
Sentinel-2 tile (10980 x 10980 pixels, millions of change pixels, thousands of patches) in a few
tenths of a second on two cores, with numba kernels (:mod:`rsmon.kernels.patches`) that release
the GIL:

* the raster is scanned once for runs of change pixels (two threads, half the rows each); runs
  touching between rows are joined into regions, numbered as ``scipy.ndimage.label`` numbers them.
  After that everything works on the runs and on the list of change pixels in raster order
  ("pixel positions"), never on whole-raster label arrays;
* polygons are traced region by region (two threads) with GDAL's polygonizer algorithm, so they
  are the rings ``rasterio.features.shapes`` gives, vertex for vertex;
* pixels of patches cut by a redline edge are assigned to pieces by point-in-polygon tests of
  their centres (whole runs at once where no feature edge crosses them); statistics are per-bin
  sums and maxima over the pixel list.
"""

from __future__ import annotations

import contextlib
import contextvars
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from affine import Affine

from rsmon.errors import InputError
from rsmon.kernels.patches import (
    OTHER_CLASS,
    bin_max,
    bin_sums,
    class_votes,
    find_runs,
    gather_runs,
    label_runs,
    pixel_positions,
    trace_polygons,
)

__all__ = [
    "THREADS",
    "MeanAccumulator",
    "PiecePixels",
    "Regions",
    "assign_pieces",
    "kernel_threads",
    "label_regions",
    "majority_class",
    "region_polygons",
    "region_windows",
    "threaded",
]

#: Threads for the kernels (the target machine has two cores).
THREADS = 2

_THREADS: contextvars.ContextVar[int] = contextvars.ContextVar("rsmon_region_threads", default=THREADS)


@contextlib.contextmanager
def kernel_threads(n: int):
    """Within the block, :func:`threaded` work of this context uses up to ``n`` threads: 1 when
    another thread already keeps a core busy (the redline job writes its COGs meanwhile; three
    or four runnable threads on two cores made its patch stage 0.15 s slower)."""
    token = _THREADS.set(max(int(n), 1))
    try:
        yield
    finally:
        _THREADS.reset(token)


def threaded(fn, args: list[tuple]) -> list:
    """``fn(*a)`` for each ``a`` of ``args``, in up to :data:`THREADS` threads (for work that
    releases the GIL: the kernels, PROJ), or as many as :func:`kernel_threads` allows."""
    n = min(len(args), _THREADS.get())
    if n <= 1:
        return [fn(*a) for a in args]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda a: fn(*a), args))


@dataclass
class Regions:
    """Connected regions of change pixels, one class each, as runs of pixels.

    ``rows``, ``starts``, ``ends`` hold the runs of change pixels (row, first column, end column
    exclusive; int32, raster order), ``run_label`` each run's region (1..n, numbered as
    ``scipy.ndimage.label`` numbers them), ``label_class`` each region's class code (index 0
    unused). Per-pixel arrays list the change pixels in raster order ("pixel positions").
    """

    rows: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    run_label: np.ndarray
    label_class: np.ndarray
    shape: tuple[int, int]

    @property
    def n(self) -> int:
        return len(self.label_class) - 1

    @cached_property
    def offsets(self) -> np.ndarray:
        """Position of each run's first pixel; the last item is the number of change pixels."""
        return np.r_[0, np.cumsum(self.ends - self.starts, dtype=np.int64)]

    @cached_property
    def label(self) -> np.ndarray:
        """Region of each change pixel (int32)."""
        return np.repeat(self.run_label, self.ends - self.starts)

    @cached_property
    def row_first(self) -> np.ndarray:
        """Index of the first run of each row (and the number of runs at the end)."""
        return np.searchsorted(self.rows, np.arange(self.shape[0] + 1))

    def positions(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel position and region of each flat index (``row * width + col``); -1 and 0 where it
        is not a change pixel."""
        cuts = np.linspace(0, len(flat), THREADS + 1).astype(int)
        parts = threaded(pixel_positions, [(flat[a:b], self.shape[1], self.row_first, self.starts, self.ends,
                                            self.offsets, self.run_label) for a, b in zip(cuts[:-1], cuts[1:])])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def subset(self, keep: np.ndarray) -> Regions:
        """The regions ``keep`` marks (boolean per region, index 0 ignored), numbered 1..m in their
        order."""
        keep = np.asarray(keep, bool).copy()
        keep[0] = False
        number = (np.cumsum(keep) * keep).astype(self.run_label.dtype)
        runs = keep[self.run_label]
        return Regions(self.rows[runs], self.starts[runs], self.ends[runs], number[self.run_label[runs]],
                       np.r_[0, self.label_class[keep]].astype(self.label_class.dtype), self.shape)

    def first_flat(self) -> np.ndarray:
        """Flat index (``row * width + col``) of each region's first pixel in raster order (index 0
        unused): ``scipy.ndimage.label`` numbers regions in this order."""
        first = np.zeros(self.n + 1, np.int64)
        labels, at = np.unique(self.run_label, return_index=True)
        first[labels] = self.rows[at].astype(np.int64) * self.shape[1] + self.starts[at]
        return first

    def gather(self, raster: np.ndarray, runs: slice = slice(None), row0: int = 0, col0: int = 0) -> np.ndarray:
        """Values of ``raster`` at the change pixels of ``runs``, in pixel order; ``raster`` holds
        the rows and columns from ``row0``, ``col0`` on."""
        rows, starts, ends = self.rows[runs], self.starts[runs], self.ends[runs]
        out = np.empty(int(np.sum(ends - starts, dtype=np.int64)), raster.dtype)
        gather_runs(raster, row0, col0, rows, starts, ends, out)
        return out


def label_regions(change: np.ndarray, classes: np.ndarray, connectivity: int) -> Regions:
    """Label connected regions (``connectivity`` 4 or 8) of change pixels (``change == 1``).

    A region is a connected change area whatever its pixels' classes, and its class is the most
    frequent pixel class (ties: the lower code; codes outside 1..6 count as ``other``): the
    minimum mapping unit applies to change areas, so splitting them by class would leave patches
    below it, and an interpreter checks one site, not its class fragments.

    Raises
    ------
    InputError
        ``connectivity`` is not 4 or 8.
    """
    if connectivity not in (4, 8):
        raise InputError(f"connectivity: expected 4 or 8, got {connectivity}")
    rows, starts, ends = _runs(change)
    run_label, n = label_runs(rows, starts, ends, connectivity == 8)
    votes = class_votes(classes, rows, starts, ends, run_label, n)
    label_class = votes.argmax(axis=1).astype(np.int32)
    label_class[0] = 0
    return Regions(rows, starts, ends, run_label, label_class, change.shape)


def _runs(change: np.ndarray, row0: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of change pixels of ``change`` (rows, first and end columns, int32, raster order),
    found by :data:`THREADS` threads (a share of the rows each); the rows are numbered from
    ``row0``."""
    bounds = np.linspace(0, change.shape[0], THREADS + 1).astype(int)
    parts = threaded(find_runs, [(change, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])])
    rows, starts, ends = (np.concatenate(p) for p in zip(*parts))
    return (rows + row0).astype(np.int32) if row0 else rows, starts, ends


def majority_class(pixel_class: np.ndarray, pixel_label: np.ndarray, n: int) -> np.ndarray:
    """The most frequent class code of each region 1..n (ties: the lower code; codes outside 1..6
    count as other), as :func:`rsmon.kernels.patches.class_votes`; entry 0 is 0."""
    codes = np.where((pixel_class >= 1) & (pixel_class <= OTHER_CLASS), pixel_class, OTHER_CLASS)
    votes = np.bincount(np.asarray(pixel_label, np.int64) * (OTHER_CLASS + 1) + codes.astype(np.int64),
                        minlength=(n + 1) * (OTHER_CLASS + 1)).reshape(n + 1, OTHER_CLASS + 1)
    label_class = votes.argmax(axis=1).astype(np.int32)
    label_class[0] = 0
    return label_class


def region_windows(read, shape: tuple[int, int], window_rows: int, connectivity: int):
    """The regions of a change raster read window of rows by window, each region once.

    ``read(row0, row1)`` returns the ``change``, ``change_class`` and ``confidence`` rows
    ``row0:row1`` (uint8, full width); each row is read once, windows of ``window_rows`` rows top
    to bottom. Yields ``(regions, confidence)`` per window: the regions that end in it (on the
    whole raster's rows, as :class:`Regions`) and their pixels' confidence.

    The runs of the window are labelled together with the runs of the regions the previous
    windows left open (those touching their last row, which may go on below; every run of that
    row is one of them), carried with their pixels' classes and confidences. A region ends in a
    window when it does not touch the window's last row (or the window ends the raster); the
    others are carried on. So every region is labelled whole, exactly as labelling the whole
    raster gives it (the class is the majority of all its pixels), and memory holds one window
    plus the open regions' runs and pixels (a region spanning the raster's height costs its own
    pixels, not the rows it spans).
    """
    if connectivity not in (4, 8):
        raise InputError(f"connectivity: expected 4 or 8, got {connectivity}")
    if window_rows < 1:
        raise InputError(f"window_rows: expected at least 1 row, got {window_rows}")
    height = shape[0]
    carried = (np.empty(0, np.int32),) * 3  # rows, starts, ends of the open regions' runs
    carried_px = (np.empty(0, np.uint8), np.empty(0, np.uint8))  # their pixels' classes, confidences
    seen = 0
    while seen < height:
        end = min(seen + window_rows, height)
        change, classes, confidence = read(seen, end)
        rows, starts, ends = _runs(change, seen)
        n_px = int(np.sum(ends - starts, dtype=np.int64))
        new_px = []
        for raster in (classes, confidence):
            values = np.empty(n_px, carried_px[0].dtype)
            gather_runs(np.ascontiguousarray(raster, dtype=np.uint8), seen, 0, rows, starts, ends, values)
            new_px.append(values)
        rows, starts, ends = (np.concatenate([c, x]) for c, x in zip(carried, (rows, starts, ends)))
        pixel_class, pixel_conf = (np.concatenate([c, x]) for c, x in zip(carried_px, new_px))
        run_label, n = label_runs(rows, starts, ends, connectivity == 8)
        pixel_label = np.repeat(run_label, ends - starts).astype(np.int64)
        label_class = majority_class(pixel_class, pixel_label, n)
        regions = Regions(rows, starts, ends, run_label, label_class, tuple(shape))
        ongoing = np.zeros(n + 1, bool)
        if end < height:
            ongoing[run_label[rows == end - 1]] = True
        yield regions.subset(~ongoing), pixel_conf[~ongoing[pixel_label]]
        keep_runs, keep_px = ongoing[run_label], ongoing[pixel_label]
        carried = (rows[keep_runs], starts[keep_runs], ends[keep_runs])
        carried_px = (pixel_class[keep_px], pixel_conf[keep_px])
        seen = end


def region_polygons(regions: Regions, transform: Affine) -> np.ndarray:
    """One valid (Multi)Polygon of pixel edges per region 1..n (index 0 unused), in the raster CRS.

    The rings are those ``GDALPolygonize`` writes with 4-connectivity for a raster holding the
    region alone (:func:`rsmon.kernels.patches.trace_polygons`), in pixel corners, then put
    through the geotransform as GDAL applies it (``x0 + a * col + b * row``).

    Valid by construction, so no repair pass: polygonising with 4-connectivity gives valid
    polygons (GDAL writes a hole meeting its shell at a corner as a separate ring; 8-connected
    polygonising would give self-touching rings at diagonal joins, which GEOS rejects), and the
    4-connected parts of an 8-connected region become one MultiPolygon whose parts touch at
    pixel corners only (parts sharing an edge would be one 4-connected part).
    """
    n = regions.n
    order = np.argsort(regions.run_label, kind="stable")
    first = np.searchsorted(regions.run_label[order], np.arange(n + 2))
    # split the regions between the threads by the runs they hold
    cuts = np.searchsorted(first, np.linspace(0, first[-1], THREADS + 1)[1:-1])
    bounds = [1, *np.clip(cuts, 1, n + 1).tolist(), n + 1]
    parts = threaded(trace_polygons, [(regions.rows, regions.starts, regions.ends, order, first, lo, hi)
                                       for lo, hi in zip(bounds[:-1], bounds[1:])])
    values = np.concatenate([p[0] for p in parts])
    ring_part = np.concatenate([p[1] + offset for p, offset in
                                zip(parts, np.cumsum([0] + [len(p[0]) for p in parts[:-1]]))])
    ring_sizes = np.concatenate([p[2] for p in parts])
    col, row = np.concatenate([p[3] for p in parts]), np.concatenate([p[4] for p in parts])
    xy = np.empty((len(col), 2))
    xy[:, 0] = transform.c + transform.a * col + transform.b * row
    xy[:, 1] = transform.f + transform.d * col + transform.e * row
    rings = shapely.linearrings(xy, indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes))
    geoms = shapely.polygons(rings, indices=ring_part)
    parts_per_region = np.bincount(values, minlength=n + 1)[values]
    out = np.empty(n + 1, dtype=object)
    out[values[parts_per_region == 1]] = geoms[parts_per_region == 1]
    multi = np.flatnonzero(parts_per_region > 1)
    if multi.size:
        owners, compact = np.unique(values[multi], return_inverse=True)
        out[owners] = shapely.multipolygons(geoms[multi], indices=compact.ravel())
    return out


def _run_pixels(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs of ``lengths`` pixels: the run (index into ``lengths``) and the offset in it of
    each of their pixels, run after run."""
    owner = np.repeat(np.arange(len(lengths)), lengths)
    return owner, np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)


@dataclass
class PiecePixels:
    """Change pixels of regions clipped to redline features, by piece.

    ``entire`` marks the pieces holding every pixel of their region (its only piece, which its
    feature covers): their pixel statistics are the region's. The pixels of the other pieces'
    regions (``cut``, per region) are listed: positions ``at`` (ascending; a pixel in overlapping
    features once per piece) and their ``piece`` (1-based).
    """

    entire: np.ndarray
    cut: np.ndarray
    at: np.ndarray
    piece: np.ndarray

    @classmethod
    def uncut(cls, entire: np.ndarray, n: int) -> PiecePixels:
        """None of ``n`` regions cut (``entire``: per piece)."""
        return cls(entire, np.zeros(n + 1, bool), np.zeros(0, np.int64), np.zeros(0, np.int64))


def assign_pieces(regions: Regions, parent: np.ndarray, zone: np.ndarray, whole: np.ndarray, zones: np.ndarray,
                  transform: Affine) -> PiecePixels:
    """The pieces' pixels, for regions clipped to redline features (:class:`PiecePixels`).

    Piece ``i`` is region ``parent[i]`` clipped to feature ``zones[zone[i]]``; pieces come in
    region order. A pixel belongs to the piece holding its centre, that is to the feature holding
    its centre (a centre lies inside its region's polygon, never on its edge); a centre on a feature
    edge counts as inside. Where features overlap (a redline and a nature reserve), a pixel whose
    centre lies inside both counts for both pieces; a centre only on edges (the edge two adjacent
    features share) counts once, for the last piece (:func:`_overlap_hits`). ``at`` may therefore
    repeat a position, once per piece.
    ``whole`` marks pieces that are their entire region (the feature covers it): a region whose
    only piece is whole needs no test, and a whole piece holds all of its region's centres. On a
    north-up grid the centres of a run lie on one horizontal segment: a feature covering the
    segment holds them all, one not touching it none, and only the centres of runs crossing a
    feature edge are tested one by one.
    """
    n = regions.n
    per_region = np.bincount(parent, minlength=n + 1)
    first_piece = np.r_[0, np.cumsum(per_region)[:-1]]  # index of each region's first piece
    simple = np.zeros(n + 1, bool)
    simple[parent[whole]] = True
    simple &= per_region == 1
    cut = (per_region > 0) & ~simple
    runs = np.flatnonzero(cut[regions.run_label])
    if not runs.size:
        return PiecePixels.uncut(simple[parent], n)
    lengths = regions.ends - regions.starts
    lengths, label = lengths[runs], regions.run_label[runs]
    # one (run, candidate piece) pair per piece of the run's region
    pair_run, k = _run_pixels(per_region[label])
    piece = first_piece[label[pair_run]] + k
    row = regions.rows[runs][pair_run] + 0.5
    start, stop = regions.starts[runs][pair_run] + 0.5, regions.ends[runs][pair_run] - 0.5
    # 1: every centre inside the piece's feature (which covers a whole piece's region), 0: none, -1: test each
    inside = np.where(whole[piece], 1, -1).astype(np.int8)
    shapely.prepare(zones)  # point-in-polygon tests against an indexed copy
    if transform.b == 0 and transform.d == 0:
        long = np.flatnonzero((lengths[pair_run] > 1) & (inside == -1))
        y = transform.f + transform.d * start[long] + transform.e * row[long]
        x0 = transform.c + transform.a * start[long] + transform.b * row[long]
        x1 = transform.c + transform.a * stop[long] + transform.b * row[long]
        segments = shapely.linestrings(np.stack([x0, y, x1, y], axis=1).reshape(-1, 2, 2))
        for z, at in _group(zone[piece[long]], len(zones)):
            inside[long[at]] = np.where(shapely.covers(zones[z], segments[at]), 1,
                                        np.where(shapely.intersects(zones[z], segments[at]), -1, 0))
    # every pixel of the pairs, tested where undecided
    pair, within = _run_pixels(lengths[pair_run])
    col = regions.starts[runs][pair_run][pair] + within + 0.5
    hit = inside[pair] == 1
    test = np.flatnonzero(inside[pair] == -1)
    x = transform.c + transform.a * col[test] + transform.b * row[pair[test]]
    y = transform.f + transform.d * col[test] + transform.e * row[pair[test]]
    for z, at in _group(zone[piece[pair[test]]], len(zones)):
        hit[test[at]] = shapely.intersects_xy(zones[z], x[at], y[at])
    pixel = (np.cumsum(lengths) - lengths)[pair_run[pair]] + within  # index among the tested pixels
    keep = _overlap_hits(hit, pixel, piece[pair], zone, zones, transform, col, row[pair], int(lengths.sum()))
    run, within = _run_pixels(lengths)
    position = (regions.offsets[runs][run] + within)[pixel[keep]]
    order = np.lexsort((piece[pair[keep]], position))
    return PiecePixels(simple[parent], cut, position[order], piece[pair[keep]][order] + 1)


def _overlap_hits(hit: np.ndarray, pixel: np.ndarray, piece: np.ndarray, zone: np.ndarray, zones: np.ndarray,
                  transform: Affine, col: np.ndarray, row: np.ndarray, n_pixels: int) -> np.ndarray:
    """Which (pixel, piece) hits to keep: every hit of a pixel only one piece holds; of a pixel
    several pieces hold, those whose feature holds the centre in its interior (overlapping
    features each count it), or the last piece when the centre lies only on feature edges (a
    pixel on the edge two features share counts once)."""
    keep = hit.copy()
    n_hits = np.bincount(pixel[hit], minlength=n_pixels)
    multi = np.flatnonzero(hit & (n_hits[pixel] > 1))
    if not multi.size:
        return keep
    x = transform.c + transform.a * col[multi] + transform.b * row[multi]
    y = transform.f + transform.d * col[multi] + transform.e * row[multi]
    interior = np.zeros(multi.size, bool)
    for z, at in _group(zone[piece[multi]], len(zones)):
        interior[at] = shapely.contains_xy(zones[z], x[at], y[at])
    keep[multi] = interior
    # centres only on edges: the last piece (as burning the pieces in order would give)
    n_interior = np.bincount(pixel[multi[interior]], minlength=n_pixels)
    edge_only = multi[n_interior[pixel[multi]] == 0]
    last = bin_max(pixel[edge_only], piece[edge_only] + 1, n_pixels)
    keep[edge_only] = piece[edge_only] + 1 == last[pixel[edge_only]]
    return keep


def _group(keys: np.ndarray, n: int):
    """``(key, indices)`` for each key 0..n-1 present in ``keys`` (indices in ascending order)."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n + 1))
    return [(k, order[a:b]) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])) if b > a]


class MeanAccumulator:
    """NaN-skipping sums and counts of named values per bin (0..size - 1), and the minimum per bin
    of the values named in ``min_names``."""

    def __init__(self, size: int, names: list[str], min_names: list[str] | tuple = ()) -> None:
        self.size, self.names, self.min_names = size, names, list(min_names)
        self.sums = {v: np.zeros(size) for v in names}
        self.counts = {v: np.zeros(size) for v in names}
        self.mins = {v: np.full(size, np.inf) for v in self.min_names}

    def add(self, bins: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Add ``values`` (each aligned with ``bins``) to the sums and counts (and minimums)."""
        for name in self.min_names:
            np.fmin.at(self.mins[name], bins, np.asarray(values[name], np.float64))
        arrays = [np.asarray(values[name]) for name in self.names]
        if len({(a.dtype, a.flags.c_contiguous) for a in arrays}) > 1:  # one array type for the kernel
            arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]
        groups = [g for g in np.array_split(np.arange(len(arrays)), THREADS) if g.size]  # a share per thread
        results = threaded(bin_sums, [(bins, tuple(arrays[i] for i in g), self.size) for g in groups])
        for g, (sums, counts) in zip(groups, results):
            for row, i in enumerate(g):
                self.sums[self.names[i]] += sums[row]
                self.counts[self.names[i]] += counts[row]

    def means(self) -> dict[str, np.ndarray]:
        """Means per bin (and the minimums of ``min_names``); NaN where no finite value fell in a bin."""
        means = {v: np.divide(self.sums[v], self.counts[v], out=np.full(self.size, np.nan), where=self.counts[v] > 0)
                 for v in self.names}
        return means | {v: np.where(np.isinf(self.mins[v]), np.nan, self.mins[v]) for v in self.min_names}
