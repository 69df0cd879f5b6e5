#!/usr/bin/env python
"""Benchmark: VIIRS 375 m active fires on one full-size granule (6464 lines x 6400 pixels).

Simulates one NOAA-20 day granule once into ``benchmarks/data/viirs-full/`` (~30 s, ~380 MB), then
times, each as its own process under GNU time (wall seconds, peak RSS):

(a) ``rsmon fire detect IMG -o OUT``: the whole job (open, detect with the numba kernels, write
    CSV x2, GeoJSON, GeoPackage, PNG map);
(b) detection only, numba: ``open_viirs_l1b`` + ``detect_fires`` in a fresh interpreter;
(c) detection only, pure NumPy: ``open_viirs_l1b`` + ``detect_numpy`` (same tests, same result);

and, in this process on the granule loaded into memory (no file reading), ``detect_fires`` (second
call, JIT warm) and ``detect_numpy``. Also checks (b) and (c) give the same fires and scores them
against the simulator truth.

Usage::

    .venv/bin/python benchmarks/bench_fire.py [--data benchmarks/data] [--repeat 2]

Needs GNU time (Debian package ``time``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
RSMON = str(Path(sys.executable).parent / "rsmon")
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else (shutil.which("time") or "/usr/bin/time")

DETECT_ONLY = r"""
import sys, json
from rsmon.io.viirs import open_viirs_l1b
from rsmon.products.fire import detect_fires, detect_numpy
fn = {"numba": detect_fires, "numpy": detect_numpy}[sys.argv[1]]
ds = open_viirs_l1b(sys.argv[2])
df = fn(ds)
df[["line", "sample", "confidence", "frp"]].to_csv(sys.argv[3], index=False)
"""


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` under GNU time; return (wall seconds, peak RSS in MB, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        proc = subprocess.run([GNU_TIME, "-f", "%e %M", "-o", tf.name, *cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        wall, kb = tf.read().split()[-2:]
    return float(wall), float(kb) / 1024.0, proc.stdout


def granule(data: Path) -> tuple[Path, Path]:
    folder = data / "viirs-full"
    imgs = sorted(folder.glob("VJ102IMG.*.nc"))
    if not imgs:
        print(f"simulating one full granule into {folder} (~30 s) ...", file=sys.stderr)
        from rsmon.sim.viirs import simulate_granule

        g = simulate_granule(folder, seed=4)
        return g.img_path, g.truth_path
    return imgs[0], next(folder.glob("*.truth.csv"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE / "data"), help="where the simulated granule is kept")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each process case (best is reported)")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    img, truth = granule(Path(args.data))

    import pandas as pd

    from rsmon.io.viirs import open_viirs_l1b
    from rsmon.products.fire import detect_fires, detect_numpy
    from rsmon.validate.fire import match_fires
    from rsmon.workflow.fire import read_fire_table

    rows: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = {
            "(a) rsmon fire detect (numba), whole job": lambda i: [RSMON, "fire", "detect", str(img), "-o",
                                                                   str(tmp / f"out{i}")],
            "(b) open + detect_fires (numba), detection only": lambda i: [PY, "-c", DETECT_ONLY, "numba", str(img),
                                                                          str(tmp / "numba.csv")],
            "(c) open + detect_numpy (pure NumPy), detection only": lambda i: [PY, "-c", DETECT_ONLY, "numpy",
                                                                               str(img), str(tmp / "numpy.csv")],
        }
        for name, make in cases.items():
            best = None
            for i in range(args.repeat):
                wall, mb, _ = timed(make(i))
                print(f"{name}: run {i + 1}: {wall:.2f} s, {mb:.0f} MB", file=sys.stderr)
                best = (wall, mb) if best is None or wall < best[0] else best
            rows[name] = best
        a = pd.read_csv(tmp / "numba.csv")
        b = pd.read_csv(tmp / "numpy.csv")
        same = a[["line", "sample", "confidence"]].equals(b[["line", "sample", "confidence"]])
        fires_csv = tmp / "out0" / "fires.csv"
        det = read_fire_table(fires_csv, "detections")
        ref = read_fire_table(truth, "truth")
        _, summary = match_fires(det, ref)

    # in-process, granule already in memory: detection alone
    ds = open_viirs_l1b(img)
    t0 = time.perf_counter()
    ds = ds.load()
    t_load = time.perf_counter() - t0
    detect_fires(ds)  # JIT / cache warm-up
    t0 = time.perf_counter()
    n_numba = len(detect_fires(ds))
    t_numba = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_numpy = len(detect_numpy(ds))
    t_numpy = time.perf_counter() - t0

    sizes = dict(ds.sizes)
    print(f"\ngranule: {img.name} ({sizes.get('y')} lines x {sizes.get('x')} pixels), "
          f"{len(det)} fires detected, {summary['n_reference']} true fires; "
          f"precision {summary['precision']:.3f}, recall {summary['recall']:.3f}; "
          f"numba and NumPy fires identical: {same}\n")
    print("| case | wall s | peak RSS MB |")
    print("|---|---:|---:|")
    for name, (wall, mb) in rows.items():
        print(f"| {name} | {wall:.2f} | {mb:.0f} |")
    print(f"\nin-process, granule in memory (reading + decoding it: {t_load:.2f} s): detect_fires (numba, warm) "
          f"{t_numba:.2f} s ({n_numba} fires), detect_numpy {t_numpy:.2f} s ({n_numpy} fires), "
          f"ratio {t_numpy / t_numba:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "processes": {k: {"wall_s": w, "peak_mb": m} for k, (w, m) in rows.items()},
            "in_process": {"load_s": t_load, "numba_s": t_numba, "numpy_s": t_numpy},
            "n_fires": len(det), "identical": bool(same),
            "precision": summary["precision"], "recall": summary["recall"],
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
