"""Workflow files (``workflows/*.yaml``): schema, validation with line numbers, and the parsed form.

A workflow names a schedule, the folders to catalogue before each run, and jobs; each job runs one
product (:data:`rsmon.workflow.jobs.JOB_KINDS`) on inputs selected from the inputs catalog by
collection, bbox and a time window relative to the run's logical date, writes to an output path
template, and may validate its product and publish alerts::

    name: no2-daily
    schedule: {cron: "30 9 * * *", timezone: Asia/Shanghai, logical_date: -P1D, catchup: 7}
    sources: [/data/incoming/s5p]
    jobs:
      - id: no2
        product: no2-l3
        inputs:
          l2: {collection: s5p-l2-no2, bbox: [73, 18, 135, 54], window: {start: P0D, end: P1D}}
        parameters: {bbox: [73, 18, 135, 54], res: 0.05}
        output: "{product}/{version}/{period}"

The file is checked against a JSON schema built from the job kinds (unknown keys, wrong types,
unknown parameters are errors), then for meaning (cron expression, time zone, durations, template
variables, distinct output folders). Every error names the file and line: ``no2.yaml:12: jobs[0].
parameters: Additional properties are not allowed ('qa' was unexpected)``.

Durations are ISO 8601 (``P1D``, ``-P1M``, ``PT6H``, ``-P1Y2M``); a time window's offsets are taken
from 00:00 UTC of the logical date, so ``{start: P0D, end: P1D}`` is the logical UTC day.

Paths may use ``{home}`` (the run's home) and ``{workflow_dir}`` (the folder of the YAML file);
relative paths are relative to the YAML file's folder. Templates know ``{workflow}``, ``{job}``,
``{product}``, ``{version}``, ``{period}`` (``2019-06-12``, ``2019-06`` or ``2019`` by the job's
``period``), ``{date}``, ``{yyyymmdd}``, ``{year}``, ``{month}``, ``{day}``, ``{doy}``.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any

import yaml

from rsmon.errors import InputError

__all__ = ["Duration", "InputQuery", "Job", "Schedule", "SpecError", "Workflow", "load_workflow", "period_label",
           "schema", "template_context"]

_SAFE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_GLOBAL_VARS = {"home", "workflow_dir", "workflow", "version", "date", "yyyymmdd", "year", "month", "day", "doy"}
_JOB_VARS = _GLOBAL_VARS | {"job", "product", "period"}
_PERIOD_VARS = {"period", "date", "yyyymmdd", "doy"}


class SpecError(InputError):
    """A workflow file that does not follow the schema; ``errors`` lists ``(line, where, message)``."""

    def __init__(self, path: Path, errors: list[tuple[int, str, str]]):
        self.path = path
        self.errors = sorted(errors)
        lines = [f"{path}:{line}: {where + ': ' if where else ''}{msg}" for line, where, msg in self.errors]
        super().__init__(f"workflow {path}: {len(lines)} error(s): " + "; ".join(lines))


# --------------------------------------------------------------------------------------------------
# Durations and templates
# --------------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(?P<sign>[+-])?P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?"
                       r"(?:(?P<days>\d+)D)?"
                       r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$")


@dataclass(frozen=True)
class Duration:
    """A signed ISO 8601 duration (calendar months and years are calendar steps)."""

    text: str
    sign: int = 1
    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, text: str) -> "Duration":
        m = _DURATION.match(str(text).strip())
        if not m:
            raise ValueError(f"expected an ISO 8601 duration such as P1D, -P1M or PT6H, got {text!r}")
        parts = {k: int(v) for k, v in m.groupdict().items() if k != "sign" and v}
        return cls(text=str(text), sign=-1 if m.group("sign") == "-" else 1, **parts)

    def _delta(self):
        from dateutil.relativedelta import relativedelta

        s = self.sign
        return relativedelta(years=s * self.years, months=s * self.months, weeks=s * self.weeks, days=s * self.days,
                             hours=s * self.hours, minutes=s * self.minutes, seconds=s * self.seconds)

    def add_to(self, value):
        """``value`` (a date or datetime) shifted by this duration."""
        return value + self._delta()

    def total_seconds(self) -> float:
        """Length in seconds (months as 30 days, years as 365), for waits and leases."""
        days = self.years * 365 + self.months * 30 + self.weeks * 7 + self.days
        return self.sign * (days * 86400.0 + self.hours * 3600.0 + self.minutes * 60.0 + self.seconds)


def period_label(day: date, period: str) -> str:
    """``2019-06-12`` (day), ``2019-06`` (month) or ``2019`` (year)."""
    return {"day": day.isoformat(), "month": f"{day:%Y-%m}", "year": f"{day:%Y}"}[period]


def template_context(workflow: "Workflow", day: date, home: Path, job: "Job | None" = None) -> dict[str, str]:
    """The template variables of a run (and of a job when given)."""
    ctx = {"home": str(home), "workflow_dir": str(workflow.path.parent), "workflow": workflow.name,
           "version": workflow.version, "date": day.isoformat(), "yyyymmdd": f"{day:%Y%m%d}", "year": f"{day:%Y}",
           "month": f"{day:%m}", "day": f"{day:%d}", "doy": f"{day.timetuple().tm_yday:03d}"}
    if job is not None:
        ctx.update(job=job.id, product=job.product, period=period_label(day, job.period))
    return ctx


def _template_fields(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def render(text: str, ctx: dict[str, str]) -> str:
    """Fill ``{name}`` fields (validated when the workflow was loaded)."""
    return text.format_map(ctx)


# --------------------------------------------------------------------------------------------------
# The parsed workflow
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    cron: str
    timezone: str = "UTC"
    logical_date: Duration = field(default_factory=lambda: Duration.parse("-P1D"))
    catchup: int = 3
    start_date: date | None = None
    max_attempts: int = 3
    retry_after: Duration = field(default_factory=lambda: Duration.parse("PT1H"))

    def zone(self):
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    def logical_date_of(self, fire_time: datetime) -> date:
        """The logical date of a run the cron fires at ``fire_time``."""
        return self.logical_date.add_to(fire_time.astimezone(self.zone()).date())


@dataclass(frozen=True)
class InputQuery:
    """Inputs of one role: catalog items of ``collection`` meeting ``bbox`` within the time window."""

    role: str
    collection: str
    window_start: Duration
    window_end: Duration
    bbox: tuple[float, float, float, float] | None = None
    select: str = "all"  # all | latest | earliest
    group: str = "none"  # none | tile: select and max_count apply per tile (rsmon.workflow.redline_tiles.tile_key)
    min_count: int = 1
    max_count: int | None = None
    platform: str | None = None
    product: str | None = None

    def window(self, day: date) -> tuple[datetime, datetime]:
        anchor = datetime.combine(day, time(0), tzinfo=timezone.utc)
        return self.window_start.add_to(anchor), self.window_end.add_to(anchor)


@dataclass(frozen=True)
class Job:
    id: str
    product: str
    inputs: dict[str, InputQuery]
    parameters: dict[str, Any]
    output: str
    period: str
    validation: dict[str, Any] | None
    alerts: dict[str, Any] | None
    attempts: int
    backoff_s: float
    max_backoff_s: float
    line: int


@dataclass(frozen=True)
class Workflow:
    name: str
    path: Path
    sha256: str
    description: str
    version: str
    schedule: Schedule | None
    sources: tuple[str, ...]
    prepare: tuple[dict[str, Any], ...]
    on_bad_input: str
    jobs: tuple[Job, ...]

    def resolve_path(self, text: str, ctx: dict[str, str]) -> str:
        """A path template filled and made absolute (relative to the workflow file's folder)."""
        p = Path(os.path.expanduser(render(text, ctx)))
        return os.path.normpath(p if p.is_absolute() else (self.path.parent / p))


# --------------------------------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------------------------------

def _query_schema() -> dict:
    from rsmon.workflow.kinds import BBOX_SCHEMA

    return {"type": "object", "additionalProperties": False, "required": ["collection"], "properties": {
        "collection": {"type": "string", "pattern": _SAFE},
        "bbox": BBOX_SCHEMA,
        "window": {"type": "object", "additionalProperties": False, "required": ["start", "end"],
                   "properties": {"start": {"type": "string"}, "end": {"type": "string"}}},
        "select": {"enum": ["all", "latest", "earliest"]},
        "group": {"enum": ["none", "tile"],
                  "description": "tile: select and max_count apply to each tile's scenes (MGRS tile, WRS-2 path/row)"},
        "min_count": {"type": "integer", "minimum": 0},
        "max_count": {"type": "integer", "minimum": 1},
        "platform": {"type": "string"}, "product": {"type": "string"}}}


def schema() -> dict:
    """The JSON schema (draft 2020-12) of a workflow file."""
    from rsmon.workflow.kinds import JOB_KINDS, PREPARE_KINDS

    kinds = []
    for kind in JOB_KINDS.values():
        then = {
            "inputs": {"type": "object", "additionalProperties": False, "required": [r.name for r in kind.roles],
                       "properties": {r.name: _query_schema() for r in kind.roles}},
            "parameters": {"type": "object", "additionalProperties": False, "required": list(kind.required),
                           "properties": kind.parameters()},
            "validation": {"type": "object", "additionalProperties": False,
                           "required": list(kind.validation_required), "properties": kind.validation()},
        }
        kinds.append({"if": {"properties": {"product": {"const": kind.name}}, "required": ["product"]},
                      "then": {"properties": then}})
    prepares = [{"if": {"properties": {"simulate": {"const": name}}, "required": ["simulate"]},
                 "then": {"additionalProperties": False, "properties": {"simulate": {}, **props}}}
                for name, (props, _) in PREPARE_KINDS.items()]
    job = {
        "type": "object", "additionalProperties": False, "required": ["id", "product", "inputs"],
        "properties": {
            "id": {"type": "string", "pattern": _SAFE}, "description": {"type": "string"},
            "product": {"enum": sorted(JOB_KINDS)}, "inputs": {"type": "object"},
            "parameters": {"type": "object"}, "validation": {"type": "object"},
            "alerts": {"type": "object", "additionalProperties": False, "required": ["store"],
                       "properties": {"store": {"type": "string"}}},
            "output": {"type": "string"}, "period": {"enum": ["day", "month", "year"]},
            "retry": {"type": "object", "additionalProperties": False, "properties": {
                "attempts": {"type": "integer", "minimum": 1}, "backoff_s": {"type": "number", "minimum": 0},
                "max_backoff_s": {"type": "number", "minimum": 0}}},
        },
        "allOf": kinds,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "rsmon workflow",
        "type": "object", "additionalProperties": False, "required": ["name", "jobs"],
        "properties": {
            "name": {"type": "string", "pattern": _SAFE}, "description": {"type": "string"},
            "version": {"type": "string", "pattern": _SAFE},
            "schedule": {"type": "object", "additionalProperties": False, "required": ["cron"], "properties": {
                "cron": {"type": "string"}, "timezone": {"type": "string"}, "logical_date": {"type": "string"},
                "catchup": {"type": "integer", "minimum": 0, "maximum": 1000}, "start_date": {"type": "string"},
                "max_attempts": {"type": "integer", "minimum": 1}, "retry_after": {"type": "string"}}},
            "sources": {"type": "array", "items": {"type": "string"}},
            "prepare": {"type": "array", "items": {"type": "object", "required": ["simulate", "out"],
                                                   "properties": {"simulate": {"enum": sorted(PREPARE_KINDS)}},
                                                   "allOf": prepares}},
            "on_bad_input": {"enum": ["list", "move"]},
            "jobs": {"type": "array", "minItems": 1, "items": job},
        },
    }


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

class _Lines:
    """Line numbers of every value and key of a YAML document, by path."""

    def __init__(self, node: yaml.Node | None):
        self.values: dict[tuple, int] = {}
        self.keys: dict[tuple, int] = {}
        self.duplicates: list[tuple[int, tuple, str]] = []
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        self.values[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
                if name in seen:
                    self.duplicates.append((key.start_mark.line + 1, path, f"duplicate key {name!r}"))
                seen.add(name)
                self.keys[path + (name,)] = key.start_mark.line + 1
                self._walk(value, path + (name,))
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                self._walk(value, path + (i,))

    def line(self, path: tuple, key: bool = False) -> int:
        path = tuple(p if isinstance(p, int) else str(p) for p in path)
        while path:
            found = (self.keys if key else self.values).get(path) or self.values.get(path)
            if found:
                return found
            path = path[:-1]
        return self.values.get((), 1)


def _where(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _plain(value):
    """YAML dates and times as ISO text (the schema speaks JSON)."""
    if isinstance(value, dict):
        return {str(k) if isinstance(k, (date, datetime)) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def load_workflow(path: str | os.PathLike) -> Workflow:
    """Read and check a workflow file.

    Raises
    ------
    SpecError
        The file breaks the schema or the rules; the message lists every error with its line.
    InputError
        The file cannot be read.
    """
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"workflow {path}: cannot read ({exc.strerror or exc})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = _plain(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        raise SpecError(path, [(line, "", f"not valid YAML ({getattr(exc, 'problem', None) or exc})")]) from None
    lines = _Lines(node)
    errors = [(ln, _where(p), msg) for ln, p, msg in lines.duplicates]
    if not isinstance(data, dict):
        raise SpecError(path, errors + [(1, "", "expected a mapping with name and jobs")])
    errors += _schema_errors(data, lines)
    if errors:
        try:  # the meaning checks need a schema-valid file; still report the schedule's mistakes
            errors += [e for e in _build(path, text, {"name": "x", "jobs": [], "schedule": data["schedule"]},
                                         lines)[1] if e[1].startswith("schedule")]
        except Exception:  # a schedule block too broken for that is already reported by the schema
            pass
        raise SpecError(path, sorted(set(errors)))
    workflow, errors = _build(path, text, data, lines)
    if errors:
        raise SpecError(path, errors)
    return workflow


def _schema_errors(data: dict, lines: _Lines) -> list[tuple[int, str, str]]:
    from jsonschema import Draft202012Validator

    out = []
    for err in Draft202012Validator(schema()).iter_errors(data):
        path = tuple(err.absolute_path)
        if err.validator == "if":
            continue
        line = lines.line(path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set(err.schema.get("properties", {}))
            extra = [k for k in err.instance if k not in allowed]
            if extra:
                line = lines.line(path + (extra[0],), key=True)
                out.append((line, _where(path), f"unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})"))
                continue
        out.append((line, _where(path), err.message))
    # the same fault seen by several sub-schemas is reported once
    return sorted(set(out))


def _build(path: Path, text: str, data: dict, lines: _Lines) -> tuple[Workflow, list[tuple[int, str, str]]]:
    from croniter import croniter

    from rsmon.workflow.kinds import JOB_KINDS

    errors: list[tuple[int, str, str]] = []

    def fail(p: tuple, msg: str) -> None:
        errors.append((lines.line(p), _where(p), msg))

    def duration(p: tuple, value: str) -> Duration:
        try:
            return Duration.parse(value)
        except ValueError as exc:
            fail(p, str(exc))
            return Duration.parse("P0D")

    def templates(p: tuple, value: str, allowed: set[str]) -> None:
        try:
            names = _template_fields(value)
        except ValueError as exc:
            fail(p, f"bad template {value!r} ({exc})")
            return
        unknown = [n for n in names if n not in allowed]
        if unknown:
            fail(p, f"unknown template variable {{{unknown[0]}}} (known: {', '.join(sorted(allowed))})")

    schedule = None
    if "schedule" in data:
        s = data["schedule"]
        if not croniter.is_valid(s["cron"]):
            fail(("schedule", "cron"), f"not a valid cron expression: {s['cron']!r} (minute hour day month weekday)")
        tz = s.get("timezone", "UTC")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(tz)
        except (KeyError, ValueError):
            fail(("schedule", "timezone"), f"unknown time zone {tz!r} (an IANA name such as Asia/Shanghai)")
        start_date = None
        if s.get("start_date"):
            try:
                start_date = date.fromisoformat(s["start_date"])
            except ValueError:
                fail(("schedule", "start_date"), f"expected YYYY-MM-DD, got {s['start_date']!r}")
        schedule = Schedule(cron=s["cron"], timezone=tz,
                            logical_date=duration(("schedule", "logical_date"), s.get("logical_date", "-P1D")),
                            catchup=s.get("catchup", 3), start_date=start_date, max_attempts=s.get("max_attempts", 3),
                            retry_after=duration(("schedule", "retry_after"), s.get("retry_after", "PT1H")))

    for i, src in enumerate(data.get("sources", [])):
        templates(("sources", i), src, _GLOBAL_VARS)
    for i, step in enumerate(data.get("prepare", [])):
        for key in ("out", "start"):
            if isinstance(step.get(key), str):
                templates(("prepare", i, key), step[key], _GLOBAL_VARS)

    jobs = []
    seen_ids: dict[str, int] = {}
    seen_outputs: dict[str, str] = {}
    for j, spec in enumerate(data["jobs"]):
        base = ("jobs", j)
        kind = JOB_KINDS[spec["product"]]
        if spec["id"] in seen_ids:
            fail(base + ("id",), f"job id {spec['id']!r} is used twice (also jobs[{seen_ids[spec['id']]}])")
        seen_ids[spec["id"]] = j
        output = spec.get("output", "{product}/{version}/{period}")
        templates(base + ("output",), output, _JOB_VARS)
        if not set(_safe_fields(output)) & _PERIOD_VARS:
            fail(base + ("output",), "the output path must contain {period} or {date} (or {yyyymmdd}, {doy}) "
                                     "so that each run writes its own folder")
        sample = {name: name for name in _JOB_VARS} | {"job": spec["id"], "product": spec["product"]}
        try:
            rendered = output.format_map(sample)
        except (KeyError, ValueError, IndexError):
            rendered = output
        if rendered in seen_outputs:
            fail(base + ("output",), f"jobs {seen_outputs[rendered]!r} and {spec['id']!r} would write to the same "
                                     "folder; add {job} to the template")
        seen_outputs.setdefault(rendered, spec["id"])
        params = spec.get("parameters", {})
        for name in kind.paths:
            for k, value in _strings(params.get(name)):
                templates(base + ("parameters", name) + k, value, _JOB_VARS)
        validation = spec.get("validation")
        for name in kind.validation_paths if validation else ():
            for k, value in _strings(validation.get(name)):
                templates(base + ("validation", name) + k, value, _JOB_VARS)
        alerts = spec.get("alerts")
        if alerts is not None:
            if not kind.alerts:
                fail(base + ("alerts",), f"product {kind.name!r} makes no alerts (only: "
                                         f"{', '.join(k for k, v in JOB_KINDS.items() if v.alerts)})")
            templates(base + ("alerts", "store"), alerts["store"], _JOB_VARS)
        queries = {}
        for role, q in spec["inputs"].items():
            qp = base + ("inputs", role)
            window = q.get("window", {"start": "P0D", "end": "P1D"})
            bbox = q.get("bbox")
            if bbox is not None and not (-90 <= bbox[1] < bbox[3] <= 90 and -180 <= bbox[0] <= 360
                                         and -180 <= bbox[2] <= 360):
                fail(qp + ("bbox",), f"expected west, south, east, north with south < north, got {bbox}")
            queries[role] = InputQuery(
                role=role, collection=q["collection"], window_start=duration(qp + ("window", "start"), window["start"]),
                window_end=duration(qp + ("window", "end"), window["end"]),
                bbox=tuple(float(v) for v in bbox) if bbox else None, select=q.get("select", "all"),
                group=q.get("group", "none"), min_count=q.get("min_count", 1), max_count=q.get("max_count"),
                platform=q.get("platform"), product=q.get("product"))
            for key in ("platform", "product"):
                if q.get(key):
                    try:
                        re.compile(q[key])
                    except re.error as exc:
                        fail(qp + (key,), f"not a regular expression ({exc})")
        if "bbox" in params and not (params["bbox"][0] < params["bbox"][2] and params["bbox"][1] < params["bbox"][3]):
            fail(base + ("parameters", "bbox"), f"expected west < east and south < north, got {params['bbox']}")
        retry = spec.get("retry", {})
        jobs.append(Job(id=spec["id"], product=spec["product"], inputs=queries, parameters=params, output=output,
                        period=spec.get("period", "day"), validation=validation, alerts=alerts,
                        attempts=retry.get("attempts", 3), backoff_s=float(retry.get("backoff_s", 5.0)),
                        max_backoff_s=float(retry.get("max_backoff_s", 300.0)), line=lines.line(base)))
    workflow = Workflow(
        name=data["name"], path=path, sha256=hashlib.sha256(text.encode()).hexdigest(),
        description=data.get("description", ""), version=data.get("version", "v1"), schedule=schedule,
        sources=tuple(data.get("sources", [])), prepare=tuple(data.get("prepare", [])),
        on_bad_input=data.get("on_bad_input", "list"), jobs=tuple(jobs))
    return workflow, errors


def _safe_fields(text: str) -> list[str]:
    try:
        return _template_fields(text)
    except ValueError:
        return []


def _strings(value) -> list[tuple[tuple, str]]:
    """(sub-path, text) of a string or a list of strings."""
    if isinstance(value, str):
        return [((), value)]
    if isinstance(value, list):
        return [((i,), v) for i, v in enumerate(value) if isinstance(v, str)]
    return []
