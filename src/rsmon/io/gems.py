"""GEMS hourly NO2 grids and CNEMC hourly station NO2 as parquet tables (``shared/data/gems-no2-cnemc-china``).

Both files come from the GitHub project ``hfdy0935/no2_estimating_system`` (its downloaders
``task/src/modules/downloader/gems.py`` and ``cnemc.py``; ``SOURCE.txt`` of the data folder).

GEMS grid parquet (``gems_no2_YYYYMMDD.parquet``)
    ``lon``, ``lat`` (float64): centres of 0.05-degree cells. The producer snapped each GEMS L2
    pixel centre to the nearest multiple of 0.05 degrees (``round(lon / 0.05) * 0.05``) and averaged
    the pixels of a cell, so the cell of centre ``c`` is ``[c - 0.025, c + 0.025)`` in both axes.
    ``time`` (str ``YYYYMMDDHH``): the UTC hour of the scan. The producer's downloader truncates
    the GEMS observation start ``YYYYMMDDHHMM`` to the hour, and GEMS L2 files start at ``HH:45``
    (its example ``GK2_GEMS_L2_20251226_0345_NO2_FC_DPRO_ORI.nc`` has ``obsrBeginDt 202512260345``):
    the scan labelled ``HH`` began at about ``HH:45`` UTC. ``gems_no2`` (float64): tropospheric
    NO2 column (GEMS L2 ``ColumnAmountNO2Trop``) in 1e15 molecules cm-2, after the producer's
    filters CloudFraction < 0.3, SZA < 70, VZA < 70, 0 < NO2 < 200e15 and clipping to China.
    One row per (cell, hour) with data; a day holds about 1.1 million rows.

CNEMC station parquet (``cnemc_no2_YYYYMMDD.parquet``)
    ``lon``, ``lat`` (rounded to 0.01 degree by the producer), ``beijing_time`` (str ``YYYYMMDDHH``,
    Beijing time UTC+8: CNEMC's ``TimePointStr`` label), ``time`` (the same label converted to UTC:
    ``beijing_time - 8 h``, checked on every row), ``area`` (city), ``position_name`` (station
    name), ``station_code`` (e.g. ``1001A``), ``quality`` (AQI class), ``cnemc_no2`` (ug m-3,
    values <= 0 dropped by the producer). Files are split by UTC day.

    **What the label means.** CNEMC labels an hourly mean by the END of its hour (atmos.md 5.2,
    HeQinWill/CNEMC README: "16时" is the mean of 15:00-16:00): the row with ``beijing_time`` ``h``
    is the mean of ``[h - 1 h, h)`` Beijing time, which is ``[time - 1 h, time)`` UTC. So the
    ``time`` column is an hour-ENDING label too, not the start of the averaging hour, and
    "same UTC hour" pairing (GEMS ``time`` == station ``time``) pairs a scan that starts at
    ``HH:45`` with the station mean of ``[HH-1:00, HH:00)``: see :mod:`rsmon.validate.hourly`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from rsmon.errors import FormatError, NoDataError
from rsmon.io.stations_common import BEIJING_UTC_OFFSET, hour_ending_interval, source_file, station_table
from rsmon.io.stations_units import reference_state_of

log = logging.getLogger(__name__)

__all__ = [
    "CNEMC_PARQUET_COLUMNS",
    "GEMS_COLUMNS",
    "GEMS_RESOLUTION",
    "GEMS_UNITS",
    "GEMS_VARIABLE",
    "read_cnemc_parquet",
    "read_gems_hourly_grid",
]

#: Grid spacing of the GEMS parquet files, degrees.
GEMS_RESOLUTION = 0.05

#: Name and units of the column variable in the Dataset :func:`read_gems_hourly_grid` returns.
GEMS_VARIABLE = "tropospheric_no2_column"
GEMS_UNITS = "1e15 molec cm-2"

#: Columns the GEMS parquet must have.
GEMS_COLUMNS = ("lon", "lat", "time", "gems_no2")

#: Columns the CNEMC parquet must have (``time``, ``position_name``, ``area`` are optional).
CNEMC_PARQUET_COLUMNS = ("lon", "lat", "beijing_time", "station_code", "cnemc_no2")

# A centre farther than this from a multiple of the resolution (in cells) is not on the grid.
_LATTICE_TOLERANCE = 1e-4


def _parquet_columns(path: Path, required: Iterable[str]) -> list[str]:
    """Column names of a parquet file; FormatError naming the file and the first missing column."""
    import pyarrow.parquet as pq

    try:
        names = list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for non-parquet files
        raise FormatError(f"{path}: cannot read as parquet ({exc})") from None
    missing = [c for c in required if c not in names]
    if missing:
        also = f" (also missing: {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else ""
        raise FormatError(f"{path}: missing column {missing[0]!r}{also}; the file has {', '.join(names)}")
    return names


def _read_parquet(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, columns=columns, engine="pyarrow")
    except Exception as exc:
        raise FormatError(f"{path}: cannot read the parquet columns {columns} ({exc})") from None


def _hour_labels(text: pd.Series, path: Path, column: str) -> np.ndarray:
    """``YYYYMMDDHH`` strings -> int64 ns (naive UTC or naive local), parsing each distinct label once."""
    codes, uniques = pd.factorize(text.astype(str), sort=False)
    parsed = pd.to_datetime(pd.Index(uniques), format="%Y%m%d%H", errors="coerce")
    if parsed.isna().any():
        bad = uniques[int(np.flatnonzero(parsed.isna())[0])]
        raise FormatError(f"{path}: column {column!r} holds {bad!r}; expected an hour label YYYYMMDDHH")
    if (codes < 0).any():
        raise FormatError(f"{path}: column {column!r} has missing values")
    return parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)[codes]


def _lattice_index(values: np.ndarray, res: float, path: Path, column: str) -> np.ndarray:
    """Integer multiples ``k`` with ``values == k * res``; FormatError for values off the lattice."""
    k = values / res
    ki = np.round(k)
    off = np.abs(k - ki)
    if not np.isfinite(values).all():
        raise FormatError(f"{path}: column {column!r} has missing or non-finite values")
    if off.size and float(off.max()) > _LATTICE_TOLERANCE:
        bad = float(values[int(np.argmax(off))])
        raise FormatError(f"{path}: column {column!r} holds {bad!r}, not the centre of a {res}-degree cell "
                          "(centres are multiples of the resolution)")
    return ki.astype(np.int64)


def read_gems_hourly_grid(
    path: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    resolution: float = GEMS_RESOLUTION,
    dtype: str | np.dtype = "float64",
) -> xr.Dataset:
    """Read GEMS hourly NO2 parquet file(s) into a gridded Dataset (time, lat, lon).

    Parameters
    ----------
    path : path or iterable of paths
        One ``gems_no2_YYYYMMDD.parquet`` file or several (their hours are merged; the grid spans
        all of them).
    resolution : float
        Cell size, degrees (0.05 for these files). Every centre must be a multiple of it.
    dtype : str or numpy dtype
        Type of the data array (``float32`` halves the memory: a day is 8 x 684 x 1171 cells,
        51 MB in float64).

    Returns
    -------
    xarray.Dataset
        ``tropospheric_no2_column`` (time, lat, lon) in ``1e15 molec cm-2``, NaN where the file has
        no row. ``lat`` runs north to south, ``lon`` west to east; both are the cell centres,
        reconstructed exactly as ``k * resolution`` (rounded to 10 decimals) from the smallest to the
        largest centre present, so every row of the files lands on its own cell. ``lat_bnds`` /
        ``lon_bnds`` hold the cell edges ``centre -+ resolution / 2``. ``time`` (naive
        ``datetime64[ns]``, UTC) is the hour label of the scan (the scan began at about HH:45 UTC,
        module docstring). ``attrs``: ``source_path`` (files, ``;``-separated), ``main_variable``,
        ``resolution``, ``n_rows``, ``duplicates_averaged`` (rows sharing a cell and hour, averaged),
        ``time_convention``, ``cell_convention``.

    Raises
    ------
    FormatError
        A file is missing, empty or not parquet; a column of :data:`GEMS_COLUMNS` is missing (the
        message names the file and the column); a centre is off the lattice; a bad hour label.
    NoDataError
        No row at all.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        raise NoDataError("read_gems_hourly_grid: no file given")
    res = float(resolution)
    parts = []
    for raw in paths:
        p = source_file(raw)
        _parquet_columns(p, GEMS_COLUMNS)
        df = _read_parquet(p, list(GEMS_COLUMNS))
        ix = _lattice_index(df["lon"].to_numpy(dtype=np.float64), res, p, "lon")
        iy = _lattice_index(df["lat"].to_numpy(dtype=np.float64), res, p, "lat")
        t = _hour_labels(df["time"], p, "time")
        v = pd.to_numeric(df["gems_no2"], errors="coerce").to_numpy(dtype=np.float64)
        parts.append((ix, iy, t, v, p))
        del df
    ix = np.concatenate([q[0] for q in parts])
    iy = np.concatenate([q[1] for q in parts])
    t = np.concatenate([q[2] for q in parts])
    v = np.concatenate([q[3] for q in parts])
    names = [str(q[4]) for q in parts]
    del parts
    if ix.size == 0:
        raise NoDataError(f"{'; '.join(names)}: no rows")
    times, t_idx = np.unique(t, return_inverse=True)
    x0, x1 = int(ix.min()), int(ix.max())
    y0, y1 = int(iy.min()), int(iy.max())
    nx, ny, nt = x1 - x0 + 1, y1 - y0 + 1, times.size
    col = ix - x0
    row = y1 - iy  # north -> south
    flat = (t_idx.astype(np.int64) * ny + row) * nx + col
    data = np.full(nt * ny * nx, np.nan, dtype=np.float64)
    order = np.argsort(flat, kind="stable")
    flat_sorted = flat[order]
    dup = np.flatnonzero(flat_sorted[1:] == flat_sorted[:-1])
    n_dup = 0
    if dup.size:
        # rows sharing a cell and hour (a file appended twice): their mean
        keys, start = np.unique(flat_sorted, return_index=True)
        sums = np.add.reduceat(v[order], start)
        counts = np.diff(np.append(start, flat_sorted.size))
        data[keys] = sums / counts
        n_dup = int(flat.size - keys.size)
        log.warning("%s: %d rows share a cell and hour with another row; averaged", "; ".join(names), n_dup)
    else:
        data[flat] = v
    data = data.reshape(nt, ny, nx).astype(dtype, copy=False)
    lon = np.round(np.arange(x0, x1 + 1) * res, 10)
    lat = np.round(np.arange(y1, y0 - 1, -1) * res, 10)
    half = res / 2.0
    ds = xr.Dataset(
        {GEMS_VARIABLE: (("time", "lat", "lon"), data, {
            "units": GEMS_UNITS,
            "long_name": "GEMS tropospheric NO2 vertical column density, 0.05-degree cell mean",
            "source_variable": "Data Fields/ColumnAmountNO2Trop (GEMS L2 NO2), divided by 1e15",
            "producer_filters": "CloudFraction < 0.3, SolarZenithAngle < 70, ViewingZenithAngle < 70, "
                                "0 < NO2 < 200e15 molec cm-2; clipped to China",
        })},
        coords={
            "time": ("time", times.astype("datetime64[ns]"), {"standard_name": "time", "timezone": "UTC"}),
            "lat": ("lat", lat, {"units": "degrees_north", "bounds": "lat_bnds"}),
            "lon": ("lon", lon, {"units": "degrees_east", "bounds": "lon_bnds"}),
            "lat_bnds": (("lat", "nv"), np.stack([lat + half, lat - half], axis=1)),
            "lon_bnds": (("lon", "nv"), np.stack([lon - half, lon + half], axis=1)),
        },
        attrs={
            "source_path": ";".join(names),
            "main_variable": GEMS_VARIABLE,
            "resolution": res,
            "n_rows": int(flat.size),
            "duplicates_averaged": n_dup,
            "time_convention": "UTC hour label of the GEMS scan (the producer truncated the scan start, "
                               "HH:45 UTC, to the hour)",
            "cell_convention": f"cell of centre c covers [c - {half}, c + {half}) in lon and lat "
                               "(the producer snapped pixel centres to the nearest multiple of the resolution)",
        },
    )
    return ds


def read_cnemc_parquet(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CNEMC hourly station NO2 parquet file (``cnemc_no2_YYYYMMDD.parquet``) into a Station table.

    Times: ``beijing_time`` ``h`` is the CNEMC hour-ending label (module docstring), so each row
    covers ``time_start = h - 1 h``, ``time_end = h`` Beijing time, converted to UTC (minus 8 h).
    The file's ``time`` column, when present, must equal ``beijing_time - 8 h`` on every row (it is
    the same hour-ending label in UTC); a disagreement is a FormatError.

    Parameters
    ----------
    path : path
        The parquet file.

    Returns
    -------
    pandas.DataFrame
        Station table (:mod:`rsmon.validate` contract): ``station_id`` = ``station_code``,
        ``station_name`` = ``position_name`` (``""`` when absent), ``lon``/``lat`` as in the file
        (0.01 degree), ``variable`` ``"no2"``, ``units`` ``"ug m-3"``. ``attrs``: ``reader``,
        ``time_convention``, ``reference_state`` (``"298K"`` for data after 2018-09-01),
        ``coordinates`` (the rounding note).

    Raises
    ------
    FormatError
        Missing/empty/non-parquet file; a column of :data:`CNEMC_PARQUET_COLUMNS` missing (the
        message names the file and the column); bad hour labels; ``time`` inconsistent with
        ``beijing_time``; a station with two positions.
    NoDataError
        No value.
    """
    p = source_file(path)
    names = _parquet_columns(p, CNEMC_PARQUET_COLUMNS)
    optional = [c for c in ("time", "position_name") if c in names]
    df = _read_parquet(p, list(CNEMC_PARQUET_COLUMNS) + optional)
    if df.empty:
        raise NoDataError(f"{p}: no rows")
    label = _hour_labels(df["beijing_time"], p, "beijing_time")
    if "time" in df.columns:
        utc_label = _hour_labels(df["time"], p, "time")
        offset = np.int64(BEIJING_UTC_OFFSET.value)
        bad = (label - utc_label) != offset
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FormatError(
                f"{p}: column 'time' disagrees with 'beijing_time' - 8 h in {int(bad.sum())} row(s), e.g. row {i}: "
                f"beijing_time={df['beijing_time'].iloc[i]!r}, time={df['time'].iloc[i]!r}")
    positions = df.groupby("station_code")[["lon", "lat"]].nunique()
    moved = positions[(positions["lon"] > 1) | (positions["lat"] > 1)]
    if len(moved):
        raise FormatError(f"{p}: station {moved.index[0]!r} has more than one lon/lat in column 'lon'/'lat'")
    start, end = hour_ending_interval(pd.Series(label.astype("datetime64[ns]")), BEIJING_UTC_OFFSET)
    piece = pd.DataFrame({
        "station_id": df["station_code"].astype(str).str.strip(),
        "station_name": df["position_name"].astype(str) if "position_name" in df.columns else "",
        "lon": pd.to_numeric(df["lon"], errors="coerce"),
        "lat": pd.to_numeric(df["lat"], errors="coerce"),
        "time_start": start.to_numpy(),
        "time_end": end.to_numpy(),
        "variable": "no2",
        "value": pd.to_numeric(df["cnemc_no2"], errors="coerce"),
        "units": "ug m-3",
    })
    out = station_table([piece], p, attrs={
        "reader": "read_cnemc_parquet",
        "time_convention": "beijing_time is the CNEMC hour-ending label: the value labelled h covers "
                           "[h-1 h, h) Beijing time = [time-1 h, time) UTC (file column 'time' = beijing_time - 8 h)",
        "coordinates": "lon/lat rounded to 0.01 degree by the data's producer",
    })
    out.attrs["reference_state"] = reference_state_of(out["time_end"])
    return out
