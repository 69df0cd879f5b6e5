#!/usr/bin/env python
"""Barren parts on real Sentinel-2 pairs: the four OSCD cities with every patch taken as cropland.

No real data set here has a land-cover map, harvests and a reference together, so this is a stress
test of the per-pixel rule of :mod:`rsmon.products.change_barren` on real imagery: a land-cover map
of the scene's grid that says cropland (WorldCover 40) everywhere makes the crop-cycle screen take
every patch that is not barren or water on average; the barren parts then bring back what became
barren inside them. OSCD's labels mark urban change only (construction), so the barren parts' pixel
precision against them says whether the parts are construction or something else (fields, tides).

For each city (``../shared/data/oscd/<city>``: ``imgs_1`` -> ``imgs_2``, label ``cm/<city>-cm.tif``
on the ``imgs_1`` grid), three one-off ``rsmon redline detect`` runs: plain, ``--landcover ALL40
--no-barren-parts`` and ``--landcover ALL40``; the patches (pixel centres inside them) are scored
against the label: patches, pixels, pixel precision.

Usage::

    .venv/bin/python benchmarks/barren_parts_oscd.py [--data ../shared/data/oscd] [--cities beihai,...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import rasterize

ROOT = Path(__file__).resolve().parents[1]
RSMON = str(Path(sys.executable).with_name("rsmon"))


def _all_cropland(like: Path, path: Path) -> Path:
    with rasterio.open(like) as src:
        profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="uint8", crs=src.crs,
                       transform=src.transform, nodata=0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, profile["height"], profile["width"]), 40, np.uint8))
    return path


def _score(table: gpd.GeoDataFrame, label: np.ndarray, transform) -> tuple[int, int, float]:
    if not len(table):
        return 0, 0, float("nan")
    mask = rasterize(((g, 1) for g in table.geometry), out_shape=label.shape, transform=transform).astype(bool)
    return len(table), int(mask.sum()), float((label[mask] == 2).mean())


def city_rows(folder: Path, work: Path) -> dict[str, tuple[int, int, float]]:
    after = folder / "imgs_2"
    cover = _all_cropland(sorted(after.glob("*B04*.tif"))[0], work / "all-cropland.tif")
    runs = {"plain": [], "whole": ["--landcover", str(cover), "--no-barren-parts"], "parts": ["--landcover", str(cover)]}
    for name, extra in runs.items():
        subprocess.run([RSMON, "redline", "detect", "--before", str(folder / "imgs_1"), "--after", str(after), *extra,
                        "-o", str(work / name), "--no-quicklooks", "--no-checksums"], check=True,
                       stdout=subprocess.DEVNULL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the label has no georeference: it is on the imgs_1 grid
        label = rasterio.open(next((folder / "cm").glob("*-cm.tif"))).read(1)
    with rasterio.open(work / "parts" / "change.tif") as src:
        transform = src.transform
    table = {name: gpd.read_file(work / name / "patches.gpkg", layer="patches") for name in runs}
    parts = table["parts"][~table["parts"]["patch_id"].isin(set(table["whole"]["patch_id"]))]
    screened = gpd.read_file(work / "parts" / "screened.gpkg", layer="screened")
    return {"unscreened run": _score(table["plain"], label, transform),
            "kept, whole patches only": _score(table["whole"], label, transform),
            "barren parts": _score(parts, label, transform),
            "screened (the rest)": _score(screened, label, transform)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "oscd")
    ap.add_argument("--cities", default="beihai,hongkong,mumbai,rennes")
    args = ap.parse_args()
    print("| city | unscreened run | kept whole (barren or water on average) | barren parts | screened (the rest) |")
    print("|---|---|---|---|---|")
    for city in args.cities.split(","):
        with tempfile.TemporaryDirectory(prefix=f"rsmon-barren-{city}-") as tmp:
            rows = city_rows(args.data / city, Path(tmp))
        print(f"| {city} | " + " | ".join(f"{n} / {px} / {p:.3f}" for n, px, p in rows.values()) + " |")
    print("\n(each cell: patches / pixels / pixel precision against the OSCD urban-change label)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
