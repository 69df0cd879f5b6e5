"""Landsat Collection 2 Level-2 surface reflectance folders, and Landsat scene identifiers.

A C2 L2 folder holds ``<product id>_SR_B<n>.TIF`` (uint16), ``<product id>_QA_PIXEL.TIF`` and
``<product id>_MTL.txt``, e.g. ``LC08_L2SP_001070_20190114_20200830_02_T2_SR_B4.TIF``.

Radiometry (USGS Landsat 8-9 / 4-7 Collection 2 Level-2 Science Product Guides, LSDS-1619 / LSDS-1618):
SR = DN * 2.75e-05 - 0.2 (``REFLECTANCE_MULT_BAND_n`` / ``REFLECTANCE_ADD_BAND_n`` of the MTL), DN 0 =
fill. Band numbers: OLI (Landsat 8/9) B2 blue, B3 green, B4 red, B5 nir, B6 swir1, B7 swir2; TM/ETM+
(Landsat 4/5/7) B1 blue, B2 green, B3 red, B4 nir, B5 swir1, B7 swir2.
``QA_PIXEL`` bits (``shared/reference/redline_eqi.md`` section 3; Earth Engine C2 cloud-masking example):
0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow, 5 snow, 6 clear, 7 water.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
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

log = logging.getLogger(__name__)

__all__ = ["LANDSAT_BAND_OF", "QA_CLEAR_MASK", "QA_FILL", "QA_WATER", "LandsatScene", "find_landsat_root",
           "is_landsat_folder", "landsat_layout", "parse_landsat_id", "qa_pixel_clear", "qa_pixel_water"]

#: QA_PIXEL bits: fill, dilated cloud, cirrus, cloud, cloud shadow, snow -> not clear.
QA_FILL, QA_DILATED_CLOUD, QA_CIRRUS, QA_CLOUD, QA_SHADOW, QA_SNOW, QA_CLEAR, QA_WATER = (1 << i for i in range(8))
QA_CLEAR_MASK = QA_FILL | QA_DILATED_CLOUD | QA_CIRRUS | QA_CLOUD | QA_SHADOW | QA_SNOW
#: Band number of each standard name, by sensor family.
LANDSAT_BAND_OF: Mapping[str, Mapping[str, int]] = {
    "OLI": {"blue": 2, "green": 3, "red": 4, "nir": 5, "swir1": 6, "swir2": 7},
    "TM": {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5, "swir2": 7},
}
#: Band-centre wavelengths (micrometres), USGS Landsat band designations.
_WAVELENGTH_UM = {
    "OLI": {1: 0.443, 2: 0.482, 3: 0.561, 4: 0.655, 5: 0.865, 6: 1.609, 7: 2.201},
    "TM": {1: 0.485, 2: 0.569, 3: 0.660, 4: 0.840, 5: 1.676, 7: 2.223},
    "ETM": {1: 0.483, 2: 0.565, 3: 0.660, 4: 0.825, 5: 1.650, 7: 2.220},
}
_SR_SCALE, _SR_OFFSET = 2.75e-05, -0.2

# Collection product id: LC08_L2SP_001070_20190114_20200830_02_T2
_C2_ID = re.compile(r"(?P<sensor>L[COTEM])(?P<sat>0[1-9])_(?P<level>L[12][A-Z]{2})_(?P<path>\d{3})(?P<row>\d{3})"
                    r"_(?P<acq>\d{8})_(?P<processed>\d{8})_(?P<coll>\d{2})_(?P<tier>T1|T2|RT)")
# Pre-collection scene id: LT51200382000124BJC00
_SCENE_ID = re.compile(r"(?P<sensor>L[COTEM])(?P<sat>[1-9])(?P<path>\d{3})(?P<row>\d{3})(?P<year>\d{4})(?P<doy>\d{3})"
                       r"[A-Z]{3}\d{2}")
# Old L1G/NLAPS metadata names: L71119038_03820000317 (L7, format 1, path 119, row 038, 2000-03-17)
_OLD_ID = re.compile(r"L(?P<sat>[457])\d?(?P<path>\d{3})(?P<row>\d{3})_\d{3}(?P<acq>\d{8})")
_SR_FILE = re.compile(r"^(?P<pid>.+)_SR_B(?P<band>\d)\.TIF$", re.IGNORECASE)
_QA_FILE = re.compile(r"^(?P<pid>.+)_QA_PIXEL\.TIF$", re.IGNORECASE)
_MTL_FILE = re.compile(r"^(?P<pid>.+)_MTL\.txt$", re.IGNORECASE)
_SENSOR_NAME = {"4": "Landsat 4 TM", "5": "Landsat 5 TM", "7": "Landsat 7 ETM+", "8": "Landsat 8 OLI",
                "9": "Landsat 9 OLI-2"}


def qa_pixel_clear(qa: np.ndarray) -> np.ndarray:
    """True where none of QA_PIXEL bits 0-5 (fill, dilated cloud, cirrus, cloud, shadow, snow) is set."""
    return (qa & QA_CLEAR_MASK) == 0


def qa_pixel_water(qa: np.ndarray) -> np.ndarray:
    """True where QA_PIXEL bit 7 (water) is set and bit 0 (fill) is not."""
    return (qa & (QA_WATER | QA_FILL)) == QA_WATER


@dataclass(frozen=True)
class LandsatScene:
    """What a Landsat product or scene identifier says.

    ``date`` is the acquisition date; ``satellite`` the digit (4, 5, 7, 8, 9); ``family`` "OLI" or "TM"
    (TM and ETM+ share band numbers); ``sensor`` e.g. "Landsat 7 ETM+"; ``processed`` the processing
    date of a Collection product id (``YYYYMMDD``; None for older identifiers).
    """

    identifier: str
    satellite: str
    date: date
    path: int
    row: int
    processed: str | None = None

    @property
    def family(self) -> str:
        return "OLI" if self.satellite in ("8", "9") else "TM"

    @property
    def sensor(self) -> str:
        return _SENSOR_NAME.get(self.satellite, f"Landsat {self.satellite}")


def parse_landsat_id(text: str) -> LandsatScene | None:
    """The first Landsat identifier in ``text``: a Collection product id (``LC08_L2SP_...``), a
    pre-collection scene id (``LT51200382000124BJC00``) or an old ``L71119038_03820000317`` name."""
    for regex in (_C2_ID, _SCENE_ID, _OLD_ID):
        match = regex.search(text)
        if match is None:
            continue
        g = match.groupdict()
        try:
            if "doy" in g:
                day = datetime.strptime(g["year"] + g["doy"], "%Y%j").date()
            else:
                day = datetime.strptime(g["acq"], "%Y%m%d").date()
        except ValueError:
            continue
        return LandsatScene(match.group(0), str(int(g["sat"])), day, int(g["path"]), int(g["row"]), g.get("processed"))
    return None


def read_mtl(path: Path) -> dict[str, str]:
    """``KEY = VALUE`` pairs of an MTL.txt (ODL; groups flattened, quotes removed)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the MTL file ({exc})") from None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key not in ("GROUP", "END_GROUP"):
            values.setdefault(key, value.strip().strip('"'))
    if "LANDSAT_PRODUCT_ID" not in values and "DATE_ACQUIRED" not in values:
        raise FormatError(f"{path}: not a Landsat MTL file (no LANDSAT_PRODUCT_ID or DATE_ACQUIRED)")
    return values


def _files(folder: Path) -> tuple[dict[int, Path], Path | None, Path | None, set[str]]:
    bands, qa, mtl, pids = {}, None, None, set()
    for path in sorted(folder.iterdir()):
        for regex in (_SR_FILE, _QA_FILE, _MTL_FILE):
            match = regex.match(path.name)
            if match is None:
                continue
            pids.add(match["pid"])
            if regex is _SR_FILE:
                bands[int(match["band"])] = path
            elif regex is _QA_FILE:
                qa = path
            else:
                mtl = path
    return bands, qa, mtl, pids


def find_landsat_root(path: Path) -> Path | None:
    """The folder of a Landsat C2 SR band, QA_PIXEL or MTL file, or of another file of the bundle
    (``*_ST_B10.TIF``, ``*_ANG.txt``...) beside them; None otherwise."""
    if not parse_landsat_id(path.name):
        return None
    if _product_file(path.name):
        return path.parent
    return path.parent if is_landsat_folder(path.parent) else None


def _product_file(name: str) -> bool:
    """An SR band, QA_PIXEL or MTL file name with a Landsat product id."""
    return any(regex.match(name) for regex in (_SR_FILE, _QA_FILE, _MTL_FILE)) and bool(parse_landsat_id(name))


def is_landsat_folder(path: Path) -> bool:
    """A folder with Landsat C2 ``*_SR_B<n>.TIF`` or ``*_MTL.txt`` files. Never raises."""
    try:
        return path.is_dir() and any(_product_file(p.name) for p in path.iterdir())
    except OSError:
        return False


def _datetime(mtl: Mapping[str, str], scene: LandsatScene) -> tuple[str, str]:
    acquired, centre = mtl.get("DATE_ACQUIRED"), mtl.get("SCENE_CENTER_TIME")
    if acquired and centre:
        hms, _, frac = centre.rstrip("Z").partition(".")
        return f"{acquired}T{hms}" + (f".{frac[:6]}" if frac else "") + "Z", "MTL"
    if acquired:
        return acquired, "MTL"
    return scene.date.isoformat(), "product id"


def _band_number(band: Any, folder: Path) -> int:
    match = re.fullmatch(r"(?:SR_)?B?(\d)", str(band).strip().upper())
    if match is None:
        raise InputError(f"band_map for {folder}: Landsat bands are numbers like 5 or 'B5', got {band!r}")
    return int(match[1])


def landsat_layout(folder: str | Path | ArchivePath, band_map: Mapping[str, Any] | None = None) -> OpticalLayout:
    """Describe a Landsat Collection 2 Level-2 folder for :func:`~rsmon.io.optical_raster.build_dataset`.

    ``band_map`` values are band numbers (``5`` or ``"B5"``) overriding the sensor's defaults.

    Raises
    ------
    FormatError
        No SR band files, red or nir missing, unreadable files or MTL.
    InputError
        Several products in the folder, or a bad ``band_map``.
    """
    folder = folder if isinstance(folder, ArchivePath) else Path(folder)
    band_map = check_band_map(band_map, str(folder))
    files, qa_path, mtl_path, pids = _files(folder)
    if len(pids) > 1:
        raise InputError(f"{folder}: holds files of {len(pids)} Landsat products ({', '.join(sorted(pids)[:4])}); "
                         "pass one product's folder")
    scene = parse_landsat_id(next(iter(pids), "")) if pids else None
    if scene is None:
        raise FormatError(f"{folder}: no Landsat Collection 2 files (<product id>_SR_B4.TIF ...)")
    mtl = read_mtl(mtl_path) if mtl_path else {}
    wanted = dict(LANDSAT_BAND_OF[scene.family])
    for name, band in band_map.items():
        wanted[name] = _band_number(band, folder)
    unknown = [f"{name}=B{band}" for name, band in band_map.items() if wanted[name] not in files]
    if unknown:
        raise FormatError(f"{folder}: band_map names band(s) not in the product: {', '.join(unknown)}")
    choice = {name: band for name, band in wanted.items() if band in files}
    check_required(choice, str(folder), f" (SR bands found: {', '.join(f'B{b}' for b in sorted(files))})")
    wavelengths = _WAVELENGTH_UM["ETM" if scene.satellite == "7" else scene.family]
    bands, band_attrs, target = {}, {}, None
    for name, band in choice.items():
        with open_raster(files[band]) as src:
            require_readable(str(files[band]), src)
            grid, dtype = PixelGrid.of(src), src.dtypes[0]
        target = target or grid
        scale = float(mtl.get(f"REFLECTANCE_MULT_BAND_{band}", _SR_SCALE))
        offset = float(mtl.get(f"REFLECTANCE_ADD_BAND_{band}", _SR_OFFSET))
        bands[name] = BandSource(str(files[band]), 1, grid, dtype, scale=scale, offset=offset, invalid=(0,))
        band_attrs[name] = {"units": "1", "long_name": f"surface reflectance, {name} (Landsat SR_B{band})",
                            "wavelength": wavelengths.get(band), "wavelength_units": "micrometre",
                            "source_band": f"SR_B{band}", "scale_factor_dn": scale, "add_offset_dn": offset}
    qa = None
    if qa_path is not None:
        with open_raster(qa_path) as src:
            require_readable(str(qa_path), src)
            grid, dtype = PixelGrid.of(src), src.dtypes[0]
        qa = QaLayer("qa_pixel", BandSource(str(qa_path), 1, grid, dtype, raw=True, fill=QA_FILL),
                     clear=qa_pixel_clear, water=qa_pixel_water,
                     attrs={"long_name": "Landsat Collection 2 pixel quality (QA_PIXEL bit flags)",
                            "flag_masks": [1 << i for i in range(8)],
                            "flag_meanings": "fill dilated_cloud cirrus cloud cloud_shadow snow clear water",
                            "_FillValue": QA_FILL})
    stamp, stamp_source = _datetime(mtl, scene)
    attrs = {"sensor": scene.sensor, "product": "Landsat C2 L2", "datetime": stamp, "datetime_source": stamp_source,
             "source": str(folder), "radiometry": "reflectance", "scene_id": mtl.get("LANDSAT_PRODUCT_ID", scene.identifier),
             "wrs_path": scene.path, "wrs_row": scene.row}
    return OpticalLayout(target, bands, band_attrs, attrs, qa)
