"""Fault tests with real processes: kill -9 mid-run, two schedulers at once, SIGTERM to a scheduler."""

import os
import signal
import time
import uuid
from datetime import datetime

import pytest

from rsmon.workflow.ledger import Ledger, ledger_url
from rsmon.sim.viirs import simulate_granule
from workflow_scenes import popen, rsmon, s5p_day, science_values, temp_leftovers, write_workflow

PG = os.environ.get("RSMON_TEST_POSTGRES_URL")
SCHEDULE = """\
schedule:
  cron: "0 6 * * *"
  timezone: Asia/Shanghai
  catchup: 2
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    s5p_day(root / "s5p")
    # a full-width granule: its fire job takes a few seconds, time to kill the run in the middle of it
    simulate_granule(root / "viirs", seed=3, start=datetime(2019, 6, 12, 5, 24), n_lines=1600, n_pixels=1600,
                     n_fires=40, center=(117.0, 34.5))
    return root


def _wait(predicate, timeout: float, what: str, proc=None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended first ({proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _executing(home, product) -> bool:
    """Whether a job of ``product`` is executing now (its staging folder exists)."""
    return any((home / "products" / product / "v1").glob(".2019-06-12.rsmon-*.partial"))


def _job_status(home, job_id):
    with Ledger(ledger_url(home)) as led:
        runs = led.runs()
        if not runs:
            return None, None
        run = led.run(runs[0]["run_id"])
    jobs = {j["job_id"]: j["status"] for j in run["jobs"]}
    return run["status"], jobs.get(job_id)


def test_kill_9_mid_run_then_rerun_completes_identically(data, tmp_path):
    wf = write_workflow(tmp_path / "wf.yaml", [data / "s5p", data / "viirs"])
    home = tmp_path / "home"
    proc = popen("run", str(wf), "--date", "2019-06-12", "--home", str(home))
    try:
        _wait(lambda: _executing(home, "fire"), 180, "the fire job to start", proc)
        proc.send_signal(signal.SIGKILL)  # the no2 job is published, the fire job is under way
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL

    again = rsmon("run", str(wf), "--date", "2019-06-12", "--home", str(home))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "tiny 2019-06-12: success [no2 skipped, fire success" in again.stdout

    clean = tmp_path / "clean"
    assert rsmon("run", str(wf), "--date", "2019-06-12", "--home", str(clean)).returncode == 0
    for product in ("no2-l3", "fire"):
        got = science_values(home / "products" / product / "v1" / "2019-06-12")
        want = science_values(clean / "products" / product / "v1" / "2019-06-12")
        assert got and got == want, product
    assert temp_leftovers(home) == []
    assert not any((home / "work").iterdir())

    with Ledger(ledger_url(home)) as led:
        runs = led.runs()
        assert [r["status"] for r in runs] == ["success", "failed"]
        assert "abandoned" in runs[1]["message"]
        killed = led.run(runs[1]["run_id"])
        assert {j["job_id"]: j["status"] for j in killed["jobs"]} == {"no2": "success", "fire": "failed"}
        assert led.locks() == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_schedulers_run_each_logical_date_once(data, tmp_path, backend):
    if backend == "postgresql" and not PG:
        pytest.skip("set RSMON_TEST_POSTGRES_URL to run the schedulers on a PostgreSQL ledger")
    name = f"two-{uuid.uuid4().hex[:8]}"  # a fresh workflow name: a shared database holds earlier runs
    wf = write_workflow(tmp_path / "wf.yaml", [data / "s5p"], jobs=("no2",), schedule=SCHEDULE, name=name)
    text = wf.read_text().replace("window: {start: P0D, end: P1D}", "window: {start: -P5D, end: P5D}")
    wf.write_text(text)
    home = tmp_path / "home"
    url = PG if backend == "postgresql" else ledger_url(home)
    args = ("schedule", str(wf), "--home", str(home), "--ledger", url, "--once", "--now", "2019-06-14T07:00:00+08:00")
    a, b = popen(*args), popen(*args)
    out_a, err_a = a.communicate(timeout=300)
    out_b, err_b = b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    with Ledger(url) as led:
        runs = led.runs(workflow=name)
    # 06:00 Beijing on the 14th, 13th and 12th: logical dates 13th, 12th, 11th, each run exactly once
    assert sorted(r["logical_date"] for r in runs) == ["2019-06-11", "2019-06-12", "2019-06-13"]
    assert {r["status"] for r in runs} == {"success"} and {r["trigger"] for r in runs} == {"schedule"}
    assert len(out_a.splitlines()) + len(out_b.splitlines()) >= 3
    # a third look finds nothing due
    third = rsmon(*args)
    assert third.returncode == 0 and third.stdout == ""


def test_sigterm_stops_a_scheduler_cleanly_and_the_next_start_catches_up(data, tmp_path):
    wf = write_workflow(tmp_path / "wf.yaml", [data / "s5p", data / "viirs"], jobs=("fire",),
                        schedule=SCHEDULE.replace("catchup: 2", "catchup: 0"))
    home = tmp_path / "home"
    args = ("schedule", str(wf), "--home", str(home), "--now", "2019-06-13T07:00:00+08:00", "--poll", "30")
    proc = popen(*args)
    try:
        _wait(lambda: _executing(home, "fire"), 180, "the fire job to start", proc)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert stopped_in < 15 and "SIGTERM received: stopping (interrupting the current run)" in err
    with Ledger(ledger_url(home)) as led:
        [run] = led.runs()
        assert run["status"] == "failed" and "interrupted" in run["message"]
        assert led.locks() == []
    assert temp_leftovers(home) == []

    # idle: a SIGTERM ends the wait at once
    proc = popen(*args)
    try:
        _wait(lambda: _job_status(home, "fire")[0] == "success", 180, "the catch-up run", proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 5 and proc.returncode == 0
    finally:
        proc.kill()
    with Ledger(ledger_url(home)) as led:
        assert [r["status"] for r in led.runs()] == ["success", "failed"]


def test_an_interrupt_wrapped_by_python_is_found():
    """SIGTERM's Interrupted raised inside a dataclass field's __set_name__ (a job module being
    imported) reaches the job as a RuntimeError; it must still stop the run, not fail the job."""
    import dataclasses

    from rsmon.workflow.jobs import wrapped_interrupt
    from rsmon.workflow.runner import Interrupted

    class Hook:
        def __set_name__(self, owner, name):
            raise Interrupted("SIGTERM")

    with pytest.raises(RuntimeError) as caught:
        @dataclasses.dataclass
        class Result:  # noqa: F841 - defining it is the point
            paths: object = Hook()
    found = wrapped_interrupt(caught.value)
    assert isinstance(found, Interrupted) and str(found) == "SIGTERM"
    assert wrapped_interrupt(RuntimeError("plain")) is None
    try:
        try:
            raise ValueError("inner")
        except ValueError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        assert wrapped_interrupt(exc) is None
