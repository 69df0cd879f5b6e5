"""Area-average / cell time series exported by web portals (NASA Giovanni, ESA eodash) as CSV.

A *SeriesTable* is a pandas DataFrame, one row per time step of a spatial average over a box:

``time`` datetime64[ns, UTC]
    The time stamp as written in the file (a day for daily products).
``value`` float
    The box average; the file's fill value -> NaN.
``time_start``, ``time_end`` datetime64[ns, UTC]
    The window ``[time_start, time_end)`` the value represents (see ``stamp`` below).

plus, for eodash indicator files, the box statistics ``median``, ``std``, ``max``, ``min`` and
``valid_percent`` of the same field. ``df.attrs`` holds:

``source`` (path), ``name`` (file stem, used as the Matchup ``product``), ``format``
(``"giovanni_area_average"`` or ``"eodash_indicator"``), ``title``, ``variable``, ``column`` (the
value column as written), ``units`` and ``units_source``, ``fill_value`` (float or None), ``box``
(W, S, E, N degrees) and ``box_source`` (which header line or the file name it came from),
``data_box`` (Giovanni's "Data Bounding Box": the centres of the grid cells actually averaged, or
None), ``user_start``/``user_end`` (Giovanni request period, text), ``period`` (window length:
``"1D"``, ``"14D"``, ``"1MS"``, ...), ``stamp`` (``"start"``, ``"center"`` or ``"end"``) and ``notes``
(list of strings: every guess the reader made).

Formats
-------
Giovanni "Time Series, Area-Averaged" (``g4.areaAvgTimeSeries.*.csv`` and renamed copies): header lines
``Title:``, ``User Start Date:``, ``User End Date:``, ``User Bounding Box:`` (W,S,E,N as requested),
``Data Bounding Box:`` (centres of the cells averaged), ``URL to Reproduce Results:``,
``Fill Value (<column>):``, a blank line, then ``time, <column>`` and the rows. The box is the *User*
bounding box (the region the user asked Giovanni to average over); the file name
(``...7E_47N_8E_48N.csv``) is used only when the header has no bounding box. Giovanni CSVs carry no
units: they are inferred from the variable name (MODIS/OMI AOD -> ``1``, OMI ``OMNO2d`` columns ->
``molec cm-2``) and ``units_source`` says so. Daily values are UTC calendar days (MOD08_D3 and
OMNO2d are binned by UTC day).

eodash indicator CSV (``N1*.csv``, ESA/NASA/JAXA Earth Observing Dashboard): one row per time step,
columns ``Time``, ``Measurement Value``, ``Reference value`` (``[median, std, max, min, % valid]``),
``Sub-AOI`` (WKT polygon: the box), ``Y axis`` (name and units), ``Update Frequency``. The 14-day
windows of the Beijing TROPOMI NO2 file are stamped on Mondays, but the file does not say whether the
stamp opens, centres or closes the window: ``stamp`` chooses ``[t, t+14d)``, ``[t-7d, t+7d)`` or
``[t-14d, t)``. The default for these files is ``"end"``: against the Beijing CNEMC stations it fits
far better (r = 0.90 against 0.54 for ``"start"``; ``shared/data/tropomi-no2-beijing-biweekly/SOURCE.txt``),
which is evidence, not documentation; the choice is recorded in ``attrs["notes"]``.

Collocation of a SeriesTable with stations: :func:`rsmon.validate.collocate.collocate_series`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rsmon.errors import FormatError, InputError

log = logging.getLogger(__name__)

__all__ = ["STAMPS", "SeriesTable", "read_giovanni_series", "series_windows"]

#: A SeriesTable is a plain DataFrame following the contract of this module's docstring.
SeriesTable = pd.DataFrame

#: Window conventions of a time stamp ``t`` for a window of length ``P``.
STAMPS = ("start", "center", "end")

_GIOVANNI = "giovanni_area_average"
_EODASH = "eodash_indicator"

# (pattern on the variable name, units) - Giovanni CSVs carry no units.
_UNIT_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"OMNO2d", re.I), "molec cm-2"),  # OMNO2d v003 columns: molecules/cm2 (GES DISC README)
    (re.compile(r"angstrom", re.I), "1"),
    (re.compile(r"optical_?depth|optical_?thickness|(^|_)AOD(_|$)|(^|_)AOT(_|$)", re.I), "1"),
)

# Giovanni names the box as 7E_47N_8E_48N ('p' for a decimal point: dots separate the name's fields)
_BOX_IN_NAME = re.compile(
    r"(?<![\dp])(\d+(?:p\d+)?)([EW])_(\d+(?:p\d+)?)([NS])_(\d+(?:p\d+)?)([EW])_(\d+(?:p\d+)?)([NS])"
)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------

def read_giovanni_series(
    path: str | os.PathLike,
    *,
    stamp: str | None = None,
    period: str | pd.Timedelta | None = None,
    column: str | None = None,
    site: str | None = None,
) -> SeriesTable:
    """Read an area-average time series CSV (NASA Giovanni or ESA eodash) into a SeriesTable.

    Parameters
    ----------
    path : str or path-like
        The CSV file. The format is recognised from its first line.
    stamp : {"start", "center", "end"}, optional
        Where the time stamp ``t`` lies in the window of length ``P`` a value represents:
        ``[t, t+P)``, ``[t-P/2, t+P/2)`` or ``[t-P, t)``. Default ``"start"`` for Giovanni files
        (stamps are calendar days or months) and ``"end"`` for eodash 14-day statistics (see the
        module docstring: a likely but undocumented convention).
    period : str or pandas.Timedelta, optional
        Window length ``P`` (``"1D"``, ``"14D"``, ``"1MS"`` for calendar months). Default: from the
        file (eodash ``Update Frequency``) or the median spacing of the time stamps (28-31 days ->
        calendar month).
    column : str, optional
        Value column of a Giovanni file with more than one data column.
    site : str, optional
        eodash files holding several areas: the ``AOI_ID`` or ``City`` to keep.

    Returns
    -------
    pandas.DataFrame
        A SeriesTable (columns ``time``, ``value``, ``time_start``, ``time_end`` [+ eodash statistics];
        ``attrs`` as in the module docstring), sorted by time.

    Raises
    ------
    FormatError
        The file is missing or unreadable, the time or value column is missing or holds text that is
        not a number or a time, a header line (bounding box, fill value) cannot be parsed, or no
        bounding box is found in the header or the file name. The message names the file and the
        column or header line.
    InputError
        Bad ``stamp`` or ``period``; ``site`` missing or unknown for a multi-area eodash file.
    """
    path = Path(path)
    if stamp is not None and stamp not in STAMPS:
        raise InputError(f"stamp: expected one of {STAMPS}, got {stamp!r}")
    text = _read_text(path)
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    if "Measurement Value" in first and "Time" in first:
        df = _read_eodash(path, text, site)
    else:
        df = _read_giovanni(path, text, column)
    notes: list[str] = df.attrs.setdefault("notes", [])
    if stamp is None:
        stamp = "end" if df.attrs["format"] == _EODASH else "start"
        if df.attrs["format"] == _EODASH:
            notes.append("stamp 'end' assumed: the file does not say whether its time stamp opens, centres "
                         "or closes the window (fits Beijing stations best; SOURCE.txt)")
    step = _period(path, df, period, notes)
    start, end = series_windows(df["time"], step, stamp)
    df["time_start"] = start
    df["time_end"] = end
    df.attrs.update({"period": _period_label(step), "stamp": stamp})
    log.debug("read %s: %d steps of %s (%s)", path, len(df), df.attrs["variable"], df.attrs["period"])
    return df


def series_windows(times: pd.Series, period: str | pd.Timedelta | pd.DateOffset,
                   stamp: str = "start") -> tuple[pd.Series, pd.Series]:
    """Windows ``[start, end)`` of time stamps for a window length and stamp convention.

    Parameters
    ----------
    times : pandas.Series
        Time stamps (datetime64, UTC).
    period : str, pandas.Timedelta or pandas.DateOffset
        Window length; ``"1MS"`` (or a ``DateOffset``) for calendar months.
    stamp : {"start", "center", "end"}
        ``[t, t+P)``, ``[t-P/2, t+P/2)`` or ``[t-P, t)``.

    Returns
    -------
    (pandas.Series, pandas.Series)
        Window starts and ends (exclusive).
    """
    if stamp not in STAMPS:
        raise InputError(f"stamp: expected one of {STAMPS}, got {stamp!r}")
    offset = _as_offset(period)
    times = pd.Series(times).reset_index(drop=True)
    if isinstance(offset, pd.Timedelta):
        length = pd.Series(offset, index=times.index)
    else:  # calendar length: the window that starts (or ends) at t
        length = (times + offset) - times if stamp != "end" else times - (times - offset)
    if stamp == "start":
        return times, times + length
    if stamp == "end":
        return times - length, times
    return times - length / 2, times + length / 2


# --------------------------------------------------------------------------------------------------
# Giovanni
# --------------------------------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _read_giovanni(path: Path, text: str, column: str | None) -> pd.DataFrame:
    lines = text.split("\n")
    header: dict[str, str] = {}
    col_line = None
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        fields = next(csv.reader([line], skipinitialspace=True))
        if fields and fields[0].strip().lower() == "time":
            col_line = n
            break
        key = fields[0].strip().rstrip(":").strip() if fields else ""
        value = ",".join(f.strip() for f in fields[1:]).strip()
        if key:
            header[key] = value
    if col_line is None:
        raise FormatError(f"{path}: no 'time' column header line (expected 'time,<variable>' after the "
                          "Giovanni header lines)")
    names = [c.strip() for c in next(csv.reader([lines[col_line]], skipinitialspace=True))]
    data_cols = [c for c in names[1:] if c]
    if column is not None:
        if column not in data_cols:
            raise FormatError(f"{path}: value column {column!r} not found (columns: {data_cols})")
        value_col = column
    elif len(data_cols) == 1:
        value_col = data_cols[0]
    elif not data_cols:
        raise FormatError(f"{path}: the value column is missing (header line {col_line + 1} has only 'time')")
    else:
        raise FormatError(f"{path}: several value columns {data_cols}; choose one with column=")

    body = "\n".join(lines[col_line:])
    try:
        table = pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, ValueError) as exc:
        raise FormatError(f"{path}: cannot parse the data rows ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    time_col = table.columns[0]
    times = _parse_times(path, table[time_col], time_col)
    values = _parse_numbers(path, table[value_col], value_col)

    notes: list[str] = []
    fill = None
    fill_key = next((k for k in header if k.lower().startswith("fill value")), None)
    if fill_key is not None:
        try:
            fill = float(header[fill_key])
        except ValueError:
            raise FormatError(f"{path}: header line {fill_key!r}: expected a number, got {header[fill_key]!r}") from None
        values = np.where(np.isclose(values, fill, rtol=1e-6, atol=0.0), np.nan, values)
    else:
        notes.append("no 'Fill Value' header line: no value treated as fill")

    box, box_source = None, None
    for key in sorted(header, key=lambda k: (0 if k.lower() == "user bounding box" else
                                              1 if k.lower() == "bounding box" else 2)):
        low = key.lower()
        if "bounding box" in low and not low.startswith("data"):
            box = _parse_box(path, header[key], f"header line {key!r}")
            box_source = f"header: {key}"
            break
    data_box = None
    data_key = next((k for k in header if k.lower() == "data bounding box"), None)
    if data_key is not None:
        data_box = _parse_box(path, header[data_key], f"header line {data_key!r}", allow_point=True)
    if box is None:
        box = _box_from_name(path)
        if box is None:
            raise FormatError(f"{path}: no bounding box: the header has no 'User Bounding Box:' line and the "
                              "file name holds no '<W>E_<S>N_<E>E_<N>N' part")
        box_source = "file name (the header has no bounding box)"
        notes.append("box taken from the file name: the header has no bounding box")

    variable = value_col[5:] if value_col.lower().startswith("mean_") else value_col
    units, units_source = _infer_units(variable)
    if units_source != "unknown":
        units_source = "inferred from the variable name (Giovanni CSV files carry no units)"
    else:
        notes.append(f"units of {variable!r} unknown (Giovanni CSV files carry no units)")
    df = pd.DataFrame({"time": times, "value": values.astype(np.float64)})
    df = df.sort_values("time", kind="stable").reset_index(drop=True)
    df.attrs = {
        "source": str(path),
        "name": path.stem,
        "format": _GIOVANNI,
        "title": header.get("Title", ""),
        "variable": variable,
        "column": value_col,
        "units": units,
        "units_source": units_source,
        "fill_value": fill,
        "box": box,
        "box_source": box_source,
        "data_box": data_box,
        "user_start": header.get("User Start Date", ""),
        "user_end": header.get("User End Date", ""),
        "notes": notes,
    }
    return df


def _parse_box(path: Path, text: str, where: str, allow_point: bool = False) -> tuple[float, float, float, float]:
    parts = [p for p in re.split(r"[,\s]+", text.strip().strip('"')) if p]
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise FormatError(f"{path}: {where}: expected W,S,E,N (four numbers), got {text!r}") from None
    ok = all(math.isfinite(v) for v in (west, south, east, north)) and -90 <= south <= 90 and -90 <= north <= 90
    ok = ok and (south <= north and west <= east if allow_point else south < north and west < east)
    if not ok:
        raise FormatError(f"{path}: {where}: not a W,S,E,N box: {text!r}")
    return (west, south, east, north)


def _box_from_name(path: Path) -> tuple[float, float, float, float] | None:
    match = _BOX_IN_NAME.search(path.name)
    if match is None:
        return None
    g = match.groups()

    def deg(num: str, hemi: str) -> float:
        value = float(num.replace("p", "."))
        return -value if hemi in "WS" else value

    west, south, east, north = deg(g[0], g[1]), deg(g[2], g[3]), deg(g[4], g[5]), deg(g[6], g[7])
    if not (west < east and south < north):
        return None
    return (west, south, east, north)


def _infer_units(variable: str) -> tuple[str, str]:
    for pattern, units in _UNIT_RULES:
        if pattern.search(variable):
            return units, "inferred"
    return "", "unknown"


def _parse_times(path: Path, column: pd.Series, name: str) -> pd.Series:
    text = column.astype(str).str.strip()
    try:
        times = pd.to_datetime(text, utc=True, format="mixed")
    except (ValueError, TypeError):
        bad = next((t for t in text if _not_a_time(t)), text.iloc[0] if len(text) else "")
        raise FormatError(f"{path}: column {name!r}: cannot parse {bad!r} as a time") from None
    if times.isna().any():
        bad = text[times.isna()].iloc[0]
        raise FormatError(f"{path}: column {name!r}: cannot parse {bad!r} as a time")
    return times.astype("datetime64[ns, UTC]")


def _not_a_time(text: str) -> bool:
    try:
        pd.Timestamp(text)
        return False
    except (ValueError, TypeError):
        return True


def _parse_numbers(path: Path, column: pd.Series, name: str) -> np.ndarray:
    text = column.astype(str).str.strip()
    values = pd.to_numeric(text.where(text != "", None), errors="coerce")
    bad = values.isna() & (text != "") & ~text.str.lower().isin(("nan", "na", "n/a", "null", "none", "-"))
    if bad.any():
        raise FormatError(f"{path}: column {name!r}: {text[bad].iloc[0]!r} is not a number")
    return values.to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# eodash
# --------------------------------------------------------------------------------------------------

_WKT_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_FREQUENCIES = {"daily": "1D", "weekly": "7D", "bi-weekly": "14D", "biweekly": "14D", "monthly": "1MS"}


def _read_eodash(path: Path, text: str, site: str | None) -> pd.DataFrame:
    try:
        table = pd.read_csv(io.StringIO(text.lstrip("\ufeff")), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise FormatError(f"{path}: cannot parse as an eodash indicator CSV ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    for col in ("Time", "Measurement Value"):
        if col not in table.columns:
            raise FormatError(f"{path}: column {col!r} is missing (eodash indicator CSV)")
    areas = sorted(set(table["AOI_ID"])) if "AOI_ID" in table.columns else []
    if site is not None:
        keep = np.zeros(len(table), dtype=bool)
        for col in ("AOI_ID", "City"):
            if col in table.columns:
                keep |= (table[col].str.strip() == site).to_numpy()
        if not keep.any():
            raise InputError(f"site: {site!r} is not an AOI_ID or City of {path} (AOI_IDs: {areas})")
        table = table[keep]
    elif len(areas) > 1:
        raise InputError(f"site: {path} holds several areas {areas}; choose one with site=")
    if table.empty:
        raise FormatError(f"{path}: no data rows")
    table = table.reset_index(drop=True)
    times = _parse_times(path, table["Time"], "Time")
    values = _parse_numbers(path, table["Measurement Value"], "Measurement Value")

    notes: list[str] = []
    box, box_source = None, None
    if "Sub-AOI" in table.columns and table["Sub-AOI"].str.strip().ne("").any():
        wkt = table.loc[table["Sub-AOI"].str.strip() != "", "Sub-AOI"].iloc[0]
        numbers = [float(x) for x in _WKT_NUMBER.findall(wkt)]
        if "POLYGON" not in wkt.upper() or len(numbers) < 6 or len(numbers) % 2:
            raise FormatError(f"{path}: column 'Sub-AOI': expected a WKT polygon, got {wkt[:80]!r}")
        lon, lat = numbers[0::2], numbers[1::2]
        # WKT text such as 116.14999999999999: round away the float noise of the exporter
        box = tuple(round(v, 9) for v in (min(lon), min(lat), max(lon), max(lat)))
        box_source = "header: Sub-AOI polygon (its bounding box)"
    if box is None:
        box = _box_from_name(path)
        if box is None:
            raise FormatError(f"{path}: no bounding box: column 'Sub-AOI' is missing or empty and the file "
                              "name holds no '<W>E_<S>N_<E>E_<N>N' part")
        box_source = "file name (the file has no Sub-AOI polygon)"

    y_axis = table["Y axis"].iloc[0].strip() if "Y axis" in table.columns else ""
    match = re.match(r"^(.*?)\s*\((.*)\)\s*$", y_axis)
    variable, units = (match.group(1), match.group(2)) if match else (y_axis, "")
    units = units.replace("μ", "u").replace("µ", "u").replace("/m2", " m-2").replace("/m^2", " m-2")
    if not units:
        notes.append("units unknown (no 'Y axis' column)")
    df = pd.DataFrame({"time": times, "value": values})
    if "Reference value" in table.columns:
        stats = np.full((len(table), 5), np.nan)
        for i, cell in enumerate(table["Reference value"]):
            nums = _WKT_NUMBER.findall(cell)
            if len(nums) == 5:
                stats[i] = [float(x) for x in nums]
        for k, name in enumerate(("median", "std", "max", "min", "valid_percent")):
            df[name] = stats[:, k]
    df = df.sort_values("time", kind="stable").reset_index(drop=True)
    freq = table["Update Frequency"].iloc[0].strip() if "Update Frequency" in table.columns else ""
    title = table["Indicator Name"].iloc[0].strip() if "Indicator Name" in table.columns else ""
    df.attrs = {
        "source": str(path),
        "name": path.stem,
        "format": _EODASH,
        "title": title,
        "variable": variable or "value",
        "column": "Measurement Value",
        "units": units,
        "units_source": "file ('Y axis' column)" if units else "unknown",
        "fill_value": None,
        "box": box,
        "box_source": box_source,
        "data_box": None,
        "user_start": "",
        "user_end": "",
        "frequency": freq,
        "notes": notes,
    }
    return df


# --------------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------------

def _as_offset(period: Any) -> pd.Timedelta | pd.DateOffset:
    if isinstance(period, pd.DateOffset) and not isinstance(period, pd.offsets.Tick):
        return period
    if isinstance(period, str):
        match = re.fullmatch(r"\s*(\d*)\s*MS?\s*", period.upper())
        if match:  # pandas offset aliases: "M"/"MS" are calendar months
            months = int(match.group(1) or 1)
            if months <= 0:
                raise InputError(f"period: must be positive, got {period!r}")
            return pd.DateOffset(months=months)
    try:
        td = pd.Timedelta(period)
    except (ValueError, TypeError):
        raise InputError(f"period: expected a duration like '1D', '14D' or '1MS', got {period!r}") from None
    if td <= pd.Timedelta(0):
        raise InputError(f"period: must be positive, got {period!r}")
    return td


def _period(path: Path, df: pd.DataFrame, period: Any, notes: list[str]) -> pd.Timedelta | pd.DateOffset:
    if period is not None:
        return _as_offset(period)
    freq = str(df.attrs.get("frequency", "")).strip().lower()
    if freq in _FREQUENCIES:
        return _as_offset(_FREQUENCIES[freq])
    times = df["time"]
    if len(times) < 2:
        notes.append("one time step: window length 1 day assumed")
        return pd.Timedelta("1D")
    step = times.diff().dropna().median()
    if step == pd.Timedelta("1D"):
        return step
    if pd.Timedelta("28D") <= step <= pd.Timedelta("31D"):
        return pd.DateOffset(months=1)
    notes.append(f"window length {step} taken from the median spacing of the time stamps")
    return step


def _period_label(step: pd.Timedelta | pd.DateOffset) -> str:
    if isinstance(step, pd.Timedelta):
        if step % pd.Timedelta("1D") == pd.Timedelta(0):
            return f"{step.days}D"
        return str(step)
    return f"{getattr(step, 'months', 1)}MS"
