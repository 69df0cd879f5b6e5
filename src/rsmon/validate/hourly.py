"""Hourly gridded satellite NO2 (GEMS, geostationary) against hourly stations, all of China.

:func:`collocate_hourly_grid` pairs each station with the grid cell that *contains* it, hour by hour;
:func:`station_provinces` / :func:`add_provinces` attach the province of each station from admin
polygons; :func:`run_gems_case` runs the whole real case of ``shared/data/gems-no2-cnemc-china``
(report, per-province and per-day tables, one map per day).

Time pairing (``offset_hours``)
-------------------------------
A satellite grid step is stamped with the UTC hour ``h`` of its scan (GEMS: the scan began at about
``h:45`` UTC, :mod:`rsmon.io.gems`). Station values are hour-ending means (CNEMC, atmos.md 5.2): the
value labelled ``L`` covers ``[L - 1 h, L)``. ``offset_hours = k`` pairs the scan ``h`` with the value
labelled ``h + k`` (UTC), i.e. the station mean of ``[h + k - 1 h, h + k)``:

* ``0``: same label as the scan hour, interval ``[h - 1, h)`` (the "same UTC hour" pairing of the
  data's SOURCE.txt; it ends about 45 min before the scan starts);
* ``1``: label ``h + 1``, interval ``[h, h + 1)``, which contains the scan start ``h:45``;
* ``2``: label ``h + 2``, interval ``[h + 1, h + 2)``, which holds the later part of a scan that
  starts at ``h:45`` and lasts about 30 min.

Cell containment
----------------
The grid's cell edges are ``centre -+ res/2``; a station belongs to the cell whose half-open box
``[west, east) x (south, north]`` holds it (a cell owns its west and north edges, GDAL's convention,
as in :func:`rsmon.validate.collocate.collocate_grid`). With the CNEMC parquet coordinates (0.01
degree) and 0.05-degree cells (edges at x.x25 / x.x75) no station lies on an edge.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from rsmon.errors import InputError, NoDataError
from rsmon.validate.collocate import (
    EARTH_MEAN_RADIUS_KM,
    EDGE_RULE,
    MATCHUP_COLUMNS,
    _check_count,
    _prepare_stations,
    haversine_km,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ADMIN",
    "add_provinces",
    "collocate_hourly_grid",
    "run_gems_case",
    "station_provinces",
]

_HOUR_NS = 3_600_000_000_000

#: The project's province outlines (DataV GeoJSON, property ``name``), used when ``admin`` is not given.
DEFAULT_ADMIN = Path(__file__).resolve().parents[3] / "seeds" / "china-admin" / "100000_full.json"


# --------------------------------------------------------------------------------------------------
# collocation
# --------------------------------------------------------------------------------------------------

def _grid_axes(ds: xr.Dataset, name: str, where: str):
    da = ds[name]
    for dim in ("time", "lat", "lon"):
        if dim not in da.dims:
            raise InputError(f"{where}: variable {name!r} has dims {da.dims}; expected (time, lat, lon)")
    lat = np.asarray(ds["lat"].values, dtype=np.float64)
    lon = np.asarray(ds["lon"].values, dtype=np.float64)
    if lat.size < 2 or lon.size < 2:
        raise InputError(f"{where}: the grid needs at least 2 cells along lat and lon to know its spacing")
    res_y = abs(lat[1] - lat[0])
    res_x = lon[1] - lon[0]
    if res_x <= 0:
        raise InputError(f"{where}: coordinate 'lon' must increase")
    for axis, values, res in (("lat", lat, res_y), ("lon", lon, res_x)):
        if not np.allclose(np.abs(np.diff(values)), res, rtol=1e-6, atol=1e-9):
            raise InputError(f"{where}: coordinate {axis!r} is not regularly spaced")
    north_up = lat[1] < lat[0]
    north = (lat.max() + res_y / 2.0)
    west = lon.min() - res_x / 2.0
    return lat, lon, float(res_x), float(res_y), float(west), float(north), north_up


def collocate_hourly_grid(
    grid_ds: xr.Dataset,
    stations: pd.DataFrame,
    *,
    offset_hours: int = 0,
    variable: str | None = None,
    sat_variable: str | None = None,
    min_ground: int = 1,
) -> pd.DataFrame:
    """Pair an hourly lon/lat grid (GEMS) with hour-ending station values, cell containing the station.

    Parameters
    ----------
    grid_ds : xarray.Dataset
        Dims ``time`` (naive UTC or tz-aware), ``lat``, ``lon`` (1-D regular cell centres, lat in
        either order), e.g. :func:`rsmon.io.gems.read_gems_hourly_grid`. NaN = no observation.
    stations : pandas.DataFrame
        Station table with hourly values (``time_end - time_start`` = 1 h), e.g.
        :func:`rsmon.io.gems.read_cnemc_parquet`.
    offset_hours : int
        Pairing of the scan hour ``h`` with the station value labelled ``h + offset_hours``
        (interval ``[h + offset_hours - 1 h, h + offset_hours)``); module docstring. Report both 0
        and 1.
    variable : str, optional
        Station variable (needed when the table holds several).
    sat_variable : str, optional
        Grid variable; default ``grid_ds.attrs["main_variable"]`` or the only data variable.
    min_ground : int
        Minimum number of station values per pair (one per hour normally; duplicated rows of the
        same station and hour are averaged).

    Returns
    -------
    pandas.DataFrame
        Matchup table (:mod:`rsmon.validate` contract): one row per station and scan hour with a
        finite cell value and a station value; ``time`` = the scan hour label (UTC); ``sat_n`` = 1,
        ``sat_std`` NaN; ``distance_km`` = station to cell centre (haversine). ``attrs`` hold
        ``offset_hours``, ``ground_interval``, the edge rule and counts.

    Raises
    ------
    InputError
        Bad ``offset_hours``/``min_ground``; a grid without (time, lat, lon) or irregular; station
        values that are not hourly; bad Station table (see :func:`~rsmon.validate.collocate.collocate_grid`).
    NoDataError
        No pair.
    """
    if isinstance(offset_hours, bool) or not isinstance(offset_hours, (int, np.integer)):
        raise InputError(f"offset_hours: expected an integer number of hours (0 or 1), got {offset_hours!r}")
    offset_hours = int(offset_hours)
    if abs(offset_hours) > 24:
        raise InputError(f"offset_hours: expected a value between -24 and 24, got {offset_hours}")
    min_ground = _check_count("min_ground", min_ground)
    if not isinstance(grid_ds, xr.Dataset):
        raise InputError(f"grid_ds: expected an xarray Dataset, got {type(grid_ds).__name__}")
    where = str(grid_ds.attrs.get("source_path") or grid_ds.encoding.get("source") or "grid")
    if sat_variable is None:
        sat_variable = grid_ds.attrs.get("main_variable")
        if sat_variable is None:
            if len(grid_ds.data_vars) != 1:
                raise InputError(f"{where}: several data variables {list(grid_ds.data_vars)}; choose sat_variable=")
            sat_variable = next(iter(grid_ds.data_vars))
    if sat_variable not in grid_ds.data_vars:
        raise InputError(f"{where}: no variable {sat_variable!r} (variables: {list(grid_ds.data_vars)})")
    lat, lon, res_x, res_y, west, north, north_up = _grid_axes(grid_ds, sat_variable, where)
    st = _prepare_stations(stations, variable)
    dur = np.unique(st.t1 - st.t0)
    if dur.size and not (dur.size == 1 and dur[0] == _HOUR_NS):
        found = ", ".join(str(pd.Timedelta(int(d), "ns")) for d in dur[:3])
        raise InputError(f"stations: {st.label} holds values of duration {found}; collocate_hourly_grid needs "
                         "hour-ending hourly values (time_end - time_start = 1 h)")

    times = pd.to_datetime(grid_ds["time"].values)
    times = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    scan_ns = times.as_unit("ns").asi8
    n_t = scan_ns.size
    if n_t == 0:
        raise NoDataError(f"{where}: the grid has no time step")

    # station -> containing cell (row in the array as stored, col)
    x = west + (st.lon - west) % 360.0
    col = np.floor((x - west) / res_x).astype(np.int64)
    row_n = np.floor((north - st.lat) / res_y).astype(np.int64)  # row counted from the north
    inside = (col >= 0) & (col < lon.size) & (row_n >= 0) & (row_n < lat.size)
    s_in = np.flatnonzero(inside)
    col_in = col[s_in]
    row_in = row_n[s_in] if north_up else (lat.size - 1 - row_n[s_in])
    clon = lon[col_in]
    clat = lat[row_in]

    # satellite values at the station cells: (time, station)
    da = grid_ds[sat_variable].transpose("time", "lat", "lon")
    sat = np.asarray(da.isel(lat=xr.DataArray(row_in, dims="s"), lon=xr.DataArray(col_in, dims="s")).values,
                     dtype=np.float64) if s_in.size else np.empty((n_t, 0))

    # ground values: the value ending at scan + offset hours
    per_station = np.diff(st.offsets)
    g_station = np.repeat(np.arange(len(st.ids)), per_station)
    want_end = scan_ns + offset_hours * _HOUR_NS
    order = np.argsort(want_end)
    pos = np.searchsorted(want_end[order], st.t1)
    pos_c = np.minimum(pos, n_t - 1)
    hit = want_end[order][pos_c] == st.t1
    k_of = np.where(hit, order[pos_c], -1)
    slot = np.full(len(st.ids), -1, dtype=np.int64)
    slot[s_in] = np.arange(s_in.size)
    g_slot = slot[g_station]
    use = hit & (g_slot >= 0)
    key = k_of[use] * max(s_in.size, 1) + g_slot[use]
    vals = st.values[use]
    size = n_t * max(s_in.size, 1)
    g_n = np.bincount(key, minlength=size).astype(np.int64)
    g_sum = np.bincount(key, weights=vals, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        g_mean = np.where(g_n > 0, g_sum / np.maximum(g_n, 1), np.nan)
        dev2 = (vals - g_mean[key]) ** 2
        g_var = np.bincount(key, weights=dev2, minlength=size) / np.maximum(g_n - 1, 1)
    g_std = np.where(g_n > 1, np.sqrt(g_var), np.nan)

    sat_flat = sat.reshape(-1)  # index k * S_in + slot, the same layout as key
    keep = np.isfinite(sat_flat) & (g_n >= max(min_ground, 1))
    idx = np.flatnonzero(keep)
    k_idx, s_slot = np.divmod(idx, max(s_in.size, 1))
    s_idx = s_in[s_slot]
    if idx.size == 0:
        n_sat = int(np.isfinite(sat_flat).sum())
        raise NoDataError(
            f"{where}: no matchups with {st.label}: {len(st.ids)} station(s), {s_in.size} inside the grid, "
            f"{n_sat} station x hour pair(s) with a finite cell value, none with a station value labelled "
            f"scan hour + {offset_hours} h")
    product = str(grid_ds.attrs.get("product") or Path(where.split(";")[0]).name or "grid")
    df = pd.DataFrame({
        "station_id": st.ids[s_idx].astype(str),
        "station_name": st.names[s_idx].astype(str),
        "lon": st.lon[s_idx],
        "lat": st.lat[s_idx],
        "time": pd.to_datetime(scan_ns[k_idx], unit="ns", utc=True),
        "sat_mean": sat_flat[idx],
        "sat_std": np.nan,
        "sat_n": np.ones(idx.size, dtype=np.int64),
        "ground_mean": g_mean[idx],
        "ground_std": g_std[idx],
        "ground_n": g_n[idx],
        "distance_km": haversine_km(st.lon[s_idx], st.lat[s_idx], clon[s_slot], clat[s_slot]),
        "product": product,
    }, columns=list(MATCHUP_COLUMNS))
    df = df.sort_values(["station_id", "time"], kind="stable").reset_index(drop=True)
    df.attrs = {
        "product": product, "variable": st.variable, "units": st.units,
        "stations_source": list(st.sources), "stations_without_coordinates": list(st.unlocated),
        "collocation": "hourly_grid", "mode": "containing", "sat_variable": sat_variable,
        "sat_units": str(grid_ds[sat_variable].attrs.get("units", "")),
        "offset_hours": offset_hours,
        "ground_interval": f"station value labelled scan hour + {offset_hours} h, i.e. the mean of "
                           f"[h{offset_hours - 1:+d} h, h{offset_hours:+d} h) UTC for the scan hour h",
        "time": "UTC hour label of the satellite scan",
        "min_ground": min_ground, "edge_rule": EDGE_RULE, "earth_radius_km": EARTH_MEAN_RADIUS_KM,
        "n_stations": int(len(st.ids)), "n_stations_inside_grid": int(s_in.size),
        "statistics": "ground: mean of the values of that station and hour (normally one); std ddof=1",
    }
    return df


# --------------------------------------------------------------------------------------------------
# provinces
# --------------------------------------------------------------------------------------------------

def _admin_frame(admin, name_field: str):
    import geopandas as gpd

    from rsmon.io.maps import read_outlines

    if admin is None:
        admin = DEFAULT_ADMIN
        if not admin.is_file():
            raise InputError(f"admin: no polygons given and the default {admin} is absent; pass admin=PATH")
    gdf = admin if isinstance(admin, gpd.GeoDataFrame) else read_outlines(admin)
    if name_field not in gdf.columns:
        raise InputError(f"admin: no property {name_field!r} (columns: {list(gdf.columns)})")
    gdf = gdf[gdf[name_field].notna() & (gdf[name_field].astype(str).str.strip() != "")]
    return gdf[[name_field, "geometry"]].reset_index(drop=True)


def station_provinces(lon, lat, admin=None, *, name_field: str = "name", max_km: float = 25.0) -> np.ndarray:
    """Province (polygon ``name_field``) of each point: the polygon containing it, else the nearest one.

    Parameters
    ----------
    lon, lat : array_like
        Degrees (WGS84; the DataV polygons may be GCJ-02, off by up to ~0.5 km: immaterial at
        province scale except for a station right on a border).
    admin : path or GeoDataFrame, optional
        Polygons (EPSG:4326); default :data:`DEFAULT_ADMIN` (DataV ``100000_full.json``, provinces).
        Features without a name (the DataV nine-dash-line feature) are ignored.
    name_field : str
        Property holding the name.
    max_km : float
        A point in no polygon (coastal stations outside simplified coastlines) takes the nearest
        polygon if it is within this distance (planar distance in degrees x 111.2 km, an
        approximation good enough for this cut-off); otherwise ``""``.

    Returns
    -------
    numpy.ndarray of str
    """
    import geopandas as gpd
    from shapely import points

    gdf = _admin_frame(admin, name_field)
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    pts = gpd.GeoDataFrame({"i": np.arange(lon.size)}, geometry=points(lon, lat), crs="EPSG:4326")
    joined = gpd.sjoin(pts, gdf, how="left", predicate="within")
    joined = joined[~joined.index.duplicated(keep="first")].sort_index()
    out = joined[name_field].fillna("").astype(str).to_numpy(dtype=object)
    missing = np.flatnonzero((out == "") & np.isfinite(lon) & np.isfinite(lat))
    if missing.size:
        geoms = gdf.geometry.to_numpy()
        deg_km = EARTH_MEAN_RADIUS_KM * math.pi / 180.0
        for i in missing:
            p = pts.geometry.iloc[i]
            d = np.array([g.distance(p) for g in geoms]) * deg_km
            j = int(np.argmin(d))
            if d[j] <= max_km:
                out[i] = str(gdf[name_field].iloc[j])
    return out.astype(str)


def add_provinces(matchups: pd.DataFrame, admin=None, *, name_field: str = "name",
                  max_km: float = 25.0) -> pd.DataFrame:
    """A copy of ``matchups`` with a ``province`` column (one lookup per station; :func:`station_provinces`)."""
    for c in ("station_id", "lon", "lat"):
        if c not in matchups.columns:
            raise InputError(f"add_provinces: column {c!r} is missing from the matchup table")
    first = matchups.groupby("station_id", sort=False)[["lon", "lat"]].first()
    names = station_provinces(first["lon"], first["lat"], admin, name_field=name_field, max_km=max_km)
    lookup = pd.Series(names, index=first.index)
    out = matchups.copy()
    out["province"] = out["station_id"].map(lookup).fillna("").astype(str)
    out.attrs = dict(matchups.attrs)
    return out


# --------------------------------------------------------------------------------------------------
# the real case
# --------------------------------------------------------------------------------------------------

def _day_map(path: Path, day_table: pd.DataFrame, outlines, title: str, units_sat: str, units_ground: str) -> None:
    """Two panels: per-station mean ground NO2 and mean satellite column over the matched hours of a day."""
    from matplotlib.figure import Figure

    from rsmon.io.maps import save_figure

    per = day_table.groupby("station_id").agg(lon=("lon", "first"), lat=("lat", "first"),
                                               sat=("sat_mean", "mean"), ground=("ground_mean", "mean"))
    fig = Figure(figsize=(13, 5.6), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, col, label, cmap in ((axes[0], "ground", f"station NO2, mean of matched hours ({units_ground})", "viridis"),
                                 (axes[1], "sat", f"GEMS trop. NO2 column at the station cell ({units_sat})",
                                  "magma_r")):
        if outlines is not None:
            outlines.boundary.plot(ax=ax, color="0.4", linewidth=0.4, zorder=1)
        v = per[col].to_numpy()
        vmax = float(np.nanpercentile(v, 98)) if v.size else 1.0
        sc = ax.scatter(per["lon"], per["lat"], c=v, s=9, cmap=cmap, vmin=0, vmax=vmax, zorder=3,
                        edgecolors="none")
        fig.colorbar(sc, ax=ax, shrink=0.8, label=label)
        ax.set_xlim(73, 136)
        ax.set_ylim(15, 54)
        ax.set_aspect(1.0 / math.cos(math.radians(35)))
        ax.set_xlabel("longitude (degrees east)")
        ax.set_ylabel("latitude (degrees north)")
    fig.suptitle(f"{title}: {len(per)} stations, {len(day_table)} station-hours")
    fig.tight_layout()
    save_figure(fig, path)


def _stat_summary(st) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in ((f, getattr(st, f)) for f in ("n", "r", "spearman", "slope_ols", "intercept_ols",
                                                       "slope_rma", "intercept_rma", "mean_sat", "mean_ground"))}


def run_gems_case(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    offset_hours: int = 0,
    *,
    days: Sequence[str] | None = None,
    admin: str | os.PathLike | None = None,
    n_boot: int = 200,
    day_maps: bool = True,
) -> dict[str, Any]:
    """The GEMS-CNEMC hourly NO2 case: collocate, statistics, report, per-province and per-day tables.

    Parameters
    ----------
    data_dir : path
        Folder with ``gems_no2_YYYYMMDD.parquet`` and ``cnemc_no2_YYYYMMDD.parquet`` files
        (``shared/data/gems-no2-cnemc-china``).
    out_dir : path
        Output folder: the :func:`~rsmon.validate.report.write_report` files (``matchups.csv`` with a
        ``province`` column, ``stations.csv``, ``stats.json``, ``scatter.png``, ``timeseries.png``,
        ``map.png`` = per-station R with province outlines, ``report.html``), plus ``by_province.csv``,
        ``by_day.csv``, ``summary.json`` and ``map_YYYYMMDD.png`` per day.
    offset_hours : int
        Station value labelled scan hour + ``offset_hours`` (:func:`collocate_hourly_grid`).
    days : sequence of ``"YYYYMMDD"``, optional
        GEMS days to use (default: every GEMS file). All CNEMC files of the folder are read, so a
        scan at 23 UTC finds the next day's station values when ``offset_hours`` > 0.
    admin : path, optional
        Province polygons (default :data:`DEFAULT_ADMIN`).
    n_boot : int
        Bootstrap resamplings for the overall intervals (per-province/per-day tables: none).
    day_maps : bool
        Write ``map_YYYYMMDD.png``.

    Returns
    -------
    dict
        ``offset_hours``, ``overall`` (n, r, spearman, slopes, means), ``by_day`` ({day: {n, r,
        spearman, slope_ols, slope_rma, n_stations}}), ``n_stations``, ``n_provinces`` (with >= 3
        pairs), ``provinces_unassigned`` (stations in no polygon), ``paths``.

    Statistics: :func:`~rsmon.validate.stats.compute_stats` with ``kind="no2"``, ``bias_stats=False``
    (a column is not a concentration: correlations and slopes only, atmos.md 5.2).
    """
    from rsmon.io.atomic import atomic_output, check_output_dir
    from rsmon.io.gems import GEMS_UNITS, read_cnemc_parquet, read_gems_hourly_grid
    from rsmon.io.maps import read_outlines
    from rsmon.validate.report import write_report
    from rsmon.validate.stats import compute_stats, stats_by

    data_dir = Path(data_dir)
    out = check_output_dir(out_dir)
    gems_files = sorted(data_dir.glob("gems_no2_*.parquet"))
    cnemc_files = sorted(data_dir.glob("cnemc_no2_*.parquet"))
    if days is not None:
        wanted = {str(d).replace("-", "") for d in days}
        gems_files = [p for p in gems_files if p.stem.rsplit("_", 1)[-1] in wanted]
    if not gems_files:
        raise NoDataError(f"{data_dir}: no gems_no2_YYYYMMDD.parquet file" + (f" for days {sorted(days)}" if days else ""))
    if not cnemc_files:
        raise NoDataError(f"{data_dir}: no cnemc_no2_YYYYMMDD.parquet file")
    stations = pd.concat([read_cnemc_parquet(p) for p in cnemc_files], ignore_index=True)
    stations = stations.drop_duplicates(["station_id", "time_end"], keep="first")
    admin_path = Path(admin) if admin is not None else DEFAULT_ADMIN
    outlines = read_outlines(admin_path)

    parts = []
    for path in gems_files:
        grid = read_gems_hourly_grid(path)
        try:
            parts.append(collocate_hourly_grid(grid, stations, offset_hours=offset_hours, variable="no2"))
        except NoDataError as exc:
            log.warning("%s: %s", path.name, exc)
        del grid
    if not parts:
        raise NoDataError(f"{data_dir}: no GEMS-station matchups with offset_hours={offset_hours}")
    attrs = dict(parts[0].attrs)
    matchups = pd.concat(parts, ignore_index=True)
    matchups = add_provinces(matchups, outlines)
    attrs["product"] = "GEMS L2 NO2 (0.05-degree hourly grid), " + ", ".join(p.name for p in gems_files)
    matchups.attrs = attrs

    kw = dict(kind="no2", bias_stats=False)
    stats = compute_stats(matchups["sat_mean"].to_numpy(), matchups["ground_mean"].to_numpy(), n_boot=n_boot, **kw)
    by_province = stats_by(matchups, "province", min_n=3, n_boot=0, **kw)
    counts = matchups.groupby("province")["station_id"].nunique().rename("n_stations")
    by_province = by_province.merge(counts, left_on="province", right_index=True, how="left")
    by_day = stats_by(matchups, "day", min_n=3, n_boot=0, **kw)
    day_key = pd.to_datetime(matchups["time"], utc=True).dt.floor("D")
    by_day = by_day.merge(matchups.groupby(day_key)["station_id"].nunique().rename("n_stations"),
                          left_on="day", right_index=True, how="left")
    by_day["day"] = pd.to_datetime(by_day["day"], utc=True).dt.strftime("%Y-%m-%d")

    pairing = matchups.attrs["ground_interval"]
    meta = {
        "command": f"rsmon.validate.hourly.run_gems_case({str(data_dir)!r}, {str(out)!r}, offset_hours={offset_hours})",
        "inputs": [str(p) for p in gems_files + cnemc_files],
        "admin": str(admin_path),
        "parameters": {"offset_hours": offset_hours, "pairing": pairing, "mode": "cell containing the station",
                       "bias_stats": False, "n_boot": n_boot},
    }
    title = f"GEMS tropospheric NO2 vs CNEMC surface NO2, hourly, offset {offset_hours} h"
    paths = write_report(out, matchups, stats, kind="no2", title=title, meta=meta, outlines=outlines,
                         units_sat=GEMS_UNITS, units_ground="ug m-3")
    for name, table in (("by_province", by_province), ("by_day", by_day)):
        target = out / f"{name}.csv"
        with atomic_output(target) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        paths[name] = target
    if day_maps:
        for day, table in matchups.groupby(day_key):
            target = out / f"map_{day:%Y%m%d}.png"
            _day_map(target, table, outlines, f"{day:%Y-%m-%d} (offset {offset_hours} h)", GEMS_UNITS, "ug m-3")
            paths[f"map_{day:%Y%m%d}"] = target

    per_day = {row["day"]: {"n": int(row["n"]), "r": float(row["r"]), "spearman": float(row["spearman"]),
                            "slope_ols": float(row["slope_ols"]), "slope_rma": float(row["slope_rma"]),
                            "n_stations": int(row["n_stations"])} for _, row in by_day.iterrows()}
    unassigned = sorted(matchups.loc[matchups["province"] == "", "station_id"].unique())
    result = {
        "offset_hours": offset_hours,
        "pairing": pairing,
        "overall": _stat_summary(stats),
        "r_ci": list(stats.r_ci),
        "by_day": per_day,
        "n_stations": int(matchups["station_id"].nunique()),
        "n_provinces": int(len(by_province)),
        "provinces_unassigned": unassigned,
        "paths": {k: str(v) for k, v in paths.items()},
    }
    target = out / "summary.json"
    with atomic_output(target) as tmp:
        tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    result["paths"]["summary"] = str(target)
    return result
