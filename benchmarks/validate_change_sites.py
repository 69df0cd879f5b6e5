"""Validate rsmon change detection and the plain CVA + Otsu baseline on six real reference sites.

Sites (../shared/data, see the SOURCE.txt files there): Landsat Taizhou (ETM+, 2000/2003) and
Nanjing (TM, 2000/2002) with change.bmp/unchanged.bmp masks; OSCD Sentinel-2 L1C cities beihai,
hongkong, mumbai, rennes with <city>-cm.tif labels. One parameter set (ChangeParams defaults) for
every site. Prints a markdown table (and, with --ablation, the F1 of design variants).

    .venv/bin/python benchmarks/validate_change_sites.py [--ablation] [--sites taizhou,nanjing,...]
    .venv/bin/python benchmarks/validate_change_sites.py --fit-sample PAIR_DIR [--budgets 4e6,16e6]

``--fit-sample`` compares, on a large pair (``PAIR_DIR/before``, ``PAIR_DIR/after``, e.g. the
simulated tile of ``rsmon sim s2``), the fit on a subset of blocks (``ChangeParams.fit_sample_px``)
with the whole-scene fit (streamed over every block, two passes), and the raw change codes both
give on an independent set of blocks.

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


def open_site(name: str, chunk: int = 512):
    """The before and after scenes of a site as ``rsmon.io.optical.open_optical`` reads them
    (each on its own grid)."""
    from rsmon.io.optical import open_optical

    if name in SITES:
        b_path, _, a_path, _, _ = SITES[name]
        folder = SHARED_DATA / LANDSAT
        return open_optical(folder / b_path, chunks=chunk), open_optical(folder / a_path, chunks=chunk)
    folder = SHARED_DATA / "oscd" / name
    return open_optical(folder / "imgs_1", chunks=chunk), open_optical(folder / "imgs_2", chunks=chunk)


def load_site_rsmon(name: str, chunk: int = 512, coregister: bool = True):
    """As :func:`load_site`, with ``rsmon.io.optical.open_optical`` and ``align_pair``.

    The reference masks lie on the before (imgs_1) grid, so the after scene is put on the before
    grid (``align_pair(after, before)``) and the change is computed there. With ``coregister``
    (as ``rsmon redline detect`` does by default) the after scene is co-registered to the before
    scene (``rsmon.products.coregister.align_coregistered``); its measured shift is the after
    scene's ``coregistration`` attribute.
    """
    from rsmon.io.optical_align import align_pair
    from rsmon.products.coregister import align_coregistered

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before, after = open_site(name, chunk)
        if name in SITES:
            b_path, _, _, _, sensor = SITES[name]
            reference = read_reference_mask(SHARED_DATA / LANDSAT / Path(b_path).parent)
        else:
            reference = read_reference_mask(SHARED_DATA / "oscd" / name / "cm" / f"{name}-cm.tif")
            sensor = "Sentinel-2 L1C"
        if coregister:
            after, shift = align_coregistered(after, before, roles=("after", "before"))
            after.attrs["coregistration"] = shift.as_dict()
        else:
            after = align_pair(after, before)[0]
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
        # the plain baseline on the scenes as aligned, without rsmon's co-registration
        plain = load(name, chunk, coregister=False)[:2] if load is load_site_rsmon else (before, after)
        base = change_scores(cva_otsu_baseline(*plain).values, reference)
        ours = detect_change(before, after, params)
        change = ours["change"].values
        scores = change_scores(change, reference)
        rows.append({"site": name, "sensor": sensor, "dates": dates, "baseline": base, "rsmon": scores,
                     "coregistration": after.attrs.get("coregistration"),
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
    "fit on 250k px of blocks": {"fit_sample_px": 250_000},
}
#: the index rule combined with the (default) CVA change instead of only classifying it
RULE_COMBINATIONS = ("CVA or rule", "CVA and rule")


def ablation(sites, chunk: int, load=load_site) -> str:
    """F1 of design variants, one column each (the rule combinations are not MMU-cleaned again)."""
    cols = list(ABLATIONS) + ["no co-registration"] + list(RULE_COMBINATIONS)
    lines = ["| site | baseline | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for name in sites:
        before, after, reference, *_ = load(name, chunk)
        before, after = before.compute().chunk(chunk), after.compute().chunk(chunk)  # blocks for the fit
        cells = [_fmt(change_scores(cva_otsu_baseline(before, after).values, reference).f1)]
        for changes in ABLATIONS.values():
            ds = detect_change(before, after, dataclasses.replace(ChangeParams(), **changes))
            cells.append(_fmt(change_scores(ds["change"].values, reference).f1))
        if load is load_site_rsmon:  # the defaults on the scenes as aligned without co-registration
            plain_before, plain_after, *_ = load(name, chunk, coregister=False)
            cells.append(_fmt(change_scores(detect_change(plain_before, plain_after)["change"].values, reference).f1))
        else:
            cells.append("-")
        ds = detect_change(before, after).compute()
        change, rule, valid = ds["change"].values == 1, ds["rule"].values, ds["valid"].values
        for combined in (change | rule, change & rule):
            codes = np.where(valid, combined.astype(np.uint8), np.uint8(255))
            cells.append(_fmt(change_scores(codes, reference).f1))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _whole_scene_fit(inputs, params):
    """The fit of ``rsmon.products.change_numpy.fit_whole_scene`` streamed block row by block row:
    strided sample of the whole scene, then the histogram of every valid land pixel."""
    import math

    from rsmon.products.change_fit import read_blocks
    from rsmon.products.change_numpy import threshold_attrs
    from rsmon.products.change_threshold import fit_normalisation, masked_histogram

    p = params
    height, width = inputs.shape
    rows0, cols0 = inputs.block_starts
    n_rows, n_cols = len(inputs.chunks[0]), len(inputs.chunks[1])
    step = max(1, int(math.floor(math.sqrt(height * width / p.normalisation_sample_px))))
    keys, sb, sa, land = [], [], [], []
    for i in range(n_rows):
        for j, block in enumerate(read_blocks(inputs, [(i, j) for j in range(n_cols)])):
            valid, on_land = block.masks()
            r0, c0 = int(rows0[i]), int(cols0[j])
            rs, cs = slice((-r0) % step, None, step), slice((-c0) % step, None, step)
            ok = valid[rs, cs]
            rr, cc = np.nonzero(ok)
            keys.append((rr * step + r0 + (-r0) % step) * width + cc * step + c0 + (-c0) % step)
            sb.append(np.stack([band[rs, cs][ok] for band in block.before]))
            sa.append(np.stack([band[rs, cs][ok] for band in block.after]))
            land.append(on_land[rs, cs][ok])
    order = np.argsort(np.concatenate(keys), kind="stable")
    sb = np.concatenate(sb, axis=1)[:, order].astype(np.float64)
    sa = np.concatenate(sa, axis=1)[:, order].astype(np.float64)
    land = np.concatenate(land)[order]
    norm = fit_normalisation(sb, sa, p, scale_mask=land)
    gains, offsets, scales = (np.asarray(v) for v in (norm.gains, norm.offsets, norm.diff_scales))
    sample_mag = np.sqrt((((sa[:, land] - (gains[:, None] * sb[:, land] + offsets[:, None])) / scales[:, None]) ** 2)
                         .sum(axis=0))
    upper = float(np.quantile(sample_mag, p.histogram_quantile))
    counts = np.zeros(p.histogram_bins, np.int64)
    for i in range(n_rows):
        for block in read_blocks(inputs, [(i, j) for j in range(n_cols)]):
            valid, on_land = block.masks()
            values = block.magnitudes(norm, valid & on_land)
            part, edges = masked_histogram(values, np.ones(values.shape, bool), p.histogram_bins, upper)
            counts += part
    return norm, threshold_attrs(counts, edges, norm, p, True)["threshold"], upper / p.histogram_bins


def fit_sample_check(folder: Path, budgets) -> str:
    """Markdown table: block-subset fits against the whole-scene fit on a large pair."""
    import rasterio

    from rsmon.io.optical import align_pair, open_optical
    from rsmon.products.change_fit import fit_change, read_blocks
    from rsmon.products.change_pixels import pair_inputs

    after = open_optical(folder / "after")
    before = align_pair(open_optical(folder / "before"), after)[0]
    params = ChangeParams()
    inputs = pair_inputs(before, after, params, after.attrs.get("radiometry", "reflectance"))
    n_rows, n_cols = len(inputs.chunks[0]), len(inputs.chunks[1])
    with rasterio.Env(GDAL_CACHEMAX=128 << 20):
        t0 = time.perf_counter()
        norm, thr, bin_width = _whole_scene_fit(inputs, params)
        seconds = time.perf_counter() - t0
        # evaluation blocks: every third block, off the fit grids' centres
        evaluation = read_blocks(inputs, [(i, j) for i in range(1, n_rows, 3) for j in range(2, n_cols, 3)])
        reference = [block.codes(norm, thr) for block in evaluation]
        n_valid = sum(int((c != 255).sum()) for c in reference)
        n_change = sum(int((c == 1).sum()) for c in reference)
        lines = [f"whole-scene fit: threshold {thr:.3f} (histogram bin {bin_width:.4f}), {seconds:.0f} s; "
                 f"evaluated on {len(evaluation)} blocks, {n_valid:,} valid and {n_change:,} change pixels", "",
                 "| fit_sample_px | fit blocks (pixels) | fit s | threshold (bins from whole) | max band-scale "
                 "difference | max gain difference | change pixels vs whole | pixels that differ (% of change) |",
                 "|" + "---|" * 8]
        for budget in budgets:
            t0 = time.perf_counter()
            fit = fit_change(inputs, dataclasses.replace(params, fit_sample_px=int(budget)))
            seconds = time.perf_counter() - t0
            codes = [block.codes(fit.normalisation, fit.threshold) for block in evaluation]
            differ = sum(int(((c == 1) != (r == 1)).sum()) for c, r in zip(codes, reference))
            n = sum(int((c == 1).sum()) for c in codes)
            scale = np.max(np.abs(np.array(fit.normalisation.diff_scales) / np.array(norm.diff_scales) - 1))
            gain = np.max(np.abs(np.array(fit.normalisation.gains) / np.array(norm.gains) - 1))
            lines.append(f"| {int(budget):,} | {fit.n_fit_blocks} ({fit.n_fit_px:,}) | {seconds:.1f} | "
                         f"{fit.threshold:.3f} ({(fit.threshold - thr) / bin_width:+.1f}) | {scale:.1%} | {gain:.1%} | "
                         f"{n / n_change - 1:+.2%} | {differ:,} ({differ / n_change:.2%}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default=",".join(ALL_SITES))
    parser.add_argument("--chunk", type=int, default=256, help="dask chunk size in pixels (default 256)")
    parser.add_argument("--ablation", action="store_true", help="also print F1 of design variants")
    parser.add_argument("--reader", choices=("auto", "rsmon", "private"), default="auto",
                        help="rsmon.io.optical (auto: when installed) or this script's private loader")
    parser.add_argument("--fit-sample", type=Path, default=None, metavar="PAIR_DIR",
                        help="instead: compare block-subset fits with the whole-scene fit on PAIR_DIR/{before,after}")
    parser.add_argument("--budgets", default="2e6,4e6,6.5e6,10e6,16e6",
                        help="fit_sample_px values for --fit-sample (default 2e6,4e6,6.5e6,10e6,16e6)")
    args = parser.parse_args(argv)
    if args.fit_sample is not None:
        print(fit_sample_check(args.fit_sample, [float(b) for b in args.budgets.split(",")]))
        return 0
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
        reg = r["coregistration"]
        reg = (f"; co-registration dy {reg['dy']:+.2f} dx {reg['dx']:+.2f} px ({reg['reason']})" if reg else "")
        print(f"- {r['site']}: threshold {r['threshold']:.3f}, {r['seconds']:.1f} s, change pixels by class {classes}"
              f"{reg}")
    if args.ablation:
        print()
        print(ablation(sites, args.chunk, load))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
