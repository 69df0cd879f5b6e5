"""Rule classification of change pixels, the index-difference rule, and multi-date confirmation.

Class codes (``change_class``, uint8):

====  ======================  ==========================================================
code  class                   rule (before -> after; thresholds in :class:`ChangeParams`)
====  ======================  ==========================================================
0     no change               not a change pixel
1     construction            after not vegetated and built-up/bare (NDBI > ``built_ndbi_min``),
                              not mining-like; or non-vegetated both dates with NDBI/BSI rising
2     mining/quarrying        after not vegetated and very bare (BSI >= ``mining_bsi_min``) or
                              bright (mean reflectance >= ``mining_brightness_min``)
3     farmland reclamation    after vegetated on land that was not (cultivation of bare/fallow
                              land); in a series also vegetation loss followed by regrowth
4     vegetation clearing     vegetated before, after not vegetated and not built/bare/bright;
                              or vegetated both dates with NDVI falling by ``rule_ndvi_drop``
5     water-body change       water (MNDWI > ``water_mndwi_min``) on one date only and
                              \\|dMNDWI\\| >= ``rule_mndwi_change`` (new pond, filled water body)
6     other                   any other change
255   no data
====  ======================  ==========================================================

The rules are rules of thumb ([U] in ../shared/reference/redline_eqi.md: before/after semantics of
the 卫片执法 classes, vegetation -> construction, -> earth fill ...); the numbers are rsmon choices
documented in :class:`ChangeParams`. They assume reflectance; on uncalibrated DN stacks (normalised
to the after date) the index values, and so the classes, are indicative only. Mining and
construction sites are both bare ground at 10-30 m; only brightness and bareness separate them.

Confidence (``confidence``, uint8; GLAD/RADD practice, redline_eqi.md §2): 1 low = flagged by one
clear observation; 2 high = a later clear observation confirmed it (``confirm_min`` flags within
the next ``confirm_window`` clear observations, else the low detection expires); 3 highest = high
and two independent signals agree: the CVA detection and the index rule in one flagging
observation, or flags from two sensors. rsmon asks for the confirmation too (GFW gives "highest"
to any multi-system detection) because the index rule reads the same image as the CVA.
A confirmed detection stays confirmed (GLAD alerts are not withdrawn by later observations).
"""

from __future__ import annotations

import numpy as np

from rsmon.products.change_params import ChangeParams

NO_CHANGE, CONSTRUCTION, MINING, FARMLAND, CLEARING, WATER, OTHER, NODATA = 0, 1, 2, 3, 4, 5, 6, 255
CLASS_NAMES = {NO_CHANGE: "no change", CONSTRUCTION: "construction", MINING: "mining/quarrying",
               FARMLAND: "farmland reclamation", CLEARING: "vegetation clearing",
               WATER: "water-body change", OTHER: "other", NODATA: "no data"}
CONFIDENCE_NAMES = {0: "none", 1: "low", 2: "high", 3: "highest"}


def index_rule(before: dict, after: dict, params: ChangeParams):
    """The index-difference change signal (bool): vegetation loss or gain, more bare/built, water.

    ``before``/``after`` map "ndvi", "ndbi", "mndwi", "bsi" to arrays (NumPy, dask or xarray).
    True where dNDVI <= -``rule_ndvi_drop`` or >= ``rule_ndvi_gain``, or dBSI or dNDBI >=
    ``rule_bare_gain``, or MNDWI crosses ``water_mndwi_min`` changing by >= ``rule_mndwi_change``.
    """
    p = params
    d_ndvi = after["ndvi"] - before["ndvi"]
    water_b = before["mndwi"] > p.water_mndwi_min
    water_a = after["mndwi"] > p.water_mndwi_min
    water_change = (water_b != water_a) & (abs(after["mndwi"] - before["mndwi"]) >= p.rule_mndwi_change)
    return ((d_ndvi <= -p.rule_ndvi_drop) | (d_ndvi >= p.rule_ndvi_gain)
            | (after["bsi"] - before["bsi"] >= p.rule_bare_gain)
            | (after["ndbi"] - before["ndbi"] >= p.rule_bare_gain) | water_change)


def classify_change(before: dict, after: dict, brightness_after, change, params: ChangeParams):
    """Class codes (uint8, table in the module doc) of the pixels where ``change`` is True.

    Parameters
    ----------
    before, after : dict
        "ndvi", "ndbi", "mndwi", "bsi" arrays of the two dates (NumPy, dask or xarray, same shape).
    brightness_after : array
        Mean of the six after bands (reflectance); NaN disables the brightness test.
    change : array of bool
        Change pixels; elsewhere the code is 0 (the caller sets 255 on no data).
    params : ChangeParams

    Returns
    -------
    array of uint8, same backing as the inputs.
    """
    p = params
    water_b = before["mndwi"] > p.water_mndwi_min
    water_a = after["mndwi"] > p.water_mndwi_min
    water = (water_b != water_a) & (abs(after["mndwi"] - before["mndwi"]) >= p.rule_mndwi_change)
    veg_b = before["ndvi"] >= p.veg_ndvi_min
    veg_a = after["ndvi"] >= p.veg_ndvi_min
    miningish = (after["bsi"] >= p.mining_bsi_min) | (brightness_after >= p.mining_brightness_min)
    built_a = after["ndbi"] > p.built_ndbi_min
    barer = ((after["ndbi"] - before["ndbi"]) >= p.rule_bare_gain) | ((after["bsi"] - before["bsi"]) >= p.rule_bare_gain)
    land = ~water
    loss = land & veg_b & ~veg_a
    gain = land & ~veg_b & veg_a
    bare_both = land & ~veg_b & ~veg_a
    veg_both = land & veg_b & veg_a
    mining = (loss & miningish) | (bare_both & barer & miningish)
    construction = (loss & ~miningish & built_a) | (bare_both & barer & ~miningish)
    clearing = (loss & ~miningish & ~built_a) | (veg_both & ((after["ndvi"] - before["ndvi"]) <= -p.rule_ndvi_drop))
    farmland = gain
    classified = water | mining | construction | clearing | farmland
    codes = (WATER * water + MINING * mining + CONSTRUCTION * construction + CLEARING * clearing
             + FARMLAND * farmland + OTHER * ~classified)
    return (codes * change).astype(np.uint8)


def confirm_observations(flags: np.ndarray, rules: np.ndarray, sensor_ids: np.ndarray,
                         confirm_window: int, confirm_min: int) -> tuple[np.ndarray, np.ndarray]:
    """GLAD-style confirmation of per-observation change flags (NumPy, one block).

    Parameters
    ----------
    flags : numpy.ndarray of uint8, shape (n_obs, ...)
        Per chronological observation: 1 change, 0 no change (clear), 255 not clear / no data.
    rules : numpy.ndarray of bool, shape (n_obs, ...)
        The index rule agreed with the flag of that observation.
    sensor_ids : numpy.ndarray of int, shape (n_obs,)
        Small integer id of each observation's sensor (0..30).
    confirm_window, confirm_min : int
        A first detection is confirmed when ``confirm_min`` of the next ``confirm_window`` clear
        observations flag the pixel; it expires when that can no longer happen.

    Returns
    -------
    confidence : numpy.ndarray of uint8 (0 none, 1 low, 2 high, 3 highest)
    first : numpy.ndarray of int16, index of the first flagging observation of the current
        detection, -1 where none.
    """
    shape = flags.shape[1:]
    state = np.zeros(shape, np.uint8)            # 0 none, 1 pending (low), 2 confirmed
    first = np.full(shape, -1, np.int16)
    seen = np.zeros(shape, np.int16)
    hits = np.zeros(shape, np.int16)
    rule_agreed = np.zeros(shape, bool)
    sensors = np.zeros(shape, np.int64)
    for k in range(flags.shape[0]):
        clear = flags[k] != 255
        flagged = clear & (flags[k] == 1)
        bit = np.int64(1) << np.int64(sensor_ids[k])
        # a pending detection sees one more clear observation
        pending = (state == 1) & clear
        seen[pending] += 1
        confirm_hit = pending & flagged
        hits[confirm_hit] += 1
        rule_agreed |= confirm_hit & rules[k]
        sensors[confirm_hit] |= bit
        confirmed_now = pending & (hits >= confirm_min)
        state[confirmed_now] = 2
        expired = pending & ~confirmed_now & ((confirm_window - seen) < (confirm_min - hits))
        state[expired] = 0
        first[expired] = -1
        # a confirmed detection collects further agreeing signals
        later = (state == 2) & flagged & ~confirm_hit
        rule_agreed |= later & rules[k]
        sensors[later] |= bit
        # a new first detection
        new = (state == 0) & flagged & ~expired
        state[new] = 1
        first[new] = k
        seen[new] = 0
        hits[new] = 0
        rule_agreed[new] = rules[k][new]
        sensors[new] = bit
    two_sensors = _popcount(sensors) >= 2
    confidence = state.copy()
    confidence[(state == 2) & (rule_agreed | two_sensors)] = 3
    return confidence, first


def _popcount(values: np.ndarray) -> np.ndarray:
    count = np.zeros(values.shape, np.int64)
    v = values.copy()
    while v.any():
        count += v & 1
        v >>= 1
    return count
