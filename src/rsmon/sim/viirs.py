"""Simulated VIIRS L1B I-band granules (VJ102IMG + VJ103IMG) with sub-pixel fires of known truth.

What is simulated
-----------------
* **Files.** A ``{VNP,VJ1,VJ2}02IMG`` radiance file and its ``03IMG`` geolocation file in the NASA
  layout (:mod:`rsmon.sim.viirs_layout`): uint16 scaled counts with brightness-temperature lookup
  tables, quality flags, special counts, real-style names such as
  ``VJ102IMG.A2023161.0524.021.2023161123456.nc``, zlib-compressed and chunked.
* **Geometry** (:mod:`rsmon.sim.viirs_geometry`): 32 detectors per scan, on-board 3:1/2:1/1:1
  aggregation (pixels ~385 m wide at nadir to ~820 m at the edge), bow-tie deletion of 4 or 8 of the
  32 rows outside the nadir zone (special count 65533), a sun-synchronous pass through ``center``.
* **Scene** (:mod:`rsmon.sim.viirs_scene`): cropland with temperature and reflectance texture, hills,
  a hot bright desert-like surface, lakes, a river, coast and sea, broken cold bright clouds, and sun
  glint over water, all in radiance (Planck at the band centres, reflected sunlight in I4).
* **Fires.** Sub-pixel fires of known area ``A`` and temperature ``T`` mixed into I4 and I5 in radiance:
  ``L = p B(T_fire) + (1 - p) L_bg`` with ``p = A / pixel area``; I4 saturates at 367 K (count
  ``valid_max`` and quality-flag bit 4) and, for very hot pixels (unsaturated BT4 >= 500 K), folds to
  the 208 K of count 0 with a nominal flag, as observed (fire.md 1.1); I5 saturates at 380 K.
  Fire areas follow Schroeder et al. (2014): log-uniform 2-300 m2 with 2 % large fires of 800-8000 m2,
  temperatures uniform 500-1200 K.
* **Truth.** ``truth.csv`` next to the granule: ``latitude, longitude, line, sample, frp_mw,
  fire_area_m2, fire_temp_k`` then ``pixel_area_m2, fire_fraction, bg_bt_i4_k, bg_bt_i5_k, bt_i4_k,
  bt_i5_k, i4_state``. ``frp_mw = sigma A T^4`` (Stefan-Boltzmann law, sigma = 5.670374419e-8 W m-2 K-4,
  CODATA 2018) in MW; ``bg_bt_*`` is the pixel without the fire (scene + sensor noise), so
  ``B^-1(p B(T_fire) + (1 - p) B(bg_bt))`` is exactly the mixed radiance before quantisation;
  ``bt_*_k`` is what the file's lookup table gives for the written count; ``i4_state`` is "normal",
  "saturated" or "folded".
* **Defects** (``defects=True``): one scan segment of Missing_EV (65532), one detector segment of
  Cal_Fail (65534) and one block of fill (65535), so that every status code occurs.

Not simulated: atmosphere (transmission, path radiance), spectral response functions (monochromatic
band centres), fire emission in I1-I3, the along-scan sampling time within a scan, terrain parallax,
and fires that appear twice in overlapping bow-tie scans (a fire belongs to one pixel).

Determinism: the same arguments and ``seed`` give the same files and truth.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rsmon.errors import InputError
from rsmon.io.atomic import atomic_output, check_output_dir
from rsmon.io.viirs import (
    FILL_COUNT,
    PLATFORMS,
    QF_BOWTIE_DELETED,
    QF_CAL_FAIL,
    QF_MISSING_EV,
    QF_SATURATION,
    VALID_MAX_COUNT,
    viirs_filename,
)
from rsmon.sim.viirs_geometry import DETECTORS_PER_SCAN, N_PIXELS_FULL, ScanGeometry
from rsmon.sim.viirs_layout import (
    I4_OFFSET,
    I4_SATURATION_K,
    I4_SCALE,
    I5_OFFSET,
    I5_SATURATION_K,
    I5_SCALE,
    GranuleMeta,
    GranuleWriter,
    encode_angle,
    encode_radiance,
    encode_reflectance,
    lut,
)
from rsmon.sim.viirs_scene import (
    I4_WAVELENGTH_UM,
    I5_WAVELENGTH_UM,
    STEFAN_BOLTZMANN,
    Scene,
    brightness_temperature,
    planck_radiance,
)

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_DAY_START", "DEFAULT_NIGHT_START", "FireSpec", "SMALL_LINES", "SMALL_PIXELS", "SimGranule",
           "TRUTH_COLUMNS", "main", "simulate_granule"]

UTC = timezone.utc
DEFAULT_DAY_START = datetime(2023, 6, 10, 5, 24, tzinfo=UTC)  # ~13:12 local solar time at 117 E
DEFAULT_NIGHT_START = datetime(2023, 6, 10, 17, 36, tzinfo=UTC)  # ~01:24 local solar time at 117 E
#: ``--small``: 24 scans x 800 columns (every 8th pixel of the full swath).
SMALL_LINES, SMALL_PIXELS = 768, 800
#: Production time written into file names: start + 7 h 10 min 56 s (gives ...2023161123456 by default).
_PRODUCTION_DELAY = timedelta(hours=7, minutes=10, seconds=56)
#: Unsaturated I4 brightness temperature (K) above which a saturated pixel folds to count 0. fire.md
#: says folding comes with "severe" saturation but gives no onset; 500 K together with the fire
#: distribution below makes ~8 % of the detectable (> 5 K) fire pixels saturate and ~0.4 % fold, near the
#: 8 % and 0.2 % of daytime fire pixels reported by Schroeder et al. (2014) [tuned, not measured].
I4_FOLD_BT_K = 500.0
#: Sensor noise: NEdT of 0.4 K at 300 K for I4 and I5, applied in radiance [assumed, typical on-orbit].
NEDT_K = 0.4
#: Fire-area (m2) and temperature (K) distributions of the generated fires (Schroeder et al. 2014,
#: RSE 143:85, simulated 2-250 m2 at 400-1200 K; a 2 % tail of large fires for saturation and folding).
SMALL_FIRE_M2, LARGE_FIRE_M2, LARGE_FIRE_SHARE, FIRE_TEMP_K = (2.0, 300.0), (800.0, 8000.0), 0.02, (500.0, 1200.0)
_BLOCK_SCANS = 4

TRUTH_COLUMNS = ("latitude", "longitude", "line", "sample", "frp_mw", "fire_area_m2", "fire_temp_k",
                 "pixel_area_m2", "fire_fraction", "bg_bt_i4_k", "bg_bt_i5_k", "bt_i4_k", "bt_i5_k", "i4_state")


@dataclass(frozen=True)
class FireSpec:
    """A fire to inject: the pixel (``line``, ``sample`` of the written granule), area and temperature."""

    line: int
    sample: int
    area_m2: float
    temperature_k: float


@dataclass(frozen=True)
class SimGranule:
    """Paths written by :func:`simulate_granule`."""

    img_path: Path
    geo_path: Path
    truth_path: Path


# --------------------------------------------------------------------------------------------------
# Defects and fires
# --------------------------------------------------------------------------------------------------

def _defects(n_scans: int, n_pixels: int) -> list[tuple[int, slice, slice, int, int]]:
    """(scan, detector rows, columns, count, quality-flag bit) of the injected defects."""
    cols = lambda a, b: slice(int(a * n_pixels), max(int(b * n_pixels), int(a * n_pixels) + 1))  # noqa: E731
    return [(n_scans // 3, slice(None), cols(0.40, 0.44), 65532, QF_MISSING_EV),
            (2 * n_scans // 3, slice(7, 8), cols(0.55, 0.62), 65534, QF_CAL_FAIL),
            (n_scans // 2, slice(None), cols(0.47, 0.49), FILL_COUNT, 0)]


def _defect_mask(n_scans: int, n_pixels: int, defects: bool) -> dict[int, np.ndarray]:
    """Per scan with a defect: (32, n_pixels) bool mask of defect pixels."""
    out: dict[int, np.ndarray] = {}
    if not defects:
        return out
    for scan, rows, cols, _, _ in _defects(n_scans, n_pixels):
        mask = out.setdefault(scan, np.zeros((DETECTORS_PER_SCAN, n_pixels), dtype=bool))
        mask[rows, cols] = True
    return out


def _draw_fires(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    large = rng.random(n) < LARGE_FIRE_SHARE
    lo = np.where(large, LARGE_FIRE_M2[0], SMALL_FIRE_M2[0])
    hi = np.where(large, LARGE_FIRE_M2[1], SMALL_FIRE_M2[1])
    area = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    temp = rng.uniform(*FIRE_TEMP_K, n)
    return area, temp


def _choose_fires(geom: ScanGeometry, scene: Scene, n_fires: int, seed: int, bad: dict[int, np.ndarray],
                  n_lines: int, n_pixels: int) -> list[FireSpec]:
    """``n_fires`` fires on random cloud-free land pixels (not desert, not water, not deleted)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 101]))
    chosen: list[FireSpec] = []
    if n_fires == 0:
        return chosen
    taken: set[tuple[int, int]] = set()
    for _ in range(20):
        k = max(2000, 20 * n_fires)
        lines, cols = rng.integers(0, n_lines, k), rng.integers(0, n_pixels, k)
        scans, dets = lines // DETECTORS_PER_SCAN, lines % DETECTORS_PER_SCAN
        g = geom.ground_points(scans, dets, cols)
        m = scene.masks(g["s_km"], g["q_km"], geom.along_scan_km[cols])
        ok = (m["frac_water"] == 0.0) & (m["desert"] < 0.05) & (m["cloud"] < 0.02) & ~geom.bowtie[dets, cols]
        area, temp = _draw_fires(rng, k)
        for i in np.flatnonzero(ok):
            key = (int(lines[i]), int(cols[i]))
            if key in taken or (int(scans[i]) in bad and bad[int(scans[i])][dets[i], cols[i]]):
                continue
            taken.add(key)
            chosen.append(FireSpec(key[0], key[1], float(area[i]), float(temp[i])))
            if len(chosen) == n_fires:
                return chosen
    log.warning("only %d of %d fires found room on cloud-free land", len(chosen), n_fires)
    return chosen


def _check_fires(fires: Iterable, geom: ScanGeometry, bad: dict[int, np.ndarray], n_lines: int,
                 n_pixels: int) -> list[FireSpec]:
    out, seen = [], set()
    for item in fires:
        f = item if isinstance(item, FireSpec) else FireSpec(*item)
        if not (0 <= f.line < n_lines and 0 <= f.sample < n_pixels):
            raise InputError(f"fires: {f} lies outside the granule ({n_lines} lines x {n_pixels} pixels)")
        if not (f.area_m2 > 0 and f.temperature_k > 0):
            raise InputError(f"fires: {f}: area_m2 and temperature_k must be positive")
        scan, det = divmod(f.line, DETECTORS_PER_SCAN)
        if geom.bowtie[det, f.sample] or (scan in bad and bad[scan][det, f.sample]):
            raise InputError(f"fires: {f} is on a bow-tie-deleted or defect pixel (no signal there)")
        if (f.line, f.sample) in seen:
            raise InputError(f"fires: two fires in pixel (line {f.line}, sample {f.sample})")
        seen.add((f.line, f.sample))
        out.append(f)
    return out


# --------------------------------------------------------------------------------------------------
# The granule
# --------------------------------------------------------------------------------------------------

def _to_utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def simulate_granule(out_dir, *, seed: int = 0, start: datetime | None = None, platform: str = "NOAA-20",
                     n_lines: int = 6464, n_pixels: int = N_PIXELS_FULL, center: tuple[float, float] = (117.0, 34.5),
                     fires: Sequence[FireSpec] | None = None, n_fires: int = 300, day: bool = True,
                     collection: str = "021", defects: bool = True, complevel: int = 1) -> SimGranule:
    """Write a simulated VIIRS L1B I-band granule pair and its fire truth.

    Parameters
    ----------
    out_dir : path
        Output folder (created if needed).
    seed : int
        Seed of every random part (scene texture, noise, fires).
    start : datetime, optional
        Granule start (UTC; naive means UTC). Default :data:`DEFAULT_DAY_START` (2023-06-10 05:24)
        for ``day=True``, :data:`DEFAULT_NIGHT_START` (17:36) otherwise.
    platform : {"NOAA-20", "Suomi-NPP", "NOAA-21"}
        Sets the file prefix (VJ1, VNP, VJ2) and the ``platform`` attribute.
    n_lines : int
        Lines, a multiple of 32 (6464 = 202 scans is a 6-minute granule).
    n_pixels : int
        Columns, 1..6400; fewer than 6400 keep the whole swath and take every (6400 / n)-th pixel,
        each with its real footprint (a decimated test granule).
    center : (lon, lat)
        Sub-satellite point at the middle of the granule, degrees (|lat| <= 80).
    fires : sequence of FireSpec or (line, sample, area_m2, temperature_k), optional
        The fires to inject; default: ``n_fires`` random fires on cloud-free land.
    n_fires : int
        Number of random fires when ``fires`` is None.
    day : bool
        Day granule (ascending pass, I01-I03 present) or night (descending, I04/I05 only).
    collection : str
        Three-digit collection in the file names ("021" = C2.1).
    defects : bool
        Inject the Missing_EV / Cal_Fail / fill segments.
    complevel : int
        zlib level 1..9.

    Returns
    -------
    SimGranule
        ``img_path`` (02IMG), ``geo_path`` (03IMG), ``truth_path`` (CSV).

    Raises
    ------
    InputError
        Bad argument (the message names it).
    OutputError
        The folder cannot be created or written.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: expected a non-negative integer, got {seed!r}")
    if platform not in PLATFORMS:
        raise InputError(f"platform: expected one of {sorted(PLATFORMS)}, got {platform!r}")
    if not isinstance(n_lines, (int, np.integer)) or n_lines < 32 or n_lines % 32:
        raise InputError(f"n_lines: expected a positive multiple of 32, got {n_lines!r}")
    if not isinstance(n_pixels, (int, np.integer)) or not 1 <= n_pixels <= N_PIXELS_FULL:
        raise InputError(f"n_pixels: expected 1..{N_PIXELS_FULL}, got {n_pixels!r}")
    lon0, lat0 = (float(v) for v in center)
    if not (-180.0 <= lon0 <= 360.0 and abs(lat0) <= 80.0):
        raise InputError(f"center: expected (lon, lat) with |lat| <= 80, got {center!r}")
    if not (isinstance(collection, str) and len(collection) == 3 and collection.isdigit()):
        raise InputError(f"collection: expected three digits like '021', got {collection!r}")
    if not 1 <= complevel <= 9:
        raise InputError(f"complevel: expected 1..9, got {complevel}")
    if fires is None and (not isinstance(n_fires, (int, np.integer)) or n_fires < 0):
        raise InputError(f"n_fires: expected a non-negative integer, got {n_fires!r}")
    start = _to_utc(start) if start is not None else (DEFAULT_DAY_START if day else DEFAULT_NIGHT_START)
    start = start.replace(second=0, microsecond=0)

    n_scans = n_lines // DETECTORS_PER_SCAN
    samples = np.floor((np.arange(n_pixels) + 0.5) * N_PIXELS_FULL / n_pixels).astype(np.int64)
    geom = ScanGeometry((lon0, lat0), start, n_scans, samples, ascending=day)
    edge = [geom.ground_points([k] * 4, [0, 0, 31, 31], [0, n_pixels - 1] * 2) for k in (0, n_scans - 1)]
    s_all = np.concatenate([e["s_km"] for e in edge])
    q_all = np.concatenate([e["q_km"] for e in edge])
    scene = Scene(seed, (float(s_all.min()), float(s_all.max())), (float(q_all.min()), float(q_all.max())))
    bad = _defect_mask(n_scans, n_pixels, defects)
    fire_list = (_check_fires(fires, geom, bad, n_lines, n_pixels) if fires is not None
                 else _choose_fires(geom, scene, int(n_fires), int(seed), bad, n_lines, n_pixels))

    folder = check_output_dir(out_dir)
    production = start + _PRODUCTION_DELAY
    img_name = viirs_filename(platform, "02", start, collection, production)
    geo_name = viirs_filename(platform, "03", start, collection, production)
    meta = GranuleMeta(platform=platform, start=start, n_scans=n_scans, n_pixels=n_pixels, day=day,
                       ascending=day, collection=collection, seed=int(seed), production=production,
                       img_name=img_name, geo_name=geo_name,
                       scan_times=[geom.scan_time(k) for k in range(n_scans)])
    truth_path = folder / f"{Path(img_name).stem}.truth.csv"
    log.info("writing %s + %s (%d x %d, %d fires)", img_name, geo_name, n_lines, n_pixels, len(fire_list))
    with ExitStack() as stack:
        img_tmp = stack.enter_context(atomic_output(folder / img_name))
        geo_tmp = stack.enter_context(atomic_output(folder / geo_name))
        truth_tmp = stack.enter_context(atomic_output(truth_path))
        with GranuleWriter(img_tmp, geo_tmp, meta, complevel) as writer:
            rows = _write_blocks(writer, geom, scene, fire_list, bad, seed, day, defects)
        _write_truth(truth_tmp, rows)
    return SimGranule(folder / img_name, folder / geo_name, truth_path)


def _write_blocks(writer: GranuleWriter, geom: ScanGeometry, scene: Scene, fire_list: list[FireSpec],
                  bad: dict[int, np.ndarray], seed: int, day: bool, defects: bool) -> list[dict]:
    n_scans, n_pix = geom.n_scans, geom.samples.size
    by_line: dict[int, list[FireSpec]] = {}
    for f in fire_list:
        by_line.setdefault(f.line, []).append(f)
    l4_sat = planck_radiance(I4_WAVELENGTH_UM, I4_SATURATION_K)
    l5_sat = planck_radiance(I5_WAVELENGTH_UM, I5_SATURATION_K)
    sigma4 = NEDT_K * (planck_radiance(I4_WAVELENGTH_UM, 300.2) - planck_radiance(I4_WAVELENGTH_UM, 299.8)) / 0.4
    sigma5 = NEDT_K * (planck_radiance(I5_WAVELENGTH_UM, 300.2) - planck_radiance(I5_WAVELENGTH_UM, 299.8)) / 0.4
    lut4, lut5 = lut(I4_SCALE, I4_OFFSET, I4_WAVELENGTH_UM), lut(I5_SCALE, I5_OFFSET, I5_WAVELENGTH_UM)
    defect_list = _defects(n_scans, n_pix) if defects else []
    truth: list[dict] = []
    sza_range = [math.inf, -math.inf]
    uncert = None
    for b0 in range(0, n_scans, _BLOCK_SCANS):
        scans = range(b0, min(n_scans, b0 + _BLOCK_SCANS))
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7, b0]))
        parts = [geom.ground(k) for k in scans]
        g = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        nb = len(scans) * DETECTORS_PER_SCAN
        r = scene.render(g, geom.along_scan_km[None, :], rng, with_reflectance=day)
        l4 = r["l4"] + sigma4 * rng.standard_normal(g["lat"].shape)
        l5 = r["l5"] + sigma5 * rng.standard_normal(g["lat"].shape)
        area_km2 = np.tile(geom.pixel_area_km2, (len(scans), 1))
        l0 = b0 * DETECTORS_PER_SCAN
        fire_pixels = []
        for line in range(l0, l0 + nb):
            for f in by_line.get(line, ()):
                i, j = line - l0, f.sample
                p = min(1.0, f.area_m2 / (area_km2[i, j] * 1e6))
                bg4, bg5 = l4[i, j], l5[i, j]
                l4[i, j] = p * planck_radiance(I4_WAVELENGTH_UM, f.temperature_k) + (1.0 - p) * bg4
                l5[i, j] = p * planck_radiance(I5_WAVELENGTH_UM, f.temperature_k) + (1.0 - p) * bg5
                fire_pixels.append((f, i, j, p, bg4, bg5))

        c4 = encode_radiance(l4, I4_SCALE, I4_OFFSET)
        sat4 = l4 >= l4_sat
        fold = sat4 & (brightness_temperature(I4_WAVELENGTH_UM, np.where(sat4, l4, l4_sat)) >= I4_FOLD_BT_K)
        c4[sat4] = VALID_MAX_COUNT
        c4[fold] = 0
        qf4 = np.where(sat4 & ~fold, QF_SATURATION, 0).astype(np.uint16)
        sat5 = l5 >= l5_sat
        c5 = encode_radiance(np.minimum(l5, l5_sat), I5_SCALE, I5_OFFSET)
        qf5 = np.where(sat5, QF_SATURATION, 0).astype(np.uint16)
        counts = {"I04": c4, "I05": c5}
        flags = {"I04": qf4, "I05": qf5}
        if day:
            for k in (1, 2, 3):
                counts[f"I0{k}"] = encode_reflectance(r[f"rho{k}"])
                flags[f"I0{k}"] = np.zeros_like(qf4)

        for f, i, j, p, bg4, bg5 in fire_pixels:
            state = "folded" if fold[i, j] else "saturated" if sat4[i, j] else "normal"
            truth.append({
                "latitude": float(g["lat"][i, j]), "longitude": float(g["lon"][i, j]), "line": f.line,
                "sample": f.sample, "frp_mw": STEFAN_BOLTZMANN * f.area_m2 * f.temperature_k ** 4 / 1e6,
                "fire_area_m2": f.area_m2, "fire_temp_k": f.temperature_k,
                "pixel_area_m2": float(area_km2[i, j] * 1e6), "fire_fraction": p,
                "bg_bt_i4_k": float(brightness_temperature(I4_WAVELENGTH_UM, bg4)),
                "bg_bt_i5_k": float(brightness_temperature(I5_WAVELENGTH_UM, bg5)),
                "bt_i4_k": float(lut4[c4[i, j]]), "bt_i5_k": float(lut5[c5[i, j]]), "i4_state": state})

        deleted = np.tile(geom.bowtie, (len(scans), 1))
        for band in counts:
            counts[band][deleted] = 65533
            flags[band][deleted] |= QF_BOWTIE_DELETED
        for scan, rows_, cols, code, bit in defect_list:
            if scan in scans:
                sl = slice((scan - b0) * DETECTORS_PER_SCAN, (scan - b0 + 1) * DETECTORS_PER_SCAN)
                for band in counts:
                    counts[band][sl][rows_, cols] = code
                    flags[band][sl][rows_, cols] |= bit

        if uncert is None or uncert.shape[0] != nb:
            uncert = np.full((nb, n_pix), 3, dtype=np.int8)
        fields = {}
        for band in counts:
            fields[band] = counts[band]
            fields[f"{band}_quality_flags"] = flags[band]
            fields[f"{band}_uncert_index"] = uncert
        writer.write_block(l0, fields)
        writer.write_block(l0, {
            "latitude": g["lat"].astype(np.float32), "longitude": g["lon"].astype(np.float32),
            "height": np.rint(r["height"]).astype(np.int16), "land_water_mask": r["lwm"],
            "quality_flag": np.zeros((nb, n_pix), dtype=np.uint8),
            "solar_zenith": encode_angle(g["sza"]), "solar_azimuth": encode_angle(g["saa"]),
            "sensor_zenith": encode_angle(g["vza"]), "sensor_azimuth": encode_angle(g["vaa"])})
        for k in scans:
            writer.write_navigation(k, *geom.orbit_state(k))
        writer.track_extent(g["lat"], g["lon"], first=b0 == 0, last=scans[-1] == n_scans - 1)
        sza_range = [min(sza_range[0], float(g["sza"].min())), max(sza_range[1], float(g["sza"].max()))]
    writer.finish("Day" if sza_range[1] < 85.0 else "Night" if sza_range[0] >= 85.0 else "Both")
    truth.sort(key=lambda row: (row["line"], row["sample"]))
    return truth


def _write_truth(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="ascii") as fh:
        writer = csv.DictWriter(fh, fieldnames=TRUTH_COLUMNS)
        writer.writeheader()
        for row in rows:
            out = dict(row)
            for key in ("latitude", "longitude"):
                out[key] = f"{row[key]:.6f}"
            for key in ("frp_mw", "fire_area_m2", "fire_temp_k", "pixel_area_m2"):
                out[key] = f"{row[key]:.7g}"
            for key in ("bg_bt_i4_k", "bg_bt_i5_k", "bt_i4_k", "bt_i5_k"):
                out[key] = f"{row[key]:.4f}"
            out["fire_fraction"] = f"{row['fire_fraction']:.6e}"
            writer.writerow(out)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit(2); rsmon reports InputError
        raise InputError(f"sim viirs: {message}")


def _parse_start(text: str) -> datetime:
    try:
        return _to_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO time like 2023-06-10T05:24, got {text!r}") from None


def _parse_center(text: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LON,LAT, got {text!r}") from None
    return lon, lat


def main(argv: Iterable[str] | None = None) -> int:
    """``rsmon sim viirs --out DIR [--seed N] [--small] [--night] [--platform P] [--start T] [--center LON,LAT]
    [--fires N]``. Prints the three paths written."""
    parser = _Parser(prog="rsmon sim viirs",
                     description="Write a simulated VIIRS L1B I-band granule (02IMG + 03IMG) with fire truth.")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--small", action="store_true",
                        help=f"{SMALL_LINES} lines x {SMALL_PIXELS} pixels (every 8th pixel) for tests")
    parser.add_argument("--night", action="store_true", help="night granule (descending pass, no I01-I03)")
    parser.add_argument("--platform", default="NOAA-20", choices=sorted(PLATFORMS))
    parser.add_argument("--start", type=_parse_start, help="granule start, ISO UTC (default by day/night)")
    parser.add_argument("--center", type=_parse_center, default=(117.0, 34.5), help="LON,LAT (default 117,34.5)")
    parser.add_argument("--fires", type=int, default=300, help="number of random fires (default 300)")
    parser.add_argument("--no-defects", action="store_true", help="no Missing_EV/Cal_Fail/fill segments")
    args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    lines, pixels = (SMALL_LINES, SMALL_PIXELS) if args.small else (6464, N_PIXELS_FULL)
    out = simulate_granule(args.out, seed=args.seed, start=args.start, platform=args.platform, n_lines=lines,
                           n_pixels=pixels, center=args.center, n_fires=args.fires, day=not args.night,
                           defects=not args.no_defects)
    for path in (out.img_path, out.geo_path, out.truth_path):
        print(path)
    return 0
