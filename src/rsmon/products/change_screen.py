"""Pseudo-change screening of change patches with a land-cover map: the crop cycle.

A redline pre-screen over farmland flags every harvest, ploughing and sowing: vegetation to
stubble or soil raises NDBI as building does (Zha et al. 2003), so on the simulated June tile 99.8 %
of the false change lay on harvested wheat parcels (docs/validation_change.md). The operational
answer is *pseudo-change removal* before interpretation: MapBiomas Alerta discards alerts on
agricultural land in its pre-validation and records the reason (redline_eqi.md section 2); the
Chinese draft for suspected ecological-damage spots separates automatic change spots from spots
after pseudo-change removal (redline_eqi.md section 1).

Rule (:func:`crop_cycle`): a patch is a crop-cycle pseudo-change when

- at least ``min_cropland_fraction`` of its area is cropland in the land-cover map, and
- its class is not water-body change (a pond dug in a field is a human activity to report), and
- its after surface is not barren: mean after NDVI above ``barren_ndvi_max`` (a harvested or
  ploughed field keeps soil and stubble; concrete, rock and sand fall below), and
- it did not persist: fewer than ``crop_cycle_days`` days lie between its first and its last
  flagging observation (a pair has one, so 0 days).

What the rule gives up, stated plainly: construction on cropland that is still bare earth, seen in
one pair, is screened with the harvests; it comes back as a kept patch once a later observation, ``crop_cycle_days`` after
the first, still flags it (a series run), because a harvested field is green again by then. Screened
patches are never dropped silently: they are written apart, with their reason, for audit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
import pandas as pd

from rsmon.errors import InputError
from rsmon.products.change_classes import WATER

__all__ = ["CROP_CYCLE", "ScreenParams", "crop_cycle", "persisted_days", "screen_patches"]

#: Reason recorded for a patch screened as the crop cycle (``screen_reason`` column).
CROP_CYCLE = "crop_cycle"


@dataclass(frozen=True)
class ScreenParams:
    """Thresholds of the crop-cycle screen.

    Attributes
    ----------
    cropland_codes : tuple of int
        Land-cover codes counted as cropland. Default ``(40,)``: ESA WorldCover 2021 v200 class 40
        "Cropland" (Product User Manual, Van De Kerchove et al. 2022; see
        :data:`rsmon.io.landcover.WORLDCOVER_CLASSES`). Another map needs its own codes (e.g. the
        third national land survey's 0101/0102/0103 paddy, irrigated and dry land).
    min_cropland_fraction : float
        Share of the patch area on cropland for the screen to apply. Default 0.5 (the majority):
        **an rsmon choice**, as for the straw-burning cropland test (:class:`rsmon.products.straw.StrawParams`).
    barren_ndvi_max : float
        After NDVI (the patch mean) at or below which the surface is barren (rock, sand, concrete),
        not a field between crops. Default 0.1: "values close to zero (-0.1 to 0.1) generally
        correspond to barren areas of rock, sand, or snow" (Sentinel Hub, NDVI product page,
        sentinel-hub.com/eoproducts/ndvi-normalized-difference-vegetation-index); bare soil lies
        around 0.1 and above, stubble higher. A patch without an after NDVI is never screened.
    crop_cycle_days : int
        A change still flagged this many days after its first detection is not the crop cycle.
        Default 60: **an rsmon choice** with a margin over the wheat-maize rotation of the North
        China Plain, the fastest cycle of the plan's regions: winter wheat is harvested by mid-June
        and the maize sown right after is at jointing in mid-to-late July, the regional NDVI back to
        its average by the end of July (CropWatch bulletins: Huanghuaihai April-July,
        cloud.cropwatch.com.cn report 217; "summer maize at jointing", cropwatch.com.cn update 64,
        July 2020), about 45 days after the harvest.
    """

    cropland_codes: tuple[int, ...] = (40,)
    min_cropland_fraction: float = 0.5
    barren_ndvi_max: float = 0.1
    crop_cycle_days: int = 60

    def __post_init__(self) -> None:
        codes = tuple(self.cropland_codes)
        if not codes or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in codes):
            raise InputError(f"--cropland-codes: expected one or more whole land-cover codes, got {self.cropland_codes!r}")
        object.__setattr__(self, "cropland_codes", tuple(int(c) for c in codes))
        frac = self.min_cropland_fraction
        if not (isinstance(frac, (int, float)) and math.isfinite(frac) and 0.0 < frac <= 1.0):
            raise InputError(f"ScreenParams.min_cropland_fraction: expected 0 < value <= 1, got {frac!r}")
        ndvi = self.barren_ndvi_max
        if not (isinstance(ndvi, (int, float)) and math.isfinite(ndvi) and -1.0 <= ndvi <= 1.0):
            raise InputError(f"ScreenParams.barren_ndvi_max: expected an NDVI in [-1, 1], got {ndvi!r}")
        days = self.crop_cycle_days
        if not isinstance(days, (int, np.integer)) or isinstance(days, bool) or days < 1:
            raise InputError(f"ScreenParams.crop_cycle_days: expected a whole number of days >= 1, got {days!r}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["cropland_codes"] = list(self.cropland_codes)
        return d


def _day(value) -> date | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def persisted_days(table: pd.DataFrame) -> np.ndarray:
    """Days from each patch's ``first_detected`` to its ``last_detected`` (0 when either is missing)."""
    out = np.zeros(len(table), dtype=np.int64)
    if not len(table):
        return out
    for i, (first, last) in enumerate(zip(table["first_detected"], table["last_detected"])):
        a, b = _day(first), _day(last)
        if a is not None and b is not None:
            out[i] = max((b - a).days, 0)
    return out


def crop_cycle(table: pd.DataFrame, cropland_fraction: np.ndarray, params: ScreenParams) -> np.ndarray:
    """True for the patches the crop-cycle rule screens (module docstring).

    ``cropland_fraction`` is one value per row of ``table`` (NaN where the map has no valid cell
    under the patch: such a patch is never screened).
    """
    frac = np.asarray(cropland_fraction, dtype=float)
    if frac.shape != (len(table),):
        raise InputError(f"cropland fraction: expected {len(table)} values (one per patch), got shape {frac.shape}")
    if not len(table):
        return np.zeros(0, dtype=bool)
    on_cropland = np.nan_to_num(frac, nan=-1.0) >= params.min_cropland_fraction
    not_water = table["class_code"].to_numpy() != WATER
    with np.errstate(invalid="ignore"):
        not_barren = table["ndvi_after"].to_numpy(dtype=float) > params.barren_ndvi_max  # NaN: False
    transient = persisted_days(table) < params.crop_cycle_days
    return on_cropland & not_water & not_barren & transient


def screen_patches(table, cropland_fraction: np.ndarray, params: ScreenParams):
    """Split a patch table into (kept, screened) by :func:`crop_cycle`.

    Both tables gain ``cropland_fraction``; the screened one also ``screen_reason``
    (:data:`CROP_CYCLE`). Row order (largest patch first) and ids are kept.
    """
    screened = crop_cycle(table, cropland_fraction, params)
    table = table.copy()
    table["cropland_fraction"] = np.asarray(cropland_fraction, dtype=float)
    kept = table[~screened].reset_index(drop=True)
    out = table[screened].reset_index(drop=True)
    out["screen_reason"] = pd.Series([CROP_CYCLE] * len(out), dtype="object")
    return kept, out
