#!/usr/bin/env python
"""The crop-cycle screen on the simulated Sentinel-2 tile: what it removes, what it costs (issue 5).

Input: the simulated tile pair of ``benchmarks/bench_change_tile.py`` (``<data>/s2tile``: May ->
June on the North China Plain, 10 % of the wheat parcels harvested, 200 planted changes) and its
before land cover as an ESA WorldCover map (``<data>/s2tile/landcover.tif``, written once by
:func:`rsmon.sim.s2.write_worldcover`: EPSG:4326, 1/12000 degree, exact).

Runs, alternating, each its own process under GNU time: the one-off CLI ``rsmon redline detect
--no-quicklooks --no-checksums`` without and with ``--landcover``. Then scores both runs' patches
against the truth raster (patches burnt onto the 10 m grid):

- pixel precision and recall of the patches (kept patches only for the screened run);
- patches overlapping a planted change, and patch counts / area kept and screened;
- per planted class: truth regions found by a kept patch, found only by a screened one, missed.

``--watch``: the next month as well. The same landscape on 15 August with no parcel harvested (the
fields green again; ``<data>/s2tile_aug``, simulated once, ~25 s) against the June scene, with the
screened run's patches as ``--previous``: the watch's outcomes, its time, and how many of the
re-admitted patches lie on a planted change.

Usage::

    .venv/bin/python benchmarks/screen_tile.py [--data benchmarks/data] [--repeat 2] [--watch]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RSMON = str(Path(sys.executable).with_name("rsmon"))
TRUTH_NAMES = {1: "construction", 2: "mining", 3: "new water", 4: "vegetation clearing"}


def landcover(folder: Path) -> Path:
    path = folder / "landcover.tif"
    if not path.exists():
        from affine import Affine

        from rsmon.sim.s2 import PIXEL_M, TILE_ORIGIN, _tile_crs, write_worldcover
        from rsmon.sim.s2_scene import Landscape

        print(f"writing {path} (~12 s) ...", file=sys.stderr)
        _, crs = _tile_crs("T50SMF")  # bench_change_tile.py's tile: rsmon sim s2 defaults (seed 0)
        write_worldcover(Landscape(10980, 0), path, crs,
                         Affine(PIXEL_M, 0.0, TILE_ORIGIN[0], 0.0, -PIXEL_M, TILE_ORIGIN[1]))
    return path


def run(folder: Path, out: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.NamedTemporaryFile("r") as tf:
        subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "%e %M", RSMON, "redline", "detect", "--before",
                        str(folder / "before"), "--after", str(folder / "after"), "-o", str(out), "--no-quicklooks",
                        "--no-checksums", *extra], check=True, capture_output=True, text=True)
        wall, kb = tf.read().split()[-2:]
    return {"wall": float(wall), "peak_mb": float(kb) / 1024}


def scores(folder: Path, out: Path) -> dict:
    import geopandas as gpd
    import rasterio
    import scipy.ndimage as ndi
    from rasterio.features import rasterize

    with rasterio.open(folder / "truth.tif") as ds:
        truth, transform = ds.read(1), ds.transform
    planted = truth > 0
    regions, _ = ndi.label(planted)

    def burnt(name: str, layer: str):
        path = out / name
        if not path.exists():
            return None, np.zeros(truth.shape, np.int32)
        table = gpd.read_file(path, layer=layer)
        labels = rasterize(((g, i + 1) for i, g in enumerate(table.geometry)), out_shape=truth.shape,
                           transform=transform, dtype="int32") if len(table) else np.zeros(truth.shape, np.int32)
        return table, labels

    kept, k = burnt("patches.gpkg", "patches")
    screened, s = burnt("screened.gpkg", "screened")
    tp = int((planted & (k > 0)).sum())
    result = {"patches": len(kept), "patches_on_truth": int(np.unique(k[planted & (k > 0)]).size),
              "kept_ha": float(kept["area_m2"].sum() / 1e4), "precision": tp / max(int((k > 0).sum()), 1),
              "recall": tp / int(planted.sum()),
              "screened": 0 if screened is None else len(screened),
              "screened_ha": 0.0 if screened is None else float(screened["area_m2"].sum() / 1e4), "by_class": {}}
    for code, name in TRUTH_NAMES.items():
        mine = truth == code
        ids = set(np.unique(regions[mine])) - {0}
        found_k = set(np.unique(regions[mine & (k > 0)])) - {0}
        found_s = set(np.unique(regions[mine & (s > 0)])) - {0} - found_k
        result["by_class"][name] = (len(ids), len(found_k), len(found_s), len(ids) - len(found_k) - len(found_s))
    return result


def watch(data: Path, folder: Path, lc: Path, june: Path, out: Path) -> None:
    import json

    import geopandas as gpd
    import rasterio
    from rasterio.features import rasterize

    aug = data / "s2tile_aug"
    if not (aug / "after").is_dir():
        print(f"simulating the August tile into {aug} (~25 s) ...", file=sys.stderr)
        from rsmon.sim.s2 import simulate_s2_l2a_pair

        simulate_s2_l2a_pair(aug, harvest_fraction=0.0, dates=("2023-05-01", "2023-08-15"))
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.NamedTemporaryFile("r") as tf:
        subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "%e %M", RSMON, "redline", "detect", "--before",
                        str(folder / "after"), "--after", str(aug / "after"), "--landcover", str(lc), "--previous",
                        str(june / "patches.gpkg"), "-o", str(out), "--no-quicklooks", "--no-checksums"],
                       check=True, capture_output=True, text=True)
        wall, kb = tf.read().split()[-2:]
    summary = json.loads((out / "summary.json").read_text())
    kept = gpd.read_file(out / "patches.gpkg", layer="patches")
    back = kept[kept["first_detected"] < "2023-08-15"]
    with rasterio.open(folder / "truth.tif") as ds:
        truth, transform = ds.read(1) > 0, ds.transform
    on = sum(bool(truth[rasterize([(g, 1)], out_shape=truth.shape, transform=transform).astype(bool)].any())
             for g in back.geometry)
    print(f"\nAugust against June with the June run as --previous: {float(wall):.2f} s, "
          f"{float(kb) / 1024:.0f} MB; watch stage {summary['stage_seconds'].get('watch')} s; "
          f"watch {summary['watch']}; kept {len(kept)} (re-admitted {len(back)}, {on} on a planted change); "
          f"screened {summary['screened']}")
    import scipy.ndimage as ndi

    codes = rasterio.open(folder / "truth.tif").read(1)
    regions, _ = ndi.label(codes > 0)

    def burnt(path: Path):
        table = gpd.read_file(path)
        return rasterize(((g, 1) for g in table.geometry), out_shape=codes.shape, transform=transform).astype(bool)

    k1, s1, k2 = burnt(june / "patches.gpkg"), burnt(june / "screened.gpkg"), burnt(out / "patches.gpkg")
    print("\n| planted class | regions | kept in June | re-admitted in August | still only screened | missed |")
    print("|---|---:|---:|---:|---:|---:|")
    for code, name in TRUTH_NAMES.items():
        mine = codes == code
        found = [set(np.unique(regions[mine & m])) - {0} for m in (k1, k2, s1)]
        n = len(set(np.unique(regions[mine])) - {0})
        print(f"| {name} | {n} | {len(found[0])} | {len(found[1] - found[0])} | "
              f"{len(found[2] - found[0] - found[1])} | {n - len(found[0] | found[1] | found[2])} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--watch", action="store_true", help="also the next month's run and its watch")
    args = ap.parse_args()
    folder = args.data / "s2tile"
    if not (folder / "after").is_dir():
        print(f"no tile pair in {folder}: run benchmarks/bench_change_tile.py once first", file=sys.stderr)
        return 2
    lc = landcover(folder)
    work = Path(tempfile.mkdtemp(prefix="rsmon-screen-"))
    cases = {"no screen": [], "--landcover": ["--landcover", str(lc)]}
    timings: dict[str, list[dict]] = {c: [] for c in cases}
    try:
        for _ in range(args.repeat):
            for case, extra in cases.items():
                timings[case].append(run(folder, work / case.strip("-").replace(" ", "_"), extra))
        print("| run | wall s (each) | peak MB | patches | on a planted change | kept ha | pixel precision "
              "| pixel recall | screened | screened ha |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        results = {}
        for case in cases:
            r = results[case] = scores(folder, work / case.strip("-").replace(" ", "_"))
            walls = " / ".join(f"{t['wall']:.2f}" for t in timings[case])
            peak = max(t["peak_mb"] for t in timings[case])
            print(f"| {case} | {walls} | {peak:.0f} | {r['patches']} | {r['patches_on_truth']} | {r['kept_ha']:.1f} "
                  f"| {r['precision']:.4f} | {r['recall']:.4f} | {r['screened']} | {r['screened_ha']:.1f} |")
        print("\n| planted class | regions | found by a kept patch | only by a screened one | missed |")
        print("|---|---:|---:|---:|---:|")
        for name, (n, fk, fs, miss) in results["--landcover"]["by_class"].items():
            print(f"| {name} | {n} | {fk} | {fs} | {miss} |")
        if args.watch:
            watch(args.data, folder, lc, work / "landcover", work / "august")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
