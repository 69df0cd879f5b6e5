"""Which blocks of a scene a redline change run examines.

The redline supervision platform asks for new human activity *inside* the redline polygons: the
patches of :func:`rsmon.products.patches.patches_from_change` are clipped to them and the rest
dropped. The change pass (:func:`rsmon.products.change_blocks.detect_change_blocks`) can
therefore leave out the blocks far from every redline: they are not read, not decoded and not
computed, and their pixels are no data (255) in the rasters.

:func:`examined_blocks` marks the blocks whose footprint, grown by ``margin`` on every side,
touches a polygon. The pass then also computes the raw codes of the blocks within the clean-up's
halo of those (:func:`needed_blocks`), so the cleaned change of every examined block equals that
of a whole-scene run exactly (same fit: the fit blocks are chosen over the whole scene). A patch
inside a redline is therefore the whole-scene run's patch, unless the change region it is cut
from leaves the examined blocks (it reaches more than ``margin`` beyond the redline and beyond
its block): its part outside is then not seen, which can change the region's majority class or
split it where its parts inside meet only outside. The margin (1 km by default,
:data:`DEFAULT_MARGIN_M`) bounds that; ``--whole-scene`` examines everything.
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine

from rsmon.errors import InputError

__all__ = ["DEFAULT_MARGIN_M", "examined_blocks", "needed_blocks"]

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


def _overlapping(starts: np.ndarray, lo: int, hi: int) -> list[int]:
    """The blocks along one axis (``starts``: their first pixels and the end) overlapping ``lo:hi``."""
    return [b for b in range(len(starts) - 1) if starts[b] < hi and starts[b + 1] > lo]


def needed_blocks(examined: np.ndarray, block_starts: tuple[np.ndarray, np.ndarray], halo: int) -> np.ndarray:
    """The blocks whose raw codes the clean-up of the ``examined`` blocks reads: every block
    overlapping an examined block's window grown by ``halo`` pixels (the examined ones included),
    as :func:`rsmon.products.change_blocks._run` gathers a block's neighbours."""
    row_starts, col_starts = block_starts
    height, width = int(row_starts[-1]), int(col_starts[-1])
    needed = examined.copy()
    for i, j in zip(*np.nonzero(examined)):
        rows = _overlapping(row_starts, max(int(row_starts[i]) - halo, 0), min(int(row_starts[i + 1]) + halo, height))
        cols = _overlapping(col_starts, max(int(col_starts[j]) - halo, 0), min(int(col_starts[j + 1]) + halo, width))
        needed[np.ix_(rows, cols)] = True
    return needed
