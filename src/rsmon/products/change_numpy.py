"""Whole-array NumPy change detection: the reference the fused kernel is tested and timed against.

:func:`detect_change_numpy` runs the algorithm of :mod:`rsmon.products.change` with xarray on
in-memory NumPy arrays, one array operation at a time (about 150 element operations per pixel),
no dask and no numba: the masks of :func:`~rsmon.products.change_indices.spectral_masks`, the
indices of :func:`~rsmon.products.change_indices.spectral_indices`, the rule and classes of
:mod:`~rsmon.products.change_classes` and the scipy clean-up
:func:`~rsmon.products.change_morphology.clean_block` on the whole array.

The fit is the whole-scene one (:func:`fit_whole_scene`): normalisation and band scales on a
strided sample of the whole scene, threshold from the histogram of every valid pixel. The block
path (:func:`rsmon.products.change_fit.fit_change`) fits on a subset of blocks; on scenes of at
most ``ChangeParams.fit_sample_px`` pixels the two fits are identical.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import numpy as np
import xarray as xr

from rsmon.errors import InputError
from rsmon.products.change_classes import NODATA, classify_change, index_rule
from rsmon.products.change_indices import BANDS, INDICES, pair_valid, spectral_indices, spectral_masks
from rsmon.products.change_morphology import clean_block
from rsmon.products.change_pair import check_pair, on_after_grid, scene_attrs
from rsmon.products.change_params import ChangeParams
from rsmon.products.change_threshold import (Normalisation, fit_normalisation, masked_histogram, regular_sample,
                                             sample_step, threshold)

__all__ = ["change_magnitude", "detect_change_numpy", "fit_whole_scene", "pair_masks", "threshold_attrs"]

log = logging.getLogger(__name__)


def pair_masks(before: xr.Dataset, after: xr.Dataset, params: ChangeParams, radiometry: str):
    """(valid, land) of an aligned pair: both dates clear; land (not water) on at least one date.

    ``land`` is None unless ``radiometry == "reflectance"`` and ``params.statistics_on_land``.
    Open water on both dates is spectrally stable: where it covers much of a scene the no-change
    magnitudes become bimodal (water / land) and a two-class threshold would split water from
    land, so scales and threshold come from the land pixels.
    """
    masks_b = spectral_masks(before, params)
    masks_a = spectral_masks(after, params)
    valid = pair_valid(masks_b, masks_a).rename("valid")
    land = None
    if radiometry == "reflectance" and params.statistics_on_land:
        land = (~(masks_b["water"] & masks_a["water"])).rename("land")
    return valid, land


def change_magnitude(before: xr.Dataset, after: xr.Dataset, valid: xr.DataArray,
                     params: ChangeParams | None = None, land: xr.DataArray | None = None):
    """Relatively normalised, standardised CVA magnitude of a pair (float32, NaN where not valid).

    The normalisation and band scales are fitted on a regular sample of the whole scene (every
    ``step``-th pixel in y and x, ``step`` from ``normalisation_sample_px``); ``land`` (bool,
    default all True) marks the pixels the band scales come from; the normalisation regression
    uses every valid pixel (dark water is a good anchor).

    Returns
    -------
    magnitude : xarray.DataArray
    normalised_before : dict
        Band name -> normalised before band (DataArray).
    normalisation : Normalisation
    sample_magnitude : numpy.ndarray
        Magnitude (float64) of the valid sampled land pixels (for the histogram range).
    """
    p = params or ChangeParams()
    like = after[BANDS[0]]
    step = sample_step((like.sizes["y"], like.sizes["x"]), p.normalisation_sample_px)
    sample = regular_sample([before[b] for b in BANDS] + [after[b] for b in BANDS] + [valid]
                            + ([land] if land is not None else []), step)
    ok = sample[12].astype(bool)
    on_land = (sample[13].astype(bool) if land is not None else np.ones(ok.shape, bool))[ok]
    sb = sample[:6][:, ok].astype(np.float64)
    sa = sample[6:12][:, ok].astype(np.float64)
    norm = fit_normalisation(sb, sa, p, scale_mask=on_land)
    gains, offsets, scales = (np.asarray(v) for v in (norm.gains, norm.offsets, norm.diff_scales))
    normalised = {}
    total = None
    for i, b in enumerate(BANDS):
        nb = before[b].astype("float32") * np.float32(gains[i]) + np.float32(offsets[i])
        normalised[b] = nb
        term = ((after[b].astype("float32") - nb) / np.float32(scales[i])) ** 2
        total = term if total is None else total + term
    magnitude = np.sqrt(total).where(valid).astype("float32").rename("magnitude")
    sl, sa_l = sb[:, on_land], sa[:, on_land]
    sample_mag = np.sqrt((((sa_l - (gains[:, None] * sl + offsets[:, None])) / scales[:, None]) ** 2).sum(axis=0))
    return magnitude, normalised, norm, sample_mag


def threshold_attrs(counts: np.ndarray, edges: np.ndarray, norm: Normalisation, params: ChangeParams,
                    have_sample: bool) -> dict:
    """``threshold`` (NaN when none), ``threshold_automatic`` (when the noise floor replaced it)
    and ``no_data_reason`` from the magnitude histogram (shared by the whole-scene and the block fit)."""
    attrs: dict = {}
    thr = threshold(counts, edges, params.threshold_method) if have_sample else float("nan")
    floor = params.magnitude_floor(len(BANDS))
    if np.isfinite(thr) and thr < floor:
        log.info("automatic threshold %.3f below the noise floor %.3f: floor used", thr, floor)
        attrs["threshold_automatic"] = float(thr)
        thr = floor
    if not np.isfinite(thr):
        reason = ("no pixel is clear on both dates (clouds, shadow, snow, saturation or product QA)"
                  if norm.n_sample == 0 else "the change magnitude has no usable histogram")
        log.warning("change detection: %s; no change is reported", reason)
        attrs["no_data_reason"] = reason
    attrs["threshold"] = float(thr)
    return attrs


def fit_whole_scene(before: xr.Dataset, after: xr.Dataset, params: ChangeParams, radiometry: str):
    """Masks, magnitude and threshold of a whole in-memory pair.

    Returns (valid, land, magnitude, normalised before bands, Normalisation, threshold attrs)."""
    valid, land = pair_masks(before, after, params, radiometry)
    magnitude, normalised_b, norm, sample_mag = change_magnitude(before, after, valid, params, land)
    counts = edges = None
    if sample_mag.size:
        upper = float(np.quantile(sample_mag, params.histogram_quantile))
        stats_mask = valid if land is None else valid & land
        counts, edges = masked_histogram(magnitude, stats_mask, params.histogram_bins, upper if upper > 0 else 1.0)
    attrs = threshold_attrs(counts, edges, norm, params, bool(sample_mag.size))
    return valid, land, magnitude, normalised_b, norm, attrs


def _as_dataset(scene, name: str, radiometry: str | None) -> xr.Dataset:
    if isinstance(scene, xr.Dataset):
        ds = scene
    elif isinstance(scene, Mapping):
        ds = xr.Dataset({k: (("y", "x"), np.asarray(v)) for k, v in scene.items() if k in BANDS + ("clear", "water")})
    else:
        raise InputError(f"{name}: expected an xarray.Dataset or a mapping of band name -> 2-D array, "
                         f"got {type(scene).__name__}")
    if radiometry is not None:
        ds = ds.assign_attrs(radiometry=radiometry)
    return ds.compute()


def detect_change_numpy(before, after, params: ChangeParams | None = None, *,
                        radiometry: str | None = None) -> xr.Dataset:
    """Change detection of an aligned pair with whole-array NumPy (the reference implementation).

    Parameters
    ----------
    before, after : xarray.Dataset or mapping
        The six bands (``blue .. swir2``, float32 reflectance or DN) and optional bool ``clear`` /
        ``water``, as Datasets (computed into memory first) or mappings of name -> 2-D array.
    params : ChangeParams, optional
    radiometry : {"reflectance", "dn"}, optional
        Overrides ``attrs["radiometry"]`` (a mapping has none: default "reflectance").

    Returns
    -------
    xarray.Dataset
        NumPy-backed, the variables and attributes of :func:`rsmon.products.change.detect_change`
        (``change``, ``change_class``, ``confidence``, ``rule``, ``magnitude``, ``valid`` and the
        eight ``{index}_{before,after}``) with the whole-scene fit (:func:`fit_whole_scene`).
    """
    p = params or ChangeParams()
    before = _as_dataset(before, "before", radiometry)
    after = _as_dataset(after, "after", radiometry)
    rad, _ = check_pair(before, after)
    before = on_after_grid(before, after)
    valid, land, magnitude, normalised_b, norm, thr_attrs = fit_whole_scene(before, after, p, rad)
    attrs = {"threshold_method": p.threshold_method, "n_sample": norm.n_sample, "n_pif": norm.n_pif,
             "radiometry": rad, "change_params": json.dumps(p.as_dict(), sort_keys=True)}
    attrs.update(scene_attrs(before, after))
    attrs.update(norm.as_attrs(BANDS))
    attrs.update(thr_attrs)
    thr = attrs["threshold"]
    detected = valid & (magnitude > thr) if np.isfinite(thr) else valid & False
    raw = xr.where(valid, detected.astype("uint8"), np.uint8(NODATA)).astype("uint8")
    change = raw.copy(data=clean_block(np.asarray(raw.values), p.opening_px, p.closing_px, p.mmu_px,
                                       p.mmu_connectivity))
    is_change = change == 1
    idx_b = spectral_indices(xr.Dataset(normalised_b))
    idx_a = spectral_indices(after)
    ib = {k: idx_b[k] for k in INDICES}
    ia = {k: idx_a[k] for k in INDICES}
    if rad == "reflectance":
        brightness = sum(after[b].astype("float32") for b in BANDS) / len(BANDS)
    else:
        brightness = xr.full_like(magnitude, np.nan)
    rule = index_rule(ib, ia, p) & valid
    classes = classify_change(ib, ia, brightness, is_change, p)
    classes = xr.where(valid, classes, np.uint8(NODATA)).astype("uint8")
    out = xr.Dataset(coords=after.coords, attrs=attrs)
    out["change"] = change
    out["change_class"] = classes
    out["confidence"] = is_change.astype("uint8")
    out["rule"] = rule
    out["magnitude"] = magnitude
    out["valid"] = valid
    for k in INDICES:
        out[f"{k}_before"] = ib[k].astype("float32")
        out[f"{k}_after"] = ia[k].astype("float32")
    return out
