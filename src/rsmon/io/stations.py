"""Ground-station readers: each returns one tidy Station table (or, for fires, a points table).

The Station table is the contract of :mod:`rsmon.validate` (one row per station x time x
variable): ``station_id``, ``station_name``, ``lon``, ``lat``, ``time_start``/``time_end``
(``datetime64[ns, UTC]``, the interval the value represents), ``variable``, ``value``, ``units``,
``source``; reader notes in ``df.attrs``.

Readers (one module per family, re-exported here):

=============================================  ==============================================================
:func:`read_cnemc_sitelist`                    CNEMC site list ``NewSiteList.csv`` (GB18030) -> site table
:func:`read_cnemc_national_daily`              ``china_sites_YYYYMMDD.csv`` (date, hour, type, <codes>)
:func:`read_cnemc_station_hourly`              one site's series (datetime, PM2.5, O3, NO2, CO, SO2)
:func:`read_cnemc_wide_hourly`                 wide extract (date, hour, <codes>), one pollutant
:func:`read_prsa_beijing`                      UCI/PRSA Beijing multi-site series
:func:`read_aeronet`                           AERONET V3 direct-sun AOD (all points / daily averages)
:func:`read_aeronet_inversion`                 AERONET V3 inversion ``.all``
:func:`read_tccon`                             TCCON netCDF (GGG2020/GGG2014), XCH4
:func:`read_firms`                             FIRMS MODIS/VIIRS active-fire CSV -> points table
:func:`read_csv_mapped`                        any CSV, columns mapped by the caller
:func:`read_stations`                          sniff the file and call the reader that fits
=============================================  ==============================================================

Conventions (each documented, with its evidence, in the reader's docstring): CNEMC and PRSA hours
are hour-ending Beijing time (UTC+8) -> UTC intervals; CNEMC gases changed reference state on
2018-09-01 (:func:`harmonise_reference_state`); AERONET daily averages cover the UTC day; AOD at
550 nm is derived with the 440-870 nm Angstrom exponent; TCCON keeps ``flag == 0``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from rsmon.errors import UnsupportedFormatError
from rsmon.io.ncfile import netcdf_signature
from rsmon.io.stations_aeronet import aod_550_from_angstrom, read_aeronet, read_aeronet_inversion
from rsmon.io.stations_cnemc import (
    CNEMC_TYPES,
    read_cnemc_national_daily,
    read_cnemc_sitelist,
    read_cnemc_station_hourly,
    read_cnemc_wide_hourly,
)
from rsmon.io.stations_common import STATION_COLUMNS, Constant, read_csv_mapped, source_file
from rsmon.io.stations_firms import read_firms
from rsmon.io.stations_prsa import PRSA_STATIONS, read_prsa_beijing
from rsmon.io.stations_tccon import read_tccon
from rsmon.io.stations_units import (
    REFERENCE_STATE_CHANGE,
    harmonise_reference_state,
    molar_volume_l_mol,
    no2_ppb_to_ugm3,
    no2_ugm3_to_ppb,
    ppb_to_ugm3,
    ugm3_to_ppb,
)

log = logging.getLogger(__name__)

__all__ = [
    "CNEMC_TYPES",
    "KNOWN_FORMATS",
    "PRSA_STATIONS",
    "REFERENCE_STATE_CHANGE",
    "STATION_COLUMNS",
    "Constant",
    "aod_550_from_angstrom",
    "harmonise_reference_state",
    "molar_volume_l_mol",
    "no2_ppb_to_ugm3",
    "no2_ugm3_to_ppb",
    "ppb_to_ugm3",
    "read_aeronet",
    "read_aeronet_inversion",
    "read_cnemc_national_daily",
    "read_cnemc_sitelist",
    "read_cnemc_station_hourly",
    "read_cnemc_wide_hourly",
    "read_csv_mapped",
    "read_firms",
    "read_prsa_beijing",
    "read_stations",
    "read_tccon",
    "sniff_station_format",
    "ugm3_to_ppb",
]

_CODE = re.compile(r"^\d{4}[A-Z]$")


def _head(path: Path, n: int = 8) -> list[str]:
    """First ``n`` lines, decoded leniently (sniffing only; readers decode strictly)."""
    with open(path, "rb") as fh:
        raw = fh.read(65536)
    if len(raw) == 65536 and b"\n" in raw:  # do not cut a multi-byte character at the end
        raw = raw[: raw.rfind(b"\n") + 1]
    for enc in ("utf-8-sig", "gb18030", "latin-1"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    return [ln.strip() for ln in text.splitlines()[:n]]


def _fields(line: str) -> list[str]:
    return [f.strip().strip('"') for f in line.split(",")]


def _is_sitelist(name: str, head: list[str]) -> bool:
    return "监测点编码" in (head[0] if head else "") or name.lower().startswith("newsitelist")


def _is_national(name: str, head: list[str]) -> bool:
    return bool(re.match(r"china_sites_\d{8}\.csv$", name)) or _fields(head[0])[:3] == ["date", "hour", "type"]


def _is_station_hourly(name: str, head: list[str]) -> bool:
    f = _fields(head[0])
    return bool(f) and f[0] == "datetime" and any(c in CNEMC_TYPES for c in f[1:])


def _is_wide(name: str, head: list[str]) -> bool:
    f = _fields(head[0])
    return f[:2] == ["date", "hour"] and len(f) > 2 and all(_CODE.match(c) for c in f[2:])


def _is_prsa(name: str, head: list[str]) -> bool:
    f = _fields(head[0])
    return name.startswith("PRSA_Data_") or {"year", "month", "day", "hour", "station"} <= set(f)


def _is_aeronet_inversion(name: str, head: list[str]) -> bool:
    return bool(head) and head[0].startswith("AERONET") and (
        any("Inversion" in ln for ln in head[:4]) or any(ln.startswith("Site,Date(dd:mm:yyyy)") for ln in head))


def _is_aeronet(name: str, head: list[str]) -> bool:
    return any(ln.startswith("AERONET Version") for ln in head[:3]) or any(
        ln.startswith(("Date(dd:mm:yyyy)", "AERONET_Site,")) for ln in head)


def _is_firms(name: str, head: list[str]) -> bool:
    f = set(_fields(head[0]))
    return {"latitude", "longitude", "acq_date", "acq_time"} <= f


#: Formats :func:`read_stations` recognises: (name, test(file name, first lines), reader).
KNOWN_FORMATS: tuple[tuple[str, Callable[[str, list[str]], bool], Callable[..., pd.DataFrame]], ...] = (
    ("CNEMC site list (NewSiteList.csv)", _is_sitelist, read_cnemc_sitelist),
    ("CNEMC national daily (china_sites_YYYYMMDD.csv)", _is_national, read_cnemc_national_daily),
    ("CNEMC station hourly (datetime,PM2.5,...)", _is_station_hourly, read_cnemc_station_hourly),
    ("CNEMC wide hourly (date,hour,<codes>)", _is_wide, read_cnemc_wide_hourly),
    ("PRSA Beijing (PRSA_Data_*.csv)", _is_prsa, read_prsa_beijing),
    ("AERONET V3 inversion (.all)", _is_aeronet_inversion, read_aeronet_inversion),
    ("AERONET V3 direct-sun AOD (.lev10/.lev15/.lev20/.txt)", _is_aeronet, read_aeronet),
    ("FIRMS active fires (latitude,longitude,...,acq_date,acq_time)", _is_firms, read_firms),
)


def sniff_station_format(path: str | Path) -> tuple[str, Callable[..., pd.DataFrame]]:
    """``(format name, reader)`` for ``path`` from its name and first lines (netCDF -> TCCON).

    Raises
    ------
    FormatError
        The file is missing or empty.
    UnsupportedFormatError
        No known format fits; the message lists the formats known.
    """
    p = source_file(path)
    if netcdf_signature(p) is not None:
        return "TCCON netCDF (xch4)", read_tccon
    head = _head(p)
    for name, test, reader in KNOWN_FORMATS:
        try:
            if head and test(p.name, head):
                return name, reader
        except Exception:  # a sniffer never raises
            log.debug("sniffer %s failed on %s", name, p, exc_info=True)
    known = "; ".join([n for n, _, _ in KNOWN_FORMATS] + ["TCCON netCDF (xch4)"])
    raise UnsupportedFormatError(f"{p}: not a station format rsmon knows (by file name and header). Known: {known}")


def read_stations(path: str | Path, **kw: Any) -> pd.DataFrame:
    """Read any known ground-station file: sniff its format and call the matching reader.

    Parameters
    ----------
    path : str or Path
        A file of one of :data:`KNOWN_FORMATS` or a TCCON netCDF file.
    **kw
        Passed to the reader (e.g. ``sites=`` for the CNEMC readers).

    Returns
    -------
    DataFrame
        What the reader returns (a Station table; a site table for the site list; a points table
        for FIRMS). ``attrs["format"]`` names the format recognised.

    Raises
    ------
    FormatError
        Missing/empty file, or the reader's own errors.
    UnsupportedFormatError
        No known format fits (a FormatError; the message lists the formats known).
    """
    name, reader = sniff_station_format(path)
    log.debug("%s: read as %s", path, name)
    df = reader(path, **kw)
    df.attrs["format"] = name
    return df
