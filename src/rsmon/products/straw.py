"""Straw-burning (秸秆焚烧) fire points: land cover, static heat sources, categories, admin counts.

The MEE practice (``shared/reference/fire.md`` section 4) is: detect fires, remove false and
industrial fires, overlay a land classification, and call a fire on cropland a *suspected
straw-burning point* (疑似秸秆焚烧火点; MEE patent CN102116861A); report counts per province /
city / county and day, and the intensity "fire points per 1000 ha of cultivated land".

:func:`classify` adds to a fire table (one row per fire pixel, FIRMS columns):

``landcover_class``     class code under the pixel centre (:func:`rsmon.io.landcover.landcover_at`)
``cropland_fraction``   fraction of the pixel footprint on cropland
                        (:func:`rsmon.io.landcover.class_fraction_in_pixel`), NaN off the raster
``static_source``       persistent heat source: FIRMS ``type == 2`` or a persistence cell
                        (:func:`static_source_mask`)
``low_conf_day``        daytime (``daynight == 'D'``) low-confidence pixel
``category``            one of :data:`CATEGORIES`, by this precedence (first rule that holds):

    1. ``static_source``: static heat source (industry, flares, kilns) -- never biomass burning,
       whatever its confidence;
    2. ``low_confidence_day``: kept apart because day low-confidence VIIRS pixels are ~40 % false
       over eastern China against ~6 % globally (Schroeder et al. 2014, RSE 143:85-96;
       ``fire.md`` 1.1 "drop (or separately flag) low-confidence day pixels");
    3. ``straw_burning_suspected``: ``cropland_fraction >= min_cropland_fraction`` and FIRMS
       ``type`` not 1 (volcano) or 3 (offshore);
    4. ``other_fire``: everything else (forest, grass, built-up, unknown land cover).

Observation day: persistence and daily counts use the *local solar date* of each detection,
``(time_utc + longitude/15 h).date`` by default, so that a VIIRS night overpass (01:30 local,
the previous UTC day in China) and the day overpass (13:30 local) fall on the same day.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from rsmon.errors import InputError, NoDataError
from rsmon.io.stations_firms import fire_times_utc
from rsmon.io.landcover import EARTH_RADIUS_M, class_fraction_in_pixel, class_shares_in_polygons, landcover_at

log = logging.getLogger(__name__)

__all__ = [
    "CATEGORIES",
    "FIRMS_TYPE_CODES",
    "PERSISTENCE_CRS",
    "StrawParams",
    "cell_index",
    "classify",
    "counts_by_admin",
    "cropland_area_by_admin",
    "observation_day",
    "static_source_mask",
]

#: Output categories of :func:`classify`, in order of precedence.
CATEGORIES: tuple[str, ...] = ("static_source", "low_confidence_day", "straw_burning_suspected", "other_fire")

#: FIRMS ``type`` codes (standard-processing archives only; absent in NRT files). Source: FIRMS
#: attribute documentation as summarised in ``shared/reference/fire.md`` section 3.
FIRMS_TYPE_CODES: dict[int, str] = {0: "presumed vegetation fire", 1: "active volcano",
                                    2: "other static land source", 3: "offshore"}

#: Equal-area CRS of the persistence grid: WGS 84 / NSIDC EASE-Grid 2.0 Global (cylindrical equal
#: area, true scale at 30 degrees). Every cell has the same ground area (cell_size_m squared); the
#: cell's east-west side is shorter and its north-south side longer north of 30 degrees (at 40 N
#: about 330 m x 425 m for 375 m cells).
PERSISTENCE_CRS = "EPSG:6933"

# cell_id = (ix + _ID_OFFSET) * _ID_STRIDE + (iy + _ID_OFFSET); EASE-Grid 2.0 spans |x| < 1.74e7 m
# and |y| < 7.4e6 m, so |ix|, |iy| < 5e5 for any cell >= 35 m.
_ID_OFFSET = 500_000
_ID_STRIDE = 1_000_000

# exactextract's area_spherical_m2 uses a sphere of radius 6378137 m (the WGS84 semi-major axis;
# checked against R^2 dlon (sin lat_n - sin lat_s) to 1e-8 at 0 and 60 N with exactextract 0.3.0).
# Rescaled to EARTH_RADIUS_M so both area methods use one sphere (areas 0.22 % smaller).
_EXACTEXTRACT_SPHERE_M = 6_378_137.0


@dataclass(frozen=True)
class StrawParams:
    """Parameters of the straw-burning classification (all overridable, recorded in outputs).

    Parameters
    ----------
    cropland_classes : tuple of int
        Land-cover codes counted as cropland. Default ``(40,)``: ESA WorldCover 2021 v200 class
        40 "Cropland" (WorldCover Product User Manual, Van De Kerchove et al. 2022, legend
        table; :data:`rsmon.io.landcover.WORLDCOVER_CLASSES`). Another map needs its own codes.
    min_cropland_fraction : float
        Minimum cropland fraction of the pixel footprint for a straw-burning point. Default 0.5
        (majority of the pixel): **an rsmon choice**, not a published threshold; MEE practice
        only says "fire on farmland" (``fire.md`` 4).
    footprint_m : float
        Side of the square pixel footprint used for ``cropland_fraction``, m. Default 375, the
        VIIRS I-band nadir pixel (Schroeder et al. 2014).
    static_n_days, static_m_days : int
        Persistence rule: a cell is a static heat source when fires were detected in it on at
        least ``static_n_days`` of the last ``static_m_days`` days (look-back window ending on
        the fire's observation day, inclusive). Default 3 of 5: **an rsmon default**, configurable;
        ``fire.md`` 4 names the idea (fields burn a few weeks a year, kilns month after month)
        and a months-based variant, but gives no numbers.
    cell_size_m : float
        Side of the persistence cells in :data:`PERSISTENCE_CRS`, m. Default 375 (one VIIRS
        I-band pixel).
    neighbourhood_cells : int
        A cell's detection days are the union over the cells within this many cells (1: the 3x3
        block). Default 1 (**rsmon choice**): successive VIIRS overpasses see the same chimney
        at pixel centres that differ by up to a pixel (the footprint grows to ~0.8 km at the
        swath edge), which would split one source across neighbouring cells.
    use_firms_type : bool
        Treat FIRMS ``type == 2`` ("other static land source") as static. Default True.
    solar_day : bool
        Days are local solar dates (``time + lon/15 h``, default) rather than UTC dates.
    """

    cropland_classes: tuple[int, ...] = (40,)
    min_cropland_fraction: float = 0.5
    footprint_m: float = 375.0
    static_n_days: int = 3
    static_m_days: int = 5
    cell_size_m: float = 375.0
    neighbourhood_cells: int = 1
    use_firms_type: bool = True
    solar_day: bool = True

    def __post_init__(self) -> None:
        if not self.cropland_classes:
            raise InputError("StrawParams.cropland_classes: give at least one land-cover code")
        if not (0.0 <= self.min_cropland_fraction <= 1.0):
            raise InputError(f"StrawParams.min_cropland_fraction must be in [0, 1], got {self.min_cropland_fraction}")
        _check_rule(self.static_n_days, self.static_m_days)
        for name in ("footprint_m", "cell_size_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 35):
                raise InputError(f"StrawParams.{name} must be >= 35 m, got {value!r}")
        if self.neighbourhood_cells < 0:
            raise InputError(f"StrawParams.neighbourhood_cells must be >= 0, got {self.neighbourhood_cells}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cropland_classes"] = list(self.cropland_classes)
        return d


def _check_rule(n_days: int, m_days: int) -> None:
    if not (isinstance(n_days, (int, np.integer)) and isinstance(m_days, (int, np.integer))
            and 1 <= n_days <= m_days):
        raise InputError(f"static-source rule: need integers 1 <= n_days <= m_days, got n_days={n_days!r}, "
                         f"m_days={m_days!r}")


# --------------------------------------------------------------------------- time and cells

def _utc_times(fires: pd.DataFrame) -> pd.Series:
    return fire_times_utc(fires, "fire table")


def observation_day(fires: pd.DataFrame, *, solar: bool = True) -> pd.Series:
    """Observation day of each detection (``datetime64[ns]`` at midnight, no time zone).

    Parameters
    ----------
    fires : DataFrame
        ``time`` (UTC) or ``acq_date`` + ``acq_time`` (HHMM UTC); ``longitude`` for solar days.
    solar : bool
        Local solar date ``(time_utc + longitude / 15 h)`` (default), else the UTC date.
    """
    t = _utc_times(fires)
    if solar:
        lon = pd.to_numeric(fires["longitude"], errors="coerce").to_numpy(float)
        t = t + pd.to_timedelta(lon / 15.0, unit="h")
    return t.dt.tz_localize(None).dt.normalize()


def cell_index(lon, lat, cell_size_m: float = 375.0) -> tuple[np.ndarray, np.ndarray]:
    """Integer column/row of the equal-area persistence cell holding each point.

    Cells are ``cell_size_m`` squares of :data:`PERSISTENCE_CRS` (EASE-Grid 2.0 global,
    origin at (0, 0)): ``ix = floor(x / size)``, ``iy = floor(y / size)``.
    """
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", PERSISTENCE_CRS, always_xy=True)
    x, y = tr.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return np.floor(np.asarray(x) / cell_size_m).astype(np.int64), np.floor(np.asarray(y) / cell_size_m).astype(np.int64)


def _cell_id(ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    return (np.asarray(ix, np.int64) + _ID_OFFSET) * _ID_STRIDE + (np.asarray(iy, np.int64) + _ID_OFFSET)


def _cell_days(history: pd.DataFrame, params: StrawParams) -> pd.DataFrame:
    """Distinct (ix, iy, day) with a detection."""
    lon = pd.to_numeric(history["longitude"], errors="coerce").to_numpy(float)
    lat = pd.to_numeric(history["latitude"], errors="coerce").to_numpy(float)
    ok = np.isfinite(lon) & np.isfinite(lat)
    ix, iy = cell_index(lon[ok], lat[ok], params.cell_size_m)
    day = observation_day(history, solar=params.solar_day).to_numpy()[ok]
    return pd.DataFrame({"ix": ix, "iy": iy, "day": day}).drop_duplicates(ignore_index=True)


def _static_cells(cell_days: pd.DataFrame, end_day: pd.Timestamp, n_days: int, m_days: int,
                  neighbourhood: int) -> pd.DataFrame:
    """Cells with detections on >= n_days distinct days in (end_day - m_days, end_day]."""
    start = end_day - pd.Timedelta(days=m_days - 1)
    win = cell_days[(cell_days["day"] >= start) & (cell_days["day"] <= end_day)]
    if win.empty:
        return pd.DataFrame({"ix": [], "iy": [], "n_days": []}, dtype=np.int64)
    k = int(neighbourhood)
    if k:
        # Spread every (cell, day) to the cells within k: a cell's days = union over its neighbours.
        shifts = [(dx, dy) for dx in range(-k, k + 1) for dy in range(-k, k + 1)]
        parts = [win.assign(ix=win["ix"] + dx, iy=win["iy"] + dy) for dx, dy in shifts]
        spread = pd.concat(parts, ignore_index=True).drop_duplicates()
        # only cells that hold a detection themselves can be static (no halo around a source)
        own = win[["ix", "iy"]].drop_duplicates()
        spread = spread.merge(own, on=["ix", "iy"], how="inner")
    else:
        spread = win
    n = spread.groupby(["ix", "iy"], sort=True)["day"].nunique().rename("n_days").reset_index()
    return n[n["n_days"] >= n_days].reset_index(drop=True)


def static_source_mask(history: pd.DataFrame, *, n_days: int = 3, m_days: int = 5, end_date=None,
                       cell_size_m: float = 375.0, neighbourhood_cells: int = 1, solar_day: bool = True):
    """Persistent heat-source cells: detected on at least ``n_days`` of the last ``m_days`` days.

    Parameters
    ----------
    history : DataFrame
        Past fire detections (``latitude``, ``longitude``, ``time`` or ``acq_date``/``acq_time``);
        any length, duplicates harmless (days are counted once per cell).
    n_days, m_days : int
        The rule (default 3 of 5, an rsmon default; see :class:`StrawParams`).
    end_date : date-like, optional
        Last day of the window (inclusive; observation days, see :func:`observation_day`).
        Default: the latest day in ``history``.
    cell_size_m : float
        Cell side in :data:`PERSISTENCE_CRS`, metres (default 375).
    neighbourhood_cells : int
        Union of detection days over the cells within this many cells (default 1, 3x3).
    solar_day : bool
        Local solar days (default) or UTC days.

    Returns
    -------
    GeoDataFrame
        One row per static cell: ``cell_id`` (int64), ``ix``, ``iy`` (cell column/row),
        ``n_days`` (distinct detection days in the window, neighbourhood included), ``lon``,
        ``lat`` (cell centre, degrees) and the cell square as ``geometry`` (EPSG:4326).
        ``attrs`` holds the rule and the window.

    Raises
    ------
    InputError
        Invalid rule, or a table without coordinates/times.
    """
    import geopandas as gpd
    from pyproj import Transformer
    from shapely import box

    _check_rule(n_days, m_days)
    params = StrawParams(static_n_days=n_days, static_m_days=m_days, cell_size_m=cell_size_m,
                         neighbourhood_cells=neighbourhood_cells, solar_day=solar_day)
    cells = _cell_days(history, params) if len(history) else pd.DataFrame({"ix": [], "iy": [], "day": []})
    if end_date is None:
        end = cells["day"].max() if len(cells) else pd.NaT
    else:
        end = pd.Timestamp(end_date)
        end = (end.tz_convert(None) if end.tzinfo else end).normalize()
    static = (_static_cells(cells, end, n_days, m_days, neighbourhood_cells) if len(cells) and pd.notna(end)
              else pd.DataFrame({"ix": [], "iy": [], "n_days": []}, dtype=np.int64))
    ix = static["ix"].to_numpy(np.int64)
    iy = static["iy"].to_numpy(np.int64)
    s = float(cell_size_m)
    inv = Transformer.from_crs(PERSISTENCE_CRS, "EPSG:4326", always_xy=True)
    lon, lat = inv.transform((ix + 0.5) * s, (iy + 0.5) * s)
    squares = gpd.GeoSeries(box(ix * s, iy * s, (ix + 1) * s, (iy + 1) * s), crs=PERSISTENCE_CRS).to_crs(4326)
    out = gpd.GeoDataFrame({"cell_id": _cell_id(ix, iy), "ix": ix, "iy": iy,
                            "n_days": static["n_days"].to_numpy(np.int64),
                            "lon": np.asarray(lon, float), "lat": np.asarray(lat, float)},
                           geometry=squares.values, crs="EPSG:4326")
    out.attrs.update({"rule": f"detected on >= {n_days} of the last {m_days} days",
                      "end_date": None if pd.isna(end) else str(end.date()),
                      "cell_size_m": s, "neighbourhood_cells": int(neighbourhood_cells),
                      "crs": PERSISTENCE_CRS, "day": "local solar date" if solar_day else "UTC date"})
    return out


# --------------------------------------------------------------------------- classification

def _confidence_class(fires: pd.DataFrame) -> pd.Series:
    """'low' | 'nominal' | 'high' (VIIRS l/n/h, words, or MODIS percent via FIRMS bounds)."""
    from rsmon.io.stations_firms import MODIS_CONFIDENCE_BOUNDS

    if "confidence_class" in fires.columns:
        return fires["confidence_class"].astype("string")
    if "confidence" not in fires.columns:
        raise InputError("fire table: needs column 'confidence' or 'confidence_class'")
    conf = fires["confidence"]
    num = pd.to_numeric(conf, errors="coerce")
    if num.notna().all() and len(conf):
        lo, hi = MODIS_CONFIDENCE_BOUNDS
        return pd.Series(np.where(num >= hi, "high", np.where(num >= lo, "nominal", "low")),
                         index=fires.index, dtype="string")
    words = {"l": "low", "n": "nominal", "h": "high", "low": "low", "nominal": "nominal", "high": "high"}
    return conf.astype("string").str.strip().str.lower().map(words).astype("string")


def classify(fires: pd.DataFrame, landcover_path: str | os.PathLike, *, history: pd.DataFrame | None = None,
             params: StrawParams | None = None) -> pd.DataFrame:
    """Add land cover, static-source and low-confidence flags and a straw-burning category.

    Parameters
    ----------
    fires : DataFrame
        One row per fire pixel: ``latitude``, ``longitude``, ``time`` or ``acq_date`` +
        ``acq_time`` (UTC), ``confidence`` (VIIRS l/n/h or low/nominal/high, or MODIS %) or
        ``confidence_class``, ``daynight``; optional FIRMS ``type``.
    landcover_path : str or PathLike
        Categorical land-cover raster (any CRS), e.g. ESA WorldCover.
    history : DataFrame, optional
        Earlier detections for the persistence rule. The rule always runs on ``fires`` plus
        ``history`` (a multi-day ``fires`` table carries its own history; overlaps are harmless
        because days are counted once per cell). Each fire is judged with the window ending on
        its own observation day (look-back only, so a first detection is never static by
        persistence).
    params : StrawParams, optional
        Rules and thresholds (defaults: :class:`StrawParams`).

    Returns
    -------
    DataFrame
        A copy of ``fires`` plus ``landcover_class`` (int32), ``cropland_fraction`` (float),
        ``static_source`` (bool), ``low_conf_day`` (bool), ``category`` (str, one of
        :data:`CATEGORIES`, precedence in the module docstring). ``attrs["straw_params"]`` holds
        the parameters.

    Raises
    ------
    InputError
        Missing columns or unparsable times/confidence.
    FormatError
        The land-cover raster cannot be read.
    """
    p = params or StrawParams()
    for col in ("latitude", "longitude", "daynight"):
        if col not in fires.columns:
            raise InputError(f"fire table: missing column {col!r}")
    out = fires.copy()
    lon = pd.to_numeric(out["longitude"], errors="coerce").to_numpy(float)
    lat = pd.to_numeric(out["latitude"], errors="coerce").to_numpy(float)
    out["landcover_class"] = landcover_at(lon, lat, landcover_path)
    out["cropland_fraction"] = class_fraction_in_pixel(lon, lat, landcover_path, p.cropland_classes, p.footprint_m)

    ftype = (pd.to_numeric(out["type"], errors="coerce").astype("Int64") if "type" in out.columns
             else pd.Series(pd.NA, index=out.index, dtype="Int64"))
    static = (ftype == 2).fillna(False).to_numpy(bool) if p.use_firms_type else np.zeros(len(out), bool)
    static |= _persistent(out, history, p)
    out["static_source"] = static

    conf = _confidence_class(out)
    if conf.isna().any():
        i = int(np.flatnonzero(conf.isna().to_numpy())[0])
        raise InputError(f"fire table: confidence {out['confidence'].iloc[i]!r} at row {i} is not l/n/h, "
                         "low/nominal/high or 0-100")
    day = out["daynight"].astype("string").str.strip().str.upper() == "D"
    out["low_conf_day"] = (day & (conf == "low")).fillna(False).to_numpy(bool)

    crop = (out["cropland_fraction"] >= p.min_cropland_fraction).to_numpy(bool)  # NaN -> False
    not_veg = ftype.isin([1, 3]).fillna(False).to_numpy(bool)
    out["category"] = np.select(
        [out["static_source"].to_numpy(), out["low_conf_day"].to_numpy(), crop & ~not_veg],
        ["static_source", "low_confidence_day", "straw_burning_suspected"], default="other_fire").astype(object)
    out.attrs["straw_params"] = p.to_dict()
    log.info("classified %d fires: %s", len(out), out["category"].value_counts().to_dict())
    return out


def _persistent(fires: pd.DataFrame, history: pd.DataFrame | None, p: StrawParams) -> np.ndarray:
    """Whether each fire's cell is static by persistence on the fire's own observation day."""
    flag = np.zeros(len(fires), bool)
    if not len(fires):
        return flag
    parts = [fires] if history is None or not len(history) else [fires, history]
    # one time convention for both tables (one may carry 'time', the other acq_date/acq_time)
    both = pd.concat([pd.DataFrame({"latitude": pd.to_numeric(t["latitude"], errors="coerce").to_numpy(float),
                                    "longitude": pd.to_numeric(t["longitude"], errors="coerce").to_numpy(float),
                                    "time": _utc_times(t).to_numpy()}) for t in parts], ignore_index=True)
    cells = _cell_days(both, p)
    lon = pd.to_numeric(fires["longitude"], errors="coerce").to_numpy(float)
    lat = pd.to_numeric(fires["latitude"], errors="coerce").to_numpy(float)
    ok = np.isfinite(lon) & np.isfinite(lat)
    ix = np.full(len(fires), -1, np.int64)
    iy = np.full(len(fires), -1, np.int64)
    ix[ok], iy[ok] = cell_index(lon[ok], lat[ok], p.cell_size_m)
    ids = _cell_id(ix, iy)
    days = observation_day(fires, solar=p.solar_day).to_numpy()
    for d in np.unique(days[ok]):
        static = _static_cells(cells, pd.Timestamp(d), p.static_n_days, p.static_m_days, p.neighbourhood_cells)
        if static.empty:
            continue
        sel = ok & (days == d)
        flag[sel] = np.isin(ids[sel], _cell_id(static["ix"].to_numpy(), static["iy"].to_numpy()))
    return flag


# --------------------------------------------------------------------------- admin units

def _admin_frame(admin, level_name: str):
    """Admin polygons as a GeoDataFrame in EPSG:4326 with valid geometries."""
    import geopandas as gpd
    import shapely

    if isinstance(admin, (str, os.PathLike)):
        from rsmon.io.maps import read_outlines

        admin = read_outlines(admin)
    if not isinstance(admin, gpd.GeoDataFrame):
        raise InputError(f"admin polygons: expected a GeoDataFrame or a vector file path, got {type(admin).__name__}")
    if level_name not in admin.columns:
        raise InputError(f"admin polygons: no column {level_name!r} (columns: {', '.join(map(str, admin.columns))})")
    gdf = admin[[level_name, admin.geometry.name]].copy()
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if gdf.crs is None:
        gdf = gdf.set_crs(4326)
    elif gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs(4326)
    bad = ~gdf.geometry.is_valid
    if bad.any():
        log.info("admin polygons: repairing %d invalid geometries with shapely.make_valid", int(bad.sum()))
        fixed = shapely.make_valid(gdf.geometry[bad].values)
        # make_valid may return a GeometryCollection with stray lines: keep the polygonal parts
        gdf.loc[bad, gdf.geometry.name] = [_polygonal(g) for g in fixed]
    polygonal = gdf.geom_type.isin(["Polygon", "MultiPolygon"]) & ~gdf.geometry.is_empty
    if not polygonal.all():
        log.info("admin polygons: dropping %d non-polygonal or empty features", int((~polygonal).sum()))
    return gdf[polygonal].reset_index(drop=True)


def _polygonal(geom):
    import shapely
    from shapely.geometry import GeometryCollection, MultiPolygon, Polygon

    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    if isinstance(geom, GeometryCollection):
        polys = [g for g in geom.geoms if isinstance(g, (Polygon, MultiPolygon))]
        return shapely.union_all(polys) if polys else Polygon()
    return Polygon()


def counts_by_admin(fires: pd.DataFrame, admin_polygons, *, level_name: str = "name",
                    cropland_area_ha: pd.Series | None = None, solar_day: bool = True) -> pd.DataFrame:
    """Fire counts per administrative unit, day and category.

    Parameters
    ----------
    fires : DataFrame
        Output of :func:`classify` (needs ``category``, coordinates and times).
    admin_polygons : GeoDataFrame or path
        Province / city / county polygons (any layer geopandas reads, e.g. the DataV GeoJSON);
        reprojected to EPSG:4326; invalid geometries repaired with ``shapely.make_valid`` (only
        polygonal parts kept).
    level_name : str
        Column of ``admin_polygons`` naming the units (e.g. ``name`` or ``adcode``).
    cropland_area_ha : Series, optional
        Cropland area per unit (index = unit names as in ``level_name``), hectares, e.g. from
        :func:`cropland_area_by_admin`. Adds the MEE intensity "fire points per 1000 ha of
        cultivated land" (``fire.md`` 4).
    solar_day : bool
        Day = local solar date (default) or UTC date, see :func:`observation_day`.

    Returns
    -------
    DataFrame
        One row per (unit, day) with a fire: ``level_name``, ``date`` (datetime64, midnight),
        one count column per category of :data:`CATEGORIES`, ``n_fires`` (all categories) and,
        with ``cropland_area_ha``: ``cropland_area_ha``, ``straw_per_1000ha`` (suspected straw
        points per 1000 ha) and ``fires_per_1000ha`` (all fires per 1000 ha). A point on a shared
        border counts once, in the first unit listed. ``attrs["n_outside"]`` counts fires in no unit.

    Raises
    ------
    InputError
        No ``category`` column (run :func:`classify` first), missing ``level_name``.
    """
    import geopandas as gpd

    if "category" not in fires.columns:
        raise InputError("fire table: no column 'category'; run rsmon.products.straw.classify first")
    admin = _admin_frame(admin_polygons, level_name)
    lon = pd.to_numeric(fires["longitude"], errors="coerce").to_numpy(float)
    lat = pd.to_numeric(fires["latitude"], errors="coerce").to_numpy(float)
    pts = gpd.GeoDataFrame({"_row": np.arange(len(fires))}, geometry=gpd.points_from_xy(lon, lat), crs=4326)
    joined = gpd.sjoin(pts, admin, how="inner", predicate="intersects")
    joined = joined.sort_values(["_row", "index_right"]).drop_duplicates("_row")
    rows = joined["_row"].to_numpy()
    table = pd.DataFrame({
        level_name: joined[level_name].to_numpy(),
        "date": observation_day(fires, solar=solar_day).to_numpy()[rows],
        "category": fires["category"].astype(str).to_numpy()[rows],
    })
    counts = (table.groupby([level_name, "date", "category"]).size().unstack("category", fill_value=0)
              .reindex(columns=list(CATEGORIES), fill_value=0))
    counts.columns.name = None
    counts["n_fires"] = counts[list(CATEGORIES)].sum(axis=1)
    counts = counts.reset_index()
    for c in (*CATEGORIES, "n_fires"):
        counts[c] = counts[c].astype(np.int64)
    if cropland_area_ha is not None:
        area = counts[level_name].map(pd.Series(cropland_area_ha)).astype(float)
        counts["cropland_area_ha"] = area
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(area > 0, 1000.0 / area, np.nan)
        counts["straw_per_1000ha"] = counts["straw_burning_suspected"] * per
        counts["fires_per_1000ha"] = counts["n_fires"] * per
    counts.attrs["n_outside"] = int(len(fires) - len(rows))
    counts.attrs["level_name"] = level_name
    return counts


def _area_method(crs) -> str:
    """exactextract ``coverage_weight`` for a raster CRS (metres squared in every case)."""
    if crs.is_geographic:
        return "area_spherical_m2"
    from pyproj import CRS

    method = (CRS.from_user_input(crs.to_wkt()).coordinate_operation or None)
    name = getattr(method, "method_name", "") or ""
    if "equal area" not in name.lower() and "albers" not in name.lower():
        log.warning("cropland area: raster CRS %s is not equal-area (%s); areas in map units are distorted",
                    crs.to_string(), name or "unknown projection")
    return "area_cartesian"


def cropland_area_by_admin(admin, landcover_path: str | os.PathLike, classes: Iterable[int] = (40,), *,
                           level_name: str = "name", method: str = "exactextract") -> pd.Series:
    """Area of the given land-cover classes in each administrative polygon, hectares.

    Parameters
    ----------
    admin : GeoDataFrame or path
        Polygons (reprojected to the raster CRS; invalid geometries repaired as in
        :func:`counts_by_admin`).
    landcover_path : str or PathLike
        Categorical raster (e.g. ESA WorldCover; class 40 = cropland).
    classes : iterable of int
        Codes to count (default ``(40,)``).
    level_name : str
        Column naming the units (the Series index).
    method : {"exactextract", "rasterio"}
        ``"exactextract"`` (default): exact polygon/pixel coverage fractions (exactextract, Baston
        2023, https://github.com/isciences/exactextract) weighted by each pixel's area on the sphere
        (``coverage_weight=area_spherical_m2``, rescaled from exactextract's 6378137 m sphere to
        the mean radius 6371008.8 m) for a geographic raster or the
        planar area for a projected one (use an equal-area projection). ``"rasterio"``: pixels
        whose centre lies inside the polygon (``rasterio.features.geometry_mask``), each
        weighted by its spherical area (R^2 dlon (sin lat_n - sin lat_s), R = 6371008.8 m) or its
        planar area -- slightly coarser along borders, kept as a cross-check and fallback.

    Returns
    -------
    Series of float
        Hectares by unit, named ``cropland_area_ha``.

    Raises
    ------
    InputError
        Unknown method or column.
    NoDataError
        No polygon overlaps the raster.
    """
    import rasterio

    if method not in ("exactextract", "rasterio"):
        raise InputError(f"cropland_area_by_admin: method must be 'exactextract' or 'rasterio', got {method!r}")
    gdf = _admin_frame(admin, level_name)
    codes = sorted({int(c) for c in classes})
    with rasterio.open(landcover_path) as ds:
        crs = ds.crs
        bounds = ds.bounds
    gdf = gdf.to_crs(crs)
    from shapely import box

    inside = gdf.intersects(box(*bounds))
    if not inside.any():
        raise NoDataError(f"{landcover_path}: no admin polygon overlaps the raster")
    area_m2 = np.zeros(len(gdf))
    if method == "exactextract":
        weight = _area_method(crs)
        area_m2[inside.to_numpy()] = _area_exactextract(gdf[inside], landcover_path, codes, weight)
        if weight == "area_spherical_m2":
            area_m2 *= (EARTH_RADIUS_M / _EXACTEXTRACT_SPHERE_M) ** 2
    else:
        area_m2[inside.to_numpy()] = _area_rasterio(gdf[inside], landcover_path, codes)
    return pd.Series(area_m2 / 1e4, index=pd.Index(gdf[level_name].to_numpy(), name=level_name),
                     name="cropland_area_ha")


def _area_exactextract(gdf, landcover_path, codes: list[int], weight: str) -> np.ndarray:
    # class area = covered valid area x the classes' share of it (nodata cells take part in neither)
    covered, share = class_shares_in_polygons(gdf, landcover_path, codes, coverage_weight=weight)
    return covered * np.nan_to_num(share)


def _area_rasterio(gdf, landcover_path, codes: list[int]) -> np.ndarray:
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.windows import from_bounds

    out = np.zeros(len(gdf))
    with rasterio.open(landcover_path) as ds:
        for i, geom in enumerate(gdf.geometry):
            f = from_bounds(*geom.bounds, transform=ds.transform)
            c0, r0 = max(math.floor(f.col_off), 0), max(math.floor(f.row_off), 0)
            c1 = min(math.ceil(f.col_off + f.width), ds.width)
            r1 = min(math.ceil(f.row_off + f.height), ds.height)
            if c1 <= c0 or r1 <= r0:
                continue
            win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
            data = ds.read(1, window=win)
            tr = ds.window_transform(win)
            inside = ~geometry_mask([geom], out_shape=data.shape, transform=tr)
            hit = inside & np.isin(data, codes)
            if ds.nodata is not None:
                hit &= data != ds.nodata
            if not hit.any():
                continue
            if ds.crs.is_geographic:
                # spherical pixel area per row: R^2 * dlon * (sin(lat_top) - sin(lat_bottom))
                r = EARTH_RADIUS_M
                rows = np.arange(data.shape[0])
                lat_top = np.radians(tr.f + tr.e * rows)
                lat_bot = np.radians(tr.f + tr.e * (rows + 1))
                row_area = r * r * np.radians(abs(tr.a)) * np.abs(np.sin(lat_top) - np.sin(lat_bot))
                out[i] = float((hit.sum(axis=1) * row_area).sum())
            else:
                out[i] = float(hit.sum()) * abs(tr.a * tr.e)
    return out
