"""Workflow files: the shipped ones load; every kind of mistake is reported with its line."""

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from rsmon.errors import InputError
from rsmon.workflow.spec import Duration, SpecError, load_workflow, schema

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
name: t
schedule:
  cron: "0 10 * * *"
  timezone: Asia/Shanghai
jobs:
  - id: no2
    product: no2-l3
    inputs:
      l2: {collection: s5p-l2-no2, bbox: [100, 20, 120, 40]}
    parameters:
      bbox: [100, 20, 120, 40]
      res: 0.1
"""


def load(tmp_path, text: str):
    path = tmp_path / "wf.yaml"
    path.write_text(text, encoding="utf-8")
    return load_workflow(path)


def errors(tmp_path, text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text)
    assert isinstance(info.value, InputError)  # one line and exit 2 in the CLI
    return info.value.errors


@pytest.mark.parametrize("name", ["demo", "no2-daily", "fire-daily", "redline-monthly"])
def test_shipped_workflows_are_valid(name):
    wf = load_workflow(ROOT / "workflows" / f"{name}.yaml")
    assert wf.name == name and wf.jobs
    if name != "demo":
        assert wf.schedule is not None and wf.schedule.timezone == "Asia/Shanghai"


def test_schema_is_a_valid_json_schema():
    Draft202012Validator.check_schema(schema())


def test_defaults(tmp_path):
    wf = load(tmp_path, GOOD)
    job = wf.jobs[0]
    assert job.output == "{product}/{version}/{period}" and job.period == "day" and wf.version == "v1"
    q = job.inputs["l2"]
    assert q.window(date(2019, 6, 12)) == (datetime(2019, 6, 12, tzinfo=timezone.utc),
                                           datetime(2019, 6, 13, tzinfo=timezone.utc))
    assert wf.schedule.catchup == 3 and wf.schedule.max_attempts == 3
    # 10:00 in Beijing on the 13th is 02:00 UTC: the run processes the 12th
    assert wf.schedule.logical_date_of(datetime(2019, 6, 13, 2, 0, tzinfo=timezone.utc)) == date(2019, 6, 12)
    assert wf.jobs[0].line == 6


@pytest.mark.parametrize("text,line,fragment", [
    (GOOD.replace("      res: 0.1", "      res: 0.1\n      qa: 0.5"), 13, "unknown key 'qa'"),
    (GOOD.replace('cron: "0 10 * * *"', 'cron: "0 25 * * *"'), 3, "not a valid cron expression"),
    (GOOD.replace("Asia/Shanghai", "Asia/Beijing"), 4, "unknown time zone 'Asia/Beijing'"),
    (GOOD.replace("res: 0.1", "res: fine"), 12, "'fine' is not of type 'number'"),
    (GOOD.replace("product: no2-l3", "product: no3-l3"), 7, "'no3-l3' is not one of"),
    (GOOD.replace("name: t\n", "name: t\nowner: me\n"), 2, "unknown key 'owner'"),
    (GOOD.replace("      l2: {collection", "      l3: {collection"), 9, "unknown key 'l3'"),
    (GOOD.replace("bbox: [100, 20, 120, 40]}", "bbox: [100, 20, 120, 40], window: {start: yesterday, end: P1D}}"),
     9, "ISO 8601 duration"),
    (GOOD + "    output: \"{product}/{when}\"\n", 13, "unknown template variable {when}"),
    (GOOD + "    output: \"{product}/latest\"\n", 13, "must contain {period}"),
    (GOOD + "    alerts: {store: \"sqlite:///x.db\"}\n", 13, "makes no alerts"),
    (GOOD.replace("  timezone: Asia/Shanghai\n", "  timezone: Asia/Shanghai\n  cron: \"1 1 * * *\"\n"), 5,
     "duplicate key 'cron'"),
    (GOOD.replace("      res: 0.1", "      res: 0.1\n     broken: [1, 2"), 13, "not valid YAML"),
    (GOOD.replace("    inputs:\n      l2: {collection: s5p-l2-no2, bbox: [100, 20, 120, 40]}\n", ""), 6,
     "'inputs' is a required property"),
])
def test_errors_name_the_line(tmp_path, text, line, fragment):
    found = errors(tmp_path, text)
    assert any(ln == line and fragment in msg for ln, _, msg in found), found


def test_all_errors_are_reported_at_once(tmp_path):
    text = GOOD.replace("Asia/Shanghai", "Mars/Olympus").replace("res: 0.1", "res: 0.1\n      qa: 1")
    found = errors(tmp_path, text)
    assert {ln for ln, _, _ in found} == {4, 13}  # the time zone and the unknown parameter
    with pytest.raises(SpecError) as info:
        load(tmp_path, text)
    assert f"{tmp_path / 'wf.yaml'}:13:" in str(info.value)  # file:line in the one-line message


def test_two_jobs_writing_one_folder(tmp_path):
    job = GOOD.split("jobs:\n")[1]
    text = GOOD + job.replace("id: no2", "id: no2b")
    found = errors(tmp_path, text)
    assert any("would write to the same folder" in msg for _, _, msg in found)
    text = GOOD.replace("    parameters:", "    output: \"{product}/{job}/{period}\"\n    parameters:")
    text += job.replace("id: no2", "id: no2b").replace("    parameters:", "    output: \"{product}/{job}/{period}\"\n"
                                                                         "    parameters:")
    assert len(load(tmp_path, text).jobs) == 2


def test_fire_detector_parameters_are_checked(tmp_path):
    text = """\
name: f
jobs:
  - id: fire
    product: fire
    inputs: {granules: {collection: viirs-l1b-img}}
    parameters:
      detector: {no_such_threshold: 3}
"""
    found = errors(tmp_path, text)
    assert any(ln == 7 and "no_such_threshold" in msg for ln, _, msg in found), found


@pytest.mark.parametrize("text,expected", [
    ("P1D", date(2019, 6, 13)), ("-P1D", date(2019, 6, 11)), ("-P1M4D", date(2019, 5, 8)),
    ("P0D", date(2019, 6, 12)), ("-P1Y", date(2018, 6, 12)), ("+P2W", date(2019, 6, 26)),
])
def test_durations(text, expected):
    assert Duration.parse(text).add_to(date(2019, 6, 12)) == expected


def test_duration_with_time_and_bad_text():
    assert Duration.parse("PT6H").add_to(datetime(2019, 6, 12)) == datetime(2019, 6, 12, 6)
    assert Duration.parse("PT1H").total_seconds() == 3600
    for bad in ("P", "1D", "PT", "P1H", "-"):
        with pytest.raises(ValueError):
            Duration.parse(bad)
