"""Barren parts of screened patches: rock, sand or concrete inside or beside a harvested field.

The crop-cycle screen (:mod:`rsmon.products.change_screen`) decides per patch on its mean after
NDVI, and a patch is a connected region of change: a quarry or a building site next to a harvested
parcel, or inside it, is one patch with the parcel and its mean is the field's. So the change pixels
of each screened patch that *became* barren are grouped into 8-connected parts (the patch
connectivity of :func:`rsmon.products.patches.patches_from_change`): their own after NDVI at or
below ``ScreenParams.barren_ndvi_max``, the patch rule's barren limit ("values close to zero (-0.1
to 0.1) generally correspond to barren areas of rock, sand, or snow", Sentinel Hub's NDVI guide),
and their before NDVI above it (a road, a pond or a dark roof beside the field, barren on both
dates, is not a change of its own). A part holding at least the minimum mapping unit
(``ChangeParams.mmu_px``) is a patch of its own, as the change pass would have drawn it had the
field not been harvested:

- class: the most frequent class of its pixels (ties: the lower code; 0 or unknown as ``other``),
  confidence: the highest of its pixels, as for every patch;
- index means: over its pixels' samples from the change pass (no scene is read again);
- id and ``first_detected``: reconciled with the previous patches like every patch (same id on a
  rerun or when detected again, unless this run's parent patch, or another, took that previous
  patch), else a location id; ``before_date`` / ``first_detected`` from the
  samples' scene positions in a series or with a composite reference;
- the rest (redline, dates, sensor, sources, ``cropland_fraction``) from the patch it was cut from.

The rest of that patch stays screened, its geometry, pixel count, area, centroid and index means
without the parts (the means taken back from the patch's: exact when the patch's samples hold no
NaN, which only a pixel with red + NIR = 0 gives). The watch measures its regrowth from that NDVI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rsmon.errors import InputError

__all__ = ["barren_parts"]

# 8-connectivity on flat pixel indices: right, down-left, down, down-right (and their opposites by symmetry)
_STEPS = ((0, 1), (1, -1), (1, 0), (1, 1))


def _candidates(screened_geoms, samples_in_rows, row_starts, width: int, transform, ndvi_max: float):
    """The change pixels inside the screened pieces that became barren (before NDVI above
    ``ndvi_max``, after NDVI at or below it): (flat, piece, {name: values}), sorted by flat index."""
    import shapely

    tree = shapely.STRtree(screened_geoms)
    flats, pieces, values = [], [], {}
    for r0, r1 in zip(row_starts[:-1], row_starts[1:]):
        for flat, vals in samples_in_rows(int(r0), int(r1)):
            missing = [name for name in ("ndvi_before", "ndvi_after") if name not in vals]
            if missing:
                raise InputError(f"change samples: {', '.join(map(repr, missing))} missing (barren parts need them)")
            flat = np.asarray(flat, dtype=np.int64)
            with np.errstate(invalid="ignore"):  # became barren: not barren before, barren after (NaN: neither)
                keep = ((flat // width >= r0) & (flat // width < r1) & (np.asarray(vals["ndvi_after"]) <= ndvi_max)
                        & (np.asarray(vals["ndvi_before"]) > ndvi_max))
            if not keep.any():
                continue
            rows, cols = np.divmod(flat[keep], width)
            xs, ys = transform * (cols + 0.5, rows + 0.5)
            ip, ig = tree.query(shapely.points(xs, ys), predicate="intersects")
            ip, first = np.unique(ip, return_index=True)  # pieces do not overlap; one each if they touch
            flats.append(flat[keep][ip])
            pieces.append(ig[first])
            for name, v in vals.items():
                values.setdefault(name, []).append(np.asarray(v)[keep][ip])
    if not flats:
        return np.empty(0, np.int64), np.empty(0, np.int64), {}
    flat = np.concatenate(flats)
    order = np.argsort(flat, kind="stable")
    return flat[order], np.concatenate(pieces)[order], {k: np.concatenate(v)[order] for k, v in values.items()}


def _components(flat: np.ndarray, piece: np.ndarray, width: int) -> np.ndarray:
    """Component label of each pixel: 8-connected pixels of the same piece (``flat`` sorted)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(flat)
    col = flat % width
    src, dst = [], []
    for dr, dc in _STEPS:
        target = flat + dr * width + dc
        j = np.minimum(np.searchsorted(flat, target), n - 1)
        ok = (flat[j] == target) & (piece[j] == piece) & (col + dc >= 0) & (col + dc < width)
        src.append(np.flatnonzero(ok))
        dst.append(j[ok])
    src, dst = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def barren_parts(screened, ds, samples_in_rows, row_starts, ndvi_max: float, mmu_px: int,
                 previous=None, taken=(), in_use=(), match_iou: float = 0.3, id_cell_m: float = 100.0):
    """Cut the barren parts out of the screened patches (module docstring).

    Parameters
    ----------
    screened : GeoDataFrame
        The screened patches (patch columns, ``cropland_fraction``, ``screen_reason``) in the
        change raster's CRS.
    ds : xarray.Dataset
        The change rasters (``change_class``, ``confidence``, NumPy or lazily indexed) with their
        CRS, transform and the scene attributes of :func:`~rsmon.products.patches.patches_from_change`.
    samples_in_rows : callable
        ``(row0, row1) -> [(flat, {name: values}), ...]``, the change pass's samples
        (:meth:`rsmon.products.change_blocks.ChangeBlocks.samples_in_rows`).
    row_starts : sequence of int
        The pass's block-row starts ending with the height: each block row's samples are read once.
    ndvi_max : float
        Barren limit (``ScreenParams.barren_ndvi_max``).
    mmu_px : int
        Minimum mapping unit of a part, pixels.
    previous : GeoDataFrame, optional
        Previous patches to reconcile the parts' ids with (as the patch table does).
    taken : iterable of str
        Ids not to give a new part (this run's patches and screened patches, the previous ones).
    in_use : iterable of str
        This run's kept patches' ids: a part is never matched to a previous patch whose id one of
        them, or a screened patch, already carries (the previous patch went to that one).

    Returns
    -------
    (parts, screened)
        The parts as a table with the screened table's columns less ``screen_reason``, largest
        first; the screened table with the parts cut out of their patches.
    """
    import geopandas as gpd
    import shapely
    from affine import Affine
    from rasterio.features import shapes

    from rsmon.products.change_series import FIRST_OBSERVATION
    from rsmon.products.patch_regions import majority_class
    from rsmon.products.patches import (INDEX_VARIABLES, REFERENCE_OBSERVATION, ChangeClass, _confidence_name,
                                        _equal_area, _reconcile, _scene_dates, _stable_ids)
    from rsmon.products.redlines import polygonal

    screened = screened.reset_index(drop=True)
    columns = [c for c in screened.columns if c != "screen_reason"]
    empty = screened.iloc[:0][columns]
    if not len(screened):
        return empty, screened
    width = ds.sizes["x"]
    transform, crs = ds.rio.transform(), screened.crs
    res = float(abs(transform.a))
    geoms = screened.geometry.to_numpy()
    flat, piece, values = _candidates(geoms, samples_in_rows, row_starts, width, transform, ndvi_max)
    if not len(flat):
        return empty, screened
    label = _components(flat, piece, width)
    sizes = np.bincount(label)
    big = np.flatnonzero(sizes >= mmu_px)
    if not len(big):
        return empty, screened
    order = np.argsort(label, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    dates = {FIRST_OBSERVATION: _scene_dates(ds, "datetimes"),
             REFERENCE_OBSERVATION: _scene_dates(ds, "reference_datetimes")}
    rows_out, part_geoms, parent_of = [], [], []
    taken_out = {name: [] for name in INDEX_VARIABLES}  # each part's sum and count of finite samples
    for k in big:
        members = order[bounds[k]:bounds[k + 1]]
        r, c = np.divmod(flat[members], width)
        r0, c0 = int(r.min()), int(c.min())
        mask = np.zeros((int(r.max()) - r0 + 1, int(c.max()) - c0 + 1), dtype=np.uint8)
        mask[r - r0, c - c0] = 1
        window = transform * Affine.translation(c0, r0)
        polys = [shapely.geometry.shape(g) for g, _ in shapes(mask, mask=mask.astype(bool), transform=window,
                                                                connectivity=4)]
        parent = int(piece[members[0]])
        geom = shapely.intersection(shapely.union_all(polys), geoms[parent])
        ys, xs = slice(r0, r0 + mask.shape[0]), slice(c0, c0 + mask.shape[1])
        cls = np.asarray(ds["change_class"][ys, xs].values)[r - r0, c - c0].astype(np.int64)
        conf = np.asarray(ds["confidence"][ys, xs].values)[r - r0, c - c0].astype(np.int64)
        code = int(majority_class(cls, np.ones(len(cls), np.int64), 1)[1])  # the patch table's rule
        row = screened.iloc[parent].drop(labels=["screen_reason", "geometry"], errors="ignore").to_dict()
        # detected in this run (its after date), or by the first later scene flagging it (a series)
        row.update(change_class=ChangeClass(code).name, class_code=code, n_pixels=len(members),
                   confidence_code=int(conf.max()), confidence=_confidence_name(int(conf.max())),
                   first_detected=row["last_detected"])
        for name in INDEX_VARIABLES:  # means over the part's pixels (NaN skipped; not sampled: NaN)
            v = values[name][members].astype(np.float64) if name in values else np.empty(0)
            row[name] = float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
            taken_out[name].append((float(np.nansum(v)), int(np.isfinite(v).sum())))
        for name, key in ((FIRST_OBSERVATION, "first_detected"), (REFERENCE_OBSERVATION, "before_date")):
            if name in values and dates[name]:
                at = values[name][members]
                at = at[np.isfinite(at)]
                if len(at):
                    row[key] = dates[name][int(at.min())] or row[key]
        rows_out.append(row)
        part_geoms.append(geom)
        parent_of.append(parent)
    # (on a lon/lat grid the outlines meet the parent's only to rounding: keep the polygons, not the slivers)
    part_geoms = polygonal(np.asarray(part_geoms, dtype=object))
    ea, area, (cx, cy), (lon, lat) = _equal_area(part_geoms, crs, res)
    parts = pd.DataFrame(rows_out)
    parts["area_m2"], parts["centroid_lon"], parts["centroid_lat"] = area, lon, lat
    detected = parts["first_detected"].tolist()
    if previous is not None and len(previous):
        matched, first = _reconcile(parts["redline_id"].to_numpy(), parts["redline_zone"].to_numpy(), ea, previous,
                                    match_iou)
        held = set(in_use) | set(screened["patch_id"])
        first = [None if m in held else f for m, f in zip(matched, first)]
        matched = [None if m in held else m for m in matched]
    else:
        matched, first = [None] * len(parts), [None] * len(parts)
    used = set(taken) | {i for i in matched if i}
    parts["patch_id"] = _stable_ids(matched, used, parts["redline_id"].to_numpy(), parts["redline_zone"].to_numpy(),
                                    parts["class_code"].to_numpy(), area, cx, cy, id_cell_m)
    parts["first_detected"] = [min(f, d) if f and d else f or d for f, d in zip(first, detected)]
    parts = gpd.GeoDataFrame(parts, geometry=part_geoms, crs=crs)
    parts = parts.astype({c: screened[c].dtype for c in columns if c != "geometry" and c in parts})[columns]
    parts = parts.sort_values(["area_m2", "patch_id"], ascending=[False, True], kind="stable").reset_index(drop=True)

    # the screened patches without their parts
    rest = screened.copy()
    cut = np.unique(parent_of)
    parent_of = np.asarray(parent_of)
    part_pixels = sizes[big]
    for i in cut:
        n = int(rest.loc[i, "n_pixels"])
        rest.loc[i, "n_pixels"] = n - int(part_pixels[parent_of == i].sum())
        for name in INDEX_VARIABLES:  # the parent's mean without its parts' pixels (exact without NaN samples)
            sums = np.asarray(taken_out[name])[parent_of == i]
            mean, left = float(rest.loc[i, name]), n - int(sums[:, 1].sum())
            if np.isfinite(mean) and left > 0:
                rest.loc[i, name] = (mean * n - float(sums[:, 0].sum())) / left
    taken_out_geoms = np.asarray([shapely.union_all(part_geoms[parent_of == i]) for i in cut], dtype=object)
    remainder = polygonal(shapely.difference(geoms[cut], taken_out_geoms))
    _, r_area, _, (r_lon, r_lat) = _equal_area(remainder, crs, res)
    rest.loc[cut, "area_m2"], rest.loc[cut, "centroid_lon"], rest.loc[cut, "centroid_lat"] = r_area, r_lon, r_lat
    rest_geoms = geoms.copy()
    rest_geoms[cut] = remainder
    rest[rest.geometry.name] = gpd.GeoSeries(rest_geoms, crs=crs, index=rest.index)
    gone = shapely.is_empty(rest_geoms)  # a patch wholly barren at the pixel level but not on average
    return parts, rest[~gone].reset_index(drop=True)
