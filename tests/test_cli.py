"""The ``rsmon`` command end to end: ``rsmon l3`` on simulated swaths, every bad input, ``rsmon info``.

Contract under test (the issue): ``rsmon l3 --product no2 --bbox W,S,E,N --res DEG [--qa] [--period]
[--format tif|nc] -o OUTDIR INPUT...`` writes one file per period; a GeoTIFF has band 1 = mean column,
band 2 = weight, band 3 = pixel count, cell edges exactly at W and S, north-up, EPSG:4326. Any
``RsmonError`` prints ONE line ``rsmon: error: ...`` on stderr naming the file or parameter and exits 2,
leaving no output behind (no .tif/.nc, no ``.partial`` temporaries, no STAC item) and never touching
an existing good output.

Almost everything calls :func:`rsmon.cli.main` in-process (fast); one test runs the real command in a
subprocess to prove the process exit code and the one-line stderr.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import rasterio

sys.path.insert(0, str(Path(__file__).parent))
from s5pfixtures import truncate, write_plain_netcdf, write_s5p_l2  # noqa: E402

from rsmon.cli import main  # noqa: E402
from rsmon.io.s5p import parse_s5p_filename  # noqa: E402
from rsmon.sim.s5p import orbits_of_day, scanlines_crossing, simulate_orbit, truth_column  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds" / "s5p"
REAL_NO2_META = SEEDS / "S5P_OFFL_L2__NO2____20200303T013547_20200303T031717_12367_01_010302_20200306T053815.nc"
REAL_CH4 = SEEDS / "S5P_OFFL_L2__CH4____20190311T101655_20190311T115825_07293_01_010202_20190317T121015.SUB.nc4"

# Simulated swaths over eastern China (happy path)
BBOX = (110.0, 25.0, 120.0, 35.0)
BBOX_ARG = "110,25,120,35"
RES = 0.25
DAYS = (date(2019, 6, 12), date(2019, 6, 13))

# Small fixture swath (tests/s5pfixtures.py: 12 x 8 pixels near lon 116-116.4, lat 39-39.4)
FIX_BBOX = "115,38,118,41"
FIX_RES = "0.1"

OUTPUT_SUFFIXES = (".tif", ".nc", ".json", ".partial", ".lock")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _files(root: Path) -> set[Path]:
    """Every regular file under root (hidden ones too: the atomic writer's temporaries start with '.')."""
    return {Path(d) / f for d, _, names in os.walk(root) for f in names}


def _leftovers(new: set[Path]) -> list[str]:
    """New files that look like outputs: products, STAC JSON, '.partial' temporaries, catalog locks."""
    return sorted(str(p) for p in new if p.suffix in OUTPUT_SUFFIXES or ".partial" in p.name)


def _run(argv: list[str]) -> tuple[int, str, str]:
    """Call rsmon.cli.main in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


PROGRESS_PREFIXES = ("read ", "wrote ")


def _assert_one_line_error(stderr: str, *must_name: str, progress_ok: bool = False) -> str:
    """stderr is exactly one ``rsmon: error:`` line naming every token; with ``progress_ok`` (a run
    without -q) the progress lines printed before the failure may precede it."""
    lines = stderr.splitlines()
    if progress_ok:
        progress = [ln for ln in lines[:-1] if ln.startswith(PROGRESS_PREFIXES)]
        assert progress == lines[:-1], f"unexpected stderr lines before the error:\n{stderr}"
        lines = lines[-1:]
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}:\n{stderr}"
    line = lines[0]
    assert line.startswith("rsmon: error: "), line
    assert "Traceback" not in stderr
    for token in must_name:
        assert token in line, f"{token!r} not named in: {line}"
    return line


def _centres(src) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre lon, lat arrays (rows, cols) of an open raster, from its transform."""
    rows, cols = np.indices(src.shape)
    lon, lat = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel(), offset="center")
    return np.asarray(lon).reshape(src.shape), np.asarray(lat).reshape(src.shape)


# --------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_inputs(tmp_path_factory) -> list[Path]:
    """Simulated NO2 swaths (only the scanlines that cross BBOX) of every orbit of DAYS that crosses it."""
    folder = tmp_path_factory.mktemp("sim")
    paths = []
    for day in DAYS:
        for orbit in orbits_of_day(day):
            rows = scanlines_crossing(orbit, BBOX)
            if rows is not None:
                paths.append(simulate_orbit(folder, orbit, seed=1, scanline_range=rows))
    days = {parse_s5p_filename(p.name).start.date() for p in paths}
    assert days == set(DAYS), "the simulated orbits must cover both days"
    assert len(paths) >= 2
    return paths


@pytest.fixture(scope="module")
def l3_runs(sim_inputs, tmp_path_factory) -> dict[str, tuple[Path, list[Path]]]:
    """``rsmon l3`` run once per period (tif) on the simulated swaths: period -> (OUTDIR, printed paths)."""
    runs = {}
    for period in ("day", "orbit"):
        out = tmp_path_factory.mktemp(f"l3_{period}")
        rc, stdout, stderr = _run(["l3", "--product", "no2", "--bbox", BBOX_ARG, "--res", str(RES),
                                   "--qa", "0.75", "--period", period, "--format", "tif", "-q",
                                   "--catalog", str(out / "stac"), "-o", str(out / "l3"),
                                   *map(str, sim_inputs)])
        assert rc == 0, stderr
        assert stderr == ""  # -q: no progress lines
        runs[period] = (out / "l3", [Path(line) for line in stdout.splitlines()])
    return runs


@pytest.fixture()
def good_small(tmp_path) -> Path:
    """A small valid NO2 swath inside FIX_BBOX."""
    return write_s5p_l2(tmp_path / "good")


# --------------------------------------------------------------------------------------------------
# 1. happy path
# --------------------------------------------------------------------------------------------------


def _expected_labels(period: str, inputs: list[Path]) -> set[str]:
    names = [parse_s5p_filename(p.name) for p in inputs]
    if period == "day":
        return {str(n.start.date()) for n in names}  # the simulated passes over China never cross 00 UTC
    return {f"{n.orbit:05d}" for n in names}


@pytest.mark.parametrize("period", ["day", "orbit"])
def test_l3_writes_one_cog_per_period_with_exact_georeference(l3_runs, sim_inputs, period):
    out_dir, printed = l3_runs[period]
    tifs = sorted(out_dir.glob("*.tif"))
    labels = _expected_labels(period, sim_inputs)
    assert {p.name for p in tifs} == {f"rsmon_no2_l3_{period}_{label}_{RES:g}deg.tif" for label in labels}
    assert sorted(printed) == tifs  # stdout lists what was written, one path a line
    assert not [p for p in _files(out_dir) if ".partial" in p.name]

    west, south, east, north = BBOX
    width = round((east - west) / RES)
    height = round((north - south) / RES)
    for tif in tifs:
        with rasterio.open(tif) as src:
            assert src.count == 3
            assert src.descriptions == ("tropospheric_no2_column", "weight", "count")
            assert src.crs.to_epsg() == 4326
            assert (src.width, src.height) == (width, height)
            t = src.transform
            # north-up, pixel size (res, -res), origin exactly at (W, S + height * res)
            assert (t.a, t.b, t.d, t.e) == (RES, 0.0, 0.0, -RES)
            assert t.c == west
            assert t.f == south + height * RES
            assert src.bounds.left == west and src.bounds.bottom == south
            mean, weight, count = src.read()
            assert src.tags()["period"] == period
        assert np.all(np.isfinite(count)) and np.all(count >= 0)
        assert np.array_equal(count, np.round(count)), "band 3 must hold whole pixel counts"
        hit = count > 0
        assert hit.any() and (~hit).any()  # the swaths cover part of the bbox only
        assert np.all(np.isfinite(mean[hit]))
        assert np.all(np.isnan(mean[~hit]))
        assert np.all(weight[hit] > 0)
        assert np.all((weight[~hit] == 0) | np.isnan(weight[~hit]))


def test_l3_catalog_holds_one_item_per_output(l3_runs):
    out_dir, printed = l3_runs["day"]
    stac = out_dir.parent / "stac"
    assert (stac / "catalog.json").is_file()
    items = sorted(p for p in stac.rglob("*.json") if json.loads(p.read_text()).get("type") == "Feature")
    assert {p.stem for p in items} == {p.stem for p in printed}
    for item_path in items:
        item = json.loads(item_path.read_text())
        assert item["bbox"] == list(BBOX)
        href = (item_path.parent / item["assets"]["data"]["href"]).resolve()
        assert href == (out_dir / f"{item['id']}.tif").resolve()


def test_l3_mean_column_follows_the_simulated_truth(l3_runs):
    """Sanity check of the whole chain (sim -> reader -> binning -> COG): well-covered cells follow
    truth_column at their centres, and a flipped or one-cell-shifted grid correlates worse."""
    out_dir, _ = l3_runs["day"]
    checked = 0
    for tif in sorted(out_dir.glob("*.tif")):
        with rasterio.open(tif) as src:
            mean, weight, _ = src.read()
            lon, lat = _centres(src)
        full = weight > 0.9
        if full.sum() < 300:
            continue
        checked += 1

        def r(lon_c, lat_c):
            return np.corrcoef(mean[full], truth_column(lon_c, lat_c)[full])[0, 1]

        r_true = r(lon, lat)
        assert r_true > 0.9, f"{tif.name}: r = {r_true:.3f}"
        wrong = {
            "flipped north-south": (lon, lat[::-1]),
            "flipped east-west": (lon[:, ::-1], lat),
            "shifted one cell east": (lon + RES, lat),
            "shifted one cell west": (lon - RES, lat),
            "shifted one cell north": (lon, lat + RES),
            "shifted one cell south": (lon, lat - RES),
        }
        for what, (lo, la) in wrong.items():
            assert r(lo, la) < r_true, f"{tif.name}: the grid {what} correlates as well ({r(lo, la):.3f})"
    assert checked >= 1


def test_l3_netcdf_output_matches_the_cog(l3_runs, sim_inputs, tmp_path):
    import xarray as xr

    rc, stdout, stderr = _run(["l3", "--bbox", BBOX_ARG, "--res", str(RES), "--period", "day", "--format", "nc",
                               "-q", "--catalog", str(tmp_path / "stac"), "-o", str(tmp_path / "nc"),
                               *map(str, sim_inputs)])
    assert rc == 0, stderr
    ncs = sorted((tmp_path / "nc").glob("*.nc"))
    assert [p.name for p in ncs] == sorted(f"rsmon_no2_l3_day_{d}_{RES:g}deg.nc" for d in DAYS)
    assert sorted(Path(line) for line in stdout.splitlines()) == ncs
    assert not list((tmp_path / "nc").glob("*.tif"))
    assert (tmp_path / "stac" / "catalog.json").is_file()
    items = [p for p in (tmp_path / "stac").rglob("*.json") if json.loads(p.read_text()).get("type") == "Feature"]
    assert len(items) == len(ncs)

    tif_dir, _ = l3_runs["day"]
    for nc in ncs:
        with xr.open_dataset(nc) as ds:
            ds = ds.squeeze(drop=True).sortby("lat", ascending=False)  # north-up like the COG
            lon = ds["lon"].values
            lat = ds["lat"].values
            assert lon[0] == pytest.approx(BBOX[0] + RES / 2, abs=1e-9)
            assert lat[-1] == pytest.approx(BBOX[1] + RES / 2, abs=1e-9)
            assert np.allclose(np.diff(lon), RES) and np.allclose(np.diff(lat), -RES)
            nc_bands = [ds[v].values.astype(np.float32) for v in ("tropospheric_no2_column", "weight", "count")]
        with rasterio.open(tif_dir / (nc.stem + ".tif")) as src:
            tif_bands = list(src.read())
        for a, b in zip(nc_bands, tif_bands):
            np.testing.assert_allclose(a, b, rtol=1e-6, equal_nan=True)


# --------------------------------------------------------------------------------------------------
# 2. every bad input -> one line, exit 2, nothing written
# --------------------------------------------------------------------------------------------------


def _all_fill(folder: Path) -> Path:
    every = tuple((i, j) for i in range(12) for j in range(8))
    return write_s5p_l2(folder, fill_pixels=every)


def _qa_zero(path: Path) -> Path:
    with netCDF4.Dataset(path, "r+") as nc:
        qa = nc["PRODUCT/qa_value"]
        qa.set_auto_maskandscale(False)
        qa[:] = np.zeros(qa.shape, dtype=np.uint8)
    return path


def _copy_without_group(src: Path, dst: Path, drop: str) -> Path:
    """Copy an S5P file with netCDF4, leaving out the group at path ``drop`` (e.g. PRODUCT/SUPPORT_DATA)."""
    def copy(gin, gout, where: str):
        gout.setncatts({k: gin.getncattr(k) for k in gin.ncattrs()})
        for name, dim in gin.dimensions.items():
            gout.createDimension(name, None if dim.isunlimited() else len(dim))
        for name, var in gin.variables.items():
            fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
            out = gout.createVariable(name, var.datatype, var.dimensions, fill_value=fill)
            out.setncatts({k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"})
            var.set_auto_maskandscale(False)
            out.set_auto_maskandscale(False)
            out[...] = var[...]
        for name, sub in gin.groups.items():
            path = f"{where}/{name}".lstrip("/")
            if path != drop:
                copy(sub, gout.createGroup(name), path)

    dst.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(src) as nin, netCDF4.Dataset(dst, "w", format="NETCDF4") as nout:
        copy(nin, nout, "")
    return dst


def _without_support_data(src: Path, folder: Path) -> Path:
    """Same file name (so the product is recognised), PRODUCT/SUPPORT_DATA left out."""
    dst = _copy_without_group(src, folder / src.name, "PRODUCT/SUPPORT_DATA")
    src.unlink()
    return dst


def _text_file(path: Path) -> Path:
    path.write_text("not a NetCDF file\n")
    return path


def _sim_small(sim_inputs: list[Path], tmp: Path) -> Path:
    """A private copy of the smallest simulated swath."""
    src = min(sim_inputs, key=lambda p: p.stat().st_size)
    dst = tmp / "simcopy" / src.name
    dst.parent.mkdir()
    shutil.copyfile(src, dst)
    return dst


# name -> (make(tmp, sim_inputs) -> input path, extra args, what stderr must name besides the file name)
BAD_FILES = {
    "truncated": (lambda t, s: truncate(write_s5p_l2(t / "in")), [], "truncated"),
    "truncated_simulated_orbit": (lambda t, s: truncate(_sim_small(s, t), 0.3), [], "truncated"),
    "missing_geolocations_group": (lambda t, s: write_s5p_l2(t / "in", omit_groups=("GEOLOCATIONS",)), [],
                                   "GEOLOCATIONS"),
    "simulated_orbit_copied_without_support_data": (
        lambda t, s: _without_support_data(_sim_small(s, t), t / "in"), [], "GEOLOCATIONS"),
    "missing_product_group": (lambda t, s: write_s5p_l2(t / "in", omit_groups=("PRODUCT",)), [], "PRODUCT"),
    "missing_no2_variable": (lambda t, s: write_s5p_l2(t / "in", omit_variables=("nitrogendioxide_tropospheric_column",)),
                             [], "nitrogendioxide_tropospheric_column"),
    "missing_latitude_bounds": (lambda t, s: write_s5p_l2(t / "in", omit_variables=("latitude_bounds",)), [],
                                "latitude_bounds"),
    "missing_qa_value": (lambda t, s: write_s5p_l2(t / "in", omit_variables=("qa_value",)), [], "qa_value"),
    "plain_netcdf_not_s5p": (lambda t, s: write_plain_netcdf(t / "plain.nc"), [], "Sentinel-5P"),
    "not_netcdf_at_all": (lambda t, s: _text_file(t / "notes.nc"), [], "NetCDF"),
    "missing_file": (lambda t, s: t / "does-not-exist.nc", [], "does not exist"),
    "all_fill_swath": (lambda t, s: _all_fill(t / "in"), [], "bbox"),
    "qa_all_zero": (lambda t, s: _qa_zero(write_s5p_l2(t / "in")), [], "QA"),
    "qa_all_zero_simulated_orbit": (lambda t, s: _qa_zero(_sim_small(s, t)),
                                    ["--bbox", BBOX_ARG, "--res", str(RES)], "QA"),
    "real_metadata_only_file": (lambda t, s: REAL_NO2_META, [], "metadata"),
    "bbox_misses_swath": (lambda t, s: write_s5p_l2(t / "in"), ["--bbox=-60,-50,-50,-40"], "bbox"),
}


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "progress"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_l3_bad_input_file_fails_with_one_line_and_writes_nothing(case, quiet, tmp_path, sim_inputs):
    make, extra, token = BAD_FILES[case]
    bad = make(tmp_path, sim_inputs)
    before = _files(tmp_path)
    rc, stdout, stderr = _run(["l3", "--bbox", FIX_BBOX, "--res", FIX_RES, "-o", str(tmp_path / "out"),
                               "--catalog", str(tmp_path / "stac"), *extra, *(["-q"] if quiet else []),
                               str(bad)])
    assert rc == 2
    _assert_one_line_error(stderr, bad.name, token, progress_ok=not quiet)
    assert stdout == ""
    assert _leftovers(_files(tmp_path) - before) == []
    assert _files(tmp_path) == before


# name -> (extra args (the later one wins with argparse), what stderr must name)
BAD_PARAMS = {
    "bbox_inverted_west_east": (["--bbox", "120,30,110,40"], "bbox"),
    "bbox_inverted_south_north": (["--bbox", "110,40,120,30"], "bbox"),
    "bbox_three_numbers": (["--bbox", "110,30,120"], "bbox"),
    "bbox_not_numbers": (["--bbox", "a,b,c,d"], "bbox"),
    "res_zero": (["--res", "0"], "res"),
    "res_negative": (["--res", "-0.1"], "res"),
    "res_not_a_number": (["--res", "abc"], "--res"),
    "qa_above_one": (["--qa", "2"], "qa"),
    "qa_negative": (["--qa=-0.5"], "qa"),
    "period_unknown": (["--period", "week"], "period"),
    "format_unknown": (["--format", "png"], "--format"),
    "product_unknown": (["--product", "so2"], "--product"),
    "output_folder_under_a_file": (["-o", "{tmp}/afile/out"], "afile/out"),
    "catalog_folder_under_a_file": (["--catalog", "{tmp}/afile/stac"], "afile/stac"),
    "missing_required_bbox": (None, "--bbox"),
}


@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_l3_bad_parameter_fails_with_one_line_and_writes_nothing(case, tmp_path, good_small):
    extra, token = BAD_PARAMS[case]
    (tmp_path / "afile").write_text("a regular file, not a folder\n")
    argv = ["l3", "--bbox", FIX_BBOX, "--res", FIX_RES, "-o", str(tmp_path / "out"),
            "--catalog", str(tmp_path / "stac")]
    if extra is None:  # drop --bbox altogether
        argv = ["l3", "--res", FIX_RES, "-o", str(tmp_path / "out")]
        extra = []
    argv += [a.format(tmp=tmp_path) for a in extra] + [str(good_small)]
    before = _files(tmp_path)
    rc, stdout, stderr = _run(argv)
    assert rc == 2
    _assert_one_line_error(stderr, token)
    assert stdout == ""
    assert _leftovers(_files(tmp_path) - before) == []
    assert _files(tmp_path) == before


def test_good_small_input_does_succeed(tmp_path, good_small):
    """Control for the bad-parameter cases: the same command with good parameters writes its output."""
    rc, stdout, stderr = _run(["l3", "--bbox", FIX_BBOX, "--res", FIX_RES, "-q", "-o", str(tmp_path / "out"),
                               "--catalog", str(tmp_path / "stac"), str(good_small)])
    assert rc == 0, stderr
    assert [p.name for p in (tmp_path / "out").glob("*.tif")] == ["rsmon_no2_l3_day_2019-08-10_0.1deg.tif"]


def test_l3_bbox_value_starting_with_minus_is_accepted_without_equals_sign(tmp_path, good_small):
    rc, _, stderr = _run(["l3", "--bbox", "-60,-50,-50,-40", "--res", FIX_RES, "-o", str(tmp_path / "out"),
                          str(good_small)])
    assert rc == 2
    # the error must be the real one (nothing in the bbox), not a parsing failure
    assert "expected one argument" not in stderr
    _assert_one_line_error(stderr, "no valid NO2 pixel")


# --------------------------------------------------------------------------------------------------
# 3. mixed good and corrupt inputs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("corrupt_first", [False, True], ids=["good_then_corrupt", "corrupt_then_good"])
def test_l3_one_corrupt_input_fails_the_whole_run_before_writing_anything(corrupt_first, tmp_path, good_small):
    corrupt = truncate(write_s5p_l2(tmp_path / "corrupt", orbit=9356))
    inputs = [corrupt, good_small] if corrupt_first else [good_small, corrupt]
    before = _files(tmp_path)
    rc, stdout, stderr = _run(["l3", "--bbox", FIX_BBOX, "--res", FIX_RES, "--period", "orbit",
                               "-o", str(tmp_path / "out"), "--catalog", str(tmp_path / "stac"),
                               *map(str, inputs)])
    assert rc == 2
    _assert_one_line_error(stderr, corrupt.name)
    assert good_small.name not in stderr
    assert stdout == ""  # no "wrote ..." and no output path
    assert _files(tmp_path) == before


def test_l3_folder_input_with_one_corrupt_file_fails_before_writing_anything(tmp_path, good_small):
    folder = good_small.parent
    corrupt = truncate(write_s5p_l2(folder, orbit=9356))
    before = _files(tmp_path)
    rc, stdout, stderr = _run(["l3", "--bbox", FIX_BBOX, "--res", FIX_RES, "-o", str(tmp_path / "out"),
                               str(folder)])
    assert rc == 2
    _assert_one_line_error(stderr, corrupt.name)
    assert _files(tmp_path) == before


# --------------------------------------------------------------------------------------------------
# 4. a failed rerun never touches an existing good output
# --------------------------------------------------------------------------------------------------


RERUN_FAILURES = {
    "qa_rejects_every_pixel": lambda t: ["--qa", "0.99"],
    "extra_truncated_input": lambda t: [str(truncate(write_s5p_l2(t / "corrupt", orbit=9356)))],
    "catalog_folder_under_a_file": lambda t: ["--catalog", str(t / "afile" / "stac")],
    "bad_period": lambda t: ["--period", "week"],
}


@pytest.mark.parametrize("fmt", ["tif", "nc"])
@pytest.mark.parametrize("case", list(RERUN_FAILURES))
def test_l3_failed_rerun_leaves_existing_output_byte_identical(case, fmt, tmp_path, good_small):
    out = tmp_path / "out"
    base = ["l3", "--bbox", FIX_BBOX, "--res", FIX_RES, "--format", fmt, "-q", "-o", str(out),
            "--catalog", str(tmp_path / "stac")]
    rc, stdout, stderr = _run(base + [str(good_small)])
    assert rc == 0, stderr
    (product,) = [Path(line) for line in stdout.splitlines()]
    assert product.suffix == f".{fmt}" and product.parent == out
    (tmp_path / "afile").write_text("a regular file, not a folder\n")
    failing = RERUN_FAILURES[case](tmp_path)
    old_bytes = product.read_bytes()
    old_stat = product.stat()
    before = {p: p.read_bytes() for p in _files(tmp_path)}

    rc, stdout, stderr = _run(base + [str(good_small)] + failing)
    assert rc == 2
    _assert_one_line_error(stderr)
    assert product.read_bytes() == old_bytes
    assert product.stat().st_mtime_ns == old_stat.st_mtime_ns and product.stat().st_ino == old_stat.st_ino
    after = _files(tmp_path)
    assert _leftovers(after - set(before)) == []
    # the STAC catalog and every other file are untouched too
    assert {p: p.read_bytes() for p in before} == before


# --------------------------------------------------------------------------------------------------
# the real process: exit code 2 and one stderr line
# --------------------------------------------------------------------------------------------------


def test_real_process_exit_code_2_and_one_stderr_line(tmp_path):
    bad = truncate(write_s5p_l2(tmp_path / "in"))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "rsmon.cli", "l3", "--product", "no2", "--bbox", FIX_BBOX, "--res", FIX_RES,
         "-o", str(out), str(bad)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.endswith("\n")
    _assert_one_line_error(proc.stderr, bad.name, "truncated")
    assert _files(tmp_path) == {bad}  # no output file (the folders may have been created)


# --------------------------------------------------------------------------------------------------
# 5. rsmon info on the real files
# --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_NO2_META.exists(), reason="seeds/s5p metadata-only NO2 file missing")
def test_info_on_real_metadata_only_no2_describes_it_as_metadata_only(capsys):
    """``rsmon info`` is a description command: a metadata-only file is described (exit 0) and the
    description says there is no pixel data; gridding it is what fails (see BAD_FILES)."""
    rc = main(["info", str(REAL_NO2_META)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "orbit: 12367" in captured.out
    assert "metadata only" in captured.out
    assert captured.err == ""


@pytest.mark.skipif(not REAL_NO2_META.exists(), reason="seeds/s5p metadata-only NO2 file missing")
def test_l3_on_real_metadata_only_no2_fails_naming_metadata(tmp_path, capsys):
    rc = main(["l3", "--bbox", "100,10,132,30", "--res", "0.5", "-o", str(tmp_path / "out"), str(REAL_NO2_META)])
    captured = capsys.readouterr()
    assert rc == 2
    _assert_one_line_error(captured.err, REAL_NO2_META.name, "metadata")
    assert _files(tmp_path) == set()


@pytest.mark.skipif(not REAL_CH4.exists(), reason="seeds/s5p CH4 file missing")
def test_info_on_real_ch4_prints_orbit(capsys):
    rc = main(["info", str(REAL_CH4)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "orbit: 7293" in captured.out.splitlines()
    assert "product: CH4" in captured.out
    assert captured.err == ""


def test_info_on_bad_files_fails_with_one_line(tmp_path, capsys):
    for bad in (truncate(write_s5p_l2(tmp_path / "a")), write_plain_netcdf(tmp_path / "plain.nc"),
                tmp_path / "missing.nc"):
        rc = main(["info", str(bad)])
        captured = capsys.readouterr()
        assert rc == 2
        _assert_one_line_error(captured.err, bad.name)


def test_l3_accepts_relative_input_and_output_paths(tmp_path, good_small, monkeypatch):
    """Inputs given relative to the working folder (as typed in a shell) are tracked to their provenance."""
    monkeypatch.chdir(good_small.parent)
    rc, stdout, stderr = _run(["l3", "--bbox", FIX_BBOX, "--res", FIX_RES, "-o", "out", good_small.name])
    assert rc == 0, stderr
    outputs = sorted((good_small.parent / "out").glob("*.tif"))
    assert len(outputs) == 1
    from rsmon.io.cog import read_cog_tags
    prov = read_cog_tags(outputs[0])["provenance"]
    assert [Path(ref.path) for ref in prov.inputs] == [good_small.resolve()]
