"""What an alert is: its properties, the record an import hands to the store, and its GeoJSON.

An alert is a change patch of ``rsmon redline detect`` (one row of its ``patches.gpkg``/``.geojson``)
as the supervision platform sees it: a stable id, a geometry in EPSG:4326, the detection properties
(:data:`DETECTION_FIELDS`), the interpreters' status with who, when and why, and bookkeeping
(``created_at``, ``updated_at``, ``version``). Column names follow the patch table
(:data:`rsmon.products.patches.PATCH_COLUMNS`) except ``class`` (the patch table's
``change_class``), the name the issue and the API filter use.

Stores cache each alert's GeoJSON Feature as text (:func:`feature_json`), written when the alert
changes, so that serving a page is string concatenation rather than JSON encoding.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import shapely

from rsmon.errors import InputError
from rsmon.products.patches import INDEX_VARIABLES, ChangeClass, Confidence

#: Alert classes (the patch table's ``change_class`` names), in code order.
CLASSES: tuple[str, ...] = tuple(c.name for c in ChangeClass if c.value > 0)
#: Confidence names -> codes (GFW integrated-alert levels: low, high, highest).
CONFIDENCE_CODES: dict[str, int] = {c.name: int(c.value) for c in Confidence if c.value > 0}

#: Detection properties and their kinds: ``text``, ``int``, ``real`` or ``date`` (``YYYY-MM-DD``).
#: An import overwrites these on re-detection; it never touches :data:`STATUS_FIELDS`.
DETECTION_FIELDS: dict[str, str] = {
    "class": "text",
    "class_code": "int",
    "confidence": "text",
    "confidence_code": "int",
    "area_m2": "real",
    "n_pixels": "int",
    "centroid_lon": "real",
    "centroid_lat": "real",
    "redline_id": "text",
    "redline_name": "text",
    "redline_zone": "text",
    "first_detected": "date",
    "last_detected": "date",
    "before_date": "date",
    "after_date": "date",
    "sensor": "text",
    "before_source": "text",
    "after_source": "text",
    **{name: "real" for name in INDEX_VARIABLES},
}
#: Status properties, set only through the lifecycle (PATCH), never by an import.
STATUS_FIELDS: dict[str, str] = {"status": "text", "status_by": "text", "status_at": "text", "status_reason": "text"}
#: Bookkeeping properties set by the store.
META_FIELDS: dict[str, str] = {"created_at": "text", "updated_at": "text", "version": "int"}
#: Every property of a served alert, in output order.
PROPERTY_FIELDS: dict[str, str] = {**DETECTION_FIELDS, **STATUS_FIELDS, **META_FIELDS}

#: Stable ids: letters, digits and ``._:-``, at most 128 characters (URL-safe without escaping).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

_EPOCH = date(1970, 1, 1)


def utc_now() -> str:
    """Current UTC time as RFC 3339 text with microseconds (``2024-05-01T08:00:00.123456Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def day_number(iso_date: str) -> int:
    """Days since 1970-01-01 of a ``YYYY-MM-DD`` date (the store's time index)."""
    return (date.fromisoformat(iso_date) - _EPOCH).days


@dataclass(frozen=True)
class AlertInput:
    """One alert as an import hands it to the store (detection properties only).

    ``geometry`` is a shapely geometry in EPSG:4326; ``properties`` holds :data:`DETECTION_FIELDS`
    (missing ones are None). Build it with :func:`make_input`, which validates and normalises.
    """

    id: str
    geometry: Any
    properties: dict[str, Any]


@dataclass(frozen=True)
class Alert:
    """One stored alert: its id, version, the store's change sequence number and its GeoJSON Feature."""

    id: str
    version: int
    seq: int
    feature_text: str = field(repr=False)

    @property
    def feature(self) -> dict:
        return json.loads(self.feature_text)

    @property
    def properties(self) -> dict:
        return self.feature["properties"]

    @property
    def status(self) -> str:
        return self.properties["status"]


def _clean(value, kind: str, name: str, alert_id: str):
    """A property value as its kind's plain Python type; NaN and empty text become None."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        if kind == "text":
            text = str(value).strip()
            return text or None
        if kind == "int":
            if isinstance(value, str) and not value.strip():
                return None
            number = float(value)
            if math.isnan(number):
                return None
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind == "real":
            if isinstance(value, str) and not value.strip():
                return None
            number = float(value)
            return None if not math.isfinite(number) else number
        if kind == "date":
            return as_iso_date(value)
    except (TypeError, ValueError):
        raise InputError(f"alert {alert_id}: {name}: expected {kind}, got {value!r}") from None
    raise AssertionError(kind)  # pragma: no cover


def as_iso_date(value) -> str | None:
    """``YYYY-MM-DD`` from a date, datetime, pandas Timestamp or ISO text; None for missing.

    Raises
    ------
    ValueError
        Text that is not an ISO 8601 date or date-time.
    """
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp (GDAL reads date columns as dates)
        if value != value:  # NaT
            return None
        value = value.to_pydatetime()
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        value = value.astype("datetime64[D]").item()
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    if not text:
        return None
    if len(text) == 10:
        return date.fromisoformat(text).isoformat()
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return as_iso_date(parsed)


def normalise_geometry(geom, alert_id: str):
    """A valid geometry with coordinates rounded to 7 decimals (about 1 cm, RFC 7946's advice),
    polygons as MultiPolygon with counter-clockwise exterior rings.

    Raises
    ------
    InputError
        Missing or empty geometry, or a type other than (Multi)Polygon or Point.
    """
    if geom is None or shapely.is_empty(geom):
        raise InputError(f"alert {alert_id}: geometry is missing or empty")
    if geom.geom_type not in ("Polygon", "MultiPolygon", "Point", "MultiPoint"):
        raise InputError(f"alert {alert_id}: geometry must be a (Multi)Polygon or Point, got {geom.geom_type}")
    geom = shapely.transform(geom, lambda xy: np.round(xy, 7))
    if not shapely.is_valid(geom):
        fixed = shapely.make_valid(geom)
        polys = [g for g in shapely.get_parts(fixed) if g.geom_type in ("Polygon", "MultiPolygon")]
        geom = shapely.multipolygons(polys) if polys else fixed
    geom = shapely.orient_polygons(geom)  # RFC 7946: exterior rings counter-clockwise
    if geom.geom_type == "Polygon":  # one geometry type for the layer, as the patch files have
        geom = shapely.MultiPolygon([geom])
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise InputError(f"alert {alert_id}: coordinates outside lon [-180, 180] / lat [-90, 90] "
                         f"(bounds {geom.bounds}); is the layer really in EPSG:4326?")
    return geom


def make_input(alert_id: str, geometry, properties: dict[str, Any]) -> AlertInput:
    """Validate and normalise one alert for :meth:`AlertStore.upsert`.

    Required: ``class`` (one of :data:`CLASSES`), ``confidence`` (name or code),
    ``first_detected``. Derived when absent: ``class_code``, ``confidence_code``,
    ``last_detected`` (= ``first_detected``). ``area_m2`` and centroids are the importer's job.

    Raises
    ------
    InputError
        An invalid id, class, confidence, date or geometry (the message names the alert).
    """
    import re

    if not isinstance(alert_id, str) or not re.match(ID_PATTERN, alert_id):
        raise InputError(f"alert id {alert_id!r}: expected 1-128 letters, digits or ._:- "
                         "(starting with a letter or digit)")
    props = {name: _clean(properties.get(name), kind, name, alert_id) for name, kind in DETECTION_FIELDS.items()}
    cls = props["class"]
    if cls not in CLASSES:
        raise InputError(f"alert {alert_id}: class must be one of {', '.join(CLASSES)}, got {cls!r}")
    props["class_code"] = int(ChangeClass[cls])
    conf = props["confidence"]
    if conf is None and props["confidence_code"] is not None:
        conf = next((n for n, c in CONFIDENCE_CODES.items() if c == props["confidence_code"]), None)
    if conf is not None and conf.isdigit():
        conf = next((n for n, c in CONFIDENCE_CODES.items() if c == int(conf)), conf)
    if conf not in CONFIDENCE_CODES:
        raise InputError(f"alert {alert_id}: confidence must be one of {', '.join(CONFIDENCE_CODES)} "
                         f"(or 1-3), got {properties.get('confidence', properties.get('confidence_code'))!r}")
    props["confidence"], props["confidence_code"] = conf, CONFIDENCE_CODES[conf]
    if props["first_detected"] is None:
        raise InputError(f"alert {alert_id}: first_detected (date) is required")
    if props["last_detected"] is None:
        props["last_detected"] = props["first_detected"]
    if props["last_detected"] < props["first_detected"]:
        raise InputError(f"alert {alert_id}: last_detected {props['last_detected']} is before "
                         f"first_detected {props['first_detected']}")
    return AlertInput(alert_id, normalise_geometry(geometry, alert_id), props)


def geometry_json(geom) -> str:
    """Compact GeoJSON text of a (rounded) shapely geometry."""
    return json.dumps(shapely.geometry.mapping(geom), separators=(",", ":"))


def feature_json(alert_id: str, properties: dict[str, Any], geometry_text: str) -> str:
    """The cached GeoJSON Feature text: ``id``, ``geometry`` (EPSG:4326) and :data:`PROPERTY_FIELDS`."""
    props = {name: properties.get(name) for name in PROPERTY_FIELDS}
    return ('{"type":"Feature","id":' + json.dumps(alert_id) + ',"geometry":' + geometry_text
            + ',"properties":' + json.dumps(props, separators=(",", ":"), allow_nan=False) + "}")
