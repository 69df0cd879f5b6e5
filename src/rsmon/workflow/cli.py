"""The workflow commands of ``rsmon``: ``ingest``, ``run``, ``schedule`` and ``runs`` (argument parsing only).

:func:`register` adds them to the ``rsmon`` command (``rsmon.cli.build_parser`` calls it); until
then ``python -m rsmon.workflow.cli ...`` offers the same commands.

Exit codes: 0 success (or skipped), 2 failed (or a usage error), 3 partial (a bad input was
quarantined, a validation failed: the rest completed), 75 busy (another process runs that logical
run now), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from rsmon.errors import InputError

__all__ = ["main", "register"]

EXIT_INTERRUPTED = 143


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time such as 2019-06-13T07:00+08:00, "
                                         f"got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(args: argparse.Namespace, level: int | None = None) -> None:
    """JSON lines on stderr with ``--log-json``; ``level`` for the rsmon loggers (daemons log INFO)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    verbose = getattr(args, "verbose", 0)
    shown = level if level is not None and not verbose else root.level
    for handler in root.handlers:
        # the runner raises the rsmon loggers to INFO for the run logs; stderr shows what -v asks for
        handler.setLevel(shown)
        if getattr(args, "log_json", False):
            handler.setFormatter(_JsonFormatter())
    if level is not None and not verbose:
        logging.getLogger("rsmon").setLevel(level)


def _say(args: argparse.Namespace):
    """Progress lines on stderr, on a terminal only (a failing run's stderr stays its error)."""
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        return None
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def _raise_interrupted(signum, frame):
    from rsmon.workflow.runner import Interrupted

    raise Interrupted(signal.Signals(signum).name)


# --------------------------------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------------------------------

def _cmd_ingest(args: argparse.Namespace) -> int:
    from rsmon.workflow.ingest import ingest
    from rsmon.workflow.runner import Home

    _setup_logging(args)
    catalog = Path(args.catalog) if args.catalog else Home.resolve(args.home).inputs_catalog
    report = ingest(args.paths, catalog, progress=_say(args))
    if args.json:
        print(json.dumps({
            "catalog": str(catalog), "new": [i.item_file for i in report.new],
            "updated": [i.item_file for i in report.updated], "unchanged": report.unchanged,
            "problems": [{"path": p.path, "kind": p.kind, "reason": p.reason} for p in report.problems],
            "vanished": report.vanished}, indent=2))
    else:
        print(f"{catalog}: {report.summary()}")
        for item in report.new + report.updated:
            print(f"  {'new' if item in report.new else 'updated'}: {item.collection}/{item.item_id}  {item.path}")
        for p in report.problems:
            print(f"  {p.kind}: {p.path}: {p.reason}")
        for path in report.vanished:
            print(f"  vanished: {path}")
    return 3 if report.unreadable else 0


# --------------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------------

def _dates(args: argparse.Namespace) -> list[date]:
    if args.date and (args.date_from or args.date_to):
        raise InputError("run: give --date or --from/--to, not both")
    if args.date:
        return [args.date]
    if not (args.date_from and args.date_to):
        raise InputError("run: give --date YYYY-MM-DD, or --from and --to for a backfill")
    if args.date_to < args.date_from:
        raise InputError(f"run: --to {args.date_to} is before --from {args.date_from}")
    n = (args.date_to - args.date_from).days + 1
    if n > 3660:
        raise InputError(f"run: --from/--to spans {n} days; backfill at most 10 years at once")
    return [args.date_from + timedelta(days=i) for i in range(n)]


def _cmd_run(args: argparse.Namespace) -> int:
    from rsmon.workflow.dask_client import open_executor
    from rsmon.workflow.ledger import Ledger, ledger_url
    from rsmon.workflow.runner import Home, Interrupted, Runner, exit_code
    from rsmon.workflow.spec import load_workflow

    _setup_logging(args)
    workflow = load_workflow(args.workflow)
    days = _dates(args)
    home = Home.resolve(args.home)
    if args.dry_run:
        return _dry_run(workflow, days, home, args)
    say = _say(args)
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        with Ledger(ledger_url(home.root, args.ledger)) as ledger, open_executor(args.dask, args.workers) as ex:
            runner = Runner(home, ledger, ex, force=args.force, trigger="cli" if len(days) == 1 else "backfill",
                            progress=say)
            try:
                reports = runner.run(workflow, days)
            finally:
                runner.close()
    except Interrupted as exc:
        print(f"rsmon: run interrupted by {exc}; recorded as failed, nothing half-written was published",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    for report in reports:
        print(report.summary())
        for job in report.jobs:
            if job.output_dir is not None and job.status in ("success", "partial", "skipped"):
                print(f"  {job.job_id}: {job.output_dir}")
            for path, reason in job.quarantined:
                print(f"  {job.job_id}: quarantined {path}: {reason}")
        for problem in report.problems:
            print(f"  {problem}")
        if report.log_file:
            print(f"  log: {report.log_file}")
    return exit_code(reports)


def _dry_run(workflow, days, home, args) -> int:
    """Print what each job would read and whether it would be skipped; change nothing."""
    from rsmon.errors import RsmonError
    from rsmon.workflow.input_index import InputIndex
    from rsmon.workflow.ledger import Ledger, ledger_url
    from rsmon.workflow.planning import plan_job
    from rsmon.workflow.publish import outputs_intact

    with Ledger(ledger_url(home.root, args.ledger)) as ledger, InputIndex(home.inputs_catalog) as index:
        quarantined = ledger.quarantined()
        for day in days:
            print(f"{workflow.name} {day}:")
            for job in workflow.jobs:
                try:
                    planned = plan_job(home.root, ledger, workflow, job, day, "dry-run", index, quarantined)
                except RsmonError as exc:
                    print(f"  {job.id}: would fail: {' '.join(str(exc).split())}")
                    continue
                earlier = None if args.force else ledger.last_job(workflow.name, job.id, job_key=planned.key)
                what = "skip (done before)" if earlier and outputs_intact(earlier.outputs) else "run"
                print(f"  {job.id} ({job.product}): would {what} -> {planned.final_dir}")
                for rec in planned.inputs:
                    print(f"    {rec['role']}: {rec['path']}")
    if workflow.sources or workflow.prepare:
        print("(sources and prepare steps are not ingested or run by --dry-run: inputs are as catalogued now)")
    return 0


# --------------------------------------------------------------------------------------------------
# schedule
# --------------------------------------------------------------------------------------------------

def _cmd_schedule(args: argparse.Namespace) -> int:
    from rsmon.workflow.dask_client import open_executor
    from rsmon.workflow.ledger import Ledger, ledger_url
    from rsmon.workflow.runner import Home, Runner, exit_code
    from rsmon.workflow.scheduler import Scheduler, workflow_files

    _setup_logging(args, logging.INFO)
    workflow_files(args.paths)  # fail now on a missing path
    home = Home.resolve(args.home)
    clock = (lambda: args.now) if args.now else None
    with Ledger(ledger_url(home.root, args.ledger)) as ledger, open_executor(args.dask, args.workers) as ex:
        runner = Runner(home, ledger, ex, trigger="schedule", progress=_say(args))
        try:
            reports = Scheduler(args.paths, runner, poll_s=args.poll, clock=clock).serve(once=args.once)
        finally:
            runner.close()
    for report in reports:
        print(report.summary())
    # "busy" is no error here: another scheduler is running that date
    return exit_code([r for r in reports if r.status != "busy"]) if args.once else 0


# --------------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------------

def _cmd_runs(args: argparse.Namespace) -> int:
    from rsmon.workflow.ledger import Ledger, ledger_url
    from rsmon.workflow.runner import Home

    home = Home.resolve(args.home)
    with Ledger(ledger_url(home.root, args.ledger)) as ledger:
        if args.run_id:
            run = ledger.run(args.run_id)
            if run is None:
                raise InputError(f"runs: no run {args.run_id!r} in the ledger {ledger.describe()}")
            if args.json:
                print(json.dumps(run, indent=2, default=str))
                return 0
            log_text = run.pop("log") or ""
            for key in ("run_id", "workflow", "logical_date", "status", "trigger", "executor", "host", "pid",
                        "seconds", "message", "spec_path"):
                print(f"{key}: {run.get(key)}")
            for job in run["jobs"]:
                print(f"job {job['job_id']} ({job['product']}): {job['status']}"
                      + (f" - {job['message']}" if job["message"] else ""))
                for i in job["inputs"]:
                    print(f"  input {i['role']} [{i['status']}]: {i['path']} sha256={i['sha256']}")
                for o in job["outputs"]:
                    print(f"  output: {o['path']} sha256={o['sha256']}")
            if args.log:
                print(log_text)
            return 0
        rows = ledger.runs(workflow=args.workflow, logical_date=args.date.isoformat() if args.date else None,
                           limit=args.limit)
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
            return 0
        for r in rows:
            started = datetime.fromtimestamp(r["started"], timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
            secs = f"{r['seconds']:.1f}s" if r["seconds"] is not None else "-"
            print(f"{started}  {r['workflow']:<20} {r['logical_date']}  {r['status']:<8} {secs:>8}  {r['run_id']}"
                  + (f"  {r['message'][:120]}" if r["message"] else ""))
        for workflow, day, holder in ledger.locks():
            print(f"lock: {workflow} {day} held by {holder.describe()}")
    return 0


# --------------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------------

def _common(p: argparse.ArgumentParser, executor: bool = True) -> None:
    p.add_argument("--home", default=None, metavar="DIR",
                   help="where the ledger, catalogs, products and logs go (default $RSMON_HOME, else ./rsmon-home)")
    p.add_argument("--ledger", default=None, metavar="URL",
                   help="ledger URL: sqlite:///PATH or postgresql://... "
                        "(default $RSMON_LEDGER, else HOME/ledger.sqlite)")
    if executor:
        p.add_argument("--dask", default=None, metavar="threads|processes|tcp://HOST:PORT",
                       help="where jobs execute (default $RSMON_DASK, else threads: this process)")
        p.add_argument("--workers", type=int, default=None, metavar="N",
                       help="worker processes for --dask processes (default: the number of cores)")
        p.add_argument("--log-json", action="store_true", help="log as JSON lines on stderr")


def register(subparsers, parser_class=argparse.ArgumentParser) -> None:
    """Add ``ingest``, ``run``, ``schedule`` and ``runs`` to an ``rsmon`` subparsers object.

    ``parser_class`` builds the new sub-parsers (rsmon's one-line-error parser).
    """
    subparsers._parser_class = parser_class
    ing = subparsers.add_parser("ingest", help="catalogue input files (STAC items with footprint, time, checksum)")
    ing.add_argument("paths", nargs="+", metavar="DIR", help="folders (walked) or files")
    ing.add_argument("--catalog", default=None, metavar="DIR", help="inputs catalog (default HOME/catalogs/inputs)")
    ing.add_argument("--home", default=None, metavar="DIR", help="default $RSMON_HOME, else ./rsmon-home")
    ing.add_argument("--json", action="store_true", help="print the report as JSON")
    ing.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    ing.set_defaults(func=_cmd_ingest)

    run = subparsers.add_parser("run", help="run a workflow for a logical date (or a backfill --from/--to)")
    run.add_argument("workflow", metavar="WORKFLOW.yaml")
    run.add_argument("--date", type=_date, default=None, metavar="YYYY-MM-DD", help="logical date")
    run.add_argument("--from", dest="date_from", type=_date, default=None, metavar="YYYY-MM-DD", help="backfill from")
    run.add_argument("--to", dest="date_to", type=_date, default=None, metavar="YYYY-MM-DD",
                     help="backfill to (inclusive)")
    run.add_argument("--force", action="store_true", help="redo jobs even if done before with the same inputs")
    run.add_argument("--dry-run", action="store_true", help="show inputs and what would run; change nothing")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    _common(run)
    run.set_defaults(func=_cmd_run)

    sch = subparsers.add_parser("schedule", help="run due workflows from their cron schedules until SIGTERM")
    sch.add_argument("paths", nargs="+", metavar="WORKFLOWS", help="workflow folders or files")
    sch.add_argument("--poll", type=float, default=60.0, metavar="SECONDS",
                     help="longest sleep between looks at the workflows (default 60)")
    sch.add_argument("--once", action="store_true", help="run what is due now, then exit (for cron)")
    sch.add_argument("--now", type=_instant, default=None, metavar="TIME", help="pretend it is TIME (tests, drills)")
    _common(sch)
    sch.set_defaults(func=_cmd_schedule)

    runs = subparsers.add_parser("runs", help="list runs from the ledger, or show one run")
    runs.add_argument("run_id", nargs="?", default=None, metavar="RUN_ID")
    runs.add_argument("--workflow", default=None)
    runs.add_argument("--date", type=_date, default=None, metavar="YYYY-MM-DD")
    runs.add_argument("--limit", type=int, default=30)
    runs.add_argument("--log", action="store_true", help="with RUN_ID: print the run's log")
    runs.add_argument("--json", action="store_true")
    _common(runs, executor=False)
    runs.set_defaults(func=_cmd_runs)


def main(argv=None) -> int:
    """``python -m rsmon.workflow.cli``: the rsmon command with the workflow commands registered."""
    import rsmon.cli as cli

    def build_parser():
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "run" not in sub.choices:
            register(sub, cli._Parser)
        return parser

    original = cli.build_parser
    cli.build_parser = build_parser
    try:
        return cli.main(argv)
    finally:
        cli.build_parser = original


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
