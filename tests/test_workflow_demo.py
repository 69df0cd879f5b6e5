"""workflows/demo.yaml: every product on the bundled seeds/ data for 2019-06-12, in one run."""

import json
from datetime import date

from rsmon.workflow.ledger import Ledger, ledger_url
from rsmon.workflow.runner import run_workflow
from workflow_scenes import ROOT, temp_leftovers


def test_demo_workflow_runs_every_product_on_the_seeds(tmp_path):
    home = tmp_path / "home"
    [report] = run_workflow(ROOT / "workflows" / "demo.yaml", date(2019, 6, 12), home=home)
    assert report.status == "success", report.summary()
    assert [(j.job_id, j.status) for j in report.jobs] == [("no2", "success"), ("fire", "success"),
                                                           ("redline", "success")]
    products = home / "products"
    no2 = products / "no2-l3" / "demo" / "2019-06-12"
    assert {p.suffix for p in no2.iterdir() if p.is_file()} == {".tif", ".nc", ".png"}
    no2_stats = json.loads((no2 / "validation" / "stats.json").read_text())
    assert no2_stats["n"] > 100  # simulated columns vs the real CNEMC stations of that day
    fire = products / "fire" / "demo" / "2019-06-12"
    fire_stats = json.loads((fire / "validation" / "stats.json").read_text())
    assert fire_stats["n_reference"] == 60 and fire_stats["precision"] > 0.9
    assert (fire / "counts_by_admin.csv").is_file()
    red = products / "redline" / "demo" / "taizhou" / "2019-06-12"
    scores = json.loads((red / "validation" / "change_scores.json").read_text())
    assert scores["f1"] > 0.8 and (red / "patches.gpkg").is_file() and len(list((red / "quicklooks").iterdir())) <= 20
    assert temp_leftovers(home) == []

    with Ledger(ledger_url(home)) as led:
        run = led.run(report.run_id)
    inputs = [i["path"] for j in run["jobs"] for i in j["inputs"]]
    # only the bundled seeds and what the run simulated into its home: no shared/ data needed
    assert inputs and all(p.startswith((str(ROOT / "seeds"), str(home))) for p in inputs), inputs
    catalog = home / "catalogs" / "products"
    assert {p.name for p in catalog.iterdir() if p.is_dir()} == {"rsmon-no2-l3", "rsmon-fire", "rsmon-redline",
                                                                "rsmon-validation"}
    [again] = run_workflow(ROOT / "workflows" / "demo.yaml", date(2019, 6, 12), home=home)
    assert again.status == "skipped"
