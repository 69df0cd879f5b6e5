"""Connected change regions of a change raster: labels, pixel-edge polygons, per-region statistics.

The steps behind :func:`rsmon.products.patches.patches_from_change`, written for a full
Sentinel-2 tile (10980 x 10980 pixels, thousands of patches) in about a second:

* the raster is labelled once (one ``scipy.ndimage.label`` pass over the change mask); only the
  components get the most frequent class of their pixels (or, with ``split_classes``, are labelled again per class in a small canvas). After
  that everything works on the list of change pixels (flat indices, a few million at most), never
  on whole-raster label arrays;
* polygons come from one ``GDALPolygonize`` run over a small canvas into which the regions'
  bounding boxes are packed (a few percent of the tile), then shifted back to their place;
* pixels of patches cut by a redline edge are assigned to pieces by point-in-polygon tests of
  their centres; statistics are ``np.bincount`` sums over the pixel list.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage

from rsmon.errors import InputError

__all__ = ["MeanAccumulator", "Regions", "assign_pieces", "label_regions", "region_polygons"]

#: Class code a change pixel with class 0 or an unknown code counts as (``ChangeClass.other``).
OTHER_CLASS = 6


@dataclass
class Regions:
    """Connected regions of change pixels, one class each.

    ``flat`` holds the change pixels' flat indices (``row * width + col``, ascending), ``label``
    each pixel's region (1..n, numbered as ``scipy.ndimage.label`` numbers each class's regions,
    classes in code order), ``label_class`` each region's class code (index 0 unused).
    """

    flat: np.ndarray
    label: np.ndarray
    label_class: np.ndarray
    shape: tuple[int, int]

    @property
    def n(self) -> int:
        return len(self.label_class) - 1

    def rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        return np.divmod(self.flat, self.shape[1])

    def positions(self, flat: np.ndarray) -> np.ndarray:
        """Index into the pixel list of each flat index; -1 where it is not a change pixel."""
        at = np.minimum(np.searchsorted(self.flat, flat), max(len(self.flat) - 1, 0))
        hit = self.flat[at] == flat if len(self.flat) else np.zeros(len(flat), bool)
        return np.where(hit, at, -1)


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (4, 8):
        raise InputError(f"connectivity: expected 4 or 8, got {connectivity}")
    return ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)


def _bounds(rows, cols, label, n):
    """Per label 1..n: first row, first column, rows, columns of its bounding box (index 0: zeros)."""
    r0, c0 = np.full(n + 1, np.iinfo(np.int64).max), np.full(n + 1, np.iinfo(np.int64).max)
    r1, c1 = np.full(n + 1, -1), np.full(n + 1, -1)
    np.minimum.at(r0, label, rows)
    np.minimum.at(c0, label, cols)
    np.maximum.at(r1, label, rows)
    np.maximum.at(c1, label, cols)
    r0[0] = c0[0] = r1[0] = c1[0] = 0
    return r0, c0, r1 - r0 + 1, c1 - c0 + 1


def _label(mask: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndimage.label``, into uint16 when the count allows (half the memory and time of int32)."""
    try:
        return ndimage.label(mask, structure=structure, output=np.uint16)
    except RuntimeError:  # more than 65535 components
        return ndimage.label(mask, structure=structure)


def label_regions(change: np.ndarray, classes: np.ndarray, connectivity: int, *,
                  split_classes: bool = False) -> Regions:
    """Label connected regions (``connectivity`` 4 or 8) of change pixels (``change == 1``).

    By default a region is a connected change area whatever its pixels' classes, and its class is
    the most frequent pixel class (ties: the lower code): the minimum mapping unit applies to
    change areas, so splitting them by class would leave patches below it, and an interpreter
    checks one site, not its class fragments. ``split_classes=True`` gives one region per class
    and connected area instead.

    Raises
    ------
    InputError
        ``connectivity`` is not 4 or 8.
    """
    structure = _structure(connectivity)
    mask = change == 1
    components, n_components = _label(mask, structure)
    flat = np.flatnonzero(mask)
    del mask
    comp = components.ravel()[flat].astype(np.int64)
    del components
    codes = classes.ravel()[flat].astype(np.int32)
    codes[(codes < 1) | (codes > OTHER_CLASS)] = OTHER_CLASS
    if n_components == 0:
        return Regions(flat, comp.astype(np.int32), np.zeros(1, np.int32), change.shape)
    first = _first_pixels(comp, n_components)
    if not split_classes:
        votes = np.bincount(comp * (OTHER_CLASS + 1) + codes, minlength=(n_components + 1) * (OTHER_CLASS + 1))
        label_class = votes.reshape(n_components + 1, OTHER_CLASS + 1).argmax(axis=1).astype(np.int32)
        label_class[0] = 0
        return Regions(flat, comp.astype(np.int32), label_class, change.shape)
    mixed = np.unique(comp[codes != codes[first[comp]]])
    region = comp
    if mixed.size:
        sel, next_id = _split_by_class(region, codes, flat, change.shape[1], mixed, n_components, structure)
        first = np.r_[first, np.full(next_id - n_components - 1, len(flat))]
        first[mixed] = len(flat)  # split up: these ids are gone
        np.minimum.at(first, region[sel], sel)
    # number as one ndimage.label run per class would: class by class, then by first pixel
    ids = np.flatnonzero(first < len(flat))
    order = np.lexsort((first[ids], codes[first[ids]]))
    relabel = np.zeros(len(first), np.int32)
    relabel[ids[order]] = np.arange(1, len(ids) + 1, dtype=np.int32)
    label_class = np.concatenate([[0], codes[first[ids[order]]]]).astype(np.int32)
    return Regions(flat, relabel[region], label_class, change.shape)


def _first_pixels(comp: np.ndarray, n: int) -> np.ndarray:
    """Index (into the raster-ordered pixel list) of each component's first pixel ([0]: none).

    ``ndimage.label`` numbers components in raster order of their first pixel, so a component
    starts where the running maximum of the ids steps up (checked; else a slower general way).
    """
    running = np.maximum.accumulate(comp)
    steps = np.flatnonzero(np.r_[True, running[1:] != running[:-1]])
    if len(steps) == n and np.array_equal(comp[steps], np.arange(1, n + 1)):
        return np.r_[len(comp), steps]
    first = np.full(n + 1, len(comp), np.int64)
    np.minimum.at(first, comp, np.arange(len(comp)))
    return first


def _split_by_class(region, codes, flat, width, mixed, n_components, structure) -> tuple[np.ndarray, int]:
    """Split components holding several classes into one-class regions (new ids after ``n_components``).

    The mixed components are packed into one small canvas and labelled there once per class.
    Returns the pixels of the mixed components (indices into ``flat``) and the next free id.
    """
    sel = np.flatnonzero(np.isin(region, mixed))
    rows, cols = np.divmod(flat[sel], width)
    _, compact = np.unique(region[sel], return_inverse=True)
    compact = compact.ravel() + 1
    r0, c0, heights, widths = _bounds(rows, cols, compact, len(mixed))
    top, left, shape = _pack(heights[1:], widths[1:])
    rows = rows - r0[compact] + np.r_[0, top][compact]
    cols = cols - c0[compact] + np.r_[0, left][compact]
    canvas = np.zeros(shape, np.uint8)
    canvas[rows, cols] = codes[sel]
    next_id = n_components + 1
    for code in np.unique(codes[sel]):
        sub, count = ndimage.label(canvas == code, structure=structure)
        at = codes[sel] == code
        region[sel[at]] = sub[rows[at], cols[at]].astype(np.int64) + (next_id - 1)
        next_id += count
    return sel, next_id


def _pack(heights: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Shelf packing of boxes (1-pixel gaps) into a near-square canvas: offsets and canvas shape."""
    area = float(np.sum((heights + 1) * (widths + 1)))
    canvas_w = int(max(widths.max() + 2, math.sqrt(area) * 1.1))
    top, left = np.zeros(len(heights), np.int64), np.zeros(len(heights), np.int64)
    y, x, shelf = 1, 1, 0
    hs, ws = heights.tolist(), widths.tolist()
    for k in np.argsort(-heights, kind="stable").tolist():
        if x + ws[k] + 1 > canvas_w:
            y, x, shelf = y + shelf + 1, 1, 0
        top[k], left[k] = y, x
        x += ws[k] + 1
        shelf = max(shelf, hs[k])
    return top, left, (y + shelf + 1, canvas_w)


def region_polygons(regions: Regions, transform: Affine) -> np.ndarray:
    """One valid (Multi)Polygon of pixel edges per region 1..n (index 0 unused), in the raster CRS.

    The regions' bounding boxes are packed into one canvas with 1-pixel gaps (``GDALPolygonize``
    then scans a fraction of the tile), polygonised in pixel units and shifted back.

    Valid by construction, so no repair pass: polygonising with 4-connectivity gives valid
    polygons (GDAL writes a hole meeting its shell at a corner as a separate ring; 8-connected
    polygonising would give self-touching rings at diagonal joins, which GEOS rejects), and the
    4-connected parts of an 8-connected region become one MultiPolygon whose parts touch at
    pixel corners only (parts sharing an edge would be one 4-connected part).
    """
    n = regions.n
    rows, cols = regions.rows_cols()
    label = regions.label
    r0, c0, heights, widths = _bounds(rows, cols, label, n)
    top, left, canvas_shape = _pack(heights[1:], widths[1:])
    top, left = np.r_[0, top], np.r_[0, left]
    canvas = np.zeros(canvas_shape, np.uint16 if n < 65536 else np.int32)
    canvas[rows - r0[label] + top[label], cols - c0[label] + left[label]] = label
    values, coords, ring_sizes, ring_owner = [], [], [], []
    for k, (geojson, value) in enumerate(rasterio.features.shapes(canvas, mask=canvas > 0, connectivity=4,
                                                                  transform=Affine.identity())):
        values.append(int(value))
        for ring in geojson["coordinates"]:  # GDALPolygonize writes Polygons: shell, then holes
            coords.extend(ring)
            ring_sizes.append(len(ring))
            ring_owner.append(k)
    del canvas
    xy = np.fromiter(itertools.chain.from_iterable(coords), np.float64, count=2 * len(coords)).reshape(-1, 2)
    values, ring_owner = np.asarray(values), np.asarray(ring_owner, dtype=np.int64)
    # back to image pixels, then the geotransform as GDAL applies it (x0 + a * col + b * row)
    owner = np.repeat(values[ring_owner], ring_sizes)
    col, row = xy[:, 0] + (c0 - left)[owner], xy[:, 1] + (r0 - top)[owner]
    xy[:, 0] = transform.c + transform.a * col + transform.b * row
    xy[:, 1] = transform.f + transform.d * col + transform.e * row
    rings = shapely.linearrings(xy, indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes))
    geoms = shapely.polygons(rings, indices=ring_owner)
    order = np.argsort(values, kind="stable")
    values, geoms = values[order], geoms[order]
    parts = np.bincount(values, minlength=n + 1)[values]
    out = np.empty(n + 1, dtype=object)
    out[values[parts == 1]] = geoms[parts == 1]
    multi = np.flatnonzero(parts > 1)
    if multi.size:
        owners, compact = np.unique(values[multi], return_inverse=True)
        out[owners] = shapely.multipolygons(geoms[multi], indices=compact.ravel())
    return out


def assign_pieces(regions: Regions, parent: np.ndarray, zone: np.ndarray, whole: np.ndarray, zones: np.ndarray,
                  transform: Affine) -> np.ndarray:
    """Piece (1-based; 0 = none) of each change pixel, for regions clipped to redline features.

    Piece ``i`` is region ``parent[i]`` clipped to feature ``zones[zone[i]]``; pieces come in
    region order. A pixel belongs to the piece holding its centre, that is to the feature holding
    its centre (a centre lies inside its region's polygon, never on its edge); a centre on a feature
    edge counts as inside, and where pieces overlap (a region inside two overlapping features)
    the last one wins, as when the pieces are burnt in order with ``rasterio.features.rasterize``.
    ``whole`` marks pieces that are their entire region: a region whose only piece is whole needs
    no test.
    """
    n = regions.n
    per_region = np.bincount(parent, minlength=n + 1)
    first_piece = np.r_[0, np.cumsum(per_region)[:-1]]  # index of each region's first piece
    simple = np.zeros(n + 1, bool)
    simple[parent[whole]] = True
    simple &= per_region == 1
    piece_of_region = np.where(simple, first_piece + 1, 0).astype(np.int32)
    out = piece_of_region[regions.label]
    tested = np.flatnonzero((per_region[regions.label] > 0) & ~simple[regions.label])
    if not tested.size:
        return out
    counts = per_region[regions.label[tested]]
    pixel = np.repeat(tested, counts)  # one (pixel, candidate piece) pair per piece of its region
    group_start = np.repeat(np.cumsum(counts) - counts, counts)
    piece = first_piece[regions.label[pixel]] + (np.arange(len(pixel)) - group_start)
    rows, cols = np.divmod(regions.flat[pixel], regions.shape[1])
    x = transform.c + transform.a * (cols + 0.5) + transform.b * (rows + 0.5)
    y = transform.f + transform.d * (cols + 0.5) + transform.e * (rows + 0.5)
    inside = np.zeros(len(pixel), bool)
    shapely.prepare(zones)  # point-in-polygon tests against an indexed copy
    pair_zone = zone[piece]
    order = np.argsort(pair_zone, kind="stable")
    starts = np.searchsorted(pair_zone[order], np.arange(len(zones) + 1))
    for z, (s, e) in enumerate(zip(starts[:-1], starts[1:])):
        if e > s:
            at = order[s:e]
            inside[at] = shapely.intersects_xy(zones[z], x[at], y[at])
    last = np.zeros(len(out), np.int64)
    np.maximum.at(last, pixel[inside], piece[inside] + 1)
    out[tested] = last[tested]
    return out


class MeanAccumulator:
    """NaN-skipping sums and counts of named values over several sets of bins (np.bincount)."""

    def __init__(self, sizes: list[int], names: list[str]) -> None:
        self.sizes, self.names = sizes, names
        self.sums = [{v: np.zeros(size) for v in names} for size in sizes]
        self.counts = [{v: np.zeros(size) for v in names} for size in sizes]

    def add(self, bins: list[np.ndarray], values: dict[str, np.ndarray]) -> None:
        """Add ``values`` (each aligned with every array of ``bins``) to the sums and counts."""
        all_counts = None
        for name, array in values.items():
            array = np.asarray(array, dtype=np.float64)
            finite = np.isfinite(array)
            if finite.all():  # the usual case: no mask, and one count for all such variables
                if all_counts is None:
                    all_counts = [np.bincount(b, minlength=size) for b, size in zip(bins, self.sizes)]
                for k, b in enumerate(bins):
                    self.sums[k][name] += np.bincount(b, weights=array, minlength=self.sizes[k])
                    self.counts[k][name] += all_counts[k]
                continue
            kept = array[finite]
            for k, b in enumerate(bins):
                b = b[finite]
                self.sums[k][name] += np.bincount(b, weights=kept, minlength=self.sizes[k])
                self.counts[k][name] += np.bincount(b, minlength=self.sizes[k])

    def means(self, k: int) -> dict[str, np.ndarray]:
        """Means of bin set ``k``; NaN where no finite value fell in a bin."""
        return {v: np.divide(self.sums[k][v], self.counts[k][v], out=np.full(self.sizes[k], np.nan),
                             where=self.counts[k][v] > 0) for v in self.names}
