"""AERONET Version 3 readers: direct-sun AOD (``.lev10/.lev15/.lev20``, web ``.txt``) and inversions (``.all``).

Format (``shared/reference/atmos.md`` 4.1; pyaerocom ``read_aeronet_sunv3.py``): comma-separated,
a few header lines (``AERONET Version 3``; site; ``Version 3: AOD Level 1.5``; a description; the
PI contact; ``Daily Averages,UNITS can be found at...`` or ``All Points,...``), then the column-name
row and the data. The number of header lines varies between downloads (the web service adds an
``AERONET Data Download`` line and may drop the averaging line), so the column-name row is found
by content: the first line starting with ``Date(dd:mm:yyyy)``, ``AERONET_Site`` or ``Site,``.
Missing values are ``-999``; bytes are Latin-1 (PI names such as ``Guzm\\xe1n``); columns are
read by NAME, never by position. Times are UTC.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from rsmon.errors import FormatError
from rsmon.io.stations_common import (
    decode_text,
    header_only,
    read_csv_text,
    require_columns,
    source_file,
    station_table,
)

log = logging.getLogger(__name__)

__all__ = ["aod_550_from_angstrom", "read_aeronet", "read_aeronet_inversion"]

_HEADER_STARTS = ("Date(dd:mm:yyyy)", "AERONET_Site", "Site,Date(dd:mm:yyyy)")
_MAX_PREAMBLE = 20
_AOD_COLUMN = re.compile(r"^AOD_(\d{3,4})nm$")
_AOD_INVERSION_COLUMN = re.compile(r"^AOD_Coincident_Input\[(\d{3,4})nm\]$")
_SITE_COLUMNS = ("AERONET_Site_Name", "AERONET_Site", "Site")
_DAY = pd.Timedelta(days=1)


def aod_550_from_angstrom(aod_500, aod_440, angstrom_440_870):
    """AOD at 550 nm from AOD at 500 nm (or 440 nm) and the 440-870 nm Angstrom exponent.

    ``tau550 = tau500 (550/500)^-alpha``, falling back to ``tau440 (550/440)^-alpha`` where tau500
    is missing (pyaerocom ``calc_od550aer``, the AERONET convention quoted in atmos.md 4.1; AERONET
    files have no 550 nm column).

    Parameters
    ----------
    aod_500, aod_440 : array-like or None
        AOD (unitless) at 500 and 440 nm; NaN where missing. ``None`` when the column is absent.
    angstrom_440_870 : array-like
        Angstrom exponent over 440-870 nm (unitless).

    Returns
    -------
    ndarray
        AOD at 550 nm; NaN where neither wavelength or the exponent is available.
    """
    alpha = np.asarray(angstrom_440_870, dtype="float64")
    out = np.full(alpha.shape, np.nan)
    if aod_440 is not None:
        out = np.asarray(aod_440, dtype="float64") * (550.0 / 440.0) ** (-alpha)
    if aod_500 is not None:
        from500 = np.asarray(aod_500, dtype="float64") * (550.0 / 500.0) ** (-alpha)
        out = np.where(np.isfinite(from500), from500, out)
    return out


def _is_header_row(line: str) -> bool:
    """The column-name row: starts like one, or names Date/AOD columns (a row of values never does)."""
    line = line.strip()
    if line.startswith(_HEADER_STARTS):
        return True
    fields = [f.strip() for f in line.split(",")]
    return len(fields) > 3 and ("Date(dd:mm:yyyy)" in fields or any(
        _AOD_COLUMN.match(f) or _AOD_INVERSION_COLUMN.match(f) for f in fields))


def _split(path: Path) -> tuple[list[str], pd.DataFrame]:
    """(preamble lines, data frame with -999 -> NaN) of an AERONET V3 text file."""
    text, _ = decode_text(path, ("latin-1",))
    lines = text.splitlines()
    for i, line in enumerate(lines[:_MAX_PREAMBLE]):
        if _is_header_row(line):
            break
    else:
        raise FormatError(f"{path}: no AERONET column-name row (a line starting with 'Date(dd:mm:yyyy)', "
                          f"'AERONET_Site' or 'Site,', or naming AOD_XXXnm columns) in the first "
                          f"{_MAX_PREAMBLE} lines; not an AERONET V3 file?")
    preamble = [ln.strip() for ln in lines[:i]]
    body = "\n".join(ln.strip() for ln in lines[i:])
    df = read_csv_text(body, path, low_memory=False)
    df.columns = [str(c).strip() for c in df.columns]
    num = df.select_dtypes("number").columns
    df[num] = df[num].mask(df[num] <= -998.5)  # -999 (and -999.000000) = missing
    return preamble, df


def _times(df: pd.DataFrame, path: Path) -> pd.Series:
    require_columns(df.columns, ("Date(dd:mm:yyyy)",), path)
    date = df["Date(dd:mm:yyyy)"].astype(str).str.strip()
    if "Time(hh:mm:ss)" in df.columns:
        text = date + " " + df["Time(hh:mm:ss)"].astype(str).str.strip()
        fmt = "%d:%m:%Y %H:%M:%S"
    else:
        text, fmt = date, "%d:%m:%Y"
    try:
        t = pd.to_datetime(text, format=fmt, utc=True)
    except ValueError as exc:
        raise FormatError(f"{path}: column 'Date(dd:mm:yyyy)'/'Time(hh:mm:ss)' has times that do not parse: "
                          f"{exc}") from None
    return pd.Series(t, index=df.index).astype("datetime64[ns, UTC]")


def _site(df: pd.DataFrame, preamble: list[str], path: Path, lat: str, lon: str, elev: str):
    """(site ids, lon, lat, elevation) per row, from the file's columns (preamble line 2 as fallback)."""
    site_col = next((c for c in _SITE_COLUMNS if c in df.columns), None)
    if site_col is not None:
        ids = df[site_col].astype(str).str.strip()
    else:
        # the site name is the line after "AERONET Version 3" in the header
        at = next((k for k, ln in enumerate(preamble) if ln.startswith("AERONET Version")), None)
        name = preamble[at + 1] if at is not None and at + 1 < len(preamble) else path.stem
        ids = pd.Series(name, index=df.index)
    geo = [pd.to_numeric(df[c], errors="coerce") if c in df.columns else pd.Series(np.nan, index=df.index)
           for c in (lon, lat, elev)]
    return ids, geo[0], geo[1], geo[2]


def _elevations(ids: pd.Series, elev: pd.Series) -> dict[str, float]:
    """{site: elevation (m)}, the first value per site."""
    first = pd.Series(elev.to_numpy(), index=ids.to_numpy()).groupby(level=0).first()
    return {str(k): float(v) for k, v in first.items()}


def _level(preamble: list[str]) -> str:
    for line in preamble:
        m = re.search(r"Level\s+(\d\.\d)", line)
        if m:
            return m.group(1)
    return ""


def _rows(ids, lon, lat, start, end, variable: str, values) -> pd.DataFrame:
    return pd.DataFrame({"station_id": ids, "station_name": ids, "lon": lon, "lat": lat,
                         "time_start": start, "time_end": end, "variable": variable,
                         "value": np.asarray(values, dtype="float64"), "units": "1"})


def read_aeronet(path: str | Path) -> pd.DataFrame:
    """Read an AERONET Version 3 direct-sun AOD file (all points or daily averages).

    Parameters
    ----------
    path : str or Path
        ``*.lev10``, ``*.lev15``, ``*.lev20`` or a web-service ``*.txt`` download.

    Returns
    -------
    DataFrame
        Station table with, for every ``AOD_XXXnm`` column holding data, ``aod_XXX`` (unitless);
        ``angstrom_440_870`` (``440-870_Angstrom_Exponent``); and the derived ``aod_550``
        (:func:`aod_550_from_angstrom`). ``station_id`` = ``station_name`` = the AERONET site name,
        lon/lat from ``Site_Longitude(Degrees)``/``Site_Latitude(Degrees)``.
        Times: all-points rows are instantaneous (``time_start == time_end``, UTC). Daily averages
        cover the UTC day: ``time_start`` = 00:00 UTC, ``time_end`` = next day 00:00 UTC; they are
        recognised by ``Daily Averages`` in the header lines, by ``N[...]`` count columns, by
        a missing ``Time(hh:mm:ss)`` column, or (no ``All Points`` line) by ``Time = 00:00:00`` on
        every row. The real daily files of ``aeronet-switzerland-giovanni`` and ``aeronet-turlock``
        carry ``Time = 12:00:00`` on every row, so the time of day alone cannot tell them apart. ``attrs``: ``aeronet_level`` (``"1.5"``...), ``averaging``
        (``"daily"``/``"all points"``), ``elevation_m`` ({site: m}).

    Raises
    ------
    FormatError
        Missing/empty file, no column-name row, no ``Date(dd:mm:yyyy)`` or no ``AOD_XXXnm`` column
        (an inversion file: use :func:`read_aeronet_inversion`), monthly averages (not supported).
    NoDataError
        No data rows, or every AOD is -999.
    """
    p = source_file(path)
    preamble, df = _split(p)
    if any("Monthly Averages" in ln for ln in preamble):
        raise FormatError(f"{p}: AERONET monthly averages are not supported (read daily or all-points files)")
    aod_cols = {c: _AOD_COLUMN.match(c).group(1) for c in df.columns if _AOD_COLUMN.match(c)}
    if not aod_cols:
        hint = " (an inversion file? use read_aeronet_inversion)" if any(
            "Inversion" in ln for ln in preamble) or any(_AOD_INVERSION_COLUMN.match(c) for c in df.columns) else ""
        raise FormatError(f"{p}: missing column 'AOD_XXXnm' (no direct-sun AOD column){hint}")
    header_only(df, p)
    t = _times(df, p)
    daily = (any("Daily Averages" in ln for ln in preamble) or "Time(hh:mm:ss)" not in df.columns
             or any(c.startswith("N[") for c in df.columns)
             or (not any("All Points" in ln for ln in preamble)
                 and df["Time(hh:mm:ss)"].astype(str).str.strip().eq("00:00:00").all()))
    if daily:
        start = t.dt.floor("D")
        end = start + _DAY
    else:
        start = end = t
    ids, lon, lat, elev = _site(df, preamble, p, "Site_Latitude(Degrees)", "Site_Longitude(Degrees)",
                                "Site_Elevation(m)")
    pieces = []
    for col, wl in sorted(aod_cols.items(), key=lambda kv: int(kv[1])):
        if df[col].notna().any():
            pieces.append(_rows(ids, lon, lat, start, end, f"aod_{wl}", df[col]))
    alpha = df["440-870_Angstrom_Exponent"] if "440-870_Angstrom_Exponent" in df.columns else None
    if alpha is not None:
        pieces.append(_rows(ids, lon, lat, start, end, "angstrom_440_870", alpha))
        aod550 = aod_550_from_angstrom(df.get("AOD_500nm"), df.get("AOD_440nm"), alpha)
        pieces.append(_rows(ids, lon, lat, start, end, "aod_550", aod550))
    else:
        log.warning("%s: no 440-870_Angstrom_Exponent column; aod_550 not derived", p)
    attrs = {"reader": "read_aeronet", "aeronet_level": _level(preamble),
             "averaging": "daily" if daily else "all points",
             "elevation_m": _elevations(ids, elev),
             "aod_550_method": "AOD_500 (550/500)^-a440-870, else AOD_440 (550/440)^-a440-870 "
                               "(pyaerocom calc_od550aer)"}
    return station_table(pieces, p, attrs=attrs)


def read_aeronet_inversion(path: str | Path) -> pd.DataFrame:
    """Read an AERONET Version 3 almucantar/hybrid inversion file (``*.all``).

    Parameters
    ----------
    path : str or Path
        Inversion file (first column ``Site``; ``AOD_Coincident_Input[440nm]`` ...,
        ``Angstrom_Exponent_440-870nm_from_Coincident_Input_AOD``,
        ``Extinction_Angstrom_Exponent_440-870nm-Total``, ``Latitude(Degrees)``,
        ``Longitude(Degrees)``, ``Elevation(m)``).

    Returns
    -------
    DataFrame
        Station table, instantaneous times (the retrieval time, UTC): ``aod_XXX`` from
        ``AOD_Coincident_Input[XXXnm]`` (the direct-sun AOD paired with the sky scan, unitless);
        ``angstrom_440_870`` from the coincident-input exponent (the one that goes with those AODs),
        falling back to ``Extinction_Angstrom_Exponent_440-870nm-Total`` (the retrieval's) where it
        is missing; ``aod_550`` = ``aod_440 (550/440)^-alpha`` (no 500 nm in inversion files;
        :func:`aod_550_from_angstrom`). ``attrs["aeronet_level"]`` e.g. ``"2.0"``.

    Raises
    ------
    FormatError
        Missing/empty file, no column-name row, no ``AOD_Coincident_Input[440nm]`` column.
    NoDataError
        No data rows, or no AOD.
    """
    p = source_file(path)
    preamble, df = _split(p)
    require_columns(df.columns, ("AOD_Coincident_Input[440nm]",), p, "(is this an inversion file?)")
    header_only(df, p)
    t = _times(df, p)
    ids, lon, lat, elev = _site(df, preamble, p, "Latitude(Degrees)", "Longitude(Degrees)", "Elevation(m)")
    pieces = []
    cols = {c: _AOD_INVERSION_COLUMN.match(c).group(1) for c in df.columns if _AOD_INVERSION_COLUMN.match(c)}
    for col, wl in sorted(cols.items(), key=lambda kv: int(kv[1])):
        if df[col].notna().any():
            pieces.append(_rows(ids, lon, lat, t, t, f"aod_{wl}", df[col]))
    alpha = pd.Series(np.nan, index=df.index)
    for col in ("Angstrom_Exponent_440-870nm_from_Coincident_Input_AOD",
                "Extinction_Angstrom_Exponent_440-870nm-Total"):
        if col in df.columns:
            alpha = alpha.fillna(pd.to_numeric(df[col], errors="coerce"))
    if alpha.notna().any():
        pieces.append(_rows(ids, lon, lat, t, t, "angstrom_440_870", alpha))
        pieces.append(_rows(ids, lon, lat, t, t, "aod_550",
                            aod_550_from_angstrom(None, df["AOD_Coincident_Input[440nm]"], alpha)))
    attrs = {"reader": "read_aeronet_inversion", "aeronet_level": _level(preamble), "averaging": "all points",
             "elevation_m": _elevations(ids, elev),
             "aod_550_method": "AOD_Coincident_Input[440nm] (550/440)^-a440-870"}
    return station_table(pieces, p, attrs=attrs)
