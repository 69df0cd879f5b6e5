"""Co-registration of two dates: the global sub-pixel shift between a scene and the reference grid.

Two dates that are not on the same ground by a fraction of a pixel put false change along every
edge (field borders, roads, shores) and blur real change: change vector analysis compares each
pixel with whatever lies under it on the other date. Sentinel-2's multi-temporal registration
requirement is 0.3 pixel (2 sigma) at 10 m, met by products processed against the Global Reference
Image (processing baseline 03.00 and later, 2021 onwards); older products, the OSCD pairs among
them, and pairs of two sensors (Landsat and Sentinel-2) are off by up to a pixel or more
(ESA, "Sentinel-2 L1C Data Quality Report"; Gascon et al. 2017, Remote Sensing 9(6):584;
Storey et al. 2016, Remote Sensing of Environment 186:121-122 for Landsat 8 and Sentinel-2).

:func:`estimate_shift` measures the shift the way AROSICS' global co-registration does (Scheffler
et al. 2017, Remote Sensing 9(7):676): phase correlation of matching windows, refined to a
twentieth of a pixel by the upsampled cross-correlation of Guizar-Sicairos et al. (2008, Optics
Letters 33(2):156; ``skimage.registration.phase_cross_correlation``). AROSICS matches one
window; here up to nine windows spread over the overlap, in the near-infrared and red bands,
each an independent estimate, and the shift is their median, used only when most estimates
agree, so a window dominated by cloud or by change does not move the scene.

The shift is applied by the aligner as a correction of the scene's georeference
(:func:`rsmon.io.optical_align.align_pair` ``shift=``): one resampling onto the reference grid
(bilinear, nearest for QA layers), or none when the corrected offset is a whole number of pixels.
Products are pure: nothing is written here.
"""

from __future__ import annotations

import gc
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import xarray as xr

from rsmon.errors import InputError

__all__ = ["CoregParams", "CoregResult", "align_coregistered", "estimate_shift"]

#: Bands matched, in order of preference (each present in both scenes gives its own estimates).
MATCH_BANDS = ("nir", "red")


@dataclass(frozen=True)
class CoregParams:
    """Thresholds of the co-registration (one set for all scenes; docs/validation_change.md).

    Attributes
    ----------
    min_shift_px : float
        A shift shorter than this (after-grid pixels) is left alone: 0.25, under Sentinel-2's
        0.3 pixel multi-temporal requirement, where the estimate's own spread (0.05-0.1 px) and the
        slight smoothing of a bilinear resampling outweigh the gain (measured on the validation
        sites: shifts of 0.1 px changed F1 by less than 0.006, either way).
    max_shift_px : float
        A longer shift is not applied and is reported: a georeference error of that size (an
        image in the wrong UTM zone, a bad manual correction) needs a look, not a silent fix.
    window_px : int
        Side of a matching window: 512 pixels, halved (down to ``min_window_px``) while the scene
        cannot hold ``grid`` of them along its shorter side. On the simulated Sentinel-2 tile (wide
        uniform fields) 256-pixel windows scattered by up to 0.3 px where 512-pixel ones agreed to
        0.05 px; on the small validation scenes 256-pixel windows (AROSICS' default) gave the
        shifts of whole-scene matching with up to 18 estimates instead of 2.
    min_window_px : int
        The smallest window (256).
    grid : int
        Windows per side of the overlap (up to grid x grid windows).
    min_valid : float
        A window is matched only when this fraction of its pixels is valid on both dates (a band
        value, and clear by the scene's QA layer when the reader gives one).
    agree_px : float
        An estimate agrees when it lies within this of the median, on both axes.
    min_agree : float
        The shift is used when at least this fraction of the estimates agree (and at least two do).
    upsample : int
        Sub-pixel precision of the peak, 1/upsample pixel.
    """

    min_shift_px: float = 0.25
    max_shift_px: float = 5.0
    window_px: int = 512
    min_window_px: int = 256
    grid: int = 3
    min_valid: float = 0.9
    agree_px: float = 0.25
    min_agree: float = 0.6
    upsample: int = 20

    def __post_init__(self) -> None:
        checks = {"min_shift_px": self.min_shift_px >= 0, "max_shift_px": self.max_shift_px > self.min_shift_px,
                  "window_px": self.window_px >= self.min_window_px >= 32, "grid": self.grid >= 1, "min_valid": 0 < self.min_valid <= 1,
                  "agree_px": self.agree_px > 0, "min_agree": 0 < self.min_agree <= 1, "upsample": self.upsample >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise InputError(f"CoregParams: invalid {', '.join(bad)} ({self})")


@dataclass
class CoregResult:
    """The shift of one scene against the reference grid.

    ``dy``, ``dx``: pixels of the reference grid by which the scene's content must move (down,
    right) to lie on the reference; ``estimates``: the per-window, per-band estimates (dy, dx);
    ``agreeing``: how many lie within ``agree_px`` of the median; ``applied``: whether the
    aligner corrects the scene by it; ``reason``: why, in words."""

    dy: float = 0.0
    dx: float = 0.0
    estimates: list[tuple[float, float]] = field(default_factory=list)
    agreeing: int = 0
    applied: bool = False
    reason: str = ""
    pixel_size: float | None = None

    @property
    def shift_px(self) -> float:
        return float(np.hypot(self.dy, self.dx))

    def as_dict(self) -> dict:
        out = asdict(self)
        out["estimates"] = len(self.estimates)
        out["shift_px"] = round(self.shift_px, 3)
        out["shift_m"] = None if self.pixel_size is None else round(self.shift_px * self.pixel_size, 2)
        out["dy"], out["dx"] = round(self.dy, 3), round(self.dx, 3)
        out.pop("pixel_size")
        return out


def _windows(shape: tuple[int, int], side: int, grid: int) -> list[tuple[slice, slice]]:
    """Up to grid x grid windows of ``side`` pixels spread evenly inside ``shape``, away from its
    borders (where a tile's swath edge leaves no data); one window spans the whole extent along an
    axis shorter than ``side``. On a large scene the starts are moved to multiples of 512, so each
    window reads few of the readers' blocks."""
    def starts(n: int) -> list[int]:
        if n <= side:
            return [0]
        k = min(grid, n // side)
        raw = np.linspace(0, n - side, k + 2)[1:-1]
        if n >= 4 * 512:
            raw = [round(s / 512.0) * 512 if round(s / 512.0) * 512 + side <= n else s for s in raw]
        return sorted({int(s) for s in raw})

    (h, w) = shape
    return [(slice(y, min(y + side, h)), slice(x, min(x + side, w))) for y in starts(h) for x in starts(w)]


def _pixel_metres(ds: xr.Dataset) -> float | None:
    """The grid's pixel width in metres (:func:`rsmon.io.optical_align.grid_distance`); None without a CRS."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    from rsmon.io.optical_align import grid_distance

    if ds.rio.crs is None:
        return None
    return abs(float(ds.rio.transform().a)) / grid_distance(ds, 1.0)


def _prepared(a: np.ndarray, b: np.ndarray, min_valid: float):
    """The two windows with invalid pixels set to each window's mean, apodised by a Hann window
    (so the frame's edges do not correlate), or None when too few pixels are valid on both."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.mean() < min_valid:
        return None
    taper = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    out = []
    for v in (a, b):
        v = np.where(ok, v, np.nan).astype(np.float64)
        mean = np.nanmean(v)
        v = np.where(ok, v - mean, 0.0)
        if not np.any(v):
            return None  # a flat window (water, fill) has nothing to match
        out.append(v * taper)
    return out


def _window_values(moving: xr.Dataset, fixed: xr.Dataset, bands: list[str], windows: list, qa: bool) -> list[tuple]:
    """Per band and window: the moving and fixed values (and their ``clear`` masks with ``qa``).
    Read by the scenes' own block access when both have it (a reader's scene, or one aligned onto
    the grid, :class:`rsmon.io.optical_align.AlignedBlocks`: each window once, only these bands),
    else computed from the dask graphs in one go."""
    import dask

    from rsmon.io.optical_raster import BlockSource

    names = [*bands, *(["clear"] if qa else [])]
    sources = [BlockSource.of(ds, names, ds[bands[0]].chunks) if ds[bands[0]].chunks else None
               for ds in (moving, fixed)]
    if all(source is not None for source in sources):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
            read = list(pool.map(lambda job: job[0].read(*job[1], bands=bands),
                                 [(source, win) for win in windows for source in sources]))
        by_window = [(read[2 * k], read[2 * k + 1]) for k in range(len(windows))]
        return [(m[b], f[b], *((m["clear"], f["clear"]) if qa else ())) for b in bands for m, f in by_window]
    paused = not gc.isenabled()
    lazy = [(moving[b].data[win], fixed[b].data[win], *((moving["clear"].data[win], fixed["clear"].data[win])
                                                        if qa else ()))
            for b in bands for win in windows]
    if paused:
        # dask's slicing (dask.utils.disable_gc, a decorator that took the collector's state when
        # dask was imported) turns the collector back on: keep a run's pause (rsmon.workflow.redline)
        gc.disable()
    return list(dask.compute(*lazy))


def estimate_shift(moving: xr.Dataset, fixed: xr.Dataset, params: CoregParams | None = None) -> CoregResult:
    """The sub-pixel shift of ``moving`` against ``fixed``, both on ``fixed``'s grid (``moving``
    from :func:`rsmon.io.optical_align.align_pair`). Only the matching windows are read.

    Returns a :class:`CoregResult`; ``applied`` says whether it passes the thresholds of ``params``
    (see :class:`CoregParams`), ``reason`` why not."""
    from skimage.registration import phase_cross_correlation

    p = params or CoregParams()
    bands = [b for b in MATCH_BANDS if b in moving.data_vars and b in fixed.data_vars]
    pixel = _pixel_metres(fixed)
    if not bands:
        return CoregResult(reason=f"no band to match (needs one of {', '.join(MATCH_BANDS)} in both scenes)",
                           pixel_size=pixel)
    if moving.sizes["y"] != fixed.sizes["y"] or moving.sizes["x"] != fixed.sizes["x"]:
        raise InputError("estimate_shift: the scenes must be on one grid (align_pair first)")
    shape = (fixed.sizes["y"], fixed.sizes["x"])
    side = p.window_px
    while side // 2 >= p.min_window_px and min(shape) < p.grid * side:
        side //= 2
    windows = _windows(shape, side, p.grid)
    # the readers' QA (SCL, QA_PIXEL) says which pixels are clear: cloud and shadow are not matched
    qa = "clear" in moving.data_vars and "clear" in fixed.data_vars
    values = _window_values(moving, fixed, bands, windows, qa)
    estimates = []
    for a, b, *clear in values:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if clear:
            a, b = np.where(clear[0], a, np.nan), np.where(clear[1], b, np.nan)
        pair = _prepared(a, b, p.min_valid)
        if pair is None:
            continue
        shift, _, _ = phase_cross_correlation(pair[1], pair[0], upsample_factor=p.upsample, normalization=None)
        estimates.append((float(shift[0]), float(shift[1])))
    result = CoregResult(estimates=estimates, pixel_size=pixel)
    if len(estimates) < 2:
        result.reason = (f"{len(estimates)} of {len(values)} matching windows clear on both dates; "
                         "need at least 2")
        return result
    est = np.array(estimates)
    dy, dx = np.median(est, axis=0)
    agree = int(np.sum(np.all(np.abs(est - (dy, dx)) <= p.agree_px, axis=1)))
    result.dy, result.dx, result.agreeing = float(dy), float(dx), agree
    if agree < 2 or agree < p.min_agree * len(estimates):
        result.reason = f"the estimates disagree ({agree} of {len(estimates)} within {p.agree_px} px of their median)"
    elif result.shift_px < p.min_shift_px:
        result.reason = f"shift {result.shift_px:.2f} px is below {p.min_shift_px} px: left as it is"
    elif result.shift_px > p.max_shift_px:
        result.reason = (f"shift {result.shift_px:.2f} px is above {p.max_shift_px} px: not corrected "
                         "(check the scenes' georeference)")
    else:
        result.applied = True
        result.reason = f"corrected by {result.shift_px:.2f} px ({agree} of {len(estimates)} estimates agree)"
    return result


def align_coregistered(scene: xr.Dataset, grid: xr.Dataset, params: CoregParams | None = None,
                       roles: tuple[str, str] = ("before", "after")) -> tuple[xr.Dataset, CoregResult]:
    """``scene`` on ``grid``'s pixel grid (:func:`rsmon.io.optical_align.align_pair`), co-registered
    to it: the shift :func:`estimate_shift` measures is corrected when it passes ``params``.
    Returns the aligned scene (lazy) and the measurement."""
    from rsmon.io.optical_align import align_pair

    aligned = align_pair(scene, grid, roles)[0]
    shift = estimate_shift(aligned, grid, params)
    if shift.applied:
        aligned = align_pair(scene, grid, roles, shift=(shift.dy, shift.dx))[0]
    return aligned, shift
