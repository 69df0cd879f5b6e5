"""The runner: ledger records, idempotent skips, quarantine of bad inputs (partial), retries of
transient errors, missing inputs, backfills, locks, SIGTERM, alerts, catalogs, exit codes."""

import dataclasses
import json
import shutil
import signal
import threading
import time
from datetime import date
from pathlib import Path

import pytest
import yaml

from rsmon.errors import FormatError, RsmonError
from rsmon.provenance import sha256_file
from rsmon.workflow import kinds
from rsmon.workflow.cli import main
from rsmon.workflow.ledger import Ledger, ledger_url
from rsmon.workflow.runner import run_workflow
from workflow_scenes import DAY, ROOT, s5p_day, temp_leftovers, viirs_granule, write_workflow

TAIZHOU = ROOT / "seeds" / "landsat-cd-taizhou-nanjing" / "Taizhou"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {"s5p": s5p_day(root / "s5p"), "viirs": viirs_granule(root / "viirs"), "root": root}


def ledger(home: Path) -> Ledger:
    return Ledger(ledger_url(home))


def test_run_records_everything_and_rerun_is_skipped(data, tmp_path):
    wf = write_workflow(tmp_path / "wf.yaml", [data["root"] / "s5p", data["root"] / "viirs"])
    home = tmp_path / "home"
    [report] = run_workflow(wf, DAY, home=home)
    assert report.status == "success" and report.exit_code == 0, report.summary()
    assert [(j.job_id, j.status) for j in report.jobs] == [("no2", "success"), ("fire", "success")]
    no2_dir = home / "products" / "no2-l3" / "v1" / "2019-06-12"
    fire_dir = home / "products" / "fire" / "v1" / "2019-06-12"
    assert sorted(p.name for p in no2_dir.iterdir()) == ["rsmon_no2_l3_day_2019-06-12_0.1deg.nc",
                                                          "rsmon_no2_l3_day_2019-06-12_0.1deg.tif"]
    assert (fire_dir / "fires.csv").is_file() and (fire_dir / "validation" / "stats.json").is_file()
    assert temp_leftovers(home) == []

    with ledger(home) as led:
        run = led.run(report.run_id)
    assert run["status"] == "success" and run["trigger"] == "cli" and run["seconds"] > 0
    assert "run " + report.run_id in run["log"] and Path(report.log_file).read_text().count("\n") > 3
    no2 = next(j for j in run["jobs"] if j["job_id"] == "no2")
    assert no2["parameters"]["res"] == 0.1 and no2["status"] == "success" and no2["seconds"] > 0
    assert {i["path"]: i["sha256"] for i in no2["inputs"]} == {str(p.resolve()): sha256_file(p) for p in data["s5p"]}
    assert {Path(o["path"]).name for o in no2["outputs"]} == {p.name for p in no2_dir.iterdir()}
    assert all(o["sha256"] == sha256_file(o["path"]) for o in no2["outputs"])
    fire = next(j for j in run["jobs"] if j["job_id"] == "fire")
    assert fire["summary"]["validation"]["n_reference"] == 30
    assert any(i["role"] == "validation:references" for i in fire["inputs"])

    # STAC: the L3 item holds both formats, its hrefs reach the published files; fire and validation items
    cat = home / "catalogs" / "products"
    item_file = cat / "rsmon-no2-l3" / "rsmon_no2_l3_day_2019-06-12_0.1deg" / "rsmon_no2_l3_day_2019-06-12_0.1deg.json"
    item = json.loads(item_file.read_text())
    assert set(item["assets"]) == {"cog", "netcdf"}
    for asset in item["assets"].values():
        assert (item_file.parent / asset["href"]).resolve().parent == no2_dir.resolve()
    fire_item = json.loads((cat / "rsmon-fire" / "tiny-fire-2019-06-12" / "tiny-fire-2019-06-12.json").read_text())
    assert "fires.csv" in fire_item["assets"] and fire_item["properties"]["rsmon:run_id"] == report.run_id
    assert (cat / "rsmon-validation" / "tiny-fire-2019-06-12-validation").is_dir()

    # same inputs and parameters: skipped, nothing rewritten
    stamp = (no2_dir / "rsmon_no2_l3_day_2019-06-12_0.1deg.tif").stat().st_mtime_ns
    [again] = run_workflow(wf, DAY, home=home)
    assert again.status == "skipped" and again.exit_code == 0
    assert all("same inputs and parameters" in j.message for j in again.jobs)
    assert (no2_dir / "rsmon_no2_l3_day_2019-06-12_0.1deg.tif").stat().st_mtime_ns == stamp

    # --force redoes; a changed parameter redoes only that job
    [forced] = run_workflow(wf, DAY, home=home, force=True)
    assert [j.status for j in forced.jobs] == ["success", "success"]
    write_workflow(wf, [data["root"] / "s5p", data["root"] / "viirs"], extra_no2=", qa_min: 0.5")
    [changed] = run_workflow(wf, DAY, home=home)
    assert [(j.job_id, j.status) for j in changed.jobs] == [("no2", "success"), ("fire", "skipped")]
    # a published file changed by hand: the job is no longer "done"
    (fire_dir / "fires.csv").write_text("edited\n")
    [repaired] = run_workflow(wf, DAY, home=home)
    assert [j.status for j in repaired.jobs] == ["skipped", "success"]
    assert temp_leftovers(home) == []


def test_corrupt_input_is_quarantined_and_the_rest_completes(data, tmp_path, capsys):
    s5p = tmp_path / "s5p"
    shutil.copytree(data["root"] / "s5p", s5p)
    bad = s5p / data["s5p"][1].name
    bad.write_bytes(bad.read_bytes()[:100_000])  # truncated in transfer
    wf = write_workflow(tmp_path / "wf.yaml", [s5p], jobs=("no2",))
    home = tmp_path / "home"
    code = main(["run", str(wf), "--date", "2019-06-12", "--home", str(home)])
    out = capsys.readouterr().out
    assert code == 3, out
    assert "partial" in out and f"unreadable input {bad.resolve()} quarantined" in out
    assert (home / "products" / "no2-l3" / "v1" / "2019-06-12" / "rsmon_no2_l3_day_2019-06-12_0.1deg.tif").is_file()
    with ledger(home) as led:
        assert str(bad.resolve()) in {p for p, _ in led.quarantined()}
        [row] = led.runs()
        assert row["status"] == "partial" and bad.name in row["message"]
    # reported once: the next run is not partial again for the same unchanged file
    assert main(["run", str(wf), "--date", "2019-06-12", "--home", str(home)]) == 0
    capsys.readouterr()


def _patched(monkeypatch, kind: str, run):
    monkeypatch.setitem(kinds.JOB_KINDS, kind, dataclasses.replace(kinds.JOB_KINDS[kind], run=run))


def test_input_named_by_a_product_error_is_quarantined(data, tmp_path, monkeypatch):
    real = kinds.JOB_KINDS["no2-l3"].run
    bad = str(data["s5p"][0].resolve())

    def run(task, inputs, out, catalog):
        if any(i.path == bad for i in inputs["l2"]):
            raise FormatError(f"{bad}: HDF error reading nitrogendioxide_tropospheric_column (corrupt chunk)")
        return real(task, inputs, out, catalog)

    _patched(monkeypatch, "no2-l3", run)
    wf = write_workflow(tmp_path / "wf.yaml", [data["root"] / "s5p"], jobs=("no2",))
    [report] = run_workflow(wf, DAY, home=tmp_path / "home")
    assert report.status == "partial" and report.exit_code == 3
    [job] = report.jobs
    assert job.status == "partial" and job.quarantined == [(bad, f"{bad}: HDF error reading "
                                                                 "nitrogendioxide_tropospheric_column (corrupt chunk)")]
    assert job.outputs  # made from the other orbit
    with ledger(tmp_path / "home") as led:
        inputs = led.run(report.run_id)["jobs"][0]["inputs"]
        assert {i["path"]: i["status"] for i in inputs}[bad] == "quarantined"
    # the quarantined file (same checksum) is left out next time, so the job is complete without it
    [again] = run_workflow(wf, DAY, home=tmp_path / "home", force=True)
    assert again.status == "success" and [i for i in again.jobs[0].quarantined] == []


def test_transient_errors_are_retried_with_backoff(data, tmp_path, monkeypatch):
    real = kinds.JOB_KINDS["no2-l3"].run
    calls = []

    def flaky(task, inputs, out, catalog):
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("NFS server not responding")
        return real(task, inputs, out, catalog)

    _patched(monkeypatch, "no2-l3", flaky)
    wf = write_workflow(tmp_path / "wf.yaml", [data["root"] / "s5p"], jobs=("no2",))
    [report] = run_workflow(wf, DAY, home=tmp_path / "home")
    assert report.status == "success" and len(calls) == 3
    with ledger(tmp_path / "home") as led:
        run = led.run(report.run_id)
    assert run["jobs"][0]["attempts"] == 3 and run["log"].count("transient error") == 2

    calls.clear()
    write_workflow(wf, [data["root"] / "s5p"], jobs=("no2",), retry="{attempts: 2, backoff_s: 0.01}")
    [report] = run_workflow(wf, DAY, home=tmp_path / "home", force=True)
    assert report.status == "failed" and "NFS server not responding" in report.jobs[0].message


def test_no_input_fails_and_backfill_reports_each_date(data, tmp_path, capsys):
    wf = write_workflow(tmp_path / "wf.yaml", [data["root"] / "s5p"], jobs=("no2",))
    home = tmp_path / "home"
    code = main(["run", str(wf), "--from", "2019-06-11", "--to", "2019-06-12", "--home", str(home)])
    out = capsys.readouterr().out
    assert code == 2
    assert "tiny 2019-06-11: failed" in out and "0 item(s) of collection 's5p-l2-no2'" in out
    assert "tiny 2019-06-12: success" in out
    assert main(["runs", "--home", str(home)]) == 0
    listing = capsys.readouterr().out
    assert "2019-06-11  failed" in listing and "2019-06-12  success" in listing
    with ledger(home) as led:
        assert {r["trigger"] for r in led.runs()} == {"backfill"}
        run_id = led.runs(logical_date="2019-06-12")[0]["run_id"]
    assert main(["runs", run_id, "--home", str(home)]) == 0
    shown = capsys.readouterr().out
    assert "job no2 (no2-l3): success" in shown and "sha256=" in shown


def test_a_run_held_by_another_process_is_busy(data, tmp_path, capsys):
    wf = write_workflow(tmp_path / "wf.yaml", [data["root"] / "s5p"], jobs=("no2",))
    home = tmp_path / "home"
    with ledger(home) as led:
        assert led.acquire("tiny", "2019-06-12", "the-scheduler", 600) is None
        assert main(["run", str(wf), "--date", "2019-06-12", "--home", str(home)]) == 75
        assert "busy: already running: run the-scheduler" in capsys.readouterr().out
        assert led.runs() == []  # nothing ran, nothing recorded
        led.release("tiny", "2019-06-12", "the-scheduler")


def test_dry_run_changes_nothing(data, tmp_path, capsys):
    wf = write_workflow(tmp_path / "wf.yaml", [data["root"] / "s5p"], jobs=("no2",))
    home = tmp_path / "home"
    run_workflow(wf, DAY, home=home)  # catalogue the inputs
    capsys.readouterr()
    assert main(["run", str(wf), "--date", "2019-06-12", "--home", str(home), "--dry-run", "--force"]) == 0
    out = capsys.readouterr().out
    assert "no2 (no2-l3): would run" in out and str(data["s5p"][0].resolve()) in out
    with ledger(home) as led:
        assert len(led.runs()) == 1


def test_sigterm_interrupts_the_run_cleanly(data, tmp_path, monkeypatch, capsys):
    started = threading.Event()

    def slow(task, inputs, out, catalog):
        (out / "half-written.tif").write_bytes(b"\0" * 100)
        started.set()
        for _ in range(600):  # interrupted by SIGTERM long before (slices: the handler runs between them)
            time.sleep(0.05)
        raise AssertionError("not interrupted")

    _patched(monkeypatch, "no2-l3", slow)
    wf = write_workflow(tmp_path / "wf.yaml", [data["root"] / "s5p"], jobs=("no2",))
    home = tmp_path / "home"
    import os

    killer = threading.Thread(target=lambda: started.wait(60) and os.kill(os.getpid(), signal.SIGTERM))
    killer.start()
    code = main(["run", str(wf), "--date", "2019-06-12", "--home", str(home)])
    killer.join()
    assert code == 143
    assert "interrupted by SIGTERM" in capsys.readouterr().err
    with ledger(home) as led:
        [run] = led.runs()
        assert run["status"] == "failed" and "interrupted (Interrupted: SIGTERM)" in run["message"]
        assert led.locks() == []
        assert led.run(run["run_id"])["jobs"][0]["status"] == "failed"
    assert temp_leftovers(home) == [] and not (home / "products" / "no2-l3" / "v1" / "2019-06-12").exists()
    monkeypatch.undo()
    [report] = run_workflow(wf, DAY, home=home)
    assert report.status == "success"


def _redline_workflow(path: Path, store: str, parameters: str = "{quicklooks: false}") -> Path:
    path.write_text(f"""\
name: red
sources: [{TAIZHOU}]
jobs:
  - id: taizhou
    product: redline
    inputs:
      before: {{collection: optical-landsat, window: {{start: -P25Y, end: P1D}}, select: earliest}}
      after: {{collection: optical-landsat, window: {{start: -P25Y, end: P1D}}, select: latest}}
    parameters: {parameters}
    alerts: {{store: "{store}"}}
    retry: {{attempts: 1}}
""")
    return path


def test_redline_keeps_patch_ids_and_alert_failures_make_the_job_partial(tmp_path):
    wf = _redline_workflow(tmp_path / "red.yaml", "nosuchscheme://x")
    home = tmp_path / "home"
    [first] = run_workflow(wf, date(2019, 6, 1), home=home)
    assert first.status == "partial" and "alert publishing failed" in first.jobs[0].message
    assert (home / "products" / "redline" / "v1" / "2019-06-01" / "patches.gpkg").is_file()
    [second] = run_workflow(wf, date(2019, 7, 1), home=home)
    with ledger(home) as led:
        inputs = led.run(second.run_id)["jobs"][0]["inputs"]
    previous = [i for i in inputs if i["role"] == "previous"]
    assert previous and previous[0]["path"].endswith("2019-06-01/patches.gpkg")


def test_redline_job_streams_on_request_with_the_same_patches(tmp_path):
    import json

    import geopandas as gpd

    tables = []
    for stream in ("false", "true"):
        wf = _redline_workflow(tmp_path / f"red-{stream}.yaml", "nosuchscheme://x",
                               f"{{quicklooks: false, stream: {stream}}}")
        home = tmp_path / f"home-{stream}"
        [report] = run_workflow(wf, date(2019, 6, 1), home=home)
        folder = home / "products" / "redline" / "v1" / "2019-06-01"
        assert json.loads((folder / "summary.json").read_text())["streamed"] == (stream == "true")
        tables.append(gpd.read_file(folder / "patches.gpkg"))
    assert len(tables[0]) > 0 and list(tables[0]["patch_id"]) == list(tables[1]["patch_id"])
    bad = _redline_workflow(tmp_path / "bad.yaml", "nosuchscheme://x", "{stream: sometimes}")
    with pytest.raises(RsmonError, match="stream"):
        run_workflow(bad, date(2019, 6, 1), home=tmp_path / "home-bad")


def test_redline_month_of_scenes_runs_as_a_confirming_series(tmp_path):
    """The monthly redline job as workflows/redline-monthly.yaml defines it: the latest scene of the
    month before is the reference and every scene of the logical month is a later observation, so
    a change seen again later in the month is confirmed (confidence "high" or "highest")."""
    import geopandas as gpd

    from rsmon.cli import main as rsmon_main

    sims = tmp_path / "incoming"
    for name, after, clouds in (("a", "2023-06-05", "0.05"), ("b", "2023-06-25", "0.1")):  # one landscape (seed)
        assert rsmon_main(["sim", "s2", "--small", "--seed", "4", "--changes", "12", "--dates", f"2023-05-20,{after}",
                           "--clouds", clouds, "-o", str(sims / name)]) == 0
    shutil.rmtree(sims / "b" / "before")  # the same reference scene twice otherwise
    spec = yaml.safe_load((ROOT / "workflows" / "redline-monthly.yaml").read_text())
    assert spec["jobs"][0]["inputs"]["after"]["select"] == "all"
    spec["sources"] = [str(sims)]
    for role in ("before", "after"):
        del spec["jobs"][0]["inputs"][role]["bbox"]  # the simulated tile lies elsewhere
    spec["jobs"][0]["parameters"] = {"quicklooks": False, "previous": "auto"}
    spec["jobs"][0]["alerts"] = {"store": "nosuchscheme://x"}
    wf = tmp_path / "monthly.yaml"
    wf.write_text(yaml.safe_dump(spec))
    home = tmp_path / "home"
    [report] = run_workflow(wf, date(2023, 6, 1), home=home)
    assert report.jobs[0].status in ("success", "partial"), report.summary()  # partial: no alert store here
    with ledger(home) as led:
        inputs = led.run(report.run_id)["jobs"][0]["inputs"]
    assert {Path(i["path"]).parent.parent.name for i in inputs if i["role"].startswith("after")} == {"a", "b"}
    folder = home / "products" / "redline" / "v1" / "2023-06"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["after"] and len(summary["after"]) == 2
    patches = gpd.read_file(folder / "patches.gpkg")
    assert len(patches) >= 6 and (patches["confidence"].isin(["high", "highest"])).mean() > 0.8
    # dated by the scene that first showed them, not by the month's last scene
    assert (patches["first_detected"] == "2023-06-05").mean() > 0.8 and set(patches["after_date"]) == {"2023-06-25"}


def test_alerts_are_published_to_the_store(tmp_path):
    import subprocess
    import sys

    probe = subprocess.run([sys.executable, "-m", "rsmon.cli", "alerts", "import", "--help"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this rsmon has no alert store (rsmon alerts import)")
    store = tmp_path / "alerts.sqlite"
    wf = _redline_workflow(tmp_path / "red.yaml", f"sqlite:///{store}")
    [report] = run_workflow(wf, date(2019, 6, 1), home=tmp_path / "home")
    assert report.status == "success", report.summary()
    assert report.jobs[0].summary["alerts"] == "published" and store.is_file()
