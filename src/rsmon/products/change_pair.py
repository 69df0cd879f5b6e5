"""What every change result shares: the pair checks, the after grid, and the result attributes."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from rsmon.errors import InputError
from rsmon.products.change_classes import CLASS_NAMES
from rsmon.products.change_indices import BANDS, check_scene
from rsmon.products.change_params import ChangeParams

__all__ = ["FLAG_MEANINGS", "FLAG_VALUES", "base_attrs", "change_variable_attrs", "check_pair", "on_after_grid",
           "on_grid", "scene_attrs"]

FLAG_VALUES = [0, 1, 255]
FLAG_MEANINGS = "no_change change no_data"


def scene_attrs(before: xr.Dataset, after: xr.Dataset) -> dict:
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


def check_pair(before: xr.Dataset, after: xr.Dataset) -> tuple[str, str]:
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


def on_after_grid(before: xr.Dataset, after: xr.Dataset) -> xr.Dataset:
    """``before`` with the after grid's coordinates (checked equal to half a pixel), so that no
    xarray alignment ever drops a row over float noise."""
    coords = {d: after[d] for d in ("y", "x") if d in after.coords}
    return before.assign_coords(coords) if coords else before


def on_grid(data, like: xr.DataArray, name: str, attrs: dict | None = None) -> xr.DataArray:
    return xr.DataArray(data, dims=("y", "x"), coords=like.coords, name=name, attrs=attrs or {})


def change_variable_attrs(name: str) -> dict:
    """CF flag attributes of the uint8 change variables (``change``, ``change_class``, ``confidence``)."""
    if name == "change":
        return {"flag_values": FLAG_VALUES, "flag_meanings": FLAG_MEANINGS, "long_name": "human-activity change"}
    if name == "change_class":
        return {"flag_values": list(CLASS_NAMES),
                "flag_meanings": " ".join(n.replace(" ", "_").replace("/", "_or_") for n in CLASS_NAMES.values()),
                "long_name": "rule class of the change"}
    return {"flag_values": [0, 1, 2, 3], "flag_meanings": "none low high highest", "long_name": "alert confidence"}


def base_attrs(before: xr.Dataset, after: xr.Dataset, params: ChangeParams, radiometry: str, fit) -> dict:
    """The attributes of a change result: method, fit (a :class:`~rsmon.products.change_fit.ChangeFit`),
    parameters (JSON), dates, sensor, sources."""
    norm = fit.normalisation
    attrs = {"threshold_method": params.threshold_method, "n_sample": norm.n_sample, "n_pif": norm.n_pif,
             "radiometry": radiometry, "change_params": json.dumps(params.as_dict(), sort_keys=True)}
    attrs.update(scene_attrs(before, after))
    attrs.update(norm.as_attrs(BANDS))
    attrs.update(fit.as_attrs())
    return attrs
