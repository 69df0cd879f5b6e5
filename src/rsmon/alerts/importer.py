"""Import alert files (GeoPackage/GeoJSON as written by ``rsmon redline detect``) into a store.

Columns are taken by the patch table's names (:data:`rsmon.products.patches.PATCH_COLUMNS`), with
a few aliases for files from elsewhere. The minimal file has ``class`` (or ``change_class``),
``confidence`` (low/high/highest or 1-3), ``redline_id`` and ``first_detected`` (a date) and a
geometry in any CRS (reprojected to EPSG:4326). Missing pieces are derived:

* ``id``: the ``patch_id``/``alert_id``/``id`` column, else ``alr-`` + 16 hex digits of SHA-1
  over redline id, class, first detection date and the geometry (WKB, 7 decimals), so importing
  the same file again finds the same alerts;
* ``area_m2`` (equal-area EPSG:6933, as the patch table), ``centroid_lon``/``centroid_lat``,
  ``last_detected`` (= ``first_detected``), ``class_code`` and ``confidence_code``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from rsmon.alerts.schema import DETECTION_FIELDS, AlertInput, make_input
from rsmon.alerts.store import AlertStore, UpsertResult
from rsmon.errors import InputError, NoDataError
from rsmon.io.vectors import read_vectors
from rsmon.products.patches import EQUAL_AREA_CRS

log = logging.getLogger(__name__)

__all__ = ["import_alerts", "read_alert_file"]

_ID_COLUMNS = ("patch_id", "alert_id", "id")
_ALIASES = {"class": ("class", "change_class"), "confidence": ("confidence",),
            "first_detected": ("first_detected",), "redline_id": ("redline_id",)}


def _column(gdf: gpd.GeoDataFrame, names) -> str | None:
    lower = {str(c).lower(): c for c in gdf.columns if c != gdf.geometry.name}
    return next((lower[n] for n in names if n in lower), None)


def _derived_id(props: dict, geom) -> str:
    digest = hashlib.sha1()
    for part in (props.get("redline_id"), props.get("class"), props.get("first_detected")):
        digest.update(str(part).encode("utf-8") + b"\0")
    digest.update(shapely.to_wkb(geom, byte_order=1))
    return "alr-" + digest.hexdigest()[:16]


def read_alert_file(path: str | os.PathLike, *, layer: str | None = None) -> list[AlertInput]:
    """Alerts of one vector file, validated (:func:`rsmon.alerts.schema.make_input`).

    Raises
    ------
    FormatError
        The file cannot be read as vector data.
    InputError
        A required column is missing, a row is invalid (the message names the file and row), or
        an explicit id occurs twice.
    """
    gdf = read_vectors(path, layer=layer)
    missing = [what for what, names in _ALIASES.items() if what != "confidence" and _column(gdf, names) is None]
    if _column(gdf, ("confidence", "confidence_code")) is None:
        missing.append("confidence")
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (an alert needs class, confidence, "
                         f"redline_id, first_detected); columns: {[c for c in gdf.columns if c != gdf.geometry.name]}")
    if len(gdf) and not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs("EPSG:4326")
    id_col = _column(gdf, _ID_COLUMNS)
    renames = {_column(gdf, names): what for what, names in _ALIASES.items() if _column(gdf, names) is not None}
    for name in DETECTION_FIELDS:
        col = _column(gdf, (name,))
        if col is not None and col not in renames:
            renames[col] = name
    geoms = gdf.geometry.values
    needs_area = "area_m2" not in renames.values() or "centroid_lon" not in renames.values()
    if needs_area and len(gdf):
        ea = gpd.GeoSeries(geoms, crs="EPSG:4326").to_crs(EQUAL_AREA_CRS)
        areas = ea.area.to_numpy()
        centroids = ea.centroid.to_crs("EPSG:4326")
    records = gdf.drop(columns=gdf.geometry.name).rename(columns=renames)
    out: dict[str, AlertInput] = {}
    for i, (row, geom) in enumerate(zip(records.to_dict("records"), geoms)):
        props = {name: (None if _missing(row.get(name)) else row.get(name)) for name in DETECTION_FIELDS}
        if needs_area:
            props["area_m2"] = props["area_m2"] if props["area_m2"] is not None else float(areas[i])
            if props["centroid_lon"] is None:
                props["centroid_lon"], props["centroid_lat"] = float(centroids.x.iloc[i]), float(centroids.y.iloc[i])
        raw_id = row.get(id_col) if id_col is not None else None
        try:
            if _missing(raw_id):
                first = make_input("pending", geom, props)  # validate first, then derive the id
                alert = AlertInput(_derived_id(first.properties, first.geometry), first.geometry, first.properties)
            else:
                alert = make_input(str(raw_id), geom, props)
                if alert.id in out:
                    raise InputError(f"alert {alert.id}: the id occurs twice in the file")
        except InputError as exc:
            raise InputError(f"{path}: row {i + 1}: {exc}") from None
        out[alert.id] = alert
    return list(out.values())


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def import_alerts(store: AlertStore, path: str | os.PathLike, *, actor: str | None = None,
                  layer: str | None = None) -> UpsertResult:
    """Read ``path`` and upsert its alerts (idempotent; statuses are never overwritten).

    ``actor`` (default ``import:<file name>``) is recorded in the audit log.

    Raises
    ------
    FormatError, InputError
        As :func:`read_alert_file`.
    NoDataError
        The file has no features.
    """
    alerts = read_alert_file(path, layer=layer)
    if not alerts:
        raise NoDataError(f"{path}: no features to import")
    result = store.upsert(alerts, actor=actor or f"import:{Path(path).name}")
    log.info("%s: %s", path, result.summary())
    return result

