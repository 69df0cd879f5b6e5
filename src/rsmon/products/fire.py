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
(reference and benchmark). Both compute each line of the granule once (dask-backed input is fine)
and return one row per fire pixel; :func:`detect_fires` works in line blocks with a halo
(``block_lines``, bounded memory, same result as the whole granule at once).

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

#: Default line block of :func:`detect_fires` (16 scans; half the reader's dask chunk, which is computed once).
DEFAULT_BLOCK_LINES = 512

_BACKENDS = {
    "numba": (kernels.background_stats, kernels.clipped_median_blocks, kernels.ring_stats),
    "numpy": (kernels.background_stats_numpy, kernels.clipped_median_blocks_numpy, kernels.ring_stats_numpy),
}


def detect_fires(ds: xr.Dataset, params: FireParams | None = None, *,
                 block_lines: int | None = DEFAULT_BLOCK_LINES) -> pd.DataFrame:
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
    block_lines : int or None, optional
        Process the granule in blocks of this many lines (default 512), each with a halo of
        ``window_max_px // 2`` lines from its neighbours, so that peak memory is a few blocks
        instead of the whole granule (``None``: whole granule at once). The result is identical to
        ``block_lines=None`` (whole granule at once): every per-pixel test and background window
        sees the same pixels, and the day threshold BT4s is computed after the last block from the
        granule-wide BT4 and background mask (kept, 5 bytes per pixel).

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
    p = params or FireParams()
    if block_lines is None:
        return _detect(ds, p, "numba")
    if isinstance(block_lines, bool) or not isinstance(block_lines, (int, np.integer)) or block_lines < 1:
        raise InputError(f"block_lines: expected a positive integer or None, got {block_lines!r}")
    return _detect_blocks(ds, p, int(block_lines))


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


def _check_contract(ds: xr.Dataset) -> None:
    """Raise :class:`InputError` if a variable or dimension of the contract is missing."""
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


def _scene(arrays, p: FireParams) -> Scene:
    """Scene from computed arrays (``{name: ndarray}`` for :data:`REQUIRED_VARS`)."""
    f32 = {v: np.ascontiguousarray(arrays[v], dtype=np.float32) for v in FLOAT_VARS}
    s4 = np.ascontiguousarray(arrays["i4_status"], dtype=np.uint8)
    s5 = np.ascontiguousarray(arrays["i5_status"], dtype=np.uint8)
    sat = np.ascontiguousarray(arrays["i4_saturated"], dtype=bool) & (s4 == 0)
    bt4 = f32["bt_i4"]
    # A saturated I4 reads 367 K; a reader may have left it NaN.
    bt4 = np.where(sat & np.isnan(bt4), np.float32(p.saturation_bt4_k), bt4).astype(np.float32)
    bt5 = f32["bt_i5"]
    return Scene(
        bt4=bt4, bt5=bt5, dt=(bt4 - bt5).astype(np.float32), rad4=f32["rad_i4"],
        r1=f32["refl_i1"], r2=f32["refl_i2"], r3=f32["refl_i3"],
        solar_zenith=f32["solar_zenith"], solar_azimuth=f32["solar_azimuth"],
        sensor_zenith=f32["sensor_zenith"], sensor_azimuth=f32["sensor_azimuth"],
        land_water_mask=np.asarray(arrays["land_water_mask"]), i4_status=s4, i5_status=s5,
        i4_saturated=sat, latitude=f32["latitude"], longitude=f32["longitude"])


def _line_sample_index(ds: xr.Dataset, ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    lines = np.asarray(ds["y"].values, dtype=np.int64) if "y" in ds.coords else np.arange(ny)
    samples = np.asarray(ds["x"].values, dtype=np.int64) if "x" in ds.coords else np.arange(nx)
    return lines, samples


def _load_scene(ds: xr.Dataset, p: FireParams) -> tuple[Scene, np.ndarray, np.ndarray]:
    """Check the contract, compute the granule once, return arrays + line and sample indices."""
    _check_contract(ds)
    loaded = ds[list(REQUIRED_VARS)].compute()  # one dask compute per granule
    scene = _scene({v: loaded[v].values for v in REQUIRED_VARS}, p)
    ny, nx = scene.bt4.shape
    lines, samples = _line_sample_index(ds, ny, nx)
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
    f = _fire_pixels(s, m, cand, fixed, ys, xs, p, window_stats)
    log.debug("%d candidates + fixed, %d fires", ys.size, f["ys"].size)

    # Day low-confidence rule needs the 3 x 3 neighbourhood: other fires, valid ring pixels.
    fire_img = np.zeros(s.bt4.shape, bool)
    fire_img[f["ys"], f["xs"]] = True
    adjacent, n_ring, max_ring = ring(s.bt4, m.ok & ~m.cloud & ~m.water, fire_img, f["ys"], f["xs"])
    return _fire_table(ds, p, start, lines[f["ys"]], samples[f["xs"]], f, adjacent, n_ring, max_ring)


def _fire_pixels(s: Scene, m, cand, fixed, ys, xs, p: FireParams, window_stats) -> dict:
    """Background window, contextual tests and glint rejection of the pixels (ys, xs).

    ``cand`` and ``fixed`` are (y, x) masks. Returns the per-pixel values of the pixels that are
    fires, as a dict of 1-D arrays (``stats`` 2-D), ``ys``/``xs`` indexing the scene.
    """
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

    keep = np.nonzero(fire)[0]
    ys, xs = ys[keep], xs[keep]
    return {
        "ys": ys, "xs": xs, "day": day[keep], "bt4": bt4[keep], "bt5": bt5[keep], "dt": dt[keep],
        "glint": glint[keep], "n_valid": n_valid[keep], "window": window[keep], "stats": stats[keep],
        "saturated": m.saturated[ys, xs] | s.i4_saturated[ys, xs], "folded": m.folded[ys, xs],
        "rad4": s.rad4[ys, xs], "latitude": s.latitude[ys, xs], "longitude": s.longitude[ys, xs],
    }


def _fire_table(ds: xr.Dataset, p: FireParams, start, line, sample, f: dict, adjacent, n_ring,
                max_ring) -> pd.DataFrame:
    """Confidence, FRP and the FIRMS-style table of the fire pixels ``f`` (see :func:`_fire_pixels`)."""
    day, bt4, bt5, dt, glint = f["day"], f["bt4"], f["bt5"], f["dt"], f["glint"]
    n_valid, window, stats = f["n_valid"], f["window"], f["stats"]
    saturated, folded = f["saturated"], f["folded"]
    # Day low-confidence rule: stand-alone weak (dT45 < 30 K) or near-glint fires.
    with np.errstate(invalid="ignore"):
        weak = day & ((dt < p.lowconf_dt_max_k) | (glint < p.lowconf_glint_angle_deg))
        low = weak & ~adjacent & ((n_ring == 0) | (bt4 - max_ring < p.lowconf_ring_excess_k))
    confidence = np.where(saturated | folded, "high", np.where(low, "low", "nominal"))

    scan_km, track_km = viirs_pixel_size_km(sample)
    with np.errstate(invalid="ignore"):
        frp = frp_mir(f["rad4"], stats[:, 6], scan_km * track_km * 1e6, a=p.frp_a_i4)
    frp = np.where(folded, np.nan, frp)

    times = [start + timedelta(seconds=float(li // p.lines_per_scan) * p.scan_period_s) for li in line]
    df = pd.DataFrame({
        "line": line.astype(np.int64),
        "sample": sample.astype(np.int64),
        "latitude": f["latitude"].astype(np.float64),
        "longitude": f["longitude"].astype(np.float64),
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


def _detect_blocks(ds: xr.Dataset, p: FireParams, block_lines: int) -> pd.DataFrame:
    """:func:`_detect` (numba) in line blocks with a halo; identical result, bounded memory.

    The dataset is computed piece by piece (along its dask line chunks, else by block), each line
    once, keeping at most the current block and one more piece in memory; each block is processed with ``halo`` lines of its neighbours on each side, enough for the largest
    background window and the 3 x 3 ring. Every screening test is per pixel, so it gives the same
    masks as on the whole granule. The only larger neighbourhood is the 501 x 501 BT4s median of
    the ambiguous day pixels: their background statistics are computed as if they were candidates,
    those that would be fires are kept, and BT4s is computed after the last block, on the same
    granule-wide BT4 and background mask and for the same tiles as the whole-granule run.
    """
    if not isinstance(p, FireParams):
        raise InputError(f"params: expected FireParams, got {type(p).__name__}")
    window_stats, clipped_median, ring = _BACKENDS["numba"]
    start = _granule_start(ds)
    _check_contract(ds)
    ny, nx = int(ds.sizes["y"]), int(ds.sizes["x"])
    if block_lines >= ny:
        return _detect(ds, p, "numba")
    lines, samples = _line_sample_index(ds, ny, nx)
    halo = max(p.window_max_px // 2, 1)
    sub = ds[list(REQUIRED_VARS)]
    try:  # compute dask input along its own line chunks: a chunk cut in two is decoded twice
        load_ends = np.cumsum(sub.chunksizes.get("y", ())).tolist()
    except ValueError:  # variables chunked differently
        load_ends = []

    bt4_all = np.empty((ny, nx), np.float32)   # for the BT4s median, after the last block
    valid_all = np.empty((ny, nx), bool)
    chunks: list[tuple[int, int, dict]] = []   # computed line ranges still needed: (lo, hi, arrays)
    next_lo = 0
    pieces: list[tuple[dict, np.ndarray, np.ndarray, np.ndarray]] = []
    for a in range(0, ny, block_lines):
        b = min(a + block_lines, ny)
        lo, hi = max(a - halo, 0), min(b + halo, ny)
        while next_lo < hi:  # compute the dataset piece by piece, each line once
            c_hi = min(next((e for e in load_ends if e > next_lo), next_lo + block_lines), ny)
            loaded = sub.isel(y=slice(next_lo, c_hi)).compute()
            chunks.append((next_lo, c_hi, {v: loaded[v].values for v in REQUIRED_VARS}))
            del loaded
            next_lo = c_hi
        arrays = {v: np.concatenate([c[2][v][max(lo - c[0], 0):max(min(hi, c[1]) - c[0], 0)]
                                     for c in chunks if c[0] < hi]) for v in REQUIRED_VARS}
        # Keep only what the next block needs (its upper halo and beyond): at most one computed
        # chunk besides this block's arrays.
        need = max(b - halo, 0)
        chunks = [c if c[0] >= need else
                  (need, c[1], {v: c[2][v][need - c[0]:].copy() for v in REQUIRED_VARS})
                  for c in chunks if c[1] > need]
        s = _scene(arrays, p)
        del arrays
        m = screen_pixels(s, p)
        cand, ambiguous = candidate_masks(s, m, p)
        r0, r1 = a - lo, b - lo
        bt4_all[a:b] = s.bt4[r0:r1]
        valid_all[a:b] = m.valid_bg[r0:r1]
        fixed = m.fixed
        ys, xs = np.nonzero((cand | ambiguous | fixed)[r0:r1])
        ys = ys.astype(np.int64) + r0
        xs = xs.astype(np.int64)
        f = _fire_pixels(s, m, cand | ambiguous, fixed, ys, xs, p, window_stats)
        _, n_ring, max_ring = ring(s.bt4, m.ok & ~m.cloud & ~m.water, np.zeros(s.bt4.shape, bool),
                                   f["ys"], f["xs"])
        amb = ambiguous[f["ys"], f["xs"]]
        f["ys"] = f["ys"] + lo
        pieces.append((f, amb, n_ring, max_ring))
        log.debug("lines %d-%d: %d fires (%d depend on BT4s)", a, b, f["ys"].size, int(amb.sum()))
        del s, m, cand, ambiguous, fixed
    del chunks

    f = {k: np.concatenate([pc[0][k] for pc in pieces]) for k in pieces[0][0]}
    amb = np.concatenate([pc[1] for pc in pieces])
    n_ring = np.concatenate([pc[2] for pc in pieces])
    max_ring = np.concatenate([pc[3] for pc in pieces])
    del pieces

    # BT4s of the tiles holding ambiguous would-be fires (same tiles, same inputs as _detect).
    keep = np.ones(amb.size, bool)
    ia = np.nonzero(amb)[0]
    if ia.size:
        cy, cx, inv = median_block_centres(f["ys"][ia], f["xs"][ia], (ny, nx), p.candidate_day_median_block_px)
        bt4s = clipped_median(bt4_all, valid_all, cy, cx, p.candidate_day_median_window_px // 2,
                              p.candidate_day_bt4_lo_k, p.candidate_day_bt4_hi_k,
                              p.candidate_day_median_min_valid, p.candidate_day_bt4_hi_k)
        keep[ia] = f["bt4"][ia] > bt4s[inv]
    del valid_all
    f = {k: v[keep] for k, v in f.items()}
    n_ring, max_ring = n_ring[keep], max_ring[keep]

    fire_img = np.zeros((ny, nx), bool)
    fire_img[f["ys"], f["xs"]] = True
    adjacent, _, _ = ring(bt4_all, fire_img, fire_img, f["ys"], f["xs"])
    del fire_img, bt4_all
    return _fire_table(ds, p, start, lines[f["ys"]], samples[f["xs"]], f, adjacent, n_ring, max_ring)


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
