"""Catalog ingest: input files on disk -> STAC Items of the inputs catalog, plus an index to query.

``rsmon ingest DIR`` and the workflow runner (a workflow's ``sources``) call :func:`ingest`. Every
file is sniffed with the reader registry (:mod:`rsmon.io.registry`); a recognised file becomes one
STAC Item per scene or granule (footprint from swath corner bounds or raster bounds, time range,
platform, instrument, product type, SHA-256 of every file), in a Collection named after the reader
and product type (:func:`collection_for`). Files that belong to a scene already catalogued (a VIIRS
03IMG geolocation file, an ENVI header, the other band files of a Sentinel-2 scene) become assets
of that Item.

Re-ingesting is incremental: a file whose size and modification time are unchanged is not read
again; a file whose content checksum is unchanged is not re-catalogued; a changed file updates its
Item. Files that cannot be used are listed with the reason, never silently skipped:

* ``unreadable``: a reader recognises the file but cannot read it (truncated, corrupt);
* ``unusable``: readable but of no use as an input (a metadata-only granule, no footprint);
* ``unrecognised``: no reader recognises the file (a README, a CSV of truth values).

The index (``<catalog>/.rsmon-index.sqlite``, :mod:`rsmon.workflow.input_index`) maps every file
to its Item and holds each Item's bbox, time range, platform and product, so the runner selects
inputs by collection, bbox and time window without reading thousands of JSON files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rsmon.errors import InputError, RsmonError
from rsmon.provenance import format_datetime, parse_datetime, sha256_file
from rsmon.workflow.input_index import InputIndex, InputItem

log = logging.getLogger(__name__)

__all__ = ["IngestReport", "Problem", "collection_for", "ingest"]

FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"

#: Item properties copied from reader metadata when present (rsmon: prefix added).
_EXTRA_KEYS = ("orbit", "mode", "processor_version", "collection", "granule_id", "day_night_flag",
               "footprint_source", "resolution")

@dataclass(frozen=True)
class Problem:
    """A file that is not catalogued, and why."""

    path: str
    kind: str  # "unreadable" | "unusable" | "unrecognised"
    reason: str
    new: bool = True  # first seen (or changed) in this scan


@dataclass
class IngestReport:
    """What one ingest found."""

    catalog: Path
    new: list[InputItem] = field(default_factory=list)
    updated: list[InputItem] = field(default_factory=list)
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)

    @property
    def unreadable(self) -> list[Problem]:
        return [p for p in self.problems if p.kind == "unreadable"]

    def summary(self) -> str:
        counts = {k: sum(p.kind == k for p in self.problems) for k in ("unreadable", "unusable", "unrecognised")}
        text = (f"{len(self.new)} new, {len(self.updated)} updated, {self.unchanged} unchanged item(s); "
                f"{counts['unreadable']} unreadable, {counts['unusable']} unusable, "
                f"{counts['unrecognised']} unrecognised file(s)")
        if self.vanished:
            text += f"; {len(self.vanished)} file(s) vanished"
        return text


# --------------------------------------------------------------------------------------------------
# Collections and items
# --------------------------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "other"


def collection_for(meta: dict[str, Any]) -> str:
    """Collection id of an input from its reader metadata.

    ``s5p-l2-<product>`` (``s5p-l2-no2``), ``viirs-l1b-img`` (VNP/VJ1/VJ2 02IMG),
    ``optical-landsat``, ``optical-sentinel-2``, else ``optical-<product>`` / ``<reader>``.
    """
    reader = meta.get("reader") or "input"
    if reader == "s5p":
        return f"s5p-l2-{_slug(meta.get('product') or 'unknown')}"
    if reader == "viirs_l1b":
        return "viirs-l1b-img"
    if reader == "optical":
        platform = str(meta.get("platform") or "").lower()
        if "landsat" in platform:
            return "optical-landsat"
        if "sentinel-2" in platform:
            return "optical-sentinel-2"
        return f"optical-{_slug(meta.get('product') or 'other')}"
    return _slug(reader)


_DESCRIPTIONS = {
    "s5p-l2": "Sentinel-5P/TROPOMI L2 granules ingested by rsmon",
    "viirs-l1b-img": "VIIRS L1B I-band granules (02IMG with their 03IMG geolocation) ingested by rsmon",
    "optical": "optical scenes (Landsat, Sentinel-2, ENVI stacks) ingested by rsmon",
}


def _description(collection: str) -> str:
    for prefix, text in _DESCRIPTIONS.items():
        if collection.startswith(prefix):
            return text
    return f"input files ingested by rsmon: {collection}"


def _as_datetime(value: Any, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return parse_datetime(value, what)


def _scene_key(meta: dict[str, Any], path: Path) -> tuple[str, list[str]]:
    """Canonical path of the scene (what readers are given) and its files (main file first)."""
    files = [str(Path(f).resolve()) for f in (meta.get("files") or [])]
    main = str(Path(meta.get("path") or path).resolve())
    if meta.get("geo_path"):
        files = [main, str(Path(meta["geo_path"]).resolve())]
    if not files:
        files = [main]
    if len(files) == 1 or meta.get("geo_path"):
        return files[0], files
    common = Path(os.path.commonpath(files))
    if common.is_dir():
        from rsmon.io.registry import find_reader

        try:
            find_reader(common)
            return str(common), files
        except RsmonError:
            pass
    return files[0], files


def _item_id(meta: dict[str, Any], key: str) -> str:
    p = Path(key)
    name = p.name
    for ext in (".nc4", ".nc", ".h5", ".tif", ".tiff", ".jp2"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    if meta.get("reader") == "optical":
        name = f"{p.parent.name}-{name}"  # ENVI "2000TM" and OSCD "imgs_1" need their site
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._") or "item"


def _combined_sha(files: Sequence[str], digests: dict[str, str]) -> str:
    """The file's SHA-256 for a one-file scene, else SHA-256 over the (name, SHA-256) pairs."""
    if len(files) == 1:
        return digests[files[0]]
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: Path(f).name):
        h.update(f"{Path(f).name}\0{digests[f]}\n".encode())
    return h.hexdigest()


def _bbox_polygon(bbox) -> dict:
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _item_json(item: InputItem, meta: dict[str, Any], digests: dict[str, str], sizes: dict[str, int]) -> dict:
    now = format_datetime(datetime.now(timezone.utc))
    props: dict[str, Any] = {
        "datetime": None,
        "start_datetime": format_datetime(item.start),
        "end_datetime": format_datetime(item.end),
        "created": now,
        "updated": now,
        "rsmon:reader": item.reader,
        "rsmon:product_type": item.product,
        "rsmon:sha256": item.sha256,
        "rsmon:path": item.path,
    }
    if item.platform:
        props["platform"] = item.platform
    if item.instrument:
        props["instruments"] = [item.instrument]
    for key in _EXTRA_KEYS:
        if meta.get(key) not in (None, "", -1):
            props[f"rsmon:{key}"] = meta[key]
    assets = {}
    for f in item.files:
        name = Path(f).name
        if f == item.path:
            key, roles = "data", ["data"]
        elif meta.get("geo_path") and f == str(Path(meta["geo_path"]).resolve()):
            key, roles = "geolocation", ["data", "geolocation"]
        elif name.lower().endswith((".hdr", ".xml", ".mtl", ".txt")):
            key, roles = name, ["metadata"]
        else:
            key, roles = name, ["data"]
        assets[key] = {"href": Path(f).as_posix(), "title": name, "roles": roles,
                       "file:size": sizes[f], "file:checksum": "1220" + digests[f]}
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [FILE_SCHEMA],
        "id": item.item_id,
        "collection": item.collection,
        "geometry": item.footprint or _bbox_polygon(item.bbox),
        "bbox": list(item.bbox),
        "properties": props,
        "assets": assets,
        "links": [],
    }


# --------------------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------------------

def _walk(root: Path, skip: Path) -> Iterator[Path]:
    """Regular files under ``root`` (or ``root`` itself), sorted, without hidden names and ``skip``."""
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != skip)
        for name in sorted(files):
            if not name.startswith("."):
                p = here / name
                if p.is_file():
                    yield p


@dataclass
class _Scene:
    key: str
    files: list[str]
    meta: dict[str, Any]
    changed: bool


def ingest(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    catalog_dir: str | os.PathLike,
    *,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Catalogue the input files under ``paths`` (folders are walked; hidden names are skipped).

    Parameters
    ----------
    paths : path or sequence of paths
        Folders or files.
    catalog_dir : path
        The inputs catalog (created if needed); Items go to ``<catalog>/<collection>/<id>/``.
    progress : callable, optional
        Called with one line per file read.

    Returns
    -------
    IngestReport
        New, updated and unchanged Items; problems (unreadable, unusable, unrecognised files with
        the reason); files catalogued before that no longer exist.

    Raises
    ------
    InputError
        A path does not exist.
    OutputError
        The catalog cannot be written.
    """
    from rsmon.catalog import write_item
    from rsmon.errors import UnsupportedFormatError
    from rsmon.io.registry import find_reader

    roots = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    for root in roots:
        if not root.exists():
            raise InputError(f"ingest {root}: no such file or folder")
    report = IngestReport(catalog=Path(catalog_dir))
    with InputIndex(catalog_dir) as index:
        skip = index.catalog.resolve()
        seen: dict[str, tuple[int, int]] = {}
        scenes: dict[str, _Scene] = {}
        covered: dict[str, str] = {}  # file -> scene key, for files a scene already claims
        candidates: list[tuple[str, Problem]] = []
        for root in roots:
            for p in _walk(root, skip):
                path = str(p.resolve())
                if path in seen:
                    continue
                st = p.stat()
                seen[path] = (st.st_size, st.st_mtime_ns)
                row = index.file_row(path)
                if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
                    if row[4] in ("item", "companion") and row[3]:
                        scenes.setdefault(row[3], _Scene(row[3], [], {}, False))
                        covered.setdefault(path, row[3])
                    elif row[4] in ("unreadable", "unusable", "unrecognised"):
                        candidates.append((path, Problem(path, row[4], row[5] or "", new=False)))
                    continue
                if path in covered or (row and row[3]):
                    # part of a known scene (a changed companion, or a changed main file): re-read the scene
                    key = covered.setdefault(path, covered.get(path) or row[3])
                    scenes.setdefault(key, _Scene(key, [], {}, True)).changed = True
                    continue
                if progress:
                    progress(f"reading {p}")
                try:
                    spec = find_reader(p)
                except UnsupportedFormatError:
                    candidates.append((path, Problem(path, "unrecognised", "no reader recognises this file")))
                    continue
                try:
                    meta = dict(spec.metadata(Path(path)))
                    meta.setdefault("reader", spec.name)
                except Exception as exc:  # a broken file must not stop the others; the reason is listed
                    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
                    candidates.append((path, Problem(path, "unreadable", f"{spec.name} reader: {reason}")))
                    continue
                if meta.get("has_pixel_data") is False:
                    candidates.append((path, Problem(path, "unusable", "the file holds metadata only, no pixel data")))
                    continue
                key, files = _scene_key(meta, Path(path))
                scene = scenes.get(key)
                if scene is None or not scene.meta:
                    scene = scenes[key] = _Scene(key, files, meta, True)
                else:
                    scene.changed = True
                for f in files + [path]:
                    covered.setdefault(f, key)
                    if f not in scene.files:
                        scene.files.append(f)

        for key, scene in scenes.items():
            if not scene.changed:
                report.unchanged += 1
                continue
            try:
                outcome = _catalogue(index, scene, write_item, progress)
            except Exception as exc:  # a broken file must not stop the others; the reason is listed
                if not isinstance(exc, (RsmonError, OSError, ValueError, KeyError, RuntimeError)):
                    raise
                reason = " ".join((str(exc) if isinstance(exc, RsmonError) else f"{type(exc).__name__}: {exc}").split())
                known = index.item(key)
                index.forget([*(known.files if known else ()), *scene.files])
                for f in [key, *scene.files]:
                    covered.pop(f, None)
                candidates.append((key, Problem(key, "unreadable", reason)))
                continue
            if outcome is None:
                report.unchanged += 1
            else:
                (report.new if outcome[1] else report.updated).append(outcome[0])
            for f in (outcome[0].files if outcome else scene.files):
                covered[f] = key

        for path, problem in candidates:
            if path in covered:
                continue  # a companion file of a scene (03IMG geolocation, ENVI header)
            report.problems.append(problem)
            if problem.new and path in seen:
                index.store_problem(path, problem.kind, problem.reason, *seen[path])
        vanished = [f for root in roots for f in index.files_under(str(root.resolve())) if f not in seen]
        if vanished:
            index.forget(vanished)
            report.vanished = sorted(vanished)
    for p in report.problems:
        if p.new:
            log.log(logging.WARNING if p.kind == "unreadable" else logging.INFO, "ingest: %s %s: %s",
                    p.kind, p.path, p.reason)
    return report


def _catalogue(index: InputIndex, scene: _Scene, write_item, progress) -> tuple[InputItem, bool] | None:
    """Checksum a new or changed scene and write its Item; None when its content is unchanged."""
    from rsmon.io.registry import read_metadata_any

    meta = scene.meta or read_metadata_any(scene.key)
    known = index.item(scene.key)
    key, files = _scene_key(meta, Path(scene.key))
    files = list(dict.fromkeys([*files, *scene.files, *(known.files if known else ())]))
    files = [f for f in files if Path(f).is_file()]
    digests, sizes, stats = {}, {}, {}
    for f in files:
        st = os.stat(f)
        row = index.file_row(f)
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns and row[2]:
            digests[f] = row[2]
        else:
            if progress:
                progress(f"checksum {f}")
            digests[f] = sha256_file(f)
        sizes[f] = st.st_size
        stats[f] = (st.st_size, st.st_mtime_ns, digests[f])
    combined = _combined_sha(files, digests)
    if known is not None and known.sha256 == combined and known.item_file and Path(known.item_file).is_file():
        index.store(known, stats)  # same content, newer times
        return None
    start = _as_datetime(meta.get("start_datetime") or meta.get("time_coverage_start"), f"{key}: start time")
    end = _as_datetime(meta.get("end_datetime") or meta.get("time_coverage_end"), f"{key}: end time") or start
    if start is None:
        raise InputError(f"{key}: the reader gives no acquisition time")
    if not meta.get("bbox"):
        raise InputError(f"{key}: the reader gives no footprint")
    collection = collection_for(meta)
    item_id = known.item_id if known else _item_id(meta, key)
    owner = index.item_id_owner(collection, item_id)
    if owner is not None and owner != key:
        item_id = f"{item_id}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    main_first = [key] + [f for f in files if f != key] if key in files else files
    item = InputItem(collection=collection, item_id=item_id, path=key, files=tuple(main_first), sha256=combined,
                     size=sum(sizes.values()), start=start, end=max(end, start),
                     bbox=tuple(float(v) for v in meta["bbox"]), footprint=meta.get("footprint"),
                     platform=meta.get("platform"), instrument=meta.get("instrument"),
                     product=meta.get("product"), reader=meta.get("reader") or "")
    item_file = write_item(index.catalog, _item_json(item, meta, digests, sizes), _description(collection))
    item = InputItem(**{**item.__dict__, "item_file": str(item_file)})
    index.store(item, stats)
    return item, known is None
