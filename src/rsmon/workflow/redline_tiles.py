"""Redline jobs over several tiles: the scenes grouped by tile, one change run per tile, the patches merged.

A monitoring centre's redlines span many Sentinel-2 tiles (or Landsat path/rows), and a month's
scenes of them arrive together. A change run puts every scene on one grid, so scenes of different
tiles cannot share a run. :func:`plan_tiles` groups a job's scenes by their tile (the MGRS tile of
Sentinel-2 names, the WRS-2 path/row of Landsat names; :func:`tile_key`), and
:func:`run_redline_tiles` runs :func:`rsmon.workflow.redline.run_redline_detect` once per tile
into ``OUT/tiles/<tile>/`` and merges the tiles' patches into ``OUT/patches.gpkg`` and
``OUT/patches.geojson`` (:func:`rsmon.products.patch_merge.merge_tile_patches`: a change in the
overlap of two tiles is reported once), with ``OUT/summary.json`` listing every tile.

The tiles are those of the scenes of the more common family among the after scenes (Sentinel-2
tiles before Landsat path/rows on a tie). A scene of the other family or without a tile in its
name (a second sensor's scene, an ENVI stack) joins every tile whose after scenes' bounding box it
intersects, so a Landsat scene can still confirm the Sentinel-2 changes of the tiles it covers.
A tile with after scenes but no before scene is skipped, and the summary says why; a job whose
scenes are all of one tile runs as before (outputs directly in ``OUT``). When the job itself runs
on a dask.distributed worker (``rsmon run --dask``), its tiles run side by side as tasks of that
cluster; else one after the other.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import rasterio
from pyproj import Transformer

from rsmon.errors import InputError
from rsmon.io.atomic import atomic_output
from rsmon.io.optical_landsat import parse_landsat_id
from rsmon.io.optical_s2 import s2_tile_of_name
from rsmon.io.vectors import read_vectors, write_patches
from rsmon.products.patch_merge import merge_tile_patches

log = logging.getLogger(__name__)

__all__ = ["TileRun", "TilePlan", "group_by_tile", "merge_run_folders", "merge_runs", "plan_tiles", "run_redline_tiles",
           "tile_key"]


def tile_key(item) -> str | None:
    """The tile of a catalogued scene: ``T50SMF`` (Sentinel-2 MGRS) or ``WRS2-120038`` (Landsat
    path 120, row 38) from its folder, file or item names; None when no name carries one.

    ``item`` is an :class:`rsmon.workflow.input_index.InputItem` or a path."""
    path = Path(item if isinstance(item, (str, os.PathLike)) else item.path)
    files = [Path(f).name for f in getattr(item, "files", ())]
    if not files and path.is_dir():  # a folder of band files (OSCD style, or a flat L2A folder)
        files = sorted(p.name for p in path.iterdir())
    names = [path.name, path.parent.name, *files, getattr(item, "item_id", ""), *_archive_names(path)]
    for name in names:
        tile = s2_tile_of_name(name)
        if tile:
            return tile
    for name in names:
        scene = parse_landsat_id(name)
        if scene is not None:
            return f"WRS2-{scene.path:03d}{scene.row:03d}"
    return None


def _archive_names(path: Path) -> list[str]:
    """Names one and two levels inside a product archive (its ``.SAFE`` folder, its band files), so a
    download saved under another name still has a tile; [] for anything else."""
    from rsmon.errors import FormatError
    from rsmon.io.archive import archive_root, is_archive_name

    if not is_archive_name(path) or not path.is_file():
        return []
    try:
        root = archive_root(path)
    except FormatError:
        return []
    top = list(root.iterdir())
    return [node.name for node in top] + [child.name for node in top if node.is_dir() for child in node.iterdir()]


def group_by_tile(items: Sequence) -> dict[str | None, list]:
    """Items by :func:`tile_key`, in the order given (None: items whose names carry no tile)."""
    groups: dict[str | None, list] = {}
    for item in items:
        groups.setdefault(tile_key(item), []).append(item)
    return groups


@dataclass
class TileRun:
    """One tile's scenes."""

    tile: str
    before: list
    after: list


@dataclass
class TilePlan:
    """The tiles of a job: the runs, and the tiles skipped with the reason."""

    runs: list[TileRun]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def multi(self) -> bool:
        return len(self.runs) + len(self.skipped) > 1


def _family(key: str | None) -> str | None:
    return None if key is None else ("landsat" if key.startswith("WRS2-") else "sentinel-2")


def _bbox_union(items) -> tuple[float, float, float, float] | None:
    boxes = [i.bbox for i in items if getattr(i, "bbox", None) is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _intersects(a, b) -> bool:
    if a is None or b is None:
        return True  # no footprint to tell: let the run's alignment decide (it names a scene that does not overlap)
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def plan_tiles(before: Sequence, after: Sequence) -> TilePlan:
    """Group a redline job's scenes into tile runs (rules in the module doc)."""
    by_tile = group_by_tile(after)
    families = [_family(k) for k in by_tile for _ in by_tile[k]]
    counts = {f: families.count(f) for f in ("sentinel-2", "landsat")}
    primary = "sentinel-2" if counts["sentinel-2"] >= counts["landsat"] else "landsat"
    tiles = [k for k in by_tile if _family(k) == primary]
    if len(tiles) <= 1:
        return TilePlan([TileRun(tiles[0] if tiles else "scene", list(before), list(after))])
    runs = {t: TileRun(t, [], []) for t in sorted(tiles)}
    footprint = {t: _bbox_union(by_tile[t]) for t in runs}
    for role, items in (("before", before), ("after", after)):
        for item in items:
            key = tile_key(item)
            targets = [key] if key in runs else ([] if _family(key) == primary else
                                                 [t for t in runs if _intersects(getattr(item, "bbox", None),
                                                                                 footprint[t])])
            for t in targets:
                getattr(runs[t], role).append(item)
            if not targets:
                log.info("redline tiles: %s scene %s is of no tile of this job's after scenes; not used",
                         role, Path(getattr(item, "path", item)).name)
    skipped = {t: "no before scene of this tile selected (the before query selects per tile with 'group: tile')"
               for t, r in runs.items() if not r.before}
    return TilePlan([r for t, r in runs.items() if t not in skipped], skipped)


def _grid_centre(change_tif: Path) -> tuple[float, float]:
    with rasterio.open(change_tif) as src:
        b, crs = src.bounds, src.crs
    x, y = (b.left + b.right) / 2, (b.bottom + b.top) / 2
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return float(lon), float(lat)


def run_redline_tiles(plan: TilePlan, out: Path, **kwargs) -> dict[str, Any]:
    """Run every tile of ``plan`` into ``out/tiles/<tile>/`` and merge their patches into ``out``.

    ``kwargs`` go to :func:`rsmon.workflow.redline.run_redline_detect` (the same redlines,
    parameters and previous patches for every tile). Writes ``out/patches.gpkg``,
    ``out/patches.geojson`` (column ``tile`` added) and ``out/summary.json``; returns the summary.
    With a land-cover screen, the tiles' ``screened.gpkg`` are merged the same way into
    ``out/screened.gpkg`` / ``.geojson``.

    Raises
    ------
    InputError
        No tile has both a before and an after scene (the message lists why for each tile).
    RsmonError
        As :func:`run_redline_detect` for a tile's run; nothing is written in ``out`` then except
        the folders of tiles already done, which the workflow's staging folder discards.
    """
    if not plan.runs:
        raise InputError("redline tiles: no tile has both a before and an after scene ("
                         + "; ".join(f"{t}: {why}" for t, why in sorted(plan.skipped.items())) + ")")
    calls = [(run.tile, [i.path for i in run.before], [i.path for i in run.after], out / "tiles" / run.tile, kwargs)
             for run in plan.runs]
    client = _cluster_client() if len(calls) > 1 else None
    if client is None:  # one after the other, in this process
        done = [_run_tile(*call) for call in calls]
    else:  # on the dask cluster this job runs on: the tiles side by side, each on a worker
        with client as c:
            futures = [c.submit(_run_tile, *call, capture=True, pure=False) for call in calls]
            try:
                done = c.gather(futures)
            finally:
                c.cancel(futures)
    tiles = {}
    for tile, summary, records in done:
        tiles[tile] = summary
        for record in records:  # a tile's log lines from its worker, into this job's log
            logging.getLogger(record["name"]).handle(logging.makeLogRecord(record))
    for tile, why in plan.skipped.items():
        log.warning("redline tile %s skipped: %s", tile, why)
    return merge_runs({t: out / "tiles" / t for t in tiles}, out, tiles=tiles, skipped=plan.skipped,
                      tile_runs="in this process" if client is None else "dask cluster tasks")


def _run_tile(tile: str, before: list[str], after: list[str], folder: Path, kwargs: dict, *,
              capture: bool = False) -> tuple[str, dict, list[dict]]:
    """One tile's change run into ``folder``: (tile, its summary for the job's summary.json, and
    with ``capture`` the INFO and higher ``rsmon`` log records this thread emitted, as dicts for
    :func:`logging.makeLogRecord`: a tile run on another worker sends its log lines back)."""
    from rsmon.workflow.redline import run_redline_detect

    records: list[dict] = []
    handler = _ThreadRecords(records) if capture else None
    logger = logging.getLogger("rsmon")
    level = logger.level
    if handler is not None:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        log.info("redline tile %s: %d before, %d after scene(s)", tile, len(before), len(after))
        result = run_redline_detect(before, after, folder, **kwargs)
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(level)
    return tile, {"folder": f"tiles/{tile}", "n_patches": result.n_patches, "area_m2": result.area_m2,
                  "n_change_pixels": result.n_change_pixels, "n_valid_pixels": result.n_valid_pixels,
                  "by_class": result.by_class, "reason": result.reason, "before": before, "after": after,
                  "screened": result.screened or None, "watch": result.watch, "barren_parts": result.barren_parts,
                  "executed_on": f"{socket.gethostname()}:{os.getpid()}"}, records


class _ThreadRecords(logging.Handler):
    """The INFO and higher records of the thread that made it (other tasks share the worker)."""

    def __init__(self, records: list[dict]):
        super().__init__(logging.INFO)
        self.records, self.thread = records, threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.records.append({"name": record.name, "levelno": record.levelno, "levelname": record.levelname,
                                 "msg": f"[{socket.gethostname()}:{os.getpid()}] {record.getMessage()}",
                                 "created": record.created, "msecs": record.msecs})


def _cluster_client():
    """A client of the dask cluster whose worker runs this job (its tile runs become tasks there,
    the job's own task stepping aside while it waits: ``distributed.worker_client``), or None when
    the job does not run on a dask.distributed worker."""
    try:
        from distributed import get_worker, worker_client
    except ImportError:
        return None
    try:
        get_worker()
    except ValueError:  # not inside a worker's task
        return None
    return worker_client()


def merge_runs(runs: dict[str, Path], out: Path, *, tiles: dict[str, dict] | None = None,
               skipped: dict[str, str] | None = None, tile_runs: str | None = None) -> dict[str, Any]:
    """Merge the patches of finished tile runs (tile -> output folder of
    :func:`rsmon.workflow.redline.run_redline_detect`) into ``out``: ``patches.gpkg``,
    ``patches.geojson`` (column ``tile``) and ``summary.json``; returns the summary.

    ``tiles`` gives each tile's summary (default: its run's ``summary.json``), ``skipped`` the
    tiles not run and why, ``tile_runs`` where they ran (``summary.json`` says it).

    Raises
    ------
    InputError
        A run folder without ``change.tif`` or ``patches.gpkg`` (named).
    RsmonError
        Unreadable outputs or an unwritable ``out``; nothing is written then.
    """
    tables, centres, tiles = {}, {}, dict(tiles or {})
    for tile, folder in runs.items():
        folder = Path(folder)
        for name in ("change.tif", "patches.gpkg"):
            if not (folder / name).is_file():
                raise InputError(f"{folder}: no {name} (not an output folder of 'rsmon redline detect')")
        tables[tile] = read_vectors(folder / "patches.gpkg")
        centres[tile] = _grid_centre(folder / "change.tif")
        if tile not in tiles:
            tiles[tile] = {"folder": str(folder), **_run_summary(folder)}
    merged = merge_tile_patches(tables, centres)
    table = merged.table
    out.mkdir(parents=True, exist_ok=True)
    write_patches(table, out / "patches.gpkg", out / "patches.geojson")
    screened = {tile: read_vectors(Path(folder) / "screened.gpkg") for tile, folder in runs.items()
                if (Path(folder) / "screened.gpkg").is_file()}
    if screened:  # the tiles' pseudo-changes, merged by the same rules (each change once)
        screened_table = merge_tile_patches(screened, {t: centres[t] for t in screened}).table
        write_patches(screened_table, out / "screened.gpkg", out / "screened.geojson", layer="screened")
    by_class = {str(k): int(v) for k, v in table["change_class"].value_counts().items()} if len(table) else {}
    summary = {
        "tiles": tiles, "skipped_tiles": dict(skipped or {}), "n_patches": len(table),
        "area_m2": float(table["area_m2"].sum()) if len(table) else 0.0, "by_class": by_class,
        "n_change_pixels": sum(int(t.get("n_change_pixels") or 0) for t in tiles.values()),
        "n_valid_pixels": sum(int(t.get("n_valid_pixels") or 0) for t in tiles.values()),
        "duplicates_dropped": merged.n_dropped, "ids_renamed": merged.n_renamed,
        "reason": None if len(table) else "no change patch in any tile",
        "screened": ({str(k): int(v) for k, v in screened_table["screen_reason"].value_counts().items()}
                     if screened else None),
        **({"tile_runs": tile_runs} if tile_runs else {}),
    }
    with atomic_output(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def merge_run_folders(folders: Sequence[Path], out: Path) -> dict[str, Any]:
    """:func:`merge_runs` of output folders of ``rsmon redline detect``, each named by the tile of
    its first after scene (its ``summary.json``), else by the folder's name; two runs of one name
    are told apart by their folders (``T50SMF+run2``)."""
    runs: dict[str, Path] = {}
    tiles: dict[str, dict] = {}
    for folder in map(Path, folders):
        summary = _run_summary(folder)
        after = summary.get("after") or []
        name = (tile_key(after[0]) if after else None) or folder.name
        while name in runs:
            name = f"{name}+{folder.name}"
        runs[name], tiles[name] = folder, {"folder": str(folder), **summary}
    return merge_runs(runs, out, tiles=tiles)


def _run_summary(folder: Path) -> dict[str, Any]:
    """The counts of a run's ``summary.json`` (empty when it has none or it is unreadable)."""
    try:
        body = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    keys = ("n_patches", "area_m2", "n_change_pixels", "n_valid_pixels", "by_class", "reason", "before", "after",
            "screened", "watch", "barren_parts")
    return {k: body.get(k) for k in keys} if isinstance(body, dict) else {}
