"""Which blocks of a scene a redline change run examines.

The redline supervision platform asks for new human activity *inside* the redline polygons: the
patches of :func:`rsmon.products.patches.patches_from_change` are clipped to them and the rest
dropped. The change pass (:func:`rsmon.products.change_blocks.detect_change_blocks`) can
therefore leave out the blocks far from every redline: they are not read, not decoded and not
computed, and their pixels are no data (255) in the rasters.

:func:`examined_blocks` marks the blocks whose footprint, grown by ``margin`` on every side,
touches a polygon. Only those are read. The clean-up of a pixel depends on the raw codes within
its halo (:attr:`~rsmon.products.change_params.ChangeParams.halo_px`, 11 pixels by default), so
the examined pixels within that distance of a block left out (:func:`edge_mask`) are reported as
no data too: every pixel the pass reports equals a whole-scene run's exactly (same fit: the fit
blocks are chosen over the whole scene). Computing the left-out neighbours' codes instead would
decode their whole input tiles for an 11-pixel strip: twice the blocks read for redlines over
10 % of a Sentinel-2 tile.

A patch inside a redline is the whole-scene run's patch unless the change region it is cut from
reaches the no-data edge of the examined blocks (more than ``margin`` beyond the redline, less the
halo): its part outside would not be seen, which can change the region's majority class or split
it where its parts inside meet only outside. The redline run checks this after each pass: the
change pixels next to that edge (:func:`reaching_pixels`) whose regions keep a piece inside a
redline name the blocks left out that they touch (:func:`blocks_reached`); those are examined too
and the pass runs again, until no such region is left. On the simulated tile with redlines over
10 % and 30 % of it, no region needed it (``benchmarks/bench_change_tile.py --redlines``).
The margin (1 km by default, :data:`DEFAULT_MARGIN_M`) makes it rare; ``--whole-scene`` examines
everything.
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine

from rsmon.errors import InputError

__all__ = ["DEFAULT_MARGIN_M", "blocks_reached", "edge_mask", "examined_blocks", "reaching_pixels"]

#: Default margin around the redlines (metres on a projected grid): a change region crossing a
#: redline boundary is seen whole when it reaches less than this beyond the boundary (the
#: examined blocks usually reach much further: whole 512-pixel blocks, 5.1 km at 10 m).
DEFAULT_MARGIN_M = 1000.0


def _block_boxes(transform: Affine, row_starts: np.ndarray, col_starts: np.ndarray, margin: float) -> np.ndarray:
    """The footprint of every block (row-major), grown by ``margin`` CRS units, as polygons: the
    envelope of the block's four corners (any affine transform)."""
    rows, cols = np.meshgrid(np.arange(len(row_starts) - 1), np.arange(len(col_starts) - 1), indexing="ij")
    r0, r1 = row_starts[rows.ravel()], row_starts[rows.ravel() + 1]
    c0, c1 = col_starts[cols.ravel()], col_starts[cols.ravel() + 1]
    corners = [transform @ (c, r) for c, r in ((c0, r0), (c1, r0), (c0, r1), (c1, r1))]
    xs = np.stack([np.asarray(x, float) for x, _ in corners])
    ys = np.stack([np.asarray(y, float) for _, y in corners])
    return shapely.box(xs.min(0) - margin, ys.min(0) - margin, xs.max(0) + margin, ys.max(0) + margin)


def examined_blocks(geometries, transform: Affine, block_starts: tuple[np.ndarray, np.ndarray],
                    margin: float = 0.0) -> np.ndarray:
    """The blocks (bool, (n block rows, n block columns)) whose footprint grown by ``margin`` (in
    the units of the grid's CRS) intersects one of ``geometries`` (shapely geometries in the
    grid's CRS; empty and missing ones are ignored).

    Raises
    ------
    InputError
        A negative or non-finite margin.
    """
    if not np.isfinite(margin) or margin < 0:
        raise InputError(f"margin: expected a distance >= 0, got {margin}")
    row_starts, col_starts = (np.asarray(s, np.int64) for s in block_starts)
    shape = (len(row_starts) - 1, len(col_starts) - 1)
    geoms = np.asarray([g for g in np.asarray(geometries, dtype=object).ravel()
                        if g is not None and not shapely.is_empty(g)], dtype=object)
    examined = np.zeros(shape[0] * shape[1], bool)
    if geoms.size:
        boxes = _block_boxes(transform, row_starts, col_starts, float(margin))
        hits = shapely.STRtree(geoms).query(boxes, predicate="intersects")
        examined[np.unique(hits[0])] = True
    return examined.reshape(shape)


def edge_mask(core: tuple[int, int, int, int], missing, halo: int) -> np.ndarray | None:
    """The pixels of an examined block ``core`` (r0, r1, c0, c1, scene pixels) within ``halo``
    pixels (along rows and columns, diagonals included) of a block left out, ``missing`` =
    [(r0, r1, c0, c1), ...]: their cleaned codes depend on codes that were not computed, so the
    pass reports them as no data. None when there are none."""
    r0, r1, c0, c1 = core
    mask = None
    for a0, a1, b0, b1 in missing:
        top, bottom = max(a0 - halo, r0), min(a1 + halo, r1)
        left, right = max(b0 - halo, c0), min(b1 + halo, c1)
        if bottom > top and right > left:
            if mask is None:
                mask = np.zeros((r1 - r0, c1 - c0), bool)
            mask[top - r0:bottom - r0, left - c0:right - c0] = True
    return mask


def _near(starts: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last block (inclusive) along one axis overlapping ``[lo, hi)`` per item."""
    first = np.searchsorted(starts, lo, side="right") - 1
    last = np.searchsorted(starts, hi, side="left") - 1
    n = len(starts) - 2
    return np.clip(first, 0, n), np.clip(last, 0, n)


def reaching_pixels(change, examined: np.ndarray, block_starts: tuple[np.ndarray, np.ndarray],
                    reach: int) -> np.ndarray:
    """Flat indices (``row * width + col``, sorted) of the change pixels (value 1) of the examined
    blocks within ``reach`` pixels (rows and columns, diagonals included) of a block left out.

    With ``reach`` = the clean-up's halo + 1 these are the change pixels next to the no-data edge
    of a restricted pass: a region holding one may go on beyond it. ``change`` is the pass's
    change raster (any 2-D array-like that slices, e.g. a lazy xarray variable); only the blocks
    next to the edge are read.
    """
    row_starts, col_starts = (np.asarray(s, np.int64) for s in block_starts)
    width = int(col_starts[-1])
    out = []
    for i, j in zip(*np.nonzero(examined)):
        r0, r1, c0, c1 = int(row_starts[i]), int(row_starts[i + 1]), int(col_starts[j]), int(col_starts[j + 1])
        (a0,), (a1,) = _near(row_starts, np.array([r0 - reach]), np.array([r1 + reach]))
        (b0,), (b1,) = _near(col_starts, np.array([c0 - reach]), np.array([c1 + reach]))
        for a in range(a0, a1 + 1):
            for b in range(b0, b1 + 1):
                if examined[a, b]:
                    continue
                # the strip (or corner) of this block within reach of block (a, b), as edge_mask draws it
                top, bottom = max(int(row_starts[a]) - reach, r0), min(int(row_starts[a + 1]) + reach, r1)
                left, right = max(int(col_starts[b]) - reach, c0), min(int(col_starts[b + 1]) + reach, c1)
                if bottom <= top or right <= left:
                    continue
                part = change[top:bottom, left:right]
                rows, cols = np.nonzero(np.asarray(getattr(part, "values", part)) == 1)
                out.append((rows + top).astype(np.int64) * width + (cols + left))
    return np.unique(np.concatenate(out)) if out else np.empty(0, np.int64)


def blocks_reached(flat: np.ndarray, examined: np.ndarray, block_starts: tuple[np.ndarray, np.ndarray],
                   reach: int) -> np.ndarray:
    """The blocks left out (bool, the shape of ``examined``) within ``reach`` pixels of any of the
    pixels ``flat`` (flat indices on the grid the block starts describe)."""
    row_starts, col_starts = (np.asarray(s, np.int64) for s in block_starts)
    rows, cols = np.divmod(np.asarray(flat, np.int64), int(col_starts[-1]))
    a0, a1 = _near(row_starts, rows - reach, rows + reach + 1)
    b0, b1 = _near(col_starts, cols - reach, cols + reach + 1)
    hit = np.zeros(examined.shape, bool)
    for da in range(int((a1 - a0).max(initial=0)) + 1):
        for db in range(int((b1 - b0).max(initial=0)) + 1):
            ok = (a0 + da <= a1) & (b0 + db <= b1)
            hit[(a0 + da)[ok], (b0 + db)[ok]] = True
    return hit & ~examined
