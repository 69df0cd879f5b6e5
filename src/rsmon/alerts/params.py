"""Strict parsing of the query parameters of ``/collections/alerts/items`` (OGC API - Features Part 1).

Every function raises :class:`rsmon.errors.InputError` naming the parameter and what was expected;
the API turns that into HTTP 400 (OGC /req/core/query-param-invalid).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone

from rsmon.alerts.lifecycle import Status
from rsmon.alerts.schema import CLASSES, CONFIDENCE_CODES, day_number
from rsmon.errors import InputError

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_LIST_ITEM = re.compile(r"^[^\s,]{1,128}$")
MAX_LIST = 100


def parse_limit(text: str | None, maximum: int, default: int = 10) -> int:
    """``limit``: an integer 1..``maximum`` (``default`` when absent)."""
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise InputError(f"limit: expected an integer from 1 to {maximum}, got {text!r}")
    return int(text)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``minx,miny,maxx,maxy`` (or with ``minz``/``maxz``: 6 numbers) in CRS84 degrees.

    ``minx > maxx`` is a box across the antimeridian (OGC allows it); heights are ignored.
    """
    parts = text.split(",")
    if len(parts) not in (4, 6) or not all(_NUMBER.match(p.strip()) for p in parts):
        raise InputError(f"bbox: expected 4 or 6 comma-separated numbers (minx,miny,maxx,maxy), got {text!r}")
    values = [float(p) for p in parts]
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"bbox: numbers must be finite, got {text!r}")
    if len(values) == 6:
        minx, miny, minz, maxx, maxy, maxz = values
        if minz > maxz:
            raise InputError(f"bbox: minz {minz:g} > maxz {maxz:g}")
    else:
        minx, miny, maxx, maxy = values
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180):
        raise InputError(f"bbox: longitudes must lie in [-180, 180], got {minx:g}, {maxx:g}")
    if not (-90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InputError(f"bbox: latitudes must lie in [-90, 90], got {miny:g}, {maxy:g}")
    if miny > maxy:
        raise InputError(f"bbox: miny {miny:g} > maxy {maxy:g}")
    return minx, miny, maxx, maxy


def _instant_day(text: str, param: str) -> int:
    try:
        if _DATE.match(text):
            return day_number(date.fromisoformat(text).isoformat())
        if _DATETIME.match(text):
            parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
            return day_number(parsed.astimezone(timezone.utc).date().isoformat())
    except ValueError:
        pass
    raise InputError(f"{param}: expected an RFC 3339 date (2024-05-01) or date-time with offset "
                     f"(2024-05-01T08:00:00Z), got {text!r}")


def parse_datetime(text: str, param: str = "datetime") -> tuple[int | None, int | None]:
    """An instant or interval as an inclusive range of day numbers (None = open end).

    ``2024-05-01``, ``2024-05-01T08:00:00Z``, ``2024-05-01/2024-05-31``, ``../2024-05-31``,
    ``2024-05-01/..`` (an empty end is open too). Alerts are dated by day (UTC), so an instant
    selects the alerts whose detection period contains its UTC day.
    """
    text = text.strip()
    if "/" not in text:
        day = _instant_day(text, param)
        return day, day
    start_text, _, end_text = text.partition("/")
    if "/" in end_text:
        raise InputError(f"{param}: expected START/END, got {text!r}")
    start = None if start_text in ("", "..") else _instant_day(start_text, param)
    end = None if end_text in ("", "..") else _instant_day(end_text, param)
    if start is None and end is None:
        raise InputError(f"{param}: an interval needs at least one bound, got {text!r}")
    if start is not None and end is not None and start > end:
        raise InputError(f"{param}: the interval ends before it starts ({text!r})")
    return start, end


def parse_list(text: str, param: str, allowed: tuple[str, ...] | None = None) -> frozenset[str]:
    """A comma-separated list (at most :data:`MAX_LIST` items), checked against ``allowed``."""
    items = [p.strip() for p in text.split(",")]
    if not items or len(items) > MAX_LIST or any(not _LIST_ITEM.match(i) for i in items):
        raise InputError(f"{param}: expected 1-{MAX_LIST} comma-separated values without spaces, got {text!r}")
    if allowed is not None:
        bad = [i for i in items if i not in allowed]
        if bad:
            raise InputError(f"{param}: unknown value(s) {', '.join(bad)}; expected some of {', '.join(allowed)}")
    return frozenset(items)


def parse_classes(text: str) -> frozenset[str]:
    return parse_list(text, "class", CLASSES)


def parse_statuses(text: str) -> frozenset[str]:
    return parse_list(text, "status", tuple(s.value for s in Status))


def parse_min_confidence(text: str) -> int:
    """``low``/``high``/``highest`` or ``1``-``3`` as a confidence code."""
    if text in CONFIDENCE_CODES:
        return CONFIDENCE_CODES[text]
    if text in ("1", "2", "3"):
        return int(text)
    raise InputError(f"min_confidence: expected low, high, highest or 1-3, got {text!r}")
