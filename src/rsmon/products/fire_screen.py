"""Image-wide pixel tests of the VIIRS 375 m fire algorithm (vectorised NumPy).

Everything here is per pixel or per candidate and shared by the numba path and the NumPy reference
of :mod:`rsmon.products.fire`; only window statistics differ between the two (:mod:`rsmon.kernels.fire`).
Thresholds come from :class:`~rsmon.products.fire_params.FireParams` (Schroeder et al. 2014).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsmon.products.fire_params import FireParams


@dataclass
class Scene:
    """The granule's arrays, computed once (float32 / uint8 / bool, dims (y, x))."""

    bt4: np.ndarray
    bt5: np.ndarray
    dt: np.ndarray
    rad4: np.ndarray
    r1: np.ndarray
    r2: np.ndarray
    r3: np.ndarray
    solar_zenith: np.ndarray
    solar_azimuth: np.ndarray
    sensor_zenith: np.ndarray
    sensor_azimuth: np.ndarray
    land_water_mask: np.ndarray
    i4_status: np.ndarray
    i5_status: np.ndarray
    i4_saturated: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray


@dataclass
class PixelMasks:
    """Boolean (y, x) masks of the initial screening."""

    ok: np.ndarray          # both I4 and I5 valid (status 0, finite)
    day: np.ndarray
    cloud: np.ndarray
    water: np.ndarray
    bgfire: np.ndarray      # potential background fire
    valid_bg: np.ndarray    # usable as background (and in the BT4s median)
    saturated: np.ndarray   # saturated fixed-threshold fire
    folded: np.ndarray      # folded fixed-threshold fire
    night_fixed: np.ndarray  # night BT4 > 320 fixed-threshold fire
    bright: np.ndarray      # bright fire-free target (day)
    processed: np.ndarray   # tested for fire at all
    refl_sum: np.ndarray    # rho1 + rho2 (NaN at night)

    @property
    def fixed(self) -> np.ndarray:
        return self.saturated | self.folded | self.night_fixed


def glint_angle_deg(solar_zenith, solar_azimuth, sensor_zenith, sensor_azimuth):
    """Sun-glint angle (deg): cos g = cos tv cos ts - sin tv sin ts cos phi (Schroeder et al. 2014).

    ``phi`` = sensor azimuth - solar azimuth (both the azimuth of the sun / sensor as seen from the
    pixel, VNP03 convention), so the specular direction (sensor opposite the sun, equal zeniths)
    gives 0.
    """
    ts = np.radians(np.asarray(solar_zenith, dtype=np.float64))
    tv = np.radians(np.asarray(sensor_zenith, dtype=np.float64))
    phi = np.radians(np.asarray(sensor_azimuth, dtype=np.float64) - np.asarray(solar_azimuth, dtype=np.float64))
    cg = np.cos(tv) * np.cos(ts) - np.sin(tv) * np.sin(ts) * np.cos(phi)
    return np.degrees(np.arccos(np.clip(cg, -1.0, 1.0)))


def screen_pixels(s: Scene, p: FireParams) -> PixelMasks:
    """Cloud, water, potential background fires, fixed-threshold fires and bright targets."""
    with np.errstate(invalid="ignore"):
        ok = (s.i4_status == 0) & (s.i5_status == 0) & np.isfinite(s.bt4) & np.isfinite(s.bt5)
        day = s.solar_zenith < p.night_solar_zenith_min_deg
        night = ~day
        bt4, bt5, dt = s.bt4, s.bt5, s.dt
        rsum = s.r1 + s.r2
        water = np.isin(s.land_water_mask, np.asarray(p.water_codes, dtype=np.int64))
        if p.reflectance_water_test:
            water |= day & (s.r1 > s.r2) & (s.r2 > s.r3)
        cloud_day = ((bt5 < p.cloud_bt5_max_k)
                     | ((rsum > p.cloud_day_refl_sum_high) & (bt5 < p.cloud_day_bt5_high_k))
                     | ((rsum > p.cloud_day_refl_sum_mid) & (bt5 < p.cloud_day_bt5_mid_k)))
        cloud_night = (bt5 < p.cloud_bt5_max_k) & (bt4 < p.cloud_night_bt4_max_k)
        cloud = ok & np.where(day, cloud_day, cloud_night)
        bgfire = ok & ~cloud & np.where(
            day, (bt4 > p.bgfire_day_bt4_min_k) & (dt > p.bgfire_day_dt_min_k),
            (bt4 > p.bgfire_night_bt4_min_k) & (dt > p.bgfire_night_dt_min_k))
        sat = ok & s.i4_saturated
        valid_bg = ok & ~cloud & ~water & ~bgfire & ~sat
        processed = ok & ~cloud
        if not p.process_water_pixels:
            processed &= ~water
        saturated = processed & sat & (night | ((bt5 > p.saturated_day_bt5_min_k)
                                                & (rsum < p.saturated_day_refl_sum_max)))
        folded = processed & ~sat & (
            ((dt < 0) & np.where(day, bt5 > p.folded_day_bt5_min_k, bt5 > p.folded_night_bt5_min_k))
            | (night & (bt4 <= p.folded_bt4_k + p.folded_bt4_tolerance_k)
               & (bt5 > p.folded_night_low_bt5_min_k)))
        night_fixed = processed & night & ~sat & ~folded & (bt4 > p.night_fixed_bt4_min_k)
        bright = day & (rsum > p.bright_refl_sum_min) & (bt5 < p.bright_bt5_max_k) & (s.r3 > p.bright_refl3_min) \
            & (s.r3 > s.r2) & (s.r2 > p.bright_refl2_min) & (bt4 <= p.bright_bt4_max_k)
    return PixelMasks(ok=ok, day=day, cloud=cloud, water=water, bgfire=bgfire, valid_bg=valid_bg,
                      saturated=saturated, folded=folded, night_fixed=night_fixed, bright=bright,
                      processed=processed, refl_sum=rsum)


def candidate_masks(s: Scene, m: PixelMasks, p: FireParams):
    """Candidates that need no BT4s, and the day pixels whose candidacy depends on BT4s.

    Returns ``(sure, ambiguous)``: ``sure`` = night candidates and day pixels with BT4 above the
    upper clip of BT4s or dT > 25 K; ``ambiguous`` = day pixels with lo < BT4 <= hi (BT4s decides).
    Fixed-threshold fires and bright targets are not candidates.
    """
    with np.errstate(invalid="ignore"):
        pre = m.processed & ~m.bright & ~m.fixed
        night = pre & ~m.day & ((s.bt4 > p.candidate_night_bt4_min_k) | (s.dt > p.candidate_night_dt_min_k))
        day_sure = pre & m.day & ((s.bt4 > p.candidate_day_bt4_hi_k) | (s.dt > p.candidate_day_dt_min_k))
        ambiguous = pre & m.day & ~day_sure & (s.bt4 > p.candidate_day_bt4_lo_k)
    return night | day_sure, ambiguous


def median_block_centres(ys, xs, shape, block):
    """Unique blocks of the pixels (ys, xs), their centres, and each pixel's block index."""
    ny, nx = shape
    by = ys // block
    bx = xs // block
    key = by * ((nx + block - 1) // block) + bx
    uniq, inverse = np.unique(key, return_inverse=True)
    nbx = (nx + block - 1) // block
    cy = np.minimum((uniq // nbx) * block + block // 2, ny - 1).astype(np.int64)
    cx = np.minimum((uniq % nbx) * block + block // 2, nx - 1).astype(np.int64)
    return cy, cx, inverse


def contextual_fire(day, bt4, bt5, dt, window, n_valid, n_bgfire, stats, r2, p: FireParams):
    """Contextual tests and the day desert-boundary rejection for candidates (1-D arrays).

    ``stats`` columns as :data:`rsmon.kernels.fire.STAT_NAMES`. Returns ``(fire, desert)``.
    """
    m4, d4, m5, d5, mdt, ddt = (stats[:, i] for i in range(6))
    mf, df = stats[:, 7], stats[:, 8]
    with np.errstate(invalid="ignore"):
        ok = window > 0
        day_fire = ((dt > mdt + p.ctx_day_dt_mad * ddt) & (dt > mdt + p.ctx_day_dt_offset_k)
                    & (bt4 > m4 + p.ctx_day_bt4_mad * d4)
                    & ((bt5 > m5 + d5 - p.ctx_day_bt5_offset_k) | (df > p.ctx_day_bgfire_mad_min_k)))
        night_fire = ((dt > mdt + p.ctx_night_dt_mad * ddt) & (dt > mdt + p.ctx_night_dt_offset_k)
                      & (bt4 > m4 + p.ctx_night_bt4_mad * d4))
        desert = (day & (n_bgfire > p.desert_bgfire_fraction_min * n_valid)
                  & (n_bgfire > p.desert_bgfire_count_min) & (r2 > p.desert_refl2_min)
                  & (mf < p.desert_bgfire_bt4_max_k) & (df < p.desert_bgfire_mad_max_k)
                  & (bt4 < mf + p.desert_bgfire_mad_mult * df))
        fire = ok & np.where(day, day_fire & ~desert, night_fire)
    return fire, ok & desert


def glint_rejected(glint_deg, refl_sum, p: FireParams):
    """Day sun-glint false alarm (Schroeder et al. 2014): True = reject."""
    with np.errstate(invalid="ignore"):
        return (((glint_deg < p.glint_strict_angle_deg) & (refl_sum > p.glint_strict_refl_sum_min))
                | ((glint_deg < p.glint_loose_angle_deg) & (refl_sum > p.glint_loose_refl_sum_min)))
