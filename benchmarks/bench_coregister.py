"""What co-registration costs on a full Sentinel-2 tile pair, and what it finds on a known shift.

Cases, each a one-off ``rsmon -v redline detect --no-quicklooks --no-checksums`` under GNU time,
alternating, best of ``--repeat``:

- ``aligned``: the simulated DEFLATE tile pair of ``bench_change_tile.py``
  (``benchmarks/data/s2tile``), on one grid: the shift is measured and found below 0.25 px;
- ``aligned --no-coregister``: the same without the measurement (the run before this session);
- ``shifted``: the same pair with the before scene's georeference moved by a known amount
  (+4 m east, -3 m north: its content must move by dx -0.4, dy -0.3 px of 10 m to lie on the
  after scene's) in ``benchmarks/data/s2tile_shifted/before`` (a copy, made once): the shift is
  found and corrected, so the before bands are resampled onto the after grid;
- ``shifted --no-coregister``: that pair as it is (resampled onto the grid, unshifted).

With ``--baseline-src DIR`` (the ``src`` folder of another checkout, e.g. a ``git worktree`` of an
earlier commit), the ``shifted`` cases run a second time on that code (``PYTHONPATH=DIR``), in
the same alternation: the peer of a change to the resampling path.

    .venv/bin/python benchmarks/bench_coregister.py [--repeat 2] [--baseline-src /tmp/wt_old/src]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
TILE = DATA / "s2tile"
SHIFTED = DATA / "s2tile_shifted"
MOVE_M = (4.0, -3.0)  # (east, north) metres added to the before scene's georeference
RSMON = ROOT / ".venv" / "bin" / "rsmon"


def shifted_copy() -> Path:
    """``SHIFTED/before`` (a copy of the tile's before scene, georeference moved) and ``SHIFTED/after``
    (a link to the tile's after scene); made once."""
    import rasterio
    from affine import Affine

    before = SHIFTED / "before"
    if not before.is_dir():
        tmp = SHIFTED / ".before.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(TILE / "before", tmp)
        for tif in sorted(tmp.glob("*.tif")):
            with rasterio.open(tif, "r+") as dst:
                dst.transform = Affine.translation(*MOVE_M) * dst.transform
        tmp.rename(before)
    after = SHIFTED / "after"
    if not after.exists():
        after.symlink_to(TILE / "after", target_is_directory=True)
    return SHIFTED


def run(pair: Path, extra: list[str], src: str | None = None) -> dict:
    out = Path(tempfile.mkdtemp(prefix="rsmon-bench-coreg-"))
    try:
        cmd = ["/usr/bin/time", "-f", "%e %U %S %M", str(RSMON), "-v", "redline", "detect",
               "--before", str(pair / "before"), "--after", str(pair / "after"), "-o", str(out / "o"),
               "--no-quicklooks", "--no-checksums", *extra]
        env = dict(os.environ, PYTHONPATH=src) if src else None
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        wall, user, sys_s, kb = proc.stderr.strip().splitlines()[-1].split()
        stages: dict[str, float] = {}
        for stage, took in re.findall(r"redline stage (\w+): ([\d.]+) s", proc.stderr):
            stages[stage] = stages.get(stage, 0.0) + float(took)  # a stage may come back (open)
        summary = json.loads((out / "o" / "summary.json").read_text())
        reg = summary["coregistration"]
        return {"wall": float(wall), "user": float(user), "sys": float(sys_s), "peak_mb": int(kb) / 1024,
                "stages": stages, "change_pixels": summary["n_change_pixels"],
                "coregistration": reg[0] if isinstance(reg, list) and reg else reg}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--baseline-src", help="src folder of another checkout: the shifted cases on that code too")
    args = parser.parse_args(argv)
    if not (TILE / "before").is_dir():
        print(f"{TILE} missing: run benchmarks/bench_change_tile.py once to simulate the tile", file=sys.stderr)
        return 2
    shifted = shifted_copy()
    cases = {"aligned": (TILE, []), "aligned --no-coregister": (TILE, ["--no-coregister"]),
             "shifted": (shifted, []), "shifted --no-coregister": (shifted, ["--no-coregister"])}
    if args.baseline_src:
        for name in ("shifted", "shifted --no-coregister"):
            cases[f"{name} (baseline code)"] = (*cases[name], args.baseline_src)
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for name, (pair, extra, *src) in cases.items():
            r = run(pair, extra, *src)
            print(f"{name}: {r['wall']:.2f} s, {r['peak_mb']:.0f} MB", flush=True)
            if name not in best or r["wall"] < best[name]["wall"]:
                best[name] = r
    base = best["aligned --no-coregister"]["wall"]
    print("\n| case | wall s | user s | sys s | peak MB | / no co-registration | change pixels | shift found (dy, dx px) | "
          "stages (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for name, r in best.items():
        reg = r["coregistration"]
        found = (f"{reg['dy']:+.2f}, {reg['dx']:+.2f} ({'applied' if reg['applied'] else 'not applied'})"
                 if isinstance(reg, dict) else "off")
        stages = ", ".join(f"{k} {float(v):.2f}" for k, v in r["stages"].items())
        print(f"| {name} | {r['wall']:.2f} | {r['user']:.2f} | {r['sys']:.2f} | {r['peak_mb']:.0f} | "
              f"{r['wall'] / base:.2f} | {r['change_pixels']:,} | {found} | {stages} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
