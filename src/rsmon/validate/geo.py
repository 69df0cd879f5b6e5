"""Geometry and time helpers of collocation: great-circle distances, point-in-polygon, overpass times.

Distances are haversine on a sphere of the WGS84 mean radius :data:`EARTH_MEAN_RADIUS_KM`; the nominal
overpass of a sun-synchronous sensor is at a fixed local solar time, UTC + lon / 15 h (conventions in
:mod:`rsmon.validate.collocate`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from rsmon.errors import InputError

__all__ = [
    "EARTH_MEAN_RADIUS_KM",
    "EDGE_RULE",
    "box_distance_km",
    "haversine_km",
    "nominal_overpass_utc",
    "point_in_quads",
]

#: WGS84 mean Earth radius (2a + b) / 3, km.
EARTH_MEAN_RADIUS_KM = 6371.0088

_HOUR_NS = 3_600_000_000_000
_DAY_NS = 24 * _HOUR_NS
_MIN_NS = 60_000_000_000

#: How the shared-edge tie is broken (recorded in ``attrs``).
EDGE_RULE = ("a point on a shared edge belongs to the pixel/cell east of a north-south edge and south of "
             "an east-west edge (GDAL's pixel convention: a cell owns its west and north edges)")


def haversine_km(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Great-circle distance on the sphere of radius :data:`EARTH_MEAN_RADIUS_KM`, km.

    Parameters
    ----------
    lon1, lat1, lon2, lat2 : array_like
        Degrees; broadcast against each other. Any longitude convention.
    """
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lon1, lat1, lon2, lat2))
    hav = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2.0 * EARTH_MEAN_RADIUS_KM * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))


def box_distance_km(lon, lat, box: Sequence[float]) -> np.ndarray:
    """Distance from points to the nearest point of a lon/lat box, km (0 inside the box).

    The nearest point is taken as the point clamped into the box (longitude, then latitude), and the
    distance is the haversine to it. On the sphere the true nearest point of a meridian edge lies
    slightly poleward of the clamped one; for boxes of a few degrees the difference is well below 1 %.

    Parameters
    ----------
    lon, lat : array_like
        Degrees (any longitude convention).
    box : (W, S, E, N)
        Degrees; a box across the antimeridian is written with E > 180.
    """
    west, south, east, north = (float(v) for v in box)
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    rel = np.mod(lon - west, 360.0)  # 0..360 east of the west edge
    inside_lon = rel <= (east - west)
    clat = np.clip(lat, south, north)
    d_west = haversine_km(lon, lat, west, clat)
    d_east = haversine_km(lon, lat, east, clat)
    d_in = haversine_km(lon, lat, lon, clat)
    return np.where(inside_lon, d_in, np.minimum(d_west, d_east))


def _parse_clock(text: str, name: str) -> int:
    """``"13:30"`` / ``"13:30:15"`` -> nanoseconds after midnight."""
    try:
        parts = [int(p) for p in str(text).strip().split(":")]
        if not 2 <= len(parts) <= 3:
            raise ValueError
        h, m, s = (parts + [0])[:3]
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
            raise ValueError
    except ValueError:
        raise InputError(f"{name}: expected a local solar time HH:MM, got {text!r}") from None
    return ((h * 60 + m) * 60 + s) * 1_000_000_000


def nominal_overpass_utc(day, lon: float, local_solar: str = "13:30") -> pd.Timestamp:
    """UTC time at which a sun-synchronous sensor passes ``lon`` at ``local_solar`` local solar time.

    Local solar time = UTC + lon / 15 h (mean solar time; the equation of time, up to +-16 min, is
    ignored as in atmos.md 5.2), so the overpass on the local solar day ``day`` is
    ``day 00:00 + local_solar - lon / 15 h`` in UTC.

    Parameters
    ----------
    day : date, str or Timestamp
        The local solar day.
    lon : float
        Station longitude, degrees east (-180..180).
    local_solar : str
        ``"HH:MM"``, e.g. ``"13:30"`` (TROPOMI ascending node) or ``"13:45"`` (OMI).

    Returns
    -------
    pandas.Timestamp
        UTC (tz-aware).

    Examples
    --------
    >>> str(nominal_overpass_utc("2019-06-12", 116.4))
    '2019-06-12 05:44:24+00:00'
    """
    clock = _parse_clock(local_solar, "overpass_local_solar")
    day_ts = pd.Timestamp(day)
    day_ts = day_ts.tz_localize("UTC") if day_ts.tzinfo is None else day_ts.tz_convert("UTC")
    return day_ts.normalize() + pd.Timedelta(clock - _lon_offset_ns(lon), "ns")


def _lon_offset_ns(lon) -> np.ndarray | int:
    """Local solar time minus UTC, ns (lon / 15 h), lon wrapped to -180..180."""
    lon = (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0
    out = np.round(lon / 15.0 * _HOUR_NS).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def point_in_quads(px: float, py: float, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """Which planar quadrilaterals (or any polygons) contain the point ``(px, py)``.

    Crossing-number test with the half-open rule ``(y_i >= py) != (y_j >= py)`` and ``px < x_cross``:
    every point of the plane tiled by the polygons belongs to exactly one of them, a point on a shared
    north-south edge to the polygon east of it, on a shared east-west edge to the one south of it, on a
    shared corner to the south-east one (GDAL's pixel convention, the same as :func:`collocate_grid`).

    Parameters
    ----------
    px, py : float
        The point (lon, lat degrees).
    qx, qy : numpy.ndarray
        Corner coordinates, shape (n, k), corners in order around the polygon (either direction).
        Longitudes must already lie within 180 degrees of ``px`` (see :func:`collocate_swath`).

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
    """
    qx = np.asarray(qx, dtype=np.float64)
    qy = np.asarray(qy, dtype=np.float64)
    inside = np.zeros(qx.shape[0], dtype=bool)
    k = qx.shape[1]
    for a in range(k):
        b = (a + 1) % k
        xa, ya, xb, yb = qx[:, a], qy[:, a], qx[:, b], qy[:, b]
        straddles = (ya >= py) != (yb >= py)
        dy = np.where(straddles, yb - ya, 1.0)
        x_cross = xa + (py - ya) * (xb - xa) / dy
        inside ^= straddles & (px < x_cross)
    return inside


def _unit_vectors(lon, lat) -> np.ndarray:
    lon = np.radians(np.asarray(lon, dtype=np.float64))
    lat = np.radians(np.asarray(lat, dtype=np.float64))
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def _overpass_windows(start_ns: np.ndarray, end_ns: np.ndarray, lon: float, clock_ns: int, half_ns: int,
                      local_basis: bool):
    """Overpass windows ``[ov - half, ov + half]`` of the days in each ``[start, end)`` (ns UTC).

    ``ov`` = day + clock - lon/15 h for each local solar day; with ``local_basis`` the days are local
    solar days falling in ``[start, end)`` read as local solar time, otherwise the overpasses falling
    in ``[start, end)`` UTC (for a UTC-day product: the overpass of that UTC day).
    Returns ``(a, b, index of the [start, end) pair)``.
    """
    offset = _lon_offset_ns(lon)
    # the [start, end) windows as local solar time
    lo = start_ns + (0 if local_basis else offset)
    hi = end_ns + (0 if local_basis else offset)
    span = int(np.max(hi - lo)) if lo.size else 0
    n_days = span // _DAY_NS + 3
    day0 = (np.floor_divide(lo, _DAY_NS) - 1) * _DAY_NS
    days = day0[:, None] + np.arange(n_days)[None, :] * _DAY_NS      # local solar midnights
    ov_local = days + clock_ns
    ov_utc = ov_local - offset
    ok = (ov_local >= lo[:, None]) & (ov_local < hi[:, None])
    rows = np.broadcast_to(np.arange(lo.size)[:, None], ok.shape)[ok]
    ov = ov_utc[ok]
    return ov - half_ns, ov + half_ns, rows
