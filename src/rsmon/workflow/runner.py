"""The workflow runner: ``rsmon run WORKFLOW.yaml --date D`` (or ``--from/--to``) and the scheduler's runs.

For each logical date the runner

1. takes the lock of (workflow, date) in the ledger (another process running it -> status ``busy``),
   marks runs of that date left ``running`` by a dead process as failed, and records a new run;
2. runs the ``prepare`` steps and catalogues the ``sources`` (:func:`rsmon.workflow.ingest.ingest`);
   unreadable source files are quarantined and reported (the run is then ``partial``);
3. plans each job: inputs from the catalog query (minus quarantined files), parameters and paths
   filled in, and a job key (SHA-256 of parameters, input and auxiliary file checksums, output
   folder). A job whose key matches an earlier successful job with intact outputs is ``skipped``
   (``--force`` redoes it);
4. executes the job tasks on the executor (this process, or dask workers:
   :mod:`rsmon.workflow.dask_client`); each writes into a hidden staging folder beside its output
   folder (:func:`rsmon.workflow.jobs.execute`);
5. publishes each finished job: the staging folder replaces the output folder by renames, its STAC
   items go to ``HOME/catalogs/products``, its files (with checksums) to the ledger;
6. records the run's status (success, partial, failed, skipped), log and timings, and releases the lock.

Home layout (``--home`` or ``$RSMON_HOME``)::

    ledger.sqlite               the run ledger (or $RSMON_LEDGER / --ledger postgresql://...)
    catalogs/inputs/            STAC items of ingested inputs (+ .rsmon-index.sqlite)
    catalogs/products/          STAC items of products
    products/<output template>  the products, one folder per job and period
    runs/<workflow>/<date>/<run_id>.log   JSON-lines log of each run
    quarantine/<date>/          bad inputs, when a workflow says on_bad_input: move
    work/<run_id>/              scratch of running jobs (removed at the end)

A crash (even ``kill -9``) leaves no partial product: outputs exist only after the final rename,
and the next run of the same date removes the stale staging folders, marks the dead run failed and
redoes what was not published.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import rsmon
from rsmon.errors import RsmonError
from rsmon.provenance import format_datetime
from rsmon.workflow.dask_client import DistributedExecutor, Executor
from rsmon.workflow.ingest import ingest
from rsmon.workflow.input_index import InputIndex
from rsmon.workflow.jobs import JobOutcome, check_published, execute, log_entry
from rsmon.workflow.kinds import JOB_KINDS, run_prepare
from rsmon.workflow.ledger import LeaseKeeper, Ledger, ledger_url
from rsmon.workflow.planning import Planned, plan_job
from rsmon.workflow.publish import file_record, job_item, outputs_intact, rehome_items, replace_folder, sweep
from rsmon.workflow.spec import Workflow, period_label, render, template_context

log = logging.getLogger(__name__)

__all__ = ["EXIT_CODES", "Home", "Interrupted", "JobReport", "RunReport", "Runner", "run_workflow"]

#: Process exit code by run status (the worst run of a backfill decides).
EXIT_CODES = {"success": 0, "skipped": 0, "partial": 3, "failed": 2, "busy": 75}
_SEVERITY = ["skipped", "success", "busy", "partial", "failed"]


class Interrupted(BaseException):
    """Raised in the main thread by a SIGTERM handler: stop now, record the run as interrupted.

    A BaseException, like KeyboardInterrupt, so that job code does not catch it as a job error.
    """


@dataclass(frozen=True)
class Home:
    """Where a runner keeps its ledger, catalogs, products, logs and scratch."""

    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike | None = None) -> "Home":
        """``home``, else ``$RSMON_HOME``, else ``./rsmon-home``."""
        return cls(Path(home or os.environ.get("RSMON_HOME") or "rsmon-home").expanduser().resolve())

    @property
    def inputs_catalog(self) -> Path:
        return self.root / "catalogs" / "inputs"

    @property
    def products_catalog(self) -> Path:
        return self.root / "catalogs" / "products"

    @property
    def products(self) -> Path:
        return self.root / "products"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"


@dataclass
class JobReport:
    job_id: str
    product: str
    status: str
    message: str = ""
    output_dir: Path | None = None
    outputs: list[Path] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunReport:
    workflow: str
    logical_date: date
    status: str
    run_id: str | None = None
    message: str = ""
    jobs: list[JobReport] = field(default_factory=list)
    seconds: float = 0.0
    log_file: Path | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def summary(self) -> str:
        jobs = ", ".join(f"{j.job_id} {j.status}" + (f" ({j.seconds:.1f} s)" if j.seconds else "") for j in self.jobs)
        text = f"{self.workflow} {self.logical_date}: {self.status}"
        if jobs:
            text += f" [{jobs}]"
        if self.message:
            text += f": {self.message}"
        return text


def _bar(done: int, total: int, width: int = 20) -> str:
    """``[#####...............] 1/4``: the jobs finished of those submitted."""
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def worst(statuses: Sequence[str]) -> str:
    """The most severe status (failed > partial > busy > success > skipped); success when empty."""
    return max(statuses, key=_SEVERITY.index) if statuses else "success"


# --------------------------------------------------------------------------------------------------
# Run state
# --------------------------------------------------------------------------------------------------

class _RunLog(logging.Handler):
    """The log of one run: JSON lines in HOME/runs/<workflow>/<date>/<run_id>.log and in memory."""

    def __init__(self, path: Path):
        super().__init__(logging.INFO)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lines: list[str] = []
        self._fh = open(path, "a", encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        self.add(log_entry(record))

    def add(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, default=str)
        self.lines.append(line)
        self._fh.write(line + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
        super().close()


@dataclass
class _Run:
    workflow: Workflow
    day: date
    run_id: str
    report: RunReport
    runlog: _RunLog
    t0: float
    pending: dict[str, Planned] = field(default_factory=dict)


def _new_run_id(workflow: str, day: date) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{workflow}-{day:%Y%m%d}-{stamp}-{uuid.uuid4().hex[:6]}"


# --------------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------------

class Runner:
    """Runs workflows for logical dates against one home, ledger and executor.

    Parameters
    ----------
    home : Home
    ledger : Ledger
    executor : Executor
        Where job tasks execute (:func:`rsmon.workflow.dask_client.open_executor`).
    force : bool
        Redo jobs even when an earlier run with the same inputs and parameters succeeded.
    trigger : str
        Recorded in the ledger: ``cli``, ``backfill``, ``schedule``.
    progress : callable, optional
        Called with one line per event (job started, finished).
    lease_s : float
        Lease of the run locks (renewed every quarter of it while the run goes on).
    """

    def __init__(self, home: Home, ledger: Ledger, executor: Executor | None = None, *, force: bool = False,
                 trigger: str = "cli", progress: Callable[[str], None] | None = None, lease_s: float = 120.0):
        self.home = home
        self.ledger = ledger
        self.executor = executor or Executor()
        self.force = force
        self.trigger = trigger
        self.progress = progress or (lambda msg: None)
        self.lease_s = lease_s
        self.leases = LeaseKeeper(ledger.url, lease_s)
        self._done = self._total = 0

    def close(self) -> None:
        self.leases.stop()

    # ---- public -------------------------------------------------------------------------------
    def run(self, workflow: Workflow, dates: Sequence[date], *, only_if_due: bool = False) -> list[RunReport]:
        """Run ``workflow`` for each date (oldest first); returns one report per date.

        On a dask cluster the jobs of all dates execute side by side; in this process the dates
        run one after the other (each holds its lock only while it runs). With ``only_if_due``
        (the scheduler), a date that already has a finished run is left alone without a trace
        (checked again after taking its lock).
        """
        days = sorted(dates)
        batches = [days] if isinstance(self.executor, DistributedExecutor) else [[d] for d in days]
        reports: list[RunReport] = []
        for batch in batches:
            reports += self._run_batch(workflow, batch, only_if_due)
        return reports

    def _run_batch(self, workflow: Workflow, days: Sequence[date], only_if_due: bool) -> list[RunReport]:
        reports: list[RunReport] = []
        runs: list[_Run] = []
        futures: dict[Any, tuple[_Run, Planned]] = {}
        try:
            for day in days:
                run = self._open(workflow, day, only_if_due)
                if run is None:
                    continue
                if isinstance(run, RunReport):
                    reports.append(run)
                    continue
                reports.append(run.report)
                runs.append(run)
                if not run.pending:
                    self._close(run)
            for run in runs:
                for planned in run.pending.values():
                    futures[self.executor.submit(execute, planned.task)] = (run, planned)
            self._done, self._total = 0, len(futures)
            for fut in self.executor.completed(list(futures)):
                run, planned = futures.pop(fut)
                if not isinstance(self.executor, DistributedExecutor):  # it runs now, in this process
                    self.progress(f"{_bar(self._done, self._total)} {run.day} {planned.job.id}: running "
                                  f"({planned.job.product})")
                try:
                    outcome = self.executor.result(fut)
                except Exception as exc:  # the task itself died (worker lost): the job failed
                    outcome = JobOutcome(status="failed", message=f"task failed: {type(exc).__name__}: {exc}")
                self._finish_job(run, planned, outcome)
                if not run.pending:
                    self._close(run)
        except BaseException as exc:
            self.executor.cancel(list(futures))
            for run in runs:
                if run.report.status == "running":
                    self._abort(run, exc)
            raise
        return reports

    # ---- opening a run --------------------------------------------------------------------------
    def _open(self, workflow: Workflow, day: date, only_if_due: bool) -> _Run | RunReport | None:
        iso = day.isoformat()
        run_id = _new_run_id(workflow.name, day)
        holder = self.ledger.acquire(workflow.name, iso, run_id, self.lease_s)
        if holder is not None:
            msg = f"already running: {holder.describe()}"
            log.warning("%s %s: %s", workflow.name, iso, msg)
            return RunReport(workflow.name, day, "busy", message=msg)
        if only_if_due and self.ledger.is_done(workflow.name, iso):
            self.ledger.release(workflow.name, iso, run_id)
            return None
        for stale in self.ledger.abandon_stale(workflow.name, iso, run_id):
            shutil.rmtree(self.home.work / stale, ignore_errors=True)
        self.leases.hold(workflow.name, iso, run_id)
        self.ledger.start_run(run_id, workflow.name, iso, trigger=self.trigger, forced=self.force,
                              spec_path=str(workflow.path), spec_sha256=workflow.sha256, executor=self.executor.name,
                              software=f"rsmon {rsmon.__version__}")
        runlog = _RunLog(self.home.runs / workflow.name / iso / f"{run_id}.log")
        report = RunReport(workflow.name, day, "running", run_id=run_id, log_file=runlog.path)
        run = _Run(workflow, day, run_id, report, runlog, time.perf_counter())
        rsmon_log = logging.getLogger("rsmon")
        rsmon_log.addHandler(runlog)
        level = rsmon_log.level
        if rsmon_log.getEffectiveLevel() > logging.INFO:
            rsmon_log.setLevel(logging.INFO)
        try:
            log.info("run %s: workflow %s (%s), logical date %s, on %s, executor %s", run_id, workflow.name,
                     workflow.path, iso, socket.gethostname(), self.executor.name)
            self.progress(f"{iso} {workflow.name}: preparing")
            self._prepare(run)
            self._plan(run)
        except RsmonError as exc:
            report.status, report.message = "failed", " ".join(str(exc).split())
            log.error("run %s failed: %s", run_id, report.message)
        except Exception as exc:
            report.status, report.message = "failed", f"{type(exc).__name__}: {exc}"
            log.error("run %s failed with an unexpected error", run_id, exc_info=True)
        except BaseException as exc:  # SIGTERM or Ctrl-C while preparing: record it, then stop
            self._abort(run, exc)
            raise
        finally:
            rsmon_log.removeHandler(runlog)
            rsmon_log.setLevel(level)
        if report.status == "failed":
            self._close(run)
        return run

    def _prepare(self, run: _Run) -> None:
        wf, ctx = run.workflow, template_context(run.workflow, run.day, self.home.root)
        for step in wf.prepare:
            resolved = {**step, "out": wf.resolve_path(step["out"], ctx)}
            if isinstance(step.get("start"), str):
                resolved["start"] = render(step["start"], ctx)
            run_prepare(resolved, run.day)
        if not wf.sources:
            return
        roots = []
        for src in wf.sources:
            path = Path(wf.resolve_path(src, ctx))
            if path.exists():
                roots.append(path)
            else:
                run.report.problems.append(f"source {path} does not exist")
                log.error("source %s does not exist (not mounted?)", path)
        if not roots:
            return
        result = ingest(roots, self.home.inputs_catalog)
        log.info("ingest: %s", result.summary())
        for problem in result.unreadable:
            try:
                st = os.stat(problem.path)
                fingerprint = f"stat:{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                continue
            moved = self._move_bad(run, problem.path)
            if self.ledger.quarantine(problem.path, fingerprint, problem.reason, run.run_id, moved):
                run.report.problems.append(f"unreadable input {problem.path} quarantined: {problem.reason}")
                log.warning("quarantined unreadable input %s: %s", problem.path, problem.reason)

    def _move_bad(self, run: _Run, path: str) -> str | None:
        if run.workflow.on_bad_input != "move":
            return None
        target = self.home.quarantine / run.day.isoformat() / Path(path).name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
        except OSError as exc:
            log.error("could not move bad input %s to %s: %s", path, target, exc)
            return None
        log.warning("moved bad input %s to %s", path, target)
        return str(target)

    # ---- planning jobs --------------------------------------------------------------------------
    def _plan(self, run: _Run) -> None:
        quarantined = self.ledger.quarantined()
        with InputIndex(self.home.inputs_catalog) as index:
            for job in run.workflow.jobs:
                try:
                    planned = plan_job(self.home.root, self.ledger, run.workflow, job, run.day, run.run_id, index,
                                       quarantined)
                except RsmonError as exc:
                    msg = " ".join(str(exc).split())
                    log.error("%s: %s", job.id, msg)
                    self.ledger.start_job(run.run_id, run.workflow.name, run.day.isoformat(), job.id, job.product, "",
                                          {}, "")
                    self.ledger.finish_job(run.run_id, job.id, "failed", message=msg)
                    run.report.jobs.append(JobReport(job.id, job.product, "failed", msg))
                    self.progress(f"{run.day} {job.id}: failed: {msg}")
                    continue
                earlier = None if self.force else self.ledger.last_job(run.workflow.name, job.id, job_key=planned.key)
                self.ledger.start_job(run.run_id, run.workflow.name, run.day.isoformat(), job.id, job.product,
                                      planned.key, planned.task.parameters, str(planned.final_dir))
                if earlier is not None and outputs_intact(earlier.outputs):
                    msg = f"same inputs and parameters as run {earlier.run_id}, outputs intact (use --force to redo)"
                    log.info("%s: skipped: %s", job.id, msg)
                    self.ledger.finish_job(run.run_id, job.id, "skipped", message=msg, inputs=planned.inputs,
                                           outputs=earlier.outputs)
                    run.report.jobs.append(JobReport(job.id, job.product, "skipped", msg, planned.final_dir,
                                                     [Path(o["path"]) for o in earlier.outputs]))
                    self.progress(f"{run.day} {job.id}: skipped ({msg})")
                    continue
                sweep(planned.final_dir)
                Path(planned.task.stage_dir).parent.mkdir(parents=True, exist_ok=True)
                run.pending[job.id] = planned

    # ---- finishing jobs -------------------------------------------------------------------------
    def _finish_job(self, run: _Run, planned: Planned, outcome: JobOutcome) -> None:
        job = planned.job
        run.pending.pop(job.id, None)
        for entry in outcome.log:
            run.runlog.add(entry)
        inputs = list(planned.inputs)
        bad = {p: (sha, reason) for p, sha, reason in outcome.quarantined}
        for rec in inputs:
            if rec["path"] in bad:
                rec.update(status="quarantined", reason=bad[rec["path"]][1])
        for path, (sha, reason) in bad.items():
            moved = self._move_bad(run, path)
            self.ledger.quarantine(path, sha, reason, run.run_id, moved)
        status, message, outputs = outcome.status, outcome.message, []
        if status in ("success", "partial"):
            try:
                replace_folder(Path(planned.task.stage_dir), planned.final_dir, run.run_id)
                problems, summary, records, attempts = check_published(planned.task, planned.final_dir)
                outcome.summary.update(summary)
                outcome.attempts += attempts
                for entry in records:
                    run.runlog.add(entry)
                if problems:
                    status, message = "partial", "; ".join(filter(None, [message, *problems]))
                self._catalogue(run, planned, outcome)
                outputs = [file_record(p) for p in sorted(planned.final_dir.rglob("*")) if p.is_file()]
            except (OSError, RsmonError) as exc:
                status, message = "failed", f"publishing failed: {exc}"
                run.runlog.add({"level": "ERROR", "job": job.id, "message": message})
        shutil.rmtree(planned.task.stage_dir, ignore_errors=True)
        shutil.rmtree(Path(planned.task.catalog_dir).parent, ignore_errors=True)
        self.ledger.finish_job(run.run_id, job.id, status, message=message, attempts=outcome.attempts,
                               summary=outcome.summary, inputs=inputs, outputs=outputs)
        run.report.jobs.append(JobReport(job.id, job.product, status, message, planned.final_dir,
                                         [Path(o["path"]) for o in outputs],
                                         [(p, r) for p, (_, r) in bad.items()], outcome.seconds, outcome.summary))
        self._done += 1
        self.progress(f"{_bar(self._done, self._total)} {run.day} {job.id}: {status} ({outcome.seconds:.1f} s)"
                      + (f": {message}" if message else ""))

    def _catalogue(self, run: _Run, planned: Planned, outcome: JobOutcome) -> None:
        """STAC items of a published job: the product's own (L3), else one for the folder; validation."""
        from rsmon.catalog import write_item

        final, catalog = planned.final_dir, self.home.products_catalog
        kind = JOB_KINDS[planned.job.product]
        label = f"{run.workflow.name}-{planned.job.id}-{period_label(run.day, planned.job.period)}"
        inputs = [i for items in planned.used.values() for i in items]
        props = {"rsmon:workflow": run.workflow.name, "rsmon:job": planned.job.id, "rsmon:product": planned.job.product,
                 "rsmon:logical_date": run.day.isoformat(), "rsmon:run_id": run.run_id,
                 "rsmon:parameters": planned.task.parameters, "rsmon:summary": outcome.summary}
        if not rehome_items(Path(planned.task.catalog_dir), Path(planned.task.stage_dir), final, catalog):
            write_item(catalog, job_item(item_id=label, collection=kind.collection, folder=final, catalog=catalog,
                                         inputs=inputs, day=run.day, properties=props, exclude="validation"),
                       f"rsmon {kind.description}")
        if (final / "validation").is_dir():
            write_item(catalog, job_item(item_id=f"{label}-validation", collection="rsmon-validation",
                                         folder=final / "validation", catalog=catalog, inputs=inputs, day=run.day,
                                         properties=props), "rsmon validation reports")

    # ---- closing runs ---------------------------------------------------------------------------
    def _close(self, run: _Run) -> None:
        report = run.report
        order = {job.id: i for i, job in enumerate(run.workflow.jobs)}
        report.jobs.sort(key=lambda j: order.get(j.job_id, len(order)))
        if report.status == "running":
            statuses = [j.status for j in report.jobs]
            status = worst(statuses)
            if status == "success" and report.problems:
                status = "partial"
            if statuses and all(s == "skipped" for s in statuses) and not report.problems:
                status = "skipped"
            report.status = status
            problems = report.problems + [f"{j.job_id}: {j.message}" for j in report.jobs
                                          if j.status in ("failed", "partial") and j.message]
            report.message = "; ".join(problems)
        report.seconds = time.perf_counter() - run.t0
        run.runlog.add({"time": format_datetime(datetime.now(timezone.utc)), "level": "INFO", "logger": __name__,
                        "message": f"run {run.run_id}: {report.status} in {report.seconds:.1f} s"
                                   + (f": {report.message}" if report.message else "")})
        run.runlog.close()
        self.ledger.finish_run(run.run_id, report.status, report.message, "\n".join(run.runlog.lines))
        self.leases.drop(run.workflow.name, run.day.isoformat())
        self.ledger.release(run.workflow.name, run.day.isoformat(), run.run_id)
        shutil.rmtree(self.home.work / run.run_id, ignore_errors=True)
        log.log(logging.WARNING if report.status in ("failed", "partial") else logging.INFO, "%s", report.summary())

    def _abort(self, run: _Run, exc: BaseException) -> None:
        """Record a run stopped by a signal or an interrupt: unfinished jobs failed, nothing published."""
        why = f"interrupted ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
        try:
            for planned in list(run.pending.values()):
                shutil.rmtree(planned.task.stage_dir, ignore_errors=True)
                self.ledger.finish_job(run.run_id, planned.job.id, "failed", message=why, inputs=planned.inputs)
                run.report.jobs.append(JobReport(planned.job.id, planned.job.product, "failed", why))
            run.pending.clear()
            self.ledger.fail_running_jobs(run.run_id, why)
            run.report.status, run.report.message = "failed", why
            self._close(run)
        except Exception:  # recording must not hide the interrupt; the next run marks it abandoned
            log.exception("could not record the interrupted run %s", run.run_id)


def run_workflow(workflow: Workflow | str | os.PathLike, dates: date | Sequence[date], *,
                 home: str | os.PathLike | None = None, ledger: str | None = None, dask: str | None = None,
                 workers: int | None = None, force: bool = False, trigger: str = "cli",
                 progress: Callable[[str], None] | None = None) -> list[RunReport]:
    """Load (if needed) and run a workflow for one or more logical dates; see :class:`Runner`.

    Returns
    -------
    list of RunReport
        One per date; ``max(r.exit_code ...)``-style exit codes in :data:`EXIT_CODES`.
    """
    from rsmon.workflow.dask_client import open_executor
    from rsmon.workflow.spec import load_workflow

    wf = workflow if isinstance(workflow, Workflow) else load_workflow(workflow)
    days = [dates] if isinstance(dates, date) else list(dates)
    h = Home.resolve(home)
    with Ledger(ledger_url(h.root, ledger)) as led, open_executor(dask, workers) as ex:
        runner = Runner(h, led, ex, force=force, trigger=trigger, progress=progress)
        try:
            return runner.run(wf, days)
        finally:
            runner.close()


def exit_code(reports: Sequence[RunReport]) -> int:
    """The process exit code of several runs: failed (2) over partial (3) over busy (75) over success (0)."""
    codes = {r.status for r in reports}
    for status in ("failed", "partial", "busy"):
        if status in codes:
            return EXIT_CODES[status]
    return 0
