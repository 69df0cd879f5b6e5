"""The parts every collocation mode shares: the Station table, ground statistics and the Matchup table.

Private to :mod:`rsmon.validate` (the collocate_* modules and :mod:`rsmon.validate.hourly`); the
contracts of the two tables are in :mod:`rsmon.validate`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from rsmon.errors import InputError, NoDataError
from rsmon.validate.geo import _HOUR_NS

log = logging.getLogger(__name__)

#: Columns of the Matchup table, in order (contract in :mod:`rsmon.validate`).
MATCHUP_COLUMNS = ("station_id", "station_name", "lon", "lat", "time", "sat_mean", "sat_std", "sat_n",
                   "ground_mean", "ground_std", "ground_n", "distance_km", "product")

#: Station-table columns collocation needs (``station_name`` and ``source`` are optional).
STATION_COLUMNS = ("station_id", "lon", "lat", "time_start", "time_end", "variable", "value", "units")


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
