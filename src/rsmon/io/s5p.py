"""Sentinel-5P/TROPOMI Level-2 reader (NO2, CH4, AER_AI): lazy xarray with standard names.

Layout (S5P L2 NetCDF-4/HDF5, see ``shared/reference/atmos.md`` section 1): the main fields live in
the ``/PRODUCT`` group with dimensions ``(time=1, scanline, ground_pixel[, corner=4])``; pixel corners
in ``/PRODUCT/SUPPORT_DATA/GEOLOCATIONS``; granule facts in the global attributes and
``/METADATA/GRANULE_DESCRIPTION``. The root group is empty, so a plain ``xr.open_dataset(f)`` shows
nothing (pydata/xarray#2916): we open the groups explicitly.

The reader returns data and never filters it: ``qa_value`` is kept both as float (0..1) and as the
stored integer ``qa_value_raw`` (0..100, 255 = fill) so products threshold on the integer as HARP's
``*_validity`` does. Everything is lazy (dask); opening reads metadata and the 1-D time axis only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr

from rsmon.errors import FormatError, InputError, NoDataError, UnsupportedFormatError
from rsmon.io.footprint import attribute_footprint, footprint_bbox, swath_footprint, to_geojson
from rsmon.io.ncfile import (
    NC_LOCK,
    data_variables,
    existing_file,
    get_group,
    nc_attrs,
    netcdf_signature,
    open_group_dataset,
    open_netcdf,
    read_values,
)

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

PRODUCT_GROUP = "PRODUCT"
GEOLOCATIONS_GROUP = "PRODUCT/SUPPORT_DATA/GEOLOCATIONS"
GRANULE_GROUP = "METADATA/GRANULE_DESCRIPTION"

# The shared netCDF4 lock (see rsmon.io.ncfile.NCLock) under the name this module used before.
_NC_LOCK = NC_LOCK

_MODE_NAMES = {
    "offline": "OFFL",
    "near-realtime": "NRTI",
    "near realtime": "NRTI",
    "near real time": "NRTI",
    "near-real-time": "NRTI",
    "reprocessing": "RPRO",
}


# --------------------------------------------------------------------------------------------------
# File names
# --------------------------------------------------------------------------------------------------

_NAME_RE = re.compile(
    r"S5P_(?P<mode>[A-Z_]{4})_(?P<level>L2__|L1B_)(?P<product>[A-Z0-9_]{6})_"
    r"(?P<start>\d{8}T\d{6})_(?P<end>\d{8}T\d{6})_(?P<orbit>\d{5})_(?P<collection>\d{2})_"
    r"(?P<processor>\d{6})_(?P<production>\d{8}T\d{6})"
)


@dataclass(frozen=True)
class S5PFileName:
    """The fields of a Sentinel-5P product file name.

    ``S5P_{mode}_{level}{product}_{start}_{end}_{orbit}_{collection}_{processor}_{production}``, e.g.
    ``S5P_OFFL_L2__NO2____20180709T170334_20180709T184504_03821_01_010002_20180715T184729.nc``.

    Attributes
    ----------
    mode : str
        Processing stream, 4 characters as in the name: ``OFFL``, ``NRTI``, ``RPRO``, ``PAL_``, ...
    product : str
        Product identifier without padding: ``NO2``, ``CH4``, ``AER_AI``, ``O3_TCL``, ...
    start, end : datetime
        Granule start and end (UTC, timezone-aware). These are the nominal granule limits; the
        sensing time range is in the file's ``time_coverage_start/end`` attributes.
    orbit : int
        Absolute orbit number.
    collection : int
        Collection number (``01``, ``02``, ``03``).
    processor : str
        Processor version as six digits, e.g. ``"010302"`` for 1.3.2.
    production : datetime
        Production time (UTC).
    level : str
        ``"L2"`` or ``"L1B"``.
    name : str
        The matched part of the name (without prefixes, suffixes or extension).
    """

    mode: str
    product: str
    start: datetime
    end: datetime
    orbit: int
    collection: int
    processor: str
    production: datetime
    level: str = "L2"
    name: str = ""

    @property
    def processor_version(self) -> str:
        """The processor version in dotted form, ``"010302"`` -> ``"1.3.2"``."""
        return _dotted_version(self.processor)


def _utc(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)


def _dotted_version(six: str) -> str:
    return ".".join(str(int(six[i:i + 2])) for i in (0, 2, 4))


def _six_digit_version(dotted: str) -> str | None:
    parts = dotted.strip().split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return "".join(f"{int(p):02d}" for p in parts)


def parse_s5p_filename(name: str | Path) -> S5PFileName | None:
    """Parse a Sentinel-5P file name, leniently.

    Accepts any extension (``.nc``, ``.nc4``, ``.SUB.nc4``, ...), any prefix
    (``test_var_subsetting_tropomi_...``) and any suffix (``_subset``, ``_reduced``, ...), and a
    full path (only the last component is used).

    Parameters
    ----------
    name : str or Path
        File name or path.

    Returns
    -------
    S5PFileName or None
        None when the name holds no Sentinel-5P product name or its dates are invalid.
    """
    match = _NAME_RE.search(Path(str(name)).name)
    if match is None:
        return None
    g = match.groupdict()
    try:
        return S5PFileName(
            mode=g["mode"],
            product=g["product"].strip("_"),
            start=_utc(g["start"]),
            end=_utc(g["end"]),
            orbit=int(g["orbit"]),
            collection=int(g["collection"]),
            processor=g["processor"],
            production=_utc(g["production"]),
            level=g["level"].strip("_"),
            name=match.group(0),
        )
    except ValueError:  # e.g. month 13: looks like a name but is not one
        return None


# --------------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Var:
    """One product variable: rsmon name, native name in /PRODUCT, and its CF description."""

    name: str
    source: str
    required: bool = False
    units: str | None = None
    standard_name: str | None = None


@dataclass(frozen=True)
class S5PProduct:
    """Which /PRODUCT variables a product provides and under which rsmon names.

    Attributes
    ----------
    product : str
        Short product identifier (``NO2``, ``CH4``, ``AER_AI``).
    main_variable : str
        rsmon name of the product's main variable.
    variables : tuple
        The variables (main first); only those marked required must be present.
    """

    product: str
    main_variable: str
    variables: tuple[_Var, ...] = field(default_factory=tuple)


_NO2_STD = "troposphere_mole_content_of_nitrogen_dioxide"
_CH4_STD = "dry_atmosphere_mole_fraction_of_methane"

#: Supported products. Variable names from the HARP ingestion tables (stcorp/harp S5P_L2_NO2,
#: S5P_L2_CH4, S5P_L2_AER_AI) and the files themselves.
PRODUCTS: dict[str, S5PProduct] = {
    "NO2": S5PProduct("NO2", "tropospheric_no2_column", (
        _Var("tropospheric_no2_column", "nitrogendioxide_tropospheric_column", True,
             "mol m-2", _NO2_STD),
        _Var("tropospheric_no2_column_precision", "nitrogendioxide_tropospheric_column_precision",
             False, "mol m-2", _NO2_STD + " standard_error"),
    )),
    "CH4": S5PProduct("CH4", "xch4", (
        _Var("xch4", "methane_mixing_ratio", True, "ppb", _CH4_STD),
        _Var("xch4_bias_corrected", "methane_mixing_ratio_bias_corrected", False, "ppb", _CH4_STD),
        _Var("xch4_precision", "methane_mixing_ratio_precision", False, "ppb",
             _CH4_STD + " standard_error"),
    )),
    # The absorbing aerosol index has no CF standard name.
    "AER_AI": S5PProduct("AER_AI", "aerosol_index_354_388", (
        _Var("aerosol_index_354_388", "aerosol_index_354_388", True, "1"),
        _Var("aerosol_index_354_388_precision", "aerosol_index_354_388_precision", False, "1"),
        _Var("aerosol_index_340_380", "aerosol_index_340_380", False, "1"),
        _Var("aerosol_index_340_380_precision", "aerosol_index_340_380_precision", False, "1"),
        _Var("aerosol_index_335_367", "aerosol_index_335_367", False, "1"),
        _Var("aerosol_index_335_367_precision", "aerosol_index_335_367_precision", False, "1"),
    )),
}

# File unit strings that mean a named unit (the CH4 product writes "1e-9" for ppb).
_UNIT_ALIASES = {"1e-9": "ppb", "1e-6": "ppm"}

_TITLE_KEYWORDS = (("nitrogen dioxide", "NO2"), ("no2", "NO2"), ("methane", "CH4"), ("ch4", "CH4"),
                   ("aerosol index", "AER_AI"), ("aer_ai", "AER_AI"))


def _normalise_product(text: str) -> str:
    """``"L2__NO2___"``, ``"no2"``, ``"NO2___"`` -> ``"NO2"``."""
    text = str(text).strip().upper()
    if text.startswith("L2__"):
        text = text[4:]
    return text.strip("_")


# --------------------------------------------------------------------------------------------------
# Inspecting files (the netCDF4 plumbing is in rsmon.io.ncfile)
# --------------------------------------------------------------------------------------------------

def _is_s5p(nc) -> bool:
    gattrs = nc_attrs(nc)
    if str(gattrs.get("sensor", "")).upper() == "TROPOMI":
        return True
    platform = str(gattrs.get("platform", "")).upper().replace(" ", "")
    if platform in {"S5P", "SENTINEL-5P", "SENTINEL5P", "SENTINEL-5PRECURSOR"}:
        return True
    granule = get_group(nc, GRANULE_GROUP)
    if granule is not None:
        gd = nc_attrs(granule)
        return str(gd.get("MissionShortName", "")).upper() == "S5P" or \
            str(gd.get("InstrumentName", "")).upper() == "TROPOMI"
    return False


def _detect_product(path: Path, nc, explicit: str | None) -> str | None:
    """Product from, in order: ``explicit``, the file name, GRANULE_DESCRIPTION, ``id``, ``title``."""
    if explicit:
        return _normalise_product(explicit)
    parsed = parse_s5p_filename(path.name)
    if parsed is not None and parsed.level == "L2":
        return parsed.product
    granule = get_group(nc, GRANULE_GROUP)
    if granule is not None and "ProductShortName" in granule.ncattrs():
        return _normalise_product(granule.getncattr("ProductShortName"))
    gattrs = nc_attrs(nc)
    parsed = parse_s5p_filename(str(gattrs.get("id", "")))
    if parsed is not None:
        return parsed.product
    title = str(gattrs.get("title", "")).lower()
    for word, product in _TITLE_KEYWORDS:
        if word in title:
            return product
    return None


@dataclass
class _GranuleFacts:
    """Granule-level facts gathered from the name, global attributes and GRANULE_DESCRIPTION."""

    product: str | None
    mode: str
    orbit: int
    collection: int | None
    processor: str
    processor_version: str
    time_coverage_start: str
    time_coverage_end: str
    global_attrs: dict[str, Any]


def _granule_facts(path: Path, nc, product: str | None) -> _GranuleFacts:
    gattrs = nc_attrs(nc)
    parsed = parse_s5p_filename(path.name) or parse_s5p_filename(str(gattrs.get("id", "")))
    granule = get_group(nc, GRANULE_GROUP)
    gd = nc_attrs(granule) if granule is not None else {}

    if parsed is not None:
        mode = parsed.mode
    else:
        mode = _MODE_NAMES.get(str(gd.get("ProcessingMode", "")).strip().lower(), "unknown")

    orbit = -1
    for candidate in (gattrs.get("orbit"), parsed.orbit if parsed else None):
        try:
            orbit = int(candidate)
            break
        except (TypeError, ValueError):
            continue

    version = str(gattrs.get("processor_version", "") or gd.get("ProcessorVersion", "")).strip()
    if not version and parsed is not None:
        version = parsed.processor_version
    processor = parsed.processor if parsed is not None else (_six_digit_version(version) or "")

    def iso(attr: str, granule_attr: str, fallback: datetime | None) -> str:
        text = str(gattrs.get(attr, "") or gd.get(granule_attr, "")).strip()
        if text:
            return text
        return fallback.strftime("%Y-%m-%dT%H:%M:%SZ") if fallback else ""

    return _GranuleFacts(
        product=product,
        mode=mode,
        orbit=orbit,
        collection=parsed.collection if parsed else None,
        processor=processor,
        processor_version=version,
        time_coverage_start=iso("time_coverage_start", "GranuleStart", parsed.start if parsed else None),
        time_coverage_end=iso("time_coverage_end", "GranuleEnd", parsed.end if parsed else None),
        global_attrs=gattrs,
    )


def _pixel_dims(var) -> tuple[str, ...]:
    """Dimensions of a variable without a leading length-1 ``time``."""
    dims = tuple(var.dimensions)
    return dims[1:] if dims[:1] == ("time",) else dims


def _check_shape(path: Path, where: str, var, expected_dims: tuple[str, ...], sizes: dict[str, int]) -> None:
    """Raise FormatError unless ``var`` has ``([time=1,] *expected_dims)`` with the PRODUCT sizes."""
    dims = tuple(var.dimensions)
    shape = tuple(var.shape)
    if dims[:1] == ("time",):
        if shape[0] != 1:
            raise FormatError(f"{path}: {where} has time dimension of length {shape[0]}, expected 1")
        dims, shape = dims[1:], shape[1:]
    if dims != expected_dims:
        raise FormatError(f"{path}: {where} has dimensions {dims}, expected {expected_dims}")
    want = tuple(sizes[d] for d in expected_dims)
    if shape != want:
        raise FormatError(f"{path}: {where} has shape {shape}, expected {want} (from the PRODUCT dimensions)")


@dataclass
class _Layout:
    """What :func:`open_s5p` will read, decided from metadata before any pixel is touched."""

    facts: _GranuleFacts
    spec: S5PProduct
    variables: list[_Var]
    source_attrs: dict[str, dict[str, Any]]
    product_drop: list[str]
    geoloc_drop: list[str] | None
    has_qa: bool
    time_units: str
    time_value: float
    extras: dict[str, list[str]]
    extras_drop: dict[str, list[str]]


def _inspect(path: Path, nc, product: str | None, require_bounds: bool, require_qa: bool,
             extra_variables: Sequence[str]) -> _Layout:
    """Check the file's structure (cheaply, from metadata) and decide what to read."""
    prod_group = get_group(nc, PRODUCT_GROUP)
    if prod_group is None:
        raise UnsupportedFormatError(
            f"{path}: not a Sentinel-5P L2 file (no PRODUCT group; groups: {sorted(nc.groups) or 'none'})"
        )
    detected = _detect_product(path, nc, product)
    facts = _granule_facts(path, nc, detected)
    if not data_variables(prod_group):
        raise NoDataError(
            f"{path}: the PRODUCT group holds no variables: the file holds metadata only, no pixel data "
            f"(product {detected or 'unknown'}, orbit {facts.orbit})"
        )
    if detected is None:
        raise UnsupportedFormatError(
            f"{path}: cannot tell which Sentinel-5P product this is (no S5P file name, no "
            f"{GRANULE_GROUP} ProductShortName, no id/title attribute); pass product= one of "
            f"{', '.join(PRODUCTS)}"
        )
    if detected not in PRODUCTS:
        raise UnsupportedFormatError(
            f"{path}: Sentinel-5P product {detected!r} is not supported (supported: {', '.join(PRODUCTS)})"
        )
    spec = PRODUCTS[detected]

    sizes = {name: len(dim) for name, dim in prod_group.dimensions.items()}
    for dim in ("scanline", "ground_pixel"):
        if dim not in sizes:
            raise FormatError(f"{path}: PRODUCT group has no {dim!r} dimension (dimensions: {sorted(sizes)})")
    pixel = ("scanline", "ground_pixel")
    pvars = prod_group.variables

    keep: list[str] = []
    for name in ("latitude", "longitude"):
        if name not in pvars:
            raise FormatError(f"{path}: PRODUCT/{name} is missing (pixel-centre geolocation)")
        _check_shape(path, f"PRODUCT/{name}", pvars[name], pixel, sizes)
        keep.append(name)

    variables: list[_Var] = []
    source_attrs: dict[str, dict[str, Any]] = {}
    for var in spec.variables:
        if var.source not in pvars:
            if var.required:
                raise FormatError(
                    f"{path}: PRODUCT/{var.source} is missing (the {spec.product} product variable)"
                )
            continue
        _check_shape(path, f"PRODUCT/{var.source}", pvars[var.source], pixel, sizes)
        variables.append(var)
        source_attrs[var.source] = nc_attrs(pvars[var.source])
        keep.append(var.source)

    if "delta_time" not in pvars:
        raise FormatError(f"{path}: PRODUCT/delta_time is missing (per-scanline observation time)")
    dt_dims = _pixel_dims(pvars["delta_time"])
    if dt_dims not in (("scanline",), pixel):
        raise FormatError(
            f"{path}: PRODUCT/delta_time has dimensions {tuple(pvars['delta_time'].dimensions)}, "
            "expected (time, scanline) or (time, scanline, ground_pixel)"
        )
    _check_shape(path, "PRODUCT/delta_time", pvars["delta_time"], dt_dims, sizes)
    keep.append("delta_time")

    time_units = "seconds since 2010-01-01 00:00:00"
    time_value: float | None = None
    if "time" in pvars:
        time_units = str(pvars["time"].getncattr("units")) if "units" in pvars["time"].ncattrs() else time_units
        # a single int32: reading it is free and lets time_utc be a lazy function of delta_time alone
        value = read_values(pvars["time"]).ravel()
        time_value = float(value[0]) if value.size else None
    if time_value is None or not np.isfinite(time_value):
        ref = str(facts.global_attrs.get("time_reference", "")).strip()
        if not ref:
            raise FormatError(
                f"{path}: PRODUCT/time is missing or fill and there is no time_reference attribute"
            )
        time_units = f"seconds since {ref.rstrip('Z')}"
        time_value = 0.0

    geoloc_drop: list[str] | None = None
    geo = get_group(nc, GEOLOCATIONS_GROUP)
    bounds = ("latitude_bounds", "longitude_bounds")
    missing = [b for b in bounds if geo is None or b not in geo.variables]
    if not missing:
        if "corner" not in sizes:
            raise FormatError(f"{path}: PRODUCT group has no 'corner' dimension for {GEOLOCATIONS_GROUP} bounds")
        for b in bounds:
            _check_shape(path, f"{GEOLOCATIONS_GROUP}/{b}", geo.variables[b], pixel + ("corner",), sizes)
        if sizes["corner"] != 4:
            raise FormatError(f"{path}: corner dimension has length {sizes['corner']}, expected 4")
        geoloc_drop = [v for v in geo.variables if v not in bounds]
    elif require_bounds:
        why = "" if geo is not None else f", the file has no {GEOLOCATIONS_GROUP} group"
        raise FormatError(
            f"{path}: {GEOLOCATIONS_GROUP}/{missing[0]} is missing (pixel corner bounds{why}; "
            "pass require_bounds=False to open without them)"
        )

    has_qa = "qa_value" in pvars
    if has_qa:
        _check_shape(path, "PRODUCT/qa_value", pvars["qa_value"], pixel, sizes)
        keep.append("qa_value")
    elif require_qa:
        raise FormatError(
            f"{path}: PRODUCT/qa_value is missing (pass require_qa=False to open a file without it)"
        )

    extras: dict[str, list[str]] = {}
    taken = {v.name for v in variables} | {"latitude", "longitude", "qa_value", "qa_value_raw", "time_utc"}
    for item in extra_variables:
        group_path, name = _split_extra(item)
        grp = get_group(nc, group_path)
        if grp is None or name not in grp.variables:
            raise FormatError(f"{path}: {group_path}/{name} is missing (requested in extra_variables)")
        if name in taken or name in keep:
            raise InputError(f"extra_variables: {name!r} clashes with a variable the reader already provides")
        dims = _pixel_dims(grp.variables[name])
        if dims[:2] != pixel:
            raise FormatError(
                f"{path}: {group_path}/{name} has dimensions {dims}, expected (scanline, ground_pixel, ...)"
            )
        taken.add(name)
        extras.setdefault(group_path, []).append(name)
        if group_path == PRODUCT_GROUP:
            keep.append(name)

    keep_set = set(keep)
    drop = [v for v in pvars if v not in keep_set and v not in prod_group.dimensions]
    extras_drop = {g: [v for v in get_group(nc, g).variables if v not in names]
                   for g, names in extras.items() if g != PRODUCT_GROUP}
    return _Layout(facts, spec, variables, source_attrs, drop, geoloc_drop, has_qa,
                   time_units, time_value, extras, extras_drop)


def _split_extra(item: str) -> tuple[str, str]:
    """``"SUPPORT_DATA/INPUT_DATA/surface_pressure"`` -> ``("PRODUCT/SUPPORT_DATA/INPUT_DATA", name)``."""
    rel = str(item).strip("/")
    if rel.startswith(PRODUCT_GROUP + "/"):
        rel = rel[len(PRODUCT_GROUP) + 1:]
    group_rel, _, name = rel.rpartition("/")
    return (f"{PRODUCT_GROUP}/{group_rel}" if group_rel else PRODUCT_GROUP), name


# --------------------------------------------------------------------------------------------------
# Building the lazy dataset
# --------------------------------------------------------------------------------------------------

_TIME_FACTORS_NS = {"milliseconds": 1_000_000, "millisecond": 1_000_000, "ms": 1_000_000,
                    "seconds": 1_000_000_000, "second": 1_000_000_000, "s": 1_000_000_000,
                    "microseconds": 1_000, "microsecond": 1_000, "us": 1_000}


def _reference_ns(units: str, value: float, path: Path) -> int:
    """Nanoseconds since 1970 of ``value`` in CF ``units`` ("seconds since 2010-01-01 00:00:00")."""
    unit, sep, origin = units.partition(" since ")
    factor = _TIME_FACTORS_NS.get(unit.strip().lower())
    if not sep or factor is None:
        raise FormatError(f"{path}: PRODUCT/time has units {units!r}, expected '<unit> since <date>'")
    try:
        epoch = np.datetime64(origin.strip().rstrip("Z").replace(" ", "T"), "ns")
    except ValueError:
        raise FormatError(f"{path}: PRODUCT/time has units {units!r} with an unreadable origin") from None
    return int(epoch.astype(np.int64)) + int(round(value * factor))


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
# Cheap metadata and footprint (the outline geometry is in rsmon.io.footprint)
# --------------------------------------------------------------------------------------------------

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
