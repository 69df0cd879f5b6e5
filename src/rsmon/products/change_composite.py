"""Reference composites for change detection: the latest clear observation of each pixel.

A monitoring centre compares this month's scene with the most recent cloud-free view of every
pixel, not with one older scene that may be cloudy where it matters (the "latest clear pixel"
reference of operational alert systems such as GLAD-L, which compare each new observation with a
per-pixel clear baseline; ../shared/reference/redline_eqi.md section 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from rsmon.errors import InputError
from rsmon.products.change_indices import BANDS, check_scene, spectral_masks
from rsmon.products.change_params import ChangeParams

__all__ = ["latest_clear_composite"]


def _when(ds: xr.Dataset) -> np.datetime64:
    text = ds.attrs.get("datetime")
    if not text:
        return np.datetime64("NaT")
    return np.datetime64(str(text).replace("Z", "").replace("+00:00", ""))


def latest_clear_composite(scenes: Sequence[xr.Dataset], params: ChangeParams | None = None) -> xr.Dataset:
    """Per pixel, the bands of the most recent scene in which the pixel is clear (lazy).

    Parameters
    ----------
    scenes : sequence of xarray.Dataset
        Scenes on one grid (:func:`rsmon.io.optical.align_pair`), the
        :func:`rsmon.io.optical.open_optical` contract; sorted here by their ``datetime`` attribute
        (scenes without one keep their order, before dated ones).
    params : ChangeParams, optional
        Cloud/shadow/snow thresholds for :func:`~rsmon.products.change_indices.spectral_masks`.

    Returns
    -------
    xarray.Dataset
        The six bands (NaN where no scene is clear), ``clear`` (bool: some scene was clear there)
        and ``observation_index`` (int8: which scene, in date order, gave the pixel; -1 none); attrs
        of the latest scene with ``datetime`` = the latest scene's, ``composite_of`` = the sources.

    Raises
    ------
    InputError
        No scene, scenes on different grids, or mixed radiometries (DN and reflectance).
    """
    scenes = list(scenes)
    if not scenes:
        raise InputError("latest_clear_composite: no scene")
    if len(scenes) == 1:
        return scenes[0]
    radiometries = {check_scene(s, f"scene {i}") for i, s in enumerate(scenes)}
    if len(radiometries) > 1:
        raise InputError(f"latest_clear_composite: scenes mix radiometries {sorted(radiometries)}")
    shape = scenes[0][BANDS[0]].shape
    for i, s in enumerate(scenes[1:], 1):
        if s[BANDS[0]].shape != shape:
            raise InputError(f"latest_clear_composite: scene {i} is {s[BANDS[0]].shape}, expected {shape} "
                             "(align the scenes onto one grid first)")
    order = sorted(range(len(scenes)), key=lambda i: (not np.isnat(_when(scenes[i])), _when(scenes[i])))
    p = params or ChangeParams()
    ordered = [scenes[i] for i in order]
    latest = ordered[-1]
    bands = {b: latest[b] for b in BANDS}
    clear = spectral_masks(latest, p)["clear"]
    source = xr.full_like(clear, len(ordered) - 1, dtype="int8").where(clear, -1).astype("int8")
    for k in range(len(ordered) - 2, -1, -1):  # fill from ever older scenes
        scene = ordered[k]
        fill = ~clear & spectral_masks(scene, p)["clear"]
        for b in BANDS:
            bands[b] = xr.where(fill, scene[b], bands[b])
        source = xr.where(fill, np.int8(k), source).astype("int8")
        clear = clear | fill
    out = xr.Dataset({b: bands[b].where(clear).astype("float32").assign_attrs(latest[b].attrs) for b in BANDS},
                     coords=latest.coords, attrs=dict(latest.attrs))
    out["clear"] = clear
    out["observation_index"] = source.assign_attrs(long_name="scene (date order) of the composite pixel")
    out.attrs["composite_of"] = [str(s.attrs.get("source", "")) for s in ordered]
    return out
