"""Patch tables of several tiles merged into one, each change reported once.

Neighbouring Sentinel-2 MGRS tiles overlap by about 10 km (100 km squares extended to 109.8 km,
ESA Sentinel-2 Products Specification Document) and Landsat WRS-2 scenes of adjacent paths and
rows overlap too, so a change near a tile edge is detected in both tiles' runs. Each run has its
own automatic threshold, so the two detections need not have the same pixels. The merge keeps
one tile's detection of every such change:

1. patches of different tiles *overlap* when their intersection has an area above
   :data:`OVERLAP_M2` (patches on the same pixel grid that only touch along an edge do not);
2. overlapping patches are grouped transitively (a patch of tile A over two patches of tile B is
   one group); a patch that overlaps no other tile's patch is kept as it is, so a change that only
   one tile saw (the other has no data there, or did not flag it) is never lost;
3. in a group, the patches of the tile whose centre is nearest the group's centroid (its members'
   centroids weighted by their areas) are kept and the others dropped: the usual rule of
   mosaicking overlapping tiles (keep the observation farthest from its tile's edge).

Patch ids are location ids (:mod:`rsmon.products.patches`), so the same change seen by two tiles
has the same id in both. Two different patches of different tiles can still share an id (the same
~100 m id cell, class and redline); the later one by (area, tile, id) then gets ``-2``, ``-3``...,
as within one run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from rsmon.errors import InputError
from rsmon.products.patches import EQUAL_AREA_CRS

log = logging.getLogger(__name__)

__all__ = ["OVERLAP_M2", "MergedPatches", "merge_tile_patches"]

#: Intersection area (m2, equal-area) above which two tiles' patches are the same change: a
#: hundredth of a 10 m pixel, far above the round-off of reprojecting patches that only touch.
OVERLAP_M2 = 1.0


@dataclass
class MergedPatches:
    """The merged table (column ``tile`` added) and what the merge dropped."""

    table: gpd.GeoDataFrame
    n_dropped: int
    n_renamed: int


def merge_tile_patches(tables: Mapping[str, gpd.GeoDataFrame], centres: Mapping[str, tuple[float, float]],
                       ) -> MergedPatches:
    """One patch table from the tables of overlapping tiles (rules in the module doc).

    Parameters
    ----------
    tables : mapping
        Tile name -> its run's patch table (:func:`rsmon.products.patches.patches_from_change`;
        ``patch_id``, ``area_m2`` and a geometry with a CRS).
    centres : mapping
        Tile name -> the centre of the tile's grid (longitude, latitude in degrees).

    Returns
    -------
    MergedPatches
        ``table``: the kept patches with a ``tile`` column, in the first table's CRS when every
        table has the same CRS, else in EPSG:4326; sorted by area (largest first), then id.

    Raises
    ------
    InputError
        No table, a table without a CRS or ``patch_id``, or a tile without a centre.
    """
    if not tables:
        raise InputError("patch merge: no tile's patch table given")
    for tile, table in tables.items():
        if table.crs is None:
            raise InputError(f"patch merge: the patch table of tile {tile} has no CRS")
        if "patch_id" not in table.columns:
            raise InputError(f"patch merge: the patch table of tile {tile} has no column 'patch_id'")
        if tile not in centres:
            raise InputError(f"patch merge: tile {tile} has no centre")
    crs = {t.crs for t in tables.values()}
    out_crs = next(iter(tables.values())).crs if len(crs) == 1 else "EPSG:4326"
    frames = [t.to_crs(out_crs) for t in tables.values()]
    frames = [(f if f.geometry.name == "geometry" else f.rename_geometry("geometry")).assign(tile=tile)
              for tile, f in zip(tables, frames)]
    merged = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=out_crs)
    merged = merged[[c for c in merged.columns if c != "geometry"] + ["geometry"]]
    n = len(merged)
    if n == 0:
        return MergedPatches(merged, 0, 0)
    ea = shapely.make_valid(merged.to_crs(EQUAL_AREA_CRS).geometry.to_numpy())
    tiles = merged["tile"].to_numpy()
    keep = np.ones(n, bool)

    # 1-2. overlapping patches of different tiles, grouped transitively (union-find)
    left, right = shapely.STRtree(ea).query(ea, predicate="intersects")
    pick = (left < right) & (tiles[left] != tiles[right])
    left, right = left[pick], right[pick]
    if len(left):
        area = shapely.area(shapely.intersection(ea[left], ea[right]))
        left, right = left[area > OVERLAP_M2], right[area > OVERLAP_M2]
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(left.tolist(), right.tolist()):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    # 3. in each group, the tile whose centre is nearest the group's centroid
    if len(left):
        to_ea = Transformer.from_crs("EPSG:4326", EQUAL_AREA_CRS, always_xy=True)
        names = sorted(centres)
        cx, cy = to_ea.transform([centres[t][0] for t in names], [centres[t][1] for t in names])
        centre_of = {t: (x, y) for t, x, y in zip(names, cx, cy)}
        members = np.unique(np.concatenate([left, right]))
        label = np.array([root(i) for i in members.tolist()])
        # the group's centroid: its members' centroids weighted by their areas (where the group lies;
        # the overlaps counted twice do not move it between two tiles' centres by more than the group)
        weight = shapely.area(ea[members])
        centroid = shapely.get_coordinates(shapely.centroid(ea[members]))
        _, inverse = np.unique(label, return_inverse=True)
        total = np.bincount(inverse, weight)
        gx = np.bincount(inverse, weight * centroid[:, 0]) / total
        gy = np.bincount(inverse, weight * centroid[:, 1]) / total
        own_tiles: dict[int, set] = {}
        for g, i in zip(inverse.tolist(), members.tolist()):
            own_tiles.setdefault(g, set()).add(tiles[i])
        best = {g: min(sorted(own), key=lambda t: (np.hypot(centre_of[t][0] - gx[g], centre_of[t][1] - gy[g]), t))
                for g, own in own_tiles.items()}
        keep[members] = [tiles[i] == best[g] for g, i in zip(inverse.tolist(), members.tolist())]
    kept = merged[keep]
    kept = kept.sort_values(["area_m2", "tile", "patch_id"], ascending=[False, True, True], kind="stable")
    ids, n_renamed = _unique_ids(kept["patch_id"].tolist())
    kept = kept.assign(patch_id=pd.Series(ids, index=kept.index, dtype=object))
    kept = kept.sort_values(["area_m2", "patch_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    n_dropped = int(n - keep.sum())
    log.info("merged the patches of %d tiles: %d kept, %d seen again by an overlapping tile dropped, %d id(s) renamed",
             len(tables), len(kept), n_dropped, n_renamed)
    return MergedPatches(kept, n_dropped, n_renamed)


def _unique_ids(ids: list) -> tuple[list, int]:
    """Ids made unique in order: a repeated id gets ``-2``, ``-3``... (the first keeps it)."""
    taken = set(ids)
    seen: set = set()
    out, renamed = [], 0
    for value in ids:
        if value not in seen:
            seen.add(value)
            out.append(value)
            continue
        k = 2
        while f"{value}-{k}" in taken:
            k += 1
        candidate = f"{value}-{k}"
        taken.add(candidate)
        seen.add(candidate)
        out.append(candidate)
        renamed += 1
    return out, renamed
