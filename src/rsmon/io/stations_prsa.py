"""Beijing PRSA multi-site series (UCI "Beijing Multi-Site Air-Quality Data", Zhang et al. 2017).

The pollutant values are CNEMC's (``prsa-beijing/SOURCE.txt``), so the CNEMC conventions of
:mod:`rsmon.io.stations_cnemc` apply; the hour convention is established from the data in
:func:`read_prsa_beijing`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from rsmon.errors import FormatError
from rsmon.io.stations_cnemc import SITELIST_ENCODINGS, cnemc_table, cnemc_variable
from rsmon.io.stations_common import (
    BEIJING_UTC_OFFSET,
    decode_text,
    header_only,
    hour_ending_interval,
    join_sites,
    read_csv_text,
    require_columns,
    source_file,
)

log = logging.getLogger(__name__)

__all__ = ["PRSA_STATIONS", "read_prsa_beijing"]

#: PRSA (UCI Beijing Multi-Site Air-Quality) station names -> CNEMC site codes. 1001A and 1003A are
#: verified value by value against CNEMC (see :func:`read_prsa_beijing`); the other ten follow from
#: the Chinese names of NewSiteList.csv (e.g. 奥体中心 Aotizhongxin, 海淀万柳 Wanliu).
PRSA_STATIONS: dict[str, str] = {
    "Wanshouxigong": "1001A", "Dingling": "1002A", "Dongsi": "1003A", "Tiantan": "1004A",
    "Nongzhanguan": "1005A", "Guanyuan": "1006A", "Wanliu": "1007A", "Shunyi": "1008A",
    "Huairou": "1009A", "Changping": "1010A", "Aotizhongxin": "1011A", "Gucheng": "1012A",
}

_PRSA_POLLUTANTS = ("PM2.5", "PM10", "SO2", "NO2", "CO", "O3")


def read_prsa_beijing(path: str | Path, sites: pd.DataFrame | str | Path | None = None) -> pd.DataFrame:
    """Read a PRSA Beijing multi-site file (``PRSA_Data_<Station>_20130301-20170228.csv``).

    Columns: ``No, year, month, day, hour, PM2.5, PM10, SO2, NO2, CO, O3, TEMP, PRES, DEWP, RAIN,
    wd, WSPM, station``; the pollutants are read (the CMA meteorology is not).

    Time convention, determined from the data: the PRSA pollutant values come from CNEMC
    (``prsa-beijing/SOURCE.txt``) and equal the CNEMC national file of 2017-01-01 at the SAME
    label, ``(year, month, day, hour) == (date, hour)``: 76 of 76 PM2.5 and NO2 values of sites
    1001A and 1003A (the 19 hours present in that file; max |difference| 0), against 4 of 76
    (max |difference| 63-84 ug m-3) when either series is shifted by one hour
    (``tests/test_stations.py::test_cross_check_cnemc_prsa``). So ``hour`` is the CNEMC
    hour-ending label in Beijing time: ``hour = h`` covers ``[h-1:00, h:00)`` Beijing. SOURCE.txt
    ("2013-03-01 00h .. 2017-02-28 23h (Beijing time)") and the UCI description ("hour of data")
    do not state it.

    Units: ug m-3; CO is given in ug m-3 in PRSA (5200 where CNEMC has 5.2 mg m-3 for 1001A,
    2017-01-01 00h) and is converted to mg m-3 to match the CNEMC readers.

    Station ids: the PRSA names are mapped to CNEMC codes with :data:`PRSA_STATIONS`
    (Wanshouxigong -> 1001A, Dongsi -> 1003A, ...); an unknown name is kept as the id.

    Parameters
    ----------
    path : str or Path
        The CSV (one or several stations).
    sites : DataFrame or path, optional
        CNEMC site list, for names and coordinates (``station_name`` defaults to the PRSA name).

    Returns
    -------
    DataFrame
        Station table, ``attrs["reference_state"] == "273K"`` (all data precede 2018-09-01).

    Raises
    ------
    FormatError
        Missing ``year``/``month``/``day``/``hour``/``station`` column or no pollutant column.
    NoDataError
        No rows / no values.
    """
    p = source_file(path)
    text, _ = decode_text(p, SITELIST_ENCODINGS)
    df = read_csv_text(text, p)
    require_columns(df.columns, ("year", "month", "day", "hour", "station"), p)
    kinds = [c for c in _PRSA_POLLUTANTS if c in df.columns]
    if not kinds:
        raise FormatError(f"{p}: missing pollutant columns (expected some of {', '.join(_PRSA_POLLUTANTS)})")
    header_only(df, p)
    try:
        label = pd.to_datetime(df[["year", "month", "day", "hour"]])
    except (ValueError, TypeError) as exc:
        raise FormatError(f"{p}: columns 'year'/'month'/'day'/'hour' do not form valid times: {exc}") from None
    start, end = hour_ending_interval(label, BEIJING_UTC_OFFSET)
    names = df["station"].astype(str)
    ids = names.map(PRSA_STATIONS)
    unknown = sorted(set(names[ids.isna()]))
    if unknown:
        log.warning("%s: PRSA station(s) without a CNEMC code, kept by name: %s", p, ", ".join(unknown))
    ids = ids.fillna(names)
    pieces = []
    for kind in kinds:
        var, units, _ = cnemc_variable(kind)
        value = pd.to_numeric(df[kind], errors="coerce")
        if kind == "CO":
            value = value / 1000.0  # PRSA CO is ug m-3; CNEMC publishes mg m-3
        piece = pd.DataFrame({"station_id": ids, "time_start": start, "time_end": end,
                              "variable": var, "value": value, "units": units})
        if sites is not None:
            piece = join_sites(piece, sites)
            piece["station_name"] = piece["station_name"].where(piece["station_name"] != "", names)
        else:
            piece["station_name"] = names
        pieces.append(piece)
    return cnemc_table(pieces, p, "read_prsa_beijing", {"prsa_station_codes": dict(PRSA_STATIONS)})
