"""Redline human-activity change detection from optical image pairs and series.

Pure functions, xarray in -> xarray out, no file I/O. Per pixel, one fused numba kernel
(:mod:`rsmon.kernels.change`) does the work; the whole-array NumPy version of the same steps,
:func:`detect_change_numpy`, is its reference.

:func:`detect_change` (one before/after pair on the after grid):

1. masks (:func:`~rsmon.products.change_indices.spectral_masks`): a pixel is valid where both
   dates are clear (product QA ``clear`` and the spectral cloud/shadow/snow/saturation tests);
2. relative radiometric normalisation of the before bands onto the after bands, per-band linear
   regression over pseudo-invariant pixels (:mod:`~rsmon.products.change_threshold`);
3. standardised change vector analysis: ``magnitude = sqrt(sum_b ((after_b - norm_before_b) /
   s_b)^2)`` with ``s_b`` the robust standard deviation (1.4826 x MAD) of the band difference
   (Malila 1980; the scaling puts DN and reflectance pairs, 10 and 30 m, in units of the unchanged
   pixels' spread, so one threshold rule serves all);
4. automatic threshold (Otsu, or a two-Gaussian EM mixture) on the magnitude histogram of the
   valid pixels, never below a chi-square noise floor. Normalisation, band scales and threshold
   are fitted on a bounded regular subset of blocks, every pixel of scenes up to
   ``ChangeParams.fit_sample_px`` (:mod:`~rsmon.products.change_fit`): one dask compute;
5. clean-up: opening/closing and the minimum mapping unit, blockwise with a halo
   (:mod:`~rsmon.products.change_morphology`), equal to the whole-array result;
6. the index rule (dNDVI, dBSI/dNDBI, MNDWI sign change) as the second signal, rule classes and a
   single-pair confidence (:mod:`~rsmon.products.change_classes`).

:func:`detect_change_blocks` computes the same rasters for a whole scene in one pass over its
blocks (every input block decoded once, bounded memory) and hands the index values of the change
pixels over as sparse samples for the patch table (:mod:`~rsmon.products.change_blocks`).

The index rule does not add or remove change pixels: on the six validation sites both the union
and the intersection with the CVA detection lowered F1 (docs/validation_change.md). It classifies
the change and serves as the independent signal that lifts confirmed detections to "highest".

:func:`detect_series` runs the first scene against each later scene and confirms detections over
time (low / high / highest); :func:`series_change_blocks` is its one-pass block version.
:func:`cva_otsu_baseline` is the plain reference method.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dask.array as da
import numpy as np
import xarray as xr

from rsmon.kernels.change import INDEX_PLANES
from rsmon.products.change_blocks import ChangeBlocks, detect_change_blocks, series_change_blocks
from rsmon.products.change_classes import CLASS_NAMES, CONFIDENCE_NAMES, NODATA
from rsmon.products.change_fit import fitted_pair
from rsmon.products.change_indices import BANDS, INDICES
from rsmon.products.change_morphology import clean_change_mask
from rsmon.products.change_numpy import change_magnitude, detect_change_numpy
from rsmon.products.change_pair import FLAG_MEANINGS, FLAG_VALUES, base_attrs, change_variable_attrs
from rsmon.products.change_pair import check_pair as _check_pair
from rsmon.products.change_pair import on_after_grid as _on_after_grid
from rsmon.products.change_pair import on_grid as _on_grid
from rsmon.products.change_params import ChangeParams
from rsmon.products.change_pixels import PLANES, BlockPair
from rsmon.products.change_series import series_attrs, series_kernel, series_order, series_sensor_ids
from rsmon.products.change_threshold import masked_histogram, otsu_threshold

__all__ = ["ChangeParams", "ChangeBlocks", "CLASS_NAMES", "CONFIDENCE_NAMES", "detect_change", "detect_change_blocks",
           "detect_change_numpy", "detect_series", "series_change_blocks", "cva_otsu_baseline", "change_magnitude"]

log = logging.getLogger(__name__)


def _data(arr):
    return arr.data if isinstance(arr, xr.DataArray) else arr


def _pixel_planes(*values, has_qa, k, reflectance, fit, threshold):
    """Every per-pixel output of one block as float32 planes (``change_pixels.PLANES``)."""
    return BlockPair.of(values, has_qa, k, reflectance).planes(fit, threshold)


def detect_change(before: xr.Dataset, after: xr.Dataset, params: ChangeParams | None = None) -> xr.Dataset:
    """Bi-temporal change detection of an aligned optical pair (steps in the module doc), lazy.

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
    xarray.Dataset on the after grid (coords and attrs of ``after``), lazy (dask, the after
    scene's chunks; 512-pixel blocks for in-memory input):

    - ``change`` uint8: 1 change, 0 no change, 255 no data (not clear on either date);
    - ``change_class`` uint8: 0 none, 1 construction, 2 mining/quarrying, 3 farmland reclamation,
      4 vegetation clearing, 5 water-body change, 6 other, 255 no data;
    - ``confidence`` uint8: 1 (low: one pair cannot confirm) where change, else 0 (also on no data);
    - ``rule`` bool: the index-difference rule fired;
    - ``magnitude`` float32: standardised CVA magnitude (dimensionless), NaN where not valid;
    - ``valid`` bool: both dates clear;
    - ``{ndvi,ndbi,mndwi,bsi}_{before,after}`` float32: index values (before after normalisation).

    attrs: ``threshold`` (magnitude), ``threshold_method``, normalisation gains, ``n_sample``,
    ``n_fit_px``/``n_fit_blocks`` (what the fit read), ``change_params`` (JSON),
    ``before_datetime``, ``after_datetime``, ``sensor`` (e.g. "L7" or "S2A/S2B"),
    ``before_source``/``after_source`` (from the inputs' ``source``) and, when no pixel is clear
    on both dates, ``no_data_reason``.

    The fit reads its blocks in one dask compute when called; everything else stays lazy. For a
    whole scene written to files, :func:`detect_change_blocks` computes the same rasters in one
    bounded pass.

    Raises
    ------
    InputError
        Missing bands, different grids or radiometries.
    """
    p, before, inputs, fit = fitted_pair(before, after, params)
    planes = da.map_blocks(_pixel_planes, *inputs.arrays, has_qa=inputs.has_qa, k=inputs.k,
                           reflectance=inputs.reflectance, fit=fit.normalisation, threshold=fit.threshold,
                           new_axis=0, chunks=((len(PLANES),),) + inputs.chunks, dtype=np.float32,
                           meta=np.empty((0, 0, 0), np.float32))
    plane = {name: planes[m] for m, name in enumerate(PLANES)}
    like = after[BANDS[0]]
    valid = _on_grid(plane["valid"].astype(bool), like, "valid")
    raw = _on_grid(plane["raw"].astype(np.uint8), like, "change")
    change = clean_change_mask(raw, p)
    klass = plane["klass"].astype(np.uint8)
    classes = da.where(change.data == NODATA, np.uint8(NODATA), da.where(change.data == 1, klass, np.uint8(0)))

    out = xr.Dataset(coords=after.coords, attrs=base_attrs(before, after, p, inputs.radiometry, fit))
    out["change"] = change.assign_attrs(change_variable_attrs("change"))
    out["change_class"] = _on_grid(classes.astype(np.uint8), like, "change_class",
                                   change_variable_attrs("change_class"))
    out["confidence"] = _on_grid((change.data == 1).astype(np.uint8), like, "confidence",
                                 change_variable_attrs("confidence"))
    out["rule"] = _on_grid(plane["rule"].astype(bool), like, "rule", {"long_name": "index-difference rule fired"})
    out["magnitude"] = _on_grid(plane["magnitude"], like, "magnitude",
                                {"units": "1", "long_name": "standardised change vector magnitude"})
    out["valid"] = valid.assign_attrs(long_name="clear on both dates")
    for name in INDEX_PLANES:
        out[name] = _on_grid(plane[name], like, name, {"units": "1"})
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

    Everything stays lazy (a dask graph, for a distributed scheduler). For a whole series written to
    files, :func:`series_change_blocks` computes the same ``change``, ``change_class``,
    ``confidence`` and index values at the change pixels in one pass over the blocks (6.7x faster
    on a Sentinel-2 tile with two later scenes, docs/benchmarks.md).

    Raises
    ------
    InputError
        Fewer than two scenes, or scenes that :func:`detect_change` rejects.
    """
    p = params or ChangeParams()
    reference, later = series_order(scenes)
    pairs = [detect_change(reference, s, p) for s in later]
    sensor_ids = series_sensor_ids(later)
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
        series_kernel, flags, rules, classes, ndvi, *indices,
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
    attrs = series_attrs(reference, later, p, [pr.attrs["threshold"] for pr in pairs])
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

