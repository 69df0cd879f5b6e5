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
- it ends green (mean after NDVI above ``regreen_ndvi_min``: a field sown or grown again, which on
  cropland is agriculture whatever its history), or it did not persist: fewer than
  ``crop_cycle_days`` days lie between its first and its last flagging observation (a pair has
  one, so 0 days; only the growing season's days count when ``growing_season`` is given).

What the rule gives up, stated plainly: construction on cropland that is still bare earth, seen in
one pair, is screened with the harvests. It comes back as a kept patch once it has stayed bare
``crop_cycle_days`` after its first detection (a later scene of a series flags it again, or the
watch below sees it bare), because a harvested field is green again by then. Screened patches are
never dropped silently: they are written apart, with their reason, for audit.

**Barren parts** (:func:`rsmon.products.change_barren.barren_parts`, ``keep_barren_parts``). The
rule decides per patch, on its mean after NDVI, and a patch is a connected region of change: a
quarry or a building site beside a harvested parcel, or inside it, is one patch with the parcel, and
its mean is the field's. So within each screened patch, its change pixels that became barren (after
NDVI at or below ``barren_ndvi_max``, before NDVI above it) are grouped into 8-connected parts; a
part of at least the minimum mapping unit is kept as a patch of its own, and the rest of the parent
stays screened. A harvested field keeps stubble and soil, above the limit: on the simulated June
tile this keeps 24 parts, each on a planted construction, quarry or pond (docs/validation_change.md).

**The watch across runs.** A monthly job compares each month with the month before, so a bare
construction site is flagged in the month it appears and not again: within one run it cannot
persist 60 days. The screened patches of the previous run are therefore *watched*
(:func:`review_watch`): one the current run detects again takes part in this run's screen with its
first detection date carried over (the patch-id reconciliation does that); one it does not detect
is looked at in the latest after scene that sees it clear (:func:`watch_observation`):

- green again (mean NDVI above ``regreen_ndvi_min``), or greening (NDVI up by ``regrowth_ndvi_gain``
  or more since the detection, as winter wheat sown after the maize harvest is before its winter
  dormancy): it was the crop cycle; the watch ends;
- still not green, ``crop_cycle_days`` or more after its first detection: a field would have been
  sown and green by now, so it is **re-admitted** as a change patch (confidence at least high: a
  later clear observation confirmed it);
- otherwise (too early, or not seen clear): it stays watched, in this run's screened table.

**The fallow season** (``growing_season``). Where one crop a year is grown (the Northeast China
Plain: maize and soybean sown in May, harvested from late September), a field harvested in autumn
stays bare, or under snow, until the next May: counted in calendar days it would be re-admitted
60 days after the harvest, in December, with every harvested field of the province. With a
growing season (``"05-01:09-30"``) the crop-cycle clock counts only the days inside it
(:func:`season_days`): a field harvested on 25 September has 6 days by the spring and is
re-admitted only if it is still bare 54 days into the next season, when the maize sown in May is
up. The price is stated plainly: construction begun on a field at the end of the season and
still bare earth waits for the next season to be re-admitted (concrete, rock and sand, with NDVI
at or below ``barren_ndvi_max``, and water are never screened, so they are kept at once).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd

from rsmon.errors import InputError
from rsmon.products.change_classes import WATER

__all__ = ["CROP_CYCLE", "PERSISTED", "REGREENED", "ScreenParams", "WATCHED", "apply_watch", "crop_cycle",
           "parse_season", "persisted_days", "review_watch", "screen_patches", "season_days", "watch_observation"]

#: Reason recorded for a patch screened as the crop cycle (``screen_reason`` column).
CROP_CYCLE = "crop_cycle"
#: Outcomes of the watch on a previous run's screened patch (:func:`review_watch`).
REGREENED, PERSISTED, WATCHED = "regreened", "persisted", "watched"


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
        China Plain (the double cropping of the monitored plains): winter wheat is harvested by mid-June
        and the maize sown right after is at jointing in mid-to-late July, the regional NDVI back to
        its average by the end of July (CropWatch bulletins: Huanghuaihai April-July,
        cloud.cropwatch.com.cn report 217; "summer maize at jointing", cropwatch.com.cn update 64,
        July 2020), about 45 days after the harvest.
    regreen_ndvi_min : float
        A watched patch whose mean NDVI is above this in a later clear scene is green again: the
        crop cycle. Default 0.3, as :attr:`ChangeParams.veg_ndvi_min` ("vegetated"): within the
        0.2-0.4 that Sentinel Hub's NDVI guide gives for shrub and grassland, the sparsest cover
        (same page as ``barren_ndvi_max``) [rsmon choice].
    regrowth_ndvi_gain : float
        A watched patch whose mean NDVI has risen by at least this since its detection (its
        ``ndvi_after``) is greening: the crop cycle, even below ``regreen_ndvi_min`` (a field sown
        in autumn stays sparse through winter). Default 0.10, the smallest NDVI change a recent
        RADD/Sentinel-2 study counted as a vegetation change (its minimum NDVI drop;
        redline_eqi.md section 3, [V]) [rsmon choice to use it for a rise].
    watch_clear_min : float
        Share of a watched patch's pixels that must be clear in a scene for the scene to count
        as seeing it. Default 0.5 (the majority) [rsmon choice].
    growing_season : str, optional
        ``"MM-DD:MM-DD"``, first and last day of the growing season, both included (it may wrap
        the new year, ``"10-01:06-15"``). When given, ``crop_cycle_days`` counts only the days
        inside it (module docstring, "The fallow season"). Default None: every day counts, as in
        the double cropping of the North China Plain, where a field is bare only between two
        crops. No default calendar is assumed; an example for the single cropping of Northeast
        China is ``"05-01:09-30"``: Heilongjiang's state farms finished sowing maize on 16 May and
        soybean on 20 May 2018 (China Corn Products News 2018-05, cnchemicals.cn), CropWatch:
        "soybean will be sown in May in Northeast China" (April 2015 update,
        cloud.cropwatch.com.cn), the spring-maize belt's frost-free period is 130-170 days, and
        harvest runs from late September. The choice of dates for a province is the user's.
    keep_barren_parts : bool
        Keep the parts of screened patches that became barren as patches of their own
        (:func:`rsmon.products.change_barren.barren_parts`; module docstring, "Barren parts").
        Default True.
    """

    cropland_codes: tuple[int, ...] = (40,)
    min_cropland_fraction: float = 0.5
    barren_ndvi_max: float = 0.1
    crop_cycle_days: int = 60
    regreen_ndvi_min: float = 0.3
    regrowth_ndvi_gain: float = 0.10
    watch_clear_min: float = 0.5
    growing_season: str | None = None
    keep_barren_parts: bool = True

    def __post_init__(self) -> None:
        given = self.cropland_codes
        codes = (given,) if isinstance(given, (int, np.integer)) else tuple(given) if isinstance(given, (list, tuple)) \
            else ()
        if not codes or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in codes):
            raise InputError(f"--cropland-codes: expected one or more whole land-cover codes, got {self.cropland_codes!r}")
        object.__setattr__(self, "cropland_codes", tuple(int(c) for c in codes))
        frac = self.min_cropland_fraction
        if not (isinstance(frac, (int, float)) and math.isfinite(frac) and 0.0 < frac <= 1.0):
            raise InputError(f"ScreenParams.min_cropland_fraction: expected 0 < value <= 1, got {frac!r}")
        ndvi = self.barren_ndvi_max
        if not (isinstance(ndvi, (int, float)) and math.isfinite(ndvi) and -1.0 <= ndvi <= 1.0):
            raise InputError(f"ScreenParams.barren_ndvi_max: expected an NDVI in [-1, 1], got {ndvi!r}")
        for name in ("regreen_ndvi_min", "regrowth_ndvi_gain", "watch_clear_min"):
            value = getattr(self, name)
            low = -1.0 if name == "regreen_ndvi_min" else 0.0
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= 1.0):
                raise InputError(f"ScreenParams.{name}: expected a value in [{low:g}, 1], got {value!r}")
        days = self.crop_cycle_days
        if not isinstance(days, (int, np.integer)) or isinstance(days, bool) or days < 1:
            raise InputError(f"ScreenParams.crop_cycle_days: expected a whole number of days >= 1, got {days!r}")
        if not isinstance(self.keep_barren_parts, bool):
            raise InputError(f"ScreenParams.keep_barren_parts: expected true or false, got {self.keep_barren_parts!r}")
        if self.growing_season is not None:
            start, end = parse_season(self.growing_season)
            object.__setattr__(self, "growing_season", f"{start[0]:02d}-{start[1]:02d}:{end[0]:02d}-{end[1]:02d}")

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


def parse_season(value) -> tuple[tuple[int, int], tuple[int, int]]:
    """``"MM-DD:MM-DD"`` (or a pair ``["MM-DD", "MM-DD"]``) as ((month, day), (month, day)).

    Raises InputError naming ``growing_season`` for anything else, 29 February (not in every
    year) and a season of one day's length or of the whole year (start and end adjacent)."""
    parts = value.split(":") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
    bounds = []
    for part in parts if len(parts) == 2 else []:
        try:
            month, day = (int(x) for x in str(part).strip().split("-"))
            date(2023, month, day)  # a common year: 02-29 refused
        except ValueError:
            break
        bounds.append((month, day))
    if len(bounds) != 2:
        raise InputError(f"growing_season (--growing-season): expected 'MM-DD:MM-DD' (first and last day, "
                         f"e.g. '05-01:09-30'), got {value!r}")
    start, end = bounds
    first, last = date(2023, *start), date(2023, *end)
    if first == last or (last + timedelta(days=1)).replace(year=2023) == first:
        raise InputError(f"growing_season (--growing-season): {value!r} is one day or the whole year; give a "
                         f"season or leave it out")
    return start, end


@lru_cache(maxsize=4096)
def season_days(first: date, last: date, season: str | None) -> int:
    """Days ``d`` with ``first <= d < last`` that lie in the growing season (``"MM-DD:MM-DD"``,
    both bounds included, may wrap the new year); ``(last - first).days`` when ``season`` is None;
    0 when ``last`` is not after ``first``. 29 February counts when the season holds 28 February
    and 1 March."""
    if last <= first:
        return 0
    if season is None:
        return (last - first).days
    (m0, d0), (m1, d1) = parse_season(season)
    wraps = (m1, d1) < (m0, d0)
    total = 0
    for year in range(first.year - 1, last.year + 1):
        start = date(year, m0, d0)
        end = date(year + 1 if wraps else year, m1, d1) + timedelta(days=1)  # exclusive
        lo, hi = max(start, first), min(end, last)
        total += max((hi - lo).days, 0)
    return total


def _per_row(seasons, default: str | None, n: int) -> list:
    """One growing season (or None) per row: ``seasons`` (a sequence, e.g. from season zones) or
    ``default`` for every row."""
    if seasons is None or isinstance(seasons, str):
        return [default if seasons is None else seasons] * n
    seasons = list(seasons)
    if len(seasons) != n:
        raise InputError(f"growing seasons: expected one per patch ({n}), got {len(seasons)}")
    return seasons


def persisted_days(table: pd.DataFrame, season=None) -> np.ndarray:
    """Days from each patch's ``first_detected`` to its ``last_detected`` (0 when either is missing),
    counting only the growing season's days when ``season`` is given (:func:`season_days`): one
    ``"MM-DD:MM-DD"`` for every row, or one (or None) per row."""
    out = np.zeros(len(table), dtype=np.int64)
    if not len(table):
        return out
    seasons = _per_row(season, None, len(table))
    for i, (first, last) in enumerate(zip(table["first_detected"], table["last_detected"])):
        a, b = _day(first), _day(last)
        if a is not None and b is not None:
            out[i] = season_days(a, b, seasons[i])
    return out


def crop_cycle(table: pd.DataFrame, cropland_fraction: np.ndarray, params: ScreenParams, seasons=None) -> np.ndarray:
    """True for the patches the crop-cycle rule screens (module docstring).

    ``cropland_fraction`` is one value per row of ``table`` (NaN where the map has no valid cell
    under the patch: such a patch is never screened). ``seasons``: one growing season (or None)
    per row, from season zones (:func:`rsmon.io.season_zones.seasons_at`); default
    ``params.growing_season`` for every row.
    """
    frac = np.asarray(cropland_fraction, dtype=float)
    if frac.shape != (len(table),):
        raise InputError(f"cropland fraction: expected {len(table)} values (one per patch), got shape {frac.shape}")
    if not len(table):
        return np.zeros(0, dtype=bool)
    on_cropland = np.nan_to_num(frac, nan=-1.0) >= params.min_cropland_fraction
    not_water = table["class_code"].to_numpy() != WATER
    ndvi_after = table["ndvi_after"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        not_barren = ndvi_after > params.barren_ndvi_max  # NaN: False
        green = ndvi_after > params.regreen_ndvi_min
    transient = persisted_days(table, _per_row(seasons, params.growing_season, len(table))) < params.crop_cycle_days
    return on_cropland & not_water & not_barren & (green | transient)


def screen_patches(table, cropland_fraction: np.ndarray, params: ScreenParams, seasons=None):
    """Split a patch table into (kept, screened) by :func:`crop_cycle` (``seasons`` as there).

    Both tables gain ``cropland_fraction``; the screened one also ``screen_reason``
    (:data:`CROP_CYCLE`). Row order (largest patch first) and ids are kept.
    """
    screened = crop_cycle(table, cropland_fraction, params, seasons)
    table = table.copy()
    table["cropland_fraction"] = np.asarray(cropland_fraction, dtype=float)
    kept = table[~screened].reset_index(drop=True)
    out = table[screened].reset_index(drop=True)
    out["screen_reason"] = pd.Series([CROP_CYCLE] * len(out), dtype="object")
    return kept, out


def review_watch(watched: pd.DataFrame, ndvi: np.ndarray, clear: np.ndarray, seen: list, params: ScreenParams,
                 seasons=None) -> np.ndarray:
    """Outcome of the watch for each previous screened patch the current run did not detect again.

    Parameters
    ----------
    watched : DataFrame
        The patches (``first_detected`` and, when present, ``ndvi_after`` are read).
    ndvi, clear : arrays, one value per patch
        Mean NDVI over its clear pixels and the share of its pixels that were clear, in the latest
        scene that saw it clear (:func:`watch_observation`); NaN / 0 when none did.
    seen : list of str or None
        That scene's date (ISO), per patch.
    seasons : sequence of str or None, optional
        One growing season (or None) per patch (season zones); default ``params.growing_season``.

    Returns
    -------
    array of str
        :data:`REGREENED`, :data:`PERSISTED` or :data:`WATCHED` (module docstring).
    """
    n = len(watched)
    ndvi, clear = np.asarray(ndvi, dtype=float), np.asarray(clear, dtype=float)
    if ndvi.shape != (n,) or clear.shape != (n,) or len(seen) != n:
        raise InputError(f"watch: expected one NDVI, clear share and date per watched patch ({n})")
    out = np.full(n, WATCHED, dtype=object)
    seasons = _per_row(seasons, params.growing_season, n)
    then = (watched["ndvi_after"].to_numpy(dtype=float) if "ndvi_after" in watched.columns and n
            else np.full(n, np.nan))
    for i, first in enumerate(watched["first_detected"] if n else []):
        if not (clear[i] >= params.watch_clear_min) or not np.isfinite(ndvi[i]):
            continue
        if ndvi[i] > params.regreen_ndvi_min or (np.isfinite(then[i]) and ndvi[i] - then[i] >= params.regrowth_ndvi_gain):
            out[i] = REGREENED
            continue
        a, b = _day(first), _day(seen[i])
        if a is not None and b is not None and season_days(a, b, seasons[i]) >= params.crop_cycle_days:
            out[i] = PERSISTED
    return out


def watch_observation(scenes: list, polygons, clear_min: float = 0.5, params=None, strip_rows: int = 1024):
    """Mean NDVI over the clear pixels of each polygon, in the latest scene that sees it clear.

    Parameters
    ----------
    scenes : list of xarray.Dataset
        Scenes on one grid (the run's after scenes, aligned), latest first; each with the six
        bands and an ``attrs["datetime"]``.
    polygons : GeoSeries or array of shapely geometries
        In the scenes' CRS. Cells whose centre lies in a polygon are its pixels (polygons should
        not overlap; where they do, a cell counts for the last).
    clear_min : float
        Share of a polygon's pixels that must be clear for a scene to see it
        (:attr:`ScreenParams.watch_clear_min`).
    params : ChangeParams, optional
        Clear-sky tests (:func:`rsmon.products.change_indices.spectral_masks`), used when a scene
        has no product QA ``clear`` layer; with one (Sentinel-2 SCL, Landsat QA_PIXEL) that layer
        alone decides, so only red, NIR and QA are read (a tile: 11.8 s with the spectral tests
        on all six bands, see docs/validation_change.md), by the reader's direct window access
        when the scene's variables are still its own (:class:`rsmon.io.optical_raster.BlockSource`),
        two strips at a time.
    strip_rows : int
        Rows read at a time: only the strips and columns holding polygons are read.

    Returns
    -------
    (ndvi, clear, seen)
        Float arrays and a list of ISO dates (None where no scene saw the polygon clear; then
        ``clear`` is the best share seen and ``ndvi`` NaN). The share counts clear pixels against
        all the polygon's pixels on the grid.
    """
    from concurrent.futures import ThreadPoolExecutor

    import dask

    from rsmon.io.optical_raster import BlockSource
    from rsmon.polygon_cells import PolygonCells
    from rsmon.products.change_indices import spectral_indices, spectral_masks

    geoms = np.asarray(getattr(polygons, "values", polygons), dtype=object)
    n = len(geoms)
    ndvi, clear, seen = np.full(n, np.nan), np.zeros(n), [None] * n
    if not n or not scenes:
        return ndvi, clear, seen
    grid = scenes[0]
    cells = PolygonCells(geoms, grid.rio.transform(), (grid.sizes["y"], grid.sizes["x"]), strip_rows)
    for scene in scenes:
        qa = "clear" in scene.data_vars and scene["clear"].dtype == bool
        # the reader's direct window access (no dask graph) while the variables are its own arrays
        direct = BlockSource.of(scene, ("red", "nir", "clear"), scene["red"].chunks) if qa and scene["red"].chunks \
            else None
        todo = cells.on_grid & np.array([d is None for d in seen])
        if not todo.any():
            break
        pixels = np.zeros(n, dtype=np.int64)
        clear_px = np.zeros(n, dtype=np.int64)
        ndvi_sum = np.zeros(n)

        def strip(top: int):
            cut = cells.strip(top, todo)
            if cut is None:
                return None
            if direct is not None:
                got = direct.read(cut.rows, cut.cols, bands=("red", "nir"))
                red, nir, c = got["red"], got["nir"], got["clear"]
            elif qa:  # the product's clear flag: only red, NIR and the QA layer are read
                window = scene.isel(y=cut.rows, x=cut.cols)
                red, nir, c = dask.compute(window["red"].data, window["nir"].data, window["clear"].data,
                                           scheduler="sync")
            else:  # no QA layer: the spectral cloud, shadow and snow tests need all six bands
                window = scene.isel(y=cut.rows, x=cut.cols)
                v, c = dask.compute(spectral_indices(window)["ndvi"].data, spectral_masks(window, params)["clear"].data,
                                    scheduler="sync")
            if qa:
                red, nir = cut.values(red).astype(np.float32), cut.values(nir).astype(np.float32)
                with np.errstate(invalid="ignore", divide="ignore"):
                    v = (nir - red) / (nir + red)
            else:
                v = cut.values(v)
            return cut, v, cut.values(c) & np.isfinite(v)

        with ThreadPoolExecutor(2) as pool:  # reading and decoding release the GIL: two strips at once
            for got in pool.map(strip, cells.tops(todo)):
                if got is not None:
                    cut, v, c = got
                    cut.add(pixels)
                    cut.add(clear_px, c)
                    cut.add(ndvi_sum, c, v)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(pixels > 0, clear_px / np.maximum(pixels, 1), 0.0)
            mean = np.where(clear_px > 0, ndvi_sum / np.maximum(clear_px, 1), np.nan)
        date = str(scene.attrs.get("datetime") or "")[:10] or None
        for i in np.flatnonzero(todo):
            if share[i] >= clear_min and date is not None:
                ndvi[i], clear[i], seen[i] = mean[i], share[i], date
            else:
                clear[i] = max(clear[i], share[i])
    return ndvi, clear, seen


def apply_watch(patches, screened, watched, afters: list, params, screen: ScreenParams, taken=(), season_of=None):
    """Apply the watch (:func:`review_watch`) to the previous run's screened patches (``watched``),
    or the parts of them, that this run's ``patches`` and ``screened`` do not cover: re-admit those
    still bare after ``crop_cycle_days``, carry those not yet decided, drop those green again.
    ``afters`` are the run's after scenes on its grid (oldest first); ``params`` its ChangeParams.
    ``taken``: ids in use besides those of ``patches`` and ``screened`` (the previous patches': a
    remainder's ``-N`` id must not be an earlier alert's). ``season_of``: geometries (in the
    patches' CRS) -> one growing season (or None) each, from season zones; default
    ``screen.growing_season``. Returns the new (patches, screened), the outcome counts and the
    re-admitted ids.

    A watched patch this run's patches overlap only in part (a harvested parcel detected again as
    it regrows, beside a quarry that stays bare) is reviewed for its remainder: what no current
    patch covers, opened by half a pixel (slivers along edges detected again are not a change of
    their own) and at least the minimum mapping unit."""
    import shapely

    from rsmon.products.patches import Confidence, _equal_area, free_id

    w = watched.to_crs(patches.crs).reset_index(drop=True)
    geoms = w.geometry.to_numpy().copy()
    res = float(abs(afters[0].rio.resolution()[0]))
    current = np.concatenate([patches.geometry.to_numpy(), screened.geometry.to_numpy()])
    current_ids = set(patches["patch_id"]) | set(screened["patch_id"])
    # a remainder may keep its own watched id, never another earlier patch's
    taken = current_ids | (set(taken) - set(w["patch_id"]))
    again = np.zeros(len(w), dtype=bool)
    cut = np.zeros(len(w), dtype=bool)
    if len(current) and len(w):
        iw, ic = shapely.STRtree(current).query(geoms, predicate="intersects")
        touched = np.unique(iw)
        for i in touched:
            geoms[i] = shapely.difference(geoms[i], shapely.union_all(current[ic[iw == i]]))
        opened = shapely.buffer(shapely.buffer(geoms[touched], -res / 2, join_style="mitre"), res / 2,
                                join_style="mitre")
        geoms[touched] = opened
        big = shapely.area(opened) >= params.mmu_px * res * res
        again[touched[~big]] = True
        cut[touched[big]] = True
    again |= w["patch_id"].isin(current_ids).to_numpy() & ~cut
    # only those on this run's scene: a multi-tile job gives every tile the job's screened patches
    here = shapely.intersects(geoms, shapely.box(*afters[0].rio.bounds()))
    look = ~again & here
    rest = w[look].reset_index(drop=True)
    rest_geoms, rest_cut = geoms[look], cut[look]
    ndvi, clear, seen = watch_observation(list(reversed(afters)), rest_geoms, screen.watch_clear_min, params)
    outcome = review_watch(rest, ndvi, clear, seen, screen,
                           season_of(rest_geoms) if season_of is not None and len(rest) else None)
    if rest_cut.any():  # the remainders: their own geometry, area, pixel count, centroid and (if taken) id
        rest = rest.set_geometry(pd.Series(rest_geoms, name="geometry"), crs=patches.crs)
        rest = rest.rename_geometry("geometry") if rest.geometry.name != "geometry" else rest
        _, area, _, (lon, lat) = _equal_area(rest_geoms[rest_cut], patches.crs, res)
        rest.loc[rest_cut, "area_m2"] = area
        rest.loc[rest_cut, "n_pixels"] = np.rint(shapely.area(rest_geoms[rest_cut]) / (res * res)).astype(np.int64)
        rest.loc[rest_cut, "centroid_lon"], rest.loc[rest_cut, "centroid_lat"] = lon, lat
        ids = rest["patch_id"].tolist()
        for i in np.flatnonzero(rest_cut & (outcome != REGREENED)):
            ids[i] = free_id(ids[i], taken)
        rest["patch_id"] = ids
    back = rest[outcome == PERSISTED].drop(columns=["screen_reason"], errors="ignore").copy()
    if len(back):
        back["last_detected"] = [d for d, o in zip(seen, outcome) if o == PERSISTED]
        codes = np.maximum(back["confidence_code"].to_numpy(dtype=np.int64), int(Confidence.high))
        back["confidence_code"] = codes
        back["confidence"] = [Confidence(int(c)).name for c in codes]
    carried = rest[outcome == WATCHED]
    if len(back):
        patches = pd.concat([patches, back[[c for c in patches.columns if c in back.columns]]], ignore_index=True)
        patches = patches.sort_values("area_m2", ascending=False, kind="stable").reset_index(drop=True)
    if len(carried):
        screened = pd.concat([screened, carried[[c for c in screened.columns if c in carried.columns]]],
                             ignore_index=True)
    counts = {"detected_again": int(again.sum()), "in_part": int(cut.sum()), "elsewhere": int((~again & ~here).sum()),
              **{k: int((outcome == k).sum()) for k in (REGREENED, PERSISTED, WATCHED)}}
    return patches, screened, counts, list(back["patch_id"])
