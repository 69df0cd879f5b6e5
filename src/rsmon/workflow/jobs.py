"""Executing one workflow job: :func:`execute` on this process or a dask worker, then
:func:`check_published` once the runner has published the job's folder.

A :class:`JobTask` holds paths and plain values, never open files, so it travels to dask workers.
:func:`execute` runs the job's kind (:data:`rsmon.workflow.kinds.JOB_KINDS`) into the task's
staging folder and never writes outside it:

1. the product function;
2. a transient error (time-out, connection, stale NFS handle, busy database) is retried with
   exponential backoff; an error that names one of the inputs (the product functions name the file
   at fault) quarantines that input and the job runs again without it, so the rest completes
   (status ``partial``).

The runner then publishes the staging folder and calls :func:`check_published`: the optional
validation (``validation/`` inside the output, naming the published files) and alert publishing;
a failure there leaves the product and makes the job ``partial``.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from rsmon.errors import InputError, NoDataError, RsmonError
from rsmon.workflow.input_index import InputItem
from rsmon.workflow.kinds import JOB_KINDS

log = logging.getLogger(__name__)

__all__ = ["JobOutcome", "JobTask", "TransientError", "check_published", "execute", "is_transient", "log_entry"]


@dataclass
class JobTask:
    """Everything one job needs, as plain values (it travels to dask workers)."""

    workflow: str
    job_id: str
    kind: str
    logical_date: str
    parameters: dict[str, Any]
    inputs: dict[str, list[InputItem]]
    stage_dir: str
    catalog_dir: str
    validation: dict[str, Any] | None = None
    alerts: dict[str, Any] | None = None
    previous_patches: str | None = None
    attempts: int = 3
    backoff_s: float = 5.0
    max_backoff_s: float = 300.0


@dataclass
class JobOutcome:
    """What a job task did (returned to the runner, which publishes and records it)."""

    status: str  # success | partial | failed
    message: str = ""
    quarantined: list[tuple[str, str, str]] = field(default_factory=list)  # (path, sha256, reason)
    used: dict[str, list[str]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    seconds: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)


class TransientError(RsmonError, OSError):
    """An error worth retrying (the resource may be back shortly)."""


_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ESTALE, errno.ECONNRESET,
                     errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EINTR}


def is_transient(exc: BaseException) -> bool:
    """Whether an error may go away by waiting: time-outs, connections, busy or stale resources."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, RsmonError):
        return False  # ours name a bad file or parameter: waiting does not help
    if isinstance(exc, (TimeoutError, ConnectionError, BlockingIOError, InterruptedError)):
        return True
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    return type(exc).__name__ in ("KilledWorker", "CommClosedError")


# --------------------------------------------------------------------------------------------------
# Executing one job
# --------------------------------------------------------------------------------------------------

class _Capture(logging.Handler):
    """Collect the records of one job (the runner adds them to the run's log)."""

    def __init__(self, job: str):
        super().__init__(logging.INFO)
        self.job = job
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(log_entry(record, job=self.job))


def log_entry(record: logging.LogRecord, **extra: Any) -> dict[str, Any]:
    """A log record as a JSON-able dict (time, level, logger, message, traceback of errors)."""
    entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
             "level": record.levelname, "logger": record.name, **extra, "message": record.getMessage()}
    if record.exc_info and record.levelno >= logging.ERROR:
        entry["traceback"] = logging.Formatter().formatException(record.exc_info)
    return entry


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def wrapped_interrupt(exc: BaseException) -> BaseException | None:
    """An interrupt (a BaseException that is no Exception: SIGTERM's ``Interrupted``, Ctrl-C) in the
    chain of ``exc``, or None. Python wraps one raised inside some hooks in a RuntimeError (e.g. in a
    dataclass field's ``__set_name__`` while a job's module is first imported), which a job's
    ``except Exception`` would otherwise record as a job failure instead of stopping the run."""
    seen: set[int] = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        if not isinstance(cause, Exception):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, RsmonError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _culprit(exc: BaseException, inputs: dict[str, list[InputItem]]) -> tuple[str, InputItem] | None:
    """The input an error names (by path or file name), if exactly one does."""
    text = str(exc)
    named = [(role, item) for role, items in inputs.items() for item in items
             if any(f in text or Path(f).name in text for f in item.files)]
    return named[0] if len(named) == 1 else None


def _probe(inputs: dict[str, list[InputItem]]) -> tuple[str, InputItem, str] | None:
    """Open every input with its reader; the first that fails (an error that named no file)."""
    from rsmon.io.registry import open_any

    for role, items in inputs.items():
        for item in items:
            try:
                open_any(item.path).close()
            except Exception as exc:  # the probe looks for the file that fails, whatever the class
                return role, item, _one_line(exc)
    return None


def _with_retries(what: str, fn: Callable[[], Any], task: JobTask, counter: list[int]) -> Any:
    """``fn()``, retried with exponential backoff on transient errors (``counter[0]`` counts attempts)."""
    tries = 0
    while True:
        tries += 1
        counter[0] += 1
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or tries >= task.attempts:
                raise
            delay = min(task.max_backoff_s, task.backoff_s * 2 ** (tries - 1))
            log.warning("%s: transient error (attempt %d of %d), retrying in %.1f s: %s", what, tries,
                        task.attempts, delay, _one_line(exc))
            time.sleep(delay)


def execute(task: JobTask) -> JobOutcome:
    """Run one job into ``task.stage_dir`` (see the module docstring); never raises for job errors."""
    import dask

    kind = JOB_KINDS[task.kind]
    t0 = time.perf_counter()
    capture = _Capture(task.job_id)
    root = logging.getLogger("rsmon")
    root.addHandler(capture)
    level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    inputs = {role: list(items) for role, items in task.inputs.items()}
    outcome = JobOutcome(status="success")
    counter = [0]
    out, catalog = Path(task.stage_dir), Path(task.catalog_dir)
    problems: list[str] = []
    try:
        # inside a task, dask collections compute with local threads, never back through a cluster client
        with dask.config.set(scheduler="threads"):
            while True:
                try:
                    outcome.summary = _with_retries(
                        task.job_id, lambda: kind.run(task, inputs, _fresh(out), _fresh(catalog)), task, counter)
                    break
                except Exception as exc:
                    # a file without usable data (NoDataError) is not a bad file: the job fails, nothing is quarantined
                    found = None if isinstance(exc, NoDataError) else _culprit(exc, inputs)
                    if found is not None:
                        bad = (*found, _one_line(exc))
                    elif not isinstance(exc, (RsmonError, MemoryError)) and not is_transient(exc):
                        bad = _probe(inputs)
                    else:
                        bad = None
                    if bad is None:
                        raise
                    role, item, reason = bad
                    inputs[role].remove(item)
                    outcome.quarantined.append((item.path, item.sha256, reason))
                    log.warning("%s: input %s quarantined: %s", task.job_id, item.path, reason)
                    if len(inputs[role]) < kind.role(role).min:
                        raise InputError(f"input {role}: {Path(item.path).name} is bad ({reason}) and no other "
                                         f"{role} input remains") from None
                    log.info("%s: running again without %s", task.job_id, Path(item.path).name)
            if outcome.quarantined:
                problems.append(f"{len(outcome.quarantined)} input(s) quarantined: "
                                + "; ".join(f"{Path(p).name}: {r}" for p, _, r in outcome.quarantined))
        if problems:
            outcome.status, outcome.message = "partial", "; ".join(problems)
            log.warning("%s: partial: %s", task.job_id, outcome.message)
    except Exception as exc:
        interrupt = wrapped_interrupt(exc)
        if interrupt is not None:  # a signal, not a job error: the runner records the run as interrupted
            shutil.rmtree(out, ignore_errors=True)
            raise interrupt from None
        if not isinstance(exc, RsmonError):
            log.error("%s: failed with an unexpected error", task.job_id, exc_info=True)
        outcome.status, outcome.message = "failed", _one_line(exc)
        log.error("%s: failed: %s", task.job_id, outcome.message)
        shutil.rmtree(out, ignore_errors=True)
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
    outcome.summary["executed_on"] = f"{socket.gethostname()}:{os.getpid()}"
    outcome.used = {role: [i.path for i in items] for role, items in inputs.items()}
    outcome.attempts = counter[0]
    outcome.seconds = time.perf_counter() - t0
    outcome.log = capture.records
    return outcome


def check_published(task: JobTask, final_dir: str | Path) -> tuple[list[str], dict[str, Any], list[dict], int]:
    """Validation and alert publishing of a published job (so reports name the final product paths).

    The validation report goes to a staging folder and replaces ``final_dir/validation`` at the end.
    Returns (problems, summary, log records, attempts); a failure is a problem, never an exception.
    """
    kind = JOB_KINDS[task.kind]
    final = Path(final_dir)
    capture = _Capture(task.job_id)
    root = logging.getLogger("rsmon")
    root.addHandler(capture)
    problems: list[str] = []
    summary: dict[str, Any] = {}
    counter = [0]
    try:
        if task.validation is not None:
            stage = final / f".validation.rsmon-{uuid.uuid4().hex[:8]}.partial"
            try:
                summary["validation"] = _with_retries(
                    f"{task.job_id} validation", lambda: kind.validate(task, final, _fresh(stage)), task, counter)
                if (final / "validation").exists():
                    shutil.rmtree(final / "validation")
                os.replace(stage, final / "validation")
            except Exception as exc:
                if not isinstance(exc, RsmonError):
                    log.error("%s: validation failed", task.job_id, exc_info=True)
                problems.append(f"validation failed: {_one_line(exc)}")
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        if task.alerts:
            try:
                _with_retries(f"{task.job_id} alerts", lambda: _publish_alerts(task, final), task, counter)
                summary["alerts"] = "published"
            except Exception as exc:
                problems.append(f"alert publishing failed: {_one_line(exc)}")
        for problem in problems:
            log.warning("%s: %s", task.job_id, problem)
    finally:
        root.removeHandler(capture)
    return problems, summary, capture.records, counter[0]


def _publish_alerts(task: JobTask, out: Path) -> None:
    """Send the change patches to the alert store with ``rsmon alerts import`` (issue 6's contract)."""
    patches = out / "patches.gpkg"
    if not patches.is_file():
        raise InputError("alerts: the job wrote no patches.gpkg")
    import pyogrio

    if pyogrio.read_info(patches)["features"] == 0:  # a month without change is no failure
        log.info("%s: no change patch this period; nothing to publish", task.job_id)
        return
    cmd = [sys.executable, "-m", "rsmon.cli", "alerts", "import", "--store", str(task.alerts["store"]), str(patches)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise InputError(f"alerts: 'rsmon alerts import' exited {proc.returncode}: "
                         f"{(proc.stderr or proc.stdout).strip()[-300:]}")
