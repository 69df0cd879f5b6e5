#!/usr/bin/env python
"""Benchmark: peak memory of a redline run against the scene's area, in memory and streamed (issue 5).

Input: simulated Sentinel-2 L2A pairs in the real per-band layout (``rsmon sim s2 --size N``,
DEFLATE, 512-pixel tiles, 10 m and 20 m bands, SCL), of 1, 2, 4 and 8 tile areas (10980,
15528, 21960, 31056 pixels a side; ``--changes`` grows with the area). They are simulated once
into ``<data>/s2tile`` and ``<data>/s2tile_x<k>`` (about 1.3 GB of disk per tile area).

Cases, each its own process under GNU time (wall, user and system CPU seconds, peak RSS):
``rsmon redline detect --before .. --after .. -o TMP --no-quicklooks --no-checksums`` with
``--no-stream`` (rasters, samples and patch table in memory: the default up to 25 Mpixel) and
with ``--stream`` (scratch files, patches window by window: the default above).

Usage::

    .venv/bin/python benchmarks/bench_change_area.py [--data benchmarks/data] [--areas 1,2,4]
        [--modes memory,stream] [--json out.json]

Needs GNU time (Debian package ``time``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_change_tile import RSMON, timed  # noqa: E402  (the same GNU time runner)

HERE = Path(__file__).resolve().parent
SIDES = {1: 10980, 2: 15528, 4: 21960, 8: 31056}


def pair(data: Path, area: int) -> Path:
    folder = data / ("s2tile" if area == 1 else f"s2tile_x{area}")
    if not (folder / "after").is_dir() or not (folder / "truth.csv").is_file():
        print(f"simulating {SIDES[area]} x {SIDES[area]} into {folder} ...", file=sys.stderr)
        subprocess.run([RSMON, "sim", "s2", "-o", str(folder), "--size", str(SIDES[area]),
                        "--changes", str(200 * area)], check=True)
    return folder


def run(folder: Path, mode: str) -> dict:
    with tempfile.TemporaryDirectory(dir=HERE / "data") as tmp:
        out = timed([RSMON, "-v", "redline", "detect", "--before", str(folder / "before"), "--after",
                     str(folder / "after"), "-o", tmp, "--no-quicklooks", "--no-checksums",
                     "--stream" if mode == "stream" else "--no-stream"])
    out["stages"] = {m[0]: float(m[1]) for m in re.findall(r"redline stage (\w+): ([\d.]+) s", out["stderr"])}
    patches = re.search(r"(\d+) change patch", out["stdout"])
    out["patches"] = int(patches.group(1)) if patches else None
    del out["stdout"], out["stderr"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE / "data"), help="where the simulated pairs are kept")
    ap.add_argument("--areas", default="1,2,4", help="tile areas to run (of 1, 2, 4, 8)")
    ap.add_argument("--modes", default="memory,stream")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    rows = []
    for area in (int(a) for a in args.areas.split(",")):
        folder = pair(data, area)
        for mode in args.modes.split(","):
            result = run(folder, mode)
            mpix = SIDES[area] ** 2 / 1e6
            rows.append({"area": area, "mode": mode, "mpixel": round(mpix, 1), **result,
                         "mpixel_per_s": round(mpix / result["wall"], 1)})
            print(f"x{area} {mode}: {result['wall']:.2f} s, {result['peak_mb']:.0f} MB", file=sys.stderr)
    print("| tile areas | Mpixel | mode | wall s | user s | sys s | peak MB | Mpixel/s | patches | stages (s) |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
        print(f"| {r['area']} | {r['mpixel']} | {r['mode']} | {r['wall']:.2f} | {r['user']:.2f} | {r['sys']:.2f} | "
              f"{r['peak_mb']:.0f} | {r['mpixel_per_s']} | {r['patches']} | {stages} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
