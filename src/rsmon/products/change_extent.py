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

A patch inside a redline is therefore the whole-scene run's patch, unless the change region it is
cut from reaches more than ``margin`` (less the halo) beyond the redline and beyond its block: its
part outside is then not seen, which can change the region's majority class or split it where its
parts inside meet only outside. The margin (1 km by default, :data:`DEFAULT_MARGIN_M`) bounds that;
``--whole-scene`` examines everything.
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine

from rsmon.errors import InputError

__all__ = ["DEFAULT_MARGIN_M", "edge_mask", "examined_blocks"]

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
