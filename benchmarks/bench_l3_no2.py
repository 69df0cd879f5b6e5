#!/usr/bin/env python
"""Benchmark: TROPOMI NO2 L2 full orbits -> L3 at 0.05 deg over 100-132E 10-30N, rsmon vs harpconvert.

Both tools run on the same simulated full orbits (4172 x 450 pixels) in the same run, each timed with
GNU time (wall seconds, peak RSS). Also: one day (14 orbits) on a 0.01 deg China grid (73-136E 18-54N).

Usage::

    .venv/bin/python benchmarks/bench_l3_no2.py [--orbits 3] [--skip-day] [--data benchmarks/data]

Needs Debian packages ``harp`` (harpconvert) and ``time`` (/usr/bin/time). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
RSMON = str(Path(sys.executable).parent / "rsmon")
GNU_TIME = shutil.which("time") or "/usr/bin/time"
BBOX = (100.0, 10.0, 132.0, 30.0)
RES = 0.05
DAY = date(2019, 6, 12)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` under GNU time; return (wall seconds, peak RSS in MB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        proc = subprocess.run([GNU_TIME, "-f", "%e %M", "-o", tf.name, *cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        wall, kb = tf.read().split()[-2:]
    return float(wall), float(kb) / 1024.0


def harp_cmd(src: Path, dst: Path, bbox, res, tuned: bool = False) -> list[str]:
    """harpconvert as the issue states it (filter, bin_spatial), or tuned (keep only what binning needs first).

    Without the ``keep``, HARP bins every ingested variable (~60 of them) onto the grid, which is
    what a user following the documentation gets; ``tuned`` is the fastest HARP we know of.
    """
    west, south, east, north = bbox
    nlat = round((north - south) / res) + 1
    nlon = round((east - west) / res) + 1
    var = "tropospheric_NO2_column_number_density"
    keep = f"keep(latitude_bounds,longitude_bounds,{var});" if tuned else ""
    ops = f"{var}_validity>75;{keep}bin_spatial({nlat},{south},{res},{nlon},{west},{res})"
    return ["harpconvert", "-a", ops, str(src), str(dst)]


def rsmon_cmd(srcs: list[Path], out: Path, bbox, res, period: str) -> list[str]:
    return [RSMON, "l3", "--product", "no2", "--bbox", ",".join(f"{v:g}" for v in bbox), "--res", f"{res:g}",
            "--period", period, "-q", "-o", str(out), *map(str, srcs)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orbits", type=int, default=3, help="full orbits crossing the bbox to time one by one")
    ap.add_argument("--data", default=str(HERE / "data"), help="where simulated orbits are kept")
    ap.add_argument("--skip-day", action="store_true", help="skip the 14-orbit China 0.01 deg day")
    ap.add_argument("--skip-harp-day", action="store_true", help="time rsmon only on the China day")
    ap.add_argument("--day-batch", action="store_true",
                    help="also time all orbits of the day to per-orbit files (HARP as issued, 14 runs)")
    args = ap.parse_args()
    if not shutil.which("harpconvert"):
        raise SystemExit("harpconvert not found: apt-get install harp")

    from rsmon.sim.s5p import simulate_day

    data = Path(args.data) / f"full-{DAY}"
    files = sorted(data.glob("S5P_*.nc"))
    if len(files) < 14:
        print(f"simulating full orbits for {DAY} into {data} ...", file=sys.stderr)
        files = simulate_day(data, DAY, seed=1, bbox=None, full_orbits=True)
    crossing = [f for f in files if _crosses(f, BBOX)]
    rows = []
    work = Path(tempfile.mkdtemp(prefix="rsmon-bench-"))
    # warm-up: numba's on-disk cache and the OS page cache, for both tools alike
    timed(rsmon_cmd(crossing[:1], work / "warm", BBOX, RES, "orbit"))
    timed(harp_cmd(crossing[0], work / "warm.nc", BBOX, RES, tuned=True))
    singles = []
    for f in crossing[: args.orbits]:
        h = timed(harp_cmd(f, work / f"{f.stem}.harp.nc", BBOX, RES))
        ht = timed(harp_cmd(f, work / f"{f.stem}.harpt.nc", BBOX, RES, tuned=True))
        r = timed(rsmon_cmd([f], work / "rsmon-orbit", BBOX, RES, "orbit"))
        singles.append((h, ht, r))
        rows.append((f"one orbit {f.name[20:35]} (1 process each)", h, ht, r))
    n = len(singles)
    total = lambda xs: (sum(x[0] for x in xs), max(x[1] for x in xs))  # noqa: E731
    r_batch = timed(rsmon_cmd(crossing[:n], work / "rsmon-batch", BBOX, RES, "orbit"))
    rows.append((f"{n} orbits -> {n} per-orbit files (HARP: {n} runs summed; rsmon: one run)",
                 total([s[0] for s in singles]), total([s[1] for s in singles]), r_batch))

    if args.day_batch:
        # a whole day of orbits, each to its own file for the region (what a daily job runs): HARP
        # runs once per orbit (in the form); rsmon once for all, skipping orbits that miss the bbox
        hs = [timed(harp_cmd(f, work / f"{f.stem}.day.harp.nc", BBOX, RES)) for f in files]
        r_all = timed(rsmon_cmd(files, work / "rsmon-all", BBOX, RES, "orbit"))
        nan = (float("nan"), float("nan"))
        rows.append((f"all {len(files)} orbits of the day -> per-orbit files for the bbox (HARP: {len(files)} runs "
                     "summed; rsmon: one run)", total(hs), nan, r_all))

    if not args.skip_day:
        china = (73.0, 18.0, 136.0, 54.0)
        r_day = timed(rsmon_cmd(files, work / "rsmon-day", china, 0.01, "day"))
        nan = (float("nan"), float("nan"))
        h_day = nan
        if not args.skip_harp_day:
            # untuned HARP would bin ~60 variables on 22.7 M cells (> 10 GB): only the tuned form is run
            h_day = (0.0, 0.0)
            for f in files:
                t, m = timed(harp_cmd(f, work / "day.harp.nc", china, 0.01, tuned=True))
                h_day = (h_day[0] + t, max(h_day[1], m))
        rows.append((f"one day, {len(files)} orbits, China 0.01 deg (HARP: per orbit, summed, no daily merge)",
                     nan, h_day, r_day))

    print("| case | HARP as in issue: s / peak MB | HARP tuned: s / peak MB | rsmon: s / peak MB "
          "| speed-up vs HARP / vs tuned | memory ratio vs HARP / vs tuned |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (h, hm), (t, tm), (r, rm) in rows:
        print(f"| {name} | {h:.2f} / {hm:.0f} | {t:.2f} / {tm:.0f} | {r:.2f} / {rm:.0f} "
              f"| {h / r:.1f}x / {t / r:.1f}x | {hm / rm:.1f}x / {tm / rm:.1f}x |")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _crosses(path: Path, bbox) -> bool:
    import numpy as np
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        lat = nc["PRODUCT/latitude"][0, :, 225]
        lon = nc["PRODUCT/longitude"][0, :, 225]
    west, south, east, north = bbox
    return bool(np.any((lat > south) & (lat < north) & (lon > west - 12) & (lon < east + 12)))


if __name__ == "__main__":
    sys.exit(main())
