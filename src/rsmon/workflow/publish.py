"""Publishing a finished job: its staging folder becomes the output folder, its STAC items go to the
products catalog, and its files are listed with checksums for the ledger.

A job writes into a hidden staging folder beside its output folder (same file system), named
``.<name>.rsmon-<run_id>.partial``. :func:`replace_folder` puts it in place with two renames (the old
folder is moved aside first and deleted after), so readers see the old products or the new ones,
never a mix. A run killed in between leaves only hidden ``.<name>.rsmon-*`` folders, which the next
run of the same logical date removes (:func:`sweep`) while it holds that date's lock.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any, Sequence

import rsmon
from rsmon.provenance import format_datetime, sha256_file
from rsmon.workflow.input_index import InputItem

log = logging.getLogger(__name__)

__all__ = ["TEMP_MARK", "file_record", "job_item", "outputs_intact", "rehome_items", "replace_folder", "staging_dir",
           "sweep"]

TEMP_MARK = ".rsmon-"


def staging_dir(final_dir: Path, run_id: str) -> Path:
    """Where a run writes a job's outputs before publishing them into ``final_dir``."""
    return final_dir.parent / f".{final_dir.name}{TEMP_MARK}{run_id}.partial"


def sweep(final_dir: Path) -> None:
    """Remove staging and set-aside folders that a dead run left beside ``final_dir``.

    Call it holding the lock of the logical run that owns ``final_dir``.
    """
    parent = final_dir.parent
    if not parent.is_dir():
        return
    for stale in parent.glob(f".{final_dir.name}{TEMP_MARK}*"):
        log.warning("removing %s left by an interrupted run", stale)
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def replace_folder(stage: Path, final: Path, run_id: str) -> None:
    """Put ``stage`` in place of ``final`` (two renames; the old folder is deleted afterwards)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    aside = None
    if final.exists():
        aside = final.parent / f".{final.name}{TEMP_MARK}old-{run_id}"
        os.replace(final, aside)
    os.replace(stage, final)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def file_record(path: Path) -> dict[str, Any]:
    """Path, size, modification time and SHA-256 of a file (a ledger input or output row)."""
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}


def outputs_intact(outputs: list[dict[str, Any]]) -> bool:
    """Whether every recorded output is still there, unchanged (size and time, else checksum)."""
    if not outputs:
        return False
    for o in outputs:
        p = Path(o["path"])
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_size != o["size"]:
            return False
        if st.st_mtime_ns != o["mtime_ns"] and sha256_file(p) != o["sha256"]:
            return False
    return True


def rehome_items(staged_catalog: Path, stage: Path, final: Path, catalog: Path) -> int:
    """Move the STAC items a product wrote into a staging catalog to ``catalog``.

    Asset hrefs pointing into ``stage`` are pointed at the same files under ``final``.
    Returns the number of items.
    """
    from rsmon.catalog import write_item

    n = 0
    for item_file in sorted(staged_catalog.glob("*/*/*.json")):
        data = json.loads(item_file.read_text(encoding="utf-8"))
        target = catalog / data["collection"] / data["id"]
        for asset in data.get("assets", {}).values():
            href = (item_file.parent / asset["href"]).resolve()
            if href.is_relative_to(stage.resolve()):
                href = final / href.relative_to(stage.resolve())
            asset["href"] = Path(os.path.relpath(href, target)).as_posix()
        write_item(catalog, data)
        n += 1
    return n


def job_item(*, item_id: str, collection: str, folder: Path, catalog: Path, inputs: Sequence[InputItem], day: date,
             properties: dict[str, Any], exclude: str | None = None) -> dict[str, Any]:
    """A STAC Item for a job's output folder (fire points, change patches, validation reports).

    Geometry: the union of the input bboxes; time: the inputs' time range; assets: the files of
    ``folder`` (not sub-folders) with size and checksum; one ``derived_from`` link per input.
    """
    from rsmon.catalog import MEDIA_TYPES

    boxes = [i.bbox for i in inputs if i.bbox and i.bbox[0] <= i.bbox[2]]
    bbox = ([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
            if boxes else [-180.0, -90.0, 180.0, 90.0])
    start = min(i.start for i in inputs) if inputs else datetime.combine(day, time(0), timezone.utc)
    end = max(i.end for i in inputs) if inputs else start
    target = catalog / collection / item_id
    assets = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name != exclude:
            rec = file_record(p)
            asset = {"href": Path(os.path.relpath(p, target)).as_posix(), "roles": ["data"],
                     "file:size": rec["size"], "file:checksum": "1220" + rec["sha256"]}
            if MEDIA_TYPES.get(p.suffix.lower()):
                asset["type"] = MEDIA_TYPES[p.suffix.lower()]
            assets[p.name] = asset
    w, s, e, n = bbox
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}, "bbox": bbox,
        "properties": {"datetime": None, "start_datetime": format_datetime(start), "end_datetime": format_datetime(end),
                       "created": format_datetime(datetime.now(timezone.utc)),
                       "processing:software": {"rsmon": rsmon.__version__}, **properties},
        "assets": assets,
        "links": [{"rel": "derived_from", "href": i.path, "title": i.item_id, "rsmon:sha256": i.sha256}
                  for i in inputs],
    }
