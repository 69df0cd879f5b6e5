"""Sentinel-5P L2 file layout: file names, the supported products, and the structure check of a file.

What :func:`rsmon.io.s5p.open_s5p` and :func:`rsmon.io.s5p.read_metadata` share: parsing S5P file
names, the product table (which ``/PRODUCT`` variables each product provides under which rsmon name),
and :func:`_inspect`, which checks a file's groups, dimensions and variables from metadata alone and
returns the :class:`_Layout` to read. Public names are re-exported by :mod:`rsmon.io.s5p`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rsmon.errors import FormatError, InputError, NoDataError, UnsupportedFormatError
from rsmon.io.ncfile import data_variables, get_group, nc_attrs, read_values

__all__ = [
    "PRODUCTS",
    "S5PFileName",
    "S5PProduct",
    "parse_s5p_filename",
]

PRODUCT_GROUP = "PRODUCT"
GEOLOCATIONS_GROUP = "PRODUCT/SUPPORT_DATA/GEOLOCATIONS"
GRANULE_GROUP = "METADATA/GRANULE_DESCRIPTION"

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
# Time reference (PRODUCT/time units; delta_time offsets are in these factors)
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
