"""Redline jobs over several tiles: tile names, grouping, per-tile selection, the patch merge (known
answers on hand-made tables and on two overlapping simulated tiles) and the monthly workflow."""

import json
import os
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import yaml
from affine import Affine
from shapely.geometry import box

from rsmon.errors import InputError
from rsmon.io.optical_s2 import s2_tile_of_name
from rsmon.products.patch_merge import merge_tile_patches
from rsmon.workflow.redline_tiles import group_by_tile, plan_tiles, run_redline_tiles, tile_key

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Item:
    """The fields of an InputItem the tile planning reads."""

    path: str
    bbox: tuple | None = None
    files: tuple = ()
    item_id: str = ""


# ---- tile names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, tile", [
    ("S2B_MSIL2A_20230610T025539_N0509_R032_T51STR_20230610T061812.SAFE", "T51STR"),
    ("S2A_MSIL1C_20221005T115411_N0400_R023_T29UNU_20221005T153217", "T29UNU"),
    ("T50SMF_20230501T030551_B02_10m.tif", "T50SMF"),
    ("T29UNU_20221005T115411_SCL_20m.jp2", "T29UNU"),
    ("S2A_OPER_MSI_L2A_TL_SGS__20170101T000000_A007919_T50SMF_N02.04", "T50SMF"),
    ("B02.tif", None), ("imgs_1", None), ("T50SMF", None),  # a bare tile name is no product name
])
def test_sentinel2_tile_from_product_and_band_names(name, tile):
    assert s2_tile_of_name(name) == tile


def test_tile_key_of_scenes(tmp_path):
    assert tile_key(Item("/x/S2B_MSIL2A_20230610T025539_N0509_R032_T51STR_20230610T061812.SAFE")) == "T51STR"
    assert tile_key(Item("/x/LC08_L2SP_120038_20230610_20230620_02_T1")) == "WRS2-120038"
    assert tile_key(Item("/x/Taizhou/2000TM", item_id="LT51190382000069BJC00")) == "WRS2-119038"
    assert tile_key(Item("/x/oscd/beirut/imgs_1", files=("/x/oscd/beirut/imgs_1/B02.tif",))) is None
    folder = tmp_path / "after"  # a flat L2A folder: the band files carry the tile
    folder.mkdir()
    (folder / "T50SNF_20230601T030551_B02_10m.tif").touch()
    assert tile_key(folder) == tile_key(Item(str(folder))) == "T50SNF"
    real = ROOT / "seeds" / "landsat-cd-taizhou-nanjing" / "Taizhou"
    if real.is_dir():  # the real ENVI stacks' names carry no path/row: one group, as before
        assert {tile_key(p) for p in real.iterdir() if p.is_dir()} <= {None}


def _s2(tile, day, bbox=None):
    return Item(f"/in/S2A_MSIL2A_{day}T030551_N0509_R032_{tile}_{day}T061234.SAFE", bbox)


def test_plan_groups_scenes_by_tile_and_names_tiles_without_a_reference():
    west, east = (119.0, 32.0, 120.1, 33.0), (120.0, 32.0, 121.1, 33.0)
    before = [_s2("T51STR", "20230520", west), _s2("T51SUR", "20230522", east)]
    after = [_s2("T51STR", "20230605", west), _s2("T51SUR", "20230607", east), _s2("T51STR", "20230625", west),
             _s2("T51SVR", "20230627", (121.0, 32.0, 122.1, 33.0))]
    landsat = Item("/in/LC08_L2SP_119038_20230615_20230620_02_T1", (119.5, 32.2, 120.5, 33.2))
    plan = plan_tiles(before, after + [landsat])
    assert plan.multi and [r.tile for r in plan.runs] == ["T51STR", "T51SUR"]
    west_run, east_run = plan.runs
    assert west_run.before == before[:1] and west_run.after == [after[0], after[2], landsat]
    assert east_run.before == before[1:] and east_run.after == [after[1], landsat]  # the Landsat scene covers both
    assert list(plan.skipped) == ["T51SVR"] and "no before scene" in plan.skipped["T51SVR"]
    # one tile (or none named): a single run, as before the grouping
    single = plan_tiles(before[:1], [after[0], after[2], landsat])
    assert not single.multi and single.runs[0].after == [after[0], after[2], landsat]
    unnamed = plan_tiles([Item("/a/2000TM")], [Item("/a/2003TM")])
    assert not unnamed.multi and len(unnamed.runs) == 1
    # Landsat-only jobs are grouped by path/row
    ls = [Item(f"/in/LC08_L2SP_{pr}_20230615_20230620_02_T1") for pr in ("119038", "120038")]
    lb = [Item(f"/in/LC08_L2SP_{pr}_20230515_20230520_02_T1") for pr in ("119038", "120038")]
    assert [r.tile for r in plan_tiles(lb, ls).runs] == ["WRS2-119038", "WRS2-120038"]
    assert list(group_by_tile(after)) == ["T51STR", "T51SUR", "T51SVR"]
    # plain paths (no footprint): a scene of the other family joins every tile
    paths = plan_tiles([s.path for s in before], [after[0].path, after[1].path, landsat.path])
    assert [r.after[-1] for r in paths.runs] == [landsat.path, landsat.path]


def test_no_tile_with_a_reference_is_a_clear_error(tmp_path):
    plan = plan_tiles([_s2("T51STR", "20230520")], [_s2("T51SUR", "20230605"), _s2("T51SVR", "20230607")])
    assert plan.runs == [] and sorted(plan.skipped) == ["T51SUR", "T51SVR"]
    with pytest.raises(InputError, match="no tile has both a before and an after scene.*T51SUR"):
        run_redline_tiles(plan, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- the merge: known answers ----------------------------------------------------------------------------

def _table(rows, crs="EPSG:32650"):
    """Patches from (id, xmin, ymin, xmax, ymax) in metres."""
    return gpd.GeoDataFrame({"patch_id": [r[0] for r in rows], "area_m2": [box(*r[1:]).area for r in rows],
                             "change_class": ["construction"] * len(rows)},
                            geometry=[box(*r[1:]) for r in rows], crs=crs)


def _centre(x, y, crs="EPSG:32650"):
    from pyproj import Transformer

    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)


def test_merge_keeps_each_change_once_from_the_nearest_tile():
    # tile A centred at x=50 km, tile B at x=150 km (UTM metres, y around 3,600 km); overlap 95-105 km
    y0 = 3_600_000
    a = _table([("p-west", 96_000, y0, 96_100, y0 + 100),        # in both, nearer A: A's kept
                ("p-east", 104_000, y0, 104_100, y0 + 100),      # in both, nearer B: B's kept
                ("a-only", 20_000, y0, 20_200, y0 + 100),
                ("a-edge", 99_000, y0, 99_100, y0 + 100)])        # B has no data there: kept
    b = _table([("p-west", 96_000, y0, 96_100, y0 + 100),
                ("p-east-b", 104_000, y0, 104_090, y0 + 100),      # B's own threshold: another shape and id
                ("b-only", 130_000, y0, 130_100, y0 + 300),
                ("a-only", 140_000, y0, 140_100, y0 + 100),        # another change in the same id cell
                ("touch", 96_100, y0, 96_200, y0 + 100)])          # touches p-west along an edge only
    merged = merge_tile_patches({"A": a, "B": b}, {"A": _centre(50_000, y0), "B": _centre(150_000, y0)})
    got = sorted(zip(merged.table["tile"], merged.table["patch_id"]))
    assert got == [("A", "a-edge"), ("A", "a-only"), ("A", "p-west"), ("B", "a-only-2"), ("B", "b-only"),
                   ("B", "p-east-b"), ("B", "touch")]
    assert merged.n_dropped == 2 and merged.n_renamed == 1 and merged.table["patch_id"].is_unique
    assert merged.table.crs == a.crs and list(merged.table["area_m2"]) == sorted(merged.table["area_m2"], reverse=True)
    # a patch of A over two of B is one group: the nearer tile's side wins as a whole
    a2 = _table([("big", 103_000, y0, 105_000, y0 + 100)])
    b2 = _table([("l", 103_000, y0, 103_900, y0 + 100), ("r", 104_100, y0, 105_000, y0 + 100)])
    m2 = merge_tile_patches({"A": a2, "B": b2}, {"A": _centre(50_000, y0), "B": _centre(150_000, y0)})
    assert sorted(m2.table["patch_id"]) == ["l", "r"] and m2.n_dropped == 1


def test_merge_of_tiles_in_two_utm_zones_is_in_lonlat():
    # the same 100 m square seen from zone 50 and zone 51 (a change in the overlap of two zones' tiles)
    sq = shapely.geometry.box(835_000, 3_600_000, 835_100, 3_600_100)
    west = gpd.GeoDataFrame({"patch_id": ["w"], "area_m2": [1e4]}, geometry=[sq], crs="EPSG:32650")
    east = west.to_crs("EPSG:32651").assign(patch_id=["e"])
    lon, lat = west.to_crs("EPSG:4326").geometry[0].centroid.coords[0]
    merged = merge_tile_patches({"W": west, "E": east}, {"W": (lon - 0.5, lat), "E": (lon + 0.2, lat)})
    assert merged.table.crs.to_epsg() == 4326 and list(merged.table["patch_id"]) == ["e"]
    with pytest.raises(InputError, match="tile X has no centre"):
        merge_tile_patches({"X": west}, {})
    with pytest.raises(InputError, match="no CRS"):
        merge_tile_patches({"X": west.set_crs(None, allow_override=True)}, {"X": (0, 0)})


# ---- two overlapping simulated tiles ----------------------------------------------------------------------

def shifted_tile(src: Path, dst: Path, tile: str, shift_px: int) -> None:
    """The simulated T50SMF scene pair seen from a tile ``shift_px`` 10 m pixels further east: the
    same landscape with its columns rolled, so the overlap holds the same pixels at the same place."""
    for role in ("before", "after"):
        (dst / role).mkdir(parents=True)
        for f in sorted((src / role).iterdir()):
            name = f.name.replace("T50SMF", tile)
            if f.suffix == ".xml":
                (dst / role / name).write_text(f.read_text().replace("T50SMF", tile))
                continue
            with rasterio.open(f) as s:
                data, profile = s.read(), s.profile
            k = shift_px * 10 // int(profile["transform"].a)
            profile["transform"] = profile["transform"] @ Affine.translation(k, 0)
            with rasterio.open(dst / role / name, "w", **profile) as d:
                d.write(np.roll(data, -k, axis=2))


def redated(src: Path, dst: Path, day: str, new_day: str) -> None:
    """A copy of the scene folder ``src`` dated ``new_day`` instead of ``day`` (names and metadata)."""
    dst.mkdir(parents=True)
    compact, new_compact = day.replace("-", ""), new_day.replace("-", "")
    for f in src.iterdir():
        target = dst / f.name.replace(compact, new_compact)
        if f.suffix == ".xml":
            target.write_text(f.read_text().replace(compact, new_compact).replace(day, new_day))
        else:
            shutil.copy(f, target)


@pytest.fixture(scope="module")
def two_tiles(tmp_path_factory):
    from rsmon.sim.s2 import simulate_s2_l2a_pair

    root = tmp_path_factory.mktemp("tiles")
    simulate_s2_l2a_pair(root / "west", size=512, seed=4, n_changes=12, dates=("2023-05-20", "2023-06-05"))
    shifted_tile(root / "west", root / "east", "T50SNF", 256)
    return root


def test_two_overlapping_tiles_report_each_change_once(two_tiles, tmp_path):
    west, east = two_tiles / "west", two_tiles / "east"
    plan = plan_tiles([Item(str(west / "before")), Item(str(east / "before"))],
                      [Item(str(west / "after")), Item(str(east / "after"))])
    out = tmp_path / "out"
    summary = run_redline_tiles(plan, out, quicklooks=False)
    tiles = {t: gpd.read_file(out / "tiles" / t / "patches.gpkg") for t in ("T50SMF", "T50SNF")}
    with rasterio.open(out / "tiles" / "T50SMF" / "change.tif") as a, \
            rasterio.open(out / "tiles" / "T50SNF" / "change.tif") as b:
        x0, midline = a.bounds.left, (a.bounds.left + a.bounds.right + b.bounds.left + b.bounds.right) / 4
    cx = {t: g.geometry.centroid.x.to_numpy() for t, g in tiles.items()}
    in_overlap = {t: (cx[t] > x0 + 2560) & (cx[t] < x0 + 5120) for t in tiles}
    assert in_overlap["T50SMF"].sum() >= 5  # the fixture puts changes where both tiles see them
    # known answer: every change of one tile's own part kept; in the overlap the tile nearer the change
    expected = sorted([("T50SMF", i) for i, x in zip(tiles["T50SMF"]["patch_id"], cx["T50SMF"]) if x < midline]
                      + [("T50SNF", i) for i, x in zip(tiles["T50SNF"]["patch_id"], cx["T50SNF"]) if x >= midline])
    merged = gpd.read_file(out / "patches.gpkg")
    assert sorted(zip(merged["tile"], merged["patch_id"])) == expected
    assert summary["n_patches"] == len(merged) == len(tiles["T50SMF"]) + len(tiles["T50SNF"]) - summary[
        "duplicates_dropped"]
    assert summary["duplicates_dropped"] >= in_overlap["T50SNF"].sum() - 1  # one may be cut by the tile edge
    ea = merged.to_crs("EPSG:6933").geometry.to_numpy()
    pairs = shapely.STRtree(ea).query(ea, predicate="overlaps")
    assert not len(pairs[0]), "merged patches overlap"
    assert merged["patch_id"].is_unique and len(gpd.read_file(out / "patches.geojson")) == len(merged)
    body = json.loads((out / "summary.json").read_text())
    assert sorted(body["tiles"]) == ["T50SMF", "T50SNF"] and body["skipped_tiles"] == {}
    assert body["tiles"]["T50SNF"]["folder"] == "tiles/T50SNF" and (out / "tiles" / "T50SNF" / "change.tif").is_file()
    # the job validated against one georeferenced reference over both tiles: the landscape's truth (the
    # east tile is the west one rolled by 256 columns), through the job kind's validation step
    from rsmon.validate.change import change_scores
    from rsmon.workflow.kinds import _validate_redline

    with rasterio.open(two_tiles / "west" / "truth.tif") as t:
        truth, transform, crs = t.read(1), t.transform, t.crs
    reference = (np.concatenate([truth, truth[:, :256]], axis=1) > 0).astype(np.uint8)
    with rasterio.open(tmp_path / "reference.tif", "w", driver="GTiff", width=reference.shape[1],
                       height=reference.shape[0], count=1, dtype="uint8", crs=crs, transform=transform) as dst:
        dst.write(reference, 1)
    # expected: the two change rasters put side by side by hand, change wherever either says change
    with rasterio.open(out / "tiles" / "T50SMF" / "change.tif") as a, \
            rasterio.open(out / "tiles" / "T50SNF" / "change.tif") as b:
        assert a.transform == transform and b.transform.c == transform.c + 2560
        west_change, east_change = a.read(1), b.read(1)
    predicted = np.full(reference.shape, 255, np.uint8)
    predicted[:, :512] = west_change
    overlap = predicted[:, 256:]
    overlap[(east_change == 1) | (overlap == 255)] = east_change[(east_change == 1) | (overlap == 255)]
    want = change_scores(predicted, reference)
    got = _validate_redline(SimpleNamespace(validation={"reference": str(tmp_path / "reference.tif")}), out,
                            tmp_path / "validation")
    assert got == {k: getattr(want, k) for k in ("precision", "recall", "f1", "iou", "kappa", "n_scored")}
    assert want.n_scored + want.n_excluded == 512 * 768 and want.tp > 0 and want.fn < want.tp
    scores = json.loads((tmp_path / "validation" / "change_scores.json").read_text())
    assert scores["scored_on"] == "reference grid, rows 0-512, columns 0-768" and len(scores["product"]) == 2


def monthly_workflow(two_tiles: Path, tmp_path: Path, alerts: dict | None) -> tuple[Path, dict, Path]:
    """workflows/redline-monthly.yaml on the two tiles' scenes copied to ``tmp_path/incoming`` (no
    bbox, no quicklooks, ``alerts`` or none): (workflow file, its spec, the incoming folder)."""
    incoming = tmp_path / "incoming"
    for name in ("west", "east"):
        shutil.copytree(two_tiles / name, incoming / name, ignore=shutil.ignore_patterns("truth.*"))
    spec = yaml.safe_load((ROOT / "workflows" / "redline-monthly.yaml").read_text())
    spec["sources"] = [str(incoming)]
    for role in ("before", "after"):
        del spec["jobs"][0]["inputs"][role]["bbox"]
    spec["jobs"][0]["parameters"] = {"quicklooks": False}
    if alerts is None:
        del spec["jobs"][0]["alerts"]
    else:
        spec["jobs"][0]["alerts"] = alerts
    wf = tmp_path / "monthly.yaml"
    wf.write_text(yaml.safe_dump(spec))
    return wf, spec, incoming


def test_monthly_workflow_over_two_tiles_publishes_one_alert_per_change(two_tiles, tmp_path):
    """workflows/redline-monthly.yaml on scenes of two overlapping tiles: each tile's reference is
    the composite of its own latest scenes (group: tile, max_count), one run per tile, the patches
    merged, and the alert store holds each change once."""
    import subprocess
    import sys

    from rsmon.workflow.ledger import Ledger, ledger_url
    from rsmon.workflow.runner import run_workflow

    store = tmp_path / "alerts.sqlite"
    wf, spec, incoming = monthly_workflow(two_tiles, tmp_path, {"store": f"sqlite:///{store}"})
    assert spec["jobs"][0]["inputs"]["before"]["group"] == "tile"
    # an older before scene of the west tile (a copy): the west reference is a composite of two scenes
    redated(two_tiles / "west" / "before", incoming / "west-old" / "before", "2023-05-20", "2023-05-10")
    home = tmp_path / "home"
    [report] = run_workflow(wf, date(2023, 6, 1), home=home)
    assert report.jobs[0].status == "success", report.summary()
    folder = home / "products" / "redline" / "v1" / "2023-06"
    merged = gpd.read_file(folder / "patches.gpkg")
    summary = json.loads((folder / "summary.json").read_text())
    assert sorted(summary["tiles"]) == ["T50SMF", "T50SNF"] and summary["duplicates_dropped"] > 0
    with Ledger(ledger_url(home)) as led:
        job = led.run(report.run_id)["jobs"][0]
    assert job["summary"]["tiles"] == ["T50SMF", "T50SNF"] and job["summary"]["n_patches"] == len(merged)
    before = sorted({Path(i["path"]).parent.parent.name for i in job["inputs"] if i["role"].startswith("before")})
    assert before == ["east", "west", "west-old"]
    assert [len(summary["tiles"][t]["before"]) for t in ("T50SMF", "T50SNF")] == [2, 1]
    spec["jobs"][0]["inputs"]["before"]["max_count"] = 1  # the latest scene of each tile only
    wf.write_text(yaml.safe_dump(spec))
    [again] = run_workflow(wf, date(2023, 6, 1), home=home, force=True)
    with Ledger(ledger_url(home)) as led:
        inputs = led.run(again.run_id)["jobs"][0]["inputs"]
    assert sorted({Path(i["path"]).parent.parent.name for i in inputs if i["role"].startswith("before")}) == [
        "east", "west"]
    # the composite of a scene and its copy is the scene: the same patches, the same ids
    assert sorted(gpd.read_file(folder / "patches.gpkg")["patch_id"]) == sorted(merged["patch_id"])
    # next month (the June scenes seen again in July: no change): the previous patches are the job's
    # merged table, not one tile's
    for name in ("west", "east"):
        redated(two_tiles / name / "after", incoming / f"{name}-july" / "after", "2023-06-05", "2023-07-05")
    [july] = run_workflow(wf, date(2023, 7, 1), home=home)
    assert july.jobs[0].status == "success", july.summary()
    with Ledger(ledger_url(home)) as led:
        previous = [i["path"] for i in led.run(july.run_id)["jobs"][0]["inputs"] if i["role"] == "previous"]
    assert previous == [str(folder / "patches.gpkg")]
    probe = subprocess.run([sys.executable, "-m", "rsmon.cli", "alerts", "import", "--help"], capture_output=True)
    if probe.returncode == 0:
        import sqlite3

        with sqlite3.connect(store) as db:
            n = db.execute("SELECT count(*) FROM alerts").fetchone()[0]
        assert n == len(merged)


def test_cli_merge_of_tile_runs_equals_the_tiled_job(two_tiles, tmp_path, capsys):
    """``rsmon redline merge`` on the output folders of one ``rsmon redline detect`` per tile gives
    the multi-tile job's merged table; a folder that is no run is named and nothing is written."""
    from rsmon.cli import main as rsmon_main

    runs = []
    for name in ("west", "east"):
        runs.append(tmp_path / f"run-{name}")
        assert rsmon_main(["redline", "detect", "--before", str(two_tiles / name / "before"), "--after",
                           str(two_tiles / name / "after"), "--no-quicklooks", "-o", str(runs[-1])]) == 0
    assert rsmon_main(["redline", "merge", *map(str, runs), "-o", str(tmp_path / "merged")]) == 0
    assert "seen again by an overlapping tile dropped" in capsys.readouterr().out
    plan = plan_tiles([Item(str(two_tiles / n / "before")) for n in ("west", "east")],
                      [Item(str(two_tiles / n / "after")) for n in ("west", "east")])
    run_redline_tiles(plan, tmp_path / "job", quicklooks=False)
    got, want = (gpd.read_file(tmp_path / d / "patches.gpkg") for d in ("merged", "job"))
    assert sorted(zip(got["tile"], got["patch_id"])) == sorted(zip(want["tile"], want["patch_id"]))
    summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert sorted(summary["tiles"]) == ["T50SMF", "T50SNF"] and summary["tiles"]["T50SNF"]["n_patches"] > 0
    # bad input: a folder that is no run
    (tmp_path / "empty").mkdir()
    assert rsmon_main(["redline", "merge", str(runs[0]), str(tmp_path / "empty"), "-o", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "no change.tif" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_tiles_run_side_by_side_on_a_dask_cluster(two_tiles, tmp_path):
    """A multi-tile job run on a dask cluster (``--dask processes``) runs its tiles as tasks of
    that cluster, in worker processes, with the same merged patches as in one process."""
    pytest.importorskip("distributed")
    from rsmon.workflow.ledger import Ledger, ledger_url
    from rsmon.workflow.runner import run_workflow

    wf, _, _ = monthly_workflow(two_tiles, tmp_path, None)
    tables = {}
    for how in ("threads", "processes"):
        home = tmp_path / how
        [report] = run_workflow(wf, date(2023, 6, 1), home=home, dask=how, workers=2)
        assert report.jobs[0].status == "success", report.summary()
        folder = home / "products" / "redline" / "v1" / "2023-06"
        tables[how] = gpd.read_file(folder / "patches.gpkg")
        summary = json.loads((folder / "summary.json").read_text())
        pids = {t["executed_on"].rsplit(":", 1)[1] for t in summary["tiles"].values()}
        assert (str(os.getpid()) in pids) == (how == "threads"), (how, pids)
        assert summary["tile_runs"] == {"threads": "in this process", "processes": "dask cluster tasks"}[how]
        with Ledger(ledger_url(home)) as led:
            job_log = led.run(report.run_id)["log"]
        for tile in ("T50SMF", "T50SNF"):  # the tiles' log lines reach the job's log from the workers
            assert f"redline tile {tile}: 1 before, 1 after scene(s)" in job_log, (how, tile)
        assert "redline stage detect" in job_log
    assert sorted(zip(tables["threads"]["tile"], tables["threads"]["patch_id"])) == sorted(
        zip(tables["processes"]["tile"], tables["processes"]["patch_id"]))
