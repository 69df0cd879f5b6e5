"""CF-1.8 NetCDF-4 writer for gridded (L3) products.

Layout (one file per product period)::

    dimensions: time = 1, lat = H, lon = W, bnds = 2
    variables:  time(time), time_bnds(time, bnds)
                lat(lat), lat_bnds(lat, bnds), lon(lon), lon_bnds(lon, bnds)
                crs                            (grid mapping "latitude_longitude" + crs_wkt)
                <var>(time, lat, lon) ...      (product variables in band order, original dtypes)

Unlike the GeoTIFF, each variable keeps its own dtype (``count`` stays int32). Float variables
use ``_FillValue = NaN``; the values are written as given (no packing). Variables are zlib
level-4 compressed with the shuffle filter, in ``1 x 512 x 512`` chunks.

References
----------
CF Conventions 1.8, sections 4 (coordinates), 5.6 (grid mappings, ``crs_wkt``), 7.1 (cell
boundaries), 7.3 (cell methods) and 3.4 (ancillary variables): https://cfconventions.org/
ACDD 1.3 for the ``geospatial_*`` / ``time_coverage_*`` global attributes.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr
from rasterio.crs import CRS

import rsmon
from rsmon.errors import InputError, OutputError, RsmonError
from rsmon.grid import LonLatGrid
from rsmon.io.atomic import atomic_output
from rsmon.io.cog import PROVENANCE_TAG, check_dataset_on_grid, iter_grid_blocks
from rsmon.provenance import Provenance, dataset_coverage, format_datetime

log = logging.getLogger(__name__)

__all__ = ["write_netcdf", "TIME_UNITS", "ANCILLARY_NAMES"]

#: Units of the time coordinate (CF / UDUNITS).
TIME_UNITS = "seconds since 1970-01-01 00:00:00 UTC"

#: Data variables that describe the mean variables rather than being means themselves.
ANCILLARY_NAMES = ("weight", "count")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Variable attributes not copied as such (packing and fill are decided by this writer).
_SKIP_VAR_ATTRS = {"_FillValue", "missing_value", "scale_factor", "add_offset", "coordinates", "grid_mapping"}


def _seconds(value: datetime) -> float:
    return (value - _EPOCH).total_seconds()


def _ncattr(value: Any) -> Any:
    """An attribute value netCDF4 can store (str, number, or 1-D numeric array)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, int, float, np.number)):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.ndim == 1 and np.issubdtype(arr.dtype, np.number):
            return arr
    return None


def _coverage(ds: xr.Dataset, path: Path) -> tuple[datetime, datetime]:
    return dataset_coverage(ds.attrs, str(path))


def _global_attrs(
    ds: xr.Dataset, grid: LonLatGrid, provenance: Provenance, start: datetime, end: datetime
) -> dict[str, Any]:
    product = str(ds.attrs.get("product", "product"))
    period = str(ds.attrs.get("period", ""))
    label = str(ds.attrs.get("period_label", ""))
    created = format_datetime(provenance.created)
    history = f"{created} {provenance.software}: write_netcdf from {len(provenance.inputs)} input file(s)"
    if ds.attrs.get("history"):
        history = f"{ds.attrs['history']}\n{history}"
    attrs: dict[str, Any] = {
        "Conventions": "CF-1.8",
        "title": str(ds.attrs.get("title") or f"rsmon {product} L3 {period} {label}".strip()),
        "institution": "rsmon",
        "source": f"{provenance.software}; gridded (L3) from {len(provenance.inputs)} input file(s)",
        "history": history,
        "product": product,
        "period": period,
        "period_label": label,
        "time_coverage_start": format_datetime(start),
        "time_coverage_end": format_datetime(end),
        "geospatial_lat_min": grid.south,
        "geospatial_lat_max": grid.north,
        "geospatial_lon_min": grid.west,
        "geospatial_lon_max": grid.east,
        "geospatial_lat_units": "degrees_north",
        "geospatial_lon_units": "degrees_east",
        "geospatial_lat_resolution": grid.res,
        "geospatial_lon_resolution": grid.res,
        "date_created": created,
        PROVENANCE_TAG: provenance.to_json(),
        "rsmon_version": rsmon.__version__,
    }
    # Other product attributes follow; the CF/ACDD ones above win on a name clash.
    for key, value in ds.attrs.items():
        if key in attrs or key == "cell_methods":  # cell_methods belongs on the mean variable
            continue
        converted = _ncattr(value)
        if converted is not None:
            attrs[str(key)] = converted
    return attrs


def _nc_dtype(dtype: np.dtype) -> np.dtype:
    if np.issubdtype(dtype, np.bool_):
        return np.dtype("i1")  # NetCDF has no boolean type
    return np.dtype(dtype)


def _write_coordinates(nc: netCDF4.Dataset, grid: LonLatGrid, start: datetime, end: datetime) -> None:
    nc.createDimension("time", 1)
    nc.createDimension("lat", grid.height)
    nc.createDimension("lon", grid.width)
    nc.createDimension("bnds", 2)

    time = nc.createVariable("time", "f8", ("time",))
    time.setncatts(
        {
            "standard_name": "time",
            "long_name": "time (middle of the coverage period)",
            "units": TIME_UNITS,
            "calendar": "standard",
            "axis": "T",
            "bounds": "time_bnds",
        }
    )
    mid = start + (end - start) / 2
    time[:] = [_seconds(mid)]
    time_bnds = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
    time_bnds[:] = [[_seconds(start), _seconds(end)]]

    lat_edges, lon_edges = grid.lat_edges(), grid.lon_edges()
    lat = nc.createVariable("lat", "f8", ("lat",))
    lat.setncatts(
        {"standard_name": "latitude", "long_name": "latitude of cell centre", "units": "degrees_north",
         "axis": "Y", "bounds": "lat_bnds"}
    )
    lat[:] = grid.lat_centers()
    lat_bnds = nc.createVariable("lat_bnds", "f8", ("lat", "bnds"))
    # Row order (north to south); bounds(i, 1) == bounds(i + 1, 0): contiguous cells (CF 7.1).
    lat_bnds[:] = np.stack([lat_edges[:-1], lat_edges[1:]], axis=1)

    lon = nc.createVariable("lon", "f8", ("lon",))
    lon.setncatts(
        {"standard_name": "longitude", "long_name": "longitude of cell centre", "units": "degrees_east",
         "axis": "X", "bounds": "lon_bnds"}
    )
    lon[:] = grid.lon_centers()
    lon_bnds = nc.createVariable("lon_bnds", "f8", ("lon", "bnds"))
    lon_bnds[:] = np.stack([lon_edges[:-1], lon_edges[1:]], axis=1)

    crs = nc.createVariable("crs", "i4", ())
    wkt = CRS.from_string(grid.crs).to_wkt()
    t = grid.transform
    crs.setncatts(
        {
            "grid_mapping_name": "latitude_longitude",
            "longitude_of_prime_meridian": 0.0,
            "semi_major_axis": 6378137.0,
            "inverse_flattening": 298.257223563,
            "crs_wkt": wkt,
            "spatial_ref": wkt,  # GDAL reads this name
            # GDAL's geotransform: x0, dx, rx, y0, ry, dy (exact grid, no centre round-off)
            "GeoTransform": " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e)),
            "epsg_code": "EPSG:4326",
        }
    )
    crs.assignValue(0)


def write_netcdf(
    path: str | os.PathLike,
    ds: xr.Dataset,
    grid: LonLatGrid,
    provenance: Provenance,
    complevel: int = 4,
    chunk: int = 512,
) -> Path:
    """Write a product dataset as a CF-1.8 NetCDF-4 file, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file (``.nc``). Its folder is created if missing.
    ds : xarray.Dataset
        Product on ``grid`` (see :func:`rsmon.io.cog.check_dataset_on_grid`) with attributes
        ``time_coverage_start``/``time_coverage_end`` (ISO 8601 UTC, required) and ``product``,
        ``period``, ``period_label``, ``cell_methods`` (optional). Dask-backed values are computed
        one block of the grid at a time.
    grid : LonLatGrid
        The product grid; ``lat_bnds``/``lon_bnds`` are its exact cell edges.
    provenance : Provenance
        Stored as JSON in the global attribute ``rsmon_provenance``; also fills ``source``,
        ``history`` and ``date_created``.
    complevel : int
        zlib compression level (with shuffle), default 4.
    chunk : int
        Chunk edge in cells for the (1, lat, lon) variables, default 512.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    Every data variable gets ``grid_mapping = "crs"``. Variables other than ``weight`` and
    ``count`` are treated as means: they get ``cell_methods`` (their own attribute, else the
    dataset's) and ``ancillary_variables`` naming the ``weight``/``count`` variables present.
    ``time`` is the middle of the coverage period, ``time_bnds`` its start and end.

    Raises
    ------
    InputError
        ``ds`` does not lie on ``grid`` or lacks the time coverage attributes.
    OutputError
        The folder cannot be created or written, or the NetCDF library fails (message names
        ``path``). On any error nothing is left at ``path`` (an existing file is kept).
    """
    path = Path(path)
    names = check_dataset_on_grid(ds, grid, path)
    for name in ("time", "time_bnds", "lat_bnds", "lon_bnds", "crs", "bnds"):
        if name in names:
            raise InputError(f"{path}: data variable {name!r} clashes with a name the CF layout reserves")
    start, end = _coverage(ds, path)
    global_attrs = _global_attrs(ds, grid, provenance, start, end)
    ancillary = [n for n in names if n in ANCILLARY_NAMES]
    chunks = (1, min(chunk, grid.height), min(chunk, grid.width))
    try:
        with atomic_output(path) as tmp:
            with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
                nc.set_auto_maskandscale(False)  # values are written exactly as given
                _write_coordinates(nc, grid, start, end)
                for name in names:
                    var = ds[name]
                    dtype = _nc_dtype(var.dtype)
                    is_float = np.issubdtype(dtype, np.floating)
                    ncvar = nc.createVariable(
                        name,
                        dtype,
                        ("time", "lat", "lon"),
                        compression="zlib",
                        complevel=complevel,
                        shuffle=True,
                        chunksizes=chunks,
                        fill_value=dtype.type(np.nan) if is_float else False,
                    )
                    ncvar.set_auto_maskandscale(False)
                    attrs = {k: _ncattr(v) for k, v in var.attrs.items() if k not in _SKIP_VAR_ATTRS}
                    attrs = {k: v for k, v in attrs.items() if v is not None}
                    for key in ("scale_factor", "add_offset"):
                        # Only meaningful when the stored values are packed; 1/0 is implied.
                        default = 1.0 if key == "scale_factor" else 0.0
                        if key in var.attrs and float(var.attrs[key]) != default:
                            attrs[key] = float(var.attrs[key])
                    attrs["grid_mapping"] = "crs"
                    if name not in ANCILLARY_NAMES:
                        cell_methods = var.attrs.get("cell_methods") or ds.attrs.get("cell_methods")
                        if cell_methods:
                            attrs["cell_methods"] = str(cell_methods)
                        others = [a for a in ancillary if a != name]
                        if others:
                            attrs["ancillary_variables"] = " ".join(others)
                    ncvar.setncatts(attrs)
                for row_off, col_off, block in iter_grid_blocks(ds, grid, names):
                    for name in names:
                        values = block[name]
                        height, width = values.shape
                        nc[name][0, row_off : row_off + height, col_off : col_off + width] = values.astype(
                            nc[name].dtype, copy=False
                        )
                nc.setncatts(global_attrs)
    except RsmonError:
        raise
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the NetCDF file ({exc})") from exc
    except RuntimeError as exc:
        if "NetCDF" not in str(exc) and "HDF" not in str(exc):
            raise
        raise OutputError(f"{path}: cannot write the NetCDF file ({exc})") from exc
    log.info("wrote NetCDF %s (%d variables, %dx%d)", path, len(names), grid.width, grid.height)
    return path
