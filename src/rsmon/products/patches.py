"""Change patches: connected change regions as classified, confidence-rated polygons with stable ids.

Input is the change-detection dataset on the after image's grid (dims ``("y", "x")``, rioxarray CRS
and transform, any projected CRS or EPSG:4326, numpy or dask): ``change`` (uint8: 1 change, 0 none,
255 no data), ``change_class`` (:class:`ChangeClass` codes), ``confidence`` (:class:`Confidence`
codes), the before/after index variables :data:`INDEX_VARIABLES` (float32) and the attributes
``before_datetime``, ``after_datetime`` (required), ``before_source``, ``after_source``, ``sensor``.
Output is a GeoDataFrame with the columns :data:`PATCH_COLUMNS`, in the raster CRS.

Rules
-----
* A patch is a connected region (``connectivity`` 8 or 4) of change pixels; its class is the most
  frequent class of its pixels (ties: the lower code), a change pixel with class 0 or an unknown
  code (255) counting as ``other``. Touching regions of different classes are one patch (the
  minimum mapping unit applies to the change area, and an interpreter checks one site).
* ``area_m2`` is the ellipsoidal area in :data:`EQUAL_AREA_CRS` (EPSG:6933, WGS 84 / NSIDC
  EASE-Grid 2.0 Global, a cylindrical equal-area projection): equal-area on the WGS 84 ellipsoid
  everywhere (no per-scene parameters), and lon/lat pixel edges map to straight lines in it, so
  EPSG:4326 rasters get exact pixel areas; projected edges (UTM) are densified first. It is the true
  ground area, not ``n_pixels`` x the nominal pixel area (UTM grid areas differ by the scale
  factor squared, up to about +-0.1 %). ``centroid_lon``/``centroid_lat`` are the equal-area
  centroid in EPSG:4326 (it may fall outside a ring-shaped patch).
* ``confidence`` is the MAXIMUM pixel confidence of the patch: confirmation by a later observation
  or a second sensor (GLAD/RADD practice, redline_eqi.md section 2) usually reaches part of a
  patch first, and that confirms the activity as a whole. Index values are zonal means over the
  patch's pixels (NaN pixels skipped), read strip by strip from the dataset, or taken from
  ``index_samples`` handed over by a fused change pass (then the dataset needs no index variables).
* With ``redlines``, patches are clipped to each redline feature (a patch crossing two features
  becomes two rows) and patches outside every feature are dropped. Pixel statistics of a clipped
  piece come from the pixels whose centres lie in it; a sliver holding no pixel centre keeps its
  parent patch's confidence and index means and has ``n_pixels`` 0.

Stable ids
----------
1. Reconciliation: a patch that matches a patch of ``previous`` (an earlier run or the alert store)
   with the same ``redline_id`` and ``redline_zone`` takes its ``patch_id`` and ``first_detected``.
   Match = IoU >= ``match_iou`` (default 0.3), or either patch's representative point
   (``point_on_surface``) inside the other; the class is not required to match (cleared land that
   becomes a building site is the same activity). Pairs are assigned one to one, best IoU first.
2. Otherwise the id is deterministic from location: ``chg-`` + 16 hex digits of SHA-1 over the
   redline id, zone, class code and the equal-area centroid snapped to an ``id_cell_m`` grid
   (default 100 m). Reruns on the same input therefore give the same ids with or without
   ``previous``. A collision within the run or with an unmatched previous id gets ``-2``, ``-3``...
   (larger patch first).

Limits: when a patch splits, the best-overlapping part keeps the id and the others get new ids;
when patches merge, the merged patch keeps the best-overlapping previous id and the other previous
alerts are simply not updated by this run. Without ``previous``, a grown patch keeps its id only
if its centroid stays in the same grid cell.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from enum import IntEnum
from functools import partial

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from pyproj import CRS, Transformer

from rsmon.errors import InputError
from rsmon.kernels.patches import bin_max
from rsmon.products.change_composite import REFERENCE_OBSERVATION
from rsmon.products.change_series import FIRST_OBSERVATION
from rsmon.products.patch_regions import (
    THREADS,
    MeanAccumulator,
    PiecePixels,
    Regions,
    assign_pieces,
    label_regions,
    region_polygons,
    region_windows,
    threaded,
)
from rsmon.products.redlines import RedlineColumns, as_text, clip_to_redlines, polygonal, prepare_redlines
from rsmon.provenance import parse_datetime

log = logging.getLogger(__name__)

__all__ = [
    "ChangeClass",
    "Confidence",
    "RedlineColumns",
    "EQUAL_AREA_CRS",
    "INDEX_VARIABLES",
    "FIRST_OBSERVATION",
    "PATCH_COLUMNS",
    "empty_patches",
    "free_id",
    "patches_from_change",
    "prepare_redlines",
]


class ChangeClass(IntEnum):
    """Human-activity change classes (``change_class`` raster codes); names are the file strings."""

    none = 0
    construction = 1
    mining_quarrying = 2
    farmland_reclamation = 3
    vegetation_clearing = 4
    water_body_change = 5
    other = 6


class Confidence(IntEnum):
    """Pixel/patch confidence (GFW integrated-alert levels, redline_eqi.md section 2)."""

    none = 0
    low = 1
    high = 2
    highest = 3


#: Equal-area CRS for ``area_m2`` and the id grid (WGS 84 / NSIDC EASE-Grid 2.0 Global).
EQUAL_AREA_CRS = "EPSG:6933"

#: Before/after index variables whose per-patch means become columns of the same name.
INDEX_VARIABLES: tuple[str, ...] = tuple(
    f"{index}_{when}" for index in ("ndvi", "ndbi", "mndwi", "bsi") for when in ("before", "after")
)

#: Columns of the patch table (besides ``geometry``) and their dtypes.
PATCH_COLUMNS: dict[str, str] = {
    "patch_id": "object",
    "change_class": "object",
    "class_code": "int32",
    "confidence": "object",
    "confidence_code": "int32",
    "area_m2": "float64",
    "n_pixels": "int64",
    "centroid_lon": "float64",
    "centroid_lat": "float64",
    "redline_id": "object",
    "redline_name": "object",
    "redline_zone": "object",
    "before_date": "object",
    "after_date": "object",
    "first_detected": "object",
    "last_detected": "object",
    "sensor": "object",
    "before_source": "object",
    "after_source": "object",
    **{name: "float64" for name in INDEX_VARIABLES},
}

CHANGE_NODATA = 255
_REDLINE_KEYS = ("redline_id", "redline_name", "redline_zone")


def empty_patches(crs) -> gpd.GeoDataFrame:
    """A patch table with no rows and the full schema (:data:`PATCH_COLUMNS`), in ``crs``."""
    data = {name: pd.Series([], dtype=dtype) for name, dtype in PATCH_COLUMNS.items()}
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def _as_date(value, where: str) -> str | None:
    """``YYYY-MM-DD`` (UTC) from an ISO string, date, datetime or Timestamp (GeoJSON readers
    turn date strings into Timestamps); None for missing values."""
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return parse_datetime(value if isinstance(value, datetime) else str(value), where).date().isoformat()


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _georef(ds: xr.Dataset):
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    for name in ("change", "change_class", "confidence"):
        if name not in ds.data_vars:
            raise InputError(f"change dataset: variable {name!r} is missing")
        if ds[name].dims != ("y", "x"):
            raise InputError(f"change dataset: variable {name!r} has dims {ds[name].dims}, expected ('y', 'x')")
    crs = ds.rio.crs
    if crs is None:
        raise InputError("change dataset: no CRS (rioxarray spatial_ref); write one with ds.rio.write_crs")
    return crs, ds.rio.transform()


def _scene_attrs(ds: xr.Dataset) -> dict[str, str | None]:
    dates = {}
    for key in ("before_datetime", "after_datetime"):
        if ds.attrs.get(key) is None:
            raise InputError(f"change dataset: attribute {key!r} (ISO 8601 UTC) is missing")
        dates[key] = _as_date(ds.attrs[key], f"change dataset: {key}")
    return {
        "before_date": dates["before_datetime"],
        "after_date": dates["after_datetime"],
        **{key: as_text(ds.attrs.get(key)) for key in ("sensor", "before_source", "after_source")},
    }


#: Samples whose minimum per patch names a scene (its date goes to ``first_detected`` and
#: ``before_date``): sample -> the change dataset's attribute listing those scenes' datetimes (JSON).
_SCENE_SAMPLES = {FIRST_OBSERVATION: "datetimes", REFERENCE_OBSERVATION: "reference_datetimes"}


def _scene_dates(ds: xr.Dataset, key: str = "datetimes") -> list[str] | None:
    """The dates of the scenes listed in attribute ``key`` (JSON): a series' later scenes
    (``datetimes``), a composite reference's scenes (``reference_datetimes``); None without it."""
    text = ds.attrs.get(key)
    if text is None:
        return None
    try:
        values = json.loads(text)
    except (TypeError, ValueError):
        raise InputError(f"change dataset: attribute {key!r} is not a JSON list ({text!r:.80})") from None
    if not isinstance(values, list) or not values:
        raise InputError(f"change dataset: attribute {key!r} is not a non-empty JSON list ({text!r:.80})")
    return [_as_date(v, f"change dataset: {key}") if v else None for v in values]


def _piece_dates(joined: dict, name: str, dates: list, default: str | None) -> list:
    """Each piece's date from its minimum of the sample ``name`` (a position in ``dates``)."""
    first = joined[f"mean:{name}"]
    if np.any((first < 0) | (first >= len(dates)) | (first != np.floor(first))):
        raise InputError(f"index_samples: {name!r} must hold positions 0..{len(dates) - 1} "
                         f"of the change dataset's {_SCENE_SAMPLES[name]!r}")
    return [(dates[int(k)] if k == k else None) or default for k in first]


def _check_samples(index_samples, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Validate ``index_samples = (flat, {name: values})``; return them as arrays."""
    try:
        flat, values = index_samples
    except (TypeError, ValueError):
        raise InputError("index_samples: expected a pair (flat pixel indices, {variable: values})") from None
    flat = np.asarray(flat)
    if flat.ndim != 1 or not (np.issubdtype(flat.dtype, np.integer) or flat.size == 0):
        raise InputError(f"index_samples: flat indices must be a 1-D integer array, got {flat.dtype} {flat.shape}")
    if flat.size and (flat.min() < 0 or flat.max() >= shape[0] * shape[1]):
        raise InputError(f"index_samples: flat indices must lie in 0..{shape[0] * shape[1] - 1} "
                         f"(row * {shape[1]} + col on the {shape[0]} x {shape[1]} grid)")
    if not isinstance(values, Mapping):
        raise InputError(f"index_samples: values must be a mapping {{variable: array}}, got {type(values).__name__}")
    known = (*INDEX_VARIABLES, *_SCENE_SAMPLES)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"index_samples: unknown variable(s) {unknown}; expected names from {list(known)}")
    arrays = {}
    for name, array in values.items():
        array = np.asarray(array)
        if array.shape != flat.shape:
            raise InputError(f"index_samples: {name!r} has shape {array.shape}, expected {flat.shape} like the indices")
        arrays[name] = array
    return flat.astype(np.int64, copy=False), arrays


# --------------------------------------------------------------------------------------------
# index means
# --------------------------------------------------------------------------------------------
def _piece_stats(ds: xr.Dataset, region_sums: Future | None, names: list[str], regions: Regions,
                 pixel_conf: np.ndarray, parent: np.ndarray, cut: PiecePixels, min_names: list[str]
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Pixel count, confidence and index means (:func:`_index_means`; minimums of ``min_names``) of each piece.

    A piece holding its whole region has the region's statistics, the others those of their
    pixels; slivers without a pixel centre take their region's confidence and means.
    """
    n, n_pieces = regions.n, len(parent)
    patch_means, cut_means = _index_means(ds, region_sums, names, regions, cut, n_pieces, min_names)
    n_pixels = np.bincount(regions.label, minlength=n + 1)
    piece_pixels = np.where(cut.entire, n_pixels[parent], np.bincount(cut.piece, minlength=n_pieces + 1)[1:])
    own = ~cut.entire & (piece_pixels > 0)
    conf = bin_max(regions.label, pixel_conf, n + 1)[parent]
    piece_conf = np.where(own, bin_max(cut.piece, pixel_conf[cut.at], n_pieces + 1)[1:], conf)
    return piece_pixels, piece_conf, {v: np.where(own, cut_means[v][1:], patch_means[v][parent])
                                      for v in [*names, *min_names]}


def _index_means(ds: xr.Dataset, region_sums: Future | None, names: list[str], regions: Regions, cut: PiecePixels,
                 n_pieces: int, min_names: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """NaN-skipping means of the index variables per region and per piece of the cut regions
    (index 0 unused), and the minimums of the samples ``min_names``: from the samples'
    :func:`_sample_region_sums` or read from ``ds`` (means only)."""
    cut_acc = MeanAccumulator(n_pieces + 1, names, min_names)
    if region_sums is not None:
        parts, acc = region_sums.result()
        for at, label, values in parts if cut.at.size else ():
            # the samples in cut regions, by piece (once per piece holding the pixel)
            sel = np.flatnonzero(cut.cut[label])
            if not sel.size:
                continue
            lo, hi = np.searchsorted(cut.at, at[sel], "left"), np.searchsorted(cut.at, at[sel], "right")
            reps = hi - lo
            entry = np.repeat(lo - (np.cumsum(reps) - reps), reps) + np.arange(int(reps.sum()))
            sel = np.repeat(sel, reps)
            cut_acc.add(cut.piece[entry], {v: x[sel] for v, x in values.items()})
    else:
        acc = MeanAccumulator(regions.n + 1, names)
        if names:
            _dense_index_means(ds, names, regions, cut, acc, cut_acc)
    return acc.means(), cut_acc.means()


def _dense_index_means(ds: xr.Dataset, names: list[str], regions: Regions, cut: PiecePixels,
                       acc: MeanAccumulator, cut_acc: MeanAccumulator) -> None:
    """Accumulate index values read from ``ds`` in row strips.

    One dask graph per strip (only the columns holding change pixels), only its change pixels
    accumulated, so the index variables are computed once and never held whole.
    """
    chunks = ds[names[0]].chunks
    rows = max(int(chunks[0][0]), 256) if chunks else 512
    height = regions.shape[0]
    edges = np.searchsorted(regions.rows, np.arange(0, height + rows, rows))  # first run of each strip
    for r0, lo, hi in zip(range(0, height, rows), edges[:-1], edges[1:]):
        if hi == lo:
            continue
        runs = slice(lo, hi)
        c0, c1 = int(regions.starts[runs].min()), int(regions.ends[runs].max())
        part = ds[names].isel(y=slice(r0, r0 + rows), x=slice(c0, c1)).compute()
        p0, p1 = regions.offsets[lo], regions.offsets[hi]
        values = {v: regions.gather(np.asarray(part[v].values), runs, r0, c0) for v in names}
        acc.add(regions.label[p0:p1], values)
        a, b = np.searchsorted(cut.at, [p0, p1])
        if b > a:
            cut_acc.add(cut.piece[a:b], {v: x[cut.at[a:b] - p0] for v, x in values.items()})


def _in_context() -> Callable:
    """Run a background task in a copy of the caller's context (so it keeps the caller's
    :func:`~rsmon.products.patch_regions.kernel_threads`)."""
    return contextvars.copy_context().run


def _checked_pieces(samples, shape: tuple[int, int], names: list[str]) -> list[tuple[np.ndarray, dict]]:
    """The samples a callable ``index_samples`` returned, checked: one ``(flat, values)`` pair, or a
    list of such pairs (pieces, e.g. one per block of a change pass, summed piece by piece without
    joining them), each with every name of ``names``."""
    pieces = samples if isinstance(samples, list) else [samples]
    checked = []
    for piece in pieces:
        piece = _check_samples(piece, shape)
        missing = sorted(set(names) - set(piece[1]))
        if missing:
            raise InputError(f"index_samples: the callable's samples lack {missing}")
        checked.append(piece)
    return checked


def _sample_region_sums(pieces: list[tuple[np.ndarray, dict]], names: list[str], regions: Regions,
                        min_names: list[str]
                        ) -> tuple[list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]], MeanAccumulator]:
    """Per piece of samples: pixel position and region of each sample and its values; and the
    index sums (and minimums of ``min_names``) per region over all pieces (samples off the
    change pixels go to region 0, which is not used)."""
    acc = MeanAccumulator(regions.n + 1, names, min_names)
    parts = []
    for flat, values in pieces:
        if not flat.size:
            continue
        at, label = regions.positions(flat)
        values = {v: values[v] for v in [*names, *min_names]}
        acc.add(label, values)
        parts.append((at, label, values))
    return parts, acc


def _equal_area(geoms: np.ndarray, crs, res: float):
    """Geometries in :data:`EQUAL_AREA_CRS` (edges densified to ``100 * res`` first), their areas
    (m2), their centroids there and the centroids in EPSG:4326 longitude/latitude."""
    bounds = shapely.bounds(geoms)
    # only pieces whose bounding-box diagonal exceeds the step can hold a longer edge to split;
    # most patches are far smaller
    long = np.flatnonzero(np.hypot(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]) > 100 * res)
    dense = np.array(geoms, dtype=object)
    dense[long] = shapely.segmentize(dense[long], 100 * res)
    ea = _reproject(dense, crs, EQUAL_AREA_CRS)
    centroids = shapely.centroid(ea)
    lonlat = _reproject(centroids, EQUAL_AREA_CRS, "EPSG:4326")
    return (ea, shapely.area(ea), (shapely.get_x(centroids), shapely.get_y(centroids)),
            (shapely.get_x(lonlat), shapely.get_y(lonlat)))


def _reproject(geoms: np.ndarray, src, dst) -> np.ndarray:
    """2-D geometries from CRS ``src`` to ``dst`` point by point, as ``GeoSeries.to_crs`` does;
    long coordinate lists are split between threads (PROJ runs without the GIL)."""
    src, dst = CRS.from_user_input(src), CRS.from_user_input(dst)
    if src.is_exact_same(dst):
        return geoms
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    xy = shapely.get_coordinates(geoms)
    parts = np.array_split(xy, THREADS if len(xy) > 100_000 else 1)
    done = threaded(lambda part: np.column_stack(transformer.transform(part[:, 0], part[:, 1])),
                    [(part,) for part in parts])
    return shapely.set_coordinates(np.array(geoms, dtype=object), np.concatenate(done))


# --------------------------------------------------------------------------------------------
# ids
# --------------------------------------------------------------------------------------------
def _confidence_name(code) -> str:
    try:
        return Confidence(int(code)).name
    except ValueError:
        return str(int(code))


def _location_ids(redline_id, zone, class_code, x, y, cell_m: float) -> list[str]:
    """``chg-`` + 16 hex digits of SHA-1 over redline id, zone, class and the snapped centroid."""
    ix, iy = np.floor(x / cell_m).astype(np.int64), np.floor(y / cell_m).astype(np.int64)
    return ["chg-" + hashlib.sha1(f"{r or ''}|{z or ''}|{c}|{i}|{j}".encode("utf-8")).hexdigest()[:16]
            for r, z, c, i, j in zip(redline_id, zone, class_code.tolist(), ix.tolist(), iy.tolist())]


def _key(redline_id, zone) -> str:
    return f"{as_text(redline_id) or ''}|{as_text(zone) or ''}"


def _reconcile(redline_id, zone, ea_geoms: np.ndarray, previous: gpd.GeoDataFrame,
               match_iou: float) -> tuple[list, list]:
    """Previous ``patch_id``/``first_detected`` for each new piece (None when unmatched)."""
    if "patch_id" not in previous.columns:
        raise InputError("previous patches: column 'patch_id' is missing")
    if previous.crs is None:
        raise InputError("previous patches: no CRS")
    ids, first = [None] * len(ea_geoms), [None] * len(ea_geoms)
    if not len(previous) or not len(ea_geoms):
        return ids, first
    prev = previous.to_crs(EQUAL_AREA_CRS)
    prev_geoms = polygonal(shapely.make_valid(prev.geometry.to_numpy()))
    prev_keys = np.asarray([_key(r, z) for r, z in zip(prev.get("redline_id", [None] * len(prev)),
                                                         prev.get("redline_zone", [None] * len(prev)))])
    new_keys = np.asarray([_key(r, z) for r, z in zip(redline_id, zone)])
    inew, iprev = shapely.STRtree(prev_geoms).query(ea_geoms, predicate="intersects")
    same = new_keys[inew] == prev_keys[iprev]
    inew, iprev = inew[same], iprev[same]
    inter = shapely.area(shapely.intersection(ea_geoms[inew], prev_geoms[iprev]))
    union = shapely.area(ea_geoms[inew]) + shapely.area(prev_geoms[iprev]) - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    inside = shapely.contains(ea_geoms[inew], shapely.point_on_surface(prev_geoms[iprev])) | shapely.contains(
        prev_geoms[iprev], shapely.point_on_surface(ea_geoms[inew]))
    ok = (iou >= match_iou) | inside
    order = np.lexsort((iprev[ok], inew[ok], -iou[ok]))
    used_prev = set()
    prev_ids = [as_text(v) for v in prev["patch_id"]]
    prev_first = [_as_date(v, "previous patches: first_detected") for v in prev["first_detected"]] \
        if "first_detected" in prev else [None] * len(prev)
    for i, j in zip(inew[ok][order], iprev[ok][order]):
        if ids[i] is None and j not in used_prev and prev_ids[j]:
            ids[i], first[i] = prev_ids[j], prev_first[j]
            used_prev.add(j)
    return ids, first


def _stable_ids(matched: list, taken: set, redline_id, zone, codes, area, cx, cy, cell_m: float) -> list[str]:
    """Matched ids, else location ids; collisions get ``-2``, ``-3``... (larger piece first)."""
    ids = list(matched)
    new = [i for i in np.lexsort((cy, cx, -area)).tolist() if ids[i] is None]
    bases = _location_ids(redline_id[new], zone[new], codes[new], cx[new], cy[new], cell_m)
    for i, base in zip(new, bases):
        ids[i] = free_id(base, taken)
    return ids


def free_id(base: str, taken: set) -> str:
    """``base``, or ``base-2``, ``base-3``... the first not in ``taken``; added to ``taken``."""
    candidate, k = base, 1
    while candidate in taken:
        k += 1
        candidate = f"{base}-{k}"
    taken.add(candidate)
    return candidate


def _region_pieces(ds: xr.Dataset, regions: Regions, pixel_conf: np.ndarray, transform, crs, zones,
                   names: list[str], get_samples: Callable | None, keep_equal_area: bool,
                   min_names: list[str], watch: np.ndarray | None = None) -> dict | None:
    """The patch pieces of ``regions`` (whole patches, or patches clipped to the redline features
    ``zones``): geometry, class, equal-area figures, pixel statistics; None when no piece is left.
    With ``watch`` (flat pixel indices), ``"watched"`` holds those of them in a region that keeps a piece.

    ``get_samples()`` returns the index samples as a list of checked ``(flat, values)`` pieces, or
    is None (the means are then read from ``ds``'s index variables). The equal-area geometries
    are kept (``ea_geoms``) only with ``keep_equal_area`` (for reconciling ids with earlier patches).
    """
    n = regions.n
    # pixel statistics (numba kernels) in the background while GEOS and PROJ work on the polygons
    with ThreadPoolExecutor(1) as background:
        region_sums = (background.submit(_in_context(),
                                         lambda: _sample_region_sums(get_samples(), names, regions, min_names))
                       if get_samples is not None else None)
        geoms = region_polygons(regions, transform)
        # pieces: patches, or patches clipped to redline features
        if zones is None:
            parent = np.arange(1, n + 1)
            piece_geoms = geoms[1:]
            redline = {k: np.full(n, None, dtype=object) for k in _REDLINE_KEYS}
            cut = PiecePixels.uncut(np.ones(n, bool), n)
        else:
            clipped = clip_to_redlines(geoms[1:], zones.geometry.to_numpy())
            if not len(clipped.geometry):
                if region_sums is not None:
                    region_sums.result()  # its errors (bad samples) are raised all the same
                return None
            parent, piece_geoms = clipped.patch + 1, clipped.geometry
            redline = {k: np.asarray([as_text(v) for v in zones[k]], dtype=object)[clipped.zone]
                       for k in _REDLINE_KEYS}
            cut = assign_pieces(regions, parent, clipped.zone, clipped.whole, zones.geometry.to_numpy(), transform)
        stats = background.submit(_in_context(), _piece_stats, ds, region_sums, names, regions, pixel_conf, parent,
                                  cut, min_names)
        ea_geoms, area, (cx, cy), (lon, lat) = _equal_area(piece_geoms, crs, max(abs(transform.a), abs(transform.e)))
        piece_pixels, piece_conf, piece_means = stats.result()
    watched = None
    if watch is not None:
        _, label = regions.positions(watch)
        watched = watch[(label > 0) & np.isin(label, parent)]
    return {"watched": watched, "order": regions.first_flat()[parent], "codes": regions.label_class[parent],
            "piece_geoms": np.asarray(piece_geoms, dtype=object),
            "ea_geoms": np.asarray(ea_geoms if keep_equal_area else [None] * len(area), dtype=object),
            "area": area, "cx": cx, "cy": cy, "lon": lon, "lat": lat, "piece_pixels": piece_pixels,
            "piece_conf": piece_conf, "redline": redline,
            **{f"mean:{v}": piece_means[v] for v in [*names, *min_names]}}


# --------------------------------------------------------------------------------------------
# main entry
# --------------------------------------------------------------------------------------------
def patches_from_change(
    ds: xr.Dataset,
    *,
    redlines: gpd.GeoDataFrame | None = None,
    previous: gpd.GeoDataFrame | None = None,
    connectivity: int = 8,
    redline_columns: RedlineColumns | None = None,
    match_iou: float = 0.3,
    id_cell_m: float = 100.0,
    index_samples: tuple[np.ndarray, Mapping[str, np.ndarray]] | Callable[[], tuple] | None = None,
    window_rows: int | None = None,
    watch: np.ndarray | None = None,
) -> gpd.GeoDataFrame:
    """Vectorise change regions into a patch table with class, confidence, area, evidence and stable ids.

    Parameters
    ----------
    ds : xarray.Dataset
        Change-detection output on the after grid (module docstring); may be dask-backed.
    redlines : GeoDataFrame, optional
        Redline/reserve polygons in any CRS; patches are clipped to them and those outside are
        dropped (see :func:`prepare_redlines` for the checks and repairs).
    previous : GeoDataFrame, optional
        Patches of an earlier run or the alert store (``patch_id``, geometry with a CRS, and if
        present ``redline_id``, ``redline_zone``, ``first_detected``) to reconcile ids against.
    connectivity : {8, 4}
        Pixel connectivity of a patch.
    redline_columns : RedlineColumns, optional
        Redline id/name/zone attribute names (default: detected).
    match_iou : float
        Minimum intersection over union for a previous patch to pass its id on (0-1).
    id_cell_m : float
        Grid step (m, in :data:`EQUAL_AREA_CRS`) the centroid is snapped to for new ids.
    index_samples : (ndarray, mapping), optional
        Index values of the change pixels from a fused change pass: ``(flat, values)`` with
        ``flat`` the flat pixel indices (``row * width + col`` on the dataset grid, int, each
        pixel once, any order) and ``values`` ``{name: array}`` aligned with ``flat`` for names
        of :data:`INDEX_VARIABLES` (float32; missing names give NaN columns and a warning).
        The patch means are NaN-skipping means of the samples falling in the patch (or clipped
        piece); samples off the change pixels are ignored, change pixels without a sample do
        not count. The dataset's index variables are then not read (they may be absent). May
        also be a callable returning that pair, or a list of such pairs (pieces of the samples,
        e.g. one per block of a change pass: :attr:`rsmon.products.change_blocks.ChangeBlocks.sample_pieces`,
        summed piece by piece, never joined), with every name of :data:`INDEX_VARIABLES`: it is
        called in a background thread while the regions are labelled and traced. With
        ``window_rows`` a callable is called once per window as ``index_samples(row0, row1)``
        and returns (at least) the samples of rows ``row0:row1``, e.g.
        :meth:`rsmon.products.change_blocks.ChangeBlocks.samples_in_rows`.
        A series' samples (``ds`` has the ``datetimes`` attribute of its later scenes) may add
        :data:`~rsmon.products.change_series.FIRST_OBSERVATION`, the position of the later scene
        that first flagged each pixel (a callable's must): a patch's ``first_detected`` is then
        the date of its earliest, else the ``after_datetime``. Likewise with a composite reference
        (``ds`` has ``reference_datetimes``, the dates of its scenes) the samples may add
        :data:`~rsmon.products.change_composite.REFERENCE_OBSERVATION`, the composite's scene that
        gave each pixel's reference values: a patch's ``before_date`` is then the date of its
        earliest (the activity began after it), else the ``before_datetime``.
    window_rows : int, optional
        Label and vectorise the raster window of rows by window (this many rows each, each row
        of ``ds`` read once, e.g. from lazy arrays over files): memory then depends on the
        raster's width and its open regions' pixels, not its area
        (:func:`~rsmon.products.patch_regions.region_windows`). The table is the same as without
        it (same rows, ids and geometries; means equal to rounding).
    watch : numpy.ndarray of int, optional
        Flat pixel indices (``row * width + col``) to look out for: ``attrs["watched"]`` of the
        table lists those (sorted, unique) that are change pixels of a region keeping a piece in
        the table (a restricted pass's change pixels next to its no-data edge,
        :func:`rsmon.products.change_extent.reaching_pixels`); an empty table has no such attribute.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns :data:`PATCH_COLUMNS` + ``geometry`` (raster CRS), largest patch first; empty with
        the full schema when nothing changed (inside the redlines).

    Raises
    ------
    InputError
        Missing variables/attributes/CRS, bad parameters, bad ``index_samples`` or redlines
        (:func:`prepare_redlines`).
    """
    crs, transform = _georef(ds)
    if window_rows is not None and (int(window_rows) != window_rows or window_rows < 1):
        raise InputError(f"window_rows: expected a whole number of rows >= 1, got {window_rows}")
    if not 0.0 < match_iou <= 1.0:
        raise InputError(f"match_iou: expected a fraction in (0, 1], got {match_iou}")
    if not id_cell_m > 0:
        raise InputError(f"id_cell_m: expected a positive length in metres, got {id_cell_m}")
    scene = _scene_attrs(ds)
    shape = (ds.sizes["y"], ds.sizes["x"])
    lazy = callable(index_samples)
    samples = _check_samples(index_samples, shape) if index_samples is not None and not lazy else None
    zones = prepare_redlines(redlines, crs, redline_columns) if redlines is not None else None
    if window_rows is None:
        masks = ds[["change", "change_class", "confidence"]].compute()
        regions = label_regions(np.asarray(masks["change"].values), np.asarray(masks["change_class"].values),
                                connectivity)
        pixel_conf = regions.gather(np.asarray(masks["confidence"].values))
        del masks
        windows = iter([(regions, pixel_conf)])
    else:
        def read(row0: int, row1: int) -> list[np.ndarray]:
            # one window at a time, in this thread (lazy arrays over files: reading is the work)
            part = ds[["change", "change_class", "confidence"]].isel(y=slice(row0, row1)).compute(
                scheduler="synchronous")
            return [np.asarray(part[v].values) for v in ("change", "change_class", "confidence")]

        windows = region_windows(read, shape, int(window_rows), connectivity)
    names = list(INDEX_VARIABLES) if lazy else [v for v in INDEX_VARIABLES if v in (samples[1] if samples
                                                                                   else ds.data_vars)]
    # a series' samples may say which later scene first flagged each pixel (FIRST_OBSERVATION), a
    # composite reference's which of its scenes gave each pixel's reference (REFERENCE_OBSERVATION)
    scene_dates = {name: _scene_dates(ds, key) for name, key in _SCENE_SAMPLES.items()}
    min_names = [name for name, dates in scene_dates.items()
                 if dates and (lazy or (samples and name in samples[1]))]
    if watch is not None:
        watch = np.unique(np.asarray(watch, np.int64))
        if watch.size and (watch[0] < 0 or watch[-1] >= shape[0] * shape[1]):
            raise InputError(f"watch: pixel indices must lie in 0..{shape[0] * shape[1] - 1}")
    parts, n, watched = [], 0, []
    for regions, pixel_conf in windows:
        if not regions.n:
            continue
        n += regions.n
        if not lazy:  # checked once, above
            get = (lambda: [samples]) if samples else None
        else:  # the callable's samples are checked when it has been called, in the background
            call = index_samples if window_rows is None else partial(index_samples, int(regions.rows[0]),
                                                                     int(regions.rows[-1]) + 1)
            get = partial(lambda f: _checked_pieces(f(), shape, [*names, *min_names]), call)
        part = _region_pieces(ds, regions, pixel_conf, transform, crs, zones, names, get, previous is not None,
                              min_names, watch)
        if part is not None:
            if watch is not None:
                watched.append(part["watched"])
            del part["watched"]
            parts.append(part)
    if n == 0:
        log.info("no change pixels: empty patch table")
        return empty_patches(crs)
    if len(names) < len(INDEX_VARIABLES):
        log.warning("change %s lacks %s: their columns are NaN", "index_samples" if samples else "dataset",
                    sorted(set(INDEX_VARIABLES) - set(names)))
    if not parts:
        log.info("%d change patches, none inside the redlines: empty patch table", n)
        return empty_patches(crs)
    # the pieces in the order of their regions' first pixels, as one whole-raster labelling numbers them
    order = np.argsort(np.concatenate([part.pop("order") for part in parts]), kind="stable")
    joined = {k: np.concatenate([part[k] for part in parts])[order] for k in parts[0] if k != "redline"}
    redline = {k: np.concatenate([part["redline"][k] for part in parts])[order] for k in _REDLINE_KEYS}
    codes, piece_geoms, ea_geoms, area = joined["codes"], joined["piece_geoms"], joined["ea_geoms"], joined["area"]
    cx, cy, lon, lat = joined["cx"], joined["cy"], joined["lon"], joined["lat"]
    piece_pixels, piece_conf = joined["piece_pixels"], joined["piece_conf"]
    piece_means = {v: joined[f"mean:{v}"] for v in names}
    n_pieces = len(codes)
    # the date of each piece's earliest first flagging observation, and of its earliest reference
    # observation (the activity began after it; a composite's pixels come from several dates)
    detected = (_piece_dates(joined, FIRST_OBSERVATION, scene_dates[FIRST_OBSERVATION], scene["after_date"])
                if FIRST_OBSERVATION in min_names else [scene["after_date"]] * n_pieces)
    before_dates = (_piece_dates(joined, REFERENCE_OBSERVATION, scene_dates[REFERENCE_OBSERVATION],
                                 scene["before_date"])
                    if REFERENCE_OBSERVATION in min_names else [scene["before_date"]] * n_pieces)

    # stable ids
    if previous is not None:
        matched_ids, matched_first = _reconcile(redline["redline_id"], redline["redline_zone"], ea_geoms,
                                                previous, match_iou)
    else:
        matched_ids, matched_first = [None] * n_pieces, [None] * n_pieces
    taken = {i for i in matched_ids if i}
    if previous is not None and "patch_id" in previous:
        taken |= {as_text(v) for v in previous["patch_id"] if as_text(v)}
    ids = _stable_ids(matched_ids, taken, redline["redline_id"], redline["redline_zone"], codes, area, cx, cy,
                      id_cell_m)

    def same(value):
        return np.full(n_pieces, value, dtype=object)

    columns = {
        "patch_id": ids,
        "change_class": [ChangeClass(c).name for c in codes.tolist()],
        "class_code": codes,
        "confidence": [_confidence_name(c) for c in piece_conf.tolist()],
        "confidence_code": piece_conf,
        "area_m2": area,
        "n_pixels": piece_pixels,
        "centroid_lon": lon,
        "centroid_lat": lat,
        **redline,
        "before_date": np.asarray(before_dates, dtype=object),
        "after_date": same(scene["after_date"]),
        "first_detected": [min(f, d) if f else d for f, d in zip(matched_first, detected)],
        "last_detected": same(scene["after_date"]),
        **{k: same(scene[k]) for k in ("sensor", "before_source", "after_source")},
        **{v: piece_means[v] if v in names else np.full(n_pieces, np.nan) for v in INDEX_VARIABLES},
    }
    # object text with None for missing, also under pandas 3 (whose default str dtype holds NaN)
    table = gpd.GeoDataFrame({k: pd.Series(v, dtype=PATCH_COLUMNS[k]) for k, v in columns.items()},
                             geometry=piece_geoms, crs=crs)
    table = table.sort_values(["area_m2", "patch_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    log.info("%d change patches (%d pieces kept), %d matched to previous patches", n, n_pieces,
             sum(1 for i in matched_ids if i))
    table = table[[*PATCH_COLUMNS, "geometry"]]
    if watch is not None:
        table.attrs["watched"] = np.sort(np.concatenate(watched)) if watched else np.empty(0, np.int64)
    return table
