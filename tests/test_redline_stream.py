"""A redline run streamed through scratch files (bounded memory at any scene size) gives the
in-memory run's outputs: the same rasters and overviews, the same patch table, nothing left behind."""

from __future__ import annotations

import json
import os

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from shapely.geometry import box

from rsmon.cli import main
from rsmon.errors import OutputError
from rsmon.io.spill import SPILL_RASTERS, ChangeSpill
from rsmon.products import change_blocks
from rsmon.products.change_blocks import INDEX_SAMPLE_NAMES
from rsmon.workflow import redline as job
from tests.patch_tables import assert_same_patches
from tests.paths import SEEDS

TAIZHOU = SEEDS / "landsat-cd-taizhou-nanjing" / "Taizhou"
RASTERS = ("change.tif", "change_class.tif", "confidence.tif")


@pytest.fixture(scope="module")
def s2pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2stream")
    assert main(["sim", "s2", "--size", "1100", "--seed", "5", "--changes", "80", "-o", str(root / "pair")]) == 0
    return root / "pair"


def _redlines(path, folder):
    """Two features over parts of the scene, in the scene's CRS."""
    with rasterio.open(next((path / "after").glob("*B04*"))) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs
    w, h = right - left, top - bottom
    zones = gpd.GeoDataFrame({"id": ["R1", "R2"], "name": ["north", "south"]},
                             geometry=[box(left + 0.1 * w, bottom + 0.45 * h, left + 0.9 * w, top - 0.05 * h),
                                       box(left + 0.2 * w, bottom + 0.1 * h, left + 0.7 * w, bottom + 0.5 * h)],
                             crs=crs)
    out = folder / "redlines.gpkg"
    zones.to_file(out)
    return out


def _same_outputs(a, b):
    for name in RASTERS:
        with rasterio.open(a / name) as x, rasterio.open(b / name) as y:
            assert x.profile == y.profile, name
            np.testing.assert_array_equal(x.read(1), y.read(1), err_msg=name)
            assert x.overviews(1) == y.overviews(1), name
            for level in range(len(x.overviews(1))):
                shape = (x.height // x.overviews(1)[level], x.width // x.overviews(1)[level])
                np.testing.assert_array_equal(x.read(1, out_shape=shape), y.read(1, out_shape=shape))
    assert_same_patches(a, b)
    assert not [p for p in b.iterdir() if p.name.startswith(".")], "scratch or staging left behind"


def test_streamed_run_equals_the_in_memory_run(s2pair, tmp_path, monkeypatch):
    """Small windows (many carried regions) and redlines that cut patches: same files."""
    redlines = _redlines(s2pair, tmp_path)
    argv = ["redline", "detect", "--before", str(s2pair / "before"), "--after", str(s2pair / "after"),
            "--redlines", str(redlines), "--max-quicklooks", "3"]
    assert main(argv + ["-o", str(tmp_path / "memory")]) == 0
    monkeypatch.setenv("RSMON_STREAM_PIXELS", "0")
    monkeypatch.setattr(job, "STREAM_WINDOW_ROWS", 97)
    spills = []
    real = ChangeSpill.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        spills.append(self.folder)

    monkeypatch.setattr(ChangeSpill, "__init__", spy)
    assert main(argv + ["-o", str(tmp_path / "streamed")]) == 0
    assert len(spills) == 1 and not spills[0].exists()
    _same_outputs(tmp_path / "memory", tmp_path / "streamed")
    summaries = [json.loads((tmp_path / k / "summary.json").read_text()) for k in ("memory", "streamed")]
    assert [s["streamed"] for s in summaries] == [False, True]
    assert summaries[0]["n_change_pixels"] == summaries[1]["n_change_pixels"] > 0
    assert sorted(os.listdir(tmp_path / "streamed" / "quicklooks")) == sorted(
        os.listdir(tmp_path / "memory" / "quicklooks"))
    # a rerun into the same folder reconciles with its patches.gpkg (window by window): same ids
    first = gpd.read_file(tmp_path / "streamed" / "patches.gpkg")
    assert main(argv + ["-o", str(tmp_path / "streamed")]) == 0
    again = gpd.read_file(tmp_path / "streamed" / "patches.gpkg")
    assert list(again["patch_id"]) == list(first["patch_id"]) and again["patch_id"].is_unique


@pytest.mark.skipif(not TAIZHOU.is_dir(), reason=f"seed data {TAIZHOU} missing")
def test_streamed_run_on_real_landsat_equals_the_in_memory_run(tmp_path, monkeypatch):
    argv = ["redline", "detect", "--before", str(TAIZHOU / "2000TM"), "--after", str(TAIZHOU / "2003TM"),
            "--no-quicklooks"]
    assert main(argv + ["-o", str(tmp_path / "memory")]) == 0
    monkeypatch.setattr(job, "STREAM_WINDOW_ROWS", 64)
    assert main(argv + ["--stream", "-o", str(tmp_path / "streamed")]) == 0
    _same_outputs(tmp_path / "memory", tmp_path / "streamed")


@pytest.mark.skipif(not TAIZHOU.is_dir(), reason=f"seed data {TAIZHOU} missing")
@pytest.mark.parametrize("mode", ["--no-stream", "--stream"])
def test_series_block_pass_gives_the_lazy_series_outputs(tmp_path, monkeypatch, mode):
    """A series is computed in one pass over its blocks (masks and index samples, streamed or
    not); its rasters and patch table equal those of the lazy series itself (index means read
    from it)."""
    from rsmon.io.optical import align_pair, open_optical
    from rsmon.products.change import detect_series
    from rsmon.products.patches import patches_from_change

    monkeypatch.setattr(job, "STREAM_WINDOW_ROWS", 64)
    scenes = [TAIZHOU / "2000TM", TAIZHOU / "2003TM", TAIZHOU / "2003TM"]
    assert main(["redline", "detect", "--before", str(scenes[0]), "--after", *map(str, scenes[1:]),
                 "--no-quicklooks", mode, "-o", str(tmp_path / "out")]) == 0
    after = open_optical(scenes[1], chunks=64)
    before = align_pair(open_optical(scenes[0], chunks=64), after)[0]
    lazy = detect_series([before, after, after])
    assert lazy["change"].chunks is not None and len(lazy["change"].chunks[0]) > 3
    lazy = lazy.compute()  # once: every comparison below reads it (the graph of 64-pixel chunks is slow)
    want = patches_from_change(lazy)
    for name in RASTERS:
        with rasterio.open(tmp_path / "out" / name) as src:
            np.testing.assert_array_equal(src.read(1), lazy[name.removesuffix(".tif")].values, err_msg=name)
    got = gpd.read_file(tmp_path / "out" / "patches.gpkg")
    assert len(got) > 10 and list(got["patch_id"]) == list(want["patch_id"])
    assert shapely.equals(got.geometry.to_numpy(), want.geometry.to_numpy()).all()
    assert list(got["confidence"]) == list(want["confidence"]) and list(got["n_pixels"]) == list(want["n_pixels"])
    means = [c for c in want.columns if c.endswith(("_before", "_after"))]
    np.testing.assert_allclose(got[means].to_numpy(float), want[means].to_numpy(float), rtol=1e-6, equal_nan=True)
    # the pass on 64-pixel blocks (the CLI's are 512): masks and samples of the lazy series
    with ChangeSpill(tmp_path, (lazy.sizes["y"], lazy.sizes["x"]), change_blocks.SERIES_SAMPLE_NAMES) as spill:
        blocks = change_blocks.series_change_blocks([before, after, after], spill=spill if mode == "--stream" else None)
        assert len(blocks.piece_rows) > 3 and blocks.piece_rows[0] == (0, 64)
        for name in ("change", "change_class", "confidence"):
            np.testing.assert_array_equal(np.asarray(xr.Variable(("y", "x"), getattr(blocks, name))),
                                          lazy[name].values, err_msg=name)
        change = lazy["change"].values.ravel() == 1
        order = np.argsort(blocks.index_flat)  # block by block
        np.testing.assert_array_equal(blocks.index_flat[order], np.flatnonzero(change))
        for name, values in blocks.index_values.items():
            if name == "first_observation":  # the same after scene twice: the first flags
                assert set(np.unique(values).tolist()) <= {0.0, 1.0} and (values == 0).mean() > 0.9
                continue
            np.testing.assert_array_equal(values[order], lazy[name].values.ravel()[change].astype(np.float32),
                                          err_msg=name)
        assert blocks.n_change == change.sum() and blocks.n_valid == (lazy["change"].values != 255).sum()


def test_streamed_failure_leaves_the_folder_as_it_was(s2pair, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["redline", "detect", "--before", str(s2pair / "before"), "--after", str(s2pair / "after"),
            "--no-quicklooks", "--stream", "-o", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def broken(*args, **kwargs):
        raise OutputError("patches: disk full (simulated)")

    monkeypatch.setattr(job, "patches_from_change", broken)
    assert main(argv) == 2
    assert "disk full" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_scratch_of_a_killed_run_is_removed_when_stale(s2pair, tmp_path):
    out = tmp_path / "out"
    stale, fresh = out / ".rsmon-scratch-old.partial", out / ".rsmon-scratch-now.partial"
    for folder in (stale, fresh):
        (folder / ".rsmon-spill-x").mkdir(parents=True)
        (folder / ".rsmon-spill-x" / "change.raw").write_bytes(b"\0" * 100)
    old = os.stat(stale).st_mtime - job.STALE_SCRATCH_S - 60
    os.utime(stale, (old, old))
    assert main(["redline", "detect", "--before", str(s2pair / "before"), "--after", str(s2pair / "after"),
                 "--no-quicklooks", "--stream", "-o", str(out)]) == 0
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a run still going


def test_bad_stream_setting_is_named(s2pair, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RSMON_STREAM_PIXELS", "lots")
    rc = main(["redline", "detect", "--before", str(s2pair / "before"), "--after", str(s2pair / "after"),
               "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "RSMON_STREAM_PIXELS" in err[0]
    assert not (tmp_path / "out").exists()


def test_spilled_pass_holds_no_samples_and_equals_the_in_memory_pass(s2pair, tmp_path):
    from rsmon.io.optical import open_optical
    from rsmon.products.change import detect_change_blocks

    before, after = open_optical(s2pair / "before", chunks=256), open_optical(s2pair / "after", chunks=256)
    memory = detect_change_blocks(before, after)
    with ChangeSpill(tmp_path, (after.sizes["y"], after.sizes["x"]), INDEX_SAMPLE_NAMES) as spill:
        streamed = detect_change_blocks(before, after, spill=spill)
        assert memory.n_change > 1000 and streamed.n_change == memory.n_change
        assert not any(len(flat) for flat, _ in streamed.pieces)  # every block row's samples went to disk
        for name in SPILL_RASTERS:
            np.testing.assert_array_equal(np.asarray(xr.Variable(("y", "x"), getattr(streamed, name))),
                                          getattr(memory, name), err_msg=name)
        for row0, row1 in ((0, 1), (250, 600), (1000, 1100)):
            got = {int(f[0]): f for f, _ in streamed.samples_in_rows(row0, row1)}
            want = {int(f[0]): f for f, _ in memory.samples_in_rows(row0, row1) if len(f)}
            assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in got)
        np.testing.assert_array_equal(streamed.index_flat, memory.index_flat)
        for name, values in memory.index_values.items():
            np.testing.assert_array_equal(streamed.index_values[name], values, err_msg=name)


def test_spill_round_trip_and_errors(tmp_path):
    shape = (70, 50)
    rng = np.random.default_rng(0)
    rasters = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in SPILL_RASTERS]
    with ChangeSpill(tmp_path, shape, INDEX_SAMPLE_NAMES) as spill:
        for r0, r1 in ((0, 32), (32, 64), (64, 70)):
            buffers = spill.rows(r0, r1)
            for buf, full in zip(buffers, rasters):
                buf[:] = full[r0:r1]
            flat = np.arange(r0 * 50, r1 * 50, 7, dtype=np.int64)
            planes = [flat.astype(np.float32) + k for k in range(len(INDEX_SAMPLE_NAMES))]
            spill.done(r0, r1, buffers, [(flat, planes), (flat[:0], [p[:0] for p in planes])])
        for name, full in zip(SPILL_RASTERS, rasters):
            lazy = xr.Variable(("y", "x"), spill.array(name))
            np.testing.assert_array_equal(lazy[33:41, 5:17].values, full[33:41, 5:17])
            np.testing.assert_array_equal(lazy[::3, 7].values, full[::3, 7])
            np.testing.assert_array_equal(lazy.values, full)
        pieces = spill.samples(40, 50)  # only the block row 32-64
        assert len(pieces) == 1 and pieces[0][0][0] == 32 * 50
        np.testing.assert_array_equal(pieces[0][1]["ndvi_after"], pieces[0][0].astype(np.float32) + 1)
        want = sum(len(range(r0 * 50, r1 * 50, 7)) for r0, r1 in ((0, 32), (32, 64), (64, 70)))
        assert [len(f) for f, _ in spill.samples(0, 70)] == [len(range(0, 1600, 7)), len(range(1600, 3200, 7)),
                                                             len(range(3200, 3500, 7))]
        assert sum(len(f) for f, _ in spill.samples(0, 70)) == want
        folder = spill.folder
        assert folder.parent == tmp_path and folder.name.startswith(".rsmon-spill-")
    assert not folder.exists()
    with ChangeSpill(tmp_path, shape, INDEX_SAMPLE_NAMES) as spill:  # scratch files lost meanwhile: named
        buffers = spill.rows(0, 70)
        spill.done(0, 70, buffers, [(np.arange(5, dtype=np.int64), [np.zeros(5, np.float32)] * 8)])
        lazy = xr.Variable(("y", "x"), spill.array("change"))
        os.truncate(spill.folder / "change.raw", 100)
        os.truncate(spill.folder / "samples.raw", 10)
        with pytest.raises(OutputError, match="change.raw"):
            lazy[10:20].values
        with pytest.raises(OutputError, match="samples cut short"):
            spill.samples(0, 70)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(OutputError, match="file"):
        ChangeSpill(not_a_folder, shape, INDEX_SAMPLE_NAMES)
