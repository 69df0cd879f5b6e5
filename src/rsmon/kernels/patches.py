"""Connected change regions as runs of pixels: labelling, outlines, gathers and per-region sums (numba kernels).

A region is kept as runs (row, first column, end column) of change pixels in raster order; the
kernels work on those runs, so nothing the size of the raster is allocated besides the input.
All release the GIL, for threads.

* :func:`find_runs` scans rows of a change raster for runs of change pixels (value 1);
  :func:`label_runs` joins runs touching between consecutive rows (union-find) and numbers the
  regions by their first pixel in raster order, as ``scipy.ndimage.label`` does.
* :func:`trace_polygons` traces each region's outline with the two-arm chain edge tracing of
  ``GDALPolygonize`` (GDAL >= 3.7, ``alg/polygonize_polygonizer.cpp`` and
  ``alg/gdalrasterpolygonenumerator.cpp``; 4-connected, the region as mask), giving the rings,
  ring order, start vertices and part order of ``rasterio.features.shapes`` on a raster holding
  the region alone.
* :func:`class_votes`, :func:`gather_runs`, :func:`pixel_positions`, :func:`bin_max` and
  :func:`bin_sums` collect pixel values and statistics per region.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Class code a change pixel with class 0 or an unknown code counts as (``ChangeClass.other``).
OTHER_CLASS = 6


@njit(cache=True, nogil=True)
def find_runs(change, row0, row1):
    """Runs of change pixels (``change == 1``) in rows ``row0 .. row1 - 1``, in raster order.

    Returns
    -------
    rows, starts, ends : int32 arrays
        Row, first column and end column (exclusive) of each run.
    """
    width = change.shape[1]
    n = 0
    for r in range(row0, row1):  # count first (a branch-free pass), then fill
        line = change[r]
        inside = False
        for c in range(width):
            here = line[c] == 1
            n += here and not inside
            inside = here
    rows = np.empty(n, np.int32)
    starts = np.empty(n, np.int32)
    ends = np.empty(n, np.int32)
    k = 0
    for r in range(row0, row1):
        line = change[r]
        c = 0
        while c < width:
            if line[c] != 1:
                c += 1
                continue
            rows[k] = r
            starts[k] = c
            while c < width and line[c] == 1:
                c += 1
            ends[k] = c
            k += 1
    return rows, starts, ends


@njit(cache=True, nogil=True, inline="always")
def _root(parent, i):
    """Root of ``i`` in the union-find forest, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def label_runs(rows, starts, ends, eight):
    """Region label (1..n) of each run: runs in raster order, joined when they touch between
    consecutive rows (sharing a column, or also a corner with ``eight``).

    Regions are numbered in raster order of their first pixel, as ``scipy.ndimage.label`` does.

    Returns
    -------
    labels : int32 array
        Region of each run.
    n : int
        Number of regions.
    """
    n_runs = rows.shape[0]
    parent = np.arange(n_runs)
    reach = 1 if eight else 0
    prev_lo = prev_hi = 0  # runs of the row above the current one
    cur_lo = 0
    for i in range(n_runs):
        if i == 0 or rows[i] != rows[i - 1]:  # a new row starts
            if i > 0 and rows[i] == rows[i - 1] + 1:
                prev_lo, prev_hi = cur_lo, i
            else:
                prev_lo = prev_hi = i
            cur_lo = i
        # runs above that end before this one can touch no later run of this row either
        while prev_lo < prev_hi and ends[prev_lo] + reach <= starts[i]:
            prev_lo += 1
        k = prev_lo
        while k < prev_hi and starts[k] < ends[i] + reach:
            a = _root(parent, k)
            b = _root(parent, i)
            if a < b:
                parent[b] = a
            elif b < a:
                parent[a] = b
            k += 1
    labels = np.empty(n_runs, np.int32)
    n = 0
    for i in range(n_runs):
        root = _root(parent, i)
        if root == i:
            n += 1
            labels[i] = n
        else:
            labels[i] = labels[root]  # the root is an earlier run
    return labels, n


@njit(cache=True, nogil=True)
def _grown(a, need):
    """A copy of ``a`` with room for ``2 * need`` items (callers check first: passing arrays
    around costs reference counting)."""
    out = np.empty(2 * need, a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True, nogil=True)
def _merge(idmap, src, dst):
    """``GDALRasterPolygonEnumerator::MergePolygon``: map ``src``'s chain to ``dst``'s final id."""
    final = dst
    while idmap[final] != final:
        final = idmap[final]
    cur = dst
    while idmap[cur] != cur:
        nxt = idmap[cur]
        idmap[cur] = final
        cur = nxt
    while idmap[src] != src:
        nxt = idmap[src]
        idmap[src] = final
        src = nxt
    idmap[src] = final


@njit(cache=True, nogil=True)
def _polygon_ids(rows, starts, ends, order, k0, k1, r0):
    """Polygon ids of a region, as ``GDALPolygonize`` assigns them with 4-connectivity.

    GDAL gives each pixel the id of its left neighbour, else of its upper neighbour, else a new
    fragment id, and merges the upper neighbour's fragment into it where they differ
    (``GDALRasterPolygonEnumerator``); each fragment then maps to its final id. Along a run the id
    is the run's first pixel's, and a run above can only trigger a merge at its first pixel over
    the run (after a merge both map to one id), so this is done run by run, with the same merges
    in the same order.

    The region's runs are ``order[k0:k1]`` (raster order), its first row ``r0``. Returns the
    final id of each run, the number of ids (0 included) and the last row (from ``r0``) of each id.
    """
    idmap = np.zeros(k1 - k0 + 1, np.int32)
    run_id = np.zeros(k1 - k0, np.int32)
    n = 0
    above_lo = above_hi = 0  # the runs (k - k0) of the row above
    row_lo = 0
    for k in range(k0, k1):
        i = k - k0
        run = order[k]
        if i == 0 or rows[run] != rows[order[k - 1]]:  # a new row
            if i > 0 and rows[run] == rows[order[k - 1]] + 1:
                above_lo, above_hi = row_lo, i
            else:
                above_lo = above_hi = i
            row_lo = i
        s = starts[run]
        e = ends[run]
        while above_lo < above_hi and ends[order[k0 + above_lo]] <= s:
            above_lo += 1
        j = above_lo
        if j < above_hi and starts[order[k0 + j]] <= s:  # the pixel above the first one is set
            run_id[i] = run_id[j]
            j += 1
        else:
            n += 1
            idmap[n] = n
            run_id[i] = n
        while j < above_hi and starts[order[k0 + j]] < e:  # further runs above, each met at one pixel first
            if idmap[run_id[j]] != idmap[run_id[i]]:
                _merge(idmap, run_id[j], run_id[i])
            j += 1
    for k in range(1, n + 1):  # CompleteMerges
        final = idmap[k]
        while final != idmap[final]:
            final = idmap[final]
        cur = idmap[k]
        idmap[k] = final
        while cur != idmap[cur]:
            nxt = idmap[cur]
            idmap[cur] = final
            cur = nxt
    last_row = np.zeros(n + 1, np.int64)
    for i in range(k1 - k0):
        run_id[i] = idmap[run_id[i]]
        last_row[run_id[i]] = rows[order[k0 + i]] - r0
    return run_id, n + 1, last_row


@njit(cache=True, nogil=True, inline="always")
def _new_arc(owner, right, arc_owner, arc_right, arc_next, n_arcs):
    """``RPolygon::newArc`` for polygon ``owner``: the new arc's id (-1 for id 0) and the arc count."""
    if owner == 0:
        return -1, n_arcs
    arc_owner[n_arcs] = owner
    arc_right[n_arcs] = right
    arc_next[n_arcs] = n_arcs
    return n_arcs, n_arcs + 1


@njit(cache=True, nogil=True, inline="always")
def _push(arc, row, col, pt_arc, pt_row, pt_col, n_pts):
    """Append the corner (row, col) to ``arc`` (nothing for -1); the point count."""
    if arc < 0:
        return n_pts
    pt_arc[n_pts] = arc
    pt_row[n_pts] = row
    pt_col[n_pts] = col
    return n_pts + 1


@njit(cache=True, nogil=True, inline="always")
def _link(arc, nxt, arc_next):
    """``RPolygon::setArcConnection``: ``nxt`` follows ``arc`` on its ring."""
    if arc >= 0:
        arc_next[arc] = nxt


@njit(cache=True, nogil=True)
def _trace_arcs(rows, starts, ends, order, k0, k1, run_id, r0, c0, h, w):
    """Two-arm chain edge tracing (``ProcessArmConnections`` of GDAL's polygonizer) of a region.

    The region's runs ``order[k0:k1]`` (raster order) carry polygon ids ``run_id``; its bounding
    box is ``h`` rows from ``r0`` by ``w`` columns from ``c0``, and 0 is outside every polygon.
    The arm of pixel corner (row ``iy``, column ``col``, in the box) sees the polygons above left
    (``pa``), above right (``b``), below left (``c``) and below right (``d``); its edges to the
    right and down are solid where they separate two polygons. It carries the arcs along its
    horizontal edge (outer: owned by ``b``, inner: by ``d``) and its vertical edge (inner: ``d``,
    outer: ``c``). Arcs of id 0 are not recorded (-1): a polygon's arcs depend only on which
    neighbours belong to it, so GDAL's separate background polygons would change nothing else.

    Returns
    -------
    arc_owner, arc_right, arc_next : arrays per arc
        Owner polygon, right-hand flag (points in order, else reversed), next arc of its ring.
    pt_arc, pt_row, pt_col : int32 arrays per corner pushed onto an arc, in push order
    """
    arc_owner = np.empty(64, np.int32)
    arc_right = np.empty(64, np.bool_)
    arc_next = np.empty(64, np.int32)
    pt_arc = np.empty(256, np.int32)
    pt_row = np.empty(256, np.int32)
    pt_col = np.empty(256, np.int32)
    n_arcs = 0
    n_pts = 0
    # the ids of the pixel rows above (index 1 - t) and below (t) the corners, by column + 1
    ids = np.zeros((2, w + 2), np.int32)
    placed = np.zeros((2, 2), np.int64)  # the runs last placed in each row: first, end
    k = k0
    # arcs of the arms of the line above (index 1 - t) and of this line (t), by column + 1
    hor_outer = np.full((2, w + 2), -1, np.int32)
    hor_inner = np.full((2, w + 2), -1, np.int32)
    ver_inner = np.full((2, w + 2), -1, np.int32)
    ver_outer = np.full((2, w + 2), -1, np.int32)
    for iy in range(h + 1):
        t = iy & 1
        u = 1 - t
        for j in range(placed[t, 0], placed[t, 1]):  # clear the row two rows up, place row iy
            ids[t, starts[order[j]] - c0 + 1: ends[order[j]] - c0 + 1] = 0
        placed[t, 0] = k
        while k < k1 and rows[order[k]] - r0 == iy:
            ids[t, starts[order[k]] - c0 + 1: ends[order[k]] - c0 + 1] = run_id[k - k0]
            k += 1
        placed[t, 1] = k
        for a in range(1, w + 2):
            pa = ids[u, a - 1]
            b = ids[u, a]
            c = ids[t, a - 1]
            d = ids[t, a]
            if pa == b and pa == c and pa == d:
                continue
            col = a - 1
            kind = (int(pa != b) << 3) | (int(pa != c) << 2) | (int(c != d) << 1) | int(b != d)
            if kind == 5:  # horizontal edge: pass its arcs on
                hor_inner[t, a] = hor_inner[t, a - 1]
                hor_outer[t, a] = hor_outer[t, a - 1]
                continue
            if kind == 10:  # vertical edge: pass its arcs on
                ver_inner[t, a] = ver_inner[u, a]
                ver_outer[t, a] = ver_outer[u, a]
                continue
            if n_arcs + 4 > arc_owner.shape[0]:  # room for the arcs and corners of one corner
                arc_owner = _grown(arc_owner, n_arcs + 4)
                arc_right = _grown(arc_right, n_arcs + 4)
                arc_next = _grown(arc_next, n_arcs + 4)
            if n_pts + 4 > pt_arc.shape[0]:
                pt_arc = _grown(pt_arc, n_pts + 4)
                pt_row = _grown(pt_row, n_pts + 4)
                pt_col = _grown(pt_col, n_pts + 4)
            inner_arcs = kind == 7 or kind == 11 or kind == 3  # new inner arcs of d
            if kind == 3:
                ho, n_arcs = _new_arc(b, True, arc_owner, arc_right, arc_next, n_arcs)
                vo, n_arcs = _new_arc(b, False, arc_owner, arc_right, arc_next, n_arcs)
                _link(vo, ho, arc_next)
                hor_outer[t, a] = ho
                ver_outer[t, a] = vo
                n_pts = _push(ho, iy, col, pt_arc, pt_row, pt_col, n_pts)
            elif kind == 6:
                ver_inner[t, a] = hor_outer[t, a - 1]
                ver_outer[t, a] = hor_inner[t, a - 1]
                n_pts = _push(ver_inner[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
                n_pts = _push(ver_outer[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
            elif kind == 7:
                hor_outer[t, a] = hor_outer[t, a - 1]
                ver_outer[t, a] = hor_inner[t, a - 1]
                n_pts = _push(hor_inner[t, a - 1], iy, col, pt_arc, pt_row, pt_col, n_pts)
            elif kind == 9:
                hor_outer[t, a] = ver_inner[u, a]
                hor_inner[t, a] = ver_outer[u, a]
                n_pts = _push(hor_outer[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
                n_pts = _push(hor_inner[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
            elif kind == 11:
                hor_outer[t, a] = ver_inner[u, a]
                ver_outer[t, a] = ver_outer[u, a]
                n_pts = _push(hor_outer[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
            else:  # 12..15: solid arms meet from above and from the left
                if kind == 15 and pa == d:  # above left and d are one polygon: pass its arcs on
                    ver_inner[t, a] = hor_outer[t, a - 1]
                    hor_inner[t, a] = ver_outer[u, a]
                    n_pts = _push(ver_inner[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
                    n_pts = _push(hor_inner[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
                else:  # close the arcs of the polygon above left
                    n_pts = _push(hor_outer[t, a - 1], iy, col, pt_arc, pt_row, pt_col, n_pts)
                    _link(hor_outer[t, a - 1], ver_outer[u, a], arc_next)
                    inner_arcs = kind == 15
                if kind == 12:
                    n_pts = _push(ver_inner[u, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
                    _link(ver_inner[u, a], hor_inner[t, a - 1], arc_next)
                elif kind == 13:
                    hor_outer[t, a] = ver_inner[u, a]
                    hor_inner[t, a] = hor_inner[t, a - 1]
                    n_pts = _push(hor_outer[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
                elif kind == 14:
                    ver_inner[t, a] = ver_inner[u, a]
                    ver_outer[t, a] = hor_inner[t, a - 1]
                    n_pts = _push(ver_outer[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
            if inner_arcs:  # the vertical one right-handed, the horizontal one runs into it
                vi, n_arcs = _new_arc(d, True, arc_owner, arc_right, arc_next, n_arcs)
                hi, n_arcs = _new_arc(d, False, arc_owner, arc_right, arc_next, n_arcs)
                _link(hi, vi, arc_next)
                ver_inner[t, a] = vi
                hor_inner[t, a] = hi
                n_pts = _push(vi, iy, col, pt_arc, pt_row, pt_col, n_pts)
            if kind == 15:
                if b == c:  # above right and below left are one polygon: close its arcs, start new ones
                    _link(ver_inner[u, a], hor_inner[t, a - 1], arc_next)
                    n_pts = _push(ver_inner[u, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
                    ho, n_arcs = _new_arc(b, True, arc_owner, arc_right, arc_next, n_arcs)
                    vo, n_arcs = _new_arc(b, False, arc_owner, arc_right, arc_next, n_arcs)
                    n_pts = _push(ho, iy, col, pt_arc, pt_row, pt_col, n_pts)
                    _link(vo, ho, arc_next)
                    hor_outer[t, a] = ho
                    ver_outer[t, a] = vo
                else:
                    hor_outer[t, a] = ver_inner[u, a]
                    ver_outer[t, a] = hor_inner[t, a - 1]
                    n_pts = _push(hor_outer[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
                    n_pts = _push(ver_outer[t, a], iy, col, pt_arc, pt_row, pt_col, n_pts)
    return (arc_owner[:n_arcs], arc_right[:n_arcs], arc_next[:n_arcs], pt_arc[:n_pts], pt_row[:n_pts],
            pt_col[:n_pts])


@njit(cache=True, nogil=True)
def _counting_order(keys, n_keys):
    """Stable order of ``keys`` (0..n_keys - 1) and where each key's items start in it."""
    first = np.zeros(n_keys + 1, np.int64)
    for k in keys:
        first[k + 1] += 1
    for k in range(n_keys):
        first[k + 1] += first[k]
    fill = first[:-1].copy()
    order = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        order[fill[keys[i]]] = i
        fill[keys[i]] += 1
    return order, first


@njit(cache=True, nogil=True)
def trace_polygons(rows, starts, ends, order, first, lo, hi):
    """Outline rings of regions ``lo .. hi - 1``, as ``GDALPolygonize`` (4-connected) writes them.

    Parameters
    ----------
    rows, starts, ends : int32 arrays
        Runs of change pixels (row, first column, end column exclusive).
    order : int array
        Run indices grouped by region, each region's runs in raster order.
    first : int array
        ``order[first[k]:first[k + 1]]`` are the runs of region ``k``.
    lo, hi : int
        Regions to trace.

    Returns
    -------
    part_label : int32 array
        Region of each polygon (4-connected part), regions in order, a region's parts in the
        order GDAL emits them (by last row, then by GDAL's polygon id).
    ring_part : int64 array
        Polygon of each ring (shell first, then holes, in GDAL's order).
    ring_size : int64 array
        Vertices of each ring (closed: the first vertex repeated at the end).
    xs, ys : float64 arrays
        Vertices: pixel-corner column and row on the raster.
    """
    part_label = np.empty(64, np.int32)
    ring_part = np.empty(64, np.int64)
    ring_size = np.empty(64, np.int64)
    xs = np.empty(1024, np.float64)
    ys = np.empty(1024, np.float64)
    n_parts = 0
    n_rings = 0
    n_xy = 0
    for label in range(lo, hi):
        k0 = first[label]
        k1 = first[label + 1]
        r0 = rows[order[k0]]
        c0 = starts[order[k0]]
        c1 = ends[order[k0]]
        for k in range(k0, k1):
            c0 = min(c0, starts[order[k]])
            c1 = max(c1, ends[order[k]])
        run_id, n_ids, last_row = _polygon_ids(rows, starts, ends, order, k0, k1, r0)
        arc_owner, arc_right, arc_next, pt_arc, pt_row, pt_col = _trace_arcs(
            rows, starts, ends, order, k0, k1, run_id, r0, c0, rows[order[k1 - 1]] - r0 + 1, c1 - c0)
        n_arcs = arc_owner.shape[0]
        by_owner, owner_first = _counting_order(arc_owner, n_ids)  # arcs by polygon, in creation order
        by_arc, pt_first = _counting_order(pt_arc, n_arcs)  # corners by arc, in push order
        # polygons in GDAL's emission order: by last row, then id
        owners = np.flatnonzero(owner_first[1:] > owner_first[:-1])
        if owners.shape[0] > 1:
            owners = owners[np.argsort(last_row[owners] * n_ids + owners, kind="mergesort")]
        done = np.zeros(n_arcs, np.bool_)
        for owner in owners:
            if n_parts == part_label.shape[0]:
                part_label = _grown(part_label, n_parts + 1)
            part_label[n_parts] = label
            for k in range(owner_first[owner], owner_first[owner + 1]):
                start = by_owner[k]
                if done[start]:
                    continue
                if n_rings == ring_part.shape[0]:
                    ring_part = _grown(ring_part, n_rings + 1)
                    ring_size = _grown(ring_size, n_rings + 1)
                ring_start = n_xy
                arc = start
                while True:
                    p0 = pt_first[arc]
                    count = pt_first[arc + 1] - p0
                    if n_xy + count + 1 > xs.shape[0]:
                        xs = _grown(xs, n_xy + count + 1)
                        ys = _grown(ys, n_xy + count + 1)
                    for m in range(count):
                        p = by_arc[p0 + (m if arc_right[arc] else count - 1 - m)]
                        xs[n_xy] = c0 + pt_col[p]
                        ys[n_xy] = r0 + pt_row[p]
                        n_xy += 1
                    done[arc] = True
                    arc = arc_next[arc]
                    if arc == start:
                        break
                xs[n_xy] = xs[ring_start]
                ys[n_xy] = ys[ring_start]
                n_xy += 1
                ring_part[n_rings] = n_parts
                ring_size[n_rings] = n_xy - ring_start
                n_rings += 1
            n_parts += 1
    return part_label[:n_parts], ring_part[:n_rings], ring_size[:n_rings], xs[:n_xy], ys[:n_xy]


@njit(cache=True, nogil=True)
def class_votes(classes, rows, starts, ends, labels, n):
    """Pixel count of each class code (0..6, 0 unused) per region 1..n (row 0 unused); codes
    outside 1..6 count as :data:`OTHER_CLASS`."""
    votes = np.zeros((n + 1, OTHER_CLASS + 1), np.int64)
    for i in range(rows.shape[0]):
        line = classes[rows[i]]
        k = labels[i]
        code = -1  # the code of the current stretch of equal codes, and its length
        count = 0
        for c in range(starts[i], ends[i]):
            here = line[c]
            if here != code:
                if count:
                    votes[k, code if 1 <= code <= OTHER_CLASS else OTHER_CLASS] += count
                code = here
                count = 0
            count += 1
        if count:
            votes[k, code if 1 <= code <= OTHER_CLASS else OTHER_CLASS] += count
    return votes


@njit(cache=True, nogil=True)
def gather_runs(raster, row0, col0, rows, starts, ends, out):
    """Copy the pixels of the runs into ``out``, run after run; ``raster`` holds the raster's
    rows and columns from ``row0``, ``col0`` on."""
    k = 0
    for i in range(rows.shape[0]):
        line = raster[rows[i] - row0]
        for c in range(starts[i] - col0, ends[i] - col0):
            out[k] = line[c]
            k += 1


@njit(cache=True, nogil=True)
def pixel_positions(flat, width, row_first, starts, ends, offsets, run_label):
    """Position in the run-ordered pixel list and region of each flat index (``row * width + col``);
    -1 and 0 where the pixel is in no run.

    ``row_first[r]`` is the first run of row ``r`` (runs in raster order, ``row_first`` one
    longer than the rows), ``offsets[i]`` the position of run ``i``'s first pixel and
    ``run_label[i]`` its region.
    """
    out = np.empty(flat.shape[0], np.int64)
    label = np.zeros(flat.shape[0], np.int32)
    run = -1  # run of the previous index when it was a change pixel
    end = 0  # flat index of that run's end
    for i in range(flat.shape[0]):
        f = flat[i]
        if run >= 0 and f == flat[i - 1] + 1 and f < end:  # the next pixel of the same run
            out[i] = out[i - 1] + 1
            label[i] = label[i - 1]
            continue
        r = f // width
        c = f - r * width
        lo = row_first[r]
        hi = row_first[r + 1]
        while lo < hi:  # the last run of the row starting at or before c
            mid = (lo + hi) >> 1
            if starts[mid] <= c:
                lo = mid + 1
            else:
                hi = mid
        run = lo - 1
        if run < row_first[r] or c >= ends[run]:
            out[i] = -1
            run = -1
            continue
        out[i] = offsets[run] + c - starts[run]
        label[i] = run_label[run]
        end = f - c + ends[run]
    return out, label


@njit(cache=True, nogil=True)
def bin_max(bins, values, size):
    """Maximum of ``values`` per bin (0..size - 1; 0 where a bin is empty)."""
    out = np.zeros(size, np.int64)
    for i in range(bins.shape[0]):
        v = np.int64(values[i])
        if v > out[bins[i]]:
            out[bins[i]] = v
    return out


@njit(cache=True, nogil=True)
def bin_sums(bins, values, size):
    """Sums and counts of the finite values per bin (0..size - 1), for each array of ``values``.

    ``values`` is a tuple of arrays aligned with ``bins``. Each bin's sum is float64, added in
    input order exactly as ``np.bincount(bins, weights)`` adds it. A stretch of equal bins is
    summed in a small buffer, the variables side by side (independent additions overlap).

    Returns
    -------
    sums, counts : float64 arrays (len(values), size)
    """
    n_vars = len(values)
    sums = np.zeros((n_vars, size))
    counts = np.zeros((n_vars, size))
    acc = np.zeros(n_vars)
    cnt = np.zeros(n_vars)
    n = bins.shape[0]
    i = 0
    while i < n:
        b = bins[i]
        for k in range(n_vars):
            acc[k] = sums[k, b]
            cnt[k] = counts[k, b]
        while i < n and bins[i] == b:
            for k in range(n_vars):
                v = np.float64(values[k][i])
                if np.isfinite(v):
                    acc[k] += v
                    cnt[k] += 1.0
            i += 1
        for k in range(n_vars):
            sums[k, b] = acc[k]
            counts[k, b] = cnt[k]
    return sums, counts
