"""Growing-season zones: one crop calendar per agricultural zone of a province.

A province can span two cropping systems: Hebei's plain south of the Great Wall grows winter wheat
then summer maize (a field is bare only between the two crops), its Bashang plateau one crop a
year (bare from the autumn harvest to May). The crop-cycle screen's watch counts the days a
screened patch stays bare (:mod:`rsmon.products.change_screen`): with zones, each patch counts
the days of its own zone's growing season.

The zones file is any vector layer GDAL reads (GeoPackage, shapefile, GeoJSON; any CRS) with a
``growing_season`` column of ``"MM-DD:MM-DD"`` (first and last day, both included) or empty for a
zone where every day counts (double cropping). A patch takes the zone that holds its
representative point (a point inside it, :func:`shapely.point_on_surface`); where zones overlap,
the first in file order; outside every zone, the run's ``growing_season`` (``--growing-season``,
None: every day).
"""

from __future__ import annotations

import os

import numpy as np

from rsmon.errors import InputError

__all__ = ["SEASON_COLUMN", "read_season_zones", "seasons_at"]

#: Column of the zones file holding each zone's growing season.
SEASON_COLUMN = "growing_season"


def read_season_zones(path: str | os.PathLike):
    """The zones as a GeoDataFrame (``growing_season`` normalised to ``"MM-DD:MM-DD"`` or None,
    polygons repaired with ``make_valid``), in the file's CRS.

    Raises
    ------
    FormatError
        The file is missing or is not vector data.
    InputError
        No CRS, no features, no ``growing_season`` column, a feature without a polygon, or a
        season that is not ``MM-DD:MM-DD`` (the message names the file and the feature).
    """
    import shapely

    from rsmon.io.vectors import read_vectors
    from rsmon.products.change_screen import parse_season
    from rsmon.products.redlines import as_text, polygonal

    zones = read_vectors(path)
    if not len(zones):
        raise InputError(f"--season-zones {path}: the layer has no features")
    if SEASON_COLUMN not in zones.columns:
        raise InputError(f"--season-zones {path}: no column {SEASON_COLUMN!r} (columns: "
                         f"{[c for c in zones.columns if c != zones.geometry.name]})")
    seasons = []
    for i, value in enumerate(zones[SEASON_COLUMN]):
        text = as_text(value)
        if text is None or not text.strip():  # every day counts
            seasons.append(None)
            continue
        try:
            (m0, d0), (m1, d1) = parse_season(text)
        except InputError as exc:
            raise InputError(f"--season-zones {path}: feature {i}: {exc}") from None
        seasons.append(f"{m0:02d}-{d0:02d}:{m1:02d}-{d1:02d}")
    geoms = polygonal(shapely.make_valid(zones.geometry.to_numpy()))
    empty = np.flatnonzero(shapely.is_empty(geoms) | shapely.is_missing(geoms))
    if len(empty):
        raise InputError(f"--season-zones {path}: feature {int(empty[0])} has no polygon")
    import geopandas as gpd
    import pandas as pd

    return gpd.GeoDataFrame({SEASON_COLUMN: pd.Series(seasons, dtype=object)}, geometry=geoms, crs=zones.crs)


def seasons_at(zones, geoms, crs, default: str | None = None) -> list[str | None]:
    """The growing season of each geometry (in ``crs``): its zone's (first in file order where
    zones overlap), ``default`` outside every zone."""
    import shapely
    from pyproj import CRS, Transformer

    geoms = np.asarray(getattr(geoms, "values", geoms), dtype=object)
    out: list[str | None] = [default] * len(geoms)
    if not len(geoms) or zones is None or not len(zones):
        return out
    idx = np.flatnonzero(~(shapely.is_empty(geoms) | shapely.is_missing(geoms)))
    points = shapely.point_on_surface(geoms[idx])
    src, dst = CRS.from_user_input(crs), CRS.from_user_input(zones.crs)
    if not src.equals(dst):
        tf = Transformer.from_crs(src, dst, always_xy=True)
        xy = shapely.get_coordinates(points)
        points = shapely.points(*tf.transform(xy[:, 0], xy[:, 1])) if len(xy) else points
    ip, iz = shapely.STRtree(zones.geometry.to_numpy()).query(points, predicate="within")
    order = np.lexsort((iz, ip))  # each point's zones in file order
    ip, iz = ip[order], iz[order]
    first = np.unique(ip, return_index=True)[1]
    values = [v if isinstance(v, str) else None for v in zones[SEASON_COLUMN].tolist()]  # NaN: every day
    for p, z in zip(ip[first], iz[first]):
        out[int(idx[p])] = values[int(z)]
    return out
