#!/usr/bin/env python
"""Benchmark: redline change patches and quicklooks on a full Sentinel-2 tile (issue 5).

Builds once into ``benchmarks/data/patches-tile/`` a synthetic full-tile change dataset (10980 x
10980, UTM 50N, 10 m): ``change``/``change_class``/``confidence`` (uint8, ~6000 irregular blobs of
4-2000 pixels with holes, ragged edges, diagonal joins and touching blobs of different classes, a
no-data corner) and 32 wiggly redline polygons in EPSG:4490 covering about half the tile (some
overlapping). The eight index variables are lazy dask arrays of a cheap formula, as the change
computation hands them over; the fused pass's ``index_samples`` are the same formula at the change
pixels.

Cases, each its own process under GNU time (wall seconds, peak RSS):

``patches-dense``   :func:`patches_from_change` reading the lazy index variables (no samples),
                    with and without the redlines, then :func:`write_patches` (GPKG + GeoJSON);
``patches-fused``   the same with ``index_samples`` (the fused change pass), index variables absent;
``quicklooks``      200 :func:`write_quicklooks` PNGs from the full lazy simulated S2 tile pair in
                    ``benchmarks/data/s2tile`` (written by :mod:`rsmon.sim.s2` when missing).

Usage::

    .venv/bin/python benchmarks/bench_patches.py [--data benchmarks/data] [--cases patches-fused,...]
    # "before" numbers: the same cases on an older implementation, e.g.
    git show bd626d5b:src/rsmon/products/patches.py > /tmp/patches_old.py
    git show bd626d5b:src/rsmon/io/change_output.py > /tmp/change_output_old.py
    git show bd626d5b:src/rsmon/io/vectors.py > /tmp/vectors_old.py
    .venv/bin/python benchmarks/bench_patches.py --patches-module /tmp/patches_old.py \
        --quicklooks-module /tmp/change_output_old.py --vectors-module /tmp/vectors_old.py \
        --cases patches-dense,quicklooks

Needs GNU time (Debian package ``time``). Prints a Markdown table and each case's stage timers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_fire import timed  # noqa: E402  (GNU time around a child process: wall s, peak MB, stdout)

SIZE = 10980
CRS = "EPSG:32650"
X0, Y0, RES = 399960.0, 4100040.0, 10.0
N_BLOBS = 6000
INDEX_NAMES = tuple(f"{i}_{w}" for i in ("ndvi", "ndbi", "mndwi", "bsi") for w in ("before", "after"))


# --------------------------------------------------------------------------------------------
# synthetic change tile
# --------------------------------------------------------------------------------------------
def _blob(rng: np.random.Generator, n_px: float) -> np.ndarray:
    """An irregular blob of about ``n_px`` pixels: a noisy rotated ellipse, sometimes with a hole."""
    radius = np.sqrt(n_px / np.pi)
    half = int(np.ceil(radius * 1.9)) + 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    angle, ratio = rng.uniform(0, np.pi), rng.uniform(0.5, 1.0)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) / (radius / np.sqrt(ratio))
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) / (radius * np.sqrt(ratio))
    theta = np.arctan2(v, u)
    wobble = 1 + 0.2 * np.sin(3 * theta + rng.uniform(0, 6.3)) + 0.1 * np.sin(7 * theta + rng.uniform(0, 6.3))
    rho = np.hypot(u, v) / wobble
    blob = rho < 1 + 0.06 * rng.standard_normal(rho.shape)  # ragged edges, diagonal joins
    if n_px > 300 and rng.random() < 0.3:
        blob &= rho > 0.25  # a hole (a kept tree clump, a courtyard)
    return blob


def build_change_tile(size: int = SIZE, n_blobs: int = N_BLOBS, seed: int = 5):
    """``change``, ``change_class``, ``confidence`` (uint8 ``size`` x ``size``)."""
    rng = np.random.default_rng(seed)
    change = np.zeros((size, size), np.uint8)
    classes = np.zeros((size, size), np.uint8)
    confidence = np.zeros((size, size), np.uint8)
    sizes = np.exp(rng.uniform(np.log(4), np.log(2000), n_blobs))
    for n_px in sizes:
        blob = _blob(rng, n_px)
        h, w = blob.shape
        r0, c0 = int(rng.integers(0, size - h)), int(rng.integers(0, size - w))
        window = (slice(r0, r0 + h), slice(c0, c0 + w))
        cls = np.full(blob.shape, rng.integers(1, 7), np.uint8)
        if rng.random() < 0.1:  # two activities side by side: touching regions of two classes
            cls[:, w // 2 :] = rng.integers(1, 7)
        if rng.random() < 0.02:
            cls[: h // 3] = rng.choice([0, 255])  # change pixels without a known class count as other
        conf = np.full(blob.shape, rng.integers(1, 3), np.uint8)
        if rng.random() < 0.2:
            conf[h // 2, :] = 3  # a confirmed strip
        change[window][blob] = 1
        classes[window][blob] = cls[blob]
        confidence[window][blob] = conf[blob]
    # minimum mapping unit (4 pixels, 8-connected) as the change pass applies it
    from scipy import ndimage

    labels, n = ndimage.label(change == 1, structure=np.ones((3, 3), bool))
    small = np.flatnonzero(np.bincount(labels.ravel(), minlength=n + 1)[1:] < 4) + 1
    drop = np.isin(labels, small)
    change[drop], classes[drop], confidence[drop] = 0, 0, 0
    del labels, drop
    rows = np.arange(size)[:, None]
    wedge = (np.arange(size)[None, :] + rows) > 2 * size - size // 8  # swath edge: no data
    change[wedge], classes[wedge], confidence[wedge] = 255, 0, 0
    return change, classes, confidence


def build_redlines(size: int = SIZE, n_zones: int = 32, seed: int = 7):
    """Wiggly redline polygons (~600 vertices each) over about half the tile, in EPSG:4490."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(seed)
    width = size * RES
    geoms = []
    for _ in range(n_zones):
        cx, cy = X0 + rng.uniform(0.05, 0.95) * width, Y0 - rng.uniform(0.05, 0.95) * width
        theta = np.linspace(0, 2 * np.pi, 600, endpoint=False)
        radius = rng.uniform(0.05, 0.13) * width * (1 + 0.25 * np.sin(4 * theta + rng.uniform(0, 6.3))
                                                     + 0.05 * rng.standard_normal(theta.size))
        ring = np.c_[cx + radius * np.cos(theta), cy + radius * np.sin(theta)]
        geoms.append(shapely.make_valid(shapely.Polygon(ring)))
    gdf = gpd.GeoDataFrame({"BH": [f"HX{i:03d}" for i in range(n_zones)],
                            "MC": [f"redline {i}" for i in range(n_zones)],
                            "GKFQ": rng.choice(["core", "general"], n_zones)}, geometry=geoms, crs=CRS)
    return gdf.to_crs("EPSG:4490")


def index_formula(rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
    """A cheap, position-encoding float32 field for index variable ``k`` (NaN on a few pixels)."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    out = (((rows * (7 * k) + cols * 3) % 1001).astype(np.float32) * np.float32(0.002) - np.float32(0.001 * k))
    out[(rows * 7 + cols * 13 + k) % 997 == 0] = np.nan
    return out


def lazy_index(name: str, shape, chunk: int = 1024):
    import dask.array as da

    k = INDEX_NAMES.index(name) + 1

    def block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return index_formula(np.arange(r0, r1)[:, None], np.arange(c0, c1)[None, :], k)

    return da.map_blocks(block, chunks=da.core.normalize_chunks(chunk, shape), dtype=np.float32)


def tile_paths(data: Path) -> dict[str, Path]:
    folder = data / "patches-tile"
    return {"folder": folder, "masks": folder / "masks.npz", "redlines": folder / "redlines.gpkg"}


def ensure_tile(data: Path) -> dict[str, Path]:
    paths = tile_paths(data)
    if not paths["masks"].exists():
        paths["folder"].mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        change, classes, confidence = build_change_tile()
        np.savez(paths["masks"], change=change, change_class=classes, confidence=confidence)
        build_redlines().to_file(paths["redlines"], engine="pyogrio")
        print(f"built {paths['folder']} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return paths


def load_dataset(paths: dict[str, Path], *, with_index: bool = True):
    """The change dataset (numpy masks, lazy index variables) as the change pass delivers it."""
    import rioxarray  # noqa: F401
    import xarray as xr
    from affine import Affine

    masks = np.load(paths["masks"])
    shape = masks["change"].shape
    transform = Affine(RES, 0, X0, 0, -RES, Y0)
    data = {k: (("y", "x"), masks[k]) for k in ("change", "change_class", "confidence")}
    if with_index:
        data.update({name: (("y", "x"), lazy_index(name, shape)) for name in INDEX_NAMES})
    coords = {"y": Y0 - RES * (np.arange(shape[0]) + 0.5), "x": X0 + RES * (np.arange(shape[1]) + 0.5)}
    ds = xr.Dataset(data, coords=coords,
                    attrs={"before_datetime": "2023-05-01T03:05:51Z", "after_datetime": "2023-06-01T03:05:51Z",
                           "sensor": "Sentinel-2 MSI", "before_source": "before", "after_source": "after"})
    return ds.rio.write_crs(CRS).rio.write_transform(transform)


def index_samples(change: np.ndarray, block: int = 512) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The fused pass's samples: flat indices of the change pixels, block by block as the fused
    pass collects them, and the index values there."""
    flat = np.flatnonzero(change.ravel() == 1)
    rows, cols = np.divmod(flat, change.shape[1])
    order = np.argsort((rows // block) * (change.shape[1] // block + 1) + cols // block, kind="stable")
    flat, rows, cols = flat[order], rows[order], cols[order]
    return flat, {name: index_formula(rows, cols, k + 1) for k, name in enumerate(INDEX_NAMES)}


# --------------------------------------------------------------------------------------------
# cases (each run in a child process: `bench_patches.py --run CASE`)
# --------------------------------------------------------------------------------------------
def _load_module(path: str | None, default: str):
    if not path:
        return importlib.import_module(default)
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_case(case: str, args) -> dict:
    import geopandas as gpd

    timers: dict[str, float] = {}
    t0 = time.perf_counter()
    if case.startswith("patches"):
        patches = _load_module(args.patches_module, "rsmon.products.patches")
        paths = tile_paths(Path(args.data))
        fused = case == "patches-fused"
        ds = load_dataset(paths, with_index=not fused)
        redlines = gpd.read_file(paths["redlines"], engine="pyogrio")
        kwargs = {}
        if fused:
            kwargs["index_samples"] = index_samples(np.asarray(ds["change"].values))
        timers["load"] = time.perf_counter() - t0
        t1, c1 = time.perf_counter(), time.process_time()
        table = patches.patches_from_change(ds, redlines=redlines, **kwargs)
        timers["patches_from_change"] = time.perf_counter() - t1
        timers["(cpu)"] = time.process_time() - c1
        t2 = time.perf_counter()
        plain = patches.patches_from_change(ds, **kwargs)
        timers["patches_from_change (no redlines)"] = time.perf_counter() - t2
        timers["n_patches"], timers["n_pieces"] = len(plain), len(table)
        vectors = _load_module(args.vectors_module, "rsmon.io.vectors")
        with tempfile.TemporaryDirectory() as tmp:
            t3 = time.perf_counter()
            vectors.write_patches(table, Path(tmp) / "patches.gpkg", Path(tmp) / "patches.geojson")
            timers["write_patches (gpkg + geojson)"] = time.perf_counter() - t3
    elif case == "quicklooks":
        change_output = _load_module(args.quicklooks_module, "rsmon.io.change_output")
        from rsmon.io.optical import open_optical

        s2 = Path(args.data) / "s2tile"
        before, after = open_optical(s2 / "before"), open_optical(s2 / "after")
        patches = _quicklook_patches(before)
        timers["load"] = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            t1, c1 = time.perf_counter(), time.process_time()
            written = change_output.write_quicklooks(patches, before, after, tmp, max_patches=200)
            timers["write_quicklooks"] = time.perf_counter() - t1
            timers["(cpu)"] = time.process_time() - c1
        timers["n_png"] = len(written)
    else:
        raise SystemExit(f"unknown case {case!r}")
    return timers


def _quicklook_patches(image):
    """200 patches of 4-2000 pixels spread over the tile (pixel-edge rectangles, one class each)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    rng = np.random.default_rng(11)
    transform = image.rio.transform()
    size = image.sizes["y"]
    n = 200
    sides = np.sqrt(np.exp(rng.uniform(np.log(4), np.log(2000), n))).round().clip(2)
    rows, cols = rng.integers(0, size - 60, n), rng.integers(0, size - 60, n)
    geoms = [shapely.box(*(transform * (c, r + s)), *(transform * (c + s, r))) for r, c, s in zip(rows, cols, sides)]
    return gpd.GeoDataFrame({"patch_id": [f"chg-{i:016x}" for i in range(n)], "change_class": "construction",
                             "confidence": "high", "area_m2": sides**2 * 100.0, "before_date": "2023-05-01",
                             "after_date": "2023-06-01",
                             "redline_id": pd.Series([f"HX{i % 7:03d}" if i % 3 else None for i in range(n)], dtype=object)},
                            geometry=geoms, crs=image.rio.crs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(HERE / "data"))
    parser.add_argument("--cases", default="patches-dense,patches-fused,quicklooks")
    parser.add_argument("--patches-module", help="a patches.py file to time instead of rsmon.products.patches")
    parser.add_argument("--quicklooks-module", help="a change_output.py file to time instead of rsmon.io.change_output")
    parser.add_argument("--vectors-module", help="a vectors.py file to time instead of rsmon.io.vectors")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        print(json.dumps(run_case(args.run, args)))
        return 0
    data = Path(args.data)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if any(c.startswith("patches") for c in cases):
        ensure_tile(data)
    if "quicklooks" in cases and not (data / "s2tile" / "after").is_dir():
        from rsmon.sim.s2 import simulate_s2_l2a_pair

        simulate_s2_l2a_pair(data / "s2tile", n_changes=300)
    rows = []
    for case in cases:
        cmd = [sys.executable, __file__, "--run", case, "--data", str(data)]
        for opt in ("patches_module", "quicklooks_module", "vectors_module"):
            if getattr(args, opt):
                cmd += [f"--{opt.replace('_', '-')}", getattr(args, opt)]
        wall, mb, out = timed(cmd)
        timers = json.loads(out.strip().splitlines()[-1])
        rows.append((case, wall, mb, timers))
        print(f"{case}: {wall:.2f} s, {mb:.0f} MB peak; " + ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in timers.items()), file=sys.stderr)
    print("| case | wall s (process) | peak MB | stage timers (s) |\n|---|---:|---:|---|")
    for case, wall, mb, timers in rows:
        stages = "; ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in timers.items())
        print(f"| {case} | {wall:.2f} | {mb:.0f} | {stages} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
