"""Parameters of redline human-activity change detection (:class:`ChangeParams`), with their sources.

Every threshold is a named field; its source is given in the attribute list below. Sources:

- ``[X06]`` Xu (2006), "Modification of normalised difference water index (NDWI) to enhance open
  water features", Int. J. Remote Sens. 27(14):3025-3033 (MNDWI, water if MNDWI > 0).
- ``[ZW12]`` Zhu & Woodcock (2012), "Object-based cloud and cloud shadow detection in Landsat
  imagery", Remote Sens. Environ. 118:83-94 (Fmask spectral tests: HOT, whiteness, snow).
- ``[Z02]`` Zhang, Guindon & Cihlar (2002), Remote Sens. Environ. 82:173-187 (haze-optimised
  transform, HOT = blue - 0.5 red - 0.08 > 0 in Fmask's form).
- ``[H95]`` Hall, Riggs & Salomonson (1995), Remote Sens. Environ. 54:127-140 (snow: NDSI >= 0.4
  with NIR > 0.11).
- ``[O79]`` Otsu (1979), IEEE Trans. SMC 9(1):62-66 (histogram threshold). ``[B00]`` Bruzzone &
  Prieto (2000), IEEE TGRS 38(3):1171-1182 (EM mixture threshold on the CVA magnitude).
- ``[M80]`` Malila (1980), "Change vector analysis", LARS Symposium (CVA magnitude).
- ``[S88]`` Schott, Salvaggio & Volchok (1988), Remote Sens. Environ. 26:1-16 (relative radiometric
  normalisation by pseudo-invariant features); ``[C05]`` Canty & Nielsen (2008), Remote Sens.
  Environ. 112:1025-1036 (no-change pixels chosen automatically from the change statistic).
- ``[H16]`` Hansen et al. (2016), Environ. Res. Lett. 11:034008 (GLAD alerts: a first detection is
  confirmed by later observations, "2 of the next 4"; ../shared/reference/redline_eqi.md §2).
- ``[R24]`` Reiche et al. (2024), Environ. Res. Lett. 19(5) (GFW integrated alerts: "highest" when
  independent systems agree; redline_eqi.md §2).
- ``[Z03]`` Zha, Gao & Ni (2003), Int. J. Remote Sens. 24(3):583-594 (NDBI > 0 built-up).
- ``[R02]`` Rikimaru, Roy & Miyatake (2002), Tropical Ecology 43(1):39-47 (BSI).

Numbers marked ``[rsmon choice]`` are not from a standard: they were chosen once, for all sites,
and the reason is in the attribute's text and in docs/validation_change.md. Rules marked ``[U]``
follow the rules of thumb of redline_eqi.md, which are unverified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from rsmon.errors import InputError

THRESHOLD_METHODS = ("otsu", "em")
RADIOMETRY = ("reflectance", "dn")


@dataclass(frozen=True)
class ChangeParams:
    """Thresholds of bi-temporal and multi-date change detection (recorded in the output's attrs).

    Reflectances are factors 0..1; index values are dimensionless (-1..1); sizes in pixels.

    Attributes
    ----------
    water_mndwi_min : float
        Water where MNDWI > this [X06: 0].
    water_nir_max : float
        ... and (reflectance only) NIR < this [rsmon choice: 0.15; open water is dark in the NIR
        (Fmask's water test uses NIR < 0.11 with NDVI), while clouds and snow, whose MNDWI can also
        be positive, are bright].
    cloud_blue_min : float
        Spectral cloud needs blue reflectance > this [rsmon choice: 0.3; bright, thick cloud only:
        at 0.25 the bright sand of construction sites in the OSCD Beihai pair was masked].
    cloud_red_blue_max : float
        Spectral cloud needs red <= this x blue (cloud tops are flat or bluish at the top of the
        atmosphere, bare sand and soil are redder) [rsmon choice: 1.0].
    cloud_hot_offset : float
        Cloud needs HOT = blue - 0.5 red - offset > 0 [Z02, ZW12: 0.08].
    cloud_whiteness_max : float
        Cloud needs whiteness = mean |b - mean(vis)| / mean(vis) over blue, green, red < this
        [ZW12: 0.7].
    cloud_swir2_min : float
        Cloud needs SWIR2 > this ("basic test") [ZW12: 0.03].
    shadow_nir_max, shadow_swir1_max : float
        Shadow where NIR < 0.05 and SWIR1 < 0.05 and not water [rsmon choice: dark in both infrared
        bands; land surfaces rarely fall below 0.05 in NIR].
    snow_ndsi_min, snow_nir_min, snow_green_min : float
        Snow where NDSI = (green - SWIR1)/(green + SWIR1) > 0.4 and NIR > 0.11 [H95] and green >
        0.3 [rsmon choice; ZW12 uses NDSI > 0.15 and green > 0.1 together with a brightness
        temperature test that optical-only pairs lack: without it tarpaulin roofs in Mumbai and
        turbid shallow water in Beihai were called snow].
    saturation_reflectance_max : float
        A reflectance above this is saturated or corrupt and the pixel not clear [rsmon choice:
        1.0; L1C scenes hold values up to 2.8 over saturated clouds].
    saturation_dn_max : float
        For ``radiometry="dn"`` stacks a DN >= this is saturated [rsmon choice: 255, 8-bit].
    normalise : bool
        Relatively normalise the before bands onto the after bands [S88] (needed for DN stacks
        and L1C pairs; harmless for surface reflectance).
    normalisation_pif_quantile : float
        Pseudo-invariant pixels = the lowest this fraction of the standardised change magnitude
        [rsmon choice: 0.3; C05 selects no-change pixels by the change statistic].
    normalisation_iterations : int
        Refit on the PIFs of the normalised pair this many times in all [rsmon choice: 2].
    normalisation_sample_px : int
        Fit the normalisation and the band scales on a regular sample of about this many pixels
        of the fit blocks (``fit_sample_px``) [rsmon choice: 250000; every ``step``-th pixel in y
        and x counted from the scene origin, so the sample of a scene read whole does not depend
        on dask chunks].
    fit_sample_px : int
        The normalisation, the band scales and the magnitude histogram (threshold) are fitted on a
        regular grid of blocks holding about this many pixels; scenes of at most this many pixels
        use every pixel, i.e. the whole-scene fit [rsmon choice: 4 000 000: sixteen 512 x 512
        blocks of a Sentinel-2 tile, 3 % of its decode work; there the change map differed from
        the whole-scene fit's in 0.6 % of its change pixels (the band scales follow the land cover
        of the blocks); the six validation scenes are fitted on every pixel;
        docs/validation_change.md]. Blocks are the dask chunks of the after scene.
    min_valid_px : int
        Fewer valid sampled pixels than this: no normalisation (identity) and a warning.
    statistics_on_land : bool
        For reflectance pairs, compute the band scales and the threshold histogram from pixels that
        are land (not water) on at least one date [rsmon choice: True; in the OSCD Hong Kong pair,
        one third sea, the no-change magnitudes were bimodal (sea / land) and Otsu split sea from
        land]. Water pixels are still tested for change with that threshold.
    threshold_method : {"otsu", "em"}
        Automatic threshold on the standardised CVA magnitude: Otsu [O79] or the equal-posterior
        point of a two-Gaussian EM mixture [B00] [rsmon choice: "otsu"; see the docs for the
        comparison].
    magnitude_floor_quantile : float
        The threshold is never below sqrt(chi2.ppf(q, 6)) (4.10 for q = 0.99): the magnitude that
        99 % of unchanged pixels stay under if their band differences are Gaussian with the robust
        spread. It keeps an automatic threshold from splitting pure noise when a pair holds no
        change [rsmon choice; all six validation thresholds were above it]. 0 disables it.
    histogram_bins : int
        Bins of the magnitude histogram (over [0, ``histogram_quantile`` of the sample]; larger
        values go to the last bin) [rsmon choice: 512].
    histogram_quantile : float
        Upper edge of the histogram as a quantile of the sampled magnitude [rsmon choice: 0.999;
        keeps saturated cloud edges from stretching the histogram].
    rule_ndvi_drop : float
        Index rule "vegetation loss": NDVI(after) - NDVI(before) <= -this [U; rsmon choice 0.2].
    rule_ndvi_gain : float
        Index rule "vegetation gain": NDVI difference >= this [U; rsmon choice 0.2].
    rule_bare_gain : float
        Index rule "more bare / built-up": BSI or NDBI difference >= this [U; rsmon choice 0.15].
    rule_mndwi_change : float
        Index rule "water change": MNDWI changes sign about ``water_mndwi_min`` and by at least this
        [U; rsmon choice 0.2].
    opening_px : int
        Radius (pixels) of a morphological opening of the change mask (0 = none) [rsmon choice: 0;
        an opening erodes 1-2 pixel wide real changes (roads, dykes) at 30 m].
    closing_px : int
        Radius (pixels) of a morphological closing (fills 1-pixel gaps inside patches)
        [rsmon choice: 1, a 3 x 3 cross].
    mmu_px : int
        Minimum mapping unit in pixels: change patches and no-change holes smaller than this are
        removed / filled (``rasterio.features.sieve`` semantics) [issue: 4 pixels at 10 m].
    mmu_connectivity : {4, 8}
        Pixel connectivity of the MMU sieve [rasterio default: 4, which a polygoniser with the
        same default keeps intact].
    veg_ndvi_min : float
        Vegetated where NDVI >= this [U; rsmon choice 0.3].
    built_ndbi_min : float
        Built-up / bare after where NDBI > this [Z03: 0].
    mining_bsi_min : float
        Mining/quarry candidates: BSI(after) >= this [U; rsmon choice 0.2] ...
    mining_brightness_min : float
        ... or mean reflectance of all six bands >= this (bright rock/sand) [U; rsmon choice 0.3].
    confirm_window : int
        An unconfirmed first detection expires when this many later clear observations pass without
        ``confirm_min`` of them flagging the pixel [H16: 4].
    confirm_min : int
        Later clear flags needed to confirm (low -> high) [issue: 1; H16 uses 2].
    """

    water_mndwi_min: float = 0.0
    water_nir_max: float = 0.15
    cloud_blue_min: float = 0.3
    cloud_red_blue_max: float = 1.0
    cloud_hot_offset: float = 0.08
    cloud_whiteness_max: float = 0.7
    cloud_swir2_min: float = 0.03
    shadow_nir_max: float = 0.05
    shadow_swir1_max: float = 0.05
    snow_ndsi_min: float = 0.4
    snow_nir_min: float = 0.11
    snow_green_min: float = 0.3
    saturation_reflectance_max: float = 1.0
    saturation_dn_max: float = 255.0
    normalise: bool = True
    normalisation_pif_quantile: float = 0.3
    normalisation_iterations: int = 2
    normalisation_sample_px: int = 250_000
    fit_sample_px: int = 4_000_000
    min_valid_px: int = 100
    statistics_on_land: bool = True
    threshold_method: str = "otsu"
    magnitude_floor_quantile: float = 0.99
    histogram_bins: int = 512
    histogram_quantile: float = 0.999
    rule_ndvi_drop: float = 0.2
    rule_ndvi_gain: float = 0.2
    rule_bare_gain: float = 0.15
    rule_mndwi_change: float = 0.2
    opening_px: int = 0
    closing_px: int = 1
    mmu_px: int = 4
    mmu_connectivity: int = 4
    veg_ndvi_min: float = 0.3
    built_ndbi_min: float = 0.0
    mining_bsi_min: float = 0.2
    mining_brightness_min: float = 0.3
    confirm_window: int = 4
    confirm_min: int = 1

    def __post_init__(self) -> None:
        if self.threshold_method not in THRESHOLD_METHODS:
            raise InputError(f"ChangeParams.threshold_method: expected one of {THRESHOLD_METHODS}, "
                             f"got {self.threshold_method!r}")
        if self.mmu_connectivity not in (4, 8):
            raise InputError(f"ChangeParams.mmu_connectivity: expected 4 or 8, got {self.mmu_connectivity!r}")
        for name in ("opening_px", "closing_px", "mmu_px", "normalisation_iterations", "min_valid_px"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"ChangeParams.{name}: expected an integer >= 0, got {value!r}")
        for name in ("normalisation_sample_px", "fit_sample_px", "histogram_bins", "confirm_window", "confirm_min"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"ChangeParams.{name}: expected an integer >= 1, got {value!r}")
        if self.confirm_min > self.confirm_window:
            raise InputError(f"ChangeParams.confirm_min ({self.confirm_min}) must not exceed "
                             f"confirm_window ({self.confirm_window})")
        if not 0.0 <= self.magnitude_floor_quantile < 1.0:
            raise InputError("ChangeParams.magnitude_floor_quantile: expected 0 <= value < 1, "
                             f"got {self.magnitude_floor_quantile!r}")
        for name in ("normalisation_pif_quantile", "histogram_quantile"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise InputError(f"ChangeParams.{name}: expected 0 < value <= 1, got {value!r}")

    def magnitude_floor(self, n_bands: int = 6) -> float:
        """The lowest allowed magnitude threshold (see ``magnitude_floor_quantile``)."""
        if self.magnitude_floor_quantile <= 0:
            return 0.0
        from scipy.special import gammaincinv  # chi2.ppf(q, k) = 2 gammaincinv(k / 2, q), as scipy.stats
        # computes it, without importing scipy.stats (0.4 s)

        return float((2 * gammaincinv(n_bands / 2, self.magnitude_floor_quantile)) ** 0.5)

    @property
    def halo_px(self) -> int:
        """Halo (pixels) a block needs so that cleaning it equals cleaning the whole array.

        Opening and closing each shift a pixel's dependence by twice their radius; removing patches
        then filling holes below the MMU each need ``mmu_px`` (a component of fewer than
        ``mmu_px`` pixels lies within ``mmu_px - 1`` pixels of any of its pixels).
        """
        return 2 * self.opening_px + 2 * self.closing_px + 2 * self.mmu_px + 1

    def as_dict(self) -> dict:
        """All fields as plain Python values (for provenance attributes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ChangeParams:
        """Build from a mapping; unknown keys raise :class:`InputError` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"ChangeParams: unknown parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**values)
