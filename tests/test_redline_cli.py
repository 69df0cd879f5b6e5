"""End to end: ``rsmon redline detect`` on the real Taizhou Landsat pair and on simulated Sentinel-2
pairs, ``rsmon validate --kind change`` against the expert reference mask, stable patch ids over
reruns, redline clipping, and the one-line failures that leave no output behind."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.geometry import Point, Polygon, box

from rsmon.cli import main
from tests.paths import SEEDS

TAIZHOU = SEEDS / "landsat-cd-taizhou-nanjing" / "Taizhou"
NANJING = SEEDS / "landsat-cd-taizhou-nanjing" / "Nanjing"
OUTPUTS = ("change.tif", "change_class.tif", "confidence.tif", "patches.gpkg", "patches.geojson", "summary.json")

pytestmark = pytest.mark.skipif(not TAIZHOU.is_dir(), reason=f"seed data {TAIZHOU} missing")


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(rc, err, *needles):
    assert rc == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("rsmon: error:"), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def taizhou(tmp_path_factory):
    out = tmp_path_factory.mktemp("taizhou") / "out"
    rc = main(["redline", "detect", "--before", str(TAIZHOU / "2000TM"), "--after", str(TAIZHOU / "2003TM"),
               "--max-quicklooks", "5", "-o", str(out)])
    assert rc == 0
    return out


def test_taizhou_outputs_on_the_after_grid(taizhou):
    for name in OUTPUTS:
        assert (taizhou / name).is_file(), name
    assert not [p for p in taizhou.iterdir() if p.name.startswith(".")], "staging left behind"
    with rasterio.open(TAIZHOU / "2003TM") as after, rasterio.open(taizhou / "change.tif") as chg:
        assert chg.crs == after.crs and chg.transform == after.transform and chg.shape == after.shape
        assert chg.dtypes[0] == "uint8" and chg.nodata == 255
        values = set(np.unique(chg.read(1)).tolist())
    assert values <= {0, 1, 255} and 1 in values
    patches = gpd.read_file(taizhou / "patches.gpkg")
    geo = gpd.read_file(taizhou / "patches.geojson")
    assert len(patches) == len(geo) > 10
    assert patches["patch_id"].is_unique and set(patches["patch_id"]) == set(geo["patch_id"])
    assert geo.crs.to_epsg() == 4326
    assert (patches["area_m2"] >= 4 * 900 * 0.99).all()  # MMU 4 pixels of 30 m
    assert set(patches["confidence"]) == {"low"}  # one pair cannot confirm
    assert patches["before_date"].astype(str).str.startswith("2000-03-17").all()
    assert patches["after_date"].astype(str).str.startswith("2003-02-06").all()
    quick = sorted((taizhou / "quicklooks").glob("*.png"))
    assert len(quick) == 5 and all(q.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for q in quick)
    summary = json.loads((taizhou / "summary.json").read_text())
    assert summary["n_patches"] == len(patches) and summary["reason"] is None


def test_validate_change_on_the_expert_reference(taizhou, tmp_path, capsys):
    """Known answer on real data: the Taizhou pair with its expert mask (F1 >= 0.6, issue target)."""
    rc, out, err = _run(capsys, "validate", "--kind", "change", "--product", taizhou / "change.tif",
                        "--reference", TAIZHOU / "change.bmp", TAIZHOU / "unchanged.bmp", "--out", tmp_path / "v")
    assert rc == 0, err
    scores = json.loads((tmp_path / "v" / "change_scores.json").read_text())
    assert scores["n_scored"] == 4227 + 17163  # the labelled pixels (SOURCE.txt counts)
    assert scores["f1"] >= 0.6 and scores["kappa"] > 0.5
    assert "F1" in out
    # the folder form of the reference gives the same answer, without a report folder
    rc, out2, _ = _run(capsys, "validate", "--kind", "change", "--product", taizhou / "change.tif",
                       "--reference", TAIZHOU)
    assert rc == 0 and out2.splitlines()[0] == out.splitlines()[0]


def test_rerun_keeps_patch_ids_and_adds_no_duplicates(taizhou, tmp_path, capsys):
    out = tmp_path / "rerun"
    shutil.copytree(taizhou, out)
    first = gpd.read_file(out / "patches.gpkg")
    rc, _, err = _run(capsys, "redline", "detect", "--before", TAIZHOU / "2000TM", "--after", TAIZHOU / "2003TM",
                      "--no-quicklooks", "-o", out)
    assert rc == 0, err
    second = gpd.read_file(out / "patches.gpkg")
    assert len(second) == len(first)
    assert sorted(second["patch_id"]) == sorted(first["patch_id"])
    assert not (out / "quicklooks").exists() or not list((out / "quicklooks").glob("*.png")), \
        "stale quicklooks of the earlier run must not survive a run that writes none"


def _redlines(tmp_path: Path, crs: str = "EPSG:4326", *, bowtie: bool = False) -> Path:
    """Two redline polygons over the west and east halves of the Taizhou scene, in ``crs``."""
    with rasterio.open(TAIZHOU / "2003TM") as src:
        left, bottom, right, top = src.bounds
        scene_crs = src.crs
    mid = (left + right) / 2
    west = box(left + 300, bottom + 300, mid, top - 300)
    east = box(mid, bottom + 300, right - 300, top - 300)
    if bowtie:  # self-intersecting: repaired with make_valid
        east = Polygon([(mid, bottom + 300), (right - 300, top - 300), (right - 300, bottom + 300), (mid, top - 300)])
    gdf = gpd.GeoDataFrame({"redline_id": ["RL-W", "RL-E"], "name": ["west wetland", "east wetland"]},
                           geometry=[west, east], crs=scene_crs).to_crs(crs)
    path = tmp_path / "redlines.gpkg"
    gdf.to_file(path)
    return path


def test_redlines_in_another_crs_clip_the_patches(taizhou, tmp_path, capsys):
    rc, out, err = _run(capsys, "redline", "detect", "--before", TAIZHOU / "2000TM", "--after", TAIZHOU / "2003TM",
                        "--redlines", _redlines(tmp_path), "--no-quicklooks", "-o", tmp_path / "out")
    assert rc == 0, err
    clipped = gpd.read_file(tmp_path / "out" / "patches.gpkg")
    everything = gpd.read_file(taizhou / "patches.gpkg")
    assert 0 < len(clipped) and set(clipped["redline_id"]) <= {"RL-W", "RL-E"}
    assert set(clipped["redline_name"]) <= {"west wetland", "east wetland"}
    assert clipped["area_m2"].sum() < everything["area_m2"].sum()
    with rasterio.open(TAIZHOU / "2003TM") as src:
        inner = box(src.bounds.left + 290, src.bounds.bottom + 290, src.bounds.right - 290, src.bounds.top - 290)
    assert clipped.to_crs(everything.crs).within(inner.buffer(1.0)).all()


def test_invalid_redline_geometry_is_repaired(tmp_path, capsys):
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        rc, _, err = _run(capsys, "redline", "detect", "--before", TAIZHOU / "2000TM", "--after", TAIZHOU / "2003TM",
                          "--redlines", _redlines(tmp_path, "EPSG:32651", bowtie=True), "--no-quicklooks",
                          "-o", tmp_path / "out")
    assert rc == 0, err
    assert len(gpd.read_file(tmp_path / "out" / "patches.gpkg")) > 0


# --------------------------------------------------------------------------------------------------
# Simulated Sentinel-2 L2A pairs (real per-band layout)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s2pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2")
    assert main(["sim", "s2", "--small", "--seed", "3", "--changes", "12", "-o", str(root / "pair")]) == 0
    return root / "pair"


def test_s2_pair_finds_the_planted_changes(s2pair, tmp_path, capsys):
    rc, _, err = _run(capsys, "redline", "detect", "--before", s2pair / "before", "--after", s2pair / "after",
                      "--no-quicklooks", "-o", tmp_path / "out")
    assert rc == 0, err
    with rasterio.open(s2pair / "truth.tif") as t, rasterio.open(tmp_path / "out" / "change.tif") as c:
        truth, change = t.read(1), c.read(1)
        assert c.transform == t.transform
    planted = (truth > 0) & (truth != 255) & (change != 255)
    assert planted.sum() > 100
    assert (change[planted] == 1).mean() > 0.8  # most planted change pixels are found


def test_scene_in_another_crs_is_reprojected(s2pair, tmp_path, capsys):
    """The before scene rewritten in the neighbouring UTM zone still lines up (reprojected, not refused)."""
    moved = tmp_path / "before_utm49"
    moved.mkdir()
    for src_path in sorted((s2pair / "before").iterdir()):
        if src_path.suffix.lower() != ".tif":
            shutil.copy(src_path, moved / src_path.name)
            continue
        with rasterio.open(src_path) as src:
            dst_crs = "EPSG:32649"
            transform, width, height = calculate_default_transform(src.crs, dst_crs, src.width, src.height,
                                                                   *src.bounds, resolution=src.res)
            profile = src.profile | {"crs": dst_crs, "transform": transform, "width": width, "height": height}
            with rasterio.open(moved / src_path.name, "w", **profile) as dst:
                reproject(rasterio.band(src, 1), rasterio.band(dst, 1), dst_crs=dst_crs, dst_transform=transform,
                          resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    rc, _, err = _run(capsys, "redline", "detect", "--before", moved, "--after", s2pair / "after",
                      "--no-quicklooks", "-o", tmp_path / "out")
    assert rc == 0, err
    with rasterio.open(s2pair / "truth.tif") as t, rasterio.open(tmp_path / "out" / "change.tif") as c:
        truth, change = t.read(1), c.read(1)
        assert c.crs == t.crs
    planted = (truth > 0) & (truth != 255) & (change != 255)
    assert (change[planted] == 1).mean() > 0.6


def test_all_cloud_after_scene_gives_no_patches_and_says_why(s2pair, tmp_path, capsys):
    cloudy = tmp_path / "after_cloudy"
    shutil.copytree(s2pair / "after", cloudy)
    scl = next(cloudy.glob("*_SCL_20m.tif"))
    with rasterio.open(scl, "r+") as dst:
        dst.write(np.full((dst.height, dst.width), 9, dst.dtypes[0]), 1)  # cloud high probability
    rc, out, err = _run(capsys, "redline", "detect", "--before", s2pair / "before", "--after", cloudy,
                        "-o", tmp_path / "out")
    assert rc == 0, err
    assert "0 change patch(es)" in out and "clear" in out
    assert len(gpd.read_file(tmp_path / "out" / "patches.gpkg")) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_patches"] == 0 and "clear" in summary["reason"]
    with rasterio.open(tmp_path / "out" / "change.tif") as c:
        assert (c.read(1) == 255).all()


# --------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written, nothing lost
# --------------------------------------------------------------------------------------------------

def test_scenes_that_do_not_overlap(tmp_path, capsys):
    rc, _, err = _run(capsys, "redline", "detect", "--before", TAIZHOU / "2000TM",
                      "--after", NANJING / "LT51200382002193BJC00_Nanjing", "-o", tmp_path / "out")
    _one_line_error(rc, err, "overlap")
    assert not (tmp_path / "out").exists()
    # a series: a later after scene elsewhere is named as such
    rc, _, err = _run(capsys, "redline", "detect", "--before", TAIZHOU / "2000TM", "--after", TAIZHOU / "2003TM",
                      NANJING / "LT51200382002193BJC00_Nanjing", "-o", tmp_path / "out")
    _one_line_error(rc, err, "do not overlap: later after scene", "LT51200382002193BJC00_Nanjing",
                    "first after scene")
    assert not (tmp_path / "out").exists()


def test_missing_band_is_named(s2pair, tmp_path, capsys):
    broken = tmp_path / "after"
    shutil.copytree(s2pair / "after", broken)
    next(broken.glob("*_B11_20m.tif")).unlink()
    rc, _, err = _run(capsys, "redline", "detect", "--before", s2pair / "before", "--after", broken,
                      "-o", tmp_path / "out")
    _one_line_error(rc, err, "B11")
    assert not (tmp_path / "out").exists()


def test_unknown_format(tmp_path, capsys):
    junk = tmp_path / "scene.txt"
    junk.write_text("not an image\n")
    rc, _, err = _run(capsys, "redline", "detect", "--before", TAIZHOU / "2000TM", "--after", junk,
                      "-o", tmp_path / "out")
    _one_line_error(rc, err, str(junk))
    assert not (tmp_path / "out").exists()


def test_unusable_redline_geometry_is_reported(taizhou, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(taizhou, out)
    before = _snapshot(out)
    bad = tmp_path / "points.geojson"
    gpd.GeoDataFrame({"redline_id": ["P1"]}, geometry=[Point(120.0, 32.5)], crs="EPSG:4326").to_file(bad)
    rc, _, err = _run(capsys, "redline", "detect", "--before", TAIZHOU / "2000TM", "--after", TAIZHOU / "2003TM",
                      "--redlines", bad, "-o", out)
    _one_line_error(rc, err, "P1")
    assert _snapshot(out) == before, "a failed run changed the earlier outputs"


def test_bad_mmu_and_missing_redline_file(tmp_path, capsys):
    rc, _, err = _run(capsys, "redline", "detect", "--before", TAIZHOU / "2000TM", "--after", TAIZHOU / "2003TM",
                      "--mmu-px", "0", "-o", tmp_path / "out")
    _one_line_error(rc, err, "--mmu-px")
    rc, _, err = _run(capsys, "redline", "detect", "--before", TAIZHOU / "2000TM", "--after", TAIZHOU / "2003TM",
                      "--redlines", tmp_path / "nope.gpkg", "-o", tmp_path / "out")
    _one_line_error(rc, err, "nope.gpkg")
    assert not (tmp_path / "out").exists()


def test_validate_change_rejects_a_reference_on_another_grid(taizhou, capsys):
    rc, _, err = _run(capsys, "validate", "--kind", "change", "--product", taizhou / "change.tif",
                      "--reference", NANJING / "change.bmp", NANJING / "unchanged.bmp")
    _one_line_error(rc, err, "400x400", "800x800")
    rc, _, err = _run(capsys, "validate", "--kind", "change", "--product", taizhou / "change.tif")
    _one_line_error(rc, err, "--reference")
    rc, _, err = _run(capsys, "validate", "--kind", "no2", "--product", taizhou / "change.tif", "--out", "x")
    _one_line_error(rc, err, "--stations")


def test_series_confirms_and_several_befores_make_a_reference(taizhou, tmp_path, capsys):
    """Two after observations that agree confirm every patch (GLAD practice: high, or highest where
    the index rule agrees too); two before scenes make a latest-clear reference."""
    rc, _, err = _run(capsys, "redline", "detect", "--before", TAIZHOU / "2000TM", TAIZHOU / "2000TM",
                      "--after", TAIZHOU / "2003TM", TAIZHOU / "2003TM", "--no-quicklooks", "-o", tmp_path / "out")
    assert rc == 0, err
    series = gpd.read_file(tmp_path / "out" / "patches.gpkg")
    pair = gpd.read_file(taizhou / "patches.gpkg")
    assert set(series["confidence"]) <= {"high", "highest"} and "highest" in set(series["confidence"])
    assert series["area_m2"].sum() == pytest.approx(pair["area_m2"].sum(), rel=1e-9)


def test_console_command_exits_fast_with_everything_written(tmp_path, taizhou):
    """The ``rsmon`` console entry (``rsmon.cli:run``) ends a redline run without the interpreter's
    teardown: exit code, complete standard output and the same files as the in-process run; a
    failure still exits 2 with its one line."""
    import subprocess
    import sys

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rsmon.cli", "redline", "detect", "--before", str(TAIZHOU / "2000TM"), "--after",
           str(TAIZHOU / "2003TM"), "--max-quicklooks", "5", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "change patch" in lines[0] and lines[-1] == f"summary: {out / 'summary.json'}"
    for name in ("change.tif", "change_class.tif", "confidence.tif"):  # tags differ (provenance), pixels not
        with rasterio.open(out / name) as a, rasterio.open(taizhou / name) as b:
            np.testing.assert_array_equal(a.read(), b.read(), err_msg=name)
    ids = [gpd.read_file(folder / "patches.geojson")["patch_id"].tolist() for folder in (out, taizhou)]
    assert ids[0] == ids[1] and len(ids[0]) == json.loads((out / "summary.json").read_text())["n_patches"] > 0
    bad = subprocess.run([*cmd[:-1], str(tmp_path / "out2"), "--mmu-px", "0"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("rsmon: error:") and "--mmu-px" in bad.stderr


def test_a_run_pauses_the_garbage_collector(tmp_path, monkeypatch):
    """Cyclic collections are off while a run lasts (also when called in-process, as here) and on
    again after it; an in-process ``main`` leaves them on."""
    import gc

    from rsmon.workflow import redline as job

    seen = []
    real = job.detect_change_blocks

    def recording(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "detect_change_blocks", recording)
    assert gc.isenabled()
    assert main(["redline", "detect", "--before", str(TAIZHOU / "2000TM"), "--after", str(TAIZHOU / "2003TM"),
                 "--no-quicklooks", "-o", str(tmp_path / "out")]) == 0
    assert seen == [False] and gc.isenabled()
    gc.disable()  # a caller's choice is kept
    try:
        job.run_redline_detect(TAIZHOU / "2000TM", TAIZHOU / "2003TM", tmp_path / "again", quicklooks=False)
        assert seen == [False, False] and not gc.isenabled()
    finally:
        gc.enable()
