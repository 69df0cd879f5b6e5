#!/usr/bin/env python
"""Benchmark: redline change detection on a full Sentinel-2 tile pair (issue 5).

Input: the simulated Sentinel-2 L2A tile pair in the real per-band layout (``rsmon sim s2``,
10980 x 10980 = 120.56 Mpixel, B02/B03/B04/B08 at 10 m, B11/B12/SCL at 20 m, uint16 GeoTIFF,
512-pixel tiles), written once into ``<data>/s2tile`` (DEFLATE, as the simulator writes it), and
the same files rewritten once with other compressions (same names, tiling and metadata) into
``<data>/s2tile_<compression>``, to separate decoding the input from processing it.

Cases, each its own process under GNU time (wall, user and system CPU seconds, peak RSS):

``cli-<compression>``  (``jp2``: lossless JPEG 2000 as ESA's SAFE products, GDAL/OpenJPEG
                       decoding, this case only) ``rsmon -v redline detect --before .. --after .. -o TMP --no-quicklooks
                       --no-checksums``: the whole command (start-up, imports, detection, patch
                       table, three COGs, GeoPackage + GeoJSON); its stage timers are reported too;
                       the tile is streamed through scratch files (the default above 25 Mpixel;
                       ``benchmarks/bench_change_area.py`` compares with ``--no-stream``);
``warm-<compression>`` the same run (:func:`rsmon.workflow.redline.run_redline_detect`) a second
                       time in one process, as in a scheduler or service process that has
                       imported rsmon and loaded its kernels once: the throughput of a
                       long-running process (wall of that run only; peak RSS of the process);
``cli-deflate-gdal``     ``cli-deflate`` with ``RSMON_DIRECT_TIFF=0``: GDAL reads every file, as
                       before :mod:`rsmon.io.tiff_tiles`;
``decode-<compression>-gdal`` / ``-direct``  every input tile of both dates read once on 2 threads,
                       nothing else, by GDAL or by :mod:`rsmon.io.tiff_tiles` (what the
                       redline run uses): the floor of reading these files;
``numpy`` / ``blocks``  :func:`rsmon.products.change.detect_change_numpy` (whole arrays) and
                       :func:`~rsmon.products.change.detect_change_blocks` on the same in-memory
                       4096 x 4096 crop of the tile (the NumPy version needs ~225 bytes per pixel,
                       ~27 GB for the full tile, more than this machine has);
``cli-series``         (``--series``) the one-off CLI on a series: the before scene, the after
                       scene and its ZSTD copy as a second later scene;
``series-blocks`` / ``series-lazy``  (``--series``) the detection of that series only, from the
                       files: :func:`rsmon.products.change_blocks.series_change_blocks` (what the
                       CLI runs) against the lazy :func:`rsmon.products.change.detect_series`
                       graph computed by dask strip by strip (1024 rows, masks and index values
                       together; what the CLI ran before the block pass).
``cli-composite``      (``--composite``) the one-off CLI on a pair whose reference is the
                       latest-clear composite of two before scenes (the tile's before scene and its
                       ZSTD copy; several ``--before``);
``composite-direct`` / ``composite-graph``  (``--composite``) the detection of that pair only:
                       the composite read block by block by its scenes' readers
                       (:class:`rsmon.products.change_composite.CompositeBlocks`, what the CLI
                       runs) against the composite's dask graph evaluated per block (what it ran
                       before).
``cli-redlines`` / ``cli-redlines-whole``  (``--redlines COVER``) the one-off CLI on the DEFLATE
                       pair (or the copy ``--redlines-on`` names) with a simulated redline
                       layer covering COVER of the tile (discs of 1.5-8 km, in WGS 84): only
                       the blocks within 1 km of the redlines (the default,
                       :mod:`rsmon.products.change_extent`) against ``--whole-scene``,
                       alternating; the two patch tables are compared (id and geometry).

Usage::

    .venv/bin/python benchmarks/bench_change_tile.py [--data benchmarks/data] [--repeat 2]
        [--compressions deflate,zstd,none,jp2] [--series] [--composite] [--redlines 0.3]
        [--redlines-on deflate|zstd|none|jp2] [--json out.json]

Needs GNU time (Debian package ``time``). Prints a Markdown table (best of ``--repeat`` runs).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
RSMON = str(Path(PYTHON).with_name("rsmon"))
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else (shutil.which("time") or "/usr/bin/time")
SIZE = 10980
CROP = 4096


def timed(cmd: list[str]) -> dict:
    """Run ``cmd`` under GNU time: wall/user/sys seconds, peak MB, stdout and stderr."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        proc = subprocess.run([GNU_TIME, "-f", "%e %U %S %M", "-o", tf.name, *cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        wall, user, sys_s, kb = tf.read().split()[-4:]
    return {"wall": float(wall), "user": float(user), "sys": float(sys_s), "peak_mb": float(kb) / 1024,
            "stdout": proc.stdout, "stderr": proc.stderr}


def tile(data: Path) -> Path:
    folder = data / "s2tile"
    if not (folder / "after").is_dir():
        print(f"simulating the tile pair into {folder} (~25 s) ...", file=sys.stderr)
        subprocess.run([RSMON, "sim", "s2", "-o", str(folder)], check=True)
    return folder


def recompressed(src: Path, compression: str) -> Path:
    """``src`` rewritten with ``compression`` (same names, tiles and metadata), once. ``jp2``:
    lossless JPEG 2000 (``.jp2``, as ESA's SAFE products; 1024-pixel code tiles, 5 resolutions)."""
    if compression == "deflate":
        return src
    dst = src.parent / f"{src.name}_{compression}"
    suffix = ".jp2" if compression == "jp2" else ".tif"
    if (dst / "after").is_dir() and len(list((dst / "after").glob(f"*{suffix}"))) == 7:
        return dst
    import rasterio

    for date in ("before", "after"):
        (dst / date).mkdir(parents=True, exist_ok=True)
        for f in (src / date).iterdir():
            if f.suffix != ".tif":
                shutil.copy(f, dst / date / f.name)
                continue
            with rasterio.open(f) as s:
                if compression == "jp2":  # whole bands (the JPEG 2000 writer encodes on close)
                    profile = {k: v for k, v in s.profile.items() if k not in (
                        "tiled", "blockxsize", "blockysize", "compress", "interleave", "predictor")}
                    profile.update(driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES", BLOCKXSIZE=1024,
                                   BLOCKYSIZE=1024, RESOLUTIONS=5)
                    with rasterio.open(dst / date / (f.stem + ".jp2"), "w", **profile) as d:
                        d.write(s.read())
                    continue
                profile = dict(s.profile, compress=compression)
                if compression == "zstd":
                    profile["predictor"] = 2
                with rasterio.open(dst / date / f.name, "w", **profile) as d:
                    for _, window in s.block_windows(1):
                        d.write(s.read(window=window), window=window)
    return dst


_DECODE = """
import sys, glob, threading, time
from concurrent.futures import ThreadPoolExecutor
import rasterio
from rsmon.io.tiff_tiles import tiled_tiff
files = sorted(glob.glob(sys.argv[1] + '/*/*.tif'))
direct = sys.argv[2] == 'direct'
local = threading.local()
def read(job):
    f, w = job
    if direct:
        tiled_tiff(f).read(int(w.row_off), int(w.col_off), int(w.height), int(w.width))
        return
    cache = local.__dict__.setdefault('h', {})
    if f not in cache:
        cache[f] = rasterio.open(f)
    cache[f].read(1, window=w)
jobs = []
for f in files:
    with rasterio.open(f) as s:
        jobs += [(f, w) for _, w in s.block_windows(1)]
    assert not direct or tiled_tiff(f) is not None, f
with rasterio.Env(GDAL_CACHEMAX=0):
    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(read, jobs))
print(time.perf_counter() - t)
"""

_WARM = """
import json, sys, tempfile, time
from rsmon.workflow.redline import run_redline_detect
folder = sys.argv[1]
for run in range(2):
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        result = run_redline_detect(folder + '/before', folder + '/after', tmp, quicklooks=False, checksums=False)
        seconds = time.perf_counter() - t
print(seconds, json.dumps(result.seconds))
"""

_INMEMORY = """
import sys, time
import numpy as np
from rsmon.io.optical import open_optical
from rsmon.products.change import detect_change_blocks, detect_change_numpy
which, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
crop = dict(y=slice(0, n), x=slice(0, n))
before = open_optical(folder + '/before').isel(crop).compute()
after = open_optical(folder + '/after').isel(crop).compute()
t = time.perf_counter()
if which == 'numpy':
    out = detect_change_numpy(before, after)
    n_change = int((out['change'] == 1).sum())
else:
    out = detect_change_blocks(before, after)
    n_change = out.n_change
print(time.perf_counter() - t, n_change)
"""


_SERIES = """
import sys, time
from rsmon.io.optical import open_optical
from rsmon.products.change import detect_series
from rsmon.products.change_blocks import INDEX_SAMPLE_NAMES, series_change_blocks
which, scenes = sys.argv[1], [open_optical(p) for p in sys.argv[2:]]
t = time.perf_counter()
if which == 'lazy':  # the lazy graph computed strip by strip of 1024 rows, masks and index values together
    lazy = detect_series(scenes)
    n_change = 0
    for r0 in range(0, lazy.sizes['y'], 1024):
        part = lazy[['change', 'change_class', 'confidence', *INDEX_SAMPLE_NAMES]].isel(y=slice(r0, r0 + 1024))
        n_change += int((part.compute()['change'].values == 1).sum())
else:
    n_change = series_change_blocks(scenes).n_change
print(time.perf_counter() - t, n_change)
"""


_COMPOSITE = """
import sys, time
from rsmon.io.optical import open_optical
from rsmon.io.optical_raster import SCENE_BLOCKS
from rsmon.products.change import detect_change_blocks
from rsmon.products.change_composite import latest_clear_composite
which, after, befores = sys.argv[1], open_optical(sys.argv[2]), [open_optical(p) for p in sys.argv[3:]]
t = time.perf_counter()
reference = latest_clear_composite(befores)
if which == 'graph':  # without its direct block access: the composite's graph evaluated per block
    reference.encoding.pop(SCENE_BLOCKS)
n_change = detect_change_blocks(reference, after).n_change
print(time.perf_counter() - t, n_change)
"""


def _stages(stderr: str) -> dict[str, float]:
    """The ``redline stage NAME: S s`` timers of a ``rsmon -v redline detect`` log."""
    return {m[0]: float(m[1]) for m in re.findall(r"redline stage (\w+): ([\d.]+) s", stderr)}


def best_cli_run(folder: Path, repeat: int, prefix: list[str] | None = None) -> dict:
    """The fastest of ``repeat`` one-off ``rsmon -v redline detect`` runs on the pair in ``folder``
    (``prefix`` before the command, e.g. an ``env`` setting), with its stage timers."""
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            run = timed([*(prefix or []), RSMON, "-v", "redline", "detect", "--before", str(folder / "before"),
                         "--after", str(folder / "after"), "-o", tmp, "--no-quicklooks", "--no-checksums"])
        run["stages"] = _stages(run["stderr"])
        runs.append(run)
    return min(runs, key=lambda r: r["wall"])


def redline_layer(src: Path, cover: float, out: Path, seed: int = 3) -> Path:
    """A redline layer over the tile: discs of 1.5-8 km radius at random places (seeded), added
    until their union covers ``cover`` of the tile (redlines are large contiguous areas,
    mountains and wetlands, and small reserves), one feature per connected part, in WGS 84."""
    import geopandas as gpd
    import rasterio
    import shapely

    with rasterio.open(next((src / "after").glob("*B04*"))) as f:
        left, bottom, right, top = f.bounds
        crs = f.crs
    rng = np.random.default_rng(seed)
    tile_box = shapely.box(left, bottom, right, top)
    union = shapely.Polygon()
    while union.area < cover * tile_box.area:
        x, y = rng.uniform(left, right), rng.uniform(bottom, top)
        union = union.union(shapely.Point(x, y).buffer(rng.uniform(1500.0, 8000.0), 16)).intersection(tile_box)
    parts = list(getattr(union, "geoms", [union]))
    gpd.GeoDataFrame({"id": [f"HX{i:03d}" for i in range(len(parts))], "name": [f"redline {i}" for i in
                                                                                 range(len(parts))]},
                     geometry=parts, crs=crs).to_crs("EPSG:4326").to_file(out)
    return out


def redline_cases(src: Path, cover: float, repeat: int) -> dict[str, dict]:
    """The one-off CLI with a redline layer covering ``cover`` of the tile: only the blocks near
    the redlines (the default) and ``--whole-scene``, alternating; the patch tables compared."""
    import geopandas as gpd
    import shapely

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        layer = redline_layer(src, cover, Path(tmp) / "redlines.gpkg")
        for _ in range(repeat):
            for name, extra in (("cli-redlines", []), ("cli-redlines-whole", ["--whole-scene"])):
                out = Path(tmp) / name
                shutil.rmtree(out, ignore_errors=True)
                run = timed([RSMON, "-v", "redline", "detect", "--before", str(src / "before"), "--after",
                             str(src / "after"), "--redlines", str(layer), "-o", str(out), "--no-quicklooks",
                             "--no-checksums", *extra])
                run["stages"] = _stages(run["stderr"])
                summary = json.loads((out / "summary.json").read_text())
                run["examined"] = summary["examined"]
                if name not in rows or run["wall"] < rows[name]["wall"]:
                    rows[name] = run
        a = gpd.read_file(Path(tmp) / "cli-redlines" / "patches.gpkg")
        b = gpd.read_file(Path(tmp) / "cli-redlines-whole" / "patches.gpkg")
        same = set(zip(a["patch_id"], shapely.to_wkb(a.geometry.to_numpy()))) & set(
            zip(b["patch_id"], shapely.to_wkb(b.geometry.to_numpy())))
        rows["cli-redlines"]["patches"] = f"{len(a)} patches, {len(same)} identical to the whole-scene run's {len(b)}"
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE / "data"), help="where the simulated tile pair is kept")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each case (the fastest is reported)")
    ap.add_argument("--compressions", default="deflate,zstd,none")
    ap.add_argument("--no-numpy", action="store_true", help="skip the in-memory NumPy comparison")
    ap.add_argument("--series", action="store_true",
                    help="also a series (two later scenes): the one-off CLI, and the block pass against the lazy "
                         "series graph (detection only)")
    ap.add_argument("--composite", action="store_true",
                    help="also a pair with a composite reference (two before scenes): the one-off CLI, and the "
                         "direct composite reads against its graph (detection only)")
    ap.add_argument("--redlines", type=float, default=None, metavar="COVER",
                    help="also the one-off CLI with a simulated redline layer covering COVER (e.g. 0.3) of the "
                         "tile: only the blocks near the redlines (default) against --whole-scene")
    ap.add_argument("--redlines-on", default="deflate", metavar="COMPRESSION",
                    help="the copy of the tile pair the --redlines cases run on (default deflate; jp2: SAFE-like)")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    src = tile(Path(args.data))
    mpix = SIZE * SIZE / 1e6
    rows: dict[str, dict] = {}
    for compression in args.compressions.split(","):
        folder = recompressed(src, compression)
        rows[f"cli-{compression}"] = best_cli_run(folder, args.repeat)
        if compression == "jp2":  # GDAL (OpenJPEG) decodes it: the one-off CLI only, a run takes minutes
            continue
        if compression == "deflate":  # the same command with GDAL reading every file (before tiff_tiles)
            rows["cli-deflate-gdal"] = best_cli_run(folder, args.repeat, ["env", "RSMON_DIRECT_TIFF=0"])
        warm = [timed([PYTHON, "-c", _WARM, str(folder)]) for _ in range(args.repeat)]
        best = min(warm, key=lambda r: float(r["stdout"].split()[0]))
        seconds, stages = best["stdout"].split(maxsplit=1)
        rows[f"warm-{compression}"] = dict(best, wall=float(seconds), stages=json.loads(stages), user=float("nan"),
                                           sys=float("nan"))
        for how in ("gdal", "direct"):
            decode = [timed([PYTHON, "-c", _DECODE, str(folder), how]) for _ in range(args.repeat)]
            best = min(decode, key=lambda r: float(r["stdout"].split()[0]))
            rows[f"decode-{compression}-{how}"] = dict(best, wall=float(best["stdout"].split()[0]))
    if args.series:  # a series: the DEFLATE pair's after scene and its ZSTD copy as a second later scene
        scenes = [str(src / "before"), str(src / "after"), str(recompressed(src, "zstd") / "after")]
        with tempfile.TemporaryDirectory() as tmp:
            run = timed([RSMON, "-v", "redline", "detect", "--before", scenes[0], "--after", *scenes[1:], "-o", tmp,
                         "--no-quicklooks", "--no-checksums"])
        run["stages"] = _stages(run["stderr"])
        rows["cli-series"] = run
        for which in ("blocks", "lazy"):
            run = timed([PYTHON, "-c", _SERIES, which, *scenes])
            seconds, n_change = run["stdout"].split()[:2]
            rows[f"series-{which}"] = dict(run, wall=float(seconds), n_change=int(n_change))
    if args.composite:  # the tile's before scene and its ZSTD copy as the reference's scenes
        befores = [str(src / "before"), str(recompressed(src, "zstd") / "before")]
        with tempfile.TemporaryDirectory() as tmp:
            run = timed([RSMON, "-v", "redline", "detect", "--before", *befores, "--after", str(src / "after"), "-o",
                         tmp, "--no-quicklooks", "--no-checksums"])
        run["stages"] = _stages(run["stderr"])
        rows["cli-composite"] = run
        for which in ("direct", "graph"):
            run = timed([PYTHON, "-c", _COMPOSITE, which, str(src / "after"), *befores])
            seconds, n_change = run["stdout"].split()[:2]
            rows[f"composite-{which}"] = dict(run, wall=float(seconds), n_change=int(n_change))
    if args.redlines:
        rows.update(redline_cases(recompressed(src, args.redlines_on), args.redlines, args.repeat))
    if not args.no_numpy:
        for which in ("numpy", "blocks"):
            run = timed([PYTHON, "-c", _INMEMORY, which, str(src), str(CROP)])
            seconds, n_change = run["stdout"].split()[:2]
            rows[which] = dict(run, wall=float(seconds), n_change=int(n_change))

    print(f"\n| case | wall s | user s | sys s | peak MB | Mpixel/s | stages (s) |\n|---|---:|---:|---:|---:|---:|---|")
    for name, r in rows.items():
        px = CROP * CROP / 1e6 if name in ("numpy", "blocks") else mpix
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r.get("stages", {}).items())
        cpu = " | ".join("-" if r[k] != r[k] else f"{r[k]:.2f}" for k in ("user", "sys"))  # NaN: not measured
        print(f"| {name} | {r['wall']:.2f} | {cpu} | {r['peak_mb']:.0f} | {px / r['wall']:.1f} | {stages} |")
    if "cli-redlines" in rows:
        e = rows["cli-redlines"]["examined"]
        print(f"\nredlines covering {args.redlines:.0%} of the tile: {e['blocks']} of {e['of_blocks']} blocks "
              f"({e['fraction']:.1%} of the pixels) examined; whole scene / near the redlines: "
              f"{rows['cli-redlines-whole']['wall'] / rows['cli-redlines']['wall']:.2f}x; "
              f"{rows['cli-redlines']['patches']}")
    if "numpy" in rows:
        print(f"\nNumPy / blocks on the {CROP} x {CROP} crop: {rows['numpy']['wall'] / rows['blocks']['wall']:.1f}x "
              f"(change pixels {rows['numpy']['n_change']} / {rows['blocks']['n_change']})")
    if "series-lazy" in rows:
        print(f"lazy series / block pass on the tile (detection only): "
              f"{rows['series-lazy']['wall'] / rows['series-blocks']['wall']:.1f}x "
              f"(change pixels {rows['series-lazy']['n_change']} / {rows['series-blocks']['n_change']})")
    if "composite-graph" in rows:
        print(f"composite graph / direct reads on the tile (detection only): "
              f"{rows['composite-graph']['wall'] / rows['composite-direct']['wall']:.1f}x "
              f"(change pixels {rows['composite-graph']['n_change']} / {rows['composite-direct']['n_change']})")
    if args.json:
        Path(args.json).write_text(json.dumps({k: {kk: vv for kk, vv in v.items() if kk not in ("stdout", "stderr")}
                                               for k, v in rows.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
