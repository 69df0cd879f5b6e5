"""Multi-band stacks: ENVI files with a text header, and generic GeoTIFF (or any GDAL raster) stacks.

ENVI (Harris "ENVI Header Format"): a raw data file plus a ``.hdr`` sidecar, found with either case
(``2000TM`` + ``2000TM.HDR`` in the Taizhou data set) and either beside the data file's name or
replacing its extension. Bands are mapped to :data:`~rsmon.io.optical_raster.BANDS` by the header's
``wavelength`` list (:data:`~rsmon.io.optical_raster.WAVELENGTH_RANGES_UM`). Without a
``reflectance scale factor`` the values are digital numbers, kept as float32 with
``radiometry = "dn"``. The acquisition date comes from ``acquisition time``, else from a Landsat
scene identifier in the band names or the file name (``L71119038_03820000317``,
``LT51200382000124BJC00``).

Generic stacks: the caller says which band is which (``band_map={"red": 3, "nir": 4}``, 1-based);
nodata becomes NaN, GDAL scale/offset metadata is applied.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Mapping

from rsmon.errors import FormatError, InputError
from rsmon.io.optical_landsat import parse_landsat_id
from rsmon.io.optical_raster import (
    BandSource,
    OpticalLayout,
    PixelGrid,
    band_by_wavelength,
    check_band_map,
    check_required,
    open_raster,
    require_readable,
)

log = logging.getLogger(__name__)

__all__ = ["envi_header", "envi_layout", "generic_layout"]

_HEADER_SUFFIXES = (".hdr", ".HDR", ".Hdr")
_DATA_SUFFIXES = ("", ".img", ".dat", ".bsq", ".bil", ".bip", ".raw", ".IMG", ".DAT")
_UNITS_TO_UM = {"micrometers": 1.0, "micrometer": 1.0, "microns": 1.0, "um": 1.0, "nanometers": 1e-3,
                "nanometer": 1e-3, "nm": 1e-3, "millimeters": 1e3, "mm": 1e3}
_ENVI_SENSORS = {"LANDSAT TM": "Landsat TM", "LANDSAT ETM": "Landsat 7 ETM+", "LANDSAT ETM+": "Landsat 7 ETM+",
                 "LANDSAT OLI": "Landsat 8 OLI", "LANDSAT MSS": "Landsat MSS"}
_S2_TIME = re.compile(r"(?<!\d)(\d{8}T\d{6})(?!\d)")


# --------------------------------------------------------------------------------------------------
# ENVI
# --------------------------------------------------------------------------------------------------

def envi_header(path: Path) -> tuple[Path, Path] | None:
    """(data file, header) of an ENVI raster given either of them; None when ``path`` is not one."""
    if path.suffix in _HEADER_SUFFIXES:
        base = path.with_suffix("")
        for suffix in _DATA_SUFFIXES:
            data = Path(str(base) + suffix)
            if data.is_file():
                return data, path
        return None
    for header in [Path(str(path) + s) for s in _HEADER_SUFFIXES] + [path.with_suffix(s) for s in _HEADER_SUFFIXES]:
        if header != path and header.is_file():
            return path, header
    return None


def _envi_list(text: str | None) -> list[str]:
    if not text:
        return []
    return [item.strip() for item in text.strip().strip("{}").split(",") if item.strip()]


def _wavelengths_um(tags: Mapping[str, str], where: Path) -> list[float]:
    values = _envi_list(tags.get("wavelength"))
    if not values:
        return []
    units = tags.get("wavelength_units", "micrometers").strip().lower()
    factor = _UNITS_TO_UM.get(units)
    if factor is None:
        raise FormatError(f"{where}: wavelength units {units!r} not understood (expected Micrometers or Nanometers)")
    try:
        return [float(v) * factor for v in values]
    except ValueError:
        raise FormatError(f"{where}: wavelength list {tags.get('wavelength')!r} is not numeric") from None


def _envi_time(tags: Mapping[str, str], data: Path) -> tuple[str | None, str, str | None]:
    """(ISO datetime or date, where it came from, sensor from a Landsat identifier)."""
    stamp = tags.get("acquisition_time", "").strip()
    if stamp:
        return stamp.replace("+00:00", "Z"), "header acquisition time", None
    for text, where in ((tags.get("band_names", ""), "header band names"), (data.name, "file name")):
        scene = parse_landsat_id(text)
        if scene is not None:
            return scene.date.isoformat(), f"Landsat id {scene.identifier} ({where})", scene.sensor
    return None, "none", None


def _check_size(data: Path, tags: Mapping[str, str], grid: PixelGrid, count: int, dtype: str) -> None:
    """GDAL reads a short raw file as zeros: compare the file size with what the header describes."""
    import numpy as np

    try:
        offset = int(float(tags.get("header_offset", 0) or 0))
    except ValueError:
        raise FormatError(f"{data}: header offset {tags.get('header_offset')!r} is not a number") from None
    expected = offset + grid.width * grid.height * count * np.dtype(dtype).itemsize
    actual = data.stat().st_size
    if actual < expected:
        raise FormatError(f"{data}: truncated ENVI file, {actual} bytes but the header describes {expected} "
                          f"({grid.width} x {grid.height} x {count} {dtype} + {offset} header bytes)")


def envi_layout(data: Path, header: Path, band_map: Mapping[str, Any] | None = None) -> OpticalLayout:
    """Describe an ENVI stack for :func:`~rsmon.io.optical_raster.build_dataset`.

    Raises
    ------
    FormatError
        Unreadable or truncated file, no wavelength list and no ``band_map``, red or nir missing.
    """
    band_map = check_band_map(band_map, str(data))
    with open_raster(data) as src:
        require_readable(str(data), src)
        tags = src.tags(ns="ENVI")
        grid, dtype, count, nodata = PixelGrid.of(src), src.dtypes[0], src.count, src.nodata
    _check_size(data, tags, grid, count, dtype)
    wavelengths = _wavelengths_um(tags, header)
    found = band_by_wavelength(wavelengths)
    found.update(_stack_indexes(band_map, count, data))
    if not wavelengths and not band_map:
        raise FormatError(f"{header}: no wavelength list in the ENVI header; pass band_map={{'red': 3, 'nir': 4}}")
    check_required(found, str(data), f" (header wavelengths: {wavelengths or 'none'} um)")
    stamp, stamp_source, id_sensor = _envi_time(tags, data)
    if stamp is None:
        log.warning("%s: acquisition date unknown (no acquisition time or Landsat id in the header or name)", data)
    sensor_type = tags.get("sensor_type", "").strip()
    sensor = id_sensor or _ENVI_SENSORS.get(sensor_type.upper(), sensor_type or "unknown")
    factor = tags.get("reflectance_scale_factor")
    scale = 1.0 / float(factor) if factor else 1.0
    ignore = tags.get("data_ignore_value", nodata)
    invalid = (int(float(ignore)),) if ignore not in (None, "") else ()
    names = _envi_list(tags.get("band_names"))
    bands, band_attrs = {}, {}
    for name, index in found.items():
        bands[name] = BandSource(str(data), index, grid, dtype, scale=scale, invalid=invalid)
        band_attrs[name] = {"units": "1", "long_name": f"{'reflectance' if factor else 'digital number'}, {name} "
                            f"(band {index})", "source_band": names[index - 1] if index <= len(names) else f"band {index}"}
        if index <= len(wavelengths):
            band_attrs[name].update(wavelength=round(wavelengths[index - 1], 6), wavelength_units="micrometre")
    attrs = {"sensor": sensor, "product": "ENVI stack", "datetime": stamp, "datetime_source": stamp_source,
             "source": str(data), "radiometry": "reflectance" if factor else "dn", "header": str(header)}
    return OpticalLayout(grid, bands, band_attrs, attrs)


# --------------------------------------------------------------------------------------------------
# Generic stacks
# --------------------------------------------------------------------------------------------------

def _stack_indexes(band_map: Mapping[str, Any], count: int, where: Path) -> dict[str, int]:
    indexes = {}
    for name, value in band_map.items():
        try:
            index = int(value)
        except (TypeError, ValueError):
            raise InputError(f"band_map for {where}: {name} must be a 1-based band number, got {value!r}") from None
        if not 1 <= index <= count:
            raise FormatError(f"{where}: band_map {name}={index} but the file has {count} band(s)")
        indexes[name] = index
    return indexes


def _generic_time(path: Path) -> tuple[str | None, str]:
    scene = parse_landsat_id(path.name)
    if scene is not None:
        return scene.date.isoformat(), f"Landsat id {scene.identifier} (file name)"
    match = _S2_TIME.search(path.name)
    if match:
        t = match[1]
        return f"{t[:4]}-{t[4:6]}-{t[6:8]}T{t[9:11]}:{t[11:13]}:{t[13:15]}Z", "file name"
    return None, "none"


def generic_layout(path: Path, band_map: Mapping[str, Any] | None) -> OpticalLayout:
    """Describe a multi-band raster with an explicit ``band_map`` (1-based band numbers).

    Raises
    ------
    InputError
        No ``band_map`` (a generic stack does not say which band is which), or a bad one.
    FormatError
        Unreadable or truncated file; ``band_map`` names a band the file lacks, or lacks red/nir.
    """
    with open_raster(path) as src:
        require_readable(str(path), src)
        grid, dtypes, count = PixelGrid.of(src), src.dtypes, src.count
        nodata, scales, offsets, tags = src.nodatavals, src.scales, src.offsets, src.tags()
    if not band_map:
        raise InputError(f"{path}: a generic {count}-band raster; band_map is needed to say which band is which, "
                         "e.g. band_map={'red': 3, 'nir': 4} (1-based band numbers)")
    band_map = check_band_map(band_map, str(path))
    found = _stack_indexes(band_map, count, path)
    check_required(found, str(path), " in band_map")
    bands, band_attrs, calibrated = {}, {}, False
    for name, index in found.items():
        scale, offset = float(scales[index - 1] or 1.0), float(offsets[index - 1] or 0.0)
        calibrated |= scale != 1.0 or offset != 0.0 or dtypes[index - 1].startswith("float")
        fill = nodata[index - 1]
        invalid = (fill,) if fill is not None and not math.isnan(fill) else ()
        bands[name] = BandSource(str(path), index, grid, dtypes[index - 1], scale=scale, offset=offset, invalid=invalid)
        band_attrs[name] = {"units": "1", "long_name": f"{name} (band {index})", "source_band": f"band {index}"}
    stamp, stamp_source = _generic_time(path)
    attrs = {"sensor": tags.get("SENSOR", tags.get("sensor", "unknown")), "product": "GeoTIFF stack",
             "datetime": stamp, "datetime_source": stamp_source, "source": str(path),
             "radiometry": "reflectance" if calibrated else "dn"}
    return OpticalLayout(grid, bands, band_attrs, attrs)
