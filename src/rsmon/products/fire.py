"""VIIRS 375 m active fires: contextual detection, confidence and FRP (FIRMS-style table).

The algorithm is that of Schroeder, Oliva, Giglio & Csiszar (2014), RSE 143:85-96 (VNP14IMG),
with every threshold a named field of :class:`FireParams` (sources there and in
../shared/reference/fire.md §1.1):

1. Screening (:mod:`rsmon.products.fire_screen`): I4/I5 status, day/night by solar zenith, cloud
   (day: BT5 and rho1 + rho2 tests; night: BT5 and BT4), water (``land_water_mask`` codes plus the
   day rho1 > rho2 > rho3 test), potential background fires, bright fire-free targets.
2. Fixed-threshold fires: saturated I4 (day also BT5 > 290, rho1 + rho2 < 0.7), folded I4
   (dT45 < 0 with hot BT5, or BT4 = 208 K with BT5 > 335 K at night), night BT4 > 320 K.
3. Candidates: day BT4 > BT4s = min(330, max(325, median BT4 of a 501 x 501 window)) or dT45 > 25;
   night BT4 > 295 or dT45 > 10.
4. Background window (:mod:`rsmon.kernels.fire`, only around candidates and fixed fires): 11 x 11
   growing to 31 x 31 until >= 10 valid pixels and >= 25 % of the window; valid = not cloud, not
   water, not a potential background fire, I4/I5 status 0, not saturated. Mean and mean absolute
   deviation of BT4, BT5, dT45, mean I4 radiance; mean/MAD of BT4 of the background fires.
5. Contextual tests, day desert-boundary rejection, day sun-glint rejection.
6. Confidence: ``high`` = saturated or folded I4; ``low`` = day fire with dT45 < 30 K or glint angle
   < 15 deg that is stand-alone and less than 15 K above a valid 3 x 3 neighbour (or has none);
   ``nominal`` = the rest. The night SAMA filter needs the 750 m M13 band and is not applied
   (the South Atlantic Anomaly does not reach China).
7. FRP by the MIR radiance method on I4 (:mod:`rsmon.products.fire_frp`), background radiance =
   mean I4 radiance of the valid background; NaN for folded pixels (their I4 radiance is
   meaningless) and where ``rad_i4`` is NaN, a lower bound for saturated ones.

:func:`detect_fires` uses the numba kernels; :func:`detect_numpy` computes the same with NumPy only
(reference and benchmark). Both compute the granule once (dask-backed input is fine) and return one
row per fire pixel.

The ``version`` column is ``"rsmon-<rsmon version>_<FireParams.version_tag>"``, e.g.
``"rsmon-0.1.0_NRT"``: rsmon detections are near-real-time products of this software, not FIRMS
collection versions.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
import pandas as pd
import xarray as xr

import rsmon
from rsmon.errors import InputError
from rsmon.kernels import fire as kernels
from rsmon.products.fire_frp import frp_mir, viirs_pixel_area_m2, viirs_pixel_size_km
from rsmon.products.fire_params import WATER_CODES, FireParams
from rsmon.products.fire_screen import (Scene, candidate_masks, contextual_fire, glint_angle_deg,
                                        glint_rejected, median_block_centres, screen_pixels)
from rsmon.provenance import parse_datetime

__all__ = ["FireParams", "WATER_CODES", "FIRE_COLUMNS", "detect_fires", "detect_numpy", "diagnose_pixels", "frp_mir",
           "viirs_pixel_area_m2", "viirs_pixel_size_km"]

log = logging.getLogger(__name__)

FLOAT_VARS = ("bt_i4", "bt_i5", "rad_i4", "refl_i1", "refl_i2", "refl_i3", "latitude", "longitude",
              "solar_zenith", "solar_azimuth", "sensor_zenith", "sensor_azimuth")
OTHER_VARS = ("land_water_mask", "i4_status", "i5_status", "i4_saturated")
REQUIRED_VARS = FLOAT_VARS + OTHER_VARS

#: Output columns, in order.
FIRE_COLUMNS = (
    "line", "sample", "latitude", "longitude", "bright_ti4", "bright_ti5", "frp", "confidence",
    "daynight", "scan", "track", "acq_date", "acq_time", "satellite", "instrument", "version",
    "bg_n", "bg_window", "bg_mean_i4", "bg_mad_i4", "bg_mean_dt", "bg_mad_dt", "saturated", "folded",
)

_BACKENDS = {
    "numba": (kernels.background_stats, kernels.clipped_median_blocks, kernels.ring_stats),
    "numpy": (kernels.background_stats_numpy, kernels.clipped_median_blocks_numpy, kernels.ring_stats_numpy),
}


def detect_fires(ds: xr.Dataset, params: FireParams | None = None) -> pd.DataFrame:
    """Detect active fires in one VIIRS I-band granule (numba kernels).

    Parameters
    ----------
    ds : xarray.Dataset
        Dims ("y", "x"); variables ``bt_i4``, ``bt_i5`` (K), ``rad_i4`` (W m-2 sr-1 um-1),
        ``refl_i1..3`` (0..1, NaN at night), ``latitude``, ``longitude``, ``solar_zenith``,
        ``solar_azimuth``, ``sensor_zenith``, ``sensor_azimuth`` (deg), ``land_water_mask`` (VNP03
        codes), ``i4_status``, ``i5_status`` (0 = valid), ``i4_saturated``; attrs
        ``time_coverage_start`` (ISO UTC), ``satellite``, ``instrument``. Coordinates ``y``/``x``,
        if present, give the granule line and the scan sample (0..6399) of each row/column; without
        them the array indices are used.
    params : FireParams, optional
        Thresholds (defaults: Schroeder et al. 2014).

    Returns
    -------
    pandas.DataFrame
        One row per fire pixel, columns :data:`FIRE_COLUMNS` (FIRMS names and units: K, MW, km;
        ``confidence`` 'low' | 'nominal' | 'high'; ``daynight`` 'D' | 'N'), sorted by line and
        sample. ``df.attrs`` holds ``granule_id`` and the parameters.

    Raises
    ------
    InputError
        A variable, dimension or attribute is missing.
    """
    return _detect(ds, params or FireParams(), "numba")


def detect_numpy(ds: xr.Dataset, params: FireParams | None = None) -> pd.DataFrame:
    """Same as :func:`detect_fires`, window statistics in pure NumPy (reference / benchmark)."""
    return _detect(ds, params or FireParams(), "numpy")


#: Columns of :func:`diagnose_pixels`, in order.
DIAGNOSE_COLUMNS = (
    "line", "sample", "bt4", "bt5", "dt", "refl_sum", "refl3", "glint_deg", "day", "ok", "cloud", "water",
    "bright", "bgfire", "saturated", "folded", "night_fixed", "candidate", "bg_n", "bg_window",
    "bg_mean_i4", "bg_mad_i4", "bg_mean_dt", "bg_mad_dt", "contextual", "desert", "glint", "fire",
    "rejected_by",
)


def diagnose_pixels(ds: xr.Dataset, lines, samples, params: FireParams | None = None) -> pd.DataFrame:
    """Debug path: every test of the algorithm for the given pixels, and which one rejected them.

    Parameters
    ----------
    ds : xarray.Dataset
        As for :func:`detect_fires`.
    lines, samples : sequences of int
        Granule line and scan sample (the ``y``/``x`` coordinate values, or array indices when the
        dataset has no coordinates) of the pixels to explain, e.g. missed truth fires.
    params : FireParams, optional

    Returns
    -------
    pandas.DataFrame
        One row per requested pixel, columns :data:`DIAGNOSE_COLUMNS`. ``rejected_by`` names the
        first failing step: ``"not in granule"``, ``"invalid I4/I5"``, ``"cloud"``,
        ``"water (not processed)"``, ``"bright target"``, ``"not a candidate"``,
        ``"no background window"``, ``"contextual tests"``, ``"desert boundary"``, ``"sun glint"``;
        ``""`` for a detected fire.
    """
    p = params or FireParams()
    rows = _detect(ds, p, "numba", diagnose=(np.asarray(lines, dtype=np.int64),
                                               np.asarray(samples, dtype=np.int64)))
    return rows


# ---------------------------------------------------------------------------------------------


def _load_scene(ds: xr.Dataset, p: FireParams) -> tuple[Scene, np.ndarray, np.ndarray]:
    """Check the contract, compute the granule once, return arrays + line and sample indices."""
    if not isinstance(ds, xr.Dataset):
        raise InputError(f"detect_fires: expected an xarray.Dataset, got {type(ds).__name__}")
    gid = ds.attrs.get("granule_id", "<no granule_id>")
    missing = [v for v in REQUIRED_VARS if v not in ds.variables]
    if missing:
        raise InputError(f"detect_fires: granule {gid} lacks variable(s) {', '.join(missing)}")
    for v in REQUIRED_VARS:
        if ds[v].dims != ("y", "x"):
            raise InputError(f"detect_fires: variable {v} of granule {gid} has dims {ds[v].dims}, "
                             "expected ('y', 'x')")
    loaded = ds[list(REQUIRED_VARS)].compute()  # one dask compute per granule
    f32 = {v: np.ascontiguousarray(loaded[v].values, dtype=np.float32) for v in FLOAT_VARS}
    s4 = np.ascontiguousarray(loaded["i4_status"].values, dtype=np.uint8)
    s5 = np.ascontiguousarray(loaded["i5_status"].values, dtype=np.uint8)
    sat = np.ascontiguousarray(loaded["i4_saturated"].values, dtype=bool) & (s4 == 0)
    bt4 = f32["bt_i4"]
    # A saturated I4 reads 367 K; a reader may have left it NaN.
    bt4 = np.where(sat & np.isnan(bt4), np.float32(p.saturation_bt4_k), bt4).astype(np.float32)
    bt5 = f32["bt_i5"]
    scene = Scene(
        bt4=bt4, bt5=bt5, dt=(bt4 - bt5).astype(np.float32), rad4=f32["rad_i4"],
        r1=f32["refl_i1"], r2=f32["refl_i2"], r3=f32["refl_i3"],
        solar_zenith=f32["solar_zenith"], solar_azimuth=f32["solar_azimuth"],
        sensor_zenith=f32["sensor_zenith"], sensor_azimuth=f32["sensor_azimuth"],
        land_water_mask=np.asarray(loaded["land_water_mask"].values), i4_status=s4, i5_status=s5,
        i4_saturated=sat, latitude=f32["latitude"], longitude=f32["longitude"])
    ny, nx = bt4.shape
    lines = np.asarray(ds["y"].values, dtype=np.int64) if "y" in ds.coords else np.arange(ny)
    samples = np.asarray(ds["x"].values, dtype=np.int64) if "x" in ds.coords else np.arange(nx)
    return scene, lines, samples


def _detect(ds: xr.Dataset, p: FireParams, backend: str, diagnose=None) -> pd.DataFrame:
    if not isinstance(p, FireParams):
        raise InputError(f"params: expected FireParams, got {type(p).__name__}")
    window_stats, clipped_median, ring = _BACKENDS[backend]
    start = _granule_start(ds)
    s, lines, samples = _load_scene(ds, p)
    m = screen_pixels(s, p)

    # Candidates; the dynamic day threshold BT4s is only needed where 325 < BT4 <= 330.
    cand, ambiguous = candidate_masks(s, m, p)
    ay, ax = np.nonzero(ambiguous)
    if ay.size:
        cy, cx, inv = median_block_centres(ay, ax, s.bt4.shape, p.candidate_day_median_block_px)
        bt4s = clipped_median(s.bt4, m.valid_bg, cy, cx, p.candidate_day_median_window_px // 2,
                              p.candidate_day_bt4_lo_k, p.candidate_day_bt4_hi_k,
                              p.candidate_day_median_min_valid, p.candidate_day_bt4_hi_k)
        passed = s.bt4[ay, ax] > bt4s[inv]
        cand[ay[passed], ax[passed]] = True
        log.debug("BT4s: %d ambiguous day pixels in %d blocks, %d candidates", ay.size, cy.size, passed.sum())

    fixed = m.fixed
    if diagnose is not None:
        return _diagnose(s, m, cand, lines, samples, *diagnose, p, window_stats)
    ys, xs = np.nonzero(cand | fixed)
    ys = ys.astype(np.int64)
    xs = xs.astype(np.int64)
    n_valid, window, n_bgfire, stats = window_stats(
        s.bt4, s.bt5, s.dt, s.rad4, m.valid_bg, m.bgfire, ys, xs, p.window_min_px, p.window_max_px,
        p.window_min_valid, float(p.window_min_valid_fraction), p.window_rule == "and")

    day = m.day[ys, xs]
    bt4 = s.bt4[ys, xs]
    bt5 = s.bt5[ys, xs]
    dt = s.dt[ys, xs]
    is_fixed = fixed[ys, xs]
    ctx, _desert = contextual_fire(day, bt4, bt5, dt, window, n_valid, n_bgfire, stats, s.r2[ys, xs], p)
    fire = is_fixed | (cand[ys, xs] & ctx)

    glint = glint_angle_deg(s.solar_zenith[ys, xs], s.solar_azimuth[ys, xs],
                            s.sensor_zenith[ys, xs], s.sensor_azimuth[ys, xs])
    fire &= ~(day & glint_rejected(glint, m.refl_sum[ys, xs], p))
    log.debug("%d candidates + fixed, %d fires", ys.size, int(fire.sum()))

    keep = np.nonzero(fire)[0]
    ys, xs, day, bt4, bt5, dt, glint = (a[keep] for a in (ys, xs, day, bt4, bt5, dt, glint))
    n_valid, window, stats = n_valid[keep], window[keep], stats[keep]
    saturated = m.saturated[ys, xs] | (s.i4_saturated[ys, xs])
    folded = m.folded[ys, xs]

    # Day low-confidence rule: stand-alone weak (dT45 < 30 K) or near-glint fires.
    fire_img = np.zeros(s.bt4.shape, bool)
    fire_img[ys, xs] = True
    adjacent, n_ring, max_ring = ring(s.bt4, m.ok & ~m.cloud & ~m.water, fire_img, ys, xs)
    with np.errstate(invalid="ignore"):
        weak = day & ((dt < p.lowconf_dt_max_k) | (glint < p.lowconf_glint_angle_deg))
        low = weak & ~adjacent & ((n_ring == 0) | (bt4 - max_ring < p.lowconf_ring_excess_k))
    confidence = np.where(saturated | folded, "high", np.where(low, "low", "nominal"))

    scan_km, track_km = viirs_pixel_size_km(samples[xs])
    with np.errstate(invalid="ignore"):
        frp = frp_mir(s.rad4[ys, xs], stats[:, 6], scan_km * track_km * 1e6, a=p.frp_a_i4)
    frp = np.where(folded, np.nan, frp)

    line = lines[ys]
    times = [start + timedelta(seconds=float(li // p.lines_per_scan) * p.scan_period_s) for li in line]
    df = pd.DataFrame({
        "line": line.astype(np.int64),
        "sample": samples[xs].astype(np.int64),
        "latitude": s.latitude[ys, xs].astype(np.float64),
        "longitude": s.longitude[ys, xs].astype(np.float64),
        "bright_ti4": bt4.astype(np.float64),
        "bright_ti5": bt5.astype(np.float64),
        "frp": frp.astype(np.float64),
        "confidence": pd.Series(confidence, dtype=object),
        "daynight": pd.Series(np.where(day, "D", "N"), dtype=object),
        "scan": np.asarray(scan_km, dtype=np.float64),
        "track": np.asarray(track_km, dtype=np.float64),
        "acq_date": pd.Series([t.strftime("%Y-%m-%d") for t in times], dtype=object),
        "acq_time": pd.Series([t.strftime("%H%M") for t in times], dtype=object),
        "satellite": str(ds.attrs.get("satellite", "")),
        "instrument": str(ds.attrs.get("instrument", "VIIRS")),
        "version": f"rsmon-{rsmon.__version__}_{p.version_tag}",
        "bg_n": n_valid.astype(np.int64),
        "bg_window": window.astype(np.int64),
        "bg_mean_i4": stats[:, 0],
        "bg_mad_i4": stats[:, 1],
        "bg_mean_dt": stats[:, 4],
        "bg_mad_dt": stats[:, 5],
        "saturated": saturated.astype(bool),
        "folded": folded.astype(bool),
    }, columns=list(FIRE_COLUMNS))
    df = df.sort_values(["line", "sample"], kind="stable").reset_index(drop=True)
    df.attrs["granule_id"] = ds.attrs.get("granule_id")
    df.attrs["fire_params"] = p.to_dict()
    return df


def _diagnose(s: Scene, m, cand, lines, samples, want_lines, want_samples, p: FireParams,
              window_stats) -> pd.DataFrame:
    """Per-pixel test outcomes for :func:`diagnose_pixels` (same steps as :func:`_detect`)."""
    line_pos = {int(v): i for i, v in enumerate(lines)}
    sample_pos = {int(v): i for i, v in enumerate(samples)}
    yi = np.array([line_pos.get(int(v), -1) for v in want_lines], dtype=np.int64)
    xi = np.array([sample_pos.get(int(v), -1) for v in want_samples], dtype=np.int64)
    inside = (yi >= 0) & (xi >= 0)
    ys, xs = np.where(inside, yi, 0), np.where(inside, xi, 0)
    n_valid, window, n_bgfire, stats = window_stats(
        s.bt4, s.bt5, s.dt, s.rad4, m.valid_bg, m.bgfire, ys, xs, p.window_min_px, p.window_max_px,
        p.window_min_valid, float(p.window_min_valid_fraction), p.window_rule == "and")
    day = m.day[ys, xs]
    bt4, bt5, dt = s.bt4[ys, xs], s.bt5[ys, xs], s.dt[ys, xs]
    ctx, desert = contextual_fire(day, bt4, bt5, dt, window, n_valid, n_bgfire, stats, s.r2[ys, xs], p)
    fixed = m.fixed[ys, xs]
    is_cand = cand[ys, xs]
    glint_deg = glint_angle_deg(s.solar_zenith[ys, xs], s.solar_azimuth[ys, xs],
                                s.sensor_zenith[ys, xs], s.sensor_azimuth[ys, xs])
    glint = day & glint_rejected(glint_deg, m.refl_sum[ys, xs], p)
    fire = inside & (fixed | (is_cand & ctx)) & ~glint
    reason = []
    for k in range(ys.size):
        y, x = ys[k], xs[k]
        if not inside[k]:
            r = "not in granule"
        elif not m.ok[y, x]:
            r = "invalid I4/I5"
        elif m.cloud[y, x]:
            r = "cloud"
        elif not m.processed[y, x]:
            r = "water (not processed)"
        elif fire[k]:
            r = ""
        elif fixed[k] or (is_cand[k] and ctx[k]):
            r = "sun glint"  # a fire by the tests, removed only by the day glint filter
        elif m.bright[y, x]:
            r = "bright target"
        elif not is_cand[k]:
            r = "not a candidate"
        elif window[k] == 0:
            r = "no background window"
        elif desert[k]:
            r = "desert boundary"
        else:
            r = "contextual tests"
        reason.append(r)
    return pd.DataFrame({
        "line": np.asarray(want_lines, dtype=np.int64), "sample": np.asarray(want_samples, dtype=np.int64),
        "bt4": bt4, "bt5": bt5, "dt": dt, "refl_sum": m.refl_sum[ys, xs], "refl3": s.r3[ys, xs],
        "glint_deg": glint_deg, "day": day, "ok": m.ok[ys, xs], "cloud": m.cloud[ys, xs],
        "water": m.water[ys, xs], "bright": m.bright[ys, xs], "bgfire": m.bgfire[ys, xs],
        "saturated": m.saturated[ys, xs], "folded": m.folded[ys, xs], "night_fixed": m.night_fixed[ys, xs],
        "candidate": is_cand, "bg_n": n_valid, "bg_window": window, "bg_mean_i4": stats[:, 0],
        "bg_mad_i4": stats[:, 1], "bg_mean_dt": stats[:, 4], "bg_mad_dt": stats[:, 5], "contextual": ctx,
        "desert": desert, "glint": glint, "fire": fire, "rejected_by": reason,
    }, columns=list(DIAGNOSE_COLUMNS))


def _granule_start(ds: xr.Dataset):
    value = ds.attrs.get("time_coverage_start")
    if value is None:
        raise InputError(f"detect_fires: granule {ds.attrs.get('granule_id', '<no granule_id>')} lacks "
                         "attribute time_coverage_start (ISO UTC)")
    return parse_datetime(value, "time_coverage_start")
