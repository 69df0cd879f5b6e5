"""The run ledger: locks safe across processes (lease, dead-owner takeover), run/job records.

SQLite always; PostgreSQL too when RSMON_TEST_POSTGRES_URL names a database to use
(e.g. postgresql://rsmon:rsmon@localhost/rsmon_test)."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from rsmon.errors import InputError
from rsmon.workflow.ledger import LeaseKeeper, Ledger, ledger_url

PG = os.environ.get("RSMON_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    if not PG:
        pytest.skip("set RSMON_TEST_POSTGRES_URL to test the PostgreSQL ledger")
    with Ledger(PG) as led:  # a clean slate: the ledger_* tables are the ledger's own
        for table in ("job_inputs", "job_outputs", "jobs", "runs", "locks", "quarantine"):
            led._exec(f"DELETE FROM ledger_{table}")
    return PG


def test_url_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("RSMON_LEDGER", raising=False)
    assert ledger_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'ledger.sqlite'}"
    monkeypatch.setenv("RSMON_LEDGER", "postgresql://x/y")
    assert ledger_url(tmp_path) == "postgresql://x/y"
    assert ledger_url(tmp_path, "sqlite:///other.db") == "sqlite:///other.db"
    with pytest.raises(InputError, match="expected sqlite"):
        Ledger("mysql://x")


def test_lock_acquire_busy_renew_release(url):
    with Ledger(url) as a, Ledger(url) as b:
        assert a.acquire("wf", "2019-06-12", "run-a", 60) is None
        holder = b.acquire("wf", "2019-06-12", "run-b", 60)
        assert holder is not None and holder.owner == "run-a" and holder.pid == os.getpid()
        assert b.acquire("wf", "2019-06-13", "run-b", 60) is None  # another date is another lock
        assert a.acquire("wf", "2019-06-12", "run-a", 60) is None  # re-entrant for its owner
        assert a.renew("wf", "2019-06-12", "run-a") and not b.renew("wf", "2019-06-12", "run-b")
        b.release("wf", "2019-06-12", "run-b")  # not the owner: nothing happens
        assert b.holder("wf", "2019-06-12").owner == "run-a"
        a.release("wf", "2019-06-12", "run-a")
        assert b.acquire("wf", "2019-06-12", "run-b", 60) is None


def test_expired_lease_is_taken_over(url):
    with Ledger(url) as led:
        assert led.acquire("wf", "d", "old", lease_s=0.2) is None
        assert led.acquire("wf", "d", "new", 60) is not None
        time.sleep(0.3)
        assert led.acquire("wf", "d", "new", 60) is None
        assert led.holder("wf", "d").owner == "new"


def _python(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True, **kw)


def test_lock_of_a_dead_process_is_taken_over(url):
    proc = _python(f"""
        from rsmon.workflow.ledger import Ledger
        led = Ledger({url!r})
        assert led.acquire("wf", "d", "crashed", 3600) is None
        """)  # exits without releasing, lease of an hour
    assert proc.wait(60) == 0
    with Ledger(url) as led:
        assert led.holder("wf", "d").owner == "crashed"
        assert led.acquire("wf", "d", "next", 60) is None
        assert led.holder("wf", "d").owner == "next"


def test_one_of_many_processes_gets_the_lock(url, tmp_path):
    go, done = tmp_path / "go", tmp_path / "done"
    procs = [_python(f"""
        import time, pathlib
        from rsmon.workflow.ledger import Ledger
        led = Ledger({url!r})
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.005)
        print("won" if led.acquire("wf", "d", "p{i}", 60) is None else "busy", flush=True)
        while not pathlib.Path({str(done)!r}).exists():  # stay alive: a dead holder's lock is free
            time.sleep(0.01)
        """) for i in range(6)]
    time.sleep(1.0)
    go.touch()
    lines = []
    for p in procs:
        lines.append(p.stdout.readline().strip())
    done.touch()
    for p in procs:
        assert p.wait(60) == 0
    assert sorted(lines) == ["busy"] * 5 + ["won"]


def test_lease_keeper_renews(url):
    with Ledger(url) as led:
        assert led.acquire("wf", "d", "me", lease_s=0.4) is None
        keeper = LeaseKeeper(url, lease_s=0.4)
        keeper.hold("wf", "d", "me")
        time.sleep(1.0)
        assert led.holder("wf", "d").lease_until > time.time()
        keeper.drop("wf", "d")
        keeper.stop()


def test_run_and_job_records(url):
    with Ledger(url) as led:
        led.start_run("r1", "wf", "2019-06-12", trigger="cli", forced=False, spec_path="/w.yaml", spec_sha256="ab",
                      executor="threads", software="rsmon 0")
        led.start_job("r1", "wf", "2019-06-12", "no2", "no2-l3", "key1", {"res": 0.1}, "/out")
        led.finish_job("r1", "no2", "success", attempts=1, summary={"periods": ["2019-06-12"]},
                       inputs=[{"role": "l2", "path": "/a.nc", "sha256": "aa", "size": 3}],
                       outputs=[{"path": "/out/x.tif", "sha256": "bb", "size": 5, "mtime_ns": 7}])
        assert not led.is_done("wf", "2019-06-12")
        led.finish_run("r1", "success", "", "line 1\nline 2")
        assert led.is_done("wf", "2019-06-12")
        run = led.run("r1")
        assert run["status"] == "success" and run["log"] == "line 1\nline 2" and run["seconds"] >= 0
        job = run["jobs"][0]
        assert job["parameters"] == {"res": 0.1} and job["summary"] == {"periods": ["2019-06-12"]}
        assert job["inputs"][0]["sha256"] == "aa" and job["inputs"][0]["status"] == "used"
        assert job["outputs"] == [{"path": "/out/x.tif", "sha256": "bb", "size": 5, "mtime_ns": 7}]
        assert led.last_job("wf", "no2", job_key="key1").run_id == "r1"
        assert led.last_job("wf", "no2", job_key="other") is None
        assert led.last_job("wf", "no2", before_date="2019-06-12") is None
        assert led.last_job("wf", "no2", before_date="2019-06-13").outputs[0]["path"] == "/out/x.tif"
        assert [r["run_id"] for r in led.runs(workflow="wf")] == ["r1"]


def test_abandoned_runs_and_quarantine(url):
    with Ledger(url) as led:
        led.start_run("dead", "wf", "d", trigger="cli", forced=False, spec_path="", spec_sha256="", executor="",
                      software="")
        led.start_job("dead", "wf", "d", "j", "fire", "k", {}, "")
        assert led.abandon_stale("wf", "d", keep_run_id="alive") == ["dead"]
        run = led.run("dead")
        assert run["status"] == "failed" and "abandoned" in run["message"] and run["jobs"][0]["status"] == "failed"
        assert led.failures("wf", "d")[0] == 0  # a crash says nothing about the data: caught up at once
        led.start_run("nodata", "wf", "d", trigger="schedule", forced=False, spec_path="", spec_sha256="",
                      executor="", software="")
        led.finish_run("nodata", "failed", "no2: inputs.l2: 0 item(s)")
        assert led.failures("wf", "d")[0] == 1
        assert led.quarantine("/x.nc", "sha", "truncated", "dead") is True
        assert led.quarantine("/x.nc", "sha", "truncated", "dead") is False
        assert led.quarantined() == {("/x.nc", "sha"): "truncated"}
