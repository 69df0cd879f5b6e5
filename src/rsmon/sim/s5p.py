"""Simulated Sentinel-5P/TROPOMI L2 NO2 files in the real file layout (HARP ``S5P_L2_NO2`` accepts them).

What is simulated
-----------------
* **Orbit.** Circular sun-synchronous orbit: altitude 824 km, inclination 98.7 deg, ascending node at
  13:29:40 mean local solar time, nodal period from the 16-day / 227-orbit repeat cycle. Orbit numbers
  and start times are tied to real file names (:data:`ORBIT_ANCHORS`). An orbit starts at "spacecraft
  midnight" (the orbit point nearest the anti-solar direction), so the day-side node follows about half
  an orbit later, shifted with the season: this reproduces the node phase 0.5022 that
  ``satellite_orbit_phase`` gives in the real CH4 orbit 07293 and the 53 s shift in orbit 07407.
* **Ground track and swath.** The sub-satellite point comes from the orbital elements plus Earth
  rotation (relative to the precessing orbit plane the Earth turns once per mean solar day), so tracks
  curve and reach 81.3 deg. The 450 across-track pixels sample the 108 deg field of view uniformly in
  scan angle; each line of sight lies in the plane perpendicular to the ground track, tilted back by a
  small "smile" fitted to real TROPOMI geolocation (rows bend back ~160 km at the swath edges), and
  meets a spherical Earth: pixels ~3.5 km wide at nadir and ~17 km at the edges (the x5 growth of the
  real orbit 07407), swath ~2650 km; scanlines 0.840 s (5.5 km) apart. The model lands within ~12 km
  (median) of the real pixels of the CH4 orbits 07293 and 07407. Corners are the same geometry half a
  pixel and half a scanline away (the midpoints in scan angle and time between neighbouring centres;
  at the swath edges the natural extrapolation), so neighbours share corners exactly; corner order as in
  the real files, counter-clockwise from the south-west corner in the ascending part of the orbit.
* **Values.** ``nitrogendioxide_tropospheric_column`` = :func:`truth_column` at the pixel centre plus
  Gaussian noise of the stated precision (~1e-5 mol m-2, larger for cloudy scenes and slant geometry).
  A cloud field with spatial structure (random plane waves on the sphere, new for every orbit) sets
  the cloud fraction, the cloud radiance fraction and ``qa_value``: 1.00 clear, 0.74 cloudy (cloud
  radiance fraction > 0.5), 0 with fill values for failed retrievals and for night (SZA > 88 deg).
  Slant, stratospheric and total columns, air-mass factors and averaging kernels are consistent with
  each other; large support fields that rsmon does not use are cheap (smooth, layer-only or
  bit-groomed to a few significant digits) so a full orbit stays under 100 MB.

Everything is deterministic for a given ``seed``; a scanline subset holds exactly the same values as
the same scanlines of the whole orbit.

References
----------
* Veefkind et al. (2012), TROPOMI on the ESA Sentinel-5 Precursor, Remote Sens. Environ. 120, 70-83:
  824 km, 13:30 ascending node, 108 deg field of view, 2600 km swath.
* sentinel-hub/sentinelhub-js ``DatasetsInfo.md``: Sentinel-5P orbital cycle 16 days, 227 orbits.
* Local real files (``shared/data``, also in ``seeds/s5p``):
  ``S5P_OFFL_L2__NO2____20200303T013547_..._12367_01_010302_...nc`` (global attributes,
  ``METADATA/GRANULE_DESCRIPTION``, PRODUCT dimension sizes);
  ``S5P_OFFL_L2__CH4____20190311T101655_..._07293_01_010202_...SUB.nc4`` (variable dtypes, fill values,
  attributes, corner order, ``delta_time``/``time_utc`` conventions, satellite track);
  ``..._CH4____20190319T110835_..._07407_...subset.nc4`` (a whole orbit of pixel centres: swath shape).
* HARP ``S5P_L2_NO2`` ingestion mapping (stcorp/harp ``doc/html/ingestions/S5P_L2_NO2.html``) for the
  variables HARP reads.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rsmon.errors import InputError
from rsmon.io.atomic import atomic_output, check_output_dir

# The orbit geometry and the file layout live in their own modules; their public constants (and the
# private helpers the tests use) stay importable from here.
from rsmon.sim.s5p_layout import (  # noqa: F401 - re-exports
    _MODES, _NO2, _TM5_A, _TM5_B, FILL_FLOAT, FILL_INT32, FILL_UINT8, FILL_UINT32, FLAG_CLOUD_WARNING,
    FLAG_SCD_ERROR, FLAG_SZA_RANGE_ERROR, MOL_M2_TO_MOLEC_CM2, N_LAYERS, _product_name, _write,
)
from rsmon.sim.s5p_orbit import (  # noqa: F401 - re-exports
    ALTITUDE_KM, EARTH_RADIUS_KM, EPOCH, FIELD_OF_VIEW_DEG, FIRST_SCANLINE_AFTER_START_S, INCLINATION_DEG,
    LTAN_HOURS, N_GROUND_PIXELS, N_SCANLINES, NADIR_TILT_DEG, NODAL_PERIOD_S, ORBIT_ANCHORS, SCANLINE_MS,
    SMILE_DEG, UTC, _check_bbox, _lonlat, _orbit_period_s, _OrbitGeometry, _Plan, _satellite_altitude_m,
    _scan_angles, _seconds, _subsolar, _to_utc, _zenith_azimuth, orbit_at, orbit_start_time, orbits_of_day,
    scanlines_crossing,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SOURCES",
    "EmissionSource",
    "main",
    "orbit_at",
    "orbit_start_time",
    "orbits_of_day",
    "simulate_day",
    "scanlines_crossing",
    "simulate_orbit",
    "truth_column",
]

# --------------------------------------------------------------------------------------------------
# Constants (each with its source)
# --------------------------------------------------------------------------------------------------

#: Tropospheric NO2 background, mol m-2 (~6e14 molec cm-2, remote continental).
BACKGROUND_MOL_M2 = 1.0e-5
#: Slant-column noise, mol m-2: TROPOMI NO2 SCD precision ~0.5-0.7e15 molec cm-2 (van Geffen et al.,
#: AMT 13, 1315, 2020), which gives tropospheric precisions of ~1e-5 mol m-2 after the AMF.
SLANT_NOISE_MOL_M2 = 1.1e-5
#: ``qa_value`` of good clear-sky retrievals, of cloudy ones (cloud radiance fraction > 0.5), of failures.
#: The 0.75 threshold removes cloudy scenes, errors and problematic retrievals (PRF S5P-MPC-KNMI-PRF-NO2).
QA_CLEAR, QA_CLOUDY, QA_FAILED = 100, 74, 0
#: Solar zenith angle above which no retrieval is done, degrees.
SZA_MAX_DEG = 88.0
#: Fraction of day-side pixels whose retrieval fails at random.
FAILURE_FRACTION = 0.002
#: Cloud albedo of the FRESCO/CRB cloud model (fixed 0.8 in the S5P CRB retrievals).
CLOUD_ALBEDO = 0.8

_NOISE_BLOCK = 64  # scanlines per independent random stream (absolute index, so subsets match)


# --------------------------------------------------------------------------------------------------
# Truth field
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmissionSource:
    """A Gaussian NO2 hot spot added to the background tropospheric column.

    Attributes
    ----------
    name : str
        City or region name.
    lon, lat : float
        Centre, degrees.
    peak_mol_m2 : float
        Column enhancement at the centre, mol m-2 (1e-4 mol m-2 = 6.0e15 molec cm-2).
    sigma_km : float
        Gaussian standard deviation, km (great-circle distance).
    """

    name: str
    lon: float
    lat: float
    peak_mol_m2: float
    sigma_km: float


#: Chinese cities (city-centre coordinates) with plausible winter-to-summer mean tropospheric NO2
#: enhancements of 1e-4 .. 3e-4 mol m-2 over the background (cf. TROPOMI city means in e.g. Liu et al.,
#: Sci. Adv. 6, eabc2992, 2020).
DEFAULT_SOURCES: list[EmissionSource] = [
    EmissionSource("Beijing", 116.40, 39.90, 2.2e-4, 30.0),
    EmissionSource("Tianjin", 117.20, 39.13, 1.8e-4, 25.0),
    EmissionSource("Tangshan", 118.18, 39.63, 2.0e-4, 22.0),
    EmissionSource("Shijiazhuang", 114.51, 38.04, 2.0e-4, 25.0),
    EmissionSource("Jinan", 117.00, 36.65, 1.6e-4, 22.0),
    EmissionSource("Zhengzhou", 113.65, 34.76, 1.6e-4, 25.0),
    EmissionSource("Xi'an", 108.94, 34.34, 1.3e-4, 22.0),
    EmissionSource("Nanjing", 118.80, 32.06, 1.7e-4, 22.0),
    EmissionSource("Shanghai", 121.47, 31.23, 2.6e-4, 35.0),
    EmissionSource("Hangzhou", 120.16, 30.27, 1.5e-4, 22.0),
    EmissionSource("Wuhan", 114.30, 30.59, 1.6e-4, 25.0),
    EmissionSource("Chengdu", 104.07, 30.67, 1.2e-4, 25.0),
    EmissionSource("Chongqing", 106.55, 29.56, 1.2e-4, 22.0),
    EmissionSource("Changsha", 112.94, 28.23, 1.1e-4, 18.0),
    EmissionSource("Fuzhou", 119.30, 26.08, 1.0e-4, 15.0),
    EmissionSource("Xiamen", 118.09, 24.48, 1.0e-4, 15.0),
    EmissionSource("Kunming", 102.83, 24.88, 1.0e-4, 15.0),
    EmissionSource("Guangzhou", 113.26, 23.13, 2.0e-4, 30.0),
    EmissionSource("Shenzhen", 114.06, 22.54, 1.5e-4, 20.0),
    EmissionSource("Hong Kong", 114.17, 22.32, 1.2e-4, 15.0),
    EmissionSource("Nanning", 108.37, 22.82, 1.0e-4, 15.0),
]


def truth_column(lon, lat, sources: Sequence[EmissionSource] | None = DEFAULT_SOURCES) -> np.ndarray:
    """Noise-free tropospheric NO2 column the simulator draws from, mol m-2.

    ``BACKGROUND_MOL_M2`` plus, for each source, ``peak * exp(-d^2 / (2 sigma^2))`` with ``d`` the
    great-circle distance (spherical Earth, radius ``EARTH_RADIUS_KM``).

    Parameters
    ----------
    lon, lat : array_like
        Degrees; broadcast against each other. Longitudes may use any 360-degree convention.
    sources : sequence of EmissionSource, optional
        Defaults to :data:`DEFAULT_SOURCES`; ``None`` also means the defaults.

    Returns
    -------
    numpy.ndarray
        float64, the broadcast shape of ``lon`` and ``lat``.
    """
    if sources is None:
        sources = DEFAULT_SOURCES
    lon, lat = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    out = np.full(lon.shape, BACKGROUND_MOL_M2, dtype=np.float64)
    for src in sources:
        reach_deg = 6.0 * src.sigma_km / (EARTH_RADIUS_KM * math.pi / 180.0)
        dlon = (lon - src.lon + 180.0) % 360.0 - 180.0
        near = np.abs(lat - src.lat) < reach_deg
        coslat = max(math.cos(math.radians(min(abs(src.lat) + reach_deg, 89.9))), 1e-3)
        near &= np.abs(dlon) * coslat < reach_deg
        if not near.any():
            continue
        la1, la2 = math.radians(src.lat), np.radians(lat[near])
        hav = np.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * np.cos(la2) * np.sin(np.radians(dlon[near]) / 2) ** 2
        dist_km = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))
        out[near] += src.peak_mol_m2 * np.exp(-0.5 * (dist_km / src.sigma_km) ** 2)
    return out


# --------------------------------------------------------------------------------------------------
# Scene: clouds, noise and the per-block fields
# --------------------------------------------------------------------------------------------------


class _CloudField:
    """Cloud fraction with spatial structure: random plane waves on the unit sphere, one set per orbit.

    Wavelengths 150-1500 km with a red spectrum; the field is normalised to unit variance and mapped to
    a cloud fraction that is 0 on ~60 % and > 0.13 (cloud radiance fraction > 0.5) on ~30 % of pixels.
    """

    def __init__(self, seed: int, orbit: int, n_modes: int = 40):
        rng = np.random.default_rng(np.random.SeedSequence([seed, orbit, 11]))
        wavelength_km = np.exp(rng.uniform(math.log(150.0), math.log(1500.0), n_modes))
        k = 2.0 * math.pi * EARTH_RADIUS_KM / wavelength_km
        direction = rng.normal(size=(n_modes, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        self.k = direction * k[:, None]
        self.phase = rng.uniform(0.0, 2.0 * math.pi, n_modes)
        amp = wavelength_km ** 0.5
        self.amp = amp / math.sqrt(0.5 * np.sum(amp**2))

    def gaussian(self, xyz: np.ndarray) -> np.ndarray:
        out = np.zeros(xyz.shape[:-1])
        for km, ph, am in zip(self.k, self.phase, self.amp):
            out += am * np.cos(xyz @ km + ph)
        return out

    def cloud_fraction(self, xyz: np.ndarray) -> np.ndarray:
        return np.clip(0.45 * (self.gaussian(xyz) - 0.3), 0.0, 1.0)


def _smooth(xyz: np.ndarray, k: Sequence[float], phase: float) -> np.ndarray:
    """A cheap smooth field in [-1, 1] (one plane wave on the sphere)."""
    return np.cos(xyz @ np.asarray(k, dtype=np.float64) + phase)


def _random_rows(plan: _Plan, k0: int, k1: int, stream: int, kind: str) -> np.ndarray:
    """Random numbers (k1 - k0, 450) for absolute scanlines [k0, k1).

    Drawn in blocks of ``_NOISE_BLOCK`` scanlines whose streams are keyed by (seed, orbit, block,
    stream), so a scanline subset gets exactly the numbers of the same scanlines of the whole orbit.
    ``kind`` is "normal" or "uniform".
    """
    rows = []
    for b in range(k0 // _NOISE_BLOCK, (k1 - 1) // _NOISE_BLOCK + 1):
        rng = np.random.default_rng(np.random.SeedSequence([plan.seed, plan.geometry.number, b, stream]))
        shape = (_NOISE_BLOCK, N_GROUND_PIXELS)
        block = rng.standard_normal(shape) if kind == "normal" else rng.random(shape)
        base = b * _NOISE_BLOCK
        rows.append(block[max(k0, base) - base:min(k1, base + _NOISE_BLOCK) - base])
    return np.concatenate(rows, axis=0)


def _f4(a: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    out = np.asarray(a, dtype=np.float32)
    if valid is not None:
        out = np.where(valid, out, FILL_FLOAT)
    return out


def _block(plan: _Plan, clouds: _CloudField, k0: int, k1: int) -> dict[str, np.ndarray]:
    """All per-scanline and per-pixel fields for absolute scanlines [k0, k1)."""
    geo = plan.geometry
    k = np.arange(k0, k1)
    t = plan.scan_times(k)
    pts, nadir = geo.ground_points(t, _scan_angles())
    k_edges = np.arange(k0, k1 + 1) - 0.5
    cpts, _ = geo.ground_points(plan.scan_times(k_edges), _scan_angles(edges=True))
    lon, lat = _lonlat(pts)
    clon, clat = _lonlat(cpts)
    # corners: 0 = (k-1/2, j-1/2), 1 = (k-1/2, j+1/2), 2 = (k+1/2, j+1/2), 3 = (k+1/2, j-1/2)
    lon_b = np.stack([clon[:-1, :-1], clon[:-1, 1:], clon[1:, 1:], clon[1:, :-1]], axis=-1)
    lat_b = np.stack([clat[:-1, :-1], clat[:-1, 1:], clat[1:, 1:], clat[1:, :-1]], axis=-1)

    sun = _subsolar(t)[:, None, :]
    sza, saa = _zenith_azimuth(pts, sun)
    k_alt = (EARTH_RADIUS_KM + ALTITUDE_KM) / EARTH_RADIUS_KM
    to_sat = k_alt * nadir[:, None, :] - pts
    vza, vaa = _zenith_azimuth(pts, to_sat)
    sat_lon, sat_lat = _lonlat(nadir)
    phase = (t - geo.start_s) / geo.period_s
    u = 2.0 * math.pi * (t - geo.anx_s) / geo.period_s
    descending = np.cos(u) < 0.0

    day = sza <= SZA_MAX_DEG
    fail = (_random_rows(plan, k0, k1, 3, "uniform") < FAILURE_FRACTION) & day
    valid = day & ~fail

    # clouds and surface
    cf = clouds.cloud_fraction(pts)
    xyz = pts
    albedo = 0.05 + 0.02 * _smooth(xyz, (3.0, 7.0, 2.0), 0.3)
    i_clear = 0.10 + albedo  # Rayleigh path radiance + surface, relative units
    crf = cf * CLOUD_ALBEDO / (cf * CLOUD_ALBEDO + (1.0 - cf) * i_clear)
    cloudy = crf > 0.5
    p_surf = 101325.0 * (1.0 + 0.008 * _smooth(xyz, (4.0, -3.0, 6.0), 1.1))
    p_cloud = np.minimum(72000.0 + 15000.0 * _smooth(xyz, (9.0, -4.0, 6.0), 0.5), p_surf - 2000.0)

    # columns and air-mass factors
    mu = 1.0 / np.cos(np.radians(np.minimum(sza, 89.0))) + 1.0 / np.cos(np.radians(vza))
    amf_strat = mu
    amf_clear = 0.56 * mu
    amf_cloudy = 0.25 * mu
    amf_trop = crf * amf_cloudy + (1.0 - crf) * amf_clear
    trop_true = truth_column(lon, lat, plan.sources)
    strat = 4.5e-5 + 1.5e-5 * np.sin(np.radians(lat)) ** 2 + 2.0e-6 * _smooth(xyz, (2.0, 1.0, 3.0), 0.7)
    amf_total = (strat * amf_strat + trop_true * amf_trop) / (strat + trop_true)
    scd_noise = SLANT_NOISE_MOL_M2 * (1.0 + 0.3 * (mu / 2.0 - 1.0))
    scd = trop_true * amf_trop + strat * amf_strat + scd_noise * _random_rows(plan, k0, k1, 1, "normal")
    trop = (scd - strat * amf_strat) / amf_trop
    trop_prec = np.hypot(scd_noise / amf_trop, 0.25 * np.maximum(trop_true, 0.0))
    trop_prec_kernel = scd_noise / amf_trop
    strat_prec = np.full_like(strat, 2.0e-6)
    total = scd / amf_total
    total_prec = np.hypot(scd_noise / amf_total, 0.1 * total)

    # tropopause: ~100 hPa in the tropics to ~300 hPa at the poles
    p_tropopause = 10000.0 + 20000.0 * np.sin(np.radians(lat)) ** 2
    p_interfaces = _TM5_A[None, None, :] + _TM5_B[None, None, :] * p_surf[..., None]
    tp_index = (np.sum(p_interfaces[..., 1:] > p_tropopause[..., None], axis=-1)).astype(np.int32)

    qa = np.where(cloudy, QA_CLOUDY, QA_CLEAR).astype(np.uint8)
    qa[~valid] = QA_FAILED
    flags = np.where(cloudy, FLAG_CLOUD_WARNING, 0).astype(np.uint32)
    flags[fail] = FLAG_SCD_ERROR
    flags[~day] = FLAG_SZA_RANGE_ERROR
    geo_flags = (np.where(descending[:, None], 4, 0) | np.where(sza > 90.0, 8, 0)).astype(np.uint8)

    wind_u = 4.0 + 5.0 * _smooth(xyz, (2.0, -5.0, 4.0), 0.2)
    wind_v = 3.0 * _smooth(xyz, (-4.0, 2.0, 5.0), 2.0)
    ai = -0.8 + 0.4 * _smooth(xyz, (5.0, 5.0, -2.0), 0.4)

    t_ms = plan.first_scan_ms + k.astype(np.int64) * plan.scanline_ms
    return {
        "_t_ms": t_ms,
        "latitude": _f4(lat),
        "longitude": _f4(lon),
        "qa_value": qa,
        f"{_NO2}_tropospheric_column": _f4(trop, valid),
        f"{_NO2}_tropospheric_column_precision": _f4(trop_prec, valid),
        f"{_NO2}_tropospheric_column_precision_kernel": _f4(trop_prec_kernel, valid),
        "air_mass_factor_troposphere": _f4(amf_trop, valid),
        "air_mass_factor_total": _f4(amf_total, valid),
        "tm5_tropopause_layer_index": np.where(valid, tp_index, FILL_INT32).astype(np.int32),
        "satellite_latitude": _f4(sat_lat),
        "satellite_longitude": _f4(sat_lon),
        "satellite_altitude": _f4(_satellite_altitude_m(sat_lat)),
        "satellite_orbit_phase": _f4(phase),
        "solar_zenith_angle": _f4(sza),
        "solar_azimuth_angle": _f4(saa),
        "viewing_zenith_angle": _f4(vza),
        "viewing_azimuth_angle": _f4(vaa),
        "latitude_bounds": _f4(lat_b),
        "longitude_bounds": _f4(lon_b),
        "geolocation_flags": geo_flags,
        "processing_quality_flags": flags,
        f"{_NO2}_slant_column_density": _f4(scd, valid),
        f"{_NO2}_slant_column_density_precision": _f4(np.broadcast_to(scd_noise, scd.shape), valid),
        f"{_NO2}_stratospheric_column": _f4(strat, valid),
        f"{_NO2}_stratospheric_column_precision": _f4(strat_prec, valid),
        f"{_NO2}_total_column": _f4(total, valid),
        f"{_NO2}_total_column_precision": _f4(total_prec, valid),
        f"{_NO2}_total_column_precision_kernel": _f4(scd_noise / amf_total, valid),
        f"{_NO2}_summed_total_column": _f4(trop + strat, valid),
        f"{_NO2}_summed_total_column_precision": _f4(np.hypot(trop_prec, strat_prec), valid),
        "air_mass_factor_stratosphere": _f4(amf_strat, valid),
        "air_mass_factor_clear": _f4(amf_clear, valid),
        "air_mass_factor_cloudy": _f4(amf_cloudy, valid),
        "cloud_fraction_crb_nitrogendioxide_window": _f4(cf, day),
        "cloud_radiance_fraction_nitrogendioxide_window": _f4(crf, day),
        "chi_square": _f4(np.full(lat.shape, 1.2), valid),
        "surface_altitude": _f4(np.zeros(lat.shape)),
        "surface_altitude_precision": _f4(np.zeros(lat.shape)),
        "surface_classification": np.zeros(lat.shape, dtype=np.uint8),
        "o22cld_cloud_fraction_crb": _f4(np.clip(1.05 * cf, 0.0, 1.0), day),
        "o22cld_cloud_fraction_crb_precision": _f4(np.full(lat.shape, 0.02), day),
        "o22cld_cloud_pressure_crb": _f4(np.minimum(p_cloud + 3000.0, p_surf), day),
        "o22cld_cloud_pressure_crb_precision": _f4(np.full(lat.shape, 5000.0), day),
        "o22cld_cloud_height_crb": _f4(7400.0 * np.log(p_surf / np.minimum(p_cloud + 3000.0, p_surf)), day),
        "o22cld_cloud_height_crb_precision": _f4(np.full(lat.shape, 500.0), day),
        "o22cld_cloud_albedo_crb": _f4(np.full(lat.shape, CLOUD_ALBEDO), day),
        "o22cld_surface_albedo": _f4(albedo + 0.005, day),
        "surface_pressure": _f4(p_surf),
        "surface_albedo_nitrogendioxide_window": _f4(albedo),
        "surface_albedo": _f4(albedo),
        "cloud_pressure_crb": _f4(p_cloud, day),
        "cloud_albedo_crb": _f4(np.full(lat.shape, CLOUD_ALBEDO), day),
        "cloud_fraction_crb": _f4(cf, day),
        "scene_albedo": _f4(cf * CLOUD_ALBEDO + (1.0 - cf) * albedo, day),
        "apparent_scene_pressure": _f4(cf * p_cloud + (1.0 - cf) * p_surf, day),
        "snow_ice_flag": np.zeros(lat.shape, dtype=np.uint8),
        "aerosol_index_354_388": _f4(ai, day),
        "aerosol_index_340_380": _f4(ai * 0.9, day),
        "eastward_wind": _f4(wind_u),
        "northward_wind": _f4(wind_v),
        "_valid": valid,
    }


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _check_processor(processor: str) -> str:
    if not (isinstance(processor, str) and len(processor) == 6 and processor.isdigit()):
        raise InputError(f"processor: expected six digits like '020400', got {processor!r}")
    return processor


def simulate_orbit(out_dir, orbit: int, *, seed: int = 0, start: datetime | None = None,
                   scanline_range: tuple[int, int] | None = None, n_scanlines: int = N_SCANLINES,
                   sources: list[EmissionSource] | None = None, mode: str = "OFFL",
                   processor: str = "020400", complevel: int = 2) -> Path:
    """Write one orbit (or the scanline slice [a, b) of it, like a GES DISC subset, when scanline_range is given).

    Parameters
    ----------
    out_dir : path
        Output folder (created if needed).
    orbit : int
        Absolute orbit number; fixes the start time (:func:`orbit_start_time`) unless ``start`` is given.
    seed : int
        Seed of all random parts (noise, clouds, failures); same seed, same values.
    start : datetime, optional
        Orbit start (UTC; naive means UTC), overriding the time derived from ``orbit``.
    scanline_range : (int, int), optional
        Keep absolute scanlines ``a <= k < b`` only. The ``scanline`` coordinate keeps the orbit's
        indices, and the values equal those of the same scanlines in the whole orbit.
    n_scanlines : int
        Scanlines spanning the day-side part of the orbit: 4172 gives the real 0.840 s (5.5 km)
        sampling; fewer give proportionally longer scanlines (coarse pixels), for fast tests.
    sources : list of EmissionSource, optional
        Hot spots of the truth field (default :data:`DEFAULT_SOURCES`).
    mode : {"OFFL", "NRTI", "RPRO"}
        Processing mode in the file name and ``ProcessingMode``.
    processor : str
        Six-digit processor version in the file name, e.g. "020400".
    complevel : int
        zlib level (1-9) of every variable (shuffle on).

    Returns
    -------
    pathlib.Path
        The file written, named like the real products.

    Raises
    ------
    InputError
        Bad orbit, range, mode, processor or scanline count.
    OutputError
        The folder cannot be created or written.
    """
    if mode not in _MODES:
        raise InputError(f"mode: expected one of {sorted(_MODES)}, got {mode!r}")
    _check_processor(processor)
    if not isinstance(n_scanlines, (int, np.integer)) or n_scanlines < 2:
        raise InputError(f"n_scanlines: expected an integer >= 2, got {n_scanlines!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: expected a non-negative integer, got {seed!r}")
    if not 1 <= complevel <= 9:
        raise InputError(f"complevel: expected 1..9, got {complevel}")
    first, stop = (0, n_scanlines) if scanline_range is None else (int(scanline_range[0]), int(scanline_range[1]))
    if not 0 <= first < stop <= n_scanlines:
        raise InputError(f"scanline_range: expected 0 <= a < b <= {n_scanlines}, got {scanline_range!r}")
    start_dt = orbit_start_time(orbit) if start is None else _to_utc(start)
    period = _orbit_period_s(orbit) if start is None else NODAL_PERIOD_S
    geo = _OrbitGeometry(number=int(orbit), start_s=_seconds(start_dt), period_s=period)
    plan = _Plan(geometry=geo, n_scanlines=int(n_scanlines), first=first, stop=stop, seed=int(seed),
                 sources=tuple(DEFAULT_SOURCES if sources is None else sources), mode=mode, processor=processor)
    folder = check_output_dir(out_dir)
    path = folder / f"{_product_name(plan)}.nc"
    log.info("writing %s (scanlines %d..%d of %d)", path.name, first, stop, n_scanlines)
    clouds = _CloudField(plan.seed, geo.number)
    with atomic_output(path) as tmp:
        _write(tmp, plan, complevel, functools.partial(_block, plan, clouds))
    return path


def simulate_day(out_dir, day: date, *, seed: int = 0,
                 bbox: tuple[float, float, float, float] | None = (100, 10, 132, 30),
                 full_orbits: bool = False, sources=None) -> list[Path]:
    """~14 orbits of that UTC day; when bbox is given and full_orbits is False, only the orbits that cross the bbox, each cut to the scanlines that cross it (fast for the demo); full_orbits=True writes whole 4172-scanline orbits.

    Parameters
    ----------
    out_dir : path
        Output folder.
    day : datetime.date
        UTC day; the orbits that start on it (:func:`orbits_of_day`, 14 or 15).
    seed : int
        Seed; orbit ``n`` of this day uses the same seed (its streams are keyed by orbit number too).
    bbox : (W, S, E, N), optional
        Degrees (E > 180 for a bbox across the antimeridian); ``None`` writes every orbit whole.
    full_orbits : bool
        Write every orbit of the day whole, even when ``bbox`` is given.
    sources : list of EmissionSource, optional
        Hot spots (default :data:`DEFAULT_SOURCES`).

    Returns
    -------
    list of pathlib.Path
        Files written, in orbit order (empty if no orbit crosses the bbox).
    """
    if isinstance(day, datetime):
        day = day.date()
    if not isinstance(day, date):
        raise InputError(f"day: expected a datetime.date, got {day!r}")
    if bbox is not None:
        bbox = _check_bbox(bbox)
    return _simulate_orbits(out_dir, orbits_of_day(day), seed=seed, bbox=bbox, full_orbits=full_orbits,
                            sources=sources)


def _simulate_orbits(out_dir, orbits: Iterable[int], *, seed: int, bbox, full_orbits: bool, sources=None,
                     mode: str = "OFFL", processor: str = "020400") -> list[Path]:
    paths = []
    for orbit in orbits:
        scan_range = None
        if bbox is not None and not full_orbits:
            scan_range = scanlines_crossing(orbit, bbox)
            if scan_range is None:
                log.info("orbit %d does not cross %s: skipped", orbit, bbox)
                continue
        paths.append(simulate_orbit(out_dir, orbit, seed=seed, scanline_range=scan_range, sources=sources,
                                    mode=mode, processor=processor))
    return paths


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit(2); rsmon reports InputError
        raise InputError(f"sim s5p: {message}")


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _parse_bbox(text: str):
    if text.strip().lower() in ("none", "all", "global"):
        return None
    try:
        values = [float(p) for p in text.split(",")]
        if len(values) != 4:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected four numbers W,S,E,N, got {text!r}") from None
    try:
        return _check_bbox(values)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Iterable[str] | None = None) -> int:
    """``rsmon sim s5p --date YYYY-MM-DD [--seed N] [--bbox W,S,E,N] [--full-orbits] [--orbit N] -o OUTDIR``.

    Prints the paths written, one per line. Raises :class:`~rsmon.errors.InputError` for bad arguments.
    """
    parser = _Parser(prog="rsmon sim s5p",
                     description="Write simulated Sentinel-5P TROPOMI L2 NO2 files in the real layout.")
    parser.add_argument("--date", type=_parse_date, help="UTC day (YYYY-MM-DD): its ~14 orbits")
    parser.add_argument("--orbit", type=int, help="one absolute orbit instead of a day")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--bbox", type=_parse_bbox, default="100,10,132,30",
                        help="W,S,E,N: keep orbits crossing it, cut to it (default 100,10,132,30; 'none': whole orbits)")
    parser.add_argument("--full-orbits", action="store_true", help="write whole 4172-scanline orbits")
    parser.add_argument("--mode", default="OFFL", choices=sorted(_MODES))
    parser.add_argument("--processor", default="020400", help="six-digit processor version (default 020400)")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    _check_processor(args.processor)
    if args.orbit is not None:
        if args.date is not None and args.orbit not in orbits_of_day(args.date):
            raise InputError(f"--orbit {args.orbit} does not start on {args.date} "
                             f"(orbits of that day: {orbits_of_day(args.date)})")
        orbits = [args.orbit]
    elif args.date is not None:
        orbits = orbits_of_day(args.date)
    else:
        raise InputError("sim s5p: give --date YYYY-MM-DD or --orbit N")
    paths = _simulate_orbits(args.out, orbits, seed=args.seed, bbox=args.bbox, full_orbits=args.full_orbits,
                             mode=args.mode, processor=args.processor)
    if not paths:
        print(f"no orbit crosses bbox {args.bbox}; nothing written", file=sys.stderr)
    for p in paths:
        print(p)
    return 0
