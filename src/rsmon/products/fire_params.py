"""Parameters of the VIIRS 375 m active-fire algorithm (:class:`FireParams`), with their sources.

Source of every threshold unless noted: Schroeder, Oliva, Giglio & Csiszar (2014), "The New VIIRS
375 m active fire detection data product: Algorithm description and initial assessment", Remote
Sens. Environ. 143:85-96 (section 3, as transcribed and checked against the paper's text in
../shared/reference/fire.md §1.1; "S14" below). Interpretations where the paper is ambiguous are
marked "choice" and kept as parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from rsmon.errors import InputError

#: VNP03 ``land_water_mask`` codes treated as water: shallow ocean, shallow inland water, deep
#: inland water, moderate ocean, deep ocean (land 1, coastline 2 and ephemeral water 4 are land).
WATER_CODES = (0, 3, 5, 6, 7)

WINDOW_RULES = ("and", "or")


@dataclass(frozen=True)
class FireParams:
    """Thresholds of the VIIRS 375 m active-fire algorithm (recorded in every output's provenance).

    Temperatures in K, reflectances as factors 0..1, angles in degrees. ``rho`` = reflectance of
    I1/I2/I3, ``BT4``/``BT5`` = I4/I5 brightness temperature, ``dT`` = BT4 - BT5.

    Attributes
    ----------
    night_solar_zenith_min_deg : float
        A pixel is night when its solar zenith >= this (S14: 90; NOAA NDE/CSPP use 85).
    water_codes : tuple of int
        ``land_water_mask`` codes that are water (:data:`WATER_CODES`; choice: ephemeral water and
        coastline count as land).
    reflectance_water_test : bool
        Also call day pixels with rho1 > rho2 > rho3 water (S14 §3.2.1).
    process_water_pixels : bool
        Test water pixels for fire (S14: yes, for offshore gas flares); water never enters a
        background. False rejects every fire on a water pixel.
    cloud_bt5_max_k : float
        Cloud if BT5 < this, day (alone) and night (with the next) (S14: 265).
    cloud_night_bt4_max_k : float
        Night cloud also needs BT4 < this (S14: 295).
    cloud_day_refl_sum_high, cloud_day_bt5_high_k : float
        Day cloud if rho1 + rho2 > 0.9 and BT5 < 295 (S14).
    cloud_day_refl_sum_mid, cloud_day_bt5_mid_k : float
        Day cloud if rho1 + rho2 > 0.7 and BT5 < 285 (S14).
    saturation_bt4_k : float
        I4 saturation brightness temperature (S14: 367). Used for saturated pixels whose BT4 the
        reader left NaN; saturation itself comes from ``i4_saturated``.
    saturated_day_bt5_min_k, saturated_day_refl_sum_max : float
        A saturated pixel is a fixed-threshold fire at night, and by day when also BT5 > 290 and
        rho1 + rho2 < 0.7 (S14).
    folded_day_bt5_min_k, folded_night_bt5_min_k : float
        Folded (saturated-then-wrapped) pixel if dT < 0 and BT5 > 325 (day) / > 310 (night) (S14).
    folded_bt4_k, folded_bt4_tolerance_k, folded_night_low_bt5_min_k : float
        Night folded pixel also if BT4 = 208 (within the tolerance; FILDA-2 uses BT4 <= 209) and
        BT5 > 335 (S14).
    night_fixed_bt4_min_k : float
        Night fixed-threshold fire: BT4 > 320 with a nominal, unsaturated I4 (S14).
    bgfire_day_bt4_min_k, bgfire_day_dt_min_k : float
        Potential background fire by day: BT4 > 335 and dT > 30 (S14).
    bgfire_night_bt4_min_k, bgfire_night_dt_min_k : float
        Potential background fire at night: BT4 > 300 and dT > 10 (S14).
    bright_refl_sum_min, bright_bt5_max_k, bright_refl3_min, bright_refl2_min, bright_bt4_max_k : float
        Bright fire-free target, skipped by day: rho1 + rho2 > 0.6, BT5 < 285, rho3 > 0.3,
        rho3 > rho2, rho2 > 0.25 and BT4 <= 335 (S14).
    candidate_day_bt4_lo_k, candidate_day_bt4_hi_k : float
        Day candidate if BT4 > BT4s = min(330, max(325, M)) (S14).
    candidate_day_median_window_px : int
        M = median BT4 of the valid background in this window (S14: 501 x 501).
    candidate_day_median_min_valid : int
        Fewer valid pixels than this: BT4s = ``candidate_day_bt4_hi_k`` (S14: 10).
    candidate_day_median_block_px : int
        M is computed once per block of this many lines x samples, around the block centre (choice,
        for speed; 1 = per pixel): the window moves by at most 32 of its 501 pixels. Only blocks
        holding a pixel with 325 < BT4 <= 330 need M; each costs 0.3-4 ms (numba, one core).
    candidate_day_dt_min_k : float
        Day candidate also if dT > 25 (S14).
    candidate_night_bt4_min_k, candidate_night_dt_min_k : float
        Night candidate if BT4 > 295 or dT > 10 (S14).
    window_min_px, window_max_px : int
        The background window grows from 11 x 11 to 31 x 31 (S14).
    window_min_valid, window_min_valid_fraction : int, float
        Enough background: >= 10 valid pixels and >= 25 % of the window (S14).
    window_rule : {"and", "or"}
        How the two conditions combine. S14's text reads "or", but >= 25 % of an 11 x 11 window
        is already 30 pixels, so with "or" the fraction would never matter; "and" is the MODIS rule
        (Giglio et al. 2003) and that of the implementations quoted in fire.md (choice).
    ctx_day_dt_mad, ctx_day_dt_offset_k, ctx_day_bt4_mad : float
        Day contextual fire: dT > dTb + 2 ddT, dT > dTb + 10 and BT4 > BT4b + 3.5 d4 (S14) ...
    ctx_day_bt5_offset_k, ctx_day_bgfire_mad_min_k : float
        ... and (BT5 > BT5b + d5 - 4 or d'4 > 5) (S14).
    ctx_night_dt_mad, ctx_night_dt_offset_k, ctx_night_bt4_mad : float
        Night contextual fire: dT > dTb + 3 ddT, dT > dTb + 9 and BT4 > BT4b + 3 d4 (S14).
    desert_bgfire_fraction_min, desert_bgfire_count_min : float, int
        Desert-boundary test only when background fires are > 10 % of the valid background and
        > 4 (S14).
    desert_refl2_min, desert_bgfire_bt4_max_k, desert_bgfire_mad_max_k, desert_bgfire_mad_mult : float
        Reject a day contextual fire if rho2 > 0.15, BT'4 < 345, d'4 < 3 and BT4 < BT'4 + 6 d'4
        (S14; the last operator is garbled in the paper's text, "<" as in MODIS, Giglio 2003: choice).
    glint_strict_angle_deg, glint_strict_refl_sum_min : float
        Day fire rejected as sun glint if glint angle < 15 and rho1 + rho2 > 0.35 (S14) ...
    glint_loose_angle_deg, glint_loose_refl_sum_min : float
        ... or glint angle < 25 and rho1 + rho2 > 0.4 (S14).
    lowconf_dt_max_k, lowconf_glint_angle_deg : float
        The low-confidence test applies to day fires with dT < 30 or glint angle < 15 (S14) ...
    lowconf_ring_excess_k : float
        ... a stand-alone one (no adjacent fire) is low confidence when its BT4 is less than 15 K
        above any valid pixel of its 3 x 3 ring, or the ring has no valid pixel (S14).
    frp_a_i4 : float
        MIR-method constant of I4, W m-2 sr-1 um-1 K-4 (:data:`rsmon.products.fire_frp.VIIRS_I4_MIR_A`,
        a Wooster-style fit; no published value found).
    lines_per_scan, scan_period_s : int, float
        Line time = granule start + (line // 32) x 1.7864 s (VIIRS: 48 scans in 85.75 s).
    version_tag : str
        ``version`` column = ``"rsmon-<version>_<tag>"`` (FIRMS uses "2.0NRT" / "2").
    """

    night_solar_zenith_min_deg: float = 90.0
    water_codes: tuple = WATER_CODES
    reflectance_water_test: bool = True
    process_water_pixels: bool = True
    # cloud
    cloud_bt5_max_k: float = 265.0
    cloud_night_bt4_max_k: float = 295.0
    cloud_day_refl_sum_high: float = 0.9
    cloud_day_bt5_high_k: float = 295.0
    cloud_day_refl_sum_mid: float = 0.7
    cloud_day_bt5_mid_k: float = 285.0
    # saturation and folding
    saturation_bt4_k: float = 367.0
    saturated_day_bt5_min_k: float = 290.0
    saturated_day_refl_sum_max: float = 0.7
    folded_day_bt5_min_k: float = 325.0
    folded_night_bt5_min_k: float = 310.0
    folded_bt4_k: float = 208.0
    folded_bt4_tolerance_k: float = 1.0
    folded_night_low_bt5_min_k: float = 335.0
    night_fixed_bt4_min_k: float = 320.0
    # potential background fires
    bgfire_day_bt4_min_k: float = 335.0
    bgfire_day_dt_min_k: float = 30.0
    bgfire_night_bt4_min_k: float = 300.0
    bgfire_night_dt_min_k: float = 10.0
    # bright fire-free targets (day)
    bright_refl_sum_min: float = 0.6
    bright_bt5_max_k: float = 285.0
    bright_refl3_min: float = 0.3
    bright_refl2_min: float = 0.25
    bright_bt4_max_k: float = 335.0
    # candidates
    candidate_day_bt4_lo_k: float = 325.0
    candidate_day_bt4_hi_k: float = 330.0
    candidate_day_median_window_px: int = 501
    candidate_day_median_min_valid: int = 10
    candidate_day_median_block_px: int = 64
    candidate_day_dt_min_k: float = 25.0
    candidate_night_bt4_min_k: float = 295.0
    candidate_night_dt_min_k: float = 10.0
    # background window
    window_min_px: int = 11
    window_max_px: int = 31
    window_min_valid: int = 10
    window_min_valid_fraction: float = 0.25
    window_rule: str = "and"
    # contextual tests
    ctx_day_dt_mad: float = 2.0
    ctx_day_dt_offset_k: float = 10.0
    ctx_day_bt4_mad: float = 3.5
    ctx_day_bt5_offset_k: float = 4.0
    ctx_day_bgfire_mad_min_k: float = 5.0
    ctx_night_dt_mad: float = 3.0
    ctx_night_dt_offset_k: float = 9.0
    ctx_night_bt4_mad: float = 3.0
    # desert boundary (day)
    desert_bgfire_fraction_min: float = 0.1
    desert_bgfire_count_min: int = 4
    desert_refl2_min: float = 0.15
    desert_bgfire_bt4_max_k: float = 345.0
    desert_bgfire_mad_max_k: float = 3.0
    desert_bgfire_mad_mult: float = 6.0
    # sun glint (day)
    glint_strict_angle_deg: float = 15.0
    glint_strict_refl_sum_min: float = 0.35
    glint_loose_angle_deg: float = 25.0
    glint_loose_refl_sum_min: float = 0.4
    # low confidence (day)
    lowconf_dt_max_k: float = 30.0
    lowconf_glint_angle_deg: float = 15.0
    lowconf_ring_excess_k: float = 15.0
    # FRP and table
    frp_a_i4: float = 3.32e-9
    lines_per_scan: int = 32
    scan_period_s: float = 1.7864
    version_tag: str = "NRT"

    def __post_init__(self) -> None:
        if self.window_rule not in WINDOW_RULES:
            raise InputError(f"window_rule: expected one of {', '.join(WINDOW_RULES)}, got {self.window_rule!r}")
        for name in ("window_min_px", "window_max_px", "candidate_day_median_window_px"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 3 and v % 2 == 1):
                raise InputError(f"{name}: expected an odd integer >= 3, got {v!r}")
        if self.window_max_px < self.window_min_px:
            raise InputError(f"window_max_px: expected >= window_min_px ({self.window_min_px}), "
                             f"got {self.window_max_px}")
        if not (isinstance(self.candidate_day_median_block_px, int) and self.candidate_day_median_block_px >= 1):
            raise InputError("candidate_day_median_block_px: expected an integer >= 1, "
                             f"got {self.candidate_day_median_block_px!r}")
        if not 0.0 <= self.window_min_valid_fraction <= 1.0:
            raise InputError(f"window_min_valid_fraction: expected a number in [0, 1], "
                             f"got {self.window_min_valid_fraction!r}")
        if not self.frp_a_i4 > 0:
            raise InputError(f"frp_a_i4: expected a positive number, got {self.frp_a_i4!r}")
        object.__setattr__(self, "water_codes", tuple(int(c) for c in self.water_codes))

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable) for provenance."""
        d = asdict(self)
        d["water_codes"] = list(self.water_codes)
        return d

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
