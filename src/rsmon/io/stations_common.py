"""Shared machinery of the ground-station readers: the Station table, file checks, times, mapping.

The Station table is the contract of :mod:`rsmon.validate` (one row per station x time x
variable): ``station_id``, ``station_name``, ``lon``, ``lat``, ``time_start``, ``time_end``
(``datetime64[ns, UTC]``, the interval the value represents; equal for instantaneous values),
``variable``, ``value``, ``units``, ``source``. Every reader of :mod:`rsmon.io.stations` ends in
:func:`station_table`, so the column order, the dtypes and the "no rows -> NoDataError" rule live
in one place.

This module also holds :func:`read_csv_mapped`, the generic reader for CSV files whose columns are
named by the caller.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rsmon.errors import FormatError, InputError, NoDataError
from rsmon.io.ncfile import existing_file

log = logging.getLogger(__name__)

__all__ = [
    "BEIJING_UTC_OFFSET",
    "STATION_COLUMNS",
    "Constant",
    "decode_text",
    "read_csv_mapped",
    "read_csv_text",
    "require_columns",
    "source_file",
    "station_table",
]

#: Columns of the Station table, in order (:mod:`rsmon.validate` contract).
STATION_COLUMNS: tuple[str, ...] = (
    "station_id", "station_name", "lon", "lat", "time_start", "time_end",
    "variable", "value", "units", "source",
)

#: China Standard (Beijing) Time is UTC+8 all year (no daylight saving since 1991).
BEIJING_UTC_OFFSET = pd.Timedelta(hours=8)

_TIME_DTYPE = "datetime64[ns, UTC]"


# --------------------------------------------------------------------------------------------------
# Files and text
# --------------------------------------------------------------------------------------------------

def source_file(path: str | Path) -> Path:
    """The resolved path of an existing, non-empty regular file.

    Raises
    ------
    FormatError
        The file does not exist, is not a regular file, or is empty (0 bytes: a truncated
        download is not a format we can read; a file with a header and no rows is a
        :class:`~rsmon.errors.NoDataError` raised by the readers instead).
    """
    p = existing_file(path)
    if p.stat().st_size == 0:
        raise FormatError(f"{p}: file is empty (0 bytes)")
    return p


def decode_text(path: Path, encodings: Iterable[str]) -> tuple[str, str]:
    """Decode a text file with the first encoding of ``encodings`` that fits.

    A decoding that yields NUL characters is rejected too: UTF-16 text is valid single-byte
    text to lenient codecs (Latin-1, GB18030 for ASCII content) but is one NUL per character.

    Returns
    -------
    (str, str)
        The text and the encoding used.

    Raises
    ------
    FormatError
        No encoding fits; the message names the file and the encodings tried.
    """
    raw = path.read_bytes()
    tried = list(encodings)
    for enc in tried:
        try:
            text = raw.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
        if "\x00" in text:
            continue
        if not text.strip():
            raise FormatError(f"{path}: file holds only white space")
        return text, enc
    raise FormatError(f"{path}: cannot decode the text with any of the encodings tried ({', '.join(tried)}); "
                      "is it UTF-16 or binary?")


def read_csv_text(text: str, path: Path, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` on decoded text; parser failures become FormatError naming ``path``."""
    try:
        return pd.read_csv(io.StringIO(text), index_col=False, **kwargs)
    except pd.errors.EmptyDataError:
        raise FormatError(f"{path}: no header row (the file holds no CSV columns)") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise FormatError(f"{path}: cannot parse as CSV: {exc}") from None


def require_columns(columns: Iterable[str], required: Iterable[str], path: Path, what: str = "") -> None:
    """Raise FormatError naming the first missing column of ``required`` and the file."""
    have = set(columns)
    missing = [c for c in required if c not in have]
    if missing:
        kind = f" {what}" if what else ""
        also = f" (also missing: {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else ""
        found = list(map(str, columns))
        more = ", ..." if len(found) > 12 else ""
        raise FormatError(f"{path}: missing column {missing[0]!r}{kind}{also}; "
                          f"the file has {', '.join(found[:12])}{more}")


def header_only(df: pd.DataFrame, path: Path) -> None:
    """Raise NoDataError when a parsed CSV has columns but no rows."""
    if len(df) == 0:
        raise NoDataError(f"{path}: the file has a header but no data rows")


# --------------------------------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------------------------------

def utc_times(times) -> pd.Series:
    """Times as ``datetime64[ns, UTC]``; naive values are taken as UTC (never via Python objects)."""
    s = pd.Series(times)
    if not isinstance(s.dtype, pd.DatetimeTZDtype):
        s = pd.to_datetime(s)
        s = s.dt.tz_localize("UTC") if s.dt.tz is None else s
    return s.astype(_TIME_DTYPE)


def utc_naive(times) -> np.ndarray:
    """tz-aware (or naive UTC) times -> naive ``datetime64[ns]`` UTC array, for fast numpy ops."""
    s = utc_times(times)
    return s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def to_utc(times: pd.Series | pd.DatetimeIndex, offset: pd.Timedelta) -> pd.Series:
    """Naive local clock times at a fixed UTC ``offset`` -> tz-aware UTC (``datetime64[ns, UTC]``)."""
    s = pd.Series(pd.to_datetime(times))
    return (s - offset).dt.tz_localize("UTC").astype(_TIME_DTYPE)


def hour_ending_interval(label_local: pd.Series, offset: pd.Timedelta,
                         window: pd.Timedelta = pd.Timedelta(hours=1)) -> tuple[pd.Series, pd.Series]:
    """``(time_start, time_end)`` in UTC for values labelled by the END of their averaging window.

    The value labelled ``h`` (local clock at UTC ``offset``) covers ``[h - window, h)``.
    """
    end = to_utc(label_local, offset)
    return (end - window).astype(_TIME_DTYPE), end


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------

def station_table(frames: Iterable[pd.DataFrame], path: Path | str, *, dropna: bool = True,
                  attrs: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Assemble Station-table pieces into one table that follows the contract exactly.

    Parameters
    ----------
    frames : iterable of DataFrame
        Pieces holding at least ``station_id``, ``time_start``, ``time_end``, ``variable``,
        ``value`` and ``units``; missing ``station_name`` becomes ``""``, missing ``lon``/``lat``
        NaN, and ``source`` is set to ``str(path)``.
    path : Path or str
        The file the rows come from (``source`` column and error messages).
    dropna : bool
        Drop rows whose value is NaN (missing in the file). Default True.
    attrs : mapping, optional
        Reader notes stored in ``df.attrs``.

    Raises
    ------
    NoDataError
        No row is left.
    """
    pieces = [f for f in frames if len(f)]
    if pieces:
        df = pd.concat(pieces, ignore_index=True)
    else:
        df = pd.DataFrame({c: [] for c in STATION_COLUMNS})
    n = len(df)
    if "station_name" not in df:
        df["station_name"] = ""
    for c in ("lon", "lat"):
        if c not in df:
            df[c] = np.nan
    df["source"] = str(path)
    df = df[list(STATION_COLUMNS)].copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype("float64")
    if dropna:
        df = df[df["value"].notna()]
    if len(df) == 0:
        why = f" ({n} rows, all missing values)" if n else ""
        raise NoDataError(f"{path}: no usable values{why}")
    df = df.reset_index(drop=True)
    out = pd.DataFrame({
        "station_id": df["station_id"].astype(str),
        "station_name": df["station_name"].fillna("").astype(str),
        "lon": df["lon"].astype("float64"),
        "lat": df["lat"].astype("float64"),
        "time_start": utc_times(df["time_start"]),
        "time_end": utc_times(df["time_end"]),
        "variable": df["variable"].astype(str),
        "value": df["value"],
        "units": df["units"].astype(str),
        "source": df["source"].astype(str),
    })
    out = out.sort_values(["station_id", "variable", "time_start"], kind="stable", ignore_index=True)
    out.attrs.update(dict(attrs or {}))
    return out


def join_sites(table: pd.DataFrame, sites: pd.DataFrame | str | Path | None) -> pd.DataFrame:
    """Fill ``station_name``, ``lon``, ``lat`` of a table piece from a site list, by ``station_id``.

    ``sites`` is a DataFrame with ``station_id``, ``station_name``, ``lon``, ``lat`` (as returned by
    :func:`rsmon.io.stations.read_cnemc_sitelist`) or the path of a CNEMC site-list file.
    """
    if sites is None:
        return table
    if isinstance(sites, (str, Path)):
        from rsmon.io.stations_cnemc import read_cnemc_sitelist
        sites = read_cnemc_sitelist(sites)
    if not isinstance(sites, pd.DataFrame):
        raise InputError(f"sites: expected a site-list DataFrame or a path, got {type(sites).__name__}")
    missing = [c for c in ("station_id", "station_name", "lon", "lat") if c not in sites.columns]
    if missing:
        raise InputError(f"sites: the site list lacks column {missing[0]!r} "
                         "(expected station_id, station_name, lon, lat as read_cnemc_sitelist returns)")
    s = sites.drop_duplicates("station_id").set_index("station_id")
    ids = table["station_id"]
    table = table.copy()
    table["station_name"] = ids.map(s["station_name"]).fillna("").astype(str)
    table["lon"] = ids.map(s["lon"]).astype("float64")
    table["lat"] = ids.map(s["lat"]).astype("float64")
    unknown = sorted(set(ids) - set(s.index))
    if unknown:
        log.info("%d station(s) not in the site list (no coordinates): %s", len(unknown), ", ".join(unknown[:10]))
    return table


# --------------------------------------------------------------------------------------------------
# Generic CSV with a column mapping
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Constant:
    """A constant for :func:`read_csv_mapped` (``mapping={"variable": Constant("no2")}``).

    Numbers in a mapping are constants already (``{"lon": 116.36}``); strings name file columns,
    so a constant string must be wrapped to be told apart from a misspelled column.
    """

    value: Any


_MAPPABLE = ("station_id", "station_name", "lon", "lat", "time", "value", "variable", "units")
_MAPPING_REQUIRED = ("station_id", "time", "value", "variable")


def read_csv_mapped(path: str | Path, mapping: Mapping[str, Any], *, time_format: str | None = None,
                    tz: str = "UTC", hour_ending: bool = False, duration: str | pd.Timedelta | None = None,
                    units: str | Mapping[str, str] | None = None, encoding: str | Iterable[str] | None = None,
                    **read_csv_kwargs: Any) -> pd.DataFrame:
    """Read a station CSV whose columns the caller maps to the Station-table contract.

    Parameters
    ----------
    path : str or Path
        CSV file (one row per station x time; one value column).
    mapping : mapping
        Contract column -> file column name, for ``station_id``, ``time``, ``value``,
        ``variable`` (required) and ``station_name``, ``lon``, ``lat``, ``units`` (optional).
        A value may instead be a constant: a number, or :class:`Constant` (for strings, e.g.
        ``{"variable": Constant("no2")}``). ``time`` may be a list of columns, joined with spaces
        before parsing (``["date", "hour"]`` with ``time_format="%Y%m%d %H"``).
    time_format : str, optional
        ``strftime`` format of the (joined) time text; inferred by pandas when None.
    tz : str
        Time zone of the file's clock: ``"UTC"`` (default), an IANA name (``"Asia/Shanghai"``) or
        a fixed offset (``"+08:00"``). Times already carrying an offset are converted, not relabelled.
    hour_ending : bool
        The time labels the END of a one-hour (or ``duration``) averaging window, as CNEMC does:
        the value at ``h`` covers ``[h - 1 h, h)``. Default False: the time labels the start of
        ``duration``, or an instant when ``duration`` is None.
    duration : str or Timedelta, optional
        Length of the averaging window (``"1h"``, ``"24h"``); defaults to 1 h when ``hour_ending``.
    units : str or mapping, optional
        Units for every row, or per variable (``{"no2": "ug m-3", "co": "mg m-3"}``); a ``units``
        entry of ``mapping`` wins. Required when the mapping has no ``units``.
    encoding : str or list of str, optional
        Encodings to try (default ``utf-8-sig`` then ``gb18030``).
    **read_csv_kwargs
        Passed to ``pandas.read_csv`` (``sep``, ``skiprows``, ``na_values``...).

    Returns
    -------
    DataFrame
        The Station table.

    Raises
    ------
    InputError
        The mapping names an unknown contract column, lacks a required one, or no units are given.
    FormatError
        The file is missing, undecodable, unparseable, lacks a mapped column (the message names the
        column and the file) or holds times that do not parse.
    NoDataError
        The file has no rows, or every value is missing.
    """
    unknown = sorted(set(mapping) - set(_MAPPABLE))
    if unknown:
        raise InputError(f"mapping: unknown key {unknown[0]!r}; expected keys among {', '.join(_MAPPABLE)}")
    lacking = [k for k in _MAPPING_REQUIRED if k not in mapping]
    if lacking:
        raise InputError(f"mapping: the key {lacking[0]!r} is required (station_id, time, value, variable)")
    if "units" not in mapping and units is None:
        raise InputError("units: give units=... (a string or a per-variable mapping) or map a 'units' column")
    if duration is not None:
        try:
            duration = pd.Timedelta(duration)
        except ValueError:
            raise InputError(f"duration: cannot read {duration!r} as a time span (e.g. '1h')") from None
    if hour_ending and duration is None:
        duration = pd.Timedelta(hours=1)

    p = source_file(path)
    encodings = [encoding] if isinstance(encoding, str) else list(encoding or ("utf-8-sig", "gb18030"))
    text, _ = decode_text(p, encodings)
    df = read_csv_text(text, p, **read_csv_kwargs)

    def column_of(key: str) -> pd.Series | None:
        spec = mapping.get(key)
        if spec is None:
            return None
        if isinstance(spec, Constant):
            return pd.Series([spec.value] * len(df), index=df.index)
        if isinstance(spec, (int, float, np.number)) and not isinstance(spec, bool):
            return pd.Series([float(spec)] * len(df), index=df.index)
        cols = [spec] if isinstance(spec, str) else list(spec)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise FormatError(f"{p}: missing column {missing[0]!r} (mapped to {key!r}); "
                              f"the file has {', '.join(map(str, df.columns[:15]))}")
        if len(cols) == 1:
            return df[cols[0]]
        return df[cols].astype(str).agg(" ".join, axis=1)

    cols = {k: column_of(k) for k in _MAPPABLE}
    header_only(df, p)

    raw_time = cols["time"]
    try:
        t = pd.to_datetime(raw_time.astype(str) if time_format else raw_time, format=time_format)
    except (ValueError, TypeError) as exc:
        name = mapping["time"]
        raise FormatError(f"{p}: column {name!r} has times that do not parse"
                          f"{' with ' + repr(time_format) if time_format else ''}: {exc}") from None
    t = pd.Series(pd.DatetimeIndex(t), index=df.index)
    if t.dt.tz is None:
        try:
            t = t.dt.tz_localize(tz)
        except Exception as exc:  # pytz/zoneinfo raise several kinds
            raise InputError(f"tz: {tz!r} is not a time zone pandas understands ({exc})") from None
    t = t.dt.tz_convert("UTC").astype(_TIME_DTYPE)
    if hour_ending:
        start, end = t - duration, t
    elif duration is not None:
        start, end = t, t + duration
    else:
        start, end = t, t

    variable = cols["variable"].astype(str)
    if cols["units"] is not None:
        unit_col = cols["units"].astype(str)
    elif isinstance(units, str):
        unit_col = pd.Series([units] * len(df), index=df.index)
    else:
        unit_col = variable.map(dict(units))
        if unit_col.isna().any():
            bad = sorted(set(variable[unit_col.isna()]))
            raise InputError(f"units: no units given for variable {bad[0]!r} of {p}")
    value = pd.to_numeric(cols["value"], errors="coerce")
    piece = pd.DataFrame({
        "station_id": cols["station_id"].astype(str),
        "station_name": cols["station_name"] if cols["station_name"] is not None else "",
        "lon": pd.to_numeric(cols["lon"], errors="coerce") if cols["lon"] is not None else np.nan,
        "lat": pd.to_numeric(cols["lat"], errors="coerce") if cols["lat"] is not None else np.nan,
        "time_start": start, "time_end": end,
        "variable": variable, "value": value, "units": unit_col,
    })
    return station_table([piece], p, attrs={"reader": "read_csv_mapped", "hour_ending": hour_ending})
