"""China national air-quality network (CNEMC) readers (the PRSA series: :mod:`rsmon.io.stations_prsa`).

Conventions (sources: ``shared/reference/atmos.md`` section 5.2; the data folders' SOURCE.txt;
checks on the real files, quoted in each docstring):

* **Hour-ending Beijing time.** CNEMC labels an hourly value by the END of its hour, in Beijing
  time (UTC+8): the value labelled hour ``h`` of date ``d`` is the mean of ``[d h-1:00, d h:00)``
  Beijing = ``[d h-9:00, d h-8:00)`` UTC (HeQinWill/CNEMC README: "16时" is the mean of 15:00-16:00).
  Hour 0 of date ``d`` therefore covers 23:00-24:00 of the day before. The national daily files
  (quotsoft.net mirror) carry hours 0-23 and are taken to carry these labels unchanged; the other
  CNEMC-derived series here (1410A, PRSA) share them value for value, but no independent timing
  source was available to confirm the mirror's labels.
* **Units.** ug m-3 for PM2.5, PM10, SO2, NO2, O3; mg m-3 for CO; AQI is unitless (``"1"``).
* **Reference state.** On 2018-09-01 CNEMC moved gases (SO2, NO2, O3, CO) from the 273.15 K standard
  state to the 298.15 K reference state (Jin et al., Atmosphere 11, 1199, 2020); the readers record
  which state the rows are in (``df.attrs["reference_state"]``), :mod:`rsmon.io.stations_units`
  converts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from rsmon.errors import FormatError, InputError
from rsmon.io.stations_common import (
    BEIJING_UTC_OFFSET,
    decode_text,
    header_only,
    hour_ending_interval,
    join_sites,
    read_csv_text,
    require_columns,
    source_file,
    station_table,
    utc_naive,
)
from rsmon.io.stations_units import reference_state_of

log = logging.getLogger(__name__)

__all__ = [
    "CNEMC_TYPES",
    "SITELIST_ENCODINGS",
    "read_cnemc_national_daily",
    "read_cnemc_sitelist",
    "read_cnemc_station_hourly",
    "read_cnemc_wide_hourly",
]

#: Encodings tried for CNEMC text files, in order (the site list is GB18030/GBK).
SITELIST_ENCODINGS: tuple[str, ...] = ("utf-8-sig", "gb18030")

#: Site-list header (Chinese, as in NewSiteList.csv) -> our column.
_SITELIST_COLUMNS = {
    "监测点编码": "station_id", "监测点名称": "station_name", "城市": "city", "经度": "lon", "纬度": "lat",
    "对照点": "is_control", "省级行政区": "province", "地级行政区": "prefecture",
}

#: CNEMC pollutant type (as in the files' ``type`` column / column headers) -> (variable, units).
CNEMC_TYPES: dict[str, tuple[str, str]] = {
    "AQI": ("aqi", "1"),
    "PM2.5": ("pm25", "ug m-3"),
    "PM10": ("pm10", "ug m-3"),
    "SO2": ("so2", "ug m-3"),
    "NO2": ("no2", "ug m-3"),
    "O3": ("o3", "ug m-3"),
    "CO": ("co", "mg m-3"),
}

#: Rolling-window suffixes of the national daily files -> averaging window ending at the label
#: (CNEMC release note quoted in HeQinWill/CNEMC README: the 8-h moving mean is the mean of the 8 hourly
#: values before the current hour). ``O3_8h_24h`` (the largest 8-h mean of the last 24 h) is given the
#: 24 h window in which its 8-h means end.
_ROLLING = {"_24h": pd.Timedelta(hours=24), "_8h": pd.Timedelta(hours=8), "_8h_24h": pd.Timedelta(hours=24)}

_STATION_CODE = re.compile(r"^\d{4}[A-Z]$")


# --------------------------------------------------------------------------------------------------
# Site list
# --------------------------------------------------------------------------------------------------

def read_cnemc_sitelist(path: str | Path, *, encodings: Iterable[str] = SITELIST_ENCODINGS) -> pd.DataFrame:
    """Read the CNEMC national station list (``NewSiteList.csv``).

    The file is GB18030/GBK encoded (``cnemc-stations/SOURCE.txt``); the encodings are tried in
    order (UTF-8 with or without BOM first, then GB18030, a superset of GBK).

    Parameters
    ----------
    path : str or Path
        Site-list CSV with the header ``监测点编码, 监测点名称, 城市, 经度, 纬度, 对照点, 省级行政区,
        地级行政区`` (or the English column names this function returns).
    encodings : iterable of str
        Encodings to try, in order.

    Returns
    -------
    DataFrame
        ``station_id`` (e.g. ``1001A``), ``station_name``, ``city``, ``lon``, ``lat`` (degrees,
        WGS84; NaN for the few sites without coordinates), ``is_control`` (bool: background /
        对照点 site), ``province``, ``prefecture``; ``attrs["encoding"]`` records the encoding used.

    Raises
    ------
    FormatError
        Missing or empty file, no encoding fits (the message names the encodings tried), or a
        required column (code, name, lon, lat) is missing.
    NoDataError
        Header only.
    """
    p = source_file(path)
    text, enc = decode_text(p, encodings)
    df = read_csv_text(text, p, dtype=str, keep_default_na=False, na_values=[""])
    df.columns = [str(c).strip() for c in df.columns]
    chinese = {v: k for k, v in _SITELIST_COLUMNS.items()}
    for col in ("station_id", "station_name", "lon", "lat"):
        if col not in df.columns and chinese[col] not in df.columns:
            raise FormatError(f"{p}: missing column {chinese[col]!r} ({col}); "
                              f"found {', '.join(map(str, df.columns))}")
    df = df.rename(columns=_SITELIST_COLUMNS)
    header_only(df, p)
    out = pd.DataFrame({
        "station_id": df["station_id"].str.strip().astype(str),
        "station_name": df["station_name"].fillna("").astype(str),
        "city": df.get("city", pd.Series("", index=df.index)).fillna("").astype(str),
        "lon": pd.to_numeric(df["lon"], errors="coerce").astype("float64"),
        "lat": pd.to_numeric(df["lat"], errors="coerce").astype("float64"),
        "is_control": df.get("is_control", pd.Series("N", index=df.index)).fillna("N").str.strip()
        .str.upper().eq("Y"),
        "province": df.get("province", pd.Series("", index=df.index)).fillna("").astype(str),
        "prefecture": df.get("prefecture", pd.Series("", index=df.index)).fillna("").astype(str),
    })
    out.attrs["encoding"] = enc
    out.attrs["source"] = str(p)
    return out


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

def cnemc_variable(kind: str) -> tuple[str, str, pd.Timedelta]:
    """CNEMC type (``NO2``, ``PM2.5_24h``, ``O3_8h``) -> (variable, units, averaging window)."""
    for suffix in ("_8h_24h", "_24h", "_8h"):
        if kind.endswith(suffix) and kind[: -len(suffix)] in CNEMC_TYPES:
            var, units = CNEMC_TYPES[kind[: -len(suffix)]]
            return var + suffix.lower(), units, _ROLLING[suffix]
    var, units = CNEMC_TYPES[kind]
    return var, units, pd.Timedelta(hours=1)


def _known_types(kinds: Iterable[str]) -> dict[str, str]:
    """Lookup (lower-case type or variable name) -> file type, for the types in ``kinds``."""
    table: dict[str, str] = {}
    for k in kinds:
        try:
            var, _, _ = cnemc_variable(k)
        except KeyError:
            continue
        table[k.lower()] = k
        table[var] = k
    return table


def _select_types(requested: Iterable[str] | str | None, present: Iterable[str], path: Path) -> list[str]:
    present = [k for k in present if isinstance(k, str)]
    lookup = _known_types(present)
    if requested is None:  # the hourly values only (no rolling _24h/_8h variants)
        return [k for k in present if k in CNEMC_TYPES]
    if isinstance(requested, str):
        requested = [requested]
    chosen = []
    for r in requested:
        k = lookup.get(str(r).lower())
        if k is None:
            raise InputError(f"variables: {r!r} is not among the types of {path} "
                             f"({', '.join(sorted(set(lookup.values())))})")
        chosen.append(k)
    return list(dict.fromkeys(chosen))


def _label_times(date: pd.Series, hour: pd.Series, path: Path) -> pd.Series:
    """CNEMC ``date`` (YYYYMMDD) + ``hour`` (0-23) -> naive Beijing label time."""
    d = pd.to_datetime(date.astype("Int64").astype(str), format="%Y%m%d", errors="coerce")
    h = pd.to_numeric(hour, errors="coerce")
    bad = d.isna() | h.isna() | (h < 0) | (h > 23)
    if bad.any():
        i = bad.to_numpy().nonzero()[0][0]
        raise FormatError(f"{path}: column 'date'/'hour' has an invalid value at data row {i + 1} "
                          f"(date={date.iloc[i]!r}, hour={hour.iloc[i]!r}; expected YYYYMMDD and 0-23)")
    return d + pd.to_timedelta(h, unit="h")


def cnemc_table(pieces: list[pd.DataFrame], path: Path, reader: str, extra: dict | None = None) -> pd.DataFrame:
    """Station table of the pieces, with the CNEMC reader notes (time convention, reference state)."""
    out = station_table(pieces, path, attrs={
        "reader": reader, "time_convention": "hour-ending Beijing time (UTC+8), converted to UTC intervals"})
    out.attrs["reference_state"] = reference_state_of(out["time_end"])
    out.attrs.update(extra or {})
    return out


def _station_id_filter(station_ids: Iterable[str] | str | None) -> list[str] | None:
    if station_ids is None:
        return None
    return [station_ids] if isinstance(station_ids, str) else [str(s) for s in station_ids]


# --------------------------------------------------------------------------------------------------
# National daily files (china_sites_YYYYMMDD.csv)
# --------------------------------------------------------------------------------------------------

def read_cnemc_national_daily(path: str | Path, sites: pd.DataFrame | str | Path | None = None,
                              variables: Iterable[str] | str | None = None, *,
                              station_ids: Iterable[str] | str | None = None) -> pd.DataFrame:
    """Read a CNEMC national daily file ``china_sites_YYYYMMDD.csv`` into a Station table.

    Layout (``cnemc-sites-daily/SOURCE.txt``): ``date, hour, type, <site codes...>``; one row per
    hour and pollutant type (``AQI, PM2.5, PM2.5_24h, PM10, PM10_24h, SO2, SO2_24h, NO2, NO2_24h,
    O3, O3_24h, O3_8h, O3_8h_24h, CO, CO_24h``), one column per station; empty = missing. Hours can
    be absent (2017-01-01 lacks hours 13, 14, 17, 20 and 23).

    Times: ``hour`` is the hour-ending label in Beijing time, so the row (``d``, ``h``) covers
    ``[d h-1:00, d h:00)`` Beijing = ``[d h-9:00, d h-8:00)`` UTC. Rolling types cover the window
    ending at the label: ``*_24h`` 24 h, ``O3_8h`` 8 h.

    Parameters
    ----------
    path : str or Path
        The daily CSV.
    sites : DataFrame or path, optional
        Site list (:func:`read_cnemc_sitelist`) to fill ``station_name``, ``lon``, ``lat``.
    variables : str or iterable of str, optional
        Types to keep, by file name (``"NO2"``, ``"PM2.5_24h"``) or variable (``"no2"``,
        ``"pm25_24h"``). Default: the hourly types only (aqi, pm25, pm10, so2, no2, o3, co).
    station_ids : str or iterable of str, optional
        Site codes to keep (others are not even parsed).

    Returns
    -------
    DataFrame
        Station table; units ug m-3 (PM, SO2, NO2, O3), mg m-3 (CO), 1 (AQI).
        ``attrs["reference_state"]`` is ``"273K"`` before 2018-09-01, ``"298K"`` from then on.

    Raises
    ------
    FormatError
        Missing/empty/undecodable file, missing ``date``/``hour``/``type`` column, a requested
        station column absent, or bad dates/hours.
    InputError
        A requested variable the file does not hold.
    NoDataError
        No rows, or no value left.
    """
    p = source_file(path)
    text, _ = decode_text(p, SITELIST_ENCODINGS)
    wanted = _station_id_filter(station_ids)
    header = read_csv_text(text, p, nrows=0)
    require_columns(header.columns, ("date", "hour", "type"), p)
    if wanted is not None:
        absent = [s for s in wanted if s not in header.columns]
        if absent:
            raise FormatError(f"{p}: missing column {absent[0]!r} (station code asked for in station_ids)")
        usecols = ["date", "hour", "type", *wanted]
    else:
        usecols = None
    df = read_csv_text(text, p, usecols=usecols, dtype={"type": str})
    header_only(df, p)
    kinds = _select_types(variables, df["type"].dropna().unique(), p)
    df = df[df["type"].isin(kinds)]
    stations = [c for c in df.columns if c not in ("date", "hour", "type")]
    label = _label_times(df["date"], df["hour"], p)
    values = df[stations].apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64")
    n_rows, n_st = values.shape
    pieces = []
    for kind in kinds:
        rows = (df["type"] == kind).to_numpy()
        if not rows.any():
            continue
        var, units, window = cnemc_variable(kind)
        start, end = hour_ending_interval(label[rows], BEIJING_UTC_OFFSET, window)
        k = int(rows.sum())
        pieces.append(pd.DataFrame({
            "station_id": np.tile(np.asarray(stations, dtype=object), k),
            "time_start": np.repeat(utc_naive(start), n_st),
            "time_end": np.repeat(utc_naive(end), n_st),
            "variable": var, "value": values[rows].ravel(), "units": units,
        }))
    pieces = [join_sites(piece, sites) for piece in pieces]
    return cnemc_table(pieces, p, "read_cnemc_national_daily")


# --------------------------------------------------------------------------------------------------
# One station's long series (PM2.5NO2SO2O3CO_1410A.csv)
# --------------------------------------------------------------------------------------------------

def read_cnemc_station_hourly(path: str | Path, station_id: str | None = None,
                              sites: pd.DataFrame | str | Path | None = None) -> pd.DataFrame:
    """Read one CNEMC station's hourly series (``datetime, PM2.5, O3, NO2, CO, SO2``).

    Times: ``datetime`` is the CNEMC hour-ending label in Beijing time. Evidence: for site 1410A
    the series equals the national daily files value for value when ``datetime == date + hour``
    (455 of 455 values on 2017-01-01, 2019-01-12, 2019-06-12 and 2019-10-20; shifting by one hour
    either way leaves 26-34 % equal), so it carries the same labels as those files, which are hour-ending
    (atmos.md 5.2). ``SOURCE.txt`` says "local time (UTC+8)" without the convention.

    Parameters
    ----------
    path : str or Path
        The CSV (``cnemc-stations/PM2.5NO2SO2O3CO_1410A.csv``); any subset of the pollutant
        columns ``PM2.5, PM10, SO2, NO2, O3, CO, AQI`` is read.
    station_id : str, optional
        Site code; default taken from the file name (``..._1410A.csv``).
    sites : DataFrame or path, optional
        Site list for name and coordinates.

    Returns
    -------
    DataFrame
        Station table (ug m-3, CO mg m-3). A series spanning 2018-09-01 has
        ``attrs["reference_state"] == "as_reported"``: gases are in the 273 K state before the
        change and in the 298 K state after it; use :func:`harmonise_reference_state`.

    Raises
    ------
    InputError
        No ``station_id`` given and none in the file name.
    FormatError
        Missing ``datetime`` column or no pollutant column; times that do not parse.
    NoDataError
        No rows / no values.
    """
    p = source_file(path)
    if station_id is None:
        m = re.search(r"(\d{4}[A-Z])(?=\.[A-Za-z]+$)", p.name)
        if m is None:
            raise InputError(f"station_id: not given and not found in the file name {p.name!r} "
                             "(expected e.g. PM2.5NO2SO2O3CO_1410A.csv)")
        station_id = m.group(1)
    text, _ = decode_text(p, SITELIST_ENCODINGS)
    df = read_csv_text(text, p)
    require_columns(df.columns, ("datetime",), p)
    kinds = [c for c in df.columns if c in CNEMC_TYPES]
    if not kinds:
        raise FormatError(f"{p}: missing pollutant columns (expected some of {', '.join(CNEMC_TYPES)})")
    header_only(df, p)
    try:
        label = pd.to_datetime(df["datetime"], format="%Y-%m-%d %H:%M:%S")
    except ValueError as exc:
        raise FormatError(f"{p}: column 'datetime' has times that do not parse as YYYY-mm-dd HH:MM:SS: {exc}") from None
    start, end = hour_ending_interval(label, BEIJING_UTC_OFFSET)
    pieces = []
    for kind in kinds:
        var, units, _ = cnemc_variable(kind)
        pieces.append(pd.DataFrame({"station_id": station_id, "time_start": start, "time_end": end,
                                    "variable": var, "value": pd.to_numeric(df[kind], errors="coerce"),
                                    "units": units}))
    pieces = [join_sites(piece, sites) for piece in pieces]
    return cnemc_table(pieces, p, "read_cnemc_station_hourly")


# --------------------------------------------------------------------------------------------------
# Wide extracts (date, hour, one column per station)
# --------------------------------------------------------------------------------------------------

def read_cnemc_wide_hourly(path: str | Path, sites: pd.DataFrame | str | Path | None = None, *,
                           variable: str | None = None) -> pd.DataFrame:
    """Read a wide CNEMC extract: ``date, hour, <station codes...>``, one pollutant per file.

    The extracts of ``cnemc-no2-2019-beijing-wuhan`` are the NO2 rows of the national daily files
    with their values unchanged (``SOURCE.txt``), so the same convention applies: hour-ending
    labels in Beijing time.

    Parameters
    ----------
    path : str or Path
        The CSV.
    sites : DataFrame or path, optional
        Site list for names and coordinates.
    variable : str, optional
        The pollutant (``"NO2"`` or ``"no2"``...). Default: found in the file name
        (``cnemc_beijing_1001A-1012A_NO2_hourly_2019.csv``).

    Returns
    -------
    DataFrame
        Station table.

    Raises
    ------
    InputError
        ``variable`` not given and not in the file name, or unknown.
    FormatError
        Missing ``date``/``hour`` column, or no station-code column.
    NoDataError
        No rows / no values.
    """
    p = source_file(path)
    lookup = _known_types(CNEMC_TYPES)
    if variable is None:
        hits = [(m.start(), k) for k in CNEMC_TYPES
                for m in [re.search(rf"(?<![A-Za-z0-9.]){re.escape(k)}(?![A-Za-z0-9])", p.stem)] if m]
        if not hits:
            raise InputError(f"variable: not given and no pollutant ({', '.join(CNEMC_TYPES)}) "
                             f"in the file name {p.name!r}")
        kind = min(hits)[1]
    else:
        kind = lookup.get(str(variable).lower())
        if kind is None:
            raise InputError(f"variable: {variable!r} is not a CNEMC pollutant ({', '.join(CNEMC_TYPES)})")
    text, _ = decode_text(p, SITELIST_ENCODINGS)
    df = read_csv_text(text, p)
    require_columns(df.columns, ("date", "hour"), p)
    stations = [c for c in df.columns if _STATION_CODE.match(str(c))]
    if not stations:
        raise FormatError(f"{p}: missing station columns (no column named like a site code, e.g. 1001A)")
    header_only(df, p)
    label = _label_times(df["date"], df["hour"], p)
    var, units, _ = cnemc_variable(kind)
    start, end = hour_ending_interval(label, BEIJING_UTC_OFFSET)
    values = df[stations].apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64")
    n = len(df)
    piece = pd.DataFrame({
        "station_id": np.tile(np.asarray(stations, dtype=object), n),
        "time_start": np.repeat(utc_naive(start), len(stations)),
        "time_end": np.repeat(utc_naive(end), len(stations)),
        "variable": var, "value": values.ravel(), "units": units,
    })
    piece = join_sites(piece, sites)
    return cnemc_table([piece], p, "read_cnemc_wide_hourly")
