"""Scale-out: the same workflow on a dask.distributed cluster (2 worker processes) gives the same
science values as in one process; tasks carry paths; a backfill's dates run side by side."""

import os
from datetime import date

import pytest

from rsmon.errors import InputError
from rsmon.workflow.cli import main
from rsmon.workflow.dask_client import open_executor
from rsmon.workflow.ledger import Ledger, ledger_url
from rsmon.workflow.runner import run_workflow
from workflow_scenes import DAY, s5p_day, science_values, temp_leftovers, viirs_granule, write_workflow

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    s5p_day(root / "s5p")
    s5p_day(root / "s5p", day=date(2019, 6, 13))
    viirs_granule(root / "viirs")
    viirs_granule(root / "viirs", day=date(2019, 6, 13), seed=2)
    return root


def test_processes_cluster_gives_the_single_process_results(data, tmp_path, capsys):
    wf = write_workflow(tmp_path / "wf.yaml", [data / "s5p", data / "viirs"])
    assert main(["run", str(wf), "--date", "2019-06-12", "--home", str(tmp_path / "single")]) == 0
    assert main(["run", str(wf), "--date", "2019-06-12", "--home", str(tmp_path / "cluster"),
                 "--dask", "processes", "--workers", "2"]) == 0
    capsys.readouterr()
    for product in ("no2-l3", "fire"):
        one = science_values(tmp_path / "single" / "products" / product / "v1" / "2019-06-12")
        two = science_values(tmp_path / "cluster" / "products" / product / "v1" / "2019-06-12")
        assert one and one == two, product
    with Ledger(ledger_url(tmp_path / "cluster")) as led:
        run = led.run(led.runs()[0]["run_id"])
    assert run["executor"] == "processes (2 workers)"
    workers = {j["summary"]["executed_on"] for j in run["jobs"]}
    assert all(not w.endswith(f":{os.getpid()}") for w in workers)  # the jobs ran in worker processes
    assert temp_leftovers(tmp_path / "cluster") == []


def test_backfill_on_a_scheduler_address(data, tmp_path):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        wf = write_workflow(tmp_path / "wf.yaml", [data / "s5p", data / "viirs"])
        reports = run_workflow(wf, [date(2019, 6, 13), DAY], home=tmp_path / "home", dask=cluster.scheduler_address)
    assert [(r.logical_date, r.status) for r in reports] == [(DAY, "success"), (date(2019, 6, 13), "success")]
    assert (tmp_path / "home" / "products" / "fire" / "v1" / "2019-06-13" / "fires.csv").is_file()
    with Ledger(ledger_url(tmp_path / "home")) as led:
        assert {r["executor"] for r in led.runs()} == {cluster.scheduler_address}


def test_executor_specs():
    with pytest.raises(InputError, match="expected threads, processes or a scheduler address"):
        with open_executor("gpu"):
            pass
    with open_executor("threads") as ex:
        assert ex.name == "threads" and ex.result(ex.submit(pow, 2, 10)) == 1024
