"""VIIRS Level-1B I-band reader (VNP02IMG / VJ102IMG / VJ202IMG + the matching 03IMG geolocation).

Layout (NASA VIIRS L1B, NetCDF-4/HDF5; LAADS file specifications VNP02IMG / VNP03IMG V3.0.0 and the
NASA VIIRS L1B Product User Guide; ``shared/reference/fire.md`` section 2):

* ``observation_data``: ``I01``..``I05`` uint16 scaled integers (valid 0..65527) with ``scale_factor``
  / ``add_offset`` (I04/I05: radiance, W m-2 sr-1 um-1; I01-I03: reflectance factor, with
  ``radiance_scale_factor`` / ``radiance_add_offset`` for radiance), ``flag_values`` 65532 65533 65534
  = ``Missing_EV Bowtie_Deleted Cal_Fail`` and ``_FillValue`` 65535; ``I04/I05_brightness_temperature_lut``
  (65536 float32, BT = LUT[count]); ``I0x_quality_flags`` (uint16 bits, L1B UG Table C.1: 4 = Saturation,
  256 = Bowtie_Deleted, 512 = Missing_EV, 1024 = Cal_Fail, ...);
* ``geolocation_data`` (03 file): ``latitude``/``longitude`` float32 (fill -999.9), angles int16 x 0.01
  deg, ``land_water_mask`` uint8 flags, ``height``, ``quality_flag``;
* global attributes ``time_coverage_start/end``, ``DayNightFlag``, ``platform``, ``LocalGranuleID``...;
  dimensions ``number_of_lines`` (6464 = 202 scans x 32) and ``number_of_pixels`` (6400).

The reader returns data and never filters it: special counts become NaN in the physical variables and
keep their meaning in ``i4_status``/``i5_status``; quality flags are passed through raw. Everything is
lazy (dask): opening reads attributes, the two 65536-entry BT lookup tables and, to recognise an
all-fill granule, the I05 counts of a few lines.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr

from rsmon.errors import FormatError, InputError, NoDataError, UnsupportedFormatError
from rsmon.io.ncfile import (
    NC_LOCK,
    existing_file,
    get_group,
    nc_attrs,
    netcdf_signature,
    open_group_dataset,
    open_netcdf,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CHUNKS",
    "FILL_COUNT",
    "OUTPUT_VARIABLES",
    "PLATFORMS",
    "QF_BOWTIE_DELETED",
    "QF_CAL_FAIL",
    "QF_FLAG_MASKS",
    "QF_FLAG_MEANINGS",
    "QF_MISSING_EV",
    "QF_SATURATION",
    "SPECIAL_COUNTS",
    "STATUS_BOWTIE_DELETED",
    "STATUS_CALIBRATION_FAILURE",
    "STATUS_FILL",
    "STATUS_MISSING",
    "STATUS_VALID",
    "VALID_MAX_COUNT",
    "ViirsFileName",
    "ViirsPlatform",
    "find_geolocation_file",
    "open_viirs_l1b",
    "parse_viirs_filename",
    "read_metadata",
    "sniff_viirs_l1b",
    "viirs_filename",
]

# --------------------------------------------------------------------------------------------------
# Constants of the format
# --------------------------------------------------------------------------------------------------

#: Largest count that is a measurement (``valid_max`` of I01..I05 in the file specification).
VALID_MAX_COUNT = 65527
#: ``flag_values`` / ``flag_meanings`` of I01..I05 (VNP02IMG file specification; L1B User Guide 5.1).
SPECIAL_COUNTS: Mapping[int, str] = MappingProxyType({65532: "Missing_EV", 65533: "Bowtie_Deleted",
                                                      65534: "Cal_Fail"})
#: ``_FillValue`` of I01..I05.
FILL_COUNT = 65535

#: ``i4_status`` / ``i5_status`` codes.
STATUS_VALID, STATUS_MISSING, STATUS_BOWTIE_DELETED, STATUS_CALIBRATION_FAILURE, STATUS_FILL = 0, 1, 2, 3, 4
_STATUS_OF_MEANING = {"missing_ev": STATUS_MISSING, "bowtie_deleted": STATUS_BOWTIE_DELETED,
                      "cal_fail": STATUS_CALIBRATION_FAILURE}

#: Pixel quality-flag bits of I01..I05 (VIIRS L1B User Guide, Appendix 1 / Table C.1; the bits that
#: all versions quoted in shared/reference/fire.md and public readers agree on).
QF_SATURATION, QF_BOWTIE_DELETED, QF_MISSING_EV, QF_CAL_FAIL = 4, 256, 512, 1024
QF_FLAG_MASKS = (1, 2, 4, 8, 256, 512, 1024, 2048)
QF_FLAG_MEANINGS = ("Substitute_Cal Out_of_Range Saturation Temp_not_Nominal Bowtie_Deleted Missing_EV "
                    "Cal_Fail Dead_Detector")

#: Dask chunks of ``open_viirs_l1b(chunks=None)``: 1024 lines, whole rows.
DEFAULT_CHUNKS: Mapping[str, int] = MappingProxyType({"y": 1024, "x": -1})

#: Every variable of the output contract (``refl_i*`` are NaN when the file has no I01..I03).
OUTPUT_VARIABLES = ("bt_i4", "bt_i5", "rad_i4", "refl_i1", "refl_i2", "refl_i3", "i4_status", "i5_status",
                    "i4_saturated", "qf_i4", "qf_i5", "land_water_mask", "solar_zenith", "solar_azimuth",
                    "sensor_zenith", "sensor_azimuth")

OBS_GROUP, GEO_GROUP = "observation_data", "geolocation_data"
_LINES, _PIXELS = "number_of_lines", "number_of_pixels"
_DIM_NAMES = {"y": _LINES, "x": _PIXELS, _LINES: _LINES, _PIXELS: _PIXELS}
_ANGLES = ("solar_zenith", "solar_azimuth", "sensor_zenith", "sensor_azimuth")


@dataclass(frozen=True)
class ViirsPlatform:
    """A VIIRS platform: rsmon name, file-name prefix, ``platform`` attribute and FIRMS code.

    ``firms`` is the ``satellite`` value of FIRMS VIIRS CSVs: "N" for S-NPP (shared/data
    firms-germany-2023), "N20"/"N21" for NOAA-20/21 as the FIRMS API writes them today (older NOAA-20
    files used "1"; see :data:`FIRMS_SATELLITE_ALIASES`).
    """

    name: str
    prefix: str
    file_platform: str
    firms: str


PLATFORMS: Mapping[str, ViirsPlatform] = MappingProxyType({
    "Suomi-NPP": ViirsPlatform("Suomi-NPP", "VNP", "Suomi-NPP", "N"),
    "NOAA-20": ViirsPlatform("NOAA-20", "VJ1", "JPSS-1", "N20"),
    "NOAA-21": ViirsPlatform("NOAA-21", "VJ2", "JPSS-2", "N21"),
})
#: FIRMS ``satellite`` codes seen in the wild -> platform name.
FIRMS_SATELLITE_ALIASES: Mapping[str, str] = MappingProxyType({
    "N": "Suomi-NPP", "NPP": "Suomi-NPP", "N20": "NOAA-20", "1": "NOAA-20", "J1": "NOAA-20",
    "N21": "NOAA-21", "2": "NOAA-21", "J2": "NOAA-21"})
_PLATFORM_ALIASES = {
    "SUOMI-NPP": "Suomi-NPP", "SUOMINPP": "Suomi-NPP", "S-NPP": "Suomi-NPP", "SNPP": "Suomi-NPP", "NPP": "Suomi-NPP",
    "NP": "Suomi-NPP", "VNP": "Suomi-NPP",
    "JPSS-1": "NOAA-20", "JPSS1": "NOAA-20", "NOAA-20": "NOAA-20", "NOAA20": "NOAA-20", "J1": "NOAA-20",
    "J01": "NOAA-20", "VJ1": "NOAA-20",
    "JPSS-2": "NOAA-21", "JPSS2": "NOAA-21", "NOAA-21": "NOAA-21", "NOAA21": "NOAA-21", "J2": "NOAA-21",
    "J02": "NOAA-21", "VJ2": "NOAA-21",
}


def _platform_name(text: Any) -> str | None:
    return _PLATFORM_ALIASES.get(str(text).strip().upper().replace(" ", ""))


# --------------------------------------------------------------------------------------------------
# File names
# --------------------------------------------------------------------------------------------------

_NAME_RE = re.compile(
    r"(?P<prefix>VNP|VJ1|VJ2)(?P<level>02|03)(?P<kind>IMG|MOD|DNB)(?P<nrt>_NRT)?"
    r"\.A(?P<year>\d{4})(?P<doy>\d{3})\.(?P<hhmm>\d{4})\.(?P<collection>\d{3})"
    r"(?:\.(?P<production>\d{13}))?"
)


@dataclass(frozen=True)
class ViirsFileName:
    """Fields of a NASA VIIRS L1 file name, e.g. ``VJ102IMG.A2023161.0524.021.2023161123456.nc``.

    Attributes
    ----------
    prefix : str
        "VNP" (S-NPP), "VJ1" (NOAA-20) or "VJ2" (NOAA-21).
    level : str
        "02" (L1B radiances) or "03" (geolocation).
    kind : str
        "IMG", "MOD" or "DNB".
    start : datetime
        Granule start (UTC, minute precision) from ``AYYYYDDD.HHMM``.
    collection : str
        Three digits, e.g. "002", "021".
    nrt : bool
        Near-real-time product (``_NRT``).
    platform : str
        rsmon platform name ("Suomi-NPP", "NOAA-20", "NOAA-21").
    granule_key : str
        ``AYYYYDDD.HHMM``: what a 02 and its 03 file share.
    """

    prefix: str
    level: str
    kind: str
    start: datetime
    collection: str
    nrt: bool
    platform: str
    granule_key: str


def parse_viirs_filename(name: str | Path) -> ViirsFileName | None:
    """Parse a NASA VIIRS L1 file name (any folder, any suffix); None when it is not one."""
    match = _NAME_RE.search(Path(str(name)).name)
    if match is None:
        return None
    g = match.groupdict()
    try:
        start = datetime.strptime(f"{g['year']}{g['doy']}{g['hhmm']}", "%Y%j%H%M").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return ViirsFileName(prefix=g["prefix"], level=g["level"], kind=g["kind"], start=start,
                         collection=g["collection"], nrt=bool(g["nrt"]),
                         platform=_PLATFORM_ALIASES[g["prefix"]],
                         granule_key=f"A{g['year']}{g['doy']}.{g['hhmm']}")


def viirs_filename(platform: str, level: str, start: datetime, collection: str = "021",
                   production: datetime | None = None, kind: str = "IMG") -> str:
    """The NASA file name of a granule: ``{prefix}{level}{kind}.AYYYYDDD.HHMM.{collection}.{production}.nc``."""
    name = _platform_name(platform)
    if name is None:
        raise ValueError(f"unknown VIIRS platform {platform!r}")
    stem = f"{PLATFORMS[name].prefix}{level}{kind}.A{start:%Y%j}.{start:%H%M}.{collection}"
    return f"{stem}.{production:%Y%j%H%M%S}.nc" if production is not None else f"{stem}.nc"


def find_geolocation_file(img_path: str | Path) -> Path:
    """The 03IMG file beside ``img_path`` with the same platform prefix and ``AYYYYDDD.HHMM``.

    Prefers the same collection and NRT-ness, then the newest production time.

    Raises
    ------
    FormatError
        The name of ``img_path`` is not a NASA VIIRS 02IMG name, or no matching 03IMG file exists.
    """
    img = Path(img_path)
    parsed = parse_viirs_filename(img.name)
    if parsed is not None and parsed.level == "03":
        raise FormatError(f"{img}: this is the geolocation (03) file; open the matching "
                          f"{parsed.prefix}02{parsed.kind} file")
    if parsed is None:
        raise FormatError(f"{img}: cannot find its geolocation file: the name is not a NASA VIIRS 02IMG "
                          "name like VJ102IMG.A2023161.0524.021.2023161123456.nc; pass geo_path=")
    want = f"{parsed.prefix}03{parsed.kind}"
    candidates = []
    for path in img.parent.glob(f"{want}*.{parsed.granule_key}.*"):
        other = parse_viirs_filename(path.name)
        if other is None or other.level != "03" or other.prefix != parsed.prefix or other.kind != parsed.kind:
            continue
        if other.granule_key != parsed.granule_key or not path.is_file():
            continue
        rank = (other.collection == parsed.collection, other.nrt == parsed.nrt, path.name)
        candidates.append((rank, path))
    if not candidates:
        raise FormatError(f"{img}: no geolocation file {want}*.{parsed.granule_key}.*.nc in {img.parent} "
                          "(same platform prefix and granule time); pass geo_path=")
    return max(candidates)[1]


# --------------------------------------------------------------------------------------------------
# Inspecting the pair (metadata only)
# --------------------------------------------------------------------------------------------------

@dataclass
class _Band:
    """What the reader needs to know about one band variable."""

    name: str
    scale: float
    offset: float
    valid_max: int
    fill: int
    specials: dict[int, int]  # count -> status code
    attrs: dict[str, Any]


@dataclass
class _Layout:
    img: Path
    geo: Path
    bands: dict[str, _Band]
    luts: dict[str, np.ndarray]
    qf_attrs: dict[str, dict[str, Any]]
    geo_attrs: dict[str, dict[str, Any]]
    obs_drop: list[str]
    geo_drop: list[str]
    attrs: dict[str, Any]
    shape: tuple[int, int]


def _require_group(path: Path, nc, group: str, what: str):
    grp = get_group(nc, group)
    if grp is None:
        raise FormatError(f"{path}: group {group} is missing ({what})")
    return grp


def _require_var(path: Path, group, group_name: str, name: str, what: str):
    if name not in group.variables:
        raise FormatError(f"{path}: {group_name}/{name} is missing ({what})")
    return group.variables[name]


def _band(path: Path, var, name: str) -> _Band:
    attrs = nc_attrs(var)
    fill = int(attrs.get("_FillValue", FILL_COUNT))
    valid_max = int(attrs.get("valid_max", VALID_MAX_COUNT))
    specials: dict[int, int] = {}
    values = np.atleast_1d(attrs.get("flag_values", list(SPECIAL_COUNTS)))
    meanings = str(attrs.get("flag_meanings", " ".join(SPECIAL_COUNTS.values()))).split()
    if len(meanings) != len(values):
        raise FormatError(f"{path}: {OBS_GROUP}/{name} has {len(values)} flag_values but "
                          f"{len(meanings)} flag_meanings")
    for value, meaning in zip(values, meanings):
        specials[int(value)] = _STATUS_OF_MEANING.get(meaning.lower(), STATUS_FILL)
    if "scale_factor" not in attrs:
        raise FormatError(f"{path}: {OBS_GROUP}/{name} has no scale_factor attribute")
    return _Band(name, float(attrs["scale_factor"]), float(attrs.get("add_offset", 0.0)), valid_max, fill,
                 specials, attrs)


def _read_lut(path: Path, group, name: str) -> np.ndarray:
    var = _require_var(path, group, OBS_GROUP, name, "brightness-temperature lookup table")
    if var.ndim != 1 or var.shape[0] < VALID_MAX_COUNT + 1:
        raise FormatError(f"{path}: {OBS_GROUP}/{name} has shape {var.shape}, expected (65536,)")
    var.set_auto_maskandscale(False)
    try:
        lut = np.asarray(var[:], dtype=np.float32)
    except (OSError, RuntimeError, IndexError) as exc:
        raise FormatError(f"{path}: cannot read {OBS_GROUP}/{name}: {exc}") from None
    attrs = nc_attrs(var)
    bad = ~np.isfinite(lut)
    if "_FillValue" in attrs:
        bad |= lut == np.float32(attrs["_FillValue"])
    lo, hi = attrs.get("valid_min"), attrs.get("valid_max")
    if lo is not None:
        bad |= lut < np.float32(lo)
    if hi is not None:
        bad |= lut > np.float32(hi)
    lut = np.where(bad, np.float32(np.nan), lut).astype(np.float32)
    if not np.isfinite(lut[: VALID_MAX_COUNT + 1]).any():
        raise FormatError(f"{path}: {OBS_GROUP}/{name} holds no valid brightness temperature")
    return lut


def _iso(text: Any, fallback: datetime | None) -> str:
    text = str(text or "").strip()
    if text:
        stamp = _parse_time(text)
        if stamp is not None:
            return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    return fallback.strftime("%Y-%m-%dT%H:%M:%S.000Z") if fallback else ""


def _parse_time(text: str) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def _is_viirs(nc) -> bool:
    attrs = nc_attrs(nc)
    if str(attrs.get("instrument", "")).strip().upper() == "VIIRS":
        return True
    return _platform_name(attrs.get("platform", "")) is not None


def _orbit_number(attrs: dict[str, Any]) -> int | None:
    """The granule's orbit number from ``orbit_number`` (02 files) or ``OrbitNumber`` (03 files)."""
    for key in ("orbit_number", "OrbitNumber"):
        try:
            return int(attrs[key])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _check_pair(img: Path, geo: Path, nc_img, nc_geo) -> dict[str, Any]:
    """Raise FormatError naming both files unless the 02 and 03 files are the same granule."""
    a_img, a_geo = nc_attrs(nc_img), nc_attrs(nc_geo)
    n_img, n_geo = parse_viirs_filename(img.name), parse_viirs_filename(geo.name)
    p_img = _platform_name(a_img.get("platform", "")) or (n_img.platform if n_img else None)
    p_geo = _platform_name(a_geo.get("platform", "")) or (n_geo.platform if n_geo else None)
    both = f"{img} and {geo}"
    if p_img and p_geo and p_img != p_geo:
        raise FormatError(f"{both} are not a pair: platforms {p_img} and {p_geo}")
    if n_img and n_geo and (n_img.granule_key, n_img.prefix) != (n_geo.granule_key, n_geo.prefix):
        raise FormatError(f"{both} are not a pair: granules {n_img.prefix}.{n_img.granule_key} and "
                          f"{n_geo.prefix}.{n_geo.granule_key} in the file names")
    if n_geo is not None and n_geo.level != "03":
        raise FormatError(f"{both} are not a pair: {geo.name} is not a 03 (geolocation) file")
    for key in ("time_coverage_start", "time_coverage_end"):
        t_img, t_geo = _parse_time(a_img.get(key, "")), _parse_time(a_geo.get(key, ""))
        if t_img and t_geo and abs((t_img - t_geo).total_seconds()) > 1.0:
            raise FormatError(f"{both} are not a pair: {key} {t_img:%Y-%m-%dT%H:%M:%S} and "
                              f"{t_geo:%Y-%m-%dT%H:%M:%S}")
    # Same times but another orbit (a renamed or re-stamped file): the 02 file says orbit_number,
    # the 03 file OrbitNumber (NASA VIIRS L1B product user guide, global attributes).
    o_img, o_geo = _orbit_number(a_img), _orbit_number(a_geo)
    if o_img is not None and o_geo is not None and o_img != o_geo:
        raise FormatError(f"{both} are not a pair: orbit numbers {o_img} and {o_geo}")
    return {"platform": p_img or p_geo, "img_attrs": a_img, "geo_attrs": a_geo, "img_name": n_img}


def _inspect(img: Path, geo: Path, nc_img, nc_geo) -> _Layout:
    obs = get_group(nc_img, OBS_GROUP)
    if obs is None:
        if not _is_viirs(nc_img):
            raise UnsupportedFormatError(f"{img}: not a VIIRS L1B file (no {OBS_GROUP} group, no VIIRS attributes)")
        raise FormatError(f"{img}: group {OBS_GROUP} is missing (VIIRS L1B radiances)")
    if "I04" not in obs.variables and "I05" not in obs.variables:
        if any(name in obs.variables for name in ("M13", "M15", "DNB_observations")):
            raise UnsupportedFormatError(f"{img}: a VIIRS M-band or DNB L1B file; this reader serves the I-band "
                                         "(02IMG) files")
    geo_grp = _require_group(geo, nc_geo, GEO_GROUP, "VIIRS 03IMG geolocation")
    pair = _check_pair(img, geo, nc_img, nc_geo)

    bands: dict[str, _Band] = {}
    for name in ("I04", "I05"):
        bands[name] = _band(img, _require_var(img, obs, OBS_GROUP, name, "I-band radiance counts"), name)
    for name in ("I01", "I02", "I03"):
        if name in obs.variables:
            bands[name] = _band(img, obs.variables[name], name)
    luts = {name: _read_lut(img, obs, f"{name}_brightness_temperature_lut") for name in ("I04", "I05")}
    qf_attrs = {name: nc_attrs(_require_var(img, obs, OBS_GROUP, f"{name}_quality_flags", "pixel quality flags"))
                for name in ("I04", "I05")}
    geo_attrs = {}
    for name in ("latitude", "longitude", "land_water_mask", *_ANGLES):
        geo_attrs[name] = nc_attrs(_require_var(geo, geo_grp, GEO_GROUP, name, "geolocation"))

    shape = tuple(obs.variables["I04"].shape)
    expected_dims = (_LINES, _PIXELS)
    for name, var, path, grp in (("I04", obs.variables["I04"], img, OBS_GROUP),
                                 ("latitude", geo_grp.variables["latitude"], geo, GEO_GROUP)):
        if tuple(var.dimensions) != expected_dims:
            raise FormatError(f"{path}: {grp}/{name} has dimensions {var.dimensions}, expected {expected_dims}")
    for name in [*bands, "I04_quality_flags", "I05_quality_flags"]:
        if tuple(obs.variables[name].shape) != shape:
            raise FormatError(f"{img}: {OBS_GROUP}/{name} has shape {obs.variables[name].shape}, expected {shape}")
    for name in geo_attrs:
        if tuple(geo_grp.variables[name].shape) != shape:
            raise FormatError(f"{img} and {geo} are not a pair: {GEO_GROUP}/{name} has shape "
                              f"{geo_grp.variables[name].shape}, the I-bands {shape}")

    keep_obs = set(bands) | {"I04_quality_flags", "I05_quality_flags"}
    obs_drop = [v for v in obs.variables if v not in keep_obs]
    geo_drop = [v for v in geo_grp.variables if v not in geo_attrs]

    _check_not_empty(img, geo, pair["img_attrs"], obs.variables["I05"], bands["I05"], geo_grp.variables["latitude"])

    a_img = pair["img_attrs"]
    parsed = pair["img_name"]
    platform = pair["platform"]
    if platform is None:
        raise FormatError(f"{img}: cannot tell the platform (no platform attribute, no NASA file name)")
    attrs = {
        "platform": platform,
        "satellite": PLATFORMS[platform].firms,
        "instrument": "VIIRS",
        "time_coverage_start": _iso(a_img.get("time_coverage_start"), parsed.start if parsed else None),
        "time_coverage_end": _iso(a_img.get("time_coverage_end"), None),
        "day_night_flag": str(a_img.get("DayNightFlag", "")).strip(),
        "granule_id": str(a_img.get("LocalGranuleID", "") or img.name),
        "source_paths": [str(img), str(geo)],
        "product": str(a_img.get("ShortName", "") or (f"{parsed.prefix}02{parsed.kind}" if parsed else "")),
    }
    orbit = _orbit_number(a_img)
    if orbit is not None:
        attrs["orbit_number"] = orbit
    if parsed is not None:
        attrs["collection"] = parsed.collection
    return _Layout(img, geo, bands, luts, qf_attrs, geo_attrs, obs_drop, geo_drop, attrs, shape)


#: Lines of I05 read at open to recognise an all-fill granule (spread over the granule).
PROBE_LINES = 16


def _check_not_empty(img: Path, geo: Path, gattrs: Mapping[str, Any], i05, band: _Band, lat) -> None:
    """NoDataError for a granule without one valid I05 count or one valid latitude (cheap probes)."""
    filled = gattrs.get("number_of_filled_scans")
    if filled is not None and int(filled) == 0:
        raise NoDataError(f"{img}: no filled scans (number_of_filled_scans = 0)")
    n_lines = i05.shape[0]
    if n_lines == 0 or i05.shape[1] == 0:
        raise NoDataError(f"{img}: the granule has no pixels ({i05.shape})")
    n_scans = n_lines // 32
    if n_scans >= 1:  # the middle detector of up to PROBE_LINES scans spread over the granule
        rows = np.unique(np.linspace(0, n_scans - 1, min(PROBE_LINES, n_scans)).round().astype(int)) * 32 + 16
    else:
        rows = np.unique(np.linspace(0, n_lines - 1, min(PROBE_LINES, n_lines)).round().astype(int))
    i05.set_auto_maskandscale(False)
    lat.set_auto_maskandscale(False)
    try:
        counts = np.asarray(i05[rows, :])
        if not (counts <= band.valid_max).any():
            counts = np.asarray(i05[:, :])  # the probe found nothing: look at every line before giving up
        if not (counts <= band.valid_max).any():
            raise NoDataError(f"{img}: all-fill granule (no valid {OBS_GROUP}/I05 count)")
        lat_fill = nc_attrs(lat).get("_FillValue", -999.9)
        lats = np.asarray(lat[rows, :], dtype=np.float64)
        if not (np.isfinite(lats) & (lats != np.float32(lat_fill)) & (np.abs(lats) <= 90.0)).any():
            raise NoDataError(f"{geo}: no valid {GEO_GROUP}/latitude")
    except (OSError, RuntimeError, IndexError) as exc:
        raise FormatError(f"{img}: cannot read {OBS_GROUP}/I05 (truncated or corrupt?): {exc}") from None


# --------------------------------------------------------------------------------------------------
# Block functions (numpy in, numpy out; run inside dask tasks)
# --------------------------------------------------------------------------------------------------

def _lut_lookup(counts: np.ndarray, lut: np.ndarray, valid_max: int) -> np.ndarray:
    out = lut[np.minimum(counts, lut.size - 1).astype(np.intp)]
    return np.where(counts <= valid_max, out, np.float32(np.nan)).astype(np.float32)


def _scaled(counts: np.ndarray, scale: float, offset: float, valid_max: int) -> np.ndarray:
    values = counts.astype(np.float32) * np.float32(scale) + np.float32(offset)
    return np.where(counts <= valid_max, values, np.float32(np.nan)).astype(np.float32)


def _status(counts: np.ndarray, valid_max: int, specials: dict[int, int]) -> np.ndarray:
    out = np.where(counts <= valid_max, STATUS_VALID, STATUS_FILL).astype(np.uint8)
    for value, code in specials.items():
        out[counts == value] = code
    return out


def _saturated(counts: np.ndarray, flags: np.ndarray, valid_max: int) -> np.ndarray:
    return (counts == valid_max) | ((flags & QF_SATURATION) != 0)


def _decode_geo(values: np.ndarray, fill, scale: float, offset: float, lo, hi, packed: bool) -> np.ndarray:
    """Stored geolocation values -> float32 physical values; fill and out-of-range -> NaN.

    ``valid_min``/``valid_max`` are compared with the stored values when ``packed`` (CF: same type as
    the variable), otherwise with the physical values.
    """
    bad = np.zeros(values.shape, dtype=bool) if fill is None else values == fill
    out = values.astype(np.float32) * np.float32(scale) + np.float32(offset)
    ref = values if packed else out
    if lo is not None:
        bad |= ref < lo
    if hi is not None:
        bad |= ref > hi
    return np.where(bad | ~np.isfinite(out), np.float32(np.nan), out).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------------

def _file_chunks(chunks: Mapping[str, int] | None) -> dict[str, int]:
    merged = dict(DEFAULT_CHUNKS if chunks is None else chunks)
    out = {}
    for key, value in merged.items():
        if key not in _DIM_NAMES:
            raise InputError(f"chunks: unknown dimension {key!r} (expected 'y' and/or 'x')")
        out[_DIM_NAMES[key]] = value
    return out


def open_viirs_l1b(img_path: str | Path, geo_path: str | Path | None = None, *,
                   chunks: Mapping[str, int] | None = None) -> xr.Dataset:
    """Open a VIIRS L1B I-band granule (02IMG + 03IMG) lazily, with standard names.

    Parameters
    ----------
    img_path : str or Path
        The ``VNP02IMG`` / ``VJ102IMG`` / ``VJ202IMG`` file.
    geo_path : str or Path, optional
        The matching ``03IMG`` file; by default the file beside ``img_path`` with the same platform
        prefix and ``AYYYYDDD.HHMM`` (:func:`find_geolocation_file`).
    chunks : mapping, optional
        Dask chunks by ``y``/``x`` (default :data:`DEFAULT_CHUNKS`: 1024 lines, whole rows).

    Returns
    -------
    xarray.Dataset
        Dimensions ``("y", "x")`` (lines, pixels), dask-backed, nothing computed:

        - ``bt_i4``, ``bt_i5``: brightness temperature, K, float32, from the file's own
          ``I04/I05_brightness_temperature_lut`` indexed by the count; NaN for special counts;
        - ``rad_i4``: I4 radiance, W m-2 sr-1 um-1, float32 (count x scale_factor + add_offset);
        - ``refl_i1``, ``refl_i2``, ``refl_i3``: reflectance factor, float32 (NaN arrays when the file
          has no I01..I03, e.g. night granules);
        - ``i4_status``, ``i5_status``: uint8, 0 valid, 1 missing (65532 Missing_EV), 2 bow-tie
          deleted (65533 Bowtie_Deleted), 3 calibration failure (65534 Cal_Fail), 4 fill (65535 or any
          other count above valid_max). The mapping follows the band's own ``flag_values`` /
          ``flag_meanings`` (VNP02IMG file specification, L1B User Guide 5.1);
        - ``i4_saturated``: bool, the count equals ``valid_max`` OR the quality flag has the
          Saturation bit (value 4, L1B User Guide Table C.1). Folded pixels (fire.md 1.1: BT4 ~208 K
          with nominal flags) are not flagged by either;
        - ``qf_i4``, ``qf_i5``: the raw uint16 quality flags (``flag_masks``/``flag_meanings`` in attrs);
        - coordinates ``latitude``, ``longitude`` (degrees, float32, NaN = fill);
        - ``land_water_mask``: uint8 as stored (``flag_values``/``flag_meanings`` in attrs, 255 fill);
        - ``solar_zenith``, ``solar_azimuth``, ``sensor_zenith``, ``sensor_azimuth``: degrees, float32.

        Attrs: ``platform`` ("Suomi-NPP", "NOAA-20", "NOAA-21"), ``satellite`` (FIRMS code "N",
        "N20", "N21"), ``instrument`` "VIIRS", ``time_coverage_start``/``_end`` (ISO 8601 UTC),
        ``day_night_flag`` (the file's DayNightFlag: "Day", "Night", "Both"), ``granule_id``
        (LocalGranuleID), ``source_paths`` ([02 file, 03 file], absolute), ``product``, and
        ``orbit_number``/``collection`` when known.

    Raises
    ------
    FormatError
        A file is missing, not NetCDF/HDF5, truncated, or lacks a group, band, lookup table, quality
        flag or geolocation variable (the message names it); the pair does not match (different
        platform, granule time or shape; the message names both files); no 03IMG file is found.
    UnsupportedFormatError
        Not a VIIRS L1B file, or an M-band/DNB file.
    InputError
        ``chunks`` names a dimension other than ``y``/``x``.
    NoDataError
        All-fill granule (no valid I05 count or no valid latitude, or ``number_of_filled_scans`` = 0).
    """
    img = existing_file(img_path)
    geo = existing_file(geo_path) if geo_path is not None else existing_file(find_geolocation_file(img))
    file_chunks = _file_chunks(chunks)
    with NC_LOCK:  # see NCLock: opening must not overlap other threads' HDF5 calls
        m_img, nc_img = open_netcdf(img)
        m_geo, nc_geo = open_netcdf(geo)
        layout = _inspect(img, geo, nc_img, nc_geo)
        raw_obs = open_group_dataset(img, m_img, OBS_GROUP, layout.obs_drop, file_chunks, mask_and_scale=False)
        raw_geo = open_group_dataset(geo, m_geo, GEO_GROUP, layout.geo_drop, file_chunks, mask_and_scale=False)
    ds = _build(layout, raw_obs, raw_geo)
    log.debug("opened %s + %s: %s", img.name, geo.name, dict(ds.sizes))
    return ds


def _da(data, attrs: dict[str, Any]) -> xr.DataArray:
    return xr.DataArray(data, dims=("y", "x"), attrs=attrs)


def _build(layout: _Layout, raw_obs: xr.Dataset, raw_geo: xr.Dataset) -> xr.Dataset:
    dims_map = {_LINES: "y", _PIXELS: "x"}
    raw_obs = raw_obs.rename_dims({k: v for k, v in dims_map.items() if k in raw_obs.dims})
    raw_geo = raw_geo.rename_dims({k: v for k, v in dims_map.items() if k in raw_geo.dims})
    counts = {name: raw_obs[name].data for name in layout.bands}
    out: dict[str, xr.DataArray] = {}
    for band, key in (("I04", "bt_i4"), ("I05", "bt_i5")):
        b = layout.bands[band]
        data = counts[band].map_blocks(_lut_lookup, lut=layout.luts[band], valid_max=b.valid_max, dtype=np.float32)
        out[key] = _da(data, {"long_name": f"{band} brightness temperature", "units": "K",
                              "standard_name": "toa_brightness_temperature",
                              "source_variable": f"{OBS_GROUP}/{band}_brightness_temperature_lut[{band}]",
                              "comment": "NaN where the count is special (see the status variable)"})
    b4 = layout.bands["I04"]
    out["rad_i4"] = _da(counts["I04"].map_blocks(_scaled, scale=b4.scale, offset=b4.offset, valid_max=b4.valid_max,
                                                 dtype=np.float32),
                        {"long_name": "I04 radiance", "units": "W m-2 sr-1 um-1",
                         "standard_name": "toa_outgoing_radiance_per_unit_wavelength",
                         "source_variable": f"{OBS_GROUP}/I04 * scale_factor + add_offset"})
    for band, key in (("I01", "refl_i1"), ("I02", "refl_i2"), ("I03", "refl_i3")):
        attrs = {"long_name": f"{band} reflectance factor", "units": "1",
                 "standard_name": "toa_bidirectional_reflectance",
                 "comment": "as stored (not divided by cos(solar_zenith)); NaN for special counts"}
        if band in layout.bands:
            b = layout.bands[band]
            data = counts[band].map_blocks(_scaled, scale=b.scale, offset=b.offset, valid_max=b.valid_max,
                                           dtype=np.float32)
            attrs["source_variable"] = f"{OBS_GROUP}/{band} * scale_factor + add_offset"
        else:
            import dask.array as dsa

            data = dsa.full(counts["I04"].shape, np.nan, dtype=np.float32, chunks=counts["I04"].chunks)
            attrs["comment"] = f"{band} is not in the file (night granule?): all NaN"
        out[key] = _da(data, attrs)
    status_attrs = {"flag_values": np.arange(5, dtype=np.uint8),
                    "flag_meanings": "valid missing bowtie_deleted calibration_failure fill",
                    "comment": "from the special counts 65532 Missing_EV, 65533 Bowtie_Deleted, 65534 Cal_Fail "
                               "and 65535 _FillValue (band flag_values/flag_meanings; VIIRS L1B User Guide 5.1)"}
    for band, key in (("I04", "i4_status"), ("I05", "i5_status")):
        b = layout.bands[band]
        out[key] = _da(counts[band].map_blocks(_status, valid_max=b.valid_max, specials=b.specials, dtype=np.uint8),
                       {"long_name": f"{band} count status", "units": "1", **status_attrs,
                        "source_variable": f"{OBS_GROUP}/{band}"})
    flags = {band: raw_obs[f"{band}_quality_flags"].data for band in ("I04", "I05")}
    out["i4_saturated"] = _da(
        _map_blocks(_saturated, counts["I04"], flags["I04"], valid_max=b4.valid_max, dtype=bool),
        {"long_name": "I04 saturated", "units": "1",
         "comment": f"count == valid_max ({b4.valid_max}) or I04_quality_flags & {QF_SATURATION} (Saturation, "
                    "L1B User Guide Table C.1); folded pixels (BT4 ~208 K, nominal flags) are not flagged"})
    for band, key in (("I04", "qf_i4"), ("I05", "qf_i5")):
        src = layout.qf_attrs[band]
        attrs = {"long_name": f"{band} pixel quality flags (raw)", "units": "1",
                 "source_variable": f"{OBS_GROUP}/{band}_quality_flags"}
        for k in ("flag_masks", "flag_meanings"):
            if k in src:
                attrs[k] = src[k]
        out[key] = _da(flags[band], attrs)

    lwm_src = layout.geo_attrs["land_water_mask"]
    lwm_attrs = {"long_name": "land/water mask", "units": "1", "source_variable": f"{GEO_GROUP}/land_water_mask"}
    for k in ("flag_values", "flag_meanings"):
        if k in lwm_src:
            lwm_attrs[k] = lwm_src[k]
    if "_FillValue" in lwm_src:
        lwm_attrs["comment"] = f"stored values; {int(lwm_src['_FillValue'])} = fill"
    out["land_water_mask"] = _da(raw_geo["land_water_mask"].data, lwm_attrs)
    for name in _ANGLES:
        out[name] = _da(_geo_float(raw_geo[name].data, layout.geo_attrs[name]),
                        {"long_name": name.replace("_", " ") + " angle", "units": "degree",
                         "standard_name": f"{name}_angle", "source_variable": f"{GEO_GROUP}/{name}"})
    coords = {}
    for name, axis in (("latitude", "north"), ("longitude", "east")):
        coords[name] = _da(_geo_float(raw_geo[name].data, layout.geo_attrs[name]),
                           {"long_name": name, "units": f"degrees_{axis}", "standard_name": name,
                            "source_variable": f"{GEO_GROUP}/{name}"})
    ds = xr.Dataset({k: out[k] for k in OUTPUT_VARIABLES}, coords=coords)
    ds.attrs = dict(layout.attrs)
    return ds


def _map_blocks(func, *arrays, **kw):
    """``dask.array.map_blocks`` over aligned arrays."""
    import dask.array as dsa

    return dsa.map_blocks(func, *arrays, **kw)


def _geo_float(data, attrs: Mapping[str, Any]):
    lo, hi = attrs.get("valid_min"), attrs.get("valid_max")
    bound = lo if lo is not None else hi
    packed = bound is None or np.asarray(bound).dtype.kind == data.dtype.kind
    return data.map_blocks(_decode_geo, fill=attrs.get("_FillValue"), scale=float(attrs.get("scale_factor", 1.0)),
                           offset=float(attrs.get("add_offset", 0.0)), lo=lo, hi=hi, packed=packed,
                           dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# Metadata, sniffing, registration
# --------------------------------------------------------------------------------------------------

def read_metadata(path: str | Path) -> dict[str, Any]:
    """Granule facts for catalogs and ``rsmon info`` without reading pixel values.

    Returns
    -------
    dict
        ``reader`` ("viirs_l1b"), ``path``, ``geo_path`` (or None when no 03 file is found),
        ``product``, ``platform``, ``satellite``, ``instrument``, ``start_datetime``/``end_datetime``
        (aware UTC), ``time_coverage_start``/``_end``, ``day_night_flag``, ``granule_id``,
        ``collection``, ``orbit``, ``bbox`` / ``footprint`` / ``footprint_source`` (from the 03 file's
        GRing and bounding-coordinate attributes), ``dims``, ``has_pixel_data``, ``variables``.
    """
    img = existing_file(path)
    try:
        geo = find_geolocation_file(img)
    except FormatError:
        geo = None
    with NC_LOCK:
        _, nc = open_netcdf(img)
        if get_group(nc, OBS_GROUP) is None:
            raise UnsupportedFormatError(f"{img}: not a VIIRS L1B file (no {OBS_GROUP} group)")
        gattrs = nc_attrs(nc)
        obs = get_group(nc, OBS_GROUP)
        dims = {d: len(nc.dimensions[d]) for d in (_LINES, _PIXELS) if d in nc.dimensions}
        names = sorted(obs.variables)
        geo_attrs = {}
        if geo is not None:
            _, nc_geo = open_netcdf(geo)
            geo_attrs = nc_attrs(nc_geo)
    parsed = parse_viirs_filename(img.name)
    platform = _platform_name(gattrs.get("platform", "")) or (parsed.platform if parsed else None)
    footprint, bbox, source = _attr_footprint(geo_attrs or gattrs)
    start = _parse_time(gattrs.get("time_coverage_start", "")) or (parsed.start if parsed else None)
    return {
        "reader": "viirs_l1b",
        "path": str(img),
        "geo_path": str(geo) if geo else None,
        "product": str(gattrs.get("ShortName", "") or (f"{parsed.prefix}02{parsed.kind}" if parsed else "")),
        "platform": platform,
        "satellite": PLATFORMS[platform].firms if platform else None,
        "instrument": "VIIRS",
        "start_datetime": start,
        "end_datetime": _parse_time(gattrs.get("time_coverage_end", "")),
        "time_coverage_start": _iso(gattrs.get("time_coverage_start"), start),
        "time_coverage_end": _iso(gattrs.get("time_coverage_end"), None),
        "day_night_flag": str(gattrs.get("DayNightFlag", "")),
        "granule_id": str(gattrs.get("LocalGranuleID", "") or img.name),
        "collection": int(parsed.collection) if parsed else None,
        "orbit": int(gattrs.get("orbit_number", gattrs.get("OrbitNumber", -1))),
        "bbox": bbox,
        "footprint": footprint,
        "footprint_source": source,
        "dims": {"y": dims.get(_LINES, 0), "x": dims.get(_PIXELS, 0)},
        "has_pixel_data": "I04" in names and "I05" in names,
        "variables": list(OUTPUT_VARIABLES) + ["latitude", "longitude"],
    }


def _attr_footprint(attrs: Mapping[str, Any]):
    """GeoJSON footprint and bbox from GRingPointLatitude/Longitude or the bounding coordinates."""
    from rsmon.io.footprint import footprint_bbox, to_geojson

    try:
        lat = np.atleast_1d(np.asarray(attrs["GRingPointLatitude"], dtype=float))
        lon = np.atleast_1d(np.asarray(attrs["GRingPointLongitude"], dtype=float))
        if lat.size >= 3 and lat.size == lon.size and np.isfinite(lat).all() and np.isfinite(lon).all():
            from shapely.geometry import Polygon
            from shapely.geometry.polygon import orient

            poly = orient(Polygon(list(zip(lon, lat))), sign=1.0)
            if poly.is_valid and np.ptp(lon) < 180.0:
                return to_geojson(poly), footprint_bbox(poly), "gring_attributes"
    except (KeyError, TypeError, ValueError):
        pass
    keys = ("WestBoundingCoordinate", "SouthBoundingCoordinate", "EastBoundingCoordinate", "NorthBoundingCoordinate")
    try:
        west, south, east, north = (float(attrs[k]) for k in keys)
    except (KeyError, TypeError, ValueError):
        return None, None, "none"
    from shapely.geometry import box

    if not np.isfinite([west, south, east, north]).all() or west > east:
        return None, None, "none"
    geometry = box(west, south, east, north)
    return to_geojson(geometry), [west, south, east, north], "bounding_coordinates"


def sniff_viirs_l1b(path: str | Path) -> bool:
    """True for a NASA VIIRS 02IMG file name with an HDF5 signature, or an HDF5 file whose
    ``observation_data`` holds I04 and whose attributes say VIIRS. Never raises."""
    p = Path(path)
    try:
        if not p.is_file() or netcdf_signature(p) != "hdf5":
            return False
        parsed = parse_viirs_filename(p.name)
        if parsed is not None:
            return parsed.level == "02" and parsed.kind == "IMG"
        with NC_LOCK:
            _, nc = open_netcdf(p.resolve())
            obs = get_group(nc, OBS_GROUP)
            return obs is not None and "I04" in obs.variables and _is_viirs(nc)
    except (OSError, RuntimeError, ValueError):
        return False


def _register() -> None:
    from rsmon.io.registry import ReaderSpec, register

    register(ReaderSpec(
        name="viirs_l1b",
        description="VIIRS L1B I-band granules (VNP02IMG/VJ102IMG/VJ202IMG + 03IMG geolocation), NetCDF-4",
        sniff=sniff_viirs_l1b,
        open=open_viirs_l1b,
        metadata=read_metadata,
    ))


_register()
