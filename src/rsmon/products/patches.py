"""Change patches: connected change regions as classified, confidence-rated polygons with stable ids.

Input is the change-detection dataset on the after image's grid (dims ``("y", "x")``, rioxarray CRS
and transform, any projected CRS or EPSG:4326, numpy or dask): ``change`` (uint8: 1 change, 0 none,
255 no data), ``change_class`` (:class:`ChangeClass` codes), ``confidence`` (:class:`Confidence`
codes), the before/after index variables :data:`INDEX_VARIABLES` (float32) and the attributes
``before_datetime``, ``after_datetime`` (required), ``before_source``, ``after_source``, ``sensor``.
Output is a GeoDataFrame with the columns :data:`PATCH_COLUMNS`, in the raster CRS.

Rules
-----
* A patch is a connected region (``connectivity`` 8 or 4) of change pixels of one class; a change
  pixel with class 0 or an unknown code (255) counts as ``other``. Touching regions of different classes are separate patches.
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
  patch's pixels (NaN pixels skipped).
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

import hashlib
import logging
import math
import warnings
from dataclasses import dataclass
from datetime import date, datetime
from enum import IntEnum

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
import xarray as xr
from scipy import ndimage

from rsmon.errors import InputError
from rsmon.provenance import parse_datetime

log = logging.getLogger(__name__)

__all__ = [
    "ChangeClass",
    "Confidence",
    "RedlineColumns",
    "EQUAL_AREA_CRS",
    "INDEX_VARIABLES",
    "PATCH_COLUMNS",
    "empty_patches",
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
# Redline attribute names recognised without being told (compared case-insensitively; bh/mc/gkfq
# are the pinyin abbreviations of 编号/名称/管控分区 used in Chinese redline layers).
_ID_NAMES = ("redline_id", "id", "code", "bh", "bm", "objectid", "fid")
_NAME_NAMES = ("redline_name", "name", "mc", "hxmc", "name_zh", "name_en")
_ZONE_NAMES = ("redline_zone", "zone", "gkfq", "zone_type", "fq")


@dataclass(frozen=True)
class RedlineColumns:
    """Redline attribute names to use; None detects a common name (``id``, ``NAME``, ``zone``...)."""

    id: str | None = None
    name: str | None = None
    zone: str | None = None


def empty_patches(crs) -> gpd.GeoDataFrame:
    """A patch table with no rows and the full schema (:data:`PATCH_COLUMNS`), in ``crs``."""
    data = {name: pd.Series([], dtype=dtype) for name, dtype in PATCH_COLUMNS.items()}
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


# --------------------------------------------------------------------------------------------
# redlines
# --------------------------------------------------------------------------------------------
def _pick_column(gdf: gpd.GeoDataFrame, explicit: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    if explicit is not None:
        if explicit not in gdf.columns:
            raise InputError(f"redlines: no column {explicit!r} for the {what}; columns: {list(gdf.columns)}")
        return explicit
    lower = {str(c).lower(): c for c in gdf.columns if c != gdf.geometry.name}
    return next((lower[c] for c in candidates if c in lower), None)


def _as_text(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # ids read back from shapefiles as 3.0
    return str(value)


def _as_date(value, where: str) -> str | None:
    """``YYYY-MM-DD`` (UTC) from an ISO string, date, datetime or Timestamp (GeoJSON readers
    turn date strings into Timestamps); None for missing values."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return parse_datetime(value if isinstance(value, datetime) else str(value), where).date().isoformat()


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep the polygonal part of each geometry (make_valid/intersection may add lines, points)."""
    out = np.array(geoms, dtype=object)
    types = shapely.get_type_id(out)
    for i in np.flatnonzero(~np.isin(types, (3, 6))):  # not Polygon / MultiPolygon
        parts = shapely.get_parts(out[i])
        polys = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
        out[i] = shapely.union_all(polys) if len(polys) else shapely.Polygon()
    return out


def prepare_redlines(redlines: gpd.GeoDataFrame, crs, columns: RedlineColumns | None = None) -> gpd.GeoDataFrame:
    """Check and repair redline polygons; return ``redline_id``, ``redline_name``, ``redline_zone``.

    Parameters
    ----------
    redlines : GeoDataFrame
        Redline or reserve polygons in any CRS (:func:`rsmon.io.vectors.read_vectors`).
    crs
        The raster CRS the result is reprojected to.
    columns : RedlineColumns, optional
        Attribute names; by default common names are detected. Without an id column the
        1-based row number is the id.

    Raises
    ------
    InputError
        No CRS, a named column is missing, a feature has no id, no geometry or a non-polygon
        geometry, or an invalid geometry that :func:`shapely.make_valid` cannot turn into an area.

    Warns
    -----
    UserWarning
        Listing the ids of the features whose invalid geometries were repaired.
    """
    columns = columns or RedlineColumns()
    if redlines.crs is None:
        raise InputError("redlines: the layer has no CRS; set one (e.g. EPSG:4490 or EPSG:4326)")
    id_col = _pick_column(redlines, columns.id, _ID_NAMES, "redline id")
    name_col = _pick_column(redlines, columns.name, _NAME_NAMES, "redline name")
    zone_col = _pick_column(redlines, columns.zone, _ZONE_NAMES, "redline zone")
    n = len(redlines)
    if id_col is None:
        log.warning("redlines: no id column (tried %s); using row numbers 1..%d", ", ".join(_ID_NAMES), n)
        ids = [str(i + 1) for i in range(n)]
    else:
        ids = [_as_text(v) for v in redlines[id_col]]
        missing = [i for i, v in enumerate(ids) if v is None]
        if missing:
            raise InputError(f"redlines: feature(s) at row(s) {missing[:10]} have no {id_col!r}")
    def text(col):
        return pd.Series([_as_text(v) for v in redlines[col]] if col else [None] * n, dtype=object)

    out = gpd.GeoDataFrame(
        {"redline_id": pd.Series(ids, dtype=object), "redline_name": text(name_col), "redline_zone": text(zone_col)},
        geometry=redlines.geometry.to_crs(crs).to_numpy(),
        crs=crs,
    )
    geoms = out.geometry.to_numpy()
    for i in np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms)):
        raise InputError(f"redlines: feature {ids[i]!r} (row {i}) has no geometry")
    for i in np.flatnonzero(~np.isin(shapely.get_type_id(geoms), (3, 6))):
        raise InputError(f"redlines: feature {ids[i]!r} (row {i}) is a {geoms[i].geom_type}, expected a polygon")
    invalid = np.flatnonzero(~shapely.is_valid(geoms))
    if invalid.size:
        repaired = _polygonal(shapely.make_valid(geoms[invalid]))
        for i, geom in zip(invalid, repaired):
            if geom.is_empty or geom.area <= 0:
                raise InputError(
                    f"redlines: feature {ids[i]!r} (row {i}) has an invalid geometry "
                    f"({shapely.is_valid_reason(geoms[i])}) that cannot be repaired into an area"
                )
        geoms[invalid] = repaired
        out = out.set_geometry(geoms, crs=crs)
        warnings.warn(
            f"redlines: repaired invalid geometries of feature(s) {[ids[i] for i in invalid]}",
            UserWarning, stacklevel=2,
        )
    return out


# --------------------------------------------------------------------------------------------
# raster steps
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
        **{key: _as_text(ds.attrs.get(key)) for key in ("sensor", "before_source", "after_source")},
    }


def _label(change: np.ndarray, classes: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Connected regions of change pixels of one class: labels 1..n and each label's class code."""
    if connectivity not in (4, 8):
        raise InputError(f"connectivity: expected 4 or 8, got {connectivity}")
    structure = ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)
    known = (classes >= ChangeClass.construction) & (classes <= ChangeClass.other)
    codes = np.where(change == 1, np.where(known, classes, np.uint8(ChangeClass.other)), np.uint8(0))
    labels = np.zeros(change.shape, dtype=np.int32)
    label_class = [0]
    for code in np.unique(codes[codes > 0]):
        lab, count = ndimage.label(codes == code, structure=structure)
        inside = lab > 0
        labels[inside] = lab[inside] + len(label_class) - 1
        label_class += [int(code)] * count
    return labels, np.asarray(label_class, dtype=np.int32)


def _vectorise(labels: np.ndarray, transform, connectivity: int) -> np.ndarray:
    """One (Multi)Polygon per label 1..n, from rasterio.features.shapes (GDALPolygonize)."""
    n = int(labels.max())
    values, geoms = [], []
    for geojson, value in rasterio.features.shapes(labels, mask=labels > 0, connectivity=connectivity,
                                                   transform=transform):
        values.append(int(value))
        geoms.append(shapely.geometry.shape(geojson))
    geoms = np.asarray(geoms, dtype=object)
    bad = ~shapely.is_valid(geoms)  # 8-connected diagonal joins give self-touching rings
    geoms[bad] = _polygonal(shapely.make_valid(geoms[bad]))
    out = np.empty(n + 1, dtype=object)
    for value, group in pd.Series(range(len(values))).groupby(np.asarray(values)):
        idx = group.to_numpy()
        out[value] = geoms[idx[0]] if len(idx) == 1 else shapely.union_all(geoms[idx])
    return out


def _zonal(ds: xr.Dataset, label_sets: list[tuple[np.ndarray, int]], names: list[str],
           confidence: np.ndarray) -> list[dict]:
    """Per-label ``n_pixels``, maximum ``confidence`` and means of ``names``, for each ``(labels, n)``.

    One pass of row strips: each strip of the index variables is computed once (one dask graph per
    strip, only the columns holding labels) and only its labelled pixels are accumulated with
    ``np.bincount`` (sum and count of finite values). The first label set must cover the others.
    """
    stats = [{"n_pixels": np.zeros(n + 1, np.int64), "confidence": np.zeros(n + 1, np.int64),
              **{f"sum_{v}": np.zeros(n + 1) for v in names}, **{f"count_{v}": np.zeros(n + 1) for v in names}}
             for _, n in label_sets]
    chunks = ds[names[0]].chunks if names else None
    rows = max(int(chunks[0][0]), 256) if chunks else 512
    first = label_sets[0][0]
    for r0 in range(0, first.shape[0], rows):
        busy = first[r0 : r0 + rows] > 0
        if not busy.any():
            continue
        cols = np.flatnonzero(busy.any(axis=0))
        window = (slice(r0, r0 + rows), slice(int(cols[0]), int(cols[-1]) + 1))
        where = np.flatnonzero(busy[:, window[1]])
        labs = [lab[window].ravel()[where] for lab, _ in label_sets]
        conf = confidence[window].ravel()[where]
        for st, lab in zip(stats, labs):
            st["n_pixels"] += np.bincount(lab, minlength=len(st["n_pixels"]))
            np.maximum.at(st["confidence"], lab, conf)
        if not names:
            continue
        part = ds[names].isel(y=window[0], x=window[1]).compute()
        for v in names:
            values = np.asarray(part[v].values, dtype=np.float64).ravel()[where]
            finite = np.isfinite(values)
            for st, lab in zip(stats, labs):
                st[f"sum_{v}"] += np.bincount(lab[finite], weights=values[finite], minlength=len(st["n_pixels"]))
                st[f"count_{v}"] += np.bincount(lab[finite], minlength=len(st["n_pixels"]))
    for st in stats:
        for v in names:
            total, count = st.pop(f"sum_{v}"), st.pop(f"count_{v}")
            st[v] = np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)
    return stats


# --------------------------------------------------------------------------------------------
# ids
# --------------------------------------------------------------------------------------------
def _confidence_name(code) -> str:
    try:
        return Confidence(int(code)).name
    except ValueError:
        return str(int(code))


def _location_id(redline_id, zone, class_code: int, point, cell_m: float) -> str:
    ix, iy = math.floor(point.x / cell_m), math.floor(point.y / cell_m)
    text = f"{redline_id or ''}|{zone or ''}|{class_code}|{ix}|{iy}"
    return "chg-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _key(redline_id, zone) -> str:
    return f"{_as_text(redline_id) or ''}|{_as_text(zone) or ''}"


def _reconcile(table: gpd.GeoDataFrame, ea_geoms: np.ndarray, previous: gpd.GeoDataFrame,
               match_iou: float) -> tuple[list, list]:
    """Previous ``patch_id``/``first_detected`` for each row of ``table`` (None when unmatched)."""
    if "patch_id" not in previous.columns:
        raise InputError("previous patches: column 'patch_id' is missing")
    if previous.crs is None:
        raise InputError("previous patches: no CRS")
    ids, first = [None] * len(table), [None] * len(table)
    if not len(previous) or not len(table):
        return ids, first
    prev = previous.to_crs(EQUAL_AREA_CRS)
    prev_geoms = _polygonal(shapely.make_valid(prev.geometry.to_numpy()))
    prev_keys = np.asarray([_key(r, z) for r, z in zip(prev.get("redline_id", [None] * len(prev)),
                                                         prev.get("redline_zone", [None] * len(prev)))])
    new_keys = np.asarray([_key(r, z) for r, z in zip(table["redline_id"], table["redline_zone"])])
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
    prev_ids = [_as_text(v) for v in prev["patch_id"]]
    prev_first = [_as_date(v, "previous patches: first_detected") for v in prev["first_detected"]] \
        if "first_detected" in prev else [None] * len(prev)
    for i, j in zip(inew[ok][order], iprev[ok][order]):
        if ids[i] is None and j not in used_prev and prev_ids[j]:
            ids[i], first[i] = prev_ids[j], prev_first[j]
            used_prev.add(j)
    return ids, first


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

    Returns
    -------
    geopandas.GeoDataFrame
        Columns :data:`PATCH_COLUMNS` + ``geometry`` (raster CRS), largest patch first; empty with
        the full schema when nothing changed (inside the redlines).

    Raises
    ------
    InputError
        Missing variables/attributes/CRS, bad parameters or redlines (:func:`prepare_redlines`).
    """
    crs, transform = _georef(ds)
    if not 0.0 < match_iou <= 1.0:
        raise InputError(f"match_iou: expected a fraction in (0, 1], got {match_iou}")
    if not id_cell_m > 0:
        raise InputError(f"id_cell_m: expected a positive length in metres, got {id_cell_m}")
    scene = _scene_attrs(ds)
    zones = prepare_redlines(redlines, crs, redline_columns) if redlines is not None else None
    masks = ds[["change", "change_class", "confidence"]].compute()
    change = np.asarray(masks["change"].values)
    labels, label_class = _label(change, np.asarray(masks["change_class"].values), connectivity)
    n = len(label_class) - 1
    if n == 0:
        log.info("no change pixels: empty patch table")
        return empty_patches(crs)
    confidence = np.asarray(masks["confidence"].values)
    geoms = _vectorise(labels, transform, connectivity)

    # pieces: patches, or patches clipped to redline features
    if zones is None:
        parent = np.arange(1, n + 1)
        piece_geoms = geoms[1:]
        redline = pd.DataFrame({"redline_id": [None] * n, "redline_name": [None] * n, "redline_zone": [None] * n})
        piece_labels = labels
    else:
        ipatch, izone = shapely.STRtree(zones.geometry.to_numpy()).query(geoms[1:], predicate="intersects")
        clipped = _polygonal(shapely.intersection(geoms[1:][ipatch], zones.geometry.to_numpy()[izone]))
        keep = shapely.area(clipped) > 0
        order = np.lexsort((izone[keep], ipatch[keep]))
        parent, izone, piece_geoms = ipatch[keep][order] + 1, izone[keep][order], clipped[keep][order]
        redline = zones.iloc[izone][["redline_id", "redline_name", "redline_zone"]].reset_index(drop=True)
        if not len(piece_geoms):
            log.info("%d change patches, none inside the redlines: empty patch table", n)
            return empty_patches(crs)
        piece_labels = rasterio.features.rasterize(
            zip(piece_geoms, range(1, len(piece_geoms) + 1)), out_shape=labels.shape, transform=transform,
            fill=0, dtype="int32",
        )
        piece_labels[labels == 0] = 0
    n_pieces = len(piece_geoms)
    names = [v for v in INDEX_VARIABLES if v in ds.data_vars]
    if len(names) < len(INDEX_VARIABLES):
        log.warning("change dataset lacks %s: their columns are NaN", sorted(set(INDEX_VARIABLES) - set(names)))
    label_sets = [(labels, n)] if zones is None else [(labels, n), (piece_labels, n_pieces)]
    stats = _zonal(ds, label_sets, names, confidence)
    piece_stats = stats[-1]
    has_px = piece_stats["n_pixels"][1:] > 0  # slivers without a pixel centre use their patch's values
    conf = np.where(has_px, piece_stats["confidence"][1:], stats[0]["confidence"][parent])

    # equal-area measures
    res = max(abs(transform.a), abs(transform.e))
    ea = gpd.GeoSeries(shapely.segmentize(piece_geoms, 100 * res), crs=crs).to_crs(EQUAL_AREA_CRS)
    ea_geoms = ea.to_numpy()
    centroids = ea.centroid
    lonlat = centroids.to_crs("EPSG:4326")
    codes = label_class[parent]
    conf = np.asarray(conf, dtype=np.int64)
    table = gpd.GeoDataFrame(
        {
            "change_class": [ChangeClass(int(c)).name for c in codes],
            "class_code": codes.astype("int32"),
            "confidence": [_confidence_name(c) for c in conf],
            "confidence_code": conf.astype("int32"),
            "area_m2": shapely.area(ea_geoms),
            "n_pixels": piece_stats["n_pixels"][1:].astype("int64"),
            "centroid_lon": lonlat.x.to_numpy(),
            "centroid_lat": lonlat.y.to_numpy(),
            **{k: redline[k].to_numpy(dtype=object) for k in ("redline_id", "redline_name", "redline_zone")},
            **{k: [scene[k]] * n_pieces for k in ("before_date", "after_date")},
            "first_detected": [scene["after_date"]] * n_pieces,
            "last_detected": [scene["after_date"]] * n_pieces,
            **{k: [scene[k]] * n_pieces for k in ("sensor", "before_source", "after_source")},
            **{v: (np.where(has_px, piece_stats[v][1:], stats[0][v][parent]) if v in names else np.full(n_pieces, np.nan))
               for v in INDEX_VARIABLES},
        },
        geometry=piece_geoms,
        crs=crs,
    )

    # stable ids
    if previous is not None:
        matched_ids, matched_first = _reconcile(table, ea_geoms, previous, match_iou)
    else:
        matched_ids, matched_first = [None] * n_pieces, [None] * n_pieces
    taken = {i for i in matched_ids if i}
    if previous is not None and "patch_id" in previous:
        taken |= {_as_text(v) for v in previous["patch_id"] if _as_text(v)}
    ids = list(matched_ids)
    for i in sorted(range(n_pieces), key=lambda i: (-table["area_m2"].iat[i], centroids.x.iat[i], centroids.y.iat[i])):
        if ids[i] is None:
            base = _location_id(table["redline_id"].iat[i], table["redline_zone"].iat[i], int(codes[i]),
                                centroids.iat[i], id_cell_m)
            candidate, k = base, 1
            while candidate in taken:
                k += 1
                candidate = f"{base}-{k}"
            ids[i] = candidate
            taken.add(candidate)
    table.insert(0, "patch_id", ids)
    table["first_detected"] = [min(f, scene["after_date"]) if f else scene["after_date"] for f in matched_first]
    table = table.sort_values(["area_m2", "patch_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    log.info("%d change patches (%d pieces kept), %d matched to previous patches", n, n_pieces,
             sum(1 for i in matched_ids if i))
    table = table[[*PATCH_COLUMNS, "geometry"]].astype({k: v for k, v in PATCH_COLUMNS.items() if v != "object"})
    for col in (k for k, v in PATCH_COLUMNS.items() if v == "object"):
        # object text with None for missing, also under pandas 3 (whose default str dtype holds NaN)
        table[col] = pd.Series([_as_text(v) for v in table[col]], index=table.index, dtype=object)
    return table
