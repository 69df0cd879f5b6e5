"""End to end: ``rsmon sim viirs`` -> ``rsmon fire detect`` -> ``rsmon validate --kind fire``, and the
one-line failures (mismatched 02/03 pair, truncated file, unwritable folder) that leave no output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rsmon.cli import main
from rsmon.io.fire_output import FIRMS_VIIRS_COLUMNS

OUTPUTS = ("fires.csv", "fires_rsmon.csv", "fires.geojson", "fires.gpkg", "fires_map.png")


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def granules(tmp_path_factory):
    """Two small simulated day granules (different seeds and start times) and their truth."""
    root = tmp_path_factory.mktemp("sim")
    paths = {}
    for key, seed, start in (("a", 3, "2023-06-10T05:24"), ("b", 4, "2023-06-10T05:30")):
        folder = root / key
        assert main(["sim", "viirs", "--seed", str(seed), "--small", "--start", start, "--fires", "60",
                     "--out", str(folder)]) == 0
        paths[key] = {
            "img": next(folder.glob("VJ102IMG.*.nc")),
            "geo": next(folder.glob("VJ103IMG.*.nc")),
            "truth": next(folder.glob("*.truth.csv")),
        }
    return paths


@pytest.fixture(scope="module")
def detected(granules, tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "out"
    rc = main(["fire", "detect", str(granules["a"]["img"]), "-o", str(out)])
    assert rc == 0
    return out


def test_fire_detect_writes_all_products(detected, capsys):
    for name in OUTPUTS:
        assert (detected / name).is_file(), name
    assert not [p for p in detected.iterdir() if p.name.startswith(".")], "staging left behind"
    header = (detected / "fires.csv").read_text().splitlines()[0].split(",")
    assert header == list(FIRMS_VIIRS_COLUMNS) and len(header) == 14
    fires = pd.read_csv(detected / "fires.csv", dtype={"acq_time": str})
    assert len(fires) > 10
    assert set(fires["confidence"]) <= {"l", "n", "h"}
    rich = pd.read_csv(detected / "fires_rsmon.csv")
    assert list(rich.columns[:14]) == list(FIRMS_VIIRS_COLUMNS)
    assert {"line", "sample", "granule_id", "category"} <= set(rich.columns)
    assert set(rich["category"]) == {"unclassified"}
    gj = json.loads((detected / "fires.geojson").read_text())
    assert len(gj["features"]) == len(fires)


def test_validate_fire_against_truth(granules, detected, tmp_path, capsys):
    out = tmp_path / "val"
    rc, stdout, err = _run(capsys, "validate", "--kind", "fire", "--product", str(detected / "fires.csv"),
                           "--stations", str(granules["a"]["truth"]), "--max-distance-m", "375",
                           "--window-min", "20", "--out", str(out))
    assert rc == 0, err
    stats = json.loads((out / "stats.json").read_text())
    assert {"precision", "recall", "f1", "n_detections", "n_reference", "recall_by_frp"} <= set(stats)
    assert stats["n_reference"] == 60
    assert stats["n_detections"] == len(pd.read_csv(detected / "fires.csv"))
    assert stats["precision"] > 0.8 and stats["recall"] > 0.1
    assert [b["frp_min_mw"] for b in stats["recall_by_frp"]][:2] == [0.0, 5.0]
    assert (out / "matches.csv").is_file() and (out / "recall_vs_frp.png").is_file()
    assert "precision=" in stdout


def test_fire_detect_with_landcover_and_admin(granules, detected, tmp_path, capsys):
    rasterio = pytest.importorskip("rasterio")
    gpd = pytest.importorskip("geopandas")
    from rasterio.transform import from_origin
    from shapely.geometry import box

    fires = pd.read_csv(detected / "fires.csv")
    west, east = fires["longitude"].min() - 0.5, fires["longitude"].max() + 0.5
    south, north = fires["latitude"].min() - 0.5, fires["latitude"].max() + 0.5
    res = 0.01
    nx, ny = int(np.ceil((east - west) / res)), int(np.ceil((north - south) / res))
    data = np.full((ny, nx), 40, np.uint8)
    data[:, : nx // 2] = 10  # west half tree cover, east half cropland
    lc = tmp_path / "lc.tif"
    with rasterio.open(lc, "w", driver="GTiff", width=nx, height=ny, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=from_origin(west, north, res, res), nodata=0) as dst:
        dst.write(data, 1)
    mid = (west + east) / 2
    admin = gpd.GeoDataFrame({"name": ["W", "E"]}, geometry=[box(west, south, mid, north), box(mid, south, east, north)],
                             crs=4326)
    admin_path = tmp_path / "admin.geojson"
    admin.to_file(admin_path, driver="GeoJSON")
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "fire", "detect", str(granules["a"]["img"]), "--geo", str(granules["a"]["geo"]),
                           "--landcover", str(lc), "--admin", str(admin_path), "-o", str(out))
    assert rc == 0, err
    rich = pd.read_csv(out / "fires_rsmon.csv")
    assert "straw_burning_suspected" in set(rich["category"])
    counts = pd.read_csv(out / "counts_by_admin.csv")
    assert {"name", "date", "n_fires", "straw_burning_suspected", "cropland_area_ha", "straw_per_1000ha"} <= set(counts)
    assert counts["n_fires"].sum() == len(rich)
    # the same map as two tiles in a folder (mosaicked for the run): the same categories and counts
    tiles = tmp_path / "lc_tiles"
    tiles.mkdir()
    for name, cols, x0 in (("w.tif", slice(0, nx // 2), west), ("e.tif", slice(nx // 2, nx), west + (nx // 2) * res)):
        part = data[:, cols]
        with rasterio.open(tiles / name, "w", driver="GTiff", width=part.shape[1], height=ny, count=1, dtype="uint8",
                           crs="EPSG:4326", transform=from_origin(x0, north, res, res), nodata=0) as dst:
            dst.write(part, 1)
    out2 = tmp_path / "out2"
    rc, _, err = _run(capsys, "fire", "detect", str(granules["a"]["img"]), "--geo", str(granules["a"]["geo"]),
                      "--landcover", str(tiles), "--admin", str(admin_path), "-o", str(out2))
    assert rc == 0, err
    pd.testing.assert_series_equal(pd.read_csv(out2 / "fires_rsmon.csv")["category"], rich["category"])
    pd.testing.assert_frame_equal(pd.read_csv(out2 / "counts_by_admin.csv"), counts)


def test_zero_fires_is_a_valid_result(tmp_path, capsys):
    from rsmon.sim.viirs import SMALL_LINES, SMALL_PIXELS, simulate_granule

    g = simulate_granule(tmp_path / "sim", seed=7, n_lines=SMALL_LINES, n_pixels=SMALL_PIXELS, fires=[])
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "fire", "detect", str(g.img_path), "-o", str(out))
    assert rc == 0, err
    if "0 fires" not in stdout:
        pytest.skip("the detector found false alarms in a fire-free granule; zero-row path not reached")
    assert "zero rows" in stdout
    for name in OUTPUTS:
        assert (out / name).is_file()
    assert (out / "fires.csv").read_text().strip().split(",") == list(FIRMS_VIIRS_COLUMNS)
    # zero detections and zero references: nothing to compare, nothing written
    rc, stdout, err = _run(capsys, "validate", "--kind", "fire", "--product", str(out / "fires.csv"),
                           "--stations", str(out / "fires.csv"), "--out", str(tmp_path / "val"))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "val").exists() or not any((tmp_path / "val").iterdir())


def _assert_one_line_failure(rc, err, out_dir: Path):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsmon: error:"), err
    assert not out_dir.exists() or not list(out_dir.iterdir()), list(out_dir.iterdir())


def test_mismatched_pair_fails_cleanly(granules, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "fire", "detect", str(granules["a"]["img"]), "--geo", str(granules["b"]["geo"]),
                      "-o", str(out))
    _assert_one_line_failure(rc, err, out)
    assert granules["a"]["img"].name in err or granules["b"]["geo"].name in err


def test_truncated_granule_fails_cleanly(granules, tmp_path, capsys):
    folder = tmp_path / "trunc"
    folder.mkdir()
    img = folder / granules["a"]["img"].name
    data = granules["a"]["img"].read_bytes()
    img.write_bytes(data[: len(data) // 3])
    shutil.copy(granules["a"]["geo"], folder / granules["a"]["geo"].name)
    out = tmp_path / "out"
    # a good granule first: the bad second one must still leave nothing written
    rc, _, err = _run(capsys, "fire", "detect", str(granules["b"]["img"]), str(img), "-o", str(out))
    _assert_one_line_failure(rc, err, out)
    assert not out.exists(), "a failed run must not even create the output folder"
    assert img.name in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_fails_cleanly(granules, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc, _, err = _run(capsys, "fire", "detect", str(granules["a"]["img"]), "-o", str(locked / "out"))
        _assert_one_line_failure(rc, err, locked)
        rc, _, err = _run(capsys, "fire", "detect", str(granules["a"]["img"]), "-o", str(locked))
        _assert_one_line_failure(rc, err, locked)
    finally:
        locked.chmod(0o700)


def test_output_path_is_a_file_fails_cleanly(granules, tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    for out in (target, target / "sub"):  # a file, and a folder that cannot be created (works as root too)
        rc, _, err = _run(capsys, "fire", "detect", str(granules["a"]["img"]), "-o", str(out))
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "output folder" in err, err
    assert target.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_geo_count_mismatch_is_usage_error(granules, tmp_path, capsys):
    rc, _, err = _run(capsys, "fire", "detect", str(granules["a"]["img"]), "--geo", str(granules["a"]["geo"]),
                      str(granules["b"]["geo"]), "-o", str(tmp_path / "out"))
    assert rc == 2 and "--geo" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_landcover_that_misses_the_admin_units_still_gives_counts(granules, detected, tmp_path, capsys):
    """A land-cover tile elsewhere: fires are counted per unit, only the per-cropland-area rates are absent."""
    rasterio = pytest.importorskip("rasterio")
    gpd = pytest.importorskip("geopandas")
    from rasterio.transform import from_origin
    from shapely.geometry import box

    fires = pd.read_csv(detected / "fires.csv")
    lc = tmp_path / "elsewhere.tif"
    with rasterio.open(lc, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=from_origin(6.0, 1.0, 0.01, 0.01), nodata=0) as dst:
        dst.write(np.full((10, 10), 40, np.uint8), 1)
    admin = gpd.GeoDataFrame({"name": ["all"]}, geometry=[box(fires["longitude"].min() - 1, fires["latitude"].min() - 1,
                                                              fires["longitude"].max() + 1, fires["latitude"].max() + 1)],
                             crs=4326)
    admin_path = tmp_path / "admin.geojson"
    admin.to_file(admin_path, driver="GeoJSON")
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "fire", "detect", str(granules["a"]["img"]), "--landcover", str(lc),
                      "--admin", str(admin_path), "-o", str(out))
    assert rc == 0, err
    counts = pd.read_csv(out / "counts_by_admin.csv")
    assert counts["n_fires"].sum() == len(fires)
    assert "straw_per_1000ha" not in counts.columns
