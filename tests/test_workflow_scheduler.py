"""The scheduler's arithmetic: cron + time zone -> logical dates, bounded catch-up oldest first,
retries of failed dates, start dates, and how it reads (and re-reads) the workflow files."""

import logging
import os
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from rsmon.errors import InputError
from rsmon.workflow.ledger import Ledger
from rsmon.workflow.runner import RunReport
from rsmon.workflow.scheduler import Scheduler, due_dates, workflow_files
from rsmon.workflow.spec import load_workflow

SHANGHAI = ZoneInfo("Asia/Shanghai")

SPEC = """\
name: {name}
schedule:
  cron: "{cron}"
  timezone: Asia/Shanghai
  catchup: {catchup}
{extra}jobs:
  - id: no2
    product: no2-l3
    inputs: {{l2: {{collection: s5p-l2-no2}}}}
    parameters: {{bbox: [100, 20, 120, 40], res: 0.5}}
"""


def spec(tmp_path, name="wf", cron="0 10 * * *", catchup=3, extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, cron=cron, catchup=catchup, extra=extra))
    return path


@pytest.fixture
def ledger(tmp_path):
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as led:
        yield led


def record(led, name, day, status, message=""):
    run_id = f"{name}-{day}-{status}-{os.urandom(3).hex()}"
    led.start_run(run_id, name, day, trigger="schedule", forced=False, spec_path="", spec_sha256="", executor="",
                  software="")
    led.finish_run(run_id, status, message)


def test_due_dates_follow_cron_time_zone_and_logical_offset(tmp_path, ledger):
    wf = load_workflow(spec(tmp_path, catchup=0))
    # 10:00 Beijing = 02:00 UTC: at 01:59 UTC on the 13th the latest fire was on the 12th (for the 11th)
    assert due_dates(wf, datetime(2019, 6, 13, 1, 59, tzinfo=timezone.utc), ledger)[0] == [date(2019, 6, 11)]
    assert due_dates(wf, datetime(2019, 6, 13, 2, 0, tzinfo=timezone.utc), ledger)[0] == [date(2019, 6, 12)]
    # the fire time's local (Beijing) date minus one day
    assert due_dates(wf, datetime(2019, 6, 13, 10, 0, tzinfo=SHANGHAI), ledger)[0] == [date(2019, 6, 12)]


def test_catch_up_is_bounded_oldest_first_and_skips_finished_dates(tmp_path, ledger):
    wf = load_workflow(spec(tmp_path, catchup=3))
    now = datetime(2019, 6, 20, 12, 0, tzinfo=SHANGHAI)
    due, beyond = due_dates(wf, now, ledger)
    assert due == [date(2019, 6, 16), date(2019, 6, 17), date(2019, 6, 18), date(2019, 6, 19)]
    assert beyond == [date(2019, 6, 15)]
    record(ledger, "wf", "2019-06-17", "success")
    record(ledger, "wf", "2019-06-18", "partial")
    record(ledger, "wf", "2019-06-15", "skipped")
    due, beyond = due_dates(wf, now, ledger)
    assert due == [date(2019, 6, 16), date(2019, 6, 19)] and beyond == []


def test_failed_dates_are_retried_after_a_while_up_to_max_attempts(tmp_path, ledger):
    wf = load_workflow(spec(tmp_path, catchup=0, extra="  max_attempts: 2\n  retry_after: PT0S\n"))
    now = datetime(2019, 6, 13, 12, 0, tzinfo=SHANGHAI)
    record(ledger, "wf", "2019-06-12", "failed", "no2: inputs.l2: 0 item(s)")
    assert due_dates(wf, now, ledger)[0] == [date(2019, 6, 12)]
    record(ledger, "wf", "2019-06-12", "failed", "no2: inputs.l2: 0 item(s)")
    assert due_dates(wf, now, ledger)[0] == []  # gave up after 2 attempts
    wf = load_workflow(spec(tmp_path, name="late", catchup=0, extra="  retry_after: PT1H\n"))
    record(ledger, "late", "2019-06-12", "failed", "no data yet")
    assert due_dates(wf, now, ledger)[0] == []  # the last attempt is less than an hour old
    record(ledger, "late", "2019-06-12", "failed", "interrupted (Interrupted: SIGTERM)")
    assert due_dates(wf, now, ledger)[0] == []  # still waiting for the data failure's hour


def test_start_date_and_monthly_logical_dates(tmp_path, ledger):
    wf = load_workflow(spec(tmp_path, cron="0 3 5 * *", catchup=2,
                            extra="  logical_date: -P1M4D\n  start_date: 2019-05-01\n"))
    due, beyond = due_dates(wf, datetime(2019, 8, 20, tzinfo=SHANGHAI), ledger)
    assert due == [date(2019, 5, 1), date(2019, 6, 1), date(2019, 7, 1)] and beyond == []


class FakeRunner:
    def __init__(self, ledger):
        self.ledger = ledger
        self.calls = []

    def run(self, workflow, dates, only_if_due=False):
        assert only_if_due
        self.calls.append((workflow.name, list(dates)))
        return [RunReport(workflow.name, d, "success") for d in dates]


def test_tick_runs_due_workflows_and_reports_bad_files_once(tmp_path, ledger, caplog):
    folder = tmp_path / "workflows"
    folder.mkdir()
    spec(folder, name="a", catchup=0)
    spec(folder, name="b", catchup=1)
    (folder / "broken.yaml").write_text("name: broken\njobs: []\n")
    manual = (folder / "a.yaml").read_text().replace("name: a", "name: manual")
    (folder / "manual.yaml").write_text(manual[: manual.index("schedule:")] + manual[manual.index("jobs:"):])
    (folder / "notes.txt").write_text("ignored")
    runner = FakeRunner(ledger)
    sched = Scheduler([folder], runner, clock=lambda: datetime(2019, 6, 13, 12, 0, tzinfo=SHANGHAI))
    with caplog.at_level(logging.ERROR, logger="rsmon"):
        reports = sched.tick()
        sched.tick()
    assert runner.calls[:2] == [("a", [date(2019, 6, 12)]), ("b", [date(2019, 6, 11), date(2019, 6, 12)])]
    assert len(reports) == 3
    errors = [r.getMessage() for r in caplog.records if "broken.yaml" in r.getMessage()]
    assert len(errors) == 1 and "broken.yaml:2" in errors[0]  # reported once, with the line
    # an edited file is read again
    path = folder / "a.yaml"
    path.write_text(path.read_text().replace('cron: "0 10 * * *"', 'cron: "0 13 * * *"'))
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert {w.name: w.schedule.cron for w in sched.workflows()}["a"] == "0 13 * * *"
    assert sched.seconds_to_next(sched.workflows()) <= 60


def test_workflow_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        workflow_files([tmp_path / "missing"])
    one = spec(tmp_path)
    assert workflow_files([tmp_path]) == [one] == workflow_files([one])
