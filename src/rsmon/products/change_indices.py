"""Spectral indices and spectral masks of one optical scene (pure, lazy, NaN-safe).

Indices (../shared/reference/redline_eqi.md §3; index formulas as in the cited papers):

- NDVI  = (NIR - red) / (NIR + red)                                   (Rouse et al. 1974)
- NDBI  = (SWIR1 - NIR) / (SWIR1 + NIR)                               (Zha et al. 2003)
- MNDWI = (green - SWIR1) / (green + SWIR1)                           (Xu 2006)
- BSI   = ((SWIR1 + red) - (NIR + blue)) / ((SWIR1 + red) + (NIR + blue))  (Rikimaru et al. 2002)

A normalised difference is NaN where either band is NaN or the denominator is 0.

Masks (:func:`spectral_masks`) apply only to reflectance (``radiometry="reflectance"``); for
uncalibrated DN stacks the absolute-reflectance tests mean nothing and only finiteness and
saturation are tested. A product QA ``clear`` variable, when the reader gives one, is combined
with the spectral tests (both must call the pixel clear).
"""

from __future__ import annotations

import logging

import xarray as xr

from rsmon.errors import InputError
from rsmon.products.change_params import RADIOMETRY, ChangeParams

log = logging.getLogger(__name__)

BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")
INDICES = ("ndvi", "ndbi", "mndwi", "bsi")


def check_scene(ds: xr.Dataset, name: str = "scene") -> str:
    """Check that ``ds`` has the six bands on ("y", "x") and return its radiometry.

    Raises
    ------
    InputError
        A band is missing or has other dimensions, or ``attrs["radiometry"]`` is unknown.
    """
    missing = [b for b in BANDS if b not in ds.data_vars]
    if missing:
        raise InputError(f"{name}: missing band variable(s) {missing}; change detection needs {list(BANDS)}")
    for b in BANDS:
        if ds[b].dims != ("y", "x"):
            raise InputError(f"{name}: variable {b!r} has dims {ds[b].dims}, expected ('y', 'x')")
    radiometry = ds.attrs.get("radiometry", "reflectance")
    if radiometry not in RADIOMETRY:
        raise InputError(f"{name}: attrs['radiometry'] = {radiometry!r}, expected one of {RADIOMETRY}")
    return radiometry


def normalised_difference(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """(a - b) / (a + b) as float32; NaN where an input is NaN or a + b == 0."""
    total = a + b
    return ((a - b) / total.where(total != 0)).astype("float32")


def spectral_indices(ds: xr.Dataset) -> xr.Dataset:
    """NDVI, NDBI, MNDWI and BSI of a scene with the six standard bands (float32, lazy).

    Parameters
    ----------
    ds : xarray.Dataset
        Variables ``blue, green, red, nir, swir1, swir2`` (reflectance 0..1, or DN) on ("y", "x").

    Returns
    -------
    xarray.Dataset
        ``ndvi``, ``ndbi``, ``mndwi``, ``bsi`` (dimensionless, -1..1, NaN where undefined).
    """
    out = xr.Dataset({
        "ndvi": normalised_difference(ds["nir"], ds["red"]),
        "ndbi": normalised_difference(ds["swir1"], ds["nir"]),
        "mndwi": normalised_difference(ds["green"], ds["swir1"]),
        "bsi": normalised_difference(ds["swir1"] + ds["red"], ds["nir"] + ds["blue"]),
    })
    for name in INDICES:
        out[name].attrs["units"] = "1"
    return out


def spectral_masks(ds: xr.Dataset, params: ChangeParams | None = None) -> xr.Dataset:
    """Clear, cloud, shadow, snow and water masks of one scene (bool, lazy).

    Tests (thresholds in :class:`ChangeParams`, sources there):

    - water: MNDWI > ``water_mndwi_min`` (Xu 2006) and NIR < ``water_nir_max``;
    - cloud: blue > ``cloud_blue_min`` and HOT > 0 and red <= ``cloud_red_blue_max`` x blue and
      whiteness < ``cloud_whiteness_max`` and SWIR2 > ``cloud_swir2_min`` and not water (Fmask
      spectral tests without the thermal band, made stricter for bright sand and soil; snow
      is not cloud);
    - shadow: NIR < ``shadow_nir_max`` and SWIR1 < ``shadow_swir1_max`` and not water;
    - snow: NDSI > ``snow_ndsi_min`` and NIR > ``snow_nir_min`` and green > ``snow_green_min``;
    - invalid: any band NaN or saturated (> ``saturation_reflectance_max``; DN >= ``saturation_dn_max``).

    ``clear`` = not (cloud, shadow, snow, invalid) and, when ``ds`` has a bool ``clear`` variable
    (product QA), also that. For ``radiometry="dn"`` only the invalid test and the QA apply (cloud,
    shadow and snow stay False) and ``water`` uses the same MNDWI test on DN (indicative only).

    Returns
    -------
    xarray.Dataset
        bool variables ``clear``, ``cloud``, ``shadow``, ``snow``, ``water``, ``invalid``.
    """
    p = params or ChangeParams()
    radiometry = check_scene(ds)
    bands = [ds[b] for b in BANDS]
    finite = bands[0].notnull()
    for band in bands[1:]:
        finite = finite & band.notnull()
    limit = p.saturation_dn_max if radiometry == "dn" else p.saturation_reflectance_max
    saturated = bands[0] >= limit if radiometry == "dn" else bands[0] > limit
    for band in bands[1:]:
        saturated = saturated | (band >= limit if radiometry == "dn" else band > limit)
    invalid = ~finite | saturated

    mndwi = normalised_difference(ds["green"], ds["swir1"])
    water = (mndwi > p.water_mndwi_min) & ~invalid
    if radiometry == "reflectance":
        water = water & (ds["nir"] < p.water_nir_max)
    if "water" in ds.data_vars:
        water = water | (ds["water"].astype(bool) & ~invalid)
    if radiometry == "reflectance":
        blue, green, red = ds["blue"], ds["green"], ds["red"]
        mean_vis = (blue + green + red) / 3
        whiteness = (abs(blue - mean_vis) + abs(green - mean_vis) + abs(red - mean_vis)) / (3 * mean_vis)
        hot = blue - 0.5 * red - p.cloud_hot_offset
        # NDSI has the MNDWI formula; the NIR test separates snow from water.
        snow = (mndwi > p.snow_ndsi_min) & (ds["nir"] > p.snow_nir_min) & (green > p.snow_green_min)
        cloud = ((blue > p.cloud_blue_min) & (hot > 0) & (red <= p.cloud_red_blue_max * blue)
                 & (whiteness < p.cloud_whiteness_max)
                 & (ds["swir2"] > p.cloud_swir2_min) & ~water & ~snow)
        shadow = (ds["nir"] < p.shadow_nir_max) & (ds["swir1"] < p.shadow_swir1_max) & ~water
    else:
        log.debug("radiometry 'dn': spectral cloud/shadow/snow tests skipped (they need reflectance)")
        cloud = shadow = snow = xr.zeros_like(invalid)
    clear = ~(invalid | cloud | shadow | snow)
    if "clear" in ds.data_vars:
        clear = clear & ds["clear"].astype(bool)
    return xr.Dataset({"clear": clear, "cloud": cloud & ~invalid, "shadow": shadow & ~invalid,
                       "snow": snow & ~invalid, "water": water, "invalid": invalid})


def pair_valid(before_masks: xr.Dataset, after_masks: xr.Dataset) -> xr.DataArray:
    """An observation pair is valid only where both dates are clear."""
    return before_masks["clear"] & after_masks["clear"]
