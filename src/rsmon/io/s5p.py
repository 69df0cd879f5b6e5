"""Sentinel-5P/TROPOMI Level-2 reader (NO2, CH4, AER_AI): lazy xarray with standard names.

Layout (S5P L2 NetCDF-4/HDF5, see ``shared/reference/atmos.md`` section 1): the main fields live in
the ``/PRODUCT`` group with dimensions ``(time=1, scanline, ground_pixel[, corner=4])``; pixel corners
in ``/PRODUCT/SUPPORT_DATA/GEOLOCATIONS``; granule facts in the global attributes and
``/METADATA/GRANULE_DESCRIPTION``. The root group is empty, so a plain ``xr.open_dataset(f)`` shows
nothing (pydata/xarray#2916): we open the groups explicitly.

The reader returns data and never filters it: ``qa_value`` is kept both as float (0..1) and as the
stored integer ``qa_value_raw`` (0..100, 255 = fill) so products threshold on the integer as HARP's
``*_validity`` does. Everything is lazy (dask); opening reads metadata and the 1-D time axis only.

The file layout (names, products, structure check) is in :mod:`rsmon.io.s5p_layout`, the cheap
metadata and footprint in :mod:`rsmon.io.s5p_metadata`; this module opens the data and re-exports
their public names.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr

from rsmon.errors import FormatError
from rsmon.io.ncfile import (
    NC_LOCK,
    existing_file,
    get_group,
    netcdf_signature,
    open_group_dataset,
    open_netcdf,
)
from rsmon.io.s5p_layout import (  # noqa: F401  (GRANULE_GROUP: re-export)
    _TIME_FACTORS_NS,
    _UNIT_ALIASES,
    GEOLOCATIONS_GROUP,
    GRANULE_GROUP,
    PRODUCT_GROUP,
    PRODUCTS,
    S5PFileName,
    S5PProduct,
    _inspect,
    _is_s5p,
    _Layout,
    _reference_ns,
    parse_s5p_filename,
)
from rsmon.io.s5p_metadata import FOOTPRINT_ROWS, read_metadata  # noqa: F401  (FOOTPRINT_ROWS: re-export)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CHUNKS",
    "PRODUCTS",
    "QA_RAW_FILL",
    "S5PFileName",
    "S5PProduct",
    "open_s5p",
    "parse_s5p_filename",
    "read_metadata",
    "sniff_s5p",
]

#: Dask chunks used when ``open_s5p(chunks=None)``: 512 scanlines, whole rows across track.
DEFAULT_CHUNKS: Mapping[str, int] = MappingProxyType({"scanline": 512})

#: Stored ``qa_value`` integer that marks "no retrieval" (``_FillValue`` of the uint8 variable).
QA_RAW_FILL = 255

# The shared netCDF4 lock (see rsmon.io.ncfile.NCLock) under the name this module used before.
_NC_LOCK = NC_LOCK


# --------------------------------------------------------------------------------------------------
# Building the lazy dataset
# --------------------------------------------------------------------------------------------------

def _delta_to_datetime(delta: np.ndarray, ref_ns: int, factor_ns: int) -> np.ndarray:
    """Offsets (float, NaN = fill) in some unit -> datetime64[ns]; NaN -> NaT. A dask block function."""
    out = np.full(delta.shape, np.datetime64("NaT", "ns"))
    ok = np.isfinite(delta)
    out[ok] = (ref_ns + np.round(delta[ok] * factor_ns).astype(np.int64)).astype("datetime64[ns]")
    return out


def _first_valid_last_axis(block: np.ndarray) -> np.ndarray:
    """Per-row minimum over the last axis ignoring NaN (NaN when all are NaN, without a warning)."""
    return np.fmin.reduce(block, axis=-1)


def _clean(da: xr.DataArray, keep: Sequence[str] = ("long_name", "units", "standard_name", "comment",
                                                    "valid_min", "valid_max")) -> xr.DataArray:
    """Drop decoding leftovers (encoding, group-relative ``coordinates``...) and keep CF attrs."""
    da.encoding = {}
    da.attrs = {k: da.attrs[k] for k in keep if k in da.attrs}
    return da


def _squeeze_time(ds: xr.Dataset) -> xr.Dataset:
    if "time" in ds.dims:
        ds = ds.isel(time=0, drop=True)
    return ds.drop_vars([c for c in ("time",) if c in ds.variables])


def _chunks_for(chunks: Mapping[str, int] | None) -> dict[str, int]:
    """Dask chunks: the file's own HDF5 chunks by default (``{}``), so a scanline subset reads and
    decompresses only the stored chunks it needs, and no stored chunk is decompressed twice."""
    if chunks is None:
        return {}
    merged = {"time": 1, "ground_pixel": -1, "corner": -1}
    merged.update(dict(chunks))
    return merged


def open_s5p(
    path: str | Path,
    product: str | None = None,
    chunks: Mapping[str, int] | None = None,
    *,
    require_bounds: bool = True,
    require_qa: bool = True,
    extra_variables: Sequence[str] = (),
) -> xr.Dataset:
    """Open a Sentinel-5P/TROPOMI L2 file lazily, with standard variable names.

    Parameters
    ----------
    path : str or Path
        An S5P L2 NetCDF file (NO2, CH4 or AER_AI), full orbit or subset.
    product : str, optional
        ``"NO2"``, ``"CH4"`` or ``"AER_AI"`` (also ``"L2__NO2___"``); overrides detection from the
        file name, ``METADATA/GRANULE_DESCRIPTION/ProductShortName``, or the ``id``/``title`` attrs.
    chunks : mapping, optional
        Dask chunks by dimension; default: the file's own HDF5 chunking (see :data:`DEFAULT_CHUNKS` for
        a typical explicit choice).
    require_bounds : bool
        Raise :class:`FormatError` when the corner bounds in ``PRODUCT/SUPPORT_DATA/GEOLOCATIONS``
        are missing (default). With False the dataset simply lacks ``latitude_bounds``/``longitude_bounds``.
    require_qa : bool
        Raise :class:`FormatError` when ``PRODUCT/qa_value`` is missing (default). With False the
        dataset simply lacks ``qa_value``/``qa_value_raw`` (e.g. variable-subset files).
    extra_variables : sequence of str
        More pixel variables to add lazily under their native names, as paths relative to
        ``PRODUCT``, e.g. ``"air_mass_factor_troposphere"`` or
        ``"SUPPORT_DATA/INPUT_DATA/surface_pressure"``.

    Returns
    -------
    xarray.Dataset
        Dimensions ``(scanline, ground_pixel[, corner=4])``, dask-backed, nothing computed:

        - coordinates ``latitude``, ``longitude`` (degrees_north/east, float32, pixel centres),
          ``latitude_bounds``, ``longitude_bounds`` (scanline, ground_pixel, corner; degrees; corner
          order as in the file: 0 = (scanline-, pixel-), 1 = (-, +), 2 = (+, +), 3 = (+, -)),
          ``time_utc`` (scanline; datetime64[ns], UTC);
        - the product variables: NO2 ``tropospheric_no2_column`` (+ ``_precision``) in mol m-2;
          CH4 ``xch4``, ``xch4_bias_corrected`` (if present), ``xch4_precision`` in ppb;
          AER_AI ``aerosol_index_354_388``, ``aerosol_index_340_380`` (+ ``_precision``), unitless.
          Attrs ``units``, ``long_name``, ``standard_name`` (where CF has one), ``source_variable``
          (native name) and ``multiplication_factor_to_convert_to_molecules_percm2`` when the file
          has it;
        - ``qa_value`` float32 0..1 (NaN = fill) and ``qa_value_raw`` uint8 0..100 (255 = fill).
          Products threshold the integer (``qa_value_raw > 75`` means qa > 0.75) and must exclude
          255 (e.g. ``qa_value_raw <= 100``);
        - fill values (9.96921e36) are NaN.

        Attrs: ``product``, ``main_variable``, ``orbit`` (int, -1 if unknown), ``mode``,
        ``processor_version`` ("1.3.2"), ``processor`` ("010302"), ``collection`` (int, when
        known), ``time_coverage_start``/``_end`` (ISO 8601), ``source_path`` (absolute),
        ``platform`` "Sentinel-5P", ``instrument`` "TROPOMI".

    Raises
    ------
    FormatError
        The path does not exist, is not NetCDF/HDF5, is truncated, or lacks a required group or
        variable, or has inconsistent shapes (the message names the group/variable).
    UnsupportedFormatError
        NetCDF without a PRODUCT group (not S5P L2), or an S5P product this reader does not serve.
    NoDataError
        The PRODUCT group holds no variables (a metadata-only file).
    """
    path = existing_file(path)
    with NC_LOCK:  # see NCLock: opening must not overlap other threads' HDF5 calls
        manager, nc = open_netcdf(path)
        layout = _inspect(path, nc, product, require_bounds, require_qa, extra_variables)
        ds = _build(path, manager, layout, _chunks_for(chunks))
    log.debug("opened %s: %s %s", path, layout.spec.product, dict(ds.sizes))
    return ds


def _build(path: Path, manager, layout: _Layout, chunks: dict[str, int]) -> xr.Dataset:
    raw = open_group_dataset(path, manager, PRODUCT_GROUP, layout.product_drop, chunks,
                      mask_and_scale={"qa_value": False} if layout.has_qa else True)
    raw = _squeeze_time(raw)
    dims = ("scanline", "ground_pixel")

    data_vars: dict[str, xr.DataArray] = {}
    for var in layout.variables:
        da = raw[var.source]
        src = layout.source_attrs[var.source]
        units = str(src.get("units", var.units or "")).strip()
        units = _UNIT_ALIASES.get(units, units) or (var.units or "1")
        attrs = {"long_name": str(src.get("long_name", var.name.replace("_", " "))), "units": units}
        std = var.standard_name or src.get("standard_name")
        if std:
            attrs["standard_name"] = str(std)
        attrs["source_variable"] = var.source
        factor = src.get("multiplication_factor_to_convert_to_molecules_percm2")
        if factor is not None:
            attrs["multiplication_factor_to_convert_to_molecules_percm2"] = float(factor)
        da = da.copy(deep=False)
        da.encoding = {}
        da.attrs = attrs
        data_vars[var.name] = da

    if layout.has_qa:
        qa_raw = raw["qa_value"]
        scale = float(qa_raw.attrs.get("scale_factor", 0.01))
        offset = float(qa_raw.attrs.get("add_offset", 0.0))
        fill = int(qa_raw.attrs.get("_FillValue", QA_RAW_FILL))
        comment = qa_raw.attrs.get("comment")
        qa_raw = qa_raw.copy(deep=False)
        qa_raw.encoding = {}
        qa_raw.attrs = {
            "long_name": "data quality value as stored: qa_value x 100",
            "units": "1", "valid_min": np.uint8(0), "valid_max": np.uint8(100),
            "comment": f"{fill} = fill (no retrieval). Threshold on this integer (HARP *_validity), "
                       "e.g. qa_value_raw > 75 for qa_value > 0.75, and exclude the fill value.",
            "source_variable": "qa_value",
        }
        qa = (qa_raw.astype(np.float32) * np.float32(scale) + np.float32(offset)).where(qa_raw != fill)
        qa.attrs = {"long_name": "data quality value", "units": "1",
                    "valid_min": np.float32(0.0), "valid_max": np.float32(1.0), "source_variable": "qa_value"}
        if comment:
            qa.attrs["comment"] = str(comment)
        data_vars["qa_value"] = qa
        data_vars["qa_value_raw"] = qa_raw

    coords: dict[str, xr.DataArray] = {}
    for name, axis in (("latitude", "north"), ("longitude", "east")):
        da = _clean(raw[name].copy(deep=False), ("long_name", "standard_name", "valid_min", "valid_max"))
        da.attrs.update({"units": f"degrees_{axis}", "standard_name": name})
        if layout.geoloc_drop is not None:
            da.attrs["bounds"] = f"{name}_bounds"
        coords[name] = da

    if layout.geoloc_drop is not None:
        geo = _squeeze_time(open_group_dataset(path, manager, GEOLOCATIONS_GROUP, layout.geoloc_drop, chunks))
        for name, axis in (("latitude_bounds", "north"), ("longitude_bounds", "east")):
            da = _clean(geo[name].copy(deep=False), ())
            da.attrs = {"long_name": f"pixel corner {name.split('_')[0]}", "units": f"degrees_{axis}",
                        "comment": "corners 0..3: (scanline-, pixel-), (-, +), (+, +), (+, -)"}
            coords[name] = da

    coords["time_utc"] = _time_utc(path, raw["delta_time"], layout)

    for group_path, names in layout.extras.items():
        if group_path == PRODUCT_GROUP:
            others = raw
        else:
            drop = layout.extras_drop[group_path]
            others = _squeeze_time(open_group_dataset(path, manager, group_path, drop, chunks))
        for name in names:
            data_vars[name] = _clean(others[name].copy(deep=False))
            data_vars[name].attrs["source_variable"] = f"{group_path}/{name}"

    ds = xr.Dataset(data_vars, coords=coords)
    # index coordinates (scanline, ground_pixel, corner indices) are dropped: plain dimensions
    ds = ds.drop_vars([c for c in ("scanline", "ground_pixel", "corner") if c in ds.coords])
    if set(ds["latitude"].dims) != set(dims):
        raise FormatError(f"{path}: PRODUCT/latitude has dimensions {ds['latitude'].dims}, expected {dims}")

    f = layout.facts
    attrs: dict[str, Any] = {
        "product": layout.spec.product,
        "main_variable": layout.spec.main_variable,
        "orbit": int(f.orbit),
        "mode": f.mode,
        "processor_version": f.processor_version,
        "processor": f.processor,
        "time_coverage_start": f.time_coverage_start,
        "time_coverage_end": f.time_coverage_end,
        "source_path": str(path),
        "platform": "Sentinel-5P",
        "instrument": "TROPOMI",
    }
    if f.collection is not None:
        attrs["collection"] = int(f.collection)
    for key in ("product_version", "algorithm_version", "title"):
        if key in f.global_attrs:
            attrs[key] = str(f.global_attrs[key])
    ds.attrs = attrs
    return ds


def _time_utc(path: Path, delta: xr.DataArray, layout: _Layout) -> xr.DataArray:
    """Per-scanline UTC time = reference ``time`` + ``delta_time``, lazily (datetime64[ns], NaT = fill)."""
    ref_ns = _reference_ns(layout.time_units, float(layout.time_value), path)
    unit = str(delta.attrs.get("units", "milliseconds")).strip().lower()
    factor = _TIME_FACTORS_NS.get(unit)
    if factor is None:
        raise FormatError(f"{path}: PRODUCT/delta_time has units {unit!r}, expected milliseconds")
    data = delta.data.astype(np.float64)
    if delta.dims == ("scanline", "ground_pixel"):
        # some processor versions store delta_time per pixel; it is constant along a scanline
        data = data.rechunk({1: -1}).map_blocks(_first_valid_last_axis, drop_axis=1, dtype=np.float64)
    times = data.map_blocks(_delta_to_datetime, ref_ns=ref_ns, factor_ns=factor, dtype="datetime64[ns]")
    return xr.DataArray(times, dims=("scanline",), attrs={
        "long_name": "time of observation of the scanline (UTC)", "standard_name": "time",
        "comment": "PRODUCT/time + PRODUCT/delta_time; UTC",
    })


# --------------------------------------------------------------------------------------------------
# Sniffing and registration
# --------------------------------------------------------------------------------------------------

def sniff_s5p(path: str | Path) -> bool:
    """True for an S5P L2 file name, or a NetCDF/HDF5 file with a PRODUCT group and S5P attributes.

    Never raises: unreadable files are simply not recognised.
    """
    p = Path(path)
    parsed = parse_s5p_filename(p.name)
    if parsed is not None and parsed.level == "L2":
        return True
    try:
        if not p.is_file() or netcdf_signature(p) is None:
            return False
        with NC_LOCK:
            _, nc = open_netcdf(p.resolve())
            return get_group(nc, PRODUCT_GROUP) is not None and _is_s5p(nc)
    except (OSError, RuntimeError, ValueError):  # FormatError is an OSError
        return False


def _register() -> None:
    from rsmon.io.registry import ReaderSpec, register

    register(ReaderSpec(
        name="s5p",
        description="Sentinel-5P/TROPOMI L2 (NO2, CH4, AER_AI) NetCDF-4 swaths",
        sniff=sniff_s5p,
        open=open_s5p,
        metadata=read_metadata,
    ))


_register()
