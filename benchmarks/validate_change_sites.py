"""Validate rsmon change detection and the plain CVA + Otsu baseline on six real reference sites.

Sites (../shared/data, see the SOURCE.txt files there): Landsat Taizhou (ETM+, 2000/2003) and
Nanjing (TM, 2000/2002) with change.bmp/unchanged.bmp masks; OSCD Sentinel-2 L1C cities beihai,
hongkong, mumbai, rennes with <city>-cm.tif labels. One parameter set (ChangeParams defaults) for
every site. Prints a markdown table (and, with --ablation, the F1 of design variants).

    .venv/bin/python benchmarks/validate_change_sites.py [--ablation] [--sites taizhou,nanjing,...]

The scenes are read by the private loader below into the ``rsmon.io.optical.open_optical``
structure (float32 bands on ("y", "x"), attrs datetime/sensor/radiometry), with dask chunks of
``--chunk`` pixels: ENVI stacks as "dn", OSCD L1C as TOA reflectance (DN / 10000), B11/B12 (20 m)
repeated x2 onto the 10 m grid, and imgs_2 cropped/edge-padded to the imgs_1 shape (hongkong).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import sys
import time
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rsmon.products.change import ChangeParams, cva_otsu_baseline, detect_change  # noqa: E402
from rsmon.validate.change import change_scores, read_reference_mask  # noqa: E402
from tests.paths import SHARED_DATA  # noqa: E402

BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")
OSCD_BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir1": "B11", "swir2": "B12"}
LANDSAT = "landsat-cd-taizhou-nanjing"
SITES = {
    "taizhou": ("Taizhou/2000TM", "2000-03-17", "Taizhou/2003TM", "2003-02-06", "Landsat 7 ETM+"),
    "nanjing": ("Nanjing/LT51200382000124BJC00_Nanjing", "2000-05-03",
                "Nanjing/LT51200382002193BJC00_Nanjing", "2002-07-12", "Landsat 5 TM"),
}
OSCD_CITIES = ("beihai", "hongkong", "mumbai", "rennes")
ALL_SITES = ("taizhou", "nanjing") + OSCD_CITIES


def _dataset(bands: dict, transform, crs, chunk: int, **attrs) -> xr.Dataset:
    ny, nx = next(iter(bands.values())).shape
    x = transform.c + transform.a * (np.arange(nx) + 0.5)
    y = transform.f + transform.e * (np.arange(ny) + 0.5)
    ds = xr.Dataset({b: (("y", "x"), da.from_array(v.astype(np.float32), chunks=chunk)) for b, v in bands.items()},
                    coords={"y": y, "x": x}, attrs=attrs)
    try:
        import rioxarray  # noqa: F401
        ds = ds.rio.write_crs(crs).rio.write_transform(transform)
    except ImportError:
        pass
    return ds


def load_envi(path: Path, date: str, sensor: str, chunk: int = 512) -> xr.Dataset:
    """An 8-bit ENVI stack (bands 1,2,3,4,5,7) as a "dn" scene."""
    with rasterio.open(path) as src:
        data = src.read().astype(np.float32)
        transform, crs = src.transform, src.crs
    return _dataset(dict(zip(BANDS, data)), transform, crs, chunk, datetime=date, sensor=sensor,
                    radiometry="dn", source=str(path))


def _oscd_date(city: str, which: int) -> str:
    text = (SHARED_DATA / "oscd" / city / "dates.txt").read_text()
    value = [line.split(":")[1].strip() for line in text.splitlines() if line.startswith(f"date_{which}")][0]
    return f"{value[:4]}-{value[4:6]}-{value[6:]}"


def load_oscd(city: str, which: int, shape=None, chunk: int = 512, grid=None) -> xr.Dataset:
    """OSCD L1C bands as TOA reflectance on the imgs_1 10 m grid (B11/B12 repeated x2).

    ``shape``/``grid`` (transform, crs) of imgs_1 for imgs_2: OSCD pairs are co-registered pixel
    for pixel and the labels follow imgs_1, so imgs_2 takes the imgs_1 grid.
    """
    bands, transform, crs = {}, None, None
    for name, code in OSCD_BANDS.items():
        path = glob.glob(str(SHARED_DATA / "oscd" / city / f"imgs_{which}" / f"*_{code}.tif"))[0]
        with rasterio.open(path) as src:
            values = src.read(1).astype(np.float32)
            if code == "B02":
                transform, crs = src.transform, src.crs
        if code in ("B11", "B12"):
            values = np.repeat(np.repeat(values, 2, axis=0), 2, axis=1)
        bands[name] = values
    target = shape or bands["blue"].shape
    for name, values in bands.items():
        values = values[:target[0], :target[1]]
        pad = ((0, target[0] - values.shape[0]), (0, target[1] - values.shape[1]))
        bands[name] = np.pad(values, pad, mode="edge") / np.float32(10000)
    if grid is not None:
        transform, crs = grid
    return _dataset(bands, transform, crs, chunk, datetime=_oscd_date(city, which), sensor="Sentinel-2 MSI L1C",
                    radiometry="reflectance", source=str(SHARED_DATA / "oscd" / city / f"imgs_{which}"))


def load_site(name: str, chunk: int = 512):
    """(before, after, reference mask, sensor, dates text) of a validation site."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in SITES:
            b_path, b_date, a_path, a_date, sensor = SITES[name]
            folder = SHARED_DATA / LANDSAT
            before = load_envi(folder / b_path, b_date, sensor, chunk)
            after = load_envi(folder / a_path, a_date, sensor, chunk)
            reference = read_reference_mask(folder / Path(b_path).parent)
        else:
            before = load_oscd(name, 1, chunk=chunk)
            with rasterio.open(glob.glob(str(SHARED_DATA / "oscd" / name / "imgs_1" / "*_B02.tif"))[0]) as src:
                grid = (src.transform, src.crs)
            after = load_oscd(name, 2, shape=before["blue"].shape, chunk=chunk, grid=grid)
            reference = read_reference_mask(SHARED_DATA / "oscd" / name / "cm" / f"{name}-cm.tif")
            sensor = "Sentinel-2 L1C"
    return before, after, reference, sensor, f"{before.attrs['datetime']} -> {after.attrs['datetime']}"


def load_site_rsmon(name: str, chunk: int = 512):
    """As :func:`load_site`, with ``rsmon.io.optical.open_optical`` and ``align_pair``.

    The reference masks lie on the before (imgs_1) grid, so the after scene is put on the before
    grid (``align_pair(after, before)``) and the change is computed there.
    """
    from rsmon.io.optical import open_optical
    from rsmon.io.optical_align import align_pair

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in SITES:
            b_path, _, a_path, _, sensor = SITES[name]
            folder = SHARED_DATA / LANDSAT
            before = open_optical(folder / b_path, chunks=chunk)
            after = open_optical(folder / a_path, chunks=chunk)
            reference = read_reference_mask(folder / Path(b_path).parent)
        else:
            before = open_optical(SHARED_DATA / "oscd" / name / "imgs_1", chunks=chunk)
            after = open_optical(SHARED_DATA / "oscd" / name / "imgs_2", chunks=chunk)
            reference = read_reference_mask(SHARED_DATA / "oscd" / name / "cm" / f"{name}-cm.tif")
            sensor = "Sentinel-2 L1C"
        after, before = align_pair(after, before)
    dates = f"{str(before.attrs['datetime'])[:10]} -> {str(after.attrs['datetime'])[:10]}"
    return before, after, reference, sensor, dates


def _loader(reader: str):
    if reader == "private":
        return load_site
    try:
        import rsmon.io.optical  # noqa: F401
        import rsmon.io.optical_align  # noqa: F401
    except ImportError:
        if reader == "rsmon":
            raise
        return load_site
    return load_site_rsmon


def _fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.3f}"


def run(sites, params: ChangeParams, chunk: int, load=load_site) -> list[dict]:
    rows = []
    for name in sites:
        t0 = time.perf_counter()
        before, after, reference, sensor, dates = load(name, chunk)
        base = change_scores(cva_otsu_baseline(before, after).values, reference)
        ours = detect_change(before, after, params)
        change = ours["change"].values
        scores = change_scores(change, reference)
        rows.append({"site": name, "sensor": sensor, "dates": dates, "baseline": base, "rsmon": scores,
                     "threshold": ours.attrs["threshold"], "seconds": time.perf_counter() - t0,
                     "classes": np.bincount(ours["change_class"].values[change == 1], minlength=7)})
    return rows


def table(rows) -> str:
    head = ("| site | sensor | dates | pixels scored (excluded) | baseline P / R / F1 / IoU / kappa | "
            "rsmon P / R / F1 / IoU / kappa | rsmon object P / R (IoU>=0.5) | object P / R (any overlap) |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        b, s = r["baseline"], r["rsmon"]
        lines.append(
            f"| {r['site']} | {r['sensor']} | {r['dates']} | {s.n_scored:,} ({s.n_excluded:,}) | "
            f"{_fmt(b.precision)} / {_fmt(b.recall)} / **{_fmt(b.f1)}** / {_fmt(b.iou)} / {_fmt(b.kappa)} | "
            f"{_fmt(s.precision)} / {_fmt(s.recall)} / **{_fmt(s.f1)}** / {_fmt(s.iou)} / {_fmt(s.kappa)} | "
            f"{_fmt(s.object_precision)} / {_fmt(s.object_recall)} | "
            f"{_fmt(s.object_precision_overlap)} / {_fmt(s.object_recall_overlap)} |")
    return "\n".join(lines)


ABLATIONS = {
    "rsmon defaults": {},
    "no normalisation": {"normalise": False},
    "EM threshold": {"threshold_method": "em"},
    "water in statistics": {"statistics_on_land": False},
    "no closing, no MMU": {"closing_px": 0, "mmu_px": 0},
    "opening 1 px": {"opening_px": 1},
    "MMU 8 px": {"mmu_px": 8},
}
#: the index rule combined with the (default) CVA change instead of only classifying it
RULE_COMBINATIONS = ("CVA or rule", "CVA and rule")


def ablation(sites, chunk: int, load=load_site) -> str:
    """F1 of design variants, one column each (the rule combinations are not MMU-cleaned again)."""
    cols = list(ABLATIONS) + list(RULE_COMBINATIONS)
    lines = ["| site | baseline | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for name in sites:
        before, after, reference, *_ = load(name, chunk)
        before, after = before.compute(), after.compute()
        cells = [_fmt(change_scores(cva_otsu_baseline(before, after).values, reference).f1)]
        for changes in ABLATIONS.values():
            ds = detect_change(before, after, dataclasses.replace(ChangeParams(), **changes))
            cells.append(_fmt(change_scores(ds["change"].values, reference).f1))
        ds = detect_change(before, after).compute()
        change, rule, valid = ds["change"].values == 1, ds["rule"].values, ds["valid"].values
        for combined in (change | rule, change & rule):
            codes = np.where(valid, combined.astype(np.uint8), np.uint8(255))
            cells.append(_fmt(change_scores(codes, reference).f1))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default=",".join(ALL_SITES))
    parser.add_argument("--chunk", type=int, default=256, help="dask chunk size in pixels (default 256)")
    parser.add_argument("--ablation", action="store_true", help="also print F1 of design variants")
    parser.add_argument("--reader", choices=("auto", "rsmon", "private"), default="auto",
                        help="rsmon.io.optical (auto: when installed) or this script's private loader")
    args = parser.parse_args(argv)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    unknown = sorted(set(sites) - set(ALL_SITES))
    if unknown:
        parser.error(f"unknown site(s) {unknown}; known: {ALL_SITES}")
    if not (SHARED_DATA / LANDSAT).is_dir() or not (SHARED_DATA / "oscd").is_dir():
        print(f"shared data not found under {SHARED_DATA}", file=sys.stderr)
        return 2
    load = _loader(args.reader)
    print(f"reader: {'rsmon.io.optical' if load is load_site_rsmon else 'private loader'}")
    print()
    rows = run(sites, ChangeParams(), args.chunk, load)
    print(table(rows))
    print()
    for r in rows:
        classes = ", ".join(f"{c}:{n}" for c, n in enumerate(r["classes"]) if c and n)
        print(f"- {r['site']}: threshold {r['threshold']:.3f}, {r['seconds']:.1f} s, change pixels by class {classes}")
    if args.ablation:
        print()
        print(ablation(sites, args.chunk, load))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
