"""Multi-date confirmation of a series of change pairs: the parts both series paths share.

A series is a reference scene and later scenes; each later scene is compared with the reference
(one change flag per clear observation) and the flags are confirmed over time
(:func:`~rsmon.products.change_classes.confirm_observations`, GLAD/RADD practice). The lazy
:func:`rsmon.products.change.detect_series` and the block pass
:func:`rsmon.products.change_blocks.series_change_blocks` order the scenes, confirm the flags and
describe the result with the functions here, so both give the same rasters and attributes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import xarray as xr

from rsmon.errors import InputError
from rsmon.products.change_classes import CLEARING, FARMLAND, NODATA, confirm_observations
from rsmon.products.change_pair import scene_attrs
from rsmon.products.change_params import ChangeParams

__all__ = ["series_order", "series_sensor_ids", "series_attrs", "series_kernel", "FIRST_OBSERVATION"]

#: Distinct sensors a series may hold (their ids are bits of an int64 in ``confirm_observations``).
MAX_SENSORS = 62

#: The sample of a series' change pixels that gives the position (0-based, float32) among the
#: later scenes (the result's ``datetimes`` attribute) of the observation that first flagged the
#: pixel's active detection (:func:`rsmon.products.change_blocks.series_change_blocks`); a
#: patch's ``first_detected`` is the date of its earliest one
#: (:func:`rsmon.products.patches.patches_from_change`).
FIRST_OBSERVATION = "first_observation"


def series_order(scenes: Sequence[xr.Dataset]) -> tuple[xr.Dataset, list[xr.Dataset]]:
    """``(reference, later scenes)``: sorted by their ``datetime`` attribute when every scene
    has one (else as given); the first is the reference.

    Raises
    ------
    InputError
        Fewer than two scenes.
    """
    scenes = list(scenes)
    if len(scenes) < 2:
        raise InputError(f"detect_series: need at least 2 scenes (a reference and a later one), got {len(scenes)}")
    if all("datetime" in s.attrs for s in scenes):
        scenes.sort(key=lambda s: np.datetime64(str(s.attrs["datetime"]).replace("Z", "")))
    return scenes[0], scenes[1:]


def series_sensor_ids(later: Sequence[xr.Dataset]) -> np.ndarray:
    """A small integer id per later scene's ``sensor`` attribute (the sorted distinct names).

    Raises
    ------
    InputError
        More than :data:`MAX_SENSORS` distinct sensors.
    """
    sensors = [str(s.attrs.get("sensor", "")) for s in later]
    names = sorted(set(sensors))
    if len(names) > MAX_SENSORS:
        raise InputError(f"detect_series: at most {MAX_SENSORS} distinct sensors, got {len(names)}")
    return np.array([names.index(s) for s in sensors])


def series_attrs(reference: xr.Dataset, later: Sequence[xr.Dataset], params: ChangeParams,
                 thresholds: Sequence[float]) -> dict:
    """The attributes of a series result: the reference's and last scene's (``scene_attrs``),
    every scene's sensors, ``change_params`` and, per later scene, ``datetimes``, ``sensors``
    and the pair's magnitude ``thresholds`` (JSON)."""
    attrs = scene_attrs(reference, later[-1])
    attrs["sensor"] = "/".join(dict.fromkeys(str(s.attrs["sensor"]) for s in [reference, *later]
                                             if s.attrs.get("sensor")))
    attrs.update({"change_params": json.dumps(params.as_dict(), sort_keys=True),
                  "datetimes": json.dumps([str(s.attrs.get("datetime", "")) for s in later]),
                  "sensors": json.dumps([str(s.attrs.get("sensor", "")) for s in later]),
                  "thresholds": json.dumps(list(thresholds))})
    return attrs


def series_kernel(flags, rules, classes, ndvi, *indices, sensor_ids, confirm_window, confirm_min, veg_ndvi_min):
    """Confirmation, event class and trajectory of pixels over their observations (the last axis).

    ``flags`` (uint8: 1 change, 0 not, 255 not clear), ``rules`` (bool: the index rule and the
    flag), ``classes`` (uint8 rule class where flagged), ``ndvi`` (after NDVI) and ``indices``
    (float32 index values) of each pair, observations on the last axis. Returns ``change``,
    ``change_class``, ``confidence`` (uint8), ``first`` (int16 index of the first flagging
    observation, -1 none) and the ``indices`` of that observation where the detection is active
    (NaN elsewhere), over the other axes.
    """
    flags, rules, classes, ndvi = (np.moveaxis(a, -1, 0) for a in (flags, rules, classes, ndvi))
    confidence, first = confirm_observations(flags, rules, sensor_ids, confirm_window, confirm_min)
    n_obs = flags.shape[0]
    at = np.clip(first, 0, None)[None].astype(np.intp)
    event_class = np.take_along_axis(classes, at, axis=0)[0]
    # Trajectory: vegetation cleared at the event and vegetated again in a later clear observation
    # is land put under cultivation (farmland reclamation) [U].
    later = np.arange(n_obs).reshape((n_obs,) + (1,) * first.ndim) > first[None]
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
