"""The run ledger: what ran, on which inputs, with which parameters, what it wrote, and locks.

One interface, two back ends chosen by URL: ``sqlite:///PATH`` (the default,
``$RSMON_HOME/ledger.sqlite``) and ``postgresql://...`` (a centre running several machines). Both
use the same SQL; every statement that decides something (taking a lock, replacing an expired
one) is a single atomic statement, so the rules hold across processes and machines.

Tables (prefixed ``ledger_``, so one PostgreSQL database can also hold the alert store)
------
``ledger_runs``         one row per run of a workflow for a logical date: status (running, success,
                        partial, failed, skipped), trigger, timings, host/pid, message, log text.
``ledger_jobs``         one row per job of a run: product, parameters, the job key (hash of parameters
                        and input checksums, what makes a rerun skippable), output folder, status.
``ledger_job_inputs``   inputs of a job with SHA-256 (role, path, status used/quarantined, reason).
``ledger_job_outputs``  files a job published (path, size, mtime, SHA-256).
``ledger_locks``        one row per (workflow, logical date) being run: owner, host, pid, lease.
``ledger_quarantine``   bad input files (path, fingerprint, reason): never selected while unchanged.
``ledger_meta``         the schema version.

A lock is a row with a lease: its owner renews it while it works (:class:`LeaseKeeper`); a lease
that ran out, or whose owner process is gone from this host, may be taken over. A run whose owner
died keeps the status ``running`` until the next run of the same logical date takes the lock and
marks it ``failed`` ("abandoned"), so the ledger always ends consistent.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from rsmon.errors import InputError, OutputError

log = logging.getLogger(__name__)

__all__ = ["FINISHED", "Ledger", "LeaseKeeper", "LockHolder", "ledger_url"]

#: Run statuses that mean "this logical run is done" (the scheduler does not run it again).
FINISHED = ("success", "partial", "skipped")
SCHEMA_VERSION = "1"
#: Largest run log kept in the ledger (the whole log is in HOME/runs/...).
MAX_LOG_CHARS = 1_000_000

_TABLES = """
CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS ledger_runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, logical_date TEXT NOT NULL, status TEXT NOT NULL,
    run_trigger TEXT, forced INTEGER, spec_path TEXT, spec_sha256 TEXT, executor TEXT, software TEXT,
    host TEXT, pid INTEGER, started {real}, ended {real}, seconds {real}, message TEXT, log TEXT);
CREATE INDEX IF NOT EXISTS ledger_runs_by_date ON ledger_runs (workflow, logical_date);
CREATE TABLE IF NOT EXISTS ledger_jobs (
    run_id TEXT NOT NULL, job_id TEXT NOT NULL, workflow TEXT NOT NULL, logical_date TEXT NOT NULL,
    product TEXT, status TEXT NOT NULL, job_key TEXT, parameters TEXT, output_dir TEXT, started {real},
    ended {real}, seconds {real}, attempts INTEGER, message TEXT, summary TEXT, PRIMARY KEY (run_id, job_id));
CREATE INDEX IF NOT EXISTS ledger_jobs_by_key ON ledger_jobs (workflow, job_id, job_key);
CREATE TABLE IF NOT EXISTS ledger_job_inputs (
    run_id TEXT NOT NULL, job_id TEXT NOT NULL, role TEXT, path TEXT, sha256 TEXT, size {big},
    status TEXT, reason TEXT);
CREATE INDEX IF NOT EXISTS ledger_job_inputs_by_run ON ledger_job_inputs (run_id, job_id);
CREATE TABLE IF NOT EXISTS ledger_job_outputs (
    run_id TEXT NOT NULL, job_id TEXT NOT NULL, path TEXT, sha256 TEXT, size {big}, mtime_ns {big});
CREATE INDEX IF NOT EXISTS ledger_job_outputs_by_run ON ledger_job_outputs (run_id, job_id);
CREATE TABLE IF NOT EXISTS ledger_locks (
    workflow TEXT NOT NULL, logical_date TEXT NOT NULL, owner TEXT NOT NULL, host TEXT, pid INTEGER,
    pid_start {big}, acquired {real}, lease_until {real}, PRIMARY KEY (workflow, logical_date));
CREATE TABLE IF NOT EXISTS ledger_quarantine (
    path TEXT NOT NULL, fingerprint TEXT NOT NULL, reason TEXT, run_id TEXT, first_seen {real},
    moved_to TEXT, PRIMARY KEY (path, fingerprint));
"""

_TYPES = {"sqlite": {"real": "REAL", "big": "INTEGER"},
          "postgresql": {"real": "DOUBLE PRECISION", "big": "BIGINT"}}


def ledger_url(home: str | os.PathLike, url: str | None = None) -> str:
    """The ledger URL: ``url``, else ``$RSMON_LEDGER``, else ``sqlite:///HOME/ledger.sqlite``."""
    url = url or os.environ.get("RSMON_LEDGER")
    if url:
        return url
    return f"sqlite:///{Path(home).resolve() / 'ledger.sqlite'}"


def _pid_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            text = fh.read()
        return int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        if not Path("/proc").is_dir():  # not Linux: fall back to "does the pid exist"
            try:
                os.kill(pid, 0)
                return 0
            except ProcessLookupError:
                return None
            except PermissionError:
                return 0
        return None


def open_sqlite(path: str | os.PathLike, *, setup: Sequence[str] = (), wait_s: float = 60.0,
                check_same_thread: bool = True) -> sqlite3.Connection:
    """Open an SQLite file shared by several processes: WAL mode, a busy timeout, and ``setup``
    statements (schema) run with retries.

    SQLite answers "database is locked" at once, without calling its busy handler, when a
    connection switches a file to WAL or creates the schema while another process does the same
    (two schedulers started together); those steps are retried with a short back-off for up to
    ``wait_s`` seconds.
    """
    db = sqlite3.connect(path, timeout=wait_s, isolation_level=None, check_same_thread=check_same_thread)
    deadline = time.monotonic() + wait_s
    delay = 0.02
    statements = ["PRAGMA journal_mode=WAL", f"PRAGMA busy_timeout={int(wait_s * 1000)}", *setup]
    done = 0
    while done < len(statements):
        try:
            db.executescript(statements[done])
            done += 1
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    return db


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) the lock of a logical run."""

    owner: str
    host: str
    pid: int
    pid_start: int | None
    lease_until: float

    def alive_here(self) -> bool | None:
        """True/False when the holder runs on this host (its process exists or not); None elsewhere."""
        if self.host != socket.gethostname():
            return None
        start = _pid_start(self.pid)
        return start is not None and (not self.pid_start or start == self.pid_start)

    def describe(self) -> str:
        left = self.lease_until - time.time()
        return f"run {self.owner} (pid {self.pid} on {self.host}, lease {left:.0f} s left)"


@dataclass
class JobRow:
    """A job of an earlier run, with the files it published."""

    run_id: str
    job_id: str
    logical_date: str
    status: str
    job_key: str | None
    output_dir: str | None
    outputs: list[dict[str, Any]] = field(default_factory=list)


class Ledger:
    """The run ledger at ``url`` (``sqlite:///PATH`` or ``postgresql://...``).

    Raises
    ------
    InputError
        An unknown URL scheme, or PostgreSQL without the ``psycopg`` package.
    OutputError
        The SQLite file cannot be created.
    """

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            path = Path(url[len("sqlite:///"):])  # sqlite:////abs/path or sqlite:///relative/path
            if not path.is_absolute():
                path = Path.cwd() / path
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = open_sqlite(path, setup=("PRAGMA synchronous=NORMAL",), check_same_thread=False)
            except (OSError, sqlite3.Error) as exc:
                raise OutputError(f"ledger {url}: cannot open ({exc})") from None
            self.path: Path | None = path
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self.path = None
            try:
                import psycopg
            except ImportError:
                raise InputError(f"ledger {url}: PostgreSQL needs the psycopg package "
                                 "(pip install 'psycopg[binary]')") from None
            try:
                self._db = psycopg.connect(url, autocommit=True)
            except psycopg.Error as exc:
                raise OutputError(f"ledger {_safe_url(url)}: cannot connect ({exc})") from None
        else:
            raise InputError(f"ledger URL: expected sqlite:///PATH or postgresql://..., got {url!r}")
        self._lock = threading.Lock()
        self._create()

    # ---- plumbing -----------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        with self._lock:
            cur = self._db.execute(self._sql(sql), tuple(args))
            return cur.rowcount

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return list(self._db.execute(self._sql(sql), tuple(args)).fetchall())

    def _many(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Run statements in one transaction."""
        with self._lock:
            if self.dialect == "sqlite":
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for sql, args in statements:
                        self._db.execute(sql, tuple(args))
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            else:
                with self._db.transaction():
                    for sql, args in statements:
                        self._db.execute(self._sql(sql), tuple(args))

    def _create(self) -> None:
        script = _TABLES.format(**_TYPES[self.dialect])
        statements = [s.strip() for s in script.split(";") if s.strip()]
        if self.dialect == "postgresql":
            # one creator at a time: concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(727100)")
                for s in statements:
                    self._db.execute(s)
        else:
            for s in statements:
                self._db.execute(s)
        self._exec("INSERT INTO ledger_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO NOTHING",
                   (SCHEMA_VERSION,))
        version = self._rows("SELECT value FROM ledger_meta WHERE key = 'schema_version'")[0][0]
        if version != SCHEMA_VERSION:
            raise InputError(f"ledger {self.describe()}: schema version {version}, this rsmon knows {SCHEMA_VERSION}")

    def describe(self) -> str:
        return str(self.path) if self.path else _safe_url(self.url)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- locks --------------------------------------------------------------------------------
    def acquire(self, workflow: str, logical_date: str, owner: str, lease_s: float = 120.0) -> LockHolder | None:
        """Take the lock of (workflow, logical_date) for ``owner``; None when taken, else the holder.

        The lock is free when no row exists, its lease ran out, or its holder's process is gone
        from this host (a crash or ``kill -9``).
        """
        now = time.time()
        me = (owner, socket.gethostname(), os.getpid(), _pid_start(os.getpid()) or 0, now, now + lease_s)
        self._exec(
            "INSERT INTO ledger_locks (workflow, logical_date, owner, host, pid, pid_start, acquired, lease_until) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (workflow, logical_date) DO UPDATE SET owner = excluded.owner, "
            "host = excluded.host, pid = excluded.pid, pid_start = excluded.pid_start, acquired = excluded.acquired, "
            "lease_until = excluded.lease_until WHERE ledger_locks.lease_until < ? OR ledger_locks.owner = ?",
            (workflow, logical_date, *me, now, owner))
        holder = self.holder(workflow, logical_date)
        if holder is None:  # released between the two statements: try again
            return self.acquire(workflow, logical_date, owner, lease_s)
        if holder.owner == owner:
            return None
        if holder.alive_here() is False:
            # compare-and-swap on the dead owner: of several takers exactly one wins
            n = self._exec(
                "UPDATE ledger_locks SET owner = ?, host = ?, pid = ?, pid_start = ?, acquired = ?, lease_until = ? "
                "WHERE workflow = ? AND logical_date = ? AND owner = ?",
                (*me, workflow, logical_date, holder.owner))
            if n == 1:
                log.warning("lock %s %s: took over from %s, whose process is gone", workflow, logical_date,
                            holder.describe())
                return None
            return self.holder(workflow, logical_date)
        return holder

    def holder(self, workflow: str, logical_date: str) -> LockHolder | None:
        rows = self._rows("SELECT owner, host, pid, pid_start, lease_until FROM ledger_locks "
                          "WHERE workflow = ? AND logical_date = ?", (workflow, logical_date))
        return LockHolder(*rows[0]) if rows else None

    def renew(self, workflow: str, logical_date: str, owner: str, lease_s: float = 120.0) -> bool:
        return self._exec("UPDATE ledger_locks SET lease_until = ? WHERE workflow = ? AND logical_date = ? AND owner = ?",
                          (time.time() + lease_s, workflow, logical_date, owner)) == 1

    def release(self, workflow: str, logical_date: str, owner: str) -> None:
        self._exec("DELETE FROM ledger_locks WHERE workflow = ? AND logical_date = ? AND owner = ?",
                   (workflow, logical_date, owner))

    def locks(self) -> list[tuple[str, str, LockHolder]]:
        return [(r[0], r[1], LockHolder(*r[2:])) for r in self._rows(
            "SELECT workflow, logical_date, owner, host, pid, pid_start, lease_until FROM ledger_locks")]

    # ---- runs ---------------------------------------------------------------------------------
    def start_run(self, run_id: str, workflow: str, logical_date: str, *, trigger: str, forced: bool,
                  spec_path: str, spec_sha256: str, executor: str, software: str) -> None:
        self._exec(
            "INSERT INTO ledger_runs (run_id, workflow, logical_date, status, run_trigger, forced, spec_path, spec_sha256, "
            "executor, software, host, pid, started) VALUES (?,?,?,'running',?,?,?,?,?,?,?,?,?)",
            (run_id, workflow, logical_date, trigger, int(forced), spec_path, spec_sha256, executor, software,
             socket.gethostname(), os.getpid(), time.time()))

    def finish_run(self, run_id: str, status: str, message: str = "", log_text: str = "") -> None:
        now = time.time()
        if len(log_text) > MAX_LOG_CHARS:
            log_text = "[... log truncated, see the run's log file ...]\n" + log_text[-MAX_LOG_CHARS:]
        self._exec("UPDATE ledger_runs SET status = ?, message = ?, log = ?, ended = ?, seconds = ? - started "
                   "WHERE run_id = ?", (status, message, log_text, now, now, run_id))

    def abandon_stale(self, workflow: str, logical_date: str, keep_run_id: str) -> list[str]:
        """Mark runs of (workflow, date) still "running" but not ``keep_run_id`` as failed.

        Call it holding the lock: then no live process runs them. Returns their run ids.
        """
        rows = self._rows("SELECT run_id, host, pid FROM ledger_runs WHERE workflow = ? AND logical_date = ? "
                          "AND status = 'running' AND run_id <> ?", (workflow, logical_date, keep_run_id))
        now = time.time()
        stmts = []
        for run_id, host, pid in rows:
            why = f"abandoned: process {pid} on {host} stopped before the run finished (crash or kill)"
            stmts.append(("UPDATE ledger_runs SET status = 'failed', message = ?, ended = ? WHERE run_id = ?",
                          (why, now, run_id)))
            stmts.append(("UPDATE ledger_jobs SET status = 'failed', message = ?, ended = ? WHERE run_id = ? "
                          "AND status = 'running'", (why, now, run_id)))
        if stmts:
            self._many(stmts)
            for run_id, host, pid in rows:
                log.warning("run %s (pid %s on %s) was abandoned; marked failed", run_id, pid, host)
        return [r[0] for r in rows]

    def fail_running_jobs(self, run_id: str, message: str) -> None:
        """Mark the jobs of ``run_id`` still "running" as failed (a run stopped from outside)."""
        self._exec("UPDATE ledger_jobs SET status = 'failed', message = ?, ended = ? WHERE run_id = ? AND status = 'running'",
                   (message, time.time(), run_id))

    def runs(self, workflow: str | None = None, logical_date: str | None = None, limit: int = 50,
             status: str | None = None) -> list[dict[str, Any]]:
        """Runs, newest first, as dicts (without the log text)."""
        sql = ("SELECT run_id, workflow, logical_date, status, run_trigger, forced, executor, host, pid, started, "
               "ended, seconds, message FROM ledger_runs WHERE 1 = 1")
        args: list[Any] = []
        for col, value in (("workflow", workflow), ("logical_date", logical_date), ("status", status)):
            if value is not None:
                sql += f" AND {col} = ?"
                args.append(value)
        sql += " ORDER BY started DESC, run_id DESC LIMIT ?"
        keys = ("run_id", "workflow", "logical_date", "status", "trigger", "forced", "executor", "host", "pid",
                "started", "ended", "seconds", "message")
        return [dict(zip(keys, r)) for r in self._rows(sql, (*args, int(limit)))]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run with its log, jobs, inputs and outputs."""
        rows = self.runs_with_log(run_id)
        if not rows:
            return None
        run = rows[0]
        keys = ("job_id", "product", "status", "job_key", "parameters", "output_dir", "started", "ended", "seconds",
                "attempts", "message", "summary")
        run["jobs"] = []
        sql = ("SELECT job_id, product, status, job_key, parameters, output_dir, started, ended, seconds, attempts, "
               "message, summary FROM ledger_jobs WHERE run_id = ? ORDER BY started, job_id")
        for r in self._rows(sql, (run_id,)):
            job = dict(zip(keys, r))
            job["parameters"] = json.loads(job["parameters"] or "{}")
            job["summary"] = json.loads(job["summary"] or "{}")
            job["inputs"] = [dict(zip(("role", "path", "sha256", "size", "status", "reason"), i)) for i in self._rows(
                "SELECT role, path, sha256, size, status, reason FROM ledger_job_inputs WHERE run_id = ? AND job_id = ?",
                (run_id, job["job_id"]))]
            job["outputs"] = self._outputs(run_id, job["job_id"])
            run["jobs"].append(job)
        return run

    def runs_with_log(self, run_id: str) -> list[dict[str, Any]]:
        keys = ("run_id", "workflow", "logical_date", "status", "trigger", "forced", "executor", "software", "host",
                "pid", "started", "ended", "seconds", "message", "log", "spec_path", "spec_sha256")
        return [dict(zip(keys, r)) for r in self._rows(
            "SELECT run_id, workflow, logical_date, status, run_trigger, forced, executor, software, host, pid, "
            "started, ended, seconds, message, log, spec_path, spec_sha256 FROM ledger_runs WHERE run_id = ?", (run_id,))]

    def is_done(self, workflow: str, logical_date: str) -> bool:
        """Whether a run of (workflow, date) finished as success, partial or skipped."""
        rows = self._rows("SELECT 1 FROM ledger_runs WHERE workflow = ? AND logical_date = ? AND status IN (?, ?, ?) LIMIT 1",
                          (workflow, logical_date, *FINISHED))
        return bool(rows)

    def failures(self, workflow: str, logical_date: str) -> tuple[int, float | None]:
        """Failed runs of (workflow, date) and when the last one ended.

        Runs stopped from outside (interrupted by a signal, abandoned after a crash) do not count:
        they say nothing about the data, and the scheduler catches them up at once.
        """
        rows = self._rows("SELECT COUNT(*), MAX(ended) FROM ledger_runs WHERE workflow = ? AND logical_date = ? "
                          "AND status = 'failed' AND message NOT LIKE ? AND message NOT LIKE ?",
                          (workflow, logical_date, "interrupted%", "abandoned%"))
        return int(rows[0][0] or 0), rows[0][1]

    # ---- jobs ---------------------------------------------------------------------------------
    def start_job(self, run_id: str, workflow: str, logical_date: str, job_id: str, product: str, job_key: str,
                  parameters: dict, output_dir: str) -> None:
        self._exec(
            "INSERT INTO ledger_jobs (run_id, job_id, workflow, logical_date, product, status, job_key, parameters, "
            "output_dir, started) VALUES (?,?,?,?,?,'running',?,?,?,?) ON CONFLICT (run_id, job_id) DO UPDATE "
            "SET status = 'running', job_key = excluded.job_key, started = excluded.started",
            (run_id, job_id, workflow, logical_date, product, job_key, json.dumps(parameters, default=str),
             output_dir, time.time()))

    def finish_job(self, run_id: str, job_id: str, status: str, *, message: str = "", attempts: int = 0,
                   summary: dict | None = None, inputs: Sequence[dict] = (), outputs: Sequence[dict] = ()) -> None:
        """Record a job's end, its inputs and its published outputs in one transaction."""
        now = time.time()
        stmts: list[tuple[str, Sequence[Any]]] = [
            ("UPDATE ledger_jobs SET status = ?, message = ?, attempts = ?, summary = ?, ended = ?, "
             "seconds = ? - started WHERE run_id = ? AND job_id = ?",
             (status, message, attempts, json.dumps(summary or {}, default=str), now, now, run_id, job_id)),
            ("DELETE FROM ledger_job_inputs WHERE run_id = ? AND job_id = ?", (run_id, job_id)),
            ("DELETE FROM ledger_job_outputs WHERE run_id = ? AND job_id = ?", (run_id, job_id)),
        ]
        for i in inputs:
            stmts.append(("INSERT INTO ledger_job_inputs (run_id, job_id, role, path, sha256, size, status, reason) "
                          "VALUES (?,?,?,?,?,?,?,?)", (run_id, job_id, i.get("role"), i.get("path"), i.get("sha256"),
                                                       i.get("size"), i.get("status", "used"), i.get("reason"))))
        for o in outputs:
            stmts.append(("INSERT INTO ledger_job_outputs (run_id, job_id, path, sha256, size, mtime_ns) VALUES (?,?,?,?,?,?)",
                          (run_id, job_id, o["path"], o.get("sha256"), o.get("size"), o.get("mtime_ns"))))
        self._many(stmts)

    def _outputs(self, run_id: str, job_id: str) -> list[dict[str, Any]]:
        return [dict(zip(("path", "sha256", "size", "mtime_ns"), r)) for r in self._rows(
            "SELECT path, sha256, size, mtime_ns FROM ledger_job_outputs WHERE run_id = ? AND job_id = ? ORDER BY path",
            (run_id, job_id))]

    def last_job(self, workflow: str, job_id: str, *, job_key: str | None = None, logical_date: str | None = None,
                 before_date: str | None = None) -> JobRow | None:
        """The newest successful or partial job ``job_id`` of ``workflow`` (same key / date / earlier date)."""
        sql = ("SELECT j.run_id, j.job_id, j.logical_date, j.status, j.job_key, j.output_dir FROM ledger_jobs j "
               "WHERE j.workflow = ? AND j.job_id = ? AND j.status IN ('success', 'partial')")
        args: list[Any] = [workflow, job_id]
        if job_key is not None:
            sql += " AND j.job_key = ?"
            args.append(job_key)
        if logical_date is not None:
            sql += " AND j.logical_date = ?"
            args.append(logical_date)
        if before_date is not None:
            sql += " AND j.logical_date < ?"
            args.append(before_date)
        rows = self._rows(sql + " ORDER BY j.logical_date DESC, j.ended DESC LIMIT 1", args)
        if not rows:
            return None
        row = JobRow(*rows[0])
        row.outputs = self._outputs(row.run_id, row.job_id)
        return row

    # ---- quarantine ---------------------------------------------------------------------------
    def quarantine(self, path: str, fingerprint: str, reason: str, run_id: str, moved_to: str | None = None) -> bool:
        """Record a bad input; False when it was already quarantined (same path and fingerprint)."""
        n = self._exec("INSERT INTO ledger_quarantine (path, fingerprint, reason, run_id, first_seen, moved_to) "
                       "VALUES (?,?,?,?,?,?) ON CONFLICT (path, fingerprint) DO NOTHING",
                       (path, fingerprint, reason, run_id, time.time(), moved_to))
        return n == 1

    def quarantined(self) -> dict[tuple[str, str], str]:
        """(path, fingerprint) -> reason of every quarantined input."""
        return {(r[0], r[1]): r[2] for r in self._rows("SELECT path, fingerprint, reason FROM ledger_quarantine")}


def _safe_url(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


class LeaseKeeper:
    """Renew the leases of the locks a process holds, from a background thread.

    Uses its own ledger connection. A lease that cannot be renewed (someone took the lock over,
    which happens only when this process looked dead) is logged.
    """

    def __init__(self, url: str, lease_s: float = 120.0):
        self.url = url
        self.lease_s = lease_s
        self._held: dict[tuple[str, str], str] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, workflow: str, logical_date: str, owner: str) -> None:
        with self._mutex:
            self._held[(workflow, logical_date)] = owner
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="rsmon-lease", daemon=True)
            self._thread.start()

    def drop(self, workflow: str, logical_date: str) -> None:
        with self._mutex:
            self._held.pop((workflow, logical_date), None)

    def _loop(self) -> None:
        ledger = None
        try:
            while not self._stop.wait(self.lease_s / 4):
                with self._mutex:
                    held = dict(self._held)
                if not held:
                    continue
                try:
                    ledger = ledger or Ledger(self.url)
                    for (workflow, day), owner in held.items():
                        if not ledger.renew(workflow, day, owner, self.lease_s):
                            log.error("lock %s %s: lease lost (taken over by another run)", workflow, day)
                except Exception as exc:  # the ledger may be briefly unreachable; try again next round
                    log.warning("lease renewal failed: %s", exc)
                    ledger = None
        finally:
            if ledger is not None:
                ledger.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
