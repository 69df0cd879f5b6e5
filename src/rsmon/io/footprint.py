"""Swath footprints: the outline of a satellite swath as lon/lat polygons, and its bbox.

Used by the swath readers' ``read_metadata`` (S5P, and the other swath readers) for catalogs and
``rsmon info``. The outline follows the first and last valid pixel of every (decimated) scanline,
in short segments so that each polygon stays simple; segments that cross the antimeridian are
split there (all output longitudes in [-180, 180]) and segments that wind around a pole become
polar caps. Bounding boxes follow RFC 7946 section 5.2 (west > east across the antimeridian).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["attribute_footprint", "footprint_bbox", "swath_footprint", "to_geojson"]

# Rows per outline segment: short segments keep each polygon simple near the poles and at the
# antimeridian, where a whole-orbit outline is not a valid lon/lat polygon.
_SEGMENT_ROWS = 24


def swath_footprint(lon_corners: np.ndarray, lat_corners: np.ndarray):
    """Footprint of a swath as a shapely geometry in lon/lat degrees, split at the antimeridian.

    Parameters
    ----------
    lon_corners, lat_corners : numpy.ndarray
        Shape (scanline, ground_pixel, 4), degrees, NaN = fill. Corner order as in S5P files:
        0 = (scanline-, pixel-), 1 = (scanline-, pixel+), 2 = (scanline+, pixel+), 3 = (scanline+, pixel-).
        Pass decimated scanlines for speed; pass centres repeated 4 times when there are no bounds.

    Returns
    -------
    shapely Polygon or MultiPolygon, or None when no pixel has finite corners
        The outline follows the first and last valid pixel of each scanline, so subsets whose
        geolocation is partly fill are handled. Segments that enclose a pole become polar caps.
    """
    import shapely

    valid = np.isfinite(lon_corners).all(axis=-1) & np.isfinite(lat_corners).all(axis=-1)
    good_rows = np.flatnonzero(valid.any(axis=1))
    if good_rows.size == 0:
        return None
    pieces = []
    for s in range(0, max(1, good_rows.size - 1), _SEGMENT_ROWS):
        seg = good_rows[s:s + _SEGMENT_ROWS + 1]  # one row overlap: neighbouring segments touch
        ring = _segment_ring(lon_corners, lat_corners, valid, seg)
        pieces.extend(_ring_to_polygons(*ring))
    if not pieces:
        return None
    geometry = shapely.union_all(pieces)
    geometry = shapely.simplify(geometry, 0.01, preserve_topology=True)
    return shapely.orient_polygons(geometry) if hasattr(shapely, "orient_polygons") else geometry


def _segment_ring(lon, lat, valid, rows):
    """Closed outline (lon, lat) of consecutive ``rows``: left edge down, bottom, right edge up, top."""
    first = [int(np.flatnonzero(valid[r])[0]) for r in rows]
    last = [int(np.flatnonzero(valid[r])[-1]) for r in rows]
    pts: list[tuple[float, float]] = []

    def add(r, j, c):
        pts.append((lon[r, j, c], lat[r, j, c]))

    for r, j in zip(rows, first):  # pixel- side, scanline forward
        add(r, j, 0)
        add(r, j, 3)
    r = rows[-1]
    for j in _across(first[-1], last[-1]):  # scanline+ side of the last row
        add(r, j, 2)
    for r, j in zip(rows[::-1], last[::-1]):  # pixel+ side, scanline backward
        add(r, j, 2)
        add(r, j, 1)
    r = rows[0]
    for j in _across(first[0], last[0])[::-1]:  # scanline- side of the first row
        add(r, j, 0)
    pts.append(pts[0])
    arr = np.asarray(pts, dtype=np.float64)
    keep = np.isfinite(arr).all(axis=1)
    return arr[keep, 0], arr[keep, 1]


def _across(j0: int, j1: int, n: int = 16) -> list[int]:
    return sorted(set(np.linspace(j0, j1, num=min(n, j1 - j0 + 1)).round().astype(int).tolist()))


def _ring_to_polygons(lon: np.ndarray, lat: np.ndarray) -> list:
    """Polygons in [-180, 180] for one closed ring that may cross the antimeridian or enclose a pole."""
    import shapely
    from shapely.geometry import Polygon, box

    if lon.size < 4:
        return []
    lon_u = np.unwrap(lon, period=360.0)
    if abs(lon_u[-1] - lon_u[0]) > 180.0:
        # the ring winds around a pole: the area inside is the cap beyond the ring
        if np.nanmean(lat) > 0:
            return [box(-180.0, float(lat.min()), 180.0, 90.0)]
        return [box(-180.0, -90.0, 180.0, float(lat.max()))]
    poly = Polygon(np.column_stack([lon_u, lat]))
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
    parts = [g for g in shapely.get_parts(poly) if g.geom_type == "Polygon" and not g.is_empty]
    if not parts:
        return []
    poly = shapely.union_all(parts)
    shift = -360.0 * np.floor((poly.centroid.x + 180.0) / 360.0)
    poly = shapely.affinity.translate(poly, xoff=shift)
    out = []
    for k in (-1, 0, 1):
        piece = poly.intersection(box(360.0 * k - 180.0, -90.0, 360.0 * k + 180.0, 90.0))
        if not piece.is_empty and piece.area > 0:
            out.extend(g for g in shapely.get_parts(shapely.affinity.translate(piece, xoff=-360.0 * k))
                       if g.geom_type == "Polygon")
    return out


def footprint_bbox(geometry) -> list[float]:
    """[west, south, east, north]: the smallest longitude interval on the circle (RFC 7946 5.2).

    Parameters
    ----------
    geometry : shapely Polygon or MultiPolygon
        Lon/lat degrees, longitudes in [-180, 180] (as :func:`swath_footprint` returns).

    Returns
    -------
    list of float
        Degrees, rounded to 1e-6; ``west > east`` when the covered longitudes cross the
        antimeridian, ``[-180, south, 180, north]`` when they go all the way round.
    """
    import shapely

    parts = list(shapely.get_parts(geometry))
    south = min(p.bounds[1] for p in parts)
    north = max(p.bounds[3] for p in parts)
    spans = sorted((p.bounds[0], p.bounds[2]) for p in parts)
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + 1e-9:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    # the largest gap between covered intervals, counting the wrap-around gap
    gaps = [(merged[(i + 1) % len(merged)][0] + (360.0 if i == len(merged) - 1 else 0.0) - merged[i][1], i)
            for i in range(len(merged))]
    gap, i = max(gaps)
    if gap <= 1e-9:
        return [-180.0, south, 180.0, north]
    west = merged[(i + 1) % len(merged)][0]
    east = merged[i][1]
    return [round(west, 6), round(south, 6), round(east, 6), round(north, 6)]


def to_geojson(geometry) -> dict[str, Any]:
    """A shapely geometry as a GeoJSON geometry dict."""
    import json

    import shapely

    return json.loads(shapely.to_geojson(geometry))


def attribute_footprint(gattrs: Mapping[str, Any]):
    """Footprint from the ACDD ``geospatial_lat/lon_min/max`` global attributes (a coarse box).

    Parameters
    ----------
    gattrs : mapping
        Global attributes of the file.

    Returns
    -------
    (dict, list) or (None, None)
        GeoJSON geometry dict and [west, south, east, north] in degrees (split in two boxes when
        west > east), or ``(None, None)`` when the attributes are missing or not finite.
    """
    from shapely.geometry import MultiPolygon, box

    try:
        south, north, west, east = (float(gattrs[k]) for k in (
            "geospatial_lat_min", "geospatial_lat_max", "geospatial_lon_min", "geospatial_lon_max"))
    except (KeyError, TypeError, ValueError):
        return None, None
    if not all(np.isfinite([south, north, west, east])):
        return None, None
    if max(abs(south), abs(north)) > 85.0:
        # an orbit reaching the pole covers every longitude there; the S5P attrs then read like
        # "min 179.9997, max -179.999", which is not a crossing box
        west, east = -180.0, 180.0
    if west <= east:
        geometry = box(west, south, east, north)
    else:
        geometry = MultiPolygon([box(west, south, 180.0, north), box(-180.0, south, east, north)])
    return to_geojson(geometry), [west, south, east, north]
