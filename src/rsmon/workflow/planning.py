"""Planning a job of a run: its inputs from the catalog, its paths, its key and its task.

The job key is the SHA-256 of what makes the job's result: product, parameters, validation and
alert settings, output folder, period, and the checksums of every input and auxiliary file (admin
polygons, station files, references, the previous patches). A job with the key of an earlier
successful job whose outputs are intact is skipped.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Sequence

from rsmon.errors import InputError
from rsmon.provenance import format_datetime
from rsmon.workflow.input_index import InputIndex, InputItem
from rsmon.workflow.jobs import JobTask
from rsmon.workflow.kinds import JOB_KINDS
from rsmon.workflow.ledger import Ledger
from rsmon.workflow.publish import file_record, staging_dir
from rsmon.workflow.redline_tiles import group_by_tile
from rsmon.workflow.repeats import drop_repeated_scenes
from rsmon.workflow.spec import Job, Workflow, period_label, render, template_context

log = logging.getLogger(__name__)

__all__ = ["Planned", "plan_job"]


@dataclass
class Planned:
    """A job ready to execute: its task, key, output folder, input records and input items."""

    job: Job
    task: JobTask
    key: str
    final_dir: Path
    inputs: list[dict[str, Any]]
    used: dict[str, list[InputItem]]


def plan_job(home: Path, ledger: Ledger, workflow: Workflow, job: Job, day: date, run_id: str, index: InputIndex,
             quarantined: dict[tuple[str, str], str]) -> Planned:
    """Resolve one job of a run: inputs, paths, the job key and its task (nothing is written).

    Parameters
    ----------
    home : path
        The run's home (outputs go to ``home/products`` unless the template is absolute).
    ledger : Ledger
        Asked for the job's latest earlier outputs (redline patch ids).
    index : InputIndex
        The inputs catalog's index.
    quarantined : dict
        ``(path, checksum) -> reason`` of inputs to leave out.

    Raises
    ------
    InputError
        Too few inputs for a role (the message gives the query), or a job kind problem.
    """
    kind = JOB_KINDS[job.product]
    ctx = template_context(workflow, day, home, job)
    final_dir = Path(render(job.output, ctx))
    final_dir = final_dir if final_dir.is_absolute() else home / "products" / final_dir
    used: dict[str, list[InputItem]] = {}
    records: list[dict[str, Any]] = []
    for role, q in job.inputs.items():
        start, end = q.window(day)
        found = index.query(q.collection, bbox=q.bbox, start=start, end=end, platform=q.platform, product=q.product)
        items = []
        for item in found:
            reason = quarantined.get((item.path, item.sha256))
            if reason:
                log.info("%s: %s %s left out: quarantined earlier (%s)", job.id, role, item.path, reason)
            else:
                items.append(item)
        items = drop_repeated_scenes(items, f"{job.id}: {role}")  # a zip and its folder, NRTI under OFFL
        if q.group == "tile":  # select and max_count per tile, in the catalog's order
            chosen = {id(i) for group in group_by_tile(items).values() for i in _select(group, q)}
            items = [i for i in items if id(i) in chosen]
        else:
            items = _select(items, q)
        if len(items) < max(q.min_count, kind.role(role).min):
            where = f" in bbox {list(q.bbox)}" if q.bbox else ""
            raise InputError(f"inputs.{role}: {len(items)} item(s) of collection {q.collection!r}{where} between "
                             f"{format_datetime(start)} and {format_datetime(end)}, need "
                             f"{max(q.min_count, kind.role(role).min)} (not arrived yet, or not ingested?)")
        used[role] = items
        records += [{"role": role if f == i.path else f"{role}:companion", "path": f, "sha256": sha, "size": size}
                    for i in items for f, sha, size in index.file_digests(i)]
    params = _resolve_paths(workflow, job.parameters, kind.paths, ctx)
    validation = (_resolve_paths(workflow, job.validation, kind.validation_paths, ctx)
                  if job.validation is not None else None)
    alerts = {"store": render(job.alerts["store"], ctx)} if job.alerts else None
    aux = _aux_records(params, kind.paths, "aux") + (
        _aux_records(validation, kind.validation_paths, "validation") if validation else [])
    previous = None
    if job.product == "redline" and params.get("previous", "auto") == "auto":
        earlier = ledger.last_job(workflow.name, job.id, before_date=day.isoformat())
        if earlier is not None:
            # the job's own patches.gpkg, not a tile's (a multi-tile job has tiles/<tile>/patches.gpkg too)
            found = sorted((o["path"] for o in earlier.outputs if Path(o["path"]).name == "patches.gpkg"),
                           key=lambda path: len(Path(path).parts))
            previous = found[0] if found and Path(found[0]).is_file() else None
        if previous:
            aux.append({"role": "previous", **file_record(Path(previous))})
    records += [{k: a[k] for k in ("role", "path", "sha256", "size")} for a in aux]
    key_body = {"product": job.product, "parameters": params, "validation": validation, "alerts": alerts,
                "output": str(final_dir), "period": period_label(day, job.period),
                "inputs": [(r["role"], r["path"], r["sha256"]) for r in records]}
    key = hashlib.sha256(json.dumps(key_body, sort_keys=True, default=str).encode()).hexdigest()
    stage = staging_dir(final_dir, run_id)
    task = JobTask(workflow=workflow.name, job_id=job.id, kind=job.product, logical_date=day.isoformat(),
                   parameters=params, inputs=used, stage_dir=str(stage),
                   catalog_dir=str(home / "work" / run_id / job.id / "catalog"), validation=validation,
                   alerts=alerts, previous_patches=previous, attempts=job.attempts, backoff_s=job.backoff_s,
                   max_backoff_s=job.max_backoff_s)
    return Planned(job=job, task=task, key=key, final_dir=final_dir, inputs=records, used=used)

def _select(items: list[InputItem], q) -> list[InputItem]:
    """``select`` and ``max_count`` of a query applied to catalog items (in time order): the latest
    or earliest ``max_count`` items (default 1), or all of them up to ``max_count`` (the earliest)."""
    if q.select == "latest":
        return items[-(q.max_count or 1):]
    if q.select == "earliest":
        return items[: q.max_count or 1]
    return items if q.max_count is None else items[: q.max_count]


def _resolve_paths(workflow: Workflow, block: dict[str, Any], names: Sequence[str], ctx: dict) -> dict[str, Any]:
    out = dict(block)
    for name in names:
        value = out.get(name)
        if isinstance(value, str):
            out[name] = workflow.resolve_path(value, ctx)
        elif isinstance(value, list):
            out[name] = [workflow.resolve_path(v, ctx) for v in value]
    return out

def _aux_records(block: dict[str, Any], names: Sequence[str], prefix: str) -> list[dict[str, Any]]:
    """Checksums of the auxiliary files a job reads (admin polygons, stations, references)."""
    records = []
    for name in names:
        value = block.get(name)
        for pattern in [value] if isinstance(value, str) else (value or []):
            for p in sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]:
                if Path(p).is_file():
                    records.append({"role": f"{prefix}:{name}", **file_record(Path(p))})
    return records
