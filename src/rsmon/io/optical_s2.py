"""Sentinel-2 MSI products: L2A (SAFE folder or flat per-band JP2/GeoTIFF files) and L1C per-band
folders such as the OSCD change-detection benchmark.

Layouts recognised
------------------
* SAFE: ``S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE/`` with
  ``MTD_MSIL2A.xml`` and ``GRANULE/*/IMG_DATA/R{10,20,60}m/T29UNU_20221005T115411_B04_10m.jp2``
  (L1C SAFE: ``MTD_MSIL1C.xml``, ``IMG_DATA/T29UNU_..._B04.jp2``).
* A flat folder of the same band files (JP2 or GeoTIFF/COG), with or without the XML beside them.
* OSCD: ``<city>/imgs_1/<stem>_B02.tif`` ... single-band L1C GeoTIFFs (reflectance x 10000), the
  dates in ``<city>/dates.txt`` (``date_1``/``date_2``; the date in old ``S2A_OPER_...`` names is the
  product generation date, not the sensing date; OSCD ``SOURCE.txt``).

Radiometry (Sentinel-2 Products Specification Document, PSD 14.9; ESA "Sentinel-2: Processing
baseline 04.00" note, 2022-01-25): reflectance = (DN + ADD_OFFSET) / QUANTIFICATION_VALUE with
``BOA_ADD_OFFSET`` (L2A) or ``RADIO_ADD_OFFSET`` (L1C) = -1000 from baseline 04.00 on, 0 before;
DN 0 = NODATA and 65535 = SATURATED (``Special_Values`` of the MTD XML).
Scene classification (SCL, Sen2Cor; ``shared/reference/redline_eqi.md`` section 3): 0 no data,
1 saturated or defective, 2 dark area, 3 cloud shadow, 4 vegetation, 5 not vegetated, 6 water,
7 unclassified, 8/9 cloud medium/high probability, 10 thin cirrus, 11 snow.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from rsmon.errors import FormatError, InputError
from rsmon.io.archive import ArchivePath
from rsmon.io.optical_raster import (
    BandSource,
    OpticalLayout,
    PixelGrid,
    QaLayer,
    check_band_map,
    check_required,
    open_raster,
    require_readable,
)
from rsmon.kernels.decode import lut_decode

log = logging.getLogger(__name__)

__all__ = ["S2_BAND_OF", "SCL_CLEAR", "SCL_MEANINGS", "S2Metadata", "estimate_s2a_sensing_date", "find_s2_root",
           "is_s2_folder", "s2_layout", "s2_processing_of_name", "s2_tile_of_name", "scl_clear", "scl_defective",
           "scl_water"]

#: Default Sentinel-2 band of each standard name (nir falls back to B8A when B08 is absent).
S2_BAND_OF: Mapping[str, str] = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir1": "B11",
                                  "swir2": "B12"}
#: ``band_id`` of the MTD XML (BOA_ADD_OFFSET, Spectral_Information) per band.
_BAND_ID = {"B01": 0, "B02": 1, "B03": 2, "B04": 3, "B05": 4, "B06": 5, "B07": 6, "B08": 7, "B8A": 8, "B09": 9,
            "B10": 10, "B11": 11, "B12": 12}
#: Central wavelengths (micrometres), Sentinel-2A / 2B MSI spectral response functions
#: (ESA COPE-GSEG-EOPG-TN-15-0007 v3.0).
_WAVELENGTH_UM = {
    "A": {"B02": 0.4924, "B03": 0.5598, "B04": 0.6646, "B08": 0.8328, "B8A": 0.8647, "B11": 1.6137, "B12": 2.2024},
    "B": {"B02": 0.4921, "B03": 0.5590, "B04": 0.6649, "B08": 0.8329, "B8A": 0.8640, "B11": 1.6104, "B12": 2.1857},
}
#: SCL codes kept as clear land or water: dark area, vegetation, not vegetated, water, unclassified.
#: Dropped: 0 no data, 1 saturated/defective, 3 cloud shadow, 8-9 cloud, 10 cirrus, 11 snow
#: (redline_eqi.md section 3: keep {4,5,6}(+7), drop {0,1,3,8,9,10}, 2 and 11 by use case).
SCL_CLEAR = (2, 4, 5, 6, 7)
SCL_WATER = 6
SCL_DEFECTIVE = (0, 1)
SCL_MEANINGS = ("no_data saturated_or_defective dark_area_pixels cloud_shadows vegetation not_vegetated water "
                "unclassified cloud_medium_probability cloud_high_probability thin_cirrus snow")
#: DN special values (MTD ``Special_Values``): NODATA, SATURATED.
_INVALID_DN = (0, 65535)
#: First processing baseline with the -1000 radiometric offset.
_OFFSET_BASELINE = 4.0
_OFFSET_START = date(2022, 1, 25)

_BAND_FILE = re.compile(r"^(?P<stem>.+?)_(?P<band>B0[1-9]|B1[0-2]|B8A|SCL)(?:_(?P<res>10|20|60)m)?\.(?:jp2|tiff?)$",
                        re.IGNORECASE)
_NEW_STEM = re.compile(r"^T(?P<tile>\d{2}[A-Z]{3})_(?P<time>\d{8}T\d{6})$")
_OPER_STEM = re.compile(r"^(?P<sc>S2[A-D])_OPER_MSI_(?P<level>L1C|L2A)_TL_\w{4}_(?P<gen>\d{8}T\d{6})_A(?P<orbit>\d{6})"
                        r"_T(?P<tile>\d{2}[A-Z]{3})(?:_N(?P<major>\d{2})\.(?P<minor>\d{2}))?")
_SAFE = re.compile(r"(?P<sc>S2[A-D])_MSI(?P<level>L1C|L2A)_(?P<time>\d{8}T\d{6})_N(?P<baseline>\d{4})_R\d{3}"
                   r"_T(?P<tile>\d{2}[A-Z]{3})_(?P<generated>\d{8}T\d{6})")
# S2A absolute orbit 38058 started datatake GS2A_20221005T115411_038058_N04.00 (MTD_MSIL2A.xml of the
# T29UNU sample); the reference ground track repeats every 143 orbits in 10 days (ESA S2 User Handbook).
_S2A_REF_ORBIT, _S2A_REF_TIME = 38058, datetime(2022, 10, 5, 11, 54, 11, tzinfo=timezone.utc)
_S2_ORBIT_DAYS = 10.0 / 143.0


# --------------------------------------------------------------------------------------------------
# QA
# --------------------------------------------------------------------------------------------------

def _table(codes) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[list(codes)] = True
    return table


_CLEAR_TABLE, _DEFECTIVE_TABLE = _table(SCL_CLEAR), _table(SCL_DEFECTIVE)


def _lookup(table: np.ndarray, scl: np.ndarray) -> np.ndarray:
    """``table[scl]`` (values beyond the table take its last entry); uint8 blocks in one numba pass."""
    if scl.dtype == np.uint8 and scl.ndim == 2:
        out = np.empty(scl.shape, table.dtype)
        lut_decode(scl, table, out)
        return out
    return np.take(table, scl, mode="clip")


def scl_clear(scl: np.ndarray) -> np.ndarray:
    """True where the SCL class is clear land or water (:data:`SCL_CLEAR`)."""
    return _lookup(_CLEAR_TABLE, scl)


def scl_water(scl: np.ndarray) -> np.ndarray:
    """True where SCL says water (6)."""
    return scl == SCL_WATER


def scl_defective(scl: np.ndarray) -> np.ndarray:
    """True where SCL says no data (0) or saturated/defective (1): reflectance becomes NaN there."""
    return _lookup(_DEFECTIVE_TABLE, scl)


# --------------------------------------------------------------------------------------------------
# Names and metadata
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _BandFile:
    path: Path
    stem: str
    band: str
    res_m: int | None


@dataclass
class S2Metadata:
    """What the MTD XML, the SAFE name and the file names say about the product."""

    level: str = "L1C"
    spacecraft: str | None = None
    sensing: str | None = None
    datetime_source: str = "none"
    baseline: float | None = None
    quantification: float = 10000.0
    offsets: dict[str, float] | None = None
    tile: str | None = None
    xml: Path | None = None


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)


def _iso(stamp: datetime) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def estimate_s2a_sensing_date(absolute_orbit: int) -> date:
    """Sensing date of a Sentinel-2A absolute orbit number (``A006607`` in tile names).

    From a reference datatake and the 143-orbits-in-10-days repeat cycle; within about an hour of
    the true time, so the UTC date is right except for scenes acquired near midnight UTC.
    """
    return (_S2A_REF_TIME + timedelta(days=(absolute_orbit - _S2A_REF_ORBIT) * _S2_ORBIT_DAYS)).date()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read_mtd(xml: Path | ArchivePath, meta: S2Metadata) -> None:
    """Fill ``meta`` from ``MTD_MSIL2A.xml`` / ``MTD_MSIL1C.xml``."""
    try:
        root = ET.fromstring(xml.read_bytes())
    except (ET.ParseError, OSError) as exc:
        raise FormatError(f"{xml}: not a readable Sentinel-2 metadata XML ({exc})") from None
    offsets: dict[str, float] = {}
    band_of_id = {v: k for k, v in _BAND_ID.items()}
    for el in root.iter():
        tag, text = _local(el.tag), (el.text or "").strip()
        if tag in ("BOA_QUANTIFICATION_VALUE", "QUANTIFICATION_VALUE") and text:
            meta.quantification = float(text)
        elif tag in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET") and text:
            offsets[band_of_id.get(int(el.get("band_id", -1)), "?")] = float(text)
        elif tag == "PROCESSING_BASELINE" and text:
            meta.baseline = float(text)
        elif tag == "SPACECRAFT_NAME" and text:
            meta.spacecraft = text
        elif tag in ("PRODUCT_START_TIME", "DATATAKE_SENSING_START") and text and meta.datetime_source != "MTD XML":
            meta.sensing, meta.datetime_source = text, "MTD XML"
        elif tag == "PRODUCT_URI" and text:
            _apply_safe_name(text, meta, override=False)
    meta.level = "L2A" if "MSIL2A" in xml.name.upper() else "L1C"
    meta.offsets = offsets or None
    meta.xml = xml


def _apply_safe_name(name: str, meta: S2Metadata, override: bool = True) -> bool:
    match = _SAFE.search(name)
    if match is None:
        return False
    meta.level = match["level"]
    meta.spacecraft = meta.spacecraft or f"Sentinel-2{match['sc'][-1]}"
    meta.tile = meta.tile or match["tile"]
    if meta.baseline is None:
        meta.baseline = int(match["baseline"]) / 100.0
    if override or meta.sensing is None:
        meta.sensing, meta.datetime_source = _iso(_parse_time(match["time"])), "SAFE name"
    return True


def _oscd_date(folder: Path) -> date | None:
    """``date_1``/``date_2`` of an OSCD city (``dates.txt`` beside ``imgs_1``/``imgs_2``)."""
    index = {"imgs_1": "date_1", "imgs_2": "date_2"}.get(folder.name)
    dates = folder.parent / "dates.txt"
    if index is None or not dates.is_file():
        return None
    for line in dates.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == index:
            try:
                return datetime.strptime(value.strip(), "%Y%m%d").date()
            except ValueError:
                raise FormatError(f"{dates}: {index} is {value.strip()!r}, expected YYYYMMDD") from None
    return None


def s2_tile_of_name(name: str) -> str | None:
    """The MGRS tile (``T50SMF``) in a Sentinel-2 product, granule or band file name, else None.

    Recognised: SAFE product names (``S2A_MSIL2A_..._T50SMF_....SAFE``), granule/band stems of
    processing baseline 02.07 and later (``T50SMF_20230501T030551_B02_10m.tif``) and older
    ``S2A_OPER_MSI_L2A_TL_...`` granule names (ESA Sentinel-2 Products Specification Document).
    """
    safe = _SAFE.search(name)
    if safe is not None:
        return f"T{safe['tile']}"
    band = _BAND_FILE.match(name)
    stem = band["stem"] if band is not None else name
    for regex in (_NEW_STEM, _OPER_STEM):
        match = regex.match(stem)
        if match is not None:
            return f"T{match['tile']}"
    return None


def s2_processing_of_name(name: str) -> tuple[str, str] | None:
    """(processing baseline ``"0511"``, generation time ``"20240301T101010"``) of a SAFE product name
    in ``name`` (later sorts larger), else None."""
    safe = _SAFE.search(name)
    return None if safe is None else (safe["baseline"], safe["generated"])


def _names_metadata(folder: Path, stem: str, meta: S2Metadata) -> None:
    """Sensing time, spacecraft, tile and baseline from the folder and file names (no XML)."""
    for part in (folder, *folder.parents):
        if _apply_safe_name(part.name, meta, override=meta.sensing is None):
            break
    new, oper = _NEW_STEM.match(stem), _OPER_STEM.match(stem)
    oscd = _oscd_date(folder)
    if meta.sensing is None and new is not None and (oscd is None or _parse_time(new["time"]).date() == oscd):
        meta.sensing, meta.datetime_source = _iso(_parse_time(new["time"])), "file name"
    elif meta.sensing is None and oscd is not None:
        meta.sensing, meta.datetime_source = oscd.isoformat(), f"{folder.parent / 'dates.txt'}"
    if new is not None:
        meta.tile = meta.tile or new["tile"]
    if oper is not None:
        meta.spacecraft = meta.spacecraft or f"Sentinel-2{oper['sc'][-1]}"
        meta.tile = meta.tile or oper["tile"]
        if oper["level"] == "L2A":
            meta.level = "L2A"
        if meta.baseline is None and oper["major"]:
            meta.baseline = int(oper["major"]) + int(oper["minor"]) / 100.0
        if meta.sensing is None and oper["sc"] == "S2A":
            meta.sensing = estimate_s2a_sensing_date(int(oper["orbit"])).isoformat()
            meta.datetime_source = f"estimated from absolute orbit A{oper['orbit']}"
            log.warning("%s: sensing date %s estimated from the absolute orbit (the date in the name is the "
                        "product generation date)", folder, meta.sensing)


# --------------------------------------------------------------------------------------------------
# Finding the files
# --------------------------------------------------------------------------------------------------

def find_s2_root(path: Path) -> Path | None:
    """The product folder of a Sentinel-2 band file or MTD XML (the ``.SAFE`` above it, else its
    folder); None when ``path`` is neither."""
    if not (_BAND_FILE.match(path.name) or path.name.upper() in ("MTD_MSIL2A.XML", "MTD_MSIL1C.XML")):
        return None
    for parent in path.parents:
        if parent.suffix.upper() == ".SAFE":
            return parent
    return path.parent


def _candidate_files(folder: Path) -> list[Path]:
    if (folder / "GRANULE").is_dir():
        files = sorted(folder.glob("GRANULE/*/IMG_DATA/*")) + sorted(folder.glob("GRANULE/*/IMG_DATA/R*m/*"))
    else:
        files = sorted(folder.iterdir())
    return [p for p in files if p.is_file()]


def _band_files(folder: Path) -> list[_BandFile]:
    found = []
    for path in _candidate_files(folder):
        match = _BAND_FILE.match(path.name)
        if match:
            found.append(_BandFile(path, match["stem"], match["band"].upper(), int(match["res"]) if match["res"] else None))
    return found


def is_s2_folder(path: Path) -> bool:
    """A SAFE folder or a folder holding Sentinel-2 per-band files. Never raises."""
    try:
        return path.is_dir() and (path.suffix.upper() == ".SAFE" or bool(_band_files(path)))
    except OSError:
        return False


def _pick_files(folder: Path, files: list[_BandFile]) -> dict[str, _BandFile]:
    """The finest-resolution file of each band; one scene per folder."""
    stems = sorted({f.stem for f in files})
    if len(stems) > 1:
        raise InputError(f"{folder}: holds band files of {len(stems)} scenes ({', '.join(stems[:4])}); "
                         "pass one scene's folder")
    best: dict[str, _BandFile] = {}
    for f in files:
        if f.band not in best or (f.res_m or 0) < (best[f.band].res_m or 0):
            best[f.band] = f
    return best


def _metadata(folder: Path, files: dict[str, _BandFile]) -> S2Metadata:
    meta = S2Metadata()
    for name in ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml"):
        if (folder / name).is_file():
            _read_mtd(folder / name, meta)
            break
    stem = next(iter(files.values())).stem
    _names_metadata(folder, stem, meta)
    if meta.xml is None and ("SCL" in files or any(f.res_m for f in files.values())):
        meta.level = "L2A"
    return meta


def _offset(meta: S2Metadata, band: str, folder: Path) -> float:
    """Radiometric add-offset (DN) of ``band``: the XML's value, else by processing baseline."""
    if meta.offsets is not None:
        return meta.offsets.get(band, 0.0)
    if meta.xml is not None or meta.baseline is not None:
        return -1000.0 if (meta.baseline or 0.0) >= _OFFSET_BASELINE else 0.0
    if meta.sensing is None or meta.sensing[:10] >= _OFFSET_START.isoformat():
        log.warning("%s: no MTD_MSIL%s.xml and no processing baseline in the names; assuming add-offset 0 (wrong "
                    "for baseline 04.00 and later, i.e. most products sensed after %s)", folder, meta.level[1:],
                    _OFFSET_START)
    return 0.0


# --------------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------------

def _band_id(band: Any) -> str:
    """"B04", "b4", 4, "4" -> "B04"; "8A" -> "B8A"."""
    text = str(band).strip().upper().removeprefix("B")
    return f"B{int(text):02d}" if text.isdigit() else f"B{text}"


def _band_choice(files: Mapping[str, _BandFile], band_map: Mapping[str, Any], folder: Path) -> dict[str, str]:
    wanted = dict(S2_BAND_OF)
    for name, band in band_map.items():
        wanted[name] = _band_id(band)
    if "nir" not in band_map and "B08" not in files and "B8A" in files:
        wanted["nir"] = "B8A"
        log.info("%s: no B08; nir is B8A (narrow NIR)", folder)
    unknown = [f"{name}={wanted[name]}" for name in band_map if wanted[name] not in files]
    if unknown:
        raise FormatError(f"{folder}: band_map names band(s) not in the product: {', '.join(unknown)} "
                          f"(available: {', '.join(sorted(files))})")
    return {name: band for name, band in wanted.items() if band in files}


def _open_grid(path: Path) -> tuple[PixelGrid, str]:
    with open_raster(path) as src:
        require_readable(str(path), src)
        return PixelGrid.of(src), src.dtypes[0]


def s2_layout(folder: str | Path | ArchivePath, band_map: Mapping[str, Any] | None = None) -> OpticalLayout:
    """Describe a Sentinel-2 L2A/L1C product folder (SAFE, flat per-band files, OSCD) for
    :func:`~rsmon.io.optical_raster.build_dataset`.

    Raises
    ------
    FormatError
        No band files, red or nir missing, a band file or the XML unreadable.
    InputError
        Several scenes in one folder, or a bad ``band_map`` (values are band ids such as ``"B8A"``).
    """
    folder = folder if isinstance(folder, ArchivePath) else Path(folder)
    band_map = check_band_map(band_map, str(folder))
    all_files = _band_files(folder)
    if not all_files:
        raise FormatError(f"{folder}: no Sentinel-2 band files (*_B04.jp2, *_B04_10m.jp2, *_B04.tif ...)")
    files = _pick_files(folder, all_files)
    choice = _band_choice(files, band_map, folder)
    check_required(choice, str(folder), f" (band files found: {', '.join(sorted(files))})")
    meta = _metadata(folder, files)
    kind = "surface" if meta.level == "L2A" else "top-of-atmosphere"
    grids = {band: _open_grid(files[band].path) for band in set(choice.values()) | ({"SCL"} & set(files))}
    target = min((grids[b][0] for b in choice.values()), key=lambda g: g.res[0])
    wavelengths = _WAVELENGTH_UM["B" if (meta.spacecraft or "").endswith("B") else "A"]
    bands, band_attrs = {}, {}
    for name, band in choice.items():
        grid, dtype = grids[band]
        offset = _offset(meta, band, folder)
        bands[name] = BandSource(str(files[band].path), 1, grid, dtype, scale=1.0 / meta.quantification,
                                 offset=offset / meta.quantification, invalid=_INVALID_DN)
        band_attrs[name] = {"units": "1", "long_name": f"{kind} reflectance, {name} (Sentinel-2 {band})",
                            "wavelength": wavelengths.get(band), "wavelength_units": "micrometre",
                            "source_band": band, "source_resolution": grid.res[0],
                            "add_offset_dn": offset, "quantification_value": meta.quantification}
        if not grid.same_as(target):
            band_attrs[name]["resampling"] = "bilinear"
    qa = None
    if "SCL" in files and meta.level == "L2A":
        grid, dtype = grids["SCL"]
        qa = QaLayer("scl", BandSource(str(files["SCL"].path), 1, grid, dtype, raw=True, fill=0),
                     clear=scl_clear, water=scl_water, defective=scl_defective,
                     attrs={"long_name": "Sen2Cor scene classification", "flag_values": list(range(12)),
                            "flag_meanings": SCL_MEANINGS, "_FillValue": 0, "source_resolution": grid.res[0],
                            "clear_classes": list(SCL_CLEAR)})
    spacecraft = meta.spacecraft or "Sentinel-2"
    attrs = {"sensor": f"{spacecraft} MSI", "product": f"S2 {meta.level}", "datetime": meta.sensing,
             "datetime_source": meta.datetime_source, "source": str(folder), "radiometry": "reflectance",
             "tile": meta.tile, "processing_baseline": meta.baseline, "nir_band": choice["nir"]}
    if meta.sensing is None:
        log.warning("%s: sensing date unknown (no MTD XML, SAFE name, dates.txt or dated file name)", folder)
    return OpticalLayout(target, bands, band_attrs, {k: v for k, v in attrs.items() if v is not None}
                         | {"datetime": meta.sensing}, qa)

