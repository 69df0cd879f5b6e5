"""NASA FIRMS active-fire CSV reader (MODIS C6.1 and VIIRS 375 m): a points table.

Format (``shared/reference/fire.md`` section 3 "FIRMS reference format"): ``latitude, longitude``,
``bright_ti4`` (VIIRS I4, K) or ``brightness`` (MODIS band 21/22, K), ``scan, track`` (pixel size,
km), ``acq_date`` (YYYY-MM-DD), ``acq_time`` (HHMM, UTC), ``satellite``, [``instrument``],
``confidence`` (MODIS 0-100 %, VIIRS ``l``/``n``/``h``), ``version``, ``bright_ti5``/``bright_t31``
(K), ``frp`` (MW), ``daynight`` (D/N), [``type``: 0 presumed vegetation fire, 1 active volcano,
2 other static land source, 3 offshore; standard-processing archives only, absent in NRT files].
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from rsmon.errors import FormatError, InputError
from rsmon.io.stations_common import decode_text, header_only, read_csv_text, require_columns, source_file

log = logging.getLogger(__name__)

__all__ = ["CONFIDENCE_CLASSES", "FIRMS_COLUMNS", "MODIS_CONFIDENCE_BOUNDS", "read_firms"]

#: Ordered confidence classes.
CONFIDENCE_CLASSES: tuple[str, ...] = ("low", "nominal", "high")

#: MODIS confidence (%) class bounds: low < 30 <= nominal < 80 <= high. Source: MODIS Collection 6
#: Active Fire Product User's Guide Rev. B (Giglio et al.), as quoted in ``shared/reference/fire.md``
#: section 1.2 ("Classes: low < 30%, nominal 30-80%, high >= 80%"). The FIRMS FAQ / attribute table
#: only says the 0-100 % values "are assigned one of the three fire classes" without the bounds.
MODIS_CONFIDENCE_BOUNDS: tuple[int, int] = (30, 80)

_VIIRS_CLASS = {"l": "low", "n": "nominal", "h": "high", "low": "low", "nominal": "nominal", "high": "high"}

#: Leading columns of the points table (instrument-specific brightness columns follow).
FIRMS_COLUMNS: tuple[str, ...] = ("latitude", "longitude", "time", "satellite", "instrument", "confidence",
                                  "confidence_class", "frp", "daynight", "type")
_EXTRA = ("bright_ti4", "bright_ti5", "brightness", "bright_t31", "scan", "track", "version")


def _modis_class(conf: pd.Series) -> pd.Series:
    lo, hi = MODIS_CONFIDENCE_BOUNDS
    out = np.where(conf >= hi, "high", np.where(conf >= lo, "nominal", "low"))
    return pd.Series(out, index=conf.index).where(conf.notna())


def read_firms(path: str | Path) -> pd.DataFrame:
    """Read a FIRMS active-fire CSV (MODIS or VIIRS; NRT 24 h, archive or country-year files).

    Parameters
    ----------
    path : str or Path
        FIRMS CSV.

    Returns
    -------
    DataFrame
        One row per fire pixel: ``latitude``, ``longitude`` (degrees), ``time`` (acquisition,
        ``datetime64[ns, UTC]`` from ``acq_date`` + ``acq_time`` HHMM UTC), ``satellite`` (as
        given: T/A, Terra/Aqua, N, ...), ``instrument`` (``MODIS``/``VIIRS``; the column when present,
        else from the brightness column), ``confidence`` (as given: int % for MODIS, ``l/n/h`` for
        VIIRS), ``confidence_class`` (ordered categorical low < nominal < high; MODIS: < 30 low,
        30-79 nominal, >= 80 high, :data:`MODIS_CONFIDENCE_BOUNDS`), ``frp`` (MW), ``daynight``,
        ``type`` (``Int64``, NA when the file has no ``type`` column), then the brightness
        temperatures present (``bright_ti4``, ``bright_ti5`` | ``brightness``, ``bright_t31``; K),
        ``scan``, ``track`` (km), ``version`` and ``source`` (file path).

    Raises
    ------
    FormatError
        Missing/empty/undecodable file; a missing column (named); confidence values that are not
        0-100 (MODIS) or l/n/h (VIIRS); times that do not parse.
    NoDataError
        Header only (no fire pixel in the file).
    """
    p = source_file(path)
    text, _ = decode_text(p, ("utf-8-sig", "latin-1"))
    df = read_csv_text(text, p, dtype={"acq_time": str, "acq_date": str, "confidence": str,
                                       "satellite": str, "version": str, "daynight": str})
    df.columns = [str(c).strip() for c in df.columns]
    require_columns(df.columns, ("latitude", "longitude", "acq_date", "acq_time", "confidence"), p)
    if "bright_ti4" in df.columns:
        sensor = "VIIRS"
    elif "brightness" in df.columns:
        sensor = "MODIS"
    else:
        raise FormatError(f"{p}: missing column 'brightness' (MODIS) or 'bright_ti4' (VIIRS)")
    header_only(df, p)

    hhmm = df["acq_time"].astype(str).str.strip().str.zfill(4)
    try:
        time = pd.to_datetime(df["acq_date"].astype(str).str.strip() + " " + hhmm, format="%Y-%m-%d %H%M", utc=True)
    except ValueError as exc:
        raise FormatError(f"{p}: columns 'acq_date'/'acq_time' have times that do not parse "
                          f"(YYYY-MM-DD, HHMM): {exc}") from None

    if "instrument" in df.columns:
        instrument = df["instrument"].astype(str).str.strip().str.upper()
    else:
        instrument = pd.Series(sensor, index=df.index)
    raw_conf = df["confidence"].astype(str).str.strip()
    if sensor == "MODIS":
        confidence = pd.to_numeric(raw_conf, errors="coerce")
        bad = confidence.isna() | (confidence < 0) | (confidence > 100)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise FormatError(f"{p}: column 'confidence' has {raw_conf.iloc[i]!r} at data row {i + 1}; "
                              "expected 0-100 for MODIS")
        confidence = confidence.astype("int64")
        cls = _modis_class(confidence)
    else:
        confidence = raw_conf
        cls = raw_conf.str.lower().map(_VIIRS_CLASS)
        if cls.isna().any():
            i = int(np.flatnonzero(cls.isna().to_numpy())[0])
            raise FormatError(f"{p}: column 'confidence' has {raw_conf.iloc[i]!r} at data row {i + 1}; "
                              "expected l, n or h for VIIRS")
    if "type" in df.columns:
        ftype = pd.to_numeric(df["type"], errors="coerce").astype("Int64")
    else:
        ftype = pd.Series(pd.NA, index=df.index, dtype="Int64")

    out = pd.DataFrame({
        "latitude": pd.to_numeric(df["latitude"], errors="coerce").astype("float64"),
        "longitude": pd.to_numeric(df["longitude"], errors="coerce").astype("float64"),
        "time": pd.Series(time, index=df.index).astype("datetime64[ns, UTC]"),
        "satellite": df["satellite"].astype(str) if "satellite" in df.columns else "",
        "instrument": instrument,
        "confidence": confidence,
        "confidence_class": pd.Categorical(cls, categories=CONFIDENCE_CLASSES, ordered=True),
        "frp": pd.to_numeric(df["frp"], errors="coerce").astype("float64") if "frp" in df.columns else np.nan,
        "daynight": df["daynight"].astype(str) if "daynight" in df.columns else "",
        "type": ftype,
    })
    for c in _EXTRA:
        if c in df.columns:
            out[c] = df[c].astype(str) if c == "version" else pd.to_numeric(df[c], errors="coerce").astype("float64")
    out["source"] = str(p)
    out.attrs.update({"reader": "read_firms", "instrument": sensor,
                      "confidence_rule": ("MODIS: low < 30 <= nominal < 80 <= high (%)" if sensor == "MODIS"
                                          else "VIIRS: l/n/h as given")})
    return out


def fire_times_utc(fires: pd.DataFrame, name: str = "fire table") -> pd.Series:
    """UTC acquisition time of each fire: the ``time`` column, or FIRMS ``acq_date`` + ``acq_time`` (HHMM).

    Raises
    ------
    InputError
        Neither form present, or the FIRMS fields do not parse (the message starts with ``name``).
    """
    if "time" in fires.columns:
        return pd.to_datetime(fires["time"], utc=True)
    if "acq_date" in fires.columns and "acq_time" in fires.columns:
        hhmm = fires["acq_time"]
        if pd.api.types.is_numeric_dtype(hhmm):
            hhmm = hhmm.astype("int64").astype(str)
        text = fires["acq_date"].astype(str).str.strip() + " " + hhmm.astype(str).str.strip().str.zfill(4)
        try:
            return pd.to_datetime(text, format="%Y-%m-%d %H%M", utc=True)
        except ValueError as exc:
            raise InputError(f"{name}: acq_date/acq_time do not parse as YYYY-MM-DD HHMM ({exc})") from None
    raise InputError(f"{name}: needs column 'time' (UTC) or 'acq_date' + 'acq_time'")
