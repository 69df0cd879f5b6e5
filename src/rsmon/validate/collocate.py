"""Collocation of satellite products with ground stations: L2 swaths, L3 grids and area-average series.

All three functions take a Station table and return a Matchup table (contracts in
:mod:`rsmon.validate`), one row per station and satellite time, with the parameters in ``df.attrs``.

Conventions shared by the three modes
-------------------------------------
* **Distances** are great-circle (haversine) on a sphere of the WGS84 mean radius
  :data:`EARTH_MEAN_RADIUS_KM` = 6371.0088 km.
* **Stations.** The Station table is filtered to one ``variable``; all its rows must share one unit
  (else :class:`~rsmon.errors.InputError` naming the units found). Stations without ``lon``/``lat``
  are skipped with a warning and listed in ``attrs["stations_without_coordinates"]``; if none has
  them (or the column is absent) that is an InputError naming the column. NaN values are ignored.
* **Ground values in a time window** ``[a, b]``: a station value representing the interval
  ``[time_start, time_end)`` is taken when the two overlap by more than an instant
  (``time_start < b`` and ``time_end > a``); an instantaneous value (``time_start == time_end``)
  is taken when ``a <= time <= b``. So an hour-ending value labelled 14:00 ([13:00, 14:00)) is in the
  window 13:40-14:10 and in 13:00-14:00, but not in 14:00-15:00.
* **Hour-ending values** (CNEMC convention, ``shared/reference/atmos.md`` section 5.2): the value
  labelled ``h`` is the mean of ``[h-1, h)`` Beijing time. The NO2 rules (``"bracket_hours"``, and
  ``"window"``/``"overpass_window"`` with hourly stations) therefore pick, for a 13:30-14:30 overpass
  window, the values labelled 14:00 and 15:00, as atmos.md 5.2 prescribes.
* **Nominal overpass** of a sun-synchronous sensor at a station: ``overpass_local_solar`` local solar
  time, where local solar time = UTC + lon / 15 h (:func:`nominal_overpass_utc`). TROPOMI crosses at
  ~13:30 (Veefkind et al. 2012), OMI at ~13:45; at 116.4E 13:30 LST is 05:44 UTC (13:44 Beijing time),
  at 87.6E 07:40 UTC (15:40 Beijing time): atmos.md 5.2.
* **Statistics.** ``*_mean`` is the plain mean, ``*_std`` the sample standard deviation (ddof = 1;
  NaN when ``*_n`` < 2), ``*_n`` the number of values. Rows with ``sat_n`` below the minimum number of
  pixels/cells or ``ground_n`` below ``min_ground`` are dropped; when nothing is left a
  :class:`~rsmon.errors.NoDataError` names the product and the stations.

References
----------
``shared/reference/atmos.md``: section 4.2 (AOD: ground within +-30 min, satellite within 25 km,
mean of each set), section 5.1 (the TROPOMI pixel *containing* the station, Verhoelst et al., AMT 14,
481, 2021), section 5.2 (CNEMC: ``qa_value > 0.75``, containing pixel or a <= 5-10 km average,
per-pixel overpass time, hour-ending values bracketing the overpass).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from rsmon.errors import FormatError, InputError, NoDataError

log = logging.getLogger(__name__)

__all__ = [
    "EARTH_MEAN_RADIUS_KM",
    "MATCHUP_COLUMNS",
    "box_distance_km",
    "collocate_grid",
    "collocate_series",
    "collocate_swath",
    "haversine_km",
    "nominal_overpass_utc",
    "point_in_quads",
]

#: WGS84 mean Earth radius (2a + b) / 3, km.
EARTH_MEAN_RADIUS_KM = 6371.0088

#: Columns of the Matchup table, in order (contract in :mod:`rsmon.validate`).
MATCHUP_COLUMNS = ("station_id", "station_name", "lon", "lat", "time", "sat_mean", "sat_std", "sat_n",
                   "ground_mean", "ground_std", "ground_n", "distance_km", "product")

#: Station-table columns collocation needs (``station_name`` and ``source`` are optional).
STATION_COLUMNS = ("station_id", "lon", "lat", "time_start", "time_end", "variable", "value", "units")

_HOUR_NS = 3_600_000_000_000
_DAY_NS = 24 * _HOUR_NS
_MIN_NS = 60_000_000_000

#: How the shared-edge tie is broken (recorded in ``attrs``).
EDGE_RULE = ("a point on a shared edge belongs to the pixel/cell east of a north-south edge and south of "
             "an east-west edge (GDAL's pixel convention: a cell owns its west and north edges)")


# --------------------------------------------------------------------------------------------------
# Geometry and time helpers (public: the tests and other modules use them)
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Stations
# --------------------------------------------------------------------------------------------------

@dataclass
class _Stations:
    """One variable of a Station table, grouped by station, times as int64 ns UTC."""

    variable: str
    units: str
    ids: np.ndarray          # (S,) str
    names: np.ndarray        # (S,) str
    lon: np.ndarray          # (S,) float64
    lat: np.ndarray          # (S,) float64
    offsets: np.ndarray      # (S + 1,) slices into the per-value arrays
    t0: np.ndarray           # value interval starts, ns, sorted within a station
    t1: np.ndarray           # value interval ends, ns
    values: np.ndarray
    sources: list[str]
    unlocated: list[str]     # station ids skipped for lack of lon/lat

    @property
    def label(self) -> str:
        files = ", ".join(self.sources[:3]) + (f" (+{len(self.sources) - 3} more)" if len(self.sources) > 3 else "")
        return f"stations {files or '(table)'} variable {self.variable!r}"

    def window_sums(self, s: int, a: np.ndarray, b: np.ndarray, hour_ending: bool = False):
        """Per window ``[a, b]`` (ns) of station ``s``: count, sum and sum of squares of deviations.

        Returns ``(n, sum_dev, sumsq_dev, shift)``: deviations from ``shift`` (the station's mean),
        which keeps the variance free of cancellation.
        """
        lo, hi = self.offsets[s], self.offsets[s + 1]
        t0, t1, v = self.t0[lo:hi], self.t1[lo:hi], self.values[lo:hi]
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if v.size == 0:
            z = np.zeros(a.shape)
            return z.astype(np.int64), z, z, 0.0
        if hour_ending:
            t0 = np.where(t0 == t1, t1 - _HOUR_NS, t0)
            order = np.argsort(t0, kind="stable")
            t0, t1, v = t0[order], t1[order], v[order]
        shift = float(np.mean(v))
        dev = v - shift
        durations = np.unique(t1 - t0)
        if durations.size == 1:
            cs = np.concatenate([[0.0], np.cumsum(dev)])
            css = np.concatenate([[0.0], np.cumsum(dev * dev)])
            d = int(durations[0])
            if d == 0:   # instants: a <= t <= b
                i0 = np.searchsorted(t0, a, side="left")
                i1 = np.searchsorted(t0, b, side="right")
            else:        # intervals: t0 < b and t0 + d > a
                i0 = np.searchsorted(t0, a - d, side="right")
                i1 = np.searchsorted(t0, b, side="left")
            i1 = np.maximum(i1, i0)
            return (i1 - i0).astype(np.int64), cs[i1] - cs[i0], css[i1] - css[i0], shift
        # mixed durations (rare): one mask per window
        n = np.zeros(a.shape, dtype=np.int64)
        s1 = np.zeros(a.shape)
        s2 = np.zeros(a.shape)
        instant = t0 == t1
        for k in range(a.size):
            sel = np.where(instant, (t0 >= a[k]) & (t0 <= b[k]), (t0 < b[k]) & (t1 > a[k]))
            n[k] = sel.sum()
            s1[k] = dev[sel].sum()
            s2[k] = (dev[sel] ** 2).sum()
        return n, s1, s2, shift

    def check_hourly(self) -> None:
        """Raise unless every value is an hour-ending hour or an instant at the hour label."""
        dur = np.unique(self.t1 - self.t0)
        bad = [int(d) for d in dur if d not in (0, _HOUR_NS)]
        if bad:
            found = ", ".join(str(pd.Timedelta(d, "ns")) for d in bad[:3])
            raise InputError(
                f"ground_rule 'bracket_hours': {self.label} holds values of duration {found}; the rule "
                "needs hour-ending hourly values (interval of 1 h, or an instant at the hour label)"
            )


def _prepare_stations(stations: pd.DataFrame, variable: str | None) -> _Stations:
    if not isinstance(stations, pd.DataFrame):
        raise InputError(f"stations: expected a Station table (pandas DataFrame), got {type(stations).__name__}")
    missing = [c for c in STATION_COLUMNS if c not in stations.columns]
    if missing:
        raise InputError(f"stations: column {missing[0]!r} is missing (collocation needs the Station table "
                         f"columns {', '.join(STATION_COLUMNS)}; missing: {missing})")
    found = sorted({str(v) for v in stations["variable"].dropna().unique()})
    if variable is None:
        if len(found) != 1:
            raise InputError(f"variable: the stations hold {found or 'no'} variables; choose one with variable=")
        variable = found[0]
    table = stations[stations["variable"].astype(str) == str(variable)]
    sources = sorted({str(v) for v in table["source"].dropna().unique()}) if "source" in table.columns else []
    if table.empty:
        raise InputError(f"variable: {variable!r} is not in the stations table (variables: {found})")
    units = sorted({str(u) for u in table["units"].dropna().unique()})
    if len(units) != 1:
        raise InputError(f"stations: variable {variable!r} has mixed units {units}; harmonise them first "
                         "(e.g. CNEMC gases changed reference state on 2018-09-01, atmos.md 5.2)")
    table = table.assign(lon=pd.to_numeric(table["lon"], errors="coerce"),
                         lat=pd.to_numeric(table["lat"], errors="coerce"))
    for col in ("lon", "lat"):
        if table[col].isna().all():
            raise InputError(f"stations: column {col!r} is missing (NaN) for every station of variable "
                             f"{variable!r}; join a site list (e.g. CNEMC NewSiteList.csv) first")
    if (table["lat"].abs() > 90).any():
        raise InputError("stations: column 'lat' holds values outside [-90, 90] (lon/lat swapped?)")
    # one position per station: its first row with coordinates
    where = table.groupby(table["station_id"].astype(str), sort=False)[["lon", "lat"]].first()
    unlocated = sorted(where.index[where["lon"].isna() | where["lat"].isna()])
    if unlocated:
        # real site lists miss a few stations (CNEMC: a handful of codes); they cannot be collocated
        log.warning("stations without lon/lat skipped (%d): %s", len(unlocated), ", ".join(unlocated[:10]))
        table = table[~table["station_id"].astype(str).isin(unlocated)]
    ids = table["station_id"].astype(str)
    table = table.assign(lon=ids.map(where["lon"]).to_numpy(), lat=ids.map(where["lat"]).to_numpy())
    t0 = _utc_ns(table["time_start"], "time_start")
    t1 = _utc_ns(table["time_end"], "time_end")
    if (t1 < t0).any():
        raise InputError("stations: time_end before time_start in some rows")
    value = pd.to_numeric(table["value"], errors="coerce").to_numpy(dtype=np.float64)
    codes, uniques = pd.factorize(table["station_id"].astype(str), sort=True)
    keep = np.isfinite(value)
    order = np.lexsort((t0[keep], codes[keep]))
    codes_k = codes[keep][order]
    offsets = np.searchsorted(codes_k, np.arange(len(uniques) + 1), side="left")
    names = (table["station_name"].astype(str).to_numpy(dtype=object) if "station_name" in table.columns
             else np.asarray(uniques, dtype=object)[codes])
    first = pd.DataFrame({"code": codes, "lon": pd.to_numeric(table["lon"]).to_numpy(dtype=np.float64),
                          "lat": pd.to_numeric(table["lat"]).to_numpy(dtype=np.float64),
                          "name": names}).groupby("code", sort=True).first()
    return _Stations(
        variable=str(variable), units=units[0], ids=np.asarray(uniques, dtype=object),
        names=first["name"].to_numpy(dtype=object), lon=first["lon"].to_numpy(dtype=np.float64),
        lat=first["lat"].to_numpy(dtype=np.float64), offsets=offsets,
        t0=t0[keep][order], t1=t1[keep][order], values=value[keep][order], sources=sources,
        unlocated=unlocated,
    )


def _utc_ns(column: pd.Series, name: str) -> np.ndarray:
    col = column
    if not isinstance(col.dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            raise InputError(f"stations: column {name!r} is timezone-naive; the Station table holds UTC "
                             "(tz-aware) times")
        try:
            col = pd.to_datetime(col, utc=False)
        except (ValueError, TypeError):
            raise InputError(f"stations: column {name!r} holds values that are not times") from None
        if not isinstance(col.dtype, pd.DatetimeTZDtype):
            raise InputError(f"stations: column {name!r} is timezone-naive; the Station table holds UTC "
                             "(tz-aware) times")
    col = col.dt.tz_convert("UTC")
    if col.isna().any():
        raise InputError(f"stations: column {name!r} has missing times")
    return col.astype("datetime64[ns, UTC]").to_numpy(dtype="datetime64[ns]").astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Shared assembly
# --------------------------------------------------------------------------------------------------

def _finish_stats(n: np.ndarray, s1: np.ndarray, s2: np.ndarray, shift: np.ndarray):
    """mean, std (ddof 1, NaN below 2 values) from counts and sums of deviations."""
    n = np.asarray(n, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, shift + s1 / np.maximum(n, 1), np.nan)
        var = np.where(n > 1, (s2 - s1 * s1 / np.maximum(n, 1)) / np.maximum(n - 1, 1), np.nan)
    return mean, np.sqrt(np.clip(var, 0.0, None))


def _mean_std(values: np.ndarray) -> tuple[float, float, int]:
    n = int(values.size)
    if n == 0:
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std(ddof=1)) if n > 1 else math.nan, n


@dataclass
class _Sat:
    """Satellite side of candidate matchups (one per station and satellite time)."""

    station: list[int]
    time_ns: list[int]
    mean: list[float]
    std: list[float]
    n: list[int]
    distance: list[float]

    @classmethod
    def empty(cls) -> "_Sat":
        return cls([], [], [], [], [], [])

    def add(self, s: int, t_ns: int, mean: float, std: float, n: int, dist: float) -> None:
        self.station.append(s)
        self.time_ns.append(t_ns)
        self.mean.append(mean)
        self.std.append(std)
        self.n.append(n)
        self.distance.append(dist)


def _ground_stats(st: _Stations, station: np.ndarray, win_a: np.ndarray, win_b: np.ndarray,
                  match: np.ndarray, n_match: int, hour_ending: bool):
    """Ground mean/std/n per matchup from windows ``(station, a, b, matchup index)``."""
    n = np.zeros(n_match, dtype=np.int64)
    s1 = np.zeros(n_match)
    s2 = np.zeros(n_match)
    shift = np.zeros(n_match)
    if station.size:
        order = np.argsort(station, kind="stable")
        bounds = np.flatnonzero(np.diff(station[order])) + 1
        for group in np.split(order, bounds):
            s = int(station[group[0]])
            wn, w1, w2, sh = st.window_sums(s, win_a[group], win_b[group], hour_ending)
            np.add.at(n, match[group], wn)
            np.add.at(s1, match[group], w1)
            np.add.at(s2, match[group], w2)
            shift[match[group]] = sh
    mean, std = _finish_stats(n, s1, s2, shift)
    return mean, std, n


def _stack_windows(windows: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """``[(station, a, b, match), ...]`` -> four concatenated int64 arrays."""
    if not windows:
        return tuple(np.empty(0, dtype=np.int64) for _ in range(4))
    return tuple(np.concatenate(part).astype(np.int64) for part in zip(*windows))


def _build_table(st: _Stations, sat: _Sat, ground, product: str, min_sat: int, min_ground: int,
                 attrs: dict[str, Any], what: str) -> pd.DataFrame:
    station = np.asarray(sat.station, dtype=np.int64)
    g_mean, g_std, g_n = ground
    df = pd.DataFrame({
        "station_id": st.ids[station].astype(str) if station.size else np.array([], dtype=object),
        "station_name": st.names[station].astype(str) if station.size else np.array([], dtype=object),
        "lon": st.lon[station],
        "lat": st.lat[station],
        "time": pd.to_datetime(np.asarray(sat.time_ns, dtype=np.int64), unit="ns", utc=True),
        "sat_mean": np.asarray(sat.mean, dtype=np.float64),
        "sat_std": np.asarray(sat.std, dtype=np.float64),
        "sat_n": np.asarray(sat.n, dtype=np.int64),
        "ground_mean": np.asarray(g_mean, dtype=np.float64),
        "ground_std": np.asarray(g_std, dtype=np.float64),
        "ground_n": np.asarray(g_n, dtype=np.int64),
        "distance_km": np.asarray(sat.distance, dtype=np.float64),
        "product": product,
    }, columns=list(MATCHUP_COLUMNS))
    n_sat = int((df["sat_n"] >= min_sat).sum())
    keep = (df["sat_n"] >= min_sat) & (df["ground_n"] >= min_ground)
    df = df[keep].sort_values(["station_id", "time"], kind="stable").reset_index(drop=True)
    if df.empty:
        raise NoDataError(
            f"{product}: no matchups with {st.label}: {what}; {n_sat} station x time pair(s) with >= {min_sat} "
            f"satellite value(s), none with >= {min_ground} ground value(s) in the time window"
        )
    df.attrs = {"product": product, "variable": st.variable, "units": st.units,
                "stations_source": list(st.sources), "stations_without_coordinates": list(st.unlocated),
                "statistics": "mean; std with ddof=1 (NaN for n < 2)",
                **attrs}
    return df


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InputError(f"{name}: expected one of {list(choices)}, got {value!r}")


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise InputError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return v


def _check_count(name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise InputError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


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


# --------------------------------------------------------------------------------------------------
# (a) L2 swath
# --------------------------------------------------------------------------------------------------

def collocate_swath(
    ds: xr.Dataset,
    stations: pd.DataFrame,
    *,
    variable: str | None = None,
    sat_variable: str | None = None,
    qa_min: float | None = None,
    mode: str = "containing",
    radius_km: float = 10.0,
    window_min: float = 30.0,
    min_pixels: int = 1,
    ground_rule: str = "window",
    min_ground: int = 1,
) -> pd.DataFrame:
    """Match one Level-2 swath with stations: the containing pixel or the pixels within a radius.

    Only the pixel centres of the whole swath are read; corner bounds, values, QA and times are read
    for the scanlines near the stations only (the dataset may be lazy, as :func:`rsmon.io.s5p.open_s5p`
    returns it).

    Parameters
    ----------
    ds : xarray.Dataset
        One swath in the layout of :func:`rsmon.io.s5p.open_s5p`: ``latitude``/``longitude``
        (scanline, ground_pixel), ``latitude_bounds``/``longitude_bounds`` (scanline, ground_pixel,
        corner; needed for ``mode="containing"``), ``time_utc`` (scanline, UTC), the product variable,
        and ``qa_value_raw`` (or ``qa_value``) when ``qa_min`` is given. ``attrs["main_variable"]``
        names the default variable, ``attrs["source_path"]`` the file (the Matchup ``product``).
    stations : pandas.DataFrame
        Station table (contract in :mod:`rsmon.validate`).
    variable : str, optional
        Station variable to use (``"no2"``, ``"aod_550"``, ...); needed when the table holds several.
    sat_variable : str, optional
        Satellite variable; default ``ds.attrs["main_variable"]``.
    qa_min : float, optional
        Keep pixels with ``qa_value > qa_min`` (0..1), compared on the stored integer as the NO2
        product and HARP do (``qa_value_raw > 100 * qa_min``, fill 255 excluded). 0.75 is the
        recommendation for TROPOMI NO2 (atmos.md 5.2, PRF). None keeps every pixel with a value.
    mode : {"containing", "radius"}
        ``"containing"``: the pixel whose corner quadrilateral contains the station (planar lon/lat,
        longitudes unwrapped around the station so the antimeridian is safe; edge ties as in
        :func:`point_in_quads`; if overlapping quadrilaterals both contain it, the one with the
        nearer centre). The match is dropped if that pixel fails QA or has no value.
        ``"radius"``: all valid pixels whose centres lie within ``radius_km`` (haversine).
    radius_km : float
        Radius of ``mode="radius"``, km (atmos.md 5.2: 5-10 km for TROPOMI NO2; 4.2: 25 km for 10 km
        AOD products).
    window_min : float
        Half width of the ground time window around the overpass, minutes (atmos.md 4.2: 30).
    min_pixels : int
        Minimum number of valid pixels of a matchup.
    ground_rule : {"window", "bracket_hours"}
        ``"window"``: station values whose interval overlaps ``[t - window, t + window]``, ``t`` the
        scanline time of the containing pixel (or the mean time of the pixels in the radius).
        ``"bracket_hours"``: the same with the values read as hour-ending hours (CNEMC, atmos.md 5.2):
        an instantaneous value stamped ``h`` stands for ``[h-1 h, h)``; other durations are an error.
        For a 13:30-14:30 (Beijing) window this takes the values labelled 14:00 and 15:00.
    min_ground : int
        Minimum number of ground values of a matchup.

    Returns
    -------
    pandas.DataFrame
        Matchup table; ``time`` is the pixel's scanline time (mean over the pixels in ``radius``
        mode); ``distance_km`` the distance to the containing pixel's centre (mean distance of the
        pixels in ``radius`` mode). ``attrs`` hold the parameters.

    Raises
    ------
    InputError
        Bad parameters; a variable missing from ``ds``; a Station table without ``lon``/``lat``
        (column absent or all NaN), with mixed units or with timezone-naive times.
    NoDataError
        No station is matched (message names the product file and the stations' files/variable).
    """
    _check_choice("mode", mode, ("containing", "radius"))
    _check_choice("ground_rule", ground_rule, ("window", "bracket_hours"))
    radius_km = _check_positive("radius_km", radius_km)
    window_min = _check_positive("window_min", window_min, allow_zero=True)
    min_pixels = _check_count("min_pixels", min_pixels)
    min_ground = _check_count("min_ground", min_ground)
    if qa_min is not None:
        qa_min = _check_positive("qa_min", qa_min, allow_zero=True)
        if qa_min > 1:
            raise InputError(f"qa_min: expected a number in [0, 1], got {qa_min}")
    st = _prepare_stations(stations, variable)
    if ground_rule == "bracket_hours":
        st.check_hourly()
    product = str(ds.attrs.get("source_path") or ds.encoding.get("source") or "dataset")
    sat_variable = sat_variable or ds.attrs.get("main_variable")
    if not sat_variable or sat_variable not in ds.variables:
        raise InputError(f"{product}: satellite variable {sat_variable!r} not in the swath "
                         f"(data variables: {sorted(ds.data_vars)})")
    needed = ["latitude", "longitude", "time_utc"] + (["latitude_bounds", "longitude_bounds"]
                                                      if mode == "containing" else [])
    for name in needed:
        if name not in ds.variables:
            raise InputError(f"{product}: {name!r} missing from the swath (needed for mode={mode!r})")
    qa_name = None
    if qa_min is not None:
        qa_name = next((n for n in ("qa_value_raw", "qa_value") if n in ds.variables), None)
        if qa_name is None:
            raise InputError(f"{product}: qa_min={qa_min} given but the swath has no qa_value_raw/qa_value")

    lat = np.asarray(ds["latitude"].values, dtype=np.float64)
    lon = np.asarray(ds["longitude"].values, dtype=np.float64)
    if lat.ndim != 2:
        raise InputError(f"{product}: latitude has dims {ds['latitude'].dims}, expected (scanline, ground_pixel)")
    n_scan, n_pix = lat.shape
    finite = np.flatnonzero(np.isfinite(lat.ravel()) & np.isfinite(lon.ravel()))
    sxyz = _unit_vectors(st.lon, st.lat)
    candidates: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(st.ids)
    if finite.size:
        from scipy.spatial import cKDTree

        tree = cKDTree(_unit_vectors(lon.ravel()[finite], lat.ravel()[finite]))
        if mode == "containing":
            _, nearest = tree.query(sxyz, k=1)
            for s, k in enumerate(np.atleast_1d(nearest)):
                i0, j0 = divmod(int(finite[k]), n_pix)
                ii, jj = np.meshgrid(np.arange(max(i0 - 2, 0), min(i0 + 3, n_scan)),
                                     np.arange(max(j0 - 2, 0), min(j0 + 3, n_pix)), indexing="ij")
                candidates[s] = (ii * n_pix + jj).ravel()
        else:
            chord = 2.0 * math.sin(min(radius_km / EARTH_MEAN_RADIUS_KM, math.pi) / 2.0) * (1 + 1e-9)
            for s, hits in enumerate(tree.query_ball_point(sxyz, chord)):
                candidates[s] = finite[np.asarray(hits, dtype=np.int64)] if hits else np.empty(0, dtype=np.int64)
    rows = np.unique(np.concatenate([c // n_pix for c in candidates] + [np.empty(0, dtype=np.int64)]))

    sat = _Sat.empty()
    if rows.size:
        names = [sat_variable, "time_utc"] + ([qa_name] if qa_name else []) + (
            ["latitude_bounds", "longitude_bounds"] if mode == "containing" else [])
        sub = xr.Dataset({n: ds[n].variable for n in names}).isel(scanline=rows).compute()
        values = np.asarray(sub[sat_variable].values, dtype=np.float64)
        valid = np.isfinite(values)
        if qa_name == "qa_value_raw":
            raw = np.asarray(sub[qa_name].values)
            # HARP-style integer comparison: qa_value > qa_min  <=>  raw > 100 qa_min; 255 is fill
            valid &= (raw != 255) & (raw.astype(np.float64) > round(qa_min * 100.0, 6))
        elif qa_name == "qa_value":
            valid &= np.asarray(sub[qa_name].values, dtype=np.float64) > qa_min
        times = np.asarray(sub["time_utc"].values).astype("datetime64[ns]").astype(np.int64)
        nat = np.iinfo(np.int64).min
        valid &= (times != nat)[:, None]
        if mode == "containing":
            lat_b = np.asarray(sub["latitude_bounds"].values, dtype=np.float64)
            lon_b = np.asarray(sub["longitude_bounds"].values, dtype=np.float64)
        for s, cand in enumerate(candidates):
            if cand.size == 0:
                continue
            i_full, j = np.divmod(cand, n_pix)
            i = np.searchsorted(rows, i_full)
            slon, slat = st.lon[s], st.lat[s]
            if mode == "containing":
                qx = lon_b[i, j]
                qx = slon + ((qx - slon + 180.0) % 360.0 - 180.0)
                qy = lat_b[i, j]
                ok = np.isfinite(qx).all(axis=1) & np.isfinite(qy).all(axis=1)
                inside = np.zeros(cand.size, dtype=bool)
                inside[ok] = point_in_quads(slon, slat, qx[ok], qy[ok])
                if not inside.any():
                    continue
                dist = haversine_km(slon, slat, lon.ravel()[cand], lat.ravel()[cand])
                pick = np.flatnonzero(inside)
                best = pick[np.lexsort((cand[pick], dist[pick]))[0]]
                if not valid[i[best], j[best]]:
                    continue
                sat.add(s, int(times[i[best]]), float(values[i[best], j[best]]), math.nan, 1, float(dist[best]))
            else:
                dist = haversine_km(slon, slat, lon.ravel()[cand], lat.ravel()[cand])
                use = valid[i, j] & (dist <= radius_km)
                if not use.any():
                    continue
                mean, std, n = _mean_std(values[i[use], j[use]])
                t = int(np.round(np.mean(times[i[use]] - times[i[use]].min()))) + int(times[i[use]].min())
                sat.add(s, t, mean, std, n, float(dist[use].mean()))

    half = int(round(window_min * _MIN_NS))
    t = np.asarray(sat.time_ns, dtype=np.int64)
    idx = np.arange(t.size)
    ground = _ground_stats(st, np.asarray(sat.station, dtype=np.int64), t - half, t + half, idx, t.size,
                           hour_ending=ground_rule == "bracket_hours")
    attrs = {
        "collocation": "swath",
        "mode": mode,
        "radius_km": radius_km if mode == "radius" else None,
        "qa_min": qa_min,
        "qa_variable": qa_name,
        "sat_variable": sat_variable,
        "sat_units": str(ds[sat_variable].attrs.get("units", "")),
        "window_min": window_min,
        "ground_rule": ground_rule,
        "min_pixels": min_pixels,
        "min_ground": min_ground,
        "time": "scanline time of the pixel (mean over the pixels in radius mode)",
        "edge_rule": EDGE_RULE,
        "earth_radius_km": EARTH_MEAN_RADIUS_KM,
    }
    what = f"{len(st.ids)} station(s), {len(sat.station)} inside the swath with a valid pixel"
    return _build_table(st, sat, ground, product, max(min_pixels, 1), min_ground, attrs, what)


# --------------------------------------------------------------------------------------------------
# (b) L3 grid
# --------------------------------------------------------------------------------------------------

@dataclass
class _Raster:
    """A north-up lon/lat raster: reads windows of one band as float64 with NaN for nodata."""

    name: str
    west: float
    north: float
    res_x: float
    res_y: float
    width: int
    height: int
    units: str
    tags: dict[str, str]
    _read: Any

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        return self._read(row0, row1, col0, col1)

    def lon_centres(self, col0: int, col1: int) -> np.ndarray:
        return self.west + self.res_x * (np.arange(col0, col1) + 0.5)

    def lat_centres(self, row0: int, row1: int) -> np.ndarray:
        return self.north - self.res_y * (np.arange(row0, row1) + 0.5)


def _open_cog(path: Path, band: int | str, stack: Any) -> _Raster:
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    try:
        src = stack.enter_context(rasterio.open(path))
    except RasterioError as exc:
        raise FormatError(f"{path}: cannot open as a GeoTIFF ({exc})") from None
    if src.crs is None or not src.crs.is_geographic:
        raise InputError(f"{path}: collocate_grid needs a lon/lat (geographic) grid, got CRS {src.crs}")
    tr = src.transform
    if tr.b != 0 or tr.d != 0 or tr.e >= 0:
        raise InputError(f"{path}: collocate_grid needs a north-up grid without rotation (transform {tuple(tr)[:6]})")
    if isinstance(band, str):
        if band not in src.descriptions:
            raise InputError(f"band: {band!r} is not a band of {path} (bands: {list(src.descriptions)})")
        bidx = src.descriptions.index(band) + 1
    else:
        bidx = int(band)
        if not 1 <= bidx <= src.count:
            raise InputError(f"band: expected 1..{src.count} for {path}, got {band!r}")
    nodata = src.nodatavals[bidx - 1]
    scale = src.scales[bidx - 1] if src.scales else 1.0
    offset = src.offsets[bidx - 1] if src.offsets else 0.0

    def read(row0, row1, col0, col1):
        arr = src.read(bidx, window=Window(col0, row0, col1 - col0, row1 - row0)).astype(np.float64)
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
            arr[arr == nodata] = np.nan
        if (scale, offset) != (1.0, 0.0):
            arr = arr * scale + offset
        return arr

    return _Raster(name=str(path), west=tr.c, north=tr.f, res_x=tr.a, res_y=-tr.e, width=src.width,
                   height=src.height, units=src.units[bidx - 1] or "", tags=src.tags(), _read=read)


def _open_dataset(ds: xr.Dataset, band: int | str) -> _Raster:
    where = str(ds.attrs.get("source_path") or ds.encoding.get("source") or "dataset")
    names = list(ds.data_vars)
    if isinstance(band, str):
        if band not in ds.data_vars:
            raise InputError(f"band: {band!r} is not a variable of {where} (variables: {names})")
        name = band
    else:
        if not 1 <= int(band) <= len(names):
            raise InputError(f"band: expected 1..{len(names)} for {where}, got {band!r}")
        name = names[int(band) - 1]
    da = ds[name]
    lat_name = next((c for c in ("lat", "latitude") if c in da.dims), None)
    lon_name = next((c for c in ("lon", "longitude") if c in da.dims), None)
    if lat_name is None or lon_name is None:
        raise InputError(f"{where}: variable {name!r} has dims {da.dims}, expected (lat, lon)")
    extra = [d for d in da.dims if d not in (lat_name, lon_name)]
    if any(da.sizes[d] != 1 for d in extra):
        raise InputError(f"{where}: variable {name!r} has extra dims {extra}; select one time first")
    da = da.squeeze(extra, drop=True).transpose(lat_name, lon_name)
    lat = np.asarray(ds[lat_name].values, dtype=np.float64)
    lon = np.asarray(ds[lon_name].values, dtype=np.float64)
    if lat.size < 1 or lon.size < 1:
        raise InputError(f"{where}: empty grid")
    res_y = abs(lat[1] - lat[0]) if lat.size > 1 else None
    res_x = abs(lon[1] - lon[0]) if lon.size > 1 else None
    res_x = res_x or res_y
    res_y = res_y or res_x
    if res_x is None:
        raise InputError(f"{where}: a 1x1 grid has no resolution")
    for axis, values, res in (("lat", lat, res_y), ("lon", lon, res_x)):
        if values.size > 1 and not np.allclose(np.abs(np.diff(values)), res, rtol=1e-6, atol=1e-9):
            raise InputError(f"{where}: coordinate {axis!r} is not regularly spaced")
    if lon.size > 1 and lon[1] < lon[0]:
        raise InputError(f"{where}: longitudes must increase")
    flip = lat.size > 1 and lat[1] > lat[0]
    north = (lat.max() + res_y / 2)
    west = lon.min() - res_x / 2

    def read(row0, row1, col0, col1):
        h = lat.size
        if flip:
            part = da.isel({lat_name: slice(h - row1, h - row0), lon_name: slice(col0, col1)}).values[::-1]
        else:
            part = da.isel({lat_name: slice(row0, row1), lon_name: slice(col0, col1)}).values
        return np.asarray(part, dtype=np.float64)

    tags = {k: str(v) for k, v in ds.attrs.items()}
    return _Raster(name=where, west=float(west), north=float(north), res_x=float(res_x), res_y=float(res_y),
                   width=lon.size, height=lat.size, units=str(da.attrs.get("units", "")), tags=tags, _read=read)


def _coverage(raster: _Raster, time_start, time_end) -> tuple[int, int]:
    from rsmon.provenance import parse_datetime

    start = time_start if time_start is not None else raster.tags.get("time_coverage_start")
    end = time_end if time_end is not None else raster.tags.get("time_coverage_end")
    if start is None or end is None:
        raise InputError(f"{raster.name}: no time coverage (tags time_coverage_start/_end); pass time_start= "
                         "and time_end=")
    t0 = pd.Timestamp(parse_datetime(start, "time_start"))
    t1 = pd.Timestamp(parse_datetime(end, "time_end"))
    # "…T23:59:59Z" closes a day inclusively (rsmon COG and Giovanni convention): make it exclusive
    if t1.second == 59 and t1.microsecond == 0 and t1.nanosecond == 0:
        t1 = t1 + pd.Timedelta(seconds=1)
    if t1 <= t0:
        raise InputError(f"{raster.name}: time coverage end {end} is not after its start {start}")
    return int(t0.value), int(t1.value)


def collocate_grid(
    path_or_ds: str | os.PathLike | xr.Dataset,
    stations: pd.DataFrame,
    *,
    variable: str | None = None,
    band: int | str = 1,
    mode: str = "containing",
    radius_km: float = 10.0,
    time_start: str | datetime | None = None,
    time_end: str | datetime | None = None,
    ground_rule: str = "same_day",
    overpass_local_solar: str = "13:30",
    window_min: float = 30.0,
    min_cells: int = 1,
    min_ground: int = 1,
) -> pd.DataFrame:
    """Match an L3 lon/lat grid (rsmon COG or xarray Dataset) with stations.

    Parameters
    ----------
    path_or_ds : path or xarray.Dataset
        A GeoTIFF/COG on a north-up lon/lat grid (read with rasterio, one small window per station;
        nodata -> NaN; band scale/offset applied), or a Dataset with 1-D ``lat``/``lon`` (or
        ``latitude``/``longitude``) cell-centre coordinates on a regular grid.
    stations : pandas.DataFrame
        Station table.
    variable : str, optional
        Station variable (needed when the table holds several).
    band : int or str
        1-based band number (rsmon COGs: 1 = the product mean) or band description / variable name.
    mode : {"containing", "radius"}
        ``"containing"``: the cell containing the station (a cell owns its west and north edges,
        GDAL's convention; a station on an edge goes to the cell east / south of it). ``"radius"``:
        the mean of the finite cells whose centres lie within ``radius_km`` (haversine).
    radius_km : float
        Radius of ``mode="radius"``, km.
    time_start, time_end : str or datetime, optional
        Time coverage of the grid (ISO 8601, UTC); default the ``time_coverage_start``/``_end``
        tags of the COG or attrs of the Dataset. An end at ``:59`` seconds (``...T23:59:59Z``) is read
        as inclusive of its last second.
    ground_rule : {"same_day", "window"}
        ``"same_day"``: station values overlapping the grid's time coverage (the UTC calendar day of a
        daily product). ``"window"``: for each day of the coverage the nominal overpass at the
        station's longitude (``overpass_local_solar`` local solar time, UTC + lon/15 h; only
        overpasses within the coverage count) +- ``window_min``; hour-ending station hours that
        overlap it (atmos.md 5.2).
    overpass_local_solar : str
        ``"HH:MM"``; 13:30 for TROPOMI (Veefkind et al. 2012).
    window_min : float
        Half width of the overpass window, minutes.
    min_cells : int
        Minimum number of finite cells of a matchup.
    min_ground : int
        Minimum number of ground values.

    Returns
    -------
    pandas.DataFrame
        Matchup table, ``time`` = start of the grid's time coverage, ``distance_km`` = distance to the
        cell centre (mean over the cells in ``radius`` mode).

    Raises
    ------
    InputError
        Bad parameters, a grid that is not lon/lat north-up, no time coverage, bad Station table.
    FormatError
        The file cannot be opened as a GeoTIFF.
    NoDataError
        No station matched.
    """
    import contextlib

    _check_choice("mode", mode, ("containing", "radius"))
    _check_choice("ground_rule", ground_rule, ("same_day", "window"))
    radius_km = _check_positive("radius_km", radius_km)
    window_min = _check_positive("window_min", window_min, allow_zero=True)
    clock = _parse_clock(overpass_local_solar, "overpass_local_solar")
    min_cells = _check_count("min_cells", min_cells)
    min_ground = _check_count("min_ground", min_ground)
    st = _prepare_stations(stations, variable)
    with contextlib.ExitStack() as stack:
        if isinstance(path_or_ds, xr.Dataset):
            raster = _open_dataset(path_or_ds, band)
        else:
            path = Path(path_or_ds)
            if not path.is_file():
                raise FormatError(f"{path}: no such file")
            raster = _open_cog(path, band, stack)
        t0, t1 = _coverage(raster, time_start, time_end)
        sat = _Sat.empty()
        deg_km = EARTH_MEAN_RADIUS_KM * math.pi / 180.0
        for s in range(len(st.ids)):
            slon, slat = st.lon[s], st.lat[s]
            x = raster.west + (slon - raster.west) % 360.0  # longitude unwrapped east of the west edge
            if mode == "containing":
                col = math.floor((x - raster.west) / raster.res_x)
                row = math.floor((raster.north - slat) / raster.res_y)
                if not (0 <= col < raster.width and 0 <= row < raster.height):
                    continue
                value = raster.read(row, row + 1, col, col + 1)[0, 0]
                if not math.isfinite(value):
                    continue
                clon = raster.lon_centres(col, col + 1)[0]
                clat = raster.lat_centres(row, row + 1)[0]
                sat.add(s, t0, float(value), math.nan, 1, float(haversine_km(x, slat, clon, clat)))
            else:
                dlat = radius_km / deg_km
                coslat = math.cos(math.radians(min(abs(slat) + dlat, 90.0)))
                dlon = radius_km / (deg_km * coslat) if coslat > 1e-6 else 360.0
                row0 = max(math.floor((raster.north - slat - dlat) / raster.res_y), 0)
                row1 = min(math.floor((raster.north - slat + dlat) / raster.res_y) + 1, raster.height)
                # column ranges for the station's longitude and its 360-degree copies (global grids)
                ranges: list[list[int]] = []
                for xs in (x - 360.0, x, x + 360.0):
                    col0 = max(math.floor((xs - dlon - raster.west) / raster.res_x), 0)
                    col1 = min(math.floor((xs + dlon - raster.west) / raster.res_x) + 1, raster.width)
                    if col1 > col0:
                        ranges.append([col0, col1])
                merged: list[list[int]] = []
                for c0, c1 in sorted(ranges):
                    if merged and c0 <= merged[-1][1]:
                        merged[-1][1] = max(merged[-1][1], c1)
                    else:
                        merged.append([c0, c1])
                pieces = [(row0, row1, c0, c1) for c0, c1 in merged] if row1 > row0 else []
                vals, dists = [], []
                for r0, r1, c0, c1 in pieces:
                    block = raster.read(r0, r1, c0, c1)
                    clon, clat = np.meshgrid(raster.lon_centres(c0, c1), raster.lat_centres(r0, r1))
                    d = haversine_km(x, slat, clon, clat)  # periodic in longitude
                    use = (d <= radius_km) & np.isfinite(block)
                    vals.append(block[use])
                    dists.append(d[use])
                v = np.concatenate(vals) if vals else np.empty(0)
                if v.size == 0:
                    continue
                mean, std, n = _mean_std(v)
                sat.add(s, t0, mean, std, n, float(np.concatenate(dists).mean()))

    station = np.asarray(sat.station, dtype=np.int64)
    idx = np.arange(station.size)
    if ground_rule == "same_day":
        a = np.full(station.size, t0, dtype=np.int64)
        b = np.full(station.size, t1 - 1, dtype=np.int64)
        ground = _ground_stats(st, station, a, b, idx, station.size, hour_ending=False)
    else:
        half = int(round(window_min * _MIN_NS))
        windows = []
        for k, s in enumerate(station):
            a, b, _ = _overpass_windows(np.array([t0]), np.array([t1]), st.lon[s], clock, half, local_basis=False)
            windows.append((np.full(a.size, s), a, b, np.full(a.size, k)))
        ground = _ground_stats(st, *_stack_windows(windows), station.size, hour_ending=False)
    attrs = {
        "collocation": "grid",
        "mode": mode,
        "radius_km": radius_km if mode == "radius" else None,
        "band": band,
        "sat_units": raster.units,
        "time_coverage": [str(pd.Timestamp(t0, tz="UTC")), str(pd.Timestamp(t1, tz="UTC"))],
        "ground_rule": ground_rule,
        "overpass_local_solar": overpass_local_solar if ground_rule == "window" else None,
        "window_min": window_min if ground_rule == "window" else None,
        "min_cells": min_cells,
        "min_ground": min_ground,
        "time": "start of the grid's time coverage",
        "edge_rule": EDGE_RULE,
        "earth_radius_km": EARTH_MEAN_RADIUS_KM,
    }
    what = f"{len(st.ids)} station(s), {len(sat.station)} on a finite cell of the grid"
    return _build_table(st, sat, ground, raster.name, max(min_cells, 1), min_ground, attrs, what)


# --------------------------------------------------------------------------------------------------
# (c) area-average series
# --------------------------------------------------------------------------------------------------

def collocate_series(
    series: pd.DataFrame,
    stations: pd.DataFrame,
    *,
    variable: str | None = None,
    max_distance_km: float = 50.0,
    ground_rule: str = "same_day",
    overpass_local_solar: str = "13:45",
    window_min: float = 30.0,
    day_basis: str = "utc",
    min_ground: int = 1,
) -> pd.DataFrame:
    """Match an area-average time series (Giovanni/eodash SeriesTable) with the stations near its box.

    Parameters
    ----------
    series : pandas.DataFrame
        A SeriesTable (:func:`rsmon.io.series.read_giovanni_series`): ``time``, ``value``,
        ``time_start``/``time_end`` (without them each value stands for the UTC day of ``time``),
        ``attrs["box"]`` = (W, S, E, N); an eodash ``std`` column becomes ``sat_std``.
    stations : pandas.DataFrame
        Station table.
    variable : str, optional
        Station variable (needed when the table holds several).
    max_distance_km : float
        Stations farther than this from the nearest point of the box are dropped. Distance: haversine
        to the station's lon/lat clamped into the box (0 inside); see :func:`box_distance_km`.
    ground_rule : {"same_day", "overpass_window"}
        ``"same_day"``: station values overlapping the series step's window (a day for daily series;
        shifted to local solar time with ``day_basis="local"``). ``"overpass_window"`` (the NO2 rule,
        atmos.md 5.2): for each day of the step the nominal overpass at the station's longitude,
        ``overpass_local_solar`` local solar time, +- ``window_min``; the hour-ending station values
        whose hours overlap it. For a multi-day step (eodash 14-day windows) the values of all its
        days are pooled.
    overpass_local_solar : str
        ``"HH:MM"``, default 13:45 (OMI, the Giovanni OMNO2d series; use 13:30 for TROPOMI).
    window_min : float
        Half width of the overpass window, minutes.
    day_basis : {"utc", "local"}
        ``"utc"``: the series' days are UTC days (Giovanni MODIS/OMI L3 daily), the overpass of a day is
        the one falling in it. ``"local"``: the days are local solar days at the station.
    min_ground : int
        Minimum number of ground values of a matchup.

    Returns
    -------
    pandas.DataFrame
        Matchup table, one row per station and series step with a finite value; ``time`` = start of
        the step's window (the day), ``sat_n`` = 1 (one area average), ``distance_km`` = station to
        box. ``attrs`` hold the parameters and the series' stamp convention.

    Raises
    ------
    InputError
        Bad parameters; a series without ``attrs["box"]``, ``time`` or ``value``; bad Station table.
    NoDataError
        No station within ``max_distance_km`` of the box, or no step with ground values.
    """
    _check_choice("ground_rule", ground_rule, ("same_day", "overpass_window"))
    _check_choice("day_basis", day_basis, ("utc", "local"))
    max_distance_km = _check_positive("max_distance_km", max_distance_km, allow_zero=True)
    window_min = _check_positive("window_min", window_min, allow_zero=True)
    clock = _parse_clock(overpass_local_solar, "overpass_local_solar")
    min_ground = _check_count("min_ground", min_ground)
    if not isinstance(series, pd.DataFrame):
        raise InputError(f"series: expected a SeriesTable (DataFrame), got {type(series).__name__}")
    product = str(series.attrs.get("name") or series.attrs.get("source") or "series")
    for col in ("time", "value"):
        if col not in series.columns:
            raise InputError(f"series {product}: column {col!r} is missing")
    box = series.attrs.get("box")
    if box is None or len(box) != 4:
        raise InputError(f"series {product}: attrs['box'] (W, S, E, N) is missing; read the file with "
                         "rsmon.io.series.read_giovanni_series")
    st = _prepare_stations(stations, variable)
    times = pd.to_datetime(series["time"], utc=True)
    if "time_start" in series.columns and "time_end" in series.columns:
        w0 = pd.to_datetime(series["time_start"], utc=True)
        w1 = pd.to_datetime(series["time_end"], utc=True)
        windows_note = f"series windows (stamp {series.attrs.get('stamp', '?')!r})"
    else:
        w0, w1 = times, times + pd.Timedelta("1D")
        windows_note = "no time_start/time_end in the series: each value taken as the UTC day of its time"
    values = pd.to_numeric(series["value"], errors="coerce").to_numpy(dtype=np.float64)
    sat_std = (pd.to_numeric(series["std"], errors="coerce").to_numpy(dtype=np.float64)
               if "std" in series.columns else np.full(values.size, np.nan))
    ok = np.isfinite(values)
    w0_ns = w0.to_numpy(dtype="datetime64[ns]").astype(np.int64)[ok]
    w1_ns = w1.to_numpy(dtype="datetime64[ns]").astype(np.int64)[ok]
    values, sat_std = values[ok], sat_std[ok]

    dist = box_distance_km(st.lon, st.lat, box)
    near = np.flatnonzero(dist <= max_distance_km)
    if near.size == 0:
        raise NoDataError(f"{product}: no station of {st.label} within {max_distance_km} km of the box {tuple(box)} "
                          f"(nearest: {float(dist.min()):.1f} km)")
    if values.size == 0:
        raise NoDataError(f"{product}: the series has no finite value; no matchups with {st.label}")

    half = int(round(window_min * _MIN_NS))
    sat = _Sat.empty()
    windows = []
    for s in near:
        base = len(sat.station)
        for k in range(values.size):
            sat.add(int(s), int(w0_ns[k]), float(values[k]), float(sat_std[k]), 1, float(dist[s]))
        match = base + np.arange(values.size)
        if ground_rule == "same_day":
            shift = _lon_offset_ns(st.lon[s]) if day_basis == "local" else 0
            a, b, rows = w0_ns - shift, w1_ns - shift - 1, np.arange(values.size)
        else:
            a, b, rows = _overpass_windows(w0_ns, w1_ns, st.lon[s], clock, half, local_basis=day_basis == "local")
        windows.append((np.full(a.size, s), a, b, match[rows]))
    ground = _ground_stats(st, *_stack_windows(windows), len(sat.station), hour_ending=False)
    attrs = {
        "collocation": "series",
        "series_variable": series.attrs.get("variable"),
        "sat_units": series.attrs.get("units", ""),
        "box": tuple(float(v) for v in box),
        "max_distance_km": max_distance_km,
        "ground_rule": ground_rule,
        "overpass_local_solar": overpass_local_solar if ground_rule == "overpass_window" else None,
        "window_min": window_min if ground_rule == "overpass_window" else None,
        "day_basis": day_basis,
        "min_ground": min_ground,
        "series_windows": windows_note,
        "time": "start of the series step's window",
        "earth_radius_km": EARTH_MEAN_RADIUS_KM,
    }
    what = f"{near.size} station(s) within {max_distance_km} km of the box, {values.size} finite series value(s)"
    return _build_table(st, sat, ground, product, 1, min_ground, attrs, what)
