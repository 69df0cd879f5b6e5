"""Collocation of one Level-2 swath with stations: the containing pixel or the pixels within a radius.

A k-d tree on the pixel centres finds each station's candidate pixels; everything else is read for the
scanlines near the stations only. Re-exported by :mod:`rsmon.validate.collocate`, whose docstring
holds the conventions shared by the three modes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from rsmon.errors import InputError
from rsmon.validate._matchups import (
    _build_table,
    _check_choice,
    _check_count,
    _check_positive,
    _ground_stats,
    _mean_std,
    _prepare_stations,
    _Sat,
)
from rsmon.validate.geo import (
    _MIN_NS,
    EARTH_MEAN_RADIUS_KM,
    EDGE_RULE,
    _unit_vectors,
    haversine_km,
    point_in_quads,
)

__all__ = ["collocate_swath"]


def collocate_swath(
    ds: xr.Dataset,
    stations: pd.DataFrame,
    *,
    variable: str | None = None,
    sat_variable: str | None = None,
    qa_min: float | None = None,
    mode: str = "containing",
    radius_km: float = 10.0,
    window_min: float = 30.0,
    min_pixels: int = 1,
    ground_rule: str = "window",
    min_ground: int = 1,
) -> pd.DataFrame:
    """Match one Level-2 swath with stations: the containing pixel or the pixels within a radius.

    Only the pixel centres of the whole swath are read; corner bounds, values, QA and times are read
    for the scanlines near the stations only (the dataset may be lazy, as :func:`rsmon.io.s5p.open_s5p`
    returns it).

    Parameters
    ----------
    ds : xarray.Dataset
        One swath in the layout of :func:`rsmon.io.s5p.open_s5p`: ``latitude``/``longitude``
        (scanline, ground_pixel), ``latitude_bounds``/``longitude_bounds`` (scanline, ground_pixel,
        corner; needed for ``mode="containing"``), ``time_utc`` (scanline, UTC), the product variable,
        and ``qa_value_raw`` (or ``qa_value``) when ``qa_min`` is given. ``attrs["main_variable"]``
        names the default variable, ``attrs["source_path"]`` the file (the Matchup ``product``).
    stations : pandas.DataFrame
        Station table (contract in :mod:`rsmon.validate`).
    variable : str, optional
        Station variable to use (``"no2"``, ``"aod_550"``, ...); needed when the table holds several.
    sat_variable : str, optional
        Satellite variable; default ``ds.attrs["main_variable"]``.
    qa_min : float, optional
        Keep pixels with ``qa_value > qa_min`` (0..1), compared on the stored integer as the NO2
        product and HARP do (``qa_value_raw > 100 * qa_min``, fill 255 excluded). 0.75 is the
        recommendation for TROPOMI NO2 (atmos.md 5.2, PRF). None keeps every pixel with a value.
    mode : {"containing", "radius"}
        ``"containing"``: the pixel whose corner quadrilateral contains the station (planar lon/lat,
        longitudes unwrapped around the station so the antimeridian is safe; edge ties as in
        :func:`point_in_quads`; if overlapping quadrilaterals both contain it, the one with the
        nearer centre). The match is dropped if that pixel fails QA or has no value.
        ``"radius"``: all valid pixels whose centres lie within ``radius_km`` (haversine).
    radius_km : float
        Radius of ``mode="radius"``, km (atmos.md 5.2: 5-10 km for TROPOMI NO2; 4.2: 25 km for 10 km
        AOD products).
    window_min : float
        Half width of the ground time window around the overpass, minutes (atmos.md 4.2: 30).
    min_pixels : int
        Minimum number of valid pixels of a matchup.
    ground_rule : {"window", "bracket_hours"}
        ``"window"``: station values whose interval overlaps ``[t - window, t + window]``, ``t`` the
        scanline time of the containing pixel (or the mean time of the pixels in the radius).
        ``"bracket_hours"``: the same with the values read as hour-ending hours (CNEMC, atmos.md 5.2):
        an instantaneous value stamped ``h`` stands for ``[h-1 h, h)``; other durations are an error.
        For a 13:30-14:30 (Beijing) window this takes the values labelled 14:00 and 15:00.
    min_ground : int
        Minimum number of ground values of a matchup.

    Returns
    -------
    pandas.DataFrame
        Matchup table; ``time`` is the pixel's scanline time (mean over the pixels in ``radius``
        mode); ``distance_km`` the distance to the containing pixel's centre (mean distance of the
        pixels in ``radius`` mode). ``attrs`` hold the parameters.

    Raises
    ------
    InputError
        Bad parameters; a variable missing from ``ds``; a Station table without ``lon``/``lat``
        (column absent or all NaN), with mixed units or with timezone-naive times.
    NoDataError
        No station is matched (message names the product file and the stations' files/variable).
    """
    _check_choice("mode", mode, ("containing", "radius"))
    _check_choice("ground_rule", ground_rule, ("window", "bracket_hours"))
    radius_km = _check_positive("radius_km", radius_km)
    window_min = _check_positive("window_min", window_min, allow_zero=True)
    min_pixels = _check_count("min_pixels", min_pixels)
    min_ground = _check_count("min_ground", min_ground)
    if qa_min is not None:
        qa_min = _check_positive("qa_min", qa_min, allow_zero=True)
        if qa_min > 1:
            raise InputError(f"qa_min: expected a number in [0, 1], got {qa_min}")
    st = _prepare_stations(stations, variable)
    if ground_rule == "bracket_hours":
        st.check_hourly()
    product = str(ds.attrs.get("source_path") or ds.encoding.get("source") or "dataset")
    sat_variable = sat_variable or ds.attrs.get("main_variable")
    if not sat_variable or sat_variable not in ds.variables:
        raise InputError(f"{product}: satellite variable {sat_variable!r} not in the swath "
                         f"(data variables: {sorted(ds.data_vars)})")
    needed = ["latitude", "longitude", "time_utc"] + (["latitude_bounds", "longitude_bounds"]
                                                      if mode == "containing" else [])
    for name in needed:
        if name not in ds.variables:
            raise InputError(f"{product}: {name!r} missing from the swath (needed for mode={mode!r})")
    qa_name = None
    if qa_min is not None:
        qa_name = next((n for n in ("qa_value_raw", "qa_value") if n in ds.variables), None)
        if qa_name is None:
            raise InputError(f"{product}: qa_min={qa_min} given but the swath has no qa_value_raw/qa_value")

    lat = np.asarray(ds["latitude"].values, dtype=np.float64)
    lon = np.asarray(ds["longitude"].values, dtype=np.float64)
    if lat.ndim != 2:
        raise InputError(f"{product}: latitude has dims {ds['latitude'].dims}, expected (scanline, ground_pixel)")
    n_scan, n_pix = lat.shape
    finite = np.flatnonzero(np.isfinite(lat.ravel()) & np.isfinite(lon.ravel()))
    sxyz = _unit_vectors(st.lon, st.lat)
    candidates: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(st.ids)
    if finite.size:
        from scipy.spatial import cKDTree

        tree = cKDTree(_unit_vectors(lon.ravel()[finite], lat.ravel()[finite]))
        if mode == "containing":
            _, nearest = tree.query(sxyz, k=1)
            for s, k in enumerate(np.atleast_1d(nearest)):
                i0, j0 = divmod(int(finite[k]), n_pix)
                ii, jj = np.meshgrid(np.arange(max(i0 - 2, 0), min(i0 + 3, n_scan)),
                                     np.arange(max(j0 - 2, 0), min(j0 + 3, n_pix)), indexing="ij")
                candidates[s] = (ii * n_pix + jj).ravel()
        else:
            chord = 2.0 * math.sin(min(radius_km / EARTH_MEAN_RADIUS_KM, math.pi) / 2.0) * (1 + 1e-9)
            for s, hits in enumerate(tree.query_ball_point(sxyz, chord)):
                candidates[s] = finite[np.asarray(hits, dtype=np.int64)] if hits else np.empty(0, dtype=np.int64)
    rows = np.unique(np.concatenate([c // n_pix for c in candidates] + [np.empty(0, dtype=np.int64)]))

    sat = _Sat.empty()
    if rows.size:
        names = [sat_variable, "time_utc"] + ([qa_name] if qa_name else []) + (
            ["latitude_bounds", "longitude_bounds"] if mode == "containing" else [])
        sub = xr.Dataset({n: ds[n].variable for n in names}).isel(scanline=rows).compute()
        values = np.asarray(sub[sat_variable].values, dtype=np.float64)
        valid = np.isfinite(values)
        if qa_name == "qa_value_raw":
            raw = np.asarray(sub[qa_name].values)
            # HARP-style integer comparison: qa_value > qa_min  <=>  raw > 100 qa_min; 255 is fill
            valid &= (raw != 255) & (raw.astype(np.float64) > round(qa_min * 100.0, 6))
        elif qa_name == "qa_value":
            valid &= np.asarray(sub[qa_name].values, dtype=np.float64) > qa_min
        times = np.asarray(sub["time_utc"].values).astype("datetime64[ns]").astype(np.int64)
        nat = np.iinfo(np.int64).min
        valid &= (times != nat)[:, None]
        if mode == "containing":
            lat_b = np.asarray(sub["latitude_bounds"].values, dtype=np.float64)
            lon_b = np.asarray(sub["longitude_bounds"].values, dtype=np.float64)
        for s, cand in enumerate(candidates):
            if cand.size == 0:
                continue
            i_full, j = np.divmod(cand, n_pix)
            i = np.searchsorted(rows, i_full)
            slon, slat = st.lon[s], st.lat[s]
            if mode == "containing":
                qx = lon_b[i, j]
                qx = slon + ((qx - slon + 180.0) % 360.0 - 180.0)
                qy = lat_b[i, j]
                ok = np.isfinite(qx).all(axis=1) & np.isfinite(qy).all(axis=1)
                inside = np.zeros(cand.size, dtype=bool)
                inside[ok] = point_in_quads(slon, slat, qx[ok], qy[ok])
                if not inside.any():
                    continue
                dist = haversine_km(slon, slat, lon.ravel()[cand], lat.ravel()[cand])
                pick = np.flatnonzero(inside)
                best = pick[np.lexsort((cand[pick], dist[pick]))[0]]
                if not valid[i[best], j[best]]:
                    continue
                sat.add(s, int(times[i[best]]), float(values[i[best], j[best]]), math.nan, 1, float(dist[best]))
            else:
                dist = haversine_km(slon, slat, lon.ravel()[cand], lat.ravel()[cand])
                use = valid[i, j] & (dist <= radius_km)
                if not use.any():
                    continue
                mean, std, n = _mean_std(values[i[use], j[use]])
                t = int(np.round(np.mean(times[i[use]] - times[i[use]].min()))) + int(times[i[use]].min())
                sat.add(s, t, mean, std, n, float(dist[use].mean()))

    half = int(round(window_min * _MIN_NS))
    t = np.asarray(sat.time_ns, dtype=np.int64)
    idx = np.arange(t.size)
    ground = _ground_stats(st, np.asarray(sat.station, dtype=np.int64), t - half, t + half, idx, t.size,
                           hour_ending=ground_rule == "bracket_hours")
    attrs = {
        "collocation": "swath",
        "mode": mode,
        "radius_km": radius_km if mode == "radius" else None,
        "qa_min": qa_min,
        "qa_variable": qa_name,
        "sat_variable": sat_variable,
        "sat_units": str(ds[sat_variable].attrs.get("units", "")),
        "window_min": window_min,
        "ground_rule": ground_rule,
        "min_pixels": min_pixels,
        "min_ground": min_ground,
        "time": "scanline time of the pixel (mean over the pixels in radius mode)",
        "edge_rule": EDGE_RULE,
        "earth_radius_km": EARTH_MEAN_RADIUS_KM,
    }
    what = f"{len(st.ids)} station(s), {len(sat.station)} inside the swath with a valid pixel"
    return _build_table(st, sat, ground, product, max(min_pixels, 1), min_ground, attrs, what)
