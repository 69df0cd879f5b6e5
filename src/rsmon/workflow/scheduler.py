"""``rsmon schedule workflows/``: run due workflows from their cron expressions, unattended.

Every ``poll`` seconds (and at each cron fire time) the scheduler re-reads the workflow files (an
edited or added file is picked up; an invalid one is reported with its line numbers and left out)
and, for each workflow with a ``schedule``, works out the logical dates that are due:

* the latest cron fire time at or before now (in the schedule's time zone) and up to ``catchup``
  earlier ones, so runs missed during downtime are caught up, oldest first, but never more than
  that bound (older gaps are reported: backfill them with ``rsmon run --from/--to``);
* a logical date is ``fire time's local date + logical_date`` (default ``-P1D``: the day before);
* dates before ``start_date``, dates with a finished run (success, partial or skipped) and dates
  that failed ``max_attempts`` times are not run; a failed date is tried again once
  ``retry_after`` has passed (data often arrive late).

Two schedulers (or a scheduler and a manual ``rsmon run``) never run the same logical run twice:
each run takes the lock of (workflow, date) in the ledger and checks again, holding it, that the
date is still not done (:meth:`rsmon.workflow.runner.Runner.run` with ``only_if_due``).

SIGTERM or SIGINT stops the scheduler cleanly: while idle it exits at once; during a run the run
is interrupted, its unfinished jobs are recorded as failed ("interrupted"), nothing half-written
is published, the lock is released, and the next start catches the date up.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Sequence

from rsmon.errors import InputError
from rsmon.workflow.ledger import Ledger
from rsmon.workflow.runner import Interrupted, RunReport, Runner
from rsmon.workflow.spec import SpecError, Workflow, load_workflow

log = logging.getLogger(__name__)

__all__ = ["Scheduler", "due_dates", "workflow_files"]


def workflow_files(paths: Sequence[str | Path]) -> list[Path]:
    """``*.yaml``/``*.yml`` files of folders (not recursive) and files given directly.

    Raises
    ------
    InputError
        A path does not exist.
    """
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"schedule {p}: no such file or folder")
    return files


def _fire_times(workflow: Workflow, now: datetime, n: int) -> list[datetime]:
    """The ``n`` latest cron fire times at or before ``now``, newest first (aware, schedule time zone)."""
    from croniter import croniter

    s = workflow.schedule
    assert s is not None
    # croniter's get_prev is strictly before its start: start a second later to include "now"
    it = croniter(s.cron, (now + timedelta(seconds=1)).astimezone(s.zone()))
    return [it.get_prev(datetime) for _ in range(n)]


def due_dates(workflow: Workflow, now: datetime, ledger: Ledger) -> tuple[list[date], list[date]]:
    """Logical dates of ``workflow`` to run now (oldest first), and missed ones beyond the catch-up bound."""
    s = workflow.schedule
    if s is None:
        return [], []
    fires = _fire_times(workflow, now, s.catchup + 2)
    due: list[date] = []
    for fire in reversed(fires[: s.catchup + 1]):
        day = s.logical_date_of(fire)
        if day in due or (s.start_date and day < s.start_date):
            continue
        if ledger.is_done(workflow.name, day.isoformat()):
            continue
        failures, last = ledger.failures(workflow.name, day.isoformat())
        if failures >= s.max_attempts:
            log.debug("%s %s: failed %d times, not retried (max_attempts)", workflow.name, day, failures)
            continue
        if failures and last and time.time() - last < s.retry_after.total_seconds():
            continue
        due.append(day)
    beyond = []
    older = s.logical_date_of(fires[-1])
    if not (s.start_date and older < s.start_date) and not ledger.is_done(workflow.name, older.isoformat()) \
            and ledger.failures(workflow.name, older.isoformat())[0] == 0:
        beyond.append(older)
    return due, beyond


@dataclass
class _Loaded:
    workflow: Workflow
    mtime_ns: int


class Scheduler:
    """Runs due workflows of ``paths`` until stopped.

    Parameters
    ----------
    paths : sequence of paths
        Workflow folders or files.
    runner : Runner
        Runs the due dates (its trigger should be ``"schedule"``).
    poll_s : float
        Longest sleep between two looks at the workflows (they are also looked at each fire time).
    clock : callable, optional
        ``clock() -> aware datetime`` (tests set a fixed "now").
    """

    def __init__(self, paths: Sequence[str | Path], runner: Runner, *, poll_s: float = 60.0,
                 clock: Callable[[], datetime] | None = None):
        self.paths = list(paths)
        self.runner = runner
        self.poll_s = poll_s
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.stop_event = threading.Event()
        self._busy = False
        self._loaded: dict[Path, _Loaded] = {}
        self._reported: dict[Path, int] = {}
        self._warned_beyond: set[tuple[str, date]] = set()

    # ---- workflows ----------------------------------------------------------------------------
    def workflows(self) -> list[Workflow]:
        """The valid, scheduled workflows (re-read when their file changed)."""
        out: dict[str, Workflow] = {}
        for path in workflow_files(self.paths):
            mtime = path.stat().st_mtime_ns
            cached = self._loaded.get(path)
            if cached is None or cached.mtime_ns != mtime:
                try:
                    self._loaded[path] = _Loaded(load_workflow(path), mtime)
                except (SpecError, InputError) as exc:
                    self._loaded.pop(path, None)
                    if self._reported.get(path) != mtime:
                        log.error("%s", " ".join(str(exc).split()))
                        self._reported[path] = mtime
                    continue
            wf = self._loaded[path].workflow
            if wf.schedule is None:
                continue
            if wf.name in out:
                if self._reported.get(path) != mtime:
                    log.error("%s: workflow name %r is also used by %s; left out", path, wf.name, out[wf.name].path)
                    self._reported[path] = mtime
                continue
            out[wf.name] = wf
        return list(out.values())

    # ---- one round ----------------------------------------------------------------------------
    def tick(self) -> list[RunReport]:
        """Run what is due now; returns the reports of the runs made."""
        reports: list[RunReport] = []
        now = self.clock()
        for wf in self.workflows():
            if self.stop_event.is_set():
                break
            due, beyond = due_dates(wf, now, self.runner.ledger)
            for day in beyond:
                if (wf.name, day) not in self._warned_beyond:
                    self._warned_beyond.add((wf.name, day))
                    log.warning("%s: runs for %s and earlier were missed beyond the catch-up bound (%d); "
                                "backfill with: rsmon run %s --from ... --to %s", wf.name, day,
                                wf.schedule.catchup, wf.path, day)
            if not due:
                continue
            log.info("%s: due %s", wf.name, ", ".join(d.isoformat() for d in due))
            self._busy = True
            try:
                reports += self.runner.run(wf, due, only_if_due=True)
            finally:
                self._busy = False
        return reports

    def seconds_to_next(self, workflows: Sequence[Workflow]) -> float:
        """Seconds until the next cron fire among ``workflows`` (at most ``poll_s``)."""
        from croniter import croniter

        now = self.clock()
        wait = self.poll_s
        for wf in workflows:
            nxt = croniter(wf.schedule.cron, now.astimezone(wf.schedule.zone())).get_next(datetime)
            wait = min(wait, max(0.0, (nxt - now).total_seconds()) + 1.0)
        return wait

    # ---- the loop -----------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if not self.stop_event.is_set():
            log.warning("%s received: stopping%s", name, " (interrupting the current run)" if self._busy else "")
        self.stop_event.set()
        if self._busy:
            self._busy = False
            raise Interrupted(name)

    def serve(self, once: bool = False) -> list[RunReport]:
        """Run due workflows until SIGTERM/SIGINT (or one round with ``once``); returns the reports."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        reports: list[RunReport] = []
        try:
            log.info("scheduler started: %s; ledger %s", ", ".join(str(p) for p in self.paths),
                     self.runner.ledger.describe())
            while not self.stop_event.is_set():
                try:
                    reports += self.tick()
                except Interrupted:
                    break
                if once:
                    break
                # sleep in short slices: a signal delivered to another thread (dask, the lease keeper)
                # runs its Python handler only when the main thread wakes up
                deadline = time.monotonic() + self.seconds_to_next(self.workflows())
                while not self.stop_event.is_set() and time.monotonic() < deadline:
                    self.stop_event.wait(min(1.0, max(0.0, deadline - time.monotonic())))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info("scheduler stopped")
        return reports
