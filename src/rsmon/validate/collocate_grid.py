"""Collocation of L3 grids (COG or Dataset) and of area-average series with stations.

A grid is read as a north-up lon/lat :class:`_Raster` (a GeoTIFF through rasterio, or a Dataset), only
the windows around the stations; a series is matched with the stations near its box. Re-exported by
:mod:`rsmon.validate.collocate`, whose docstring holds the conventions shared by the three modes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from rsmon.errors import FormatError, InputError, NoDataError
from rsmon.validate._matchups import (
    _build_table,
    _check_choice,
    _check_count,
    _check_positive,
    _ground_stats,
    _mean_std,
    _prepare_stations,
    _Sat,
    _stack_windows,
)
from rsmon.validate.geo import (
    _MIN_NS,
    EARTH_MEAN_RADIUS_KM,
    EDGE_RULE,
    _lon_offset_ns,
    _overpass_windows,
    _parse_clock,
    box_distance_km,
    haversine_km,
)

__all__ = ["collocate_grid", "collocate_series"]


# --------------------------------------------------------------------------------------------------
# (b) L3 grid
# --------------------------------------------------------------------------------------------------

@dataclass
class _Raster:
    """A north-up lon/lat raster: reads windows of one band as float64 with NaN for nodata."""

    name: str
    west: float
    north: float
    res_x: float
    res_y: float
    width: int
    height: int
    units: str
    tags: dict[str, str]
    _read: Any

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        return self._read(row0, row1, col0, col1)

    def lon_centres(self, col0: int, col1: int) -> np.ndarray:
        return self.west + self.res_x * (np.arange(col0, col1) + 0.5)

    def lat_centres(self, row0: int, row1: int) -> np.ndarray:
        return self.north - self.res_y * (np.arange(row0, row1) + 0.5)


def _open_cog(path: Path, band: int | str, stack: Any) -> _Raster:
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    try:
        src = stack.enter_context(rasterio.open(path))
    except RasterioError as exc:
        raise FormatError(f"{path}: cannot open as a GeoTIFF ({exc})") from None
    if src.crs is None or not src.crs.is_geographic:
        raise InputError(f"{path}: collocate_grid needs a lon/lat (geographic) grid, got CRS {src.crs}")
    tr = src.transform
    if tr.b != 0 or tr.d != 0 or tr.e >= 0:
        raise InputError(f"{path}: collocate_grid needs a north-up grid without rotation (transform {tuple(tr)[:6]})")
    if isinstance(band, str):
        if band not in src.descriptions:
            raise InputError(f"band: {band!r} is not a band of {path} (bands: {list(src.descriptions)})")
        bidx = src.descriptions.index(band) + 1
    else:
        bidx = int(band)
        if not 1 <= bidx <= src.count:
            raise InputError(f"band: expected 1..{src.count} for {path}, got {band!r}")
    nodata = src.nodatavals[bidx - 1]
    scale = src.scales[bidx - 1] if src.scales else 1.0
    offset = src.offsets[bidx - 1] if src.offsets else 0.0

    def read(row0, row1, col0, col1):
        arr = src.read(bidx, window=Window(col0, row0, col1 - col0, row1 - row0)).astype(np.float64)
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
            arr[arr == nodata] = np.nan
        if (scale, offset) != (1.0, 0.0):
            arr = arr * scale + offset
        return arr

    return _Raster(name=str(path), west=tr.c, north=tr.f, res_x=tr.a, res_y=-tr.e, width=src.width,
                   height=src.height, units=src.units[bidx - 1] or "", tags=src.tags(), _read=read)


def _open_dataset(ds: xr.Dataset, band: int | str) -> _Raster:
    where = str(ds.attrs.get("source_path") or ds.encoding.get("source") or "dataset")
    names = list(ds.data_vars)
    if isinstance(band, str):
        if band not in ds.data_vars:
            raise InputError(f"band: {band!r} is not a variable of {where} (variables: {names})")
        name = band
    else:
        if not 1 <= int(band) <= len(names):
            raise InputError(f"band: expected 1..{len(names)} for {where}, got {band!r}")
        name = names[int(band) - 1]
    da = ds[name]
    lat_name = next((c for c in ("lat", "latitude") if c in da.dims), None)
    lon_name = next((c for c in ("lon", "longitude") if c in da.dims), None)
    if lat_name is None or lon_name is None:
        raise InputError(f"{where}: variable {name!r} has dims {da.dims}, expected (lat, lon)")
    extra = [d for d in da.dims if d not in (lat_name, lon_name)]
    if any(da.sizes[d] != 1 for d in extra):
        raise InputError(f"{where}: variable {name!r} has extra dims {extra}; select one time first")
    da = da.squeeze(extra, drop=True).transpose(lat_name, lon_name)
    lat = np.asarray(ds[lat_name].values, dtype=np.float64)
    lon = np.asarray(ds[lon_name].values, dtype=np.float64)
    if lat.size < 1 or lon.size < 1:
        raise InputError(f"{where}: empty grid")
    res_y = abs(lat[1] - lat[0]) if lat.size > 1 else None
    res_x = abs(lon[1] - lon[0]) if lon.size > 1 else None
    res_x = res_x or res_y
    res_y = res_y or res_x
    if res_x is None:
        raise InputError(f"{where}: a 1x1 grid has no resolution")
    for axis, values, res in (("lat", lat, res_y), ("lon", lon, res_x)):
        if values.size > 1 and not np.allclose(np.abs(np.diff(values)), res, rtol=1e-6, atol=1e-9):
            raise InputError(f"{where}: coordinate {axis!r} is not regularly spaced")
    if lon.size > 1 and lon[1] < lon[0]:
        raise InputError(f"{where}: longitudes must increase")
    flip = lat.size > 1 and lat[1] > lat[0]
    north = (lat.max() + res_y / 2)
    west = lon.min() - res_x / 2

    def read(row0, row1, col0, col1):
        h = lat.size
        if flip:
            part = da.isel({lat_name: slice(h - row1, h - row0), lon_name: slice(col0, col1)}).values[::-1]
        else:
            part = da.isel({lat_name: slice(row0, row1), lon_name: slice(col0, col1)}).values
        return np.asarray(part, dtype=np.float64)

    tags = {k: str(v) for k, v in ds.attrs.items()}
    return _Raster(name=where, west=float(west), north=float(north), res_x=float(res_x), res_y=float(res_y),
                   width=lon.size, height=lat.size, units=str(da.attrs.get("units", "")), tags=tags, _read=read)


def _coverage(raster: _Raster, time_start, time_end) -> tuple[int, int]:
    from rsmon.provenance import parse_datetime

    start = time_start if time_start is not None else raster.tags.get("time_coverage_start")
    end = time_end if time_end is not None else raster.tags.get("time_coverage_end")
    if start is None or end is None:
        raise InputError(f"{raster.name}: no time coverage (tags time_coverage_start/_end); pass time_start= "
                         "and time_end=")
    t0 = pd.Timestamp(parse_datetime(start, "time_start"))
    t1 = pd.Timestamp(parse_datetime(end, "time_end"))
    # "…T23:59:59Z" closes a day inclusively (rsmon COG and Giovanni convention): make it exclusive
    if t1.second == 59 and t1.microsecond == 0 and t1.nanosecond == 0:
        t1 = t1 + pd.Timedelta(seconds=1)
    if t1 <= t0:
        raise InputError(f"{raster.name}: time coverage end {end} is not after its start {start}")
    return int(t0.value), int(t1.value)


def collocate_grid(
    path_or_ds: str | os.PathLike | xr.Dataset,
    stations: pd.DataFrame,
    *,
    variable: str | None = None,
    band: int | str = 1,
    mode: str = "containing",
    radius_km: float = 10.0,
    time_start: str | datetime | None = None,
    time_end: str | datetime | None = None,
    ground_rule: str = "same_day",
    overpass_local_solar: str = "13:30",
    window_min: float = 30.0,
    min_cells: int = 1,
    min_ground: int = 1,
) -> pd.DataFrame:
    """Match an L3 lon/lat grid (rsmon COG or xarray Dataset) with stations.

    Parameters
    ----------
    path_or_ds : path or xarray.Dataset
        A GeoTIFF/COG on a north-up lon/lat grid (read with rasterio, one small window per station;
        nodata -> NaN; band scale/offset applied), or a Dataset with 1-D ``lat``/``lon`` (or
        ``latitude``/``longitude``) cell-centre coordinates on a regular grid.
    stations : pandas.DataFrame
        Station table.
    variable : str, optional
        Station variable (needed when the table holds several).
    band : int or str
        1-based band number (rsmon COGs: 1 = the product mean) or band description / variable name.
    mode : {"containing", "radius"}
        ``"containing"``: the cell containing the station (a cell owns its west and north edges,
        GDAL's convention; a station on an edge goes to the cell east / south of it). ``"radius"``:
        the mean of the finite cells whose centres lie within ``radius_km`` (haversine).
    radius_km : float
        Radius of ``mode="radius"``, km.
    time_start, time_end : str or datetime, optional
        Time coverage of the grid (ISO 8601, UTC); default the ``time_coverage_start``/``_end``
        tags of the COG or attrs of the Dataset. An end at ``:59`` seconds (``...T23:59:59Z``) is read
        as inclusive of its last second.
    ground_rule : {"same_day", "window"}
        ``"same_day"``: station values overlapping the grid's time coverage (the UTC calendar day of a
        daily product). ``"window"``: for each day of the coverage the nominal overpass at the
        station's longitude (``overpass_local_solar`` local solar time, UTC + lon/15 h; only
        overpasses within the coverage count) +- ``window_min``; hour-ending station hours that
        overlap it (atmos.md 5.2).
    overpass_local_solar : str
        ``"HH:MM"``; 13:30 for TROPOMI (Veefkind et al. 2012).
    window_min : float
        Half width of the overpass window, minutes.
    min_cells : int
        Minimum number of finite cells of a matchup.
    min_ground : int
        Minimum number of ground values.

    Returns
    -------
    pandas.DataFrame
        Matchup table, ``time`` = start of the grid's time coverage, ``distance_km`` = distance to the
        cell centre (mean over the cells in ``radius`` mode).

    Raises
    ------
    InputError
        Bad parameters, a grid that is not lon/lat north-up, no time coverage, bad Station table.
    FormatError
        The file cannot be opened as a GeoTIFF.
    NoDataError
        No station matched.
    """
    import contextlib

    _check_choice("mode", mode, ("containing", "radius"))
    _check_choice("ground_rule", ground_rule, ("same_day", "window"))
    radius_km = _check_positive("radius_km", radius_km)
    window_min = _check_positive("window_min", window_min, allow_zero=True)
    clock = _parse_clock(overpass_local_solar, "overpass_local_solar")
    min_cells = _check_count("min_cells", min_cells)
    min_ground = _check_count("min_ground", min_ground)
    st = _prepare_stations(stations, variable)
    with contextlib.ExitStack() as stack:
        if isinstance(path_or_ds, xr.Dataset):
            raster = _open_dataset(path_or_ds, band)
        else:
            path = Path(path_or_ds)
            if not path.is_file():
                raise FormatError(f"{path}: no such file")
            raster = _open_cog(path, band, stack)
        t0, t1 = _coverage(raster, time_start, time_end)
        sat = _Sat.empty()
        deg_km = EARTH_MEAN_RADIUS_KM * math.pi / 180.0
        for s in range(len(st.ids)):
            slon, slat = st.lon[s], st.lat[s]
            x = raster.west + (slon - raster.west) % 360.0  # longitude unwrapped east of the west edge
            if mode == "containing":
                col = math.floor((x - raster.west) / raster.res_x)
                row = math.floor((raster.north - slat) / raster.res_y)
                if not (0 <= col < raster.width and 0 <= row < raster.height):
                    continue
                value = raster.read(row, row + 1, col, col + 1)[0, 0]
                if not math.isfinite(value):
                    continue
                clon = raster.lon_centres(col, col + 1)[0]
                clat = raster.lat_centres(row, row + 1)[0]
                sat.add(s, t0, float(value), math.nan, 1, float(haversine_km(x, slat, clon, clat)))
            else:
                dlat = radius_km / deg_km
                coslat = math.cos(math.radians(min(abs(slat) + dlat, 90.0)))
                dlon = radius_km / (deg_km * coslat) if coslat > 1e-6 else 360.0
                row0 = max(math.floor((raster.north - slat - dlat) / raster.res_y), 0)
                row1 = min(math.floor((raster.north - slat + dlat) / raster.res_y) + 1, raster.height)
                # column ranges for the station's longitude and its 360-degree copies (global grids)
                ranges: list[list[int]] = []
                for xs in (x - 360.0, x, x + 360.0):
                    col0 = max(math.floor((xs - dlon - raster.west) / raster.res_x), 0)
                    col1 = min(math.floor((xs + dlon - raster.west) / raster.res_x) + 1, raster.width)
                    if col1 > col0:
                        ranges.append([col0, col1])
                merged: list[list[int]] = []
                for c0, c1 in sorted(ranges):
                    if merged and c0 <= merged[-1][1]:
                        merged[-1][1] = max(merged[-1][1], c1)
                    else:
                        merged.append([c0, c1])
                pieces = [(row0, row1, c0, c1) for c0, c1 in merged] if row1 > row0 else []
                vals, dists = [], []
                for r0, r1, c0, c1 in pieces:
                    block = raster.read(r0, r1, c0, c1)
                    clon, clat = np.meshgrid(raster.lon_centres(c0, c1), raster.lat_centres(r0, r1))
                    d = haversine_km(x, slat, clon, clat)  # periodic in longitude
                    use = (d <= radius_km) & np.isfinite(block)
                    vals.append(block[use])
                    dists.append(d[use])
                v = np.concatenate(vals) if vals else np.empty(0)
                if v.size == 0:
                    continue
                mean, std, n = _mean_std(v)
                sat.add(s, t0, mean, std, n, float(np.concatenate(dists).mean()))

    station = np.asarray(sat.station, dtype=np.int64)
    idx = np.arange(station.size)
    if ground_rule == "same_day":
        a = np.full(station.size, t0, dtype=np.int64)
        b = np.full(station.size, t1 - 1, dtype=np.int64)
        ground = _ground_stats(st, station, a, b, idx, station.size, hour_ending=False)
    else:
        half = int(round(window_min * _MIN_NS))
        windows = []
        for k, s in enumerate(station):
            a, b, _ = _overpass_windows(np.array([t0]), np.array([t1]), st.lon[s], clock, half, local_basis=False)
            windows.append((np.full(a.size, s), a, b, np.full(a.size, k)))
        ground = _ground_stats(st, *_stack_windows(windows), station.size, hour_ending=False)
    attrs = {
        "collocation": "grid",
        "mode": mode,
        "radius_km": radius_km if mode == "radius" else None,
        "band": band,
        "sat_units": raster.units,
        "time_coverage": [str(pd.Timestamp(t0, tz="UTC")), str(pd.Timestamp(t1, tz="UTC"))],
        "ground_rule": ground_rule,
        "overpass_local_solar": overpass_local_solar if ground_rule == "window" else None,
        "window_min": window_min if ground_rule == "window" else None,
        "min_cells": min_cells,
        "min_ground": min_ground,
        "time": "start of the grid's time coverage",
        "edge_rule": EDGE_RULE,
        "earth_radius_km": EARTH_MEAN_RADIUS_KM,
    }
    what = f"{len(st.ids)} station(s), {len(sat.station)} on a finite cell of the grid"
    return _build_table(st, sat, ground, raster.name, max(min_cells, 1), min_ground, attrs, what)


# --------------------------------------------------------------------------------------------------
# (c) area-average series
# --------------------------------------------------------------------------------------------------

def collocate_series(
    series: pd.DataFrame,
    stations: pd.DataFrame,
    *,
    variable: str | None = None,
    max_distance_km: float = 50.0,
    ground_rule: str = "same_day",
    overpass_local_solar: str = "13:45",
    window_min: float = 30.0,
    day_basis: str = "utc",
    min_ground: int = 1,
) -> pd.DataFrame:
    """Match an area-average time series (Giovanni/eodash SeriesTable) with the stations near its box.

    Parameters
    ----------
    series : pandas.DataFrame
        A SeriesTable (:func:`rsmon.io.series.read_giovanni_series`): ``time``, ``value``,
        ``time_start``/``time_end`` (without them each value stands for the UTC day of ``time``),
        ``attrs["box"]`` = (W, S, E, N); an eodash ``std`` column becomes ``sat_std``.
    stations : pandas.DataFrame
        Station table.
    variable : str, optional
        Station variable (needed when the table holds several).
    max_distance_km : float
        Stations farther than this from the nearest point of the box are dropped. Distance: haversine
        to the station's lon/lat clamped into the box (0 inside); see :func:`box_distance_km`.
    ground_rule : {"same_day", "overpass_window"}
        ``"same_day"``: station values overlapping the series step's window (a day for daily series;
        shifted to local solar time with ``day_basis="local"``). ``"overpass_window"`` (the NO2 rule,
        atmos.md 5.2): for each day of the step the nominal overpass at the station's longitude,
        ``overpass_local_solar`` local solar time, +- ``window_min``; the hour-ending station values
        whose hours overlap it. For a multi-day step (eodash 14-day windows) the values of all its
        days are pooled.
    overpass_local_solar : str
        ``"HH:MM"``, default 13:45 (OMI, the Giovanni OMNO2d series; use 13:30 for TROPOMI).
    window_min : float
        Half width of the overpass window, minutes.
    day_basis : {"utc", "local"}
        ``"utc"``: the series' days are UTC days (Giovanni MODIS/OMI L3 daily), the overpass of a day is
        the one falling in it. ``"local"``: the days are local solar days at the station.
    min_ground : int
        Minimum number of ground values of a matchup.

    Returns
    -------
    pandas.DataFrame
        Matchup table, one row per station and series step with a finite value; ``time`` = start of
        the step's window (the day), ``sat_n`` = 1 (one area average), ``distance_km`` = station to
        box. ``attrs`` hold the parameters and the series' stamp convention.

    Raises
    ------
    InputError
        Bad parameters; a series without ``attrs["box"]``, ``time`` or ``value``; bad Station table.
    NoDataError
        No station within ``max_distance_km`` of the box, or no step with ground values.
    """
    _check_choice("ground_rule", ground_rule, ("same_day", "overpass_window"))
    _check_choice("day_basis", day_basis, ("utc", "local"))
    max_distance_km = _check_positive("max_distance_km", max_distance_km, allow_zero=True)
    window_min = _check_positive("window_min", window_min, allow_zero=True)
    clock = _parse_clock(overpass_local_solar, "overpass_local_solar")
    min_ground = _check_count("min_ground", min_ground)
    if not isinstance(series, pd.DataFrame):
        raise InputError(f"series: expected a SeriesTable (DataFrame), got {type(series).__name__}")
    product = str(series.attrs.get("name") or series.attrs.get("source") or "series")
    for col in ("time", "value"):
        if col not in series.columns:
            raise InputError(f"series {product}: column {col!r} is missing")
    box = series.attrs.get("box")
    if box is None or len(box) != 4:
        raise InputError(f"series {product}: attrs['box'] (W, S, E, N) is missing; read the file with "
                         "rsmon.io.series.read_giovanni_series")
    st = _prepare_stations(stations, variable)
    times = pd.to_datetime(series["time"], utc=True)
    if "time_start" in series.columns and "time_end" in series.columns:
        w0 = pd.to_datetime(series["time_start"], utc=True)
        w1 = pd.to_datetime(series["time_end"], utc=True)
        windows_note = f"series windows (stamp {series.attrs.get('stamp', '?')!r})"
    else:
        w0, w1 = times, times + pd.Timedelta("1D")
        windows_note = "no time_start/time_end in the series: each value taken as the UTC day of its time"
    values = pd.to_numeric(series["value"], errors="coerce").to_numpy(dtype=np.float64)
    sat_std = (pd.to_numeric(series["std"], errors="coerce").to_numpy(dtype=np.float64)
               if "std" in series.columns else np.full(values.size, np.nan))
    ok = np.isfinite(values)
    w0_ns = w0.to_numpy(dtype="datetime64[ns]").astype(np.int64)[ok]
    w1_ns = w1.to_numpy(dtype="datetime64[ns]").astype(np.int64)[ok]
    values, sat_std = values[ok], sat_std[ok]

    dist = box_distance_km(st.lon, st.lat, box)
    near = np.flatnonzero(dist <= max_distance_km)
    if near.size == 0:
        raise NoDataError(f"{product}: no station of {st.label} within {max_distance_km} km of the box {tuple(box)} "
                          f"(nearest: {float(dist.min()):.1f} km)")
    if values.size == 0:
        raise NoDataError(f"{product}: the series has no finite value; no matchups with {st.label}")

    half = int(round(window_min * _MIN_NS))
    sat = _Sat.empty()
    windows = []
    for s in near:
        base = len(sat.station)
        for k in range(values.size):
            sat.add(int(s), int(w0_ns[k]), float(values[k]), float(sat_std[k]), 1, float(dist[s]))
        match = base + np.arange(values.size)
        if ground_rule == "same_day":
            shift = _lon_offset_ns(st.lon[s]) if day_basis == "local" else 0
            a, b, rows = w0_ns - shift, w1_ns - shift - 1, np.arange(values.size)
        else:
            a, b, rows = _overpass_windows(w0_ns, w1_ns, st.lon[s], clock, half, local_basis=day_basis == "local")
        windows.append((np.full(a.size, s), a, b, match[rows]))
    ground = _ground_stats(st, *_stack_windows(windows), len(sat.station), hour_ending=False)
    attrs = {
        "collocation": "series",
        "series_variable": series.attrs.get("variable"),
        "sat_units": series.attrs.get("units", ""),
        "box": tuple(float(v) for v in box),
        "max_distance_km": max_distance_km,
        "ground_rule": ground_rule,
        "overpass_local_solar": overpass_local_solar if ground_rule == "overpass_window" else None,
        "window_min": window_min if ground_rule == "overpass_window" else None,
        "day_basis": day_basis,
        "min_ground": min_ground,
        "series_windows": windows_note,
        "time": "start of the series step's window",
        "earth_radius_km": EARTH_MEAN_RADIUS_KM,
    }
    what = f"{near.size} station(s) within {max_distance_km} km of the box, {values.size} finite series value(s)"
    return _build_table(st, sat, ground, product, 1, min_ground, attrs, what)
