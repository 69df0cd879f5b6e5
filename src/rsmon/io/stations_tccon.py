"""TCCON netCDF reader (column-average dry-air mole fractions, XCH4 by default).

Format followed (no real file is at hand; the test fixture is written from the same sources):

* The official writer, TCCON/py_tccon_netcdf ``write_tccon_netcdf/write_netcdf.py``
  (``write_public_nc``): public files (``xxYYYYMMDD_YYYYMMDD.public.qc.nc``) are the private files
  restricted to the spectra with ``flag == 0`` (and past the release lag); they keep ``time``,
  ``lat``, ``long``, ``zobs`` and every ``xch4*``/``xco2*``... variable (``public_variables.json``)
  and the global attributes of the private file (``long_name``, ``location``, ``data_doi``...).
  ``flag`` itself is a private-file variable, absent from public files.
* The ncdump of a GGG2020 public file in the CaltechDATA README (Izana,
  ``iz20140102_20210908.public.qc.nc``): ``double time(time)`` with units
  ``seconds since 1970-01-01 00:00:00`` (UTC), dimension ``time`` along which every retrieval
  variable runs.
* GGG2020 names the gas ``xch4`` and reports it in ppb (Laughner et al., ESSD 16, 2197, 2024,
  the GGG2020 data description; units not re-checked against a real file here); GGG2014 public
  files named it ``xch4_ppm`` (ppm). The reader trusts each variable's ``units`` attribute
  (ppb, ppm, ppt, mol mol-1) and always returns ppb.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from rsmon.errors import FormatError, InputError
from rsmon.io.ncfile import NC_LOCK, netcdf_signature
from rsmon.io.stations_common import source_file, station_table

log = logging.getLogger(__name__)

__all__ = ["read_tccon"]

_TIME_UNITS = re.compile(r"^\s*(seconds|minutes|hours|days)\s+since\s+(.+?)\s*$")
_TO_PPB = {"ppb": 1.0, "ppm": 1e3, "ppt": 1e-3, "1": 1e9, "": None, "parts": 1e9, "mol mol-1": 1e9,
           "1e-9": 1.0, "1e-6": 1e3}


def _decode_time(values: np.ndarray, units: str, path: Path) -> pd.Series:
    m = _TIME_UNITS.match(units or "")
    if not m:
        raise FormatError(f"{path}: variable 'time' has units {units!r}; expected '<unit> since <date>'")
    unit, origin = m.groups()
    try:
        t0 = pd.Timestamp(origin)
    except ValueError:
        raise FormatError(f"{path}: variable 'time' has an unreadable origin {origin!r}") from None
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    step = {"seconds": "s", "minutes": "min", "hours": "h", "days": "D"}[unit]
    return pd.Series(t0 + pd.to_timedelta(values, unit=step)).astype("datetime64[ns, UTC]")


def _ppb_factor(name: str, units: str, path: Path) -> float:
    u = (units or "").strip()
    if name.endswith("_ppm") and not u:
        u = "ppm"
    factor = _TO_PPB.get(u)
    if factor is None:
        raise FormatError(f"{path}: variable {name!r} has units {units!r}; expected ppb, ppm or ppt")
    return factor


def read_tccon(path: str | Path, variables: Iterable[str] | str = ("xch4",), *, flag_zero_only: bool = True,
               with_errors: bool = True) -> pd.DataFrame:
    """Read a TCCON netCDF file (GGG2020 or GGG2014, public or private) into a Station table.

    Parameters
    ----------
    path : str or Path
        ``xxYYYYMMDD_YYYYMMDD.public.qc.nc`` (or a private file).
    variables : str or iterable of str
        Gases to read by GGG2020 name (``"xch4"`` default; ``"xco2"``, ``"xco"``, ``"xn2o"``...).
        The GGG2014 names (``xch4_ppm``, ``xco2_ppm``, ``xco_ppb``...) are found too.
    flag_zero_only : bool
        Keep only spectra with ``flag == 0`` (the TCCON quality flag; default). Public files hold
        only those already and have no ``flag`` variable; private files keep the flagged ones.
    with_errors : bool
        Also return ``<gas>_error`` rows (the variable's ``_error`` companion, ppb). Default True.

    Returns
    -------
    DataFrame
        Station table: ``variable`` ``xch4`` (and ``xch4_error``) in ppb (mixing ratios of the
        other gases in ppb as well), instantaneous UTC times, lon/lat from ``long``/``lat``.
        ``station_id`` = the 2-letter TCCON site ID of the file name (``iz``) or the
        ``long_name`` attribute; ``station_name`` = ``long_name`` (``izana01``), else ``location``.
        ``attrs``: ``altitude_km`` ({id: zobs}), ``flag_filter``, global ``data_doi`` when present.

    Raises
    ------
    FormatError
        Missing/empty file, not netCDF, no ``time`` or gas variable (the message names it), unknown
        units.
    NoDataError
        No spectrum left (after the flag filter) or every value is fill.
    """
    p = source_file(path)
    gases = [variables] if isinstance(variables, str) else list(variables)
    if not gases:
        raise InputError("variables: give at least one gas (e.g. 'xch4')")
    try:
        kind = netcdf_signature(p)
    except OSError as exc:
        raise FormatError(f"{p}: cannot read the file ({exc})") from None
    if kind is None:
        raise FormatError(f"{p}: not a netCDF file (no NetCDF/HDF5 signature)")
    import netCDF4

    with NC_LOCK:
        try:
            nc = netCDF4.Dataset(p, "r")
        except OSError as exc:
            raise FormatError(f"{p}: cannot be opened as netCDF (truncated or corrupt?): {exc}") from None
        try:
            nc.set_auto_mask(True)
            names = set(nc.variables)
            if "time" not in names:
                raise FormatError(f"{p}: missing variable 'time'")
            time = _decode_time(np.asarray(nc["time"][:], dtype="float64"), getattr(nc["time"], "units", ""), p)
            n = len(time)

            def values(name: str) -> np.ndarray:
                return np.ma.filled(np.ma.asarray(nc[name][:], dtype="float64"), np.nan).reshape(n)

            keep = np.ones(n, dtype=bool)
            if "flag" in names and flag_zero_only:
                keep &= values("flag") == 0
            lon = values("long") if "long" in names else np.full(n, np.nan)
            lat = values("lat") if "lat" in names else np.full(n, np.nan)
            zobs = values("zobs") if "zobs" in names else np.full(n, np.nan)
            gas_data = {}
            for gas in gases:
                candidates = [gas, f"{gas}_ppm", f"{gas}_ppb", f"{gas}_ppt"]
                name = next((c for c in candidates if c in names), None)
                if name is None:
                    raise FormatError(f"{p}: missing variable {gas!r} (nor {', '.join(candidates[1:])})")
                factor = _ppb_factor(name, getattr(nc[name], "units", ""), p)
                gas_data[gas] = values(name) * factor
                err_name = next((c for c in (f"{name}_error", f"{gas}_error", f"{gas}_ppm_error", f"{gas}_ppb_error")
                                 if c in names), None)
                if with_errors and err_name is not None:
                    gas_data[f"{gas}_error"] = values(err_name) * _ppb_factor(
                        err_name, getattr(nc[err_name], "units", "") or getattr(nc[name], "units", ""), p)
            gattrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        finally:
            nc.close()

    m = re.match(r"^([a-z]{2})\d{8}_\d{8}", p.name)
    long_name = str(gattrs.get("long_name", "") or "")
    station_id = m.group(1) if m else (long_name or p.stem)
    station_name = long_name or str(gattrs.get("location", "") or station_id)
    t_keep = time[keep].reset_index(drop=True)
    pieces = [pd.DataFrame({"station_id": station_id, "station_name": station_name,
                            "lon": lon[keep], "lat": lat[keep], "time_start": t_keep, "time_end": t_keep,
                            "variable": var, "value": vals[keep], "units": "ppb"})
              for var, vals in gas_data.items()]
    attrs = {"reader": "read_tccon",
             "flag_filter": ("flag == 0" if "flag" in names and flag_zero_only else
                             "none (no flag variable: a public file holds flag == 0 spectra only)"
                             if "flag" not in names else "none (flag_zero_only=False)"),
             "altitude_km": {station_id: float(np.nanmedian(zobs)) if np.isfinite(zobs).any() else float("nan")}}
    for key in ("data_doi", "data_revision", "location", "file_format_version"):
        if key in gattrs:
            attrs[key] = str(gattrs[key])
    return station_table(pieces, p, attrs=attrs)
