"""Sentinel-5P L2 granule metadata and swath footprint, without reading pixel values (but geolocation).

:func:`read_metadata` serves catalogs and ``rsmon info``; it is re-exported by :mod:`rsmon.io.s5p`
and registered there as the s5p reader's metadata function.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rsmon.errors import FormatError, UnsupportedFormatError
from rsmon.io.footprint import attribute_footprint, footprint_bbox, swath_footprint, to_geojson
from rsmon.io.ncfile import NC_LOCK, data_variables, existing_file, get_group, nc_attrs, open_netcdf, read_values
from rsmon.io.s5p_layout import (
    _TIME_FACTORS_NS,
    _UNIT_ALIASES,
    GEOLOCATIONS_GROUP,
    PRODUCT_GROUP,
    PRODUCTS,
    _detect_product,
    _granule_facts,
    _pixel_dims,
    _reference_ns,
)

__all__ = ["FOOTPRINT_ROWS", "read_metadata"]

#: Rows kept for the footprint outline (the swath is decimated along track to about this many).
FOOTPRINT_ROWS = 240


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Granule facts for catalogs and ``rsmon info``, without reading pixel values (except geolocation).

    Parameters
    ----------
    path : str or Path
        An S5P L2 file; metadata-only files (PRODUCT group without variables) are accepted.

    Returns
    -------
    dict
        ``reader`` ("s5p"), ``path`` (absolute), ``product`` ("NO2"/"CH4"/"AER_AI", or the
        identifier found, or None), ``main_variable`` (rsmon name or None), ``mode``, ``orbit``
        (int, -1 if unknown), ``collection`` (int or None), ``processor`` ("010302"),
        ``processor_version`` ("1.3.2"), ``start_datetime``/``end_datetime`` (timezone-aware UTC
        datetimes: observed scanline times when pixel data exist, else the file's time coverage),
        ``time_coverage_start``/``_end`` (ISO strings from the file), ``bbox`` ([west, south, east,
        north] degrees; west > east when crossing the antimeridian, RFC 7946), ``footprint``
        (GeoJSON geometry dict), ``footprint_source`` ("pixel_bounds", "pixel_centres",
        "attributes" or "none"), ``dims`` ({"scanline": n, "ground_pixel": n}), ``has_pixel_data``
        (bool), ``variables`` (rsmon names :func:`open_s5p` would return), ``variable_details``
        (name -> {"source_variable", "units", "long_name", "dims"}), ``platform``, ``instrument``.

    Raises
    ------
    FormatError, UnsupportedFormatError
        As :func:`open_s5p` (missing, not NetCDF, truncated, no PRODUCT group).
    """
    path = existing_file(path)
    with NC_LOCK:
        _, nc = open_netcdf(path)
        return _metadata(path, nc)


def _metadata(path: Path, nc) -> dict[str, Any]:
    """The body of :func:`read_metadata` (called with ``NC_LOCK`` held)."""
    prod_group = get_group(nc, PRODUCT_GROUP)
    if prod_group is None:
        raise UnsupportedFormatError(f"{path}: not a Sentinel-5P L2 file (no PRODUCT group)")
    product = _detect_product(path, nc, None)
    facts = _granule_facts(path, nc, product)
    spec = PRODUCTS.get(product or "")
    pvars = prod_group.variables
    sizes = {name: len(dim) for name, dim in prod_group.dimensions.items()}
    has_pixels = bool(data_variables(prod_group)) and "latitude" in pvars and "longitude" in pvars

    start = _parse_iso(facts.time_coverage_start)
    end = _parse_iso(facts.time_coverage_end)
    footprint, bbox, source = None, None, "none"
    if has_pixels:
        start, end = _observed_time_range(nc, pvars, start, end)
        footprint, bbox, source = _pixel_footprint(nc, pvars)
    if footprint is None:
        footprint, bbox = attribute_footprint(facts.global_attrs)
        source = "attributes" if footprint is not None else "none"

    details: dict[str, dict[str, Any]] = {}
    if has_pixels:
        for name in ("latitude", "longitude"):
            details[name] = _details(name, pvars[name])
        for var in (spec.variables if spec else ()):
            if var.source in pvars:
                details[var.name] = _details(var.source, pvars[var.source], var.units)
        if "qa_value" in pvars:
            details["qa_value"] = _details("qa_value", pvars["qa_value"])
            details["qa_value_raw"] = {**details["qa_value"], "long_name": "qa_value x 100 (255 = fill)"}
        geo = get_group(nc, GEOLOCATIONS_GROUP)
        for name, units in (("latitude_bounds", "degrees_north"), ("longitude_bounds", "degrees_east")):
            if geo is not None and name in geo.variables:
                details[name] = _details(name, geo.variables[name], units)
        if "delta_time" in pvars:
            details["time_utc"] = {"source_variable": "time + delta_time", "units": "UTC",
                                   "long_name": "time of observation of the scanline", "dims": ["scanline"]}

    return {
        "reader": "s5p",
        "path": str(path),
        "product": product,
        "main_variable": spec.main_variable if spec else None,
        "mode": facts.mode,
        "orbit": facts.orbit,
        "collection": facts.collection,
        "processor": facts.processor,
        "processor_version": facts.processor_version,
        "start_datetime": start,
        "end_datetime": end,
        "time_coverage_start": facts.time_coverage_start,
        "time_coverage_end": facts.time_coverage_end,
        "bbox": bbox,
        "footprint": footprint,
        "footprint_source": source,
        "dims": {d: sizes[d] for d in ("scanline", "ground_pixel") if d in sizes},
        "has_pixel_data": has_pixels,
        "variables": list(details),
        "variable_details": details,
        "platform": "Sentinel-5P",
        "instrument": "TROPOMI",
    }


def _details(source: str, var, units: str | None = None) -> dict[str, Any]:
    attrs = nc_attrs(var)
    file_units = str(attrs.get("units", "")).strip()
    return {
        "source_variable": source,
        "units": _UNIT_ALIASES.get(file_units, file_units) or units or "",
        "long_name": str(attrs.get("long_name", "")),
        "dims": list(_pixel_dims(var)),
    }


def _parse_iso(text: str) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def _observed_time_range(nc, pvars, start, end):
    """First and last valid scanline time from PRODUCT/time + delta_time (1-D reads only)."""
    if "delta_time" not in pvars or "time" not in pvars:
        return start, end
    try:
        units = str(pvars["time"].getncattr("units"))
        ref = float(read_values(pvars["time"]).ravel()[0])
        dt = pvars["delta_time"]
        factor = _TIME_FACTORS_NS[str(dt.getncattr("units")).strip().lower()]
        # first ground pixel only when delta_time is per pixel: it is constant along a scanline
        index = (0, slice(None), 0) if len(_pixel_dims(dt)) == 2 else (0, slice(None))
        delta = read_values(dt, index).ravel()
        delta = delta[np.isfinite(delta)]
        if delta.size == 0 or not np.isfinite(ref):
            return start, end
        ref_ns = _reference_ns(units, ref, Path(nc.filepath()))
        first, last = (ref_ns + int(round(v * factor)) for v in (delta.min(), delta.max()))
    except (KeyError, AttributeError, OSError, FormatError, IndexError):
        return start, end
    as_dt = lambda ns: datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)  # noqa: E731
    return as_dt(first), as_dt(last)


def _read_rows(var, rows: np.ndarray) -> np.ndarray:
    """``var[0, rows, ...]`` as float64 with fill -> NaN (leading time dim optional)."""
    span = slice(int(rows[0]), int(rows[-1]) + 1)
    data = read_values(var, (0, span) if var.dimensions[:1] == ("time",) else span)
    return data[rows - rows[0]]


def _pixel_footprint(nc, pvars):
    """Swath outline from the edge pixels' outer corners (or centres), on decimated scanlines."""
    n_rows = len(nc[PRODUCT_GROUP].dimensions["scanline"])
    if n_rows == 0:
        return None, None, "none"
    step = max(1, int(np.ceil(n_rows / FOOTPRINT_ROWS)))
    rows = np.unique(np.r_[np.arange(0, n_rows, step), n_rows - 1])
    geo = get_group(nc, GEOLOCATIONS_GROUP)
    if geo is not None and {"latitude_bounds", "longitude_bounds"} <= set(geo.variables):
        lat = _read_rows(geo.variables["latitude_bounds"], rows)
        lon = _read_rows(geo.variables["longitude_bounds"], rows)
        source = "pixel_bounds"
    else:
        lat = _read_rows(pvars["latitude"], rows)[..., None].repeat(4, axis=-1)
        lon = _read_rows(pvars["longitude"], rows)[..., None].repeat(4, axis=-1)
        source = "pixel_centres"
    geometry = swath_footprint(lon, lat)
    if geometry is None:
        return None, None, "none"
    return to_geojson(geometry), footprint_bbox(geometry), source
