"""Merging the patch tables of overlapping tiles (a multi-tile redline job), against the tile's run.

The patch table of the simulated Sentinel-2 tile pair (``benchmarks/data/s2tile``, made by
``bench_change_tile.py``; 7876 patches) is taken as tile A, and a tile half a tile (54.9 km)
further east as tile B, so every patch of A's eastern half is seen twice (B: A's eastern half as
it is, and A's western half moved one tile east as B's own part; the worst case: real
neighbouring tiles overlap by ~10 km of 110). The merge
(:func:`rsmon.products.patch_merge.merge_tile_patches`) must drop one copy of each; its time is what
a multi-tile job adds to its tiles' runs. Usage::

    .venv/bin/python benchmarks/bench_patch_merge.py [--patches OUT/patches.gpkg] [--repeat 3]

Without ``--patches`` the tile pair is run once first (``rsmon redline detect``, one-off CLI, timed
too: the ratio is merge / tile run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import pandas as pd

HERE = Path(__file__).resolve().parent
TILE = HERE / "data" / "s2tile"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=Path, help="a tile run's patches.gpkg (default: run the tile pair)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from rsmon.products.patch_merge import merge_tile_patches

    run_s = None
    with tempfile.TemporaryDirectory() as tmp:
        path = args.patches
        if path is None:
            if not (TILE / "before").is_dir():
                sys.exit(f"{TILE} is missing: run benchmarks/bench_change_tile.py once to simulate the tile pair")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rsmon.cli", "redline", "detect", "--before", str(TILE / "before"),
                            "--after", str(TILE / "after"), "-o", tmp, "--no-quicklooks", "--no-checksums"], check=True)
            run_s = time.perf_counter() - t0
            path = Path(tmp) / "patches.gpkg"
        a = gpd.read_file(path)
    # tile B: the eastern half of A as it is (the same changes seen again) and A's western half moved
    # one tile east (B's own part): the layout of tests/test_redline_tiles.py's rolled fixture
    shift = 54_900.0
    x0 = a.total_bounds[0]
    west = a.geometry.centroid.x < x0 + shift
    own = a[west].copy()
    own["geometry"] = own.geometry.translate(xoff=2 * shift)
    own["patch_id"] = [f"b{i}" for i in range(len(own))]
    b = gpd.GeoDataFrame(pd.concat([a[~west], own], ignore_index=True), crs=a.crs)
    centre_a = gpd.GeoSeries.from_xy([x0 + 54_900], [a.geometry.centroid.y.mean()], crs=a.crs).to_crs(4326)
    centre_b = centre_a.to_crs(a.crs).translate(xoff=shift).to_crs(4326)
    centres = {"A": (centre_a.x[0], centre_a.y[0]), "B": (centre_b.x[0], centre_b.y[0])}
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        merged = merge_tile_patches({"A": a, "B": b}, centres)
        times.append(time.perf_counter() - t0)
    print(f"patches per tile: {len(a)}; merged {len(merged.table)}, dropped {merged.n_dropped}, "
          f"ids renamed {merged.n_renamed}")
    print(f"merge: best {min(times):.3f} s of {args.repeat}" + (
        f"; one tile's run (one-off CLI) {run_s:.2f} s; merge / run = {min(times) / run_s:.3f}" if run_s else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
