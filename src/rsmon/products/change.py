"""Redline human-activity change detection from optical image pairs and series.

Pure functions, xarray in -> xarray out, no file I/O; lazy (dask) input stays lazy except for three
bounded global reductions per pair (a strided sample, one magnitude histogram, nothing else).

:func:`detect_change` (one before/after pair on the after grid):

1. masks (:func:`~rsmon.products.change_indices.spectral_masks`): a pixel is valid where both
   dates are clear (product QA ``clear`` and the spectral cloud/shadow/snow/saturation tests);
2. relative radiometric normalisation of the before bands onto the after bands, per-band linear
   regression over pseudo-invariant pixels fitted on a regular sample
   (:mod:`~rsmon.products.change_threshold`);
3. standardised change vector analysis: ``magnitude = sqrt(sum_b ((after_b - norm_before_b) /
   s_b)^2)`` with ``s_b`` the robust standard deviation (1.4826 x MAD) of the band difference
   (Malila 1980; the scaling puts DN and reflectance pairs, 10 and 30 m, in units of the unchanged
   pixels' spread, so one threshold rule serves all);
4. automatic threshold (Otsu, or a two-Gaussian EM mixture) on the magnitude histogram counted
   over valid pixels with dask, never below a chi-square noise floor, applied blockwise;
5. clean-up: opening/closing and the minimum mapping unit, blockwise with a halo
   (:mod:`~rsmon.products.change_morphology`), equal to the whole-array result;
6. the index rule (dNDVI, dBSI/dNDBI, MNDWI sign change) as the second signal, rule classes and a
   single-pair confidence (:mod:`~rsmon.products.change_classes`).

The index rule does not add or remove change pixels: on the six validation sites both the union
and the intersection with the CVA detection lowered F1 (docs/validation_change.md). It classifies
the change and serves as the independent signal that lifts confirmed detections to "highest".

:func:`detect_series` runs the first scene against each later scene and confirms detections over
time (low / high / highest). :func:`cva_otsu_baseline` is the plain reference method.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import dask.array as da
import numpy as np
import xarray as xr

from rsmon.errors import InputError
from rsmon.products.change_classes import (CLASS_NAMES, CLEARING, CONFIDENCE_NAMES, FARMLAND, NODATA,
                                           classify_change, confirm_observations, index_rule)
from rsmon.products.change_indices import (BANDS, INDICES, check_scene, pair_valid, spectral_indices,
                                           spectral_masks)
from rsmon.products.change_morphology import clean_change_mask
from rsmon.products.change_params import ChangeParams
from rsmon.products.change_threshold import (fit_normalisation, masked_histogram, otsu_threshold,
                                             regular_sample, sample_step, threshold)

__all__ = ["ChangeParams", "CLASS_NAMES", "CONFIDENCE_NAMES", "detect_change", "detect_series",
           "cva_otsu_baseline", "change_magnitude"]

log = logging.getLogger(__name__)

FLAG_VALUES = [0, 1, 255]
FLAG_MEANINGS = "no_change change no_data"


def _scene_attrs(before: xr.Dataset, after: xr.Dataset) -> dict:
    """``before_datetime``, ``after_datetime``, ``sensor``, ``before_source``, ``after_source`` (where known)."""
    out = {}
    for when, ds in (("before", before), ("after", after)):
        if ds.attrs.get("datetime"):
            out[f"{when}_datetime"] = str(ds.attrs["datetime"])
        if ds.attrs.get("source"):
            out[f"{when}_source"] = str(ds.attrs["source"])
    sensors = [str(ds.attrs["sensor"]) for ds in (before, after) if ds.attrs.get("sensor")]
    if sensors:
        out["sensor"] = "/".join(dict.fromkeys(sensors))
    return out


def _check_pair(before: xr.Dataset, after: xr.Dataset) -> tuple[str, str]:
    rb = check_scene(before, "before")
    ra = check_scene(after, "after")
    if rb != ra:
        raise InputError(f"before is {rb!r} and after is {ra!r}: both dates must have the same radiometry")
    shape_b = (before.sizes["y"], before.sizes["x"])
    shape_a = (after.sizes["y"], after.sizes["x"])
    if shape_b != shape_a:
        raise InputError(f"before grid {shape_b} differs from after grid {shape_a}; put both on one grid "
                         "first (rsmon.io.optical.align_pair)")
    for dim in ("y", "x"):
        if dim in before.coords and dim in after.coords and before.sizes[dim] > 1:
            cb, ca = np.asarray(before[dim], float), np.asarray(after[dim], float)
            step = abs(ca[1] - ca[0])
            if np.nanmax(np.abs(cb - ca)) > 0.5 * step:
                raise InputError(f"before and after {dim} coordinates differ by more than half a pixel; put both on "
                                 "one grid first (rsmon.io.optical.align_pair)")
    return rb, ra


def _on_after_grid(before: xr.Dataset, after: xr.Dataset) -> xr.Dataset:
    """``before`` with the after grid's coordinates (checked equal to half a pixel), so that no
    xarray alignment ever drops a row over float noise."""
    coords = {d: after[d] for d in ("y", "x") if d in after.coords}
    return before.assign_coords(coords) if coords else before


def _on_grid(data, like: xr.DataArray, name: str, attrs: dict | None = None) -> xr.DataArray:
    return xr.DataArray(data, dims=("y", "x"), coords=like.coords, name=name, attrs=attrs or {})


def _data(arr):
    return arr.data if isinstance(arr, xr.DataArray) else arr


def pair_masks(before: xr.Dataset, after: xr.Dataset, params: ChangeParams, radiometry: str):
    """(valid, land) of an aligned pair: both dates clear; land (not water) on at least one date.

    ``land`` is None unless ``radiometry == "reflectance"`` and ``params.statistics_on_land``.
    Open water on both dates is spectrally stable: where it covers much of a scene the no-change
    magnitudes become bimodal (water / land) and a two-class threshold would split water from
    land, so scales and threshold come from the land pixels.
    """
    masks_b = spectral_masks(before, params)
    masks_a = spectral_masks(after, params)
    like = after[BANDS[0]]
    valid = _on_grid(_data(pair_valid(masks_b, masks_a)), like, "valid")
    land = None
    if radiometry == "reflectance" and params.statistics_on_land:
        land = _on_grid(_data(~(masks_b["water"] & masks_a["water"])), like, "land")
    return valid, land


def change_magnitude(before: xr.Dataset, after: xr.Dataset, valid: xr.DataArray,
                     params: ChangeParams | None = None, land: xr.DataArray | None = None):
    """Relatively normalised, standardised CVA magnitude of a pair (float32, NaN where not valid).

    The normalisation and band scales are fitted on a regular sample of the input bands (the
    masks are computed on the sample only, so this pass costs little more than reading it);
    ``land`` (bool, default all True) marks the pixels the band scales and the threshold statistics
    come from; the normalisation regression uses every valid pixel (dark water is a good anchor).

    Returns
    -------
    magnitude : xarray.DataArray
        On the after grid, lazy if the input is.
    normalised_before : dict
        Band name -> normalised before band (DataArray).
    normalisation : Normalisation
        The fitted gains, offsets, scales and sample sizes.
    sample_magnitude : numpy.ndarray
        Magnitude of the valid sampled land pixels (for the histogram range).
    """
    p = params or ChangeParams()
    like = after[BANDS[0]]
    step = sample_step((like.sizes["y"], like.sizes["x"]), p.normalisation_sample_px)
    names = [b for b in BANDS] + [v for v in ("clear", "water") if v in before.data_vars and v in after.data_vars]
    sample = regular_sample([before[v] for v in names] + [after[v] for v in names], step)
    n = len(names)
    shape = (len(range(0, like.sizes["y"], step)), len(range(0, like.sizes["x"], step)))

    def small(rows, attrs):
        return xr.Dataset({v: (("y", "x"), rows[i].reshape(shape).astype(bool if v in ("clear", "water") else np.float32))
                           for i, v in enumerate(names)}, attrs=attrs)

    s_before, s_after = small(sample[:n], before.attrs), small(sample[n:], after.attrs)
    s_valid, s_land = pair_masks(s_before, s_after, p, after.attrs.get("radiometry", "reflectance"))
    ok = np.asarray(s_valid).ravel()
    on_land = (np.ones(ok.shape, bool) if land is None or s_land is None else np.asarray(s_land).ravel())[ok]
    sb = sample[:len(BANDS)][:, ok].astype(np.float64)
    sa = sample[n:n + len(BANDS)][:, ok].astype(np.float64)
    norm = fit_normalisation(sb, sa, p, scale_mask=on_land)
    gains, offsets, scales = (np.asarray(v) for v in (norm.gains, norm.offsets, norm.diff_scales))
    normalised = {}
    total = None
    for i, b in enumerate(BANDS):
        nb = (before[b].astype("float32").data * np.float32(gains[i]) + np.float32(offsets[i]))
        normalised[b] = _on_grid(nb, like, b)
        term = ((after[b].astype("float32").data - nb) / np.float32(scales[i])) ** 2
        total = term if total is None else total + term
    magnitude = _on_grid(da.sqrt(total) if isinstance(total, da.Array) else np.sqrt(total), like, "magnitude")
    magnitude = magnitude.where(valid).astype("float32")
    sl, sa_l = sb[:, on_land], sa[:, on_land]
    sample_mag = np.sqrt((((sa_l - (gains[:, None] * sl + offsets[:, None])) / scales[:, None]) ** 2).sum(axis=0))
    return magnitude, normalised, norm, sample_mag


def detect_change(before: xr.Dataset, after: xr.Dataset, params: ChangeParams | None = None) -> xr.Dataset:
    """Bi-temporal change detection of an aligned optical pair (steps in the module doc).

    Parameters
    ----------
    before, after : xarray.Dataset
        The :func:`rsmon.io.optical.open_optical` contract on one grid (:func:`align_pair`):
        float32 ``blue, green, red, nir, swir1, swir2`` on ("y", "x"), optional bool ``clear`` and
        ``water``, attrs ``datetime``, ``sensor``, ``radiometry`` ("reflectance" or "dn").
    params : ChangeParams, optional
        Thresholds (defaults from the literature, see :class:`ChangeParams`).

    Returns
    -------
    xarray.Dataset on the after grid (coords and attrs of ``after``), lazy if the input is:

    - ``change`` uint8: 1 change, 0 no change, 255 no data (not clear on either date);
    - ``change_class`` uint8: 0 none, 1 construction, 2 mining/quarrying, 3 farmland reclamation,
      4 vegetation clearing, 5 water-body change, 6 other, 255 no data;
    - ``confidence`` uint8: 1 (low: one pair cannot confirm) where change, else 0 (also on no data);
    - ``rule`` bool: the index-difference rule fired;
    - ``magnitude`` float32: standardised CVA magnitude (dimensionless), NaN where not valid;
    - ``valid`` bool: both dates clear;
    - ``{ndvi,ndbi,mndwi,bsi}_{before,after}`` float32: index values (before after normalisation).

    attrs: ``threshold`` (magnitude), ``threshold_method``, normalisation gains, ``n_sample``,
    ``change_params`` (JSON), ``before_datetime``, ``after_datetime``, ``sensor`` (e.g. "L7" or
    "S2A/S2B"), ``before_source``/``after_source`` (from the inputs' ``source``) and, when no pixel
    is clear on both dates, ``no_data_reason``.

    Raises
    ------
    InputError
        Missing bands, different grids or radiometries.
    """
    p = params or ChangeParams()
    radiometry, _ = _check_pair(before, after)
    before = _on_after_grid(before, after)
    valid, land = pair_masks(before, after, p, radiometry)
    magnitude, normalised_b, norm, sample_mag = change_magnitude(before, after, valid, p, land)

    attrs = {"threshold_method": p.threshold_method, "n_sample": norm.n_sample, "n_pif": norm.n_pif,
             "radiometry": radiometry, "change_params": json.dumps(p.as_dict(), sort_keys=True)}
    attrs.update(_scene_attrs(before, after))
    attrs.update(norm.as_attrs(BANDS))
    if sample_mag.size:
        upper = float(np.quantile(sample_mag, p.histogram_quantile))
        stats_mask = valid if land is None else valid & land
        counts, edges = masked_histogram(magnitude, stats_mask, p.histogram_bins, upper if upper > 0 else 1.0)
        thr = threshold(counts, edges, p.threshold_method)
        floor = p.magnitude_floor(len(BANDS))
        if np.isfinite(thr) and thr < floor:
            log.info("automatic threshold %.3f below the noise floor %.3f: floor used", thr, floor)
            attrs["threshold_automatic"] = float(thr)
            thr = floor
    else:
        thr = float("nan")
    if not np.isfinite(thr):
        reason = ("no pixel is clear on both dates (clouds, shadow, snow, saturation or product QA)"
                  if norm.n_sample == 0 else "the change magnitude has no usable histogram")
        log.warning("change detection: %s; no change is reported", reason)
        attrs["no_data_reason"] = reason
    attrs["threshold"] = float(thr)

    detected = valid & (magnitude > thr) if np.isfinite(thr) else valid & False
    raw = xr.where(valid, detected.astype("uint8"), np.uint8(NODATA)).astype("uint8")
    change = clean_change_mask(raw, p)
    is_change = change == 1

    idx_b = spectral_indices(xr.Dataset(normalised_b))
    idx_a = spectral_indices(after)
    ib = {k: idx_b[k] for k in INDICES}
    ia = {k: idx_a[k].data for k in INDICES}
    ia = {k: _on_grid(v, after[BANDS[0]], k) for k, v in ia.items()}
    if radiometry == "reflectance":
        brightness = sum(after[b].astype("float32") for b in BANDS) / len(BANDS)
        brightness = _on_grid(_data(brightness), after[BANDS[0]], "brightness")
    else:
        brightness = xr.full_like(magnitude, np.nan)
    rule = index_rule(ib, ia, p) & valid
    classes = classify_change(ib, ia, brightness, is_change, p)
    classes = xr.where(valid, classes, np.uint8(NODATA)).astype("uint8")
    confidence = is_change.astype("uint8")   # 0 also where no data (``change`` == 255 says so)

    out = xr.Dataset(coords=after.coords, attrs=attrs)
    out["change"] = change.assign_attrs(flag_values=FLAG_VALUES, flag_meanings=FLAG_MEANINGS,
                                        long_name="human-activity change")
    out["change_class"] = classes.assign_attrs(
        flag_values=list(CLASS_NAMES), flag_meanings=" ".join(n.replace(" ", "_").replace("/", "_or_")
                                                              for n in CLASS_NAMES.values()),
        long_name="rule class of the change")
    out["confidence"] = confidence.assign_attrs(flag_values=[0, 1, 2, 3], flag_meanings="none low high highest",
                                                long_name="alert confidence")
    out["rule"] = rule.assign_attrs(long_name="index-difference rule fired")
    out["magnitude"] = magnitude.assign_attrs(units="1", long_name="standardised change vector magnitude")
    out["valid"] = valid.assign_attrs(long_name="clear on both dates")
    for k in INDICES:
        out[f"{k}_before"] = ib[k].astype("float32").assign_attrs(units="1")
        out[f"{k}_after"] = ia[k].astype("float32").assign_attrs(units="1")
    return out


def cva_otsu_baseline(before: xr.Dataset, after: xr.Dataset, *, bins: int = 256) -> xr.DataArray:
    """Plain CVA over all six bands + Otsu threshold: no masks, normalisation, rules or MMU.

    ``magnitude = sqrt(sum_b (after_b - before_b)^2)``; Otsu on a ``bins``-bin histogram over
    [0, max]. Returns uint8 on the after grid: 1 change, 0 no change, 255 where a band is NaN.
    """
    _check_pair(before, after)
    before = _on_after_grid(before, after)
    total = None
    for b in BANDS:
        term = (after[b].astype("float32").data - before[b].astype("float32").data) ** 2
        total = term if total is None else total + term
    magnitude = _on_grid(da.sqrt(total) if isinstance(total, da.Array) else np.sqrt(total), after[BANDS[0]],
                         "magnitude")
    valid = magnitude.notnull()
    top = magnitude.max()
    upper = float(top.compute() if isinstance(top.data, da.Array) else top)
    if not np.isfinite(upper) or upper <= 0:
        upper = 1.0
    counts, edges = masked_histogram(magnitude, valid, bins, upper)
    thr = otsu_threshold(counts, edges)
    detected = (magnitude > thr).astype("uint8") if np.isfinite(thr) else xr.zeros_like(magnitude, dtype="uint8")
    change = xr.where(valid, detected, np.uint8(NODATA)).astype("uint8").rename("change")
    return change.assign_attrs(threshold=float(thr), method="cva-otsu baseline")


def _series_kernel(flags, rules, classes, ndvi, *indices, sensor_ids, confirm_window, confirm_min, veg_ndvi_min):
    """apply_ufunc core over the last axis (observations): confirmation, event class, trajectory."""
    flags, rules, classes, ndvi = (np.moveaxis(a, -1, 0) for a in (flags, rules, classes, ndvi))
    confidence, first = confirm_observations(flags, rules, sensor_ids, confirm_window, confirm_min)
    n_obs = flags.shape[0]
    at = np.clip(first, 0, None)[None].astype(np.intp)
    event_class = np.take_along_axis(classes, at, axis=0)[0]
    # Trajectory: vegetation cleared at the event and vegetated again in a later clear observation
    # is land put under cultivation (farmland reclamation) [U].
    later = np.arange(n_obs)[:, None, None] > first[None]
    regrown = (later & (flags != 255) & (ndvi >= veg_ndvi_min)).any(axis=0)
    event_class = np.where((event_class == CLEARING) & regrown, FARMLAND, event_class)
    any_clear = (flags != 255).any(axis=0)
    active = confidence > 0
    change = np.where(active, 1, np.where(any_clear, 0, NODATA)).astype(np.uint8)
    change_class = np.where(active, event_class, np.where(any_clear, 0, NODATA)).astype(np.uint8)
    confidence = confidence.astype(np.uint8)
    picked = [np.where(active, np.take_along_axis(np.moveaxis(v, -1, 0), at, axis=0)[0], np.nan).astype(np.float32)
              for v in indices]
    return (change, change_class, confidence, first.astype(np.int16), *picked)


def detect_series(scenes: Sequence[xr.Dataset], params: ChangeParams | None = None) -> xr.Dataset:
    """Change with multi-date confirmation over a chronological series of aligned scenes.

    The first scene is the reference; each later scene is compared with it by
    :func:`detect_change` (one flag per clear observation), and the flags are confirmed over time
    (:func:`~rsmon.products.change_classes.confirm_observations`, GLAD/RADD practice). Scenes with
    a ``datetime`` attribute are sorted by it.

    Returns
    -------
    xarray.Dataset on the grid of the last scene:

    - ``change`` uint8: 1 an active (not expired) detection, 0 none, 255 never clear;
    - ``confidence`` uint8: 0 none (also where never clear), 1 low, 2 high, 3 highest;
    - ``change_class`` uint8: class of the first flagging observation, refined by the trajectory
      (vegetation clearing followed by regrowth -> farmland reclamation);
    - ``first_detection`` datetime64: date of the first flagging observation (NaT where none);
    - ``n_clear`` uint8: clear observations after the reference;
    - ``{ndvi,ndbi,mndwi,bsi}_{before,after}`` float32 of the first flagging pair.

    attrs: ``before_datetime`` (reference), ``after_datetime`` (last scene), ``sensor``,
    ``datetimes``/``sensors``/``thresholds`` of the later scenes (JSON), ``change_params``.

    Raises
    ------
    InputError
        Fewer than two scenes, or scenes that :func:`detect_change` rejects.
    """
    p = params or ChangeParams()
    scenes = list(scenes)
    if len(scenes) < 2:
        raise InputError(f"detect_series: need at least 2 scenes (a reference and a later one), got {len(scenes)}")
    if all("datetime" in s.attrs for s in scenes):
        scenes.sort(key=lambda s: np.datetime64(str(s.attrs["datetime"]).replace("Z", "")))
    reference, later = scenes[0], scenes[1:]
    pairs = [detect_change(reference, s, p) for s in later]
    sensors = [str(s.attrs.get("sensor", "")) for s in later]
    names = sorted(set(sensors))
    if len(names) > 62:
        raise InputError(f"detect_series: at most 62 distinct sensors, got {len(names)}")
    sensor_ids = np.array([names.index(s) for s in sensors])
    like = later[-1][BANDS[0]]

    def stack(name, transform=None):
        arrs = [pr[name] if transform is None else transform(pr) for pr in pairs]
        arrs = [xr.DataArray(_data(a), dims=("y", "x")) for a in arrs]
        out = xr.concat(arrs, dim="obs")
        return out.chunk({"obs": -1}) if isinstance(out.data, da.Array) else out

    flags = stack("change")
    rules = stack("rule", lambda pr: pr["rule"] & (pr["change"] == 1))
    classes = stack("change_class")
    ndvi = stack("ndvi_after")
    index_names = [f"{k}_{w}" for k in INDICES for w in ("before", "after")]
    indices = [stack(n) for n in index_names]
    n_out = 4 + len(indices)
    results = xr.apply_ufunc(
        _series_kernel, flags, rules, classes, ndvi, *indices,
        input_core_dims=[["obs"]] * (4 + len(indices)), output_core_dims=[[]] * n_out,
        kwargs={"sensor_ids": sensor_ids, "confirm_window": p.confirm_window, "confirm_min": p.confirm_min,
                "veg_ndvi_min": p.veg_ndvi_min},
        dask="parallelized", output_dtypes=[np.uint8, np.uint8, np.uint8, np.int16] + [np.float32] * len(indices))
    change, change_class, confidence, first = results[:4]
    dates = np.array([np.datetime64(str(s.attrs.get("datetime", "NaT")).replace("Z", ""), "ns") for s in later]
                     + [np.datetime64("NaT", "ns")])
    first_date = xr.apply_ufunc(lambda f: dates[np.where(f < 0, len(dates) - 1, f)], first,
                                dask="parallelized", output_dtypes=["datetime64[ns]"])
    n_clear = (flags != NODATA).sum("obs").astype("uint8")
    attrs = _scene_attrs(reference, later[-1])
    attrs["sensor"] = "/".join(dict.fromkeys(str(s.attrs["sensor"]) for s in scenes if s.attrs.get("sensor")))
    attrs.update({"change_params": json.dumps(p.as_dict(), sort_keys=True),
                  "datetimes": json.dumps([str(s.attrs.get("datetime", "")) for s in later]),
                  "sensors": json.dumps(sensors), "thresholds": json.dumps([pr.attrs["threshold"] for pr in pairs])})
    out = xr.Dataset(coords=like.coords, attrs=attrs)
    out["change"] = _on_grid(_data(change), like, "change", {"flag_values": FLAG_VALUES, "flag_meanings": FLAG_MEANINGS})
    out["change_class"] = _on_grid(_data(change_class), like, "change_class")
    out["confidence"] = _on_grid(_data(confidence), like, "confidence",
                                 {"flag_values": [0, 1, 2, 3], "flag_meanings": "none low high highest"})
    out["first_detection"] = _on_grid(_data(first_date), like, "first_detection")
    out["n_clear"] = _on_grid(_data(n_clear), like, "n_clear")
    for name, arr in zip(index_names, results[4:]):
        out[name] = _on_grid(_data(arr), like, name, {"units": "1"})
    return out
