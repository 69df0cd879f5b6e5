"""Simulated Sentinel-2 L2A scene pairs in the real per-band layout, with known change patches.

What is written
---------------
``out_dir/before/`` and ``out_dir/after/``, each a flat L2A product folder as the Copernicus data
space and the AWS COG archive serve it:

* ``T50SMF_20230501T030551_B02_10m.tif`` ... ``B03``, ``B04``, ``B08`` (10 m) and ``B11``, ``B12``,
  ``SCL`` (``_20m``): uint16 (SCL uint8), tiled (512 x 512 at 10 m, 256 x 256 at 20 m: both one
  strip of 5.12 km), DEFLATE (level 1) with horizontal predictor, no overviews, UTM (EPSG:326zz of
  the tile's zone), a tile-like transform (upper-left 399960 E, 4100040 N, as 100 km MGRS squares
  extended by 9.8 km), nodata 0;
* ``MTD_MSIL2A.xml`` with processing baseline 05.09, ``BOA_QUANTIFICATION_VALUE`` 10000 and
  ``BOA_ADD_OFFSET`` -1000 for every band, so reflectance = (DN - 1000) / 10000 and DN 0 = no data
  (PSD 14.9; processing baseline 04.00 note).

``out_dir/truth.tif`` (uint8 on the 10 m grid: 0 no change, then :data:`TRUTH_CLASSES`) and
``out_dir/truth.csv`` (one row per patch, :data:`TRUTH_COLUMNS`).

Scene (:mod:`rsmon.sim.s2_scene`): water, cropland parcels, forest, towns and bare ground with
texture and sensor noise; in the after scene crop growth, some harvested wheat parcels, a small
radiometric gain/offset, clouds (SCL 8/9/10) with their shadows (SCL 3), and a no-data wedge in the
bottom-right corner (DN 0, SCL 0) as at a swath edge. ``n_changes`` patches of 4-400 pixels
(log-uniform) are placed on vegetation (on non-water for new ponds), apart from each other:
construction (vegetation -> bright concrete), mining (vegetation -> bare rock, high SWIR), new ponds
(-> turbid water) and vegetation clearing (-> bare soil). 20 m bands are 2 x 2 means of the 10 m
reflectance; 20 m SCL takes the upper-left 10 m pixel.

Everything is produced in strips of rows (a 10980 tile never needs whole-array memory), strips in
parallel threads, written in order; the same arguments give the same files.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import re
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from affine import Affine

from rsmon.errors import InputError
from rsmon.io.atomic import atomic_output, check_output_dir
from rsmon.sim.s2_scene import (
    BARE,
    BUILT,
    CHANGE_CLASSES,
    COVER_NAMES,
    CROP,
    FOREST,
    POND,
    S2_SIM_BANDS,
    WATER,
    Landscape,
)

log = logging.getLogger(__name__)

__all__ = ["BOA_ADD_OFFSET", "BOA_QUANTIFICATION", "ChangePatch", "SimulatedPair", "TRUTH_CLASSES", "TRUTH_COLUMNS",
           "main", "simulate_s2_l2a_pair"]

BOA_ADD_OFFSET, BOA_QUANTIFICATION, PROCESSING_BASELINE = -1000, 10000, "05.09"
#: Truth raster codes (0 = no change).
TRUTH_CLASSES = {code: name for code, (name, _) in CHANGE_CLASSES.items()}
TRUTH_COLUMNS = ("patch_id", "class_code", "class_name", "n_pixels", "area_m2", "row", "col", "x", "y", "lon", "lat",
                 "row_min", "row_max", "col_min", "col_max", "before_cover", "clear_fraction_after")
TILE_ORIGIN = (399960.0, 4100040.0)
PIXEL_M = 10.0
_SENSING_TIME = "T030551"
_STRIP_ROWS = 512  # one row of 512 x 512 tiles at 10 m, of 256 x 256 tiles at 20 m: tiles are written whole
_GDAL_CACHE_MB = 192
_PATCH_AREA = (4, 400)
_CLASS_WEIGHTS = {1: 0.35, 2: 0.15, 3: 0.2, 4: 0.3}
_TILE = re.compile(r"^T?(?P<zone>\d{2})(?P<band>[C-HJ-NP-X])(?P<square>[A-HJ-NP-Z]{2})$")
_VEGETATED_GREEN = 0.35  # green fraction above which SCL says vegetation (4)


@dataclass(frozen=True)
class ChangePatch:
    """A change patch: truth code and name, its mask placed at (``row0``, ``col0``) of the 10 m grid."""

    patch_id: int
    code: int
    name: str
    row0: int
    col0: int
    mask: np.ndarray
    before_cover: str
    clear_fraction_after: float

    @property
    def n_pixels(self) -> int:
        return int(self.mask.sum())

    @property
    def centroid(self) -> tuple[float, float]:
        """(row, col) of the patch centroid (pixel-centre convention: pixel i spans i..i+1)."""
        rr, cc = np.nonzero(self.mask)
        return float(rr.mean() + self.row0 + 0.5), float(cc.mean() + self.col0 + 0.5)


@dataclass(frozen=True)
class SimulatedPair:
    """What :func:`simulate_s2_l2a_pair` wrote."""

    before: Path
    after: Path
    truth_raster: Path
    truth_csv: Path
    patches: tuple[ChangePatch, ...]
    size: int
    tile: str
    crs: str
    transform: Affine
    datetimes: tuple[str, str]
    #: The before land cover in ESA WorldCover's layout (``landcover=True``), else None.
    landcover: Path | None = None


# --------------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------------

def _tile_crs(tile: str) -> tuple[str, str]:
    match = _TILE.match(tile.strip().upper())
    if match is None:
        raise InputError(f"tile: expected an MGRS tile like T50SMF, got {tile!r}")
    zone = int(match["zone"])
    if not 1 <= zone <= 60:
        raise InputError(f"tile: UTM zone {zone} of {tile!r} is outside 1..60")
    north = match["band"] >= "N"
    return f"T{match['zone']}{match['band']}{match['square']}", f"EPSG:{(32600 if north else 32700) + zone}"


def _sensing(text: str, which: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"dates: {which} date {text!r} is not an ISO date like 2023-05-01") from None
    if len(str(text)) <= 10:
        stamp = datetime.strptime(f"{stamp:%Y%m%d}{_SENSING_TIME}", "%Y%m%dT%H%M%S")
    return stamp.replace(tzinfo=stamp.tzinfo or timezone.utc).astimezone(timezone.utc)


def _patch_mask(code: int, area: int, rng: np.random.Generator) -> np.ndarray:
    """A compact patch of about ``area`` pixels: a rectangle (construction, mining) or a rotated ellipse."""
    if code in (1, 2):
        aspect = rng.uniform(0.5, 2.0)
        h = max(1, int(round(math.sqrt(area / aspect))))
        w = max(1, int(round(area / h)))
        return np.ones((h, w), dtype=bool)
    a = math.sqrt(area / math.pi * rng.uniform(1.0, 2.5))
    b = area / (math.pi * a)
    theta = rng.uniform(0, math.pi)
    n = int(math.ceil(max(a, b))) + 1
    y, x = np.mgrid[-n:n + 1, -n:n + 1].astype(float)
    u, v = x * math.cos(theta) + y * math.sin(theta), -x * math.sin(theta) + y * math.cos(theta)
    mask = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    mask = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return mask if mask.sum() >= _PATCH_AREA[0] else np.ones((2, 2), dtype=bool)


def _nodata_wedge(rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """The after scene's no-data corner (a swath edge): row + col > 1.8 size."""
    return (rows[:, None] + cols[None, :]) > 1.8 * size


def _suitable(land: Landscape, code: int, rows: np.ndarray, cols: np.ndarray, mask: np.ndarray) -> tuple[bool, str]:
    cover = land.cover(rows, cols)
    cls, green = cover.cls[mask], cover.green_before[mask]
    if code == 3:
        ok = (cls != WATER) & (cls != BUILT)
    else:
        ok = ((cls == CROP) | (cls == FOREST)) & (green > _VEGETATED_GREEN)
    ok &= ~_nodata_wedge(rows, cols, land.size)[mask]
    values, counts = np.unique(cls, return_counts=True)
    return bool(ok.mean() >= 0.8), COVER_NAMES[int(values[np.argmax(counts)])]


def _clear_fraction(land: Landscape, rows: np.ndarray, cols: np.ndarray, mask: np.ndarray) -> float:
    scl = _scl_sky(np.full(mask.shape, 4, np.uint8), land.cloud_opacity(rows, cols), land.shadow_depth(rows, cols))
    return float(np.isin(scl[mask], (2, 4, 5, 6, 7)).mean())


def _plan_patches(land: Landscape, n_changes: int, seed: int) -> list[ChangePatch]:
    rng = np.random.default_rng([seed, 7])
    codes = list(_CLASS_WEIGHTS)
    weights = np.array(list(_CLASS_WEIGHTS.values()))
    taken: list[tuple[int, int, int, int]] = []
    patches: list[ChangePatch] = []
    size, margin = land.size, 3
    for _ in range(n_changes):
        code = int(rng.choice(codes, p=weights / weights.sum()))
        area = int(round(math.exp(rng.uniform(math.log(_PATCH_AREA[0]), math.log(_PATCH_AREA[1])))))
        mask = _patch_mask(code, area, rng)
        h, w = mask.shape
        for _try in range(60):
            r0 = int(rng.integers(margin, max(size - h - margin, margin + 1)))
            c0 = int(rng.integers(margin, max(size - w - margin, margin + 1)))
            if any(r0 < b1 + margin and b0 < r0 + h + margin and c0 < d1 + margin and d0 < c0 + w + margin
                   for b0, b1, d0, d1 in taken):
                continue
            rows, cols = np.arange(r0, r0 + h), np.arange(c0, c0 + w)
            ok, cover = _suitable(land, code, rows, cols, mask)
            if not ok:
                continue
            taken.append((r0, r0 + h, c0, c0 + w))
            patches.append(ChangePatch(len(patches) + 1, code, TRUTH_CLASSES[code], r0, c0, mask, cover,
                                       _clear_fraction(land, rows, cols, mask)))
            break
    if len(patches) < n_changes:
        log.warning("placed %d of %d change patches (no room on suitable land cover at size %d)",
                    len(patches), n_changes, size)
    return patches


# --------------------------------------------------------------------------------------------------
# Strips
# --------------------------------------------------------------------------------------------------

def _scl_sky(scl: np.ndarray, opacity: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """Add clouds (10 thin cirrus, 8 medium, 9 high probability) and shadows (3) to an SCL window."""
    scl = scl.copy()
    scl[(shadow > 0.3) & (opacity < 0.02)] = 3
    scl[opacity >= 0.02] = 10
    scl[opacity >= 0.25] = 8
    scl[opacity >= 0.6] = 9
    return scl


def _scl_ground(cls: np.ndarray, green: np.ndarray) -> np.ndarray:
    scl = np.where(green > _VEGETATED_GREEN, 4, 5).astype(np.uint8)
    scl[(cls == WATER) | (cls == POND)] = 6
    return scl


def _dn(reflectance: np.ndarray) -> np.ndarray:
    """Reflectance -> L2A DN with the -1000 offset (1..65534; 0 is no data, 65535 saturated)."""
    dn = np.rint(reflectance * BOA_QUANTIFICATION - BOA_ADD_OFFSET)
    return np.clip(dn, 1, 65534).astype(np.uint16)


@dataclass(frozen=True)
class _Plan:
    land: Landscape
    patches: tuple[ChangePatch, ...]
    seed: int


def _paint(plan: _Plan, r0: int, r1: int, cls: np.ndarray, green: np.ndarray) -> np.ndarray:
    """Apply the patches crossing rows r0..r1 to the after cover; return the truth codes."""
    truth = np.zeros(cls.shape, dtype=np.uint8)
    for patch in plan.patches:
        h, w = patch.mask.shape
        top, bottom = max(patch.row0, r0), min(patch.row0 + h, r1)
        if top >= bottom:
            continue
        mask = patch.mask[top - patch.row0:bottom - patch.row0]
        region = (slice(top - r0, bottom - r0), slice(patch.col0, patch.col0 + w))
        truth[region][mask] = patch.code
        cls[region][mask] = CHANGE_CLASSES[patch.code][1]
        green[region][mask] = 0.03
    return truth


def _strip(plan: _Plan, index: int, r0: int, r1: int) -> dict[str, np.ndarray]:
    land = plan.land
    rows, cols = np.arange(r0, r1), np.arange(land.size)
    cover = land.cover(rows, cols)
    cls_after, green_after = cover.cls.copy(), cover.green_after
    truth = _paint(plan, r0, r1, cls_after, green_after)
    opacity, shadow = land.cloud_opacity(rows, cols), land.shadow_depth(rows, cols)
    nodata = _nodata_wedge(rows, cols, land.size)
    scl_after = _scl_sky(_scl_ground(cls_after, green_after), opacity, shadow)
    scl_after[nodata] = 0
    out = {"truth": truth}
    scenes = (("before", cover.cls, cover.green_before, None, _scl_ground(cover.cls, cover.green_before)),
              ("after", cls_after, green_after, (opacity, shadow, nodata), scl_after))
    for name, cls, green, sky, scl in scenes:
        dn10, refl20 = land.render(cover, cls, green, plan.seed, r0, after=sky is not None, sky=sky)
        dn20 = _dn(refl20)
        if sky is not None:
            dn20[:, nodata[0::2, 0::2]] = 0
        for b, band in enumerate(S2_SIM_BANDS[:4]):
            out[f"{name}/{band}"] = dn10[b]
        for b, band in enumerate(S2_SIM_BANDS[4:]):
            out[f"{name}/{band}"] = dn20[b]
        out[f"{name}/SCL"] = scl[0::2, 0::2]
    return out


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------

def _profile(size: int, dtype: str, crs: str, transform: Affine, workers: int, block: int = 512) -> dict:
    return {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": dtype, "crs": crs,
            "transform": transform, "tiled": True, "blockxsize": block, "blockysize": block, "compress": "deflate",
            "zlevel": 1, "predictor": 2, "nodata": 0, "num_threads": max(workers, 1), "bigtiff": "if_safer"}


def _band_file(tile: str, stamp: datetime, band: str) -> str:
    res = 10 if band in S2_SIM_BANDS[:4] else 20
    return f"{tile}_{stamp:%Y%m%dT%H%M%S}_{band}_{res}m.tif"


def _mtd_xml(tile: str, stamp: datetime, spacecraft: str = "Sentinel-2A") -> str:
    """A minimal ``MTD_MSIL2A.xml`` with the elements readers use (PSD 14.9 structure)."""
    uri = f"S2A_MSIL2A_{stamp:%Y%m%dT%H%M%S}_N{PROCESSING_BASELINE.replace('.', '')}_R075_{tile}_{stamp:%Y%m%d}T061234.SAFE"
    iso = stamp.strftime("%Y-%m-%dT%H:%M:%S.024Z")
    offsets = "\n".join(f'        <BOA_ADD_OFFSET band_id="{i}">{BOA_ADD_OFFSET}</BOA_ADD_OFFSET>' for i in range(13))
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
    <n1:General_Info>
        <Product_Info>
            <PRODUCT_START_TIME>{iso}</PRODUCT_START_TIME>
            <PRODUCT_STOP_TIME>{iso}</PRODUCT_STOP_TIME>
            <PRODUCT_URI>{uri}</PRODUCT_URI>
            <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
            <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
            <PROCESSING_BASELINE>{PROCESSING_BASELINE}</PROCESSING_BASELINE>
            <Datatake datatakeIdentifier="GS2A_{stamp:%Y%m%dT%H%M%S}_000000_N{PROCESSING_BASELINE}">
                <SPACECRAFT_NAME>{spacecraft}</SPACECRAFT_NAME>
                <DATATAKE_SENSING_START>{iso}</DATATAKE_SENSING_START>
            </Datatake>
        </Product_Info>
        <Product_Image_Characteristics>
            <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
            <Special_Values><SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX></Special_Values>
            <QUANTIFICATION_VALUES_LIST>
                <BOA_QUANTIFICATION_VALUE unit="none">{BOA_QUANTIFICATION}</BOA_QUANTIFICATION_VALUE>
            </QUANTIFICATION_VALUES_LIST>
            <BOA_ADD_OFFSET_VALUES_LIST>
{offsets}
            </BOA_ADD_OFFSET_VALUES_LIST>
        </Product_Image_Characteristics>
    </n1:General_Info>
</n1:Level-2A_User_Product>
"""


def _write_truth_csv(path: Path, patches: Sequence[ChangePatch], transform: Affine, crs: str) -> None:
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(TRUTH_COLUMNS)
        for p in patches:
            row, col = p.centroid
            x, y = transform @ (col, row)
            lon, lat = to_lonlat.transform(x, y)
            h, w = p.mask.shape
            writer.writerow([p.patch_id, p.code, p.name, p.n_pixels, p.n_pixels * PIXEL_M ** 2, f"{row:.2f}", f"{col:.2f}",
                             f"{x:.1f}", f"{y:.1f}", f"{lon:.6f}", f"{lat:.6f}", p.row0, p.row0 + h - 1, p.col0,
                             p.col0 + w - 1, p.before_cover, f"{p.clear_fraction_after:.3f}"])


def _strips(size: int) -> list[tuple[int, int, int]]:
    return [(i, r0, min(r0 + _STRIP_ROWS, size)) for i, r0 in enumerate(range(0, size, _STRIP_ROWS))]


def _write_all(plan: _Plan, outputs: dict, workers: int) -> None:
    """Compute strips in ``workers`` threads (at most ``workers + 1`` in flight) and write them in order."""
    from rasterio.windows import Window

    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        pending: deque = deque()
        strips = iter(_strips(plan.land.size))
        for item in strips:
            pending.append((item, pool.submit(_strip, plan, *item)))
            if len(pending) > workers:
                break
        while pending:
            (index, r0, r1), future = pending.popleft()
            nxt = next(strips, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_strip, plan, *nxt)))
            for key, values in future.result().items():
                half = key.endswith(("B11", "B12", "SCL"))
                row = r0 // 2 if half else r0
                outputs[key].write(values, 1, window=Window(0, row, values.shape[1], values.shape[0]))


def simulate_s2_l2a_pair(out_dir: str | Path, *, size: int = 10980, seed: int = 0, n_changes: int = 200,
                         tile: str = "T50SMF", dates: Sequence[str] = ("2023-05-01", "2023-06-01"),
                         cloud_fraction: float = 0.08, harvest_fraction: float = 0.1,
                         workers: int = 2, landcover: bool = False) -> SimulatedPair:
    """Write a before/after Sentinel-2 L2A pair with known change patches.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created); ``before/``, ``after/``, ``truth.tif`` and ``truth.csv`` go there.
    size : int
        Tile edge in 10 m pixels, even (10980 = a full tile; 512 for tests).
    seed : int
        Random seed; the same arguments give the same files.
    n_changes : int
        Change patches to place (fewer when the land cover leaves no room; a warning says so).
    tile : str
        MGRS tile name; sets the UTM zone (EPSG:326zz/327zz) and the file names.
    dates : (str, str)
        Sensing dates (ISO; 03:05:51 UTC when only a date is given).
    cloud_fraction : float
        Share of the after scene under cloud (SCL 8/9/10); shadows come on top.
    harvest_fraction : float
        Share of cropland parcels harvested between the dates (not a human-activity change).
    workers : int
        Threads computing strips (and compressing tiles).
    landcover : bool
        Also write ``landcover.tif``, the before land cover as an ESA WorldCover map would show it
        (:func:`write_worldcover`): the truth a crop-cycle screen is measured with.

    Returns
    -------
    SimulatedPair

    Raises
    ------
    InputError
        Odd or too small ``size``, negative ``n_changes``, bad ``tile`` or ``dates``.
    """
    if not isinstance(size, (int, np.integer)) or size < 32 or size % 2:
        raise InputError(f"size: expected an even number of 10 m pixels >= 32 (10980 for a tile), got {size!r}")
    if n_changes < 0:
        raise InputError(f"n_changes: expected >= 0, got {n_changes}")
    if len(dates) != 2:
        raise InputError(f"dates: expected (before, after), got {dates!r}")
    tile, crs = _tile_crs(tile)
    stamps = (_sensing(dates[0], "before"), _sensing(dates[1], "after"))
    out = check_output_dir(Path(out_dir))
    transform = Affine(PIXEL_M, 0.0, TILE_ORIGIN[0], 0.0, -PIXEL_M, TILE_ORIGIN[1])
    land = Landscape(int(size), seed, cloud_fraction=cloud_fraction, harvest_fraction=harvest_fraction)
    plan = _Plan(land, tuple(_plan_patches(land, n_changes, seed)), seed)
    import rasterio

    folders = {name: check_output_dir(out / name) for name in ("before", "after")}
    with ExitStack() as stack:
        # a small GDAL block cache: dirty tiles of 15 files would otherwise pile up to 5 % of the RAM
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB))
        outputs = {}
        for name, stamp in zip(folders, stamps):
            for band in S2_SIM_BANDS + ("SCL",):
                fine = band in S2_SIM_BANDS[:4]
                path = folders[name] / _band_file(tile, stamp, band)
                n = size if fine else size // 2
                tmp = stack.enter_context(atomic_output(path))
                profile = _profile(n, "uint8" if band == "SCL" else "uint16", crs,
                                   transform if fine else transform @ Affine.scale(2), workers, 512 if fine else 256)
                outputs[f"{name}/{band}"] = stack.enter_context(rasterio.open(tmp, "w", **profile))
        truth_tmp = stack.enter_context(atomic_output(out / "truth.tif"))
        profile = _profile(size, "uint8", crs, transform, workers) | {"nodata": None}
        outputs["truth"] = stack.enter_context(rasterio.open(truth_tmp, "w", **profile))
        outputs["truth"].update_tags(**{f"CLASS_{code}": name for code, name in TRUTH_CLASSES.items()}, CLASS_0="none")
        _write_all(plan, outputs, workers)
    for name, stamp in zip(folders, stamps):
        with atomic_output(folders[name] / "MTD_MSIL2A.xml") as tmp:
            tmp.write_text(_mtd_xml(tile, stamp))
    _write_truth_csv(out / "truth.csv", plan.patches, transform, crs)
    cover_map = write_worldcover(land, out / "landcover.tif", crs, transform, workers) if landcover else None
    log.info("simulated S2 L2A pair %s (%d x %d, %d change patches) in %s", tile, size, size, len(plan.patches), out)
    return SimulatedPair(folders["before"], folders["after"], out / "truth.tif", out / "truth.csv", plan.patches,
                         int(size), tile, crs, transform, tuple(s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in stamps),
                         cover_map)


#: Simulator cover class -> ESA WorldCover 2021 v200 code (rsmon.io.landcover.WORLDCOVER_CLASSES):
#: water 80, cropland 40, forest 10 (tree cover), built-up 50, bare 60.
WORLDCOVER_CODES = {WATER: 80, CROP: 40, FOREST: 10, BUILT: 50, BARE: 60}
#: ESA WorldCover's grid: EPSG:4326, 1/12000 degree (~10 m at the equator), origin on whole degrees.
WORLDCOVER_DEG = 1.0 / 12000.0


def write_worldcover(land: Landscape, path: Path, crs: str, transform: Affine, workers: int = 2) -> Path:
    """Write the landscape's before cover as an ESA WorldCover map: uint8 WorldCover codes
    (:data:`WORLDCOVER_CODES`), EPSG:4326 on WorldCover's 1/12000-degree grid, 1024-pixel DEFLATE
    tiles, nodata 0 (as the real tiles, e.g. shared/data/esa-worldcover-tile), covering the tile.

    The map is exact (no classification error) and dated before the change: what it measures is
    the screen's rule, not a real map's errors. The 10 m UTM cover is resampled by nearest neighbour.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject, transform_bounds
    from rasterio.windows import Window

    lut = np.zeros(256, dtype=np.uint8)
    for code, value in WORLDCOVER_CODES.items():
        lut[code] = value
    size = land.size
    utm_path = path.with_name(f".{path.stem}-utm.tif")
    try:
        with rasterio.open(utm_path, "w", **(_profile(size, "uint8", crs, transform, workers) | {"nodata": 0})) as utm:
            cols = np.arange(size)
            for _, r0, r1 in _strips(size):
                codes = lut[land.cover(np.arange(r0, r1), cols).cls]
                utm.write(codes, 1, window=Window(0, r0, size, r1 - r0))
        west, south, east, north = transform_bounds(crs, "EPSG:4326", transform.c, transform.f + size * transform.e,
                                                    transform.c + size * transform.a, transform.f, densify_pts=21)
        d = WORLDCOVER_DEG
        c0, c1 = math.floor(west / d), math.ceil(east / d)
        r0, r1 = math.floor(-north / d), math.ceil(-south / d)
        dst_transform = Affine(d, 0.0, c0 * d, 0.0, -d, -r0 * d)
        profile = {"driver": "GTiff", "width": c1 - c0, "height": r1 - r0, "count": 1, "dtype": "uint8",
                   "crs": "EPSG:4326", "transform": dst_transform, "nodata": 0, "tiled": True,
                   "blockxsize": 1024, "blockysize": 1024, "compress": "deflate", "num_threads": max(workers, 1)}
        with atomic_output(path) as tmp, rasterio.open(utm_path) as src, rasterio.open(tmp, "w", **profile) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.nearest,
                      src_nodata=0, dst_nodata=0, warp_mem_limit=256, num_threads=max(workers, 1))
            dst.update_tags(SOURCE="rsmon sim s2: simulated before land cover in ESA WorldCover 2021 v200 codes",
                            legend="10 tree cover, 40 cropland, 50 built-up, 60 bare, 80 water")
    finally:
        utm_path.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit(2); rsmon reports InputError
        raise InputError(f"sim s2: {message}")


def main(argv: Iterable[str] | None = None) -> int:
    """``rsmon sim s2 --out DIR [--size N | --small] [--seed N] [--changes N] [--tile T] [--dates D1,D2]
    [--clouds F]``. Prints the folders and files written."""
    parser = _Parser(prog="rsmon sim s2",
                     description="Write a simulated Sentinel-2 L2A before/after pair (per-band GeoTIFFs) with change truth.")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, default=10980, help="tile edge in 10 m pixels (default 10980)")
    parser.add_argument("--small", action="store_true", help="512 x 512 pixels, for tests")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--changes", type=int, default=200, help="change patches (default 200)")
    parser.add_argument("--tile", default="T50SMF", help="MGRS tile (default T50SMF)")
    parser.add_argument("--dates", default="2023-05-01,2023-06-01", help="BEFORE,AFTER sensing dates")
    parser.add_argument("--clouds", type=float, default=0.08, help="cloud fraction of the after scene (default 0.08)")
    parser.add_argument("--landcover", action="store_true",
                        help="also write landcover.tif, the before land cover as an ESA WorldCover map")
    args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    dates = tuple(d.strip() for d in args.dates.split(","))
    pair = simulate_s2_l2a_pair(args.out, size=512 if args.small else args.size, seed=args.seed,
                                n_changes=args.changes, tile=args.tile, dates=dates, cloud_fraction=args.clouds,
                                landcover=args.landcover)
    for path in (pair.before, pair.after, pair.truth_raster, pair.truth_csv, pair.landcover):
        if path is None:
            continue
        print(path)
    return 0
