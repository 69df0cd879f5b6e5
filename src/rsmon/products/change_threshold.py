"""Global statistics of a change pair: relative normalisation, magnitude histogram, thresholds.

Everything here reduces a (possibly dask-backed, arbitrarily large) pair to a few numbers:

- :func:`regular_sample` takes every ``step``-th pixel in y and x (chunk-independent, so a dask
  run equals a NumPy run); the normalisation and band scales are fitted on that sample.
- :func:`fit_normalisation`: per-band linear regression of the after band on the before band
  over pseudo-invariant pixels (PIFs; Schott et al. 1988), the PIFs being the lowest
  ``normalisation_pif_quantile`` of the standardised change magnitude (no-change pixels chosen
  from the change statistic as in Canty & Nielsen 2008), iterated.
- :func:`masked_histogram` counts the magnitude over valid pixels in fixed bins (``dask.array``
  histogram: one pass, bounded memory); :func:`otsu_threshold` and :func:`em_threshold` turn the
  counts into a threshold. Integer counts make the threshold independent of the chunking.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import dask.array as da
import numpy as np

from rsmon.errors import InputError
from rsmon.products.change_params import ChangeParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Normalisation:
    """A fitted before -> after relative normalisation and the per-band change scales.

    ``before_normalised[b] = gains[b] * before[b] + offsets[b]``; the standardised CVA magnitude
    divides each band difference (after - normalised before) by ``diff_scales[b]``, its robust
    standard deviation (1.4826 x median absolute deviation) over the valid sample, so that the
    magnitude is in units of the unchanged pixels' spread. ``n_sample`` valid pixels were sampled, ``n_pif`` of them
    were pseudo-invariant in the last fit.
    """

    gains: tuple[float, ...]
    offsets: tuple[float, ...]
    diff_scales: tuple[float, ...]
    n_sample: int
    n_pif: int

    def as_attrs(self, bands) -> dict:
        return {f"normalisation_{b}": f"gain={g:.6g} offset={o:.6g} diff_scale={s:.6g}"
                for b, g, o, s in zip(bands, self.gains, self.offsets, self.diff_scales)}


def sample_step(shape: tuple[int, int], n_target: int) -> int:
    """Stride giving about ``n_target`` pixels from an array of ``shape`` (at least 1)."""
    return max(1, int(math.floor(math.sqrt(shape[0] * shape[1] / n_target))))


def regular_sample(arrays, step: int) -> np.ndarray:
    """Every ``step``-th pixel in y and x of each 2-D array, stacked (n_arrays, n_pixels), computed.

    Works on NumPy, dask or xarray arrays; dask arrays are computed together in one pass.
    """
    parts = [getattr(a, "data", a)[::step, ::step] for a in arrays]
    if any(isinstance(p, da.Array) for p in parts):
        parts = da.compute(*parts)
    return np.stack([np.asarray(p).ravel() for p in parts])


def _centre_and_scales(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row medians (keepdims) and robust standard deviations 1.4826 x MAD (the standard
    deviation where the MAD is 0, 1 where both are 0) of (bands, pixels) differences: the centre
    and spread of the unchanged majority, not inflated by the changes."""
    centre = np.median(diff, axis=1, keepdims=True)
    scales = 1.4826 * np.median(np.abs(diff - centre), axis=1)
    std = diff.std(axis=1)
    scales = np.where(scales > 0, scales, std)
    return centre, np.where(scales > 0, scales, 1.0)


def _standardised_magnitude(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centre, scales = _centre_and_scales(diff)
    centred = (diff - centre) / scales[:, None]
    return np.sqrt((centred ** 2).sum(axis=0)), scales


def fit_normalisation(before: np.ndarray, after: np.ndarray, params: ChangeParams,
                      scale_mask: np.ndarray | None = None) -> Normalisation:
    """Fit the relative normalisation of ``before`` onto ``after`` from sampled valid pixels.

    Parameters
    ----------
    before, after : numpy.ndarray
        (n_bands, n_pixels) samples of the same pixels, all finite.
    params : ChangeParams
        ``normalise``, ``normalisation_pif_quantile``, ``normalisation_iterations``,
        ``min_valid_px``.
    scale_mask : numpy.ndarray of bool, optional
        The sampled pixels the diff scales are computed from (default all; :func:`detect_change`
        passes the pixels that are land on at least one date).

    Returns
    -------
    Normalisation
        Identity gains (1, 0) when ``params.normalise`` is False or fewer than ``min_valid_px``
        pixels were sampled; the diff scales are always fitted (1 where undefined).
    """
    if before.shape != after.shape or before.ndim != 2:
        raise InputError(f"fit_normalisation: before {before.shape} and after {after.shape} must be equal (bands, pixels)")
    n_bands, n = before.shape
    gains, offsets = np.ones(n_bands), np.zeros(n_bands)
    n_pif = 0
    if n < params.min_valid_px:
        log.warning("only %d valid sampled pixels (< min_valid_px=%d): no relative normalisation",
                    n, params.min_valid_px)
    elif params.normalise:
        for _ in range(max(params.normalisation_iterations, 1)):
            diff = after - (gains[:, None] * before + offsets[:, None])
            magnitude, _ = _standardised_magnitude(diff)
            pif = magnitude <= np.quantile(magnitude, params.normalisation_pif_quantile)
            n_pif = int(pif.sum())
            x, y = before[:, pif], after[:, pif]
            x_mean, y_mean = x.mean(axis=1), y.mean(axis=1)
            sxx = ((x - x_mean[:, None]) ** 2).mean(axis=1)
            sxy = ((x - x_mean[:, None]) * (y - y_mean[:, None])).mean(axis=1)
            # A constant band (sxx == 0) keeps gain 1 and gets the mean shift only.
            gains = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 1.0)
            offsets = y_mean - gains * x_mean
    diff = after - (gains[:, None] * before + offsets[:, None])
    if scale_mask is not None and scale_mask.any():
        diff = diff[:, scale_mask]
    if diff.shape[1]:
        _, scales = _standardised_magnitude(diff)
    else:
        scales = np.ones(n_bands)
    return Normalisation(tuple(float(g) for g in gains), tuple(float(o) for o in offsets),
                         tuple(float(s) for s in scales), int(n), n_pif)


def masked_histogram(values, valid, bins: int, upper: float) -> tuple[np.ndarray, np.ndarray]:
    """Counts of ``values`` where ``valid`` in ``bins`` equal bins over [0, upper].

    Values above ``upper`` are counted in the last bin, values below 0 in the first. Returns
    (counts int64, edges float64). Dask input is reduced in one pass (bounded memory).
    """
    v = getattr(values, "data", values)
    m = getattr(valid, "data", valid)
    edges = np.linspace(0.0, float(upper), bins + 1)
    if isinstance(v, da.Array) or isinstance(m, da.Array):
        v = da.asarray(v)
        m = da.asarray(m)
        clipped = da.clip(da.where(m, v, np.nan), 0.0, upper)
        counts, _ = da.histogram(clipped, bins=edges)
        counts = counts.compute()
    else:
        clipped = np.clip(np.asarray(v)[np.asarray(m)], 0.0, upper)
        counts, _ = np.histogram(clipped, bins=edges)
    return counts.astype(np.int64), edges


def otsu_threshold(counts: np.ndarray, edges: np.ndarray) -> float:
    """Otsu (1979) threshold: the bin edge maximising the between-class variance.

    Returns the upper edge of the last bin of the lower class (a value ``> threshold`` is in the
    upper class); NaN for an empty histogram or one with a single occupied bin.
    """
    counts = np.asarray(counts, dtype=np.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(counts)
    total = w0[-1] if counts.size else 0.0
    if total <= 0 or np.count_nonzero(counts) < 2:
        return math.nan
    w1 = total - w0
    m0 = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = m0 / w0
        mu1 = (m0[-1] - m0) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between[~np.isfinite(between)] = -1.0
    i = int(np.argmax(between[:-1]))
    return float(edges[i + 1])


def em_threshold(counts: np.ndarray, edges: np.ndarray, *, iterations: int = 200) -> float:
    """Threshold of a two-Gaussian mixture fitted by EM to the histogram (Bruzzone & Prieto 2000).

    Started from the Otsu split; the threshold is the first bin edge above the no-change mean
    where the change component's weighted density exceeds the no-change one (Bayes decision).
    Falls back to Otsu when the fit degenerates.
    """
    start = otsu_threshold(counts, edges)
    if not math.isfinite(start):
        return start
    p = np.asarray(counts, dtype=np.float64)
    p = p / p.sum()
    c = 0.5 * (edges[1:] + edges[:-1])
    width = edges[1] - edges[0]
    lower = c <= start
    w = np.array([p[lower].sum(), p[~lower].sum()])
    if w.min() <= 0:
        return start
    mu = np.array([(p * c)[lower].sum() / w[0], (p * c)[~lower].sum() / w[1]])
    var = np.array([(p * (c - mu[0]) ** 2)[lower].sum() / w[0], (p * (c - mu[1]) ** 2)[~lower].sum() / w[1]])
    var = np.maximum(var, width ** 2)

    def densities():
        return np.stack([w[k] / np.sqrt(2 * np.pi * var[k]) * np.exp(-(c - mu[k]) ** 2 / (2 * var[k]))
                         for k in range(2)])

    for _ in range(iterations):
        g = densities()
        r = g / np.maximum(g.sum(axis=0), 1e-300)
        w = (r * p).sum(axis=1)
        if w.min() <= 1e-9:
            return start
        mu = (r * p * c).sum(axis=1) / w
        var = np.maximum((r * p * (c - mu[:, None]) ** 2).sum(axis=1) / w, width ** 2)
    if mu[1] < mu[0]:
        return start
    g = densities()
    above = (g[1] > g[0]) & (c > mu[0])
    if not above.any():
        return start
    i = int(np.argmax(above))
    return float(edges[i])


def threshold(counts: np.ndarray, edges: np.ndarray, method: str) -> float:
    """Dispatch to :func:`otsu_threshold` or :func:`em_threshold` by name."""
    if method == "otsu":
        return otsu_threshold(counts, edges)
    if method == "em":
        return em_threshold(counts, edges)
    raise InputError(f"threshold method: expected 'otsu' or 'em', got {method!r}")
