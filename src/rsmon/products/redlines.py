"""Redline polygons for change patches: attribute detection, geometry checks and repair, clipping.

Redline and nature-reserve layers come in any CRS and with many attribute spellings;
:func:`prepare_redlines` turns them into ``redline_id``, ``redline_name``, ``redline_zone`` and
valid polygons in the raster CRS, and :func:`clip_to_redlines` cuts patch polygons to them
(:func:`rsmon.products.patches.patches_from_change` uses both).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from rsmon.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["PREPARED_COLUMNS", "RedlineColumns", "RedlinePieces", "as_text", "clip_to_redlines", "polygonal",
           "prepare_redlines"]

# Redline attribute names recognised without being told (compared case-insensitively; bh/mc/gkfq
# are the pinyin abbreviations of 编号/名称/管控分区 used in Chinese redline layers, which also
# name their fields in Chinese: 红线编号, 红线名称, 保护地名称, 功能分区...).
_ID_NAMES = ("redline_id", "id", "code", "bh", "bm", "objectid", "fid", "红线编号", "编号", "编码", "代码")
_NAME_NAMES = ("redline_name", "name", "mc", "hxmc", "name_zh", "name_en", "红线名称", "保护地名称",
               "保护区名称", "名称")
_ZONE_NAMES = ("redline_zone", "zone", "gkfq", "zone_type", "fq", "管控分区", "功能分区", "分区")
_POLYGON_TYPES = (3, 6)  # shapely type ids of Polygon, MultiPolygon


@dataclass(frozen=True)
class RedlineColumns:
    """Redline attribute names to use; None detects a common name (``id``, ``NAME``, ``zone``...)."""

    id: str | None = None
    name: str | None = None
    zone: str | None = None


#: The columns of a :func:`prepare_redlines` result: preparing it again keeps it as it is.
PREPARED_COLUMNS = RedlineColumns(id="redline_id", name="redline_name", zone="redline_zone")


@dataclass(frozen=True)
class RedlinePieces:
    """Patches clipped to redline features, ordered by patch then feature.

    ``patch`` and ``zone`` index the input patch and redline arrays (0-based), ``geometry`` is the
    clipped piece, ``whole`` is True where the feature covers the patch (the piece is the patch).
    """

    patch: np.ndarray
    zone: np.ndarray
    geometry: np.ndarray
    whole: np.ndarray


def as_text(value) -> str | None:
    """Attribute value as text; None for missing values, ``3`` for a float 3.0 (shapefile ids)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # ids read back from shapefiles as 3.0
    return str(value)


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep the polygonal part of each geometry (make_valid/intersection may add lines, points)."""
    out = np.array(geoms, dtype=object)
    types = shapely.get_type_id(out)
    for i in np.flatnonzero(~np.isin(types, _POLYGON_TYPES)):
        parts = shapely.get_parts(out[i])
        polys = parts[np.isin(shapely.get_type_id(parts), _POLYGON_TYPES)]
        out[i] = shapely.union_all(polys) if len(polys) else shapely.Polygon()
    return out


def _pick_column(gdf: gpd.GeoDataFrame, explicit: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    if explicit is not None:
        if explicit not in gdf.columns:
            raise InputError(f"redlines: no column {explicit!r} for the {what}; columns: {list(gdf.columns)}")
        return explicit
    lower = {str(c).lower(): c for c in gdf.columns if c != gdf.geometry.name}
    return next((lower[c] for c in candidates if c in lower), None)


def prepare_redlines(redlines: gpd.GeoDataFrame, crs, columns: RedlineColumns | None = None) -> gpd.GeoDataFrame:
    """Check and repair redline polygons; return ``redline_id``, ``redline_name``, ``redline_zone``.

    Parameters
    ----------
    redlines : GeoDataFrame
        Redline or reserve polygons in any CRS (:func:`rsmon.io.vectors.read_vectors`).
    crs
        The raster CRS the result is reprojected to.
    columns : RedlineColumns, optional
        Attribute names; by default common names are detected. Without an id column the
        1-based row number is the id.

    Raises
    ------
    InputError
        No CRS, a named column is missing, a feature has no id, no geometry or a non-polygon
        geometry, or an invalid geometry that :func:`shapely.make_valid` cannot turn into an area.

    Warns
    -----
    UserWarning
        Listing the ids of the features whose invalid geometries were repaired.
    """
    columns = columns or RedlineColumns()
    if redlines.crs is None:
        raise InputError("redlines: the layer has no CRS; set one (e.g. EPSG:4490 or EPSG:4326)")
    id_col = _pick_column(redlines, columns.id, _ID_NAMES, "redline id")
    name_col = _pick_column(redlines, columns.name, _NAME_NAMES, "redline name")
    zone_col = _pick_column(redlines, columns.zone, _ZONE_NAMES, "redline zone")
    n = len(redlines)
    if id_col is None:
        log.warning("redlines: no id column (tried %s); using row numbers 1..%d", ", ".join(_ID_NAMES), n)
        ids = [str(i + 1) for i in range(n)]
    else:
        ids = [as_text(v) for v in redlines[id_col]]
        missing = [i for i, v in enumerate(ids) if v is None]
        if missing:
            raise InputError(f"redlines: feature(s) at row(s) {missing[:10]} have no {id_col!r}")

    def text(col):
        return pd.Series([as_text(v) for v in redlines[col]] if col else [None] * n, dtype=object)

    out = gpd.GeoDataFrame(
        {"redline_id": pd.Series(ids, dtype=object), "redline_name": text(name_col), "redline_zone": text(zone_col)},
        # patches are 2-D: heights of 3-D redline layers would be carried into the clipped pieces
        geometry=shapely.force_2d(redlines.geometry.to_crs(crs).to_numpy()),
        crs=crs,
    )
    geoms = out.geometry.to_numpy()
    for i in np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms)):
        raise InputError(f"redlines: feature {ids[i]!r} (row {i}) has no geometry")
    for i in np.flatnonzero(~np.isin(shapely.get_type_id(geoms), _POLYGON_TYPES)):
        raise InputError(f"redlines: feature {ids[i]!r} (row {i}) is a {geoms[i].geom_type}, expected a polygon")
    invalid = np.flatnonzero(~shapely.is_valid(geoms))
    if invalid.size:
        repaired = polygonal(shapely.make_valid(geoms[invalid]))
        for i, geom in zip(invalid, repaired):
            if geom.is_empty or geom.area <= 0:
                raise InputError(
                    f"redlines: feature {ids[i]!r} (row {i}) has an invalid geometry "
                    f"({shapely.is_valid_reason(geoms[i])}) that cannot be repaired into an area"
                )
        geoms[invalid] = repaired
        out = out.set_geometry(geoms, crs=crs)
        warnings.warn(
            f"redlines: repaired invalid geometries of feature(s) {[ids[i] for i in invalid]}",
            UserWarning, stacklevel=2,
        )
    return out


def clip_to_redlines(patches: np.ndarray, zones: np.ndarray) -> RedlinePieces:
    """Clip patch polygons to redline polygons (same CRS): one piece per overlapping pair.

    A patch crossing two features gives two pieces, a patch in two overlapping features two
    identical pieces, a patch outside every feature none; pieces without area (a patch touching
    a feature along an edge) are dropped. Only patches crossing a feature boundary are
    intersected: a patch the feature covers is its own piece.
    """
    zones = np.asarray(zones, dtype=object)
    shapely.prepare(zones)  # each feature is tested against many patches
    izone, ipatch = shapely.STRtree(patches).query(zones, predicate="intersects")
    whole = shapely.covers(zones[izone], patches[ipatch])
    pieces = np.array(patches[ipatch], dtype=object)
    cut = np.flatnonzero(~whole)
    pieces[cut] = polygonal(shapely.intersection(patches[ipatch[cut]], zones[izone[cut]]))
    keep = whole.copy()
    keep[cut] = shapely.area(pieces[cut]) > 0
    order = np.lexsort((izone[keep], ipatch[keep]))
    return RedlinePieces(ipatch[keep][order], izone[keep][order], pieces[keep][order], whole[keep][order])
