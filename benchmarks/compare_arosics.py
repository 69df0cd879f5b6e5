#!/usr/bin/env python
"""Co-registration against the peer: rsmon's global shift against AROSICS' (Scheffler et al. 2017).

For every real validation site of ``validate_change_sites.py`` (Landsat Taizhou and Nanjing, OSCD
Beihai, Hong Kong, Mumbai, Rennes) and for planted shifts of real scenes (the before scene moved by
a known sub-pixel amount against itself, so the truth is known), the shift of the after scene
against the before scene is measured by

- rsmon: :func:`rsmon.products.coregister.estimate_shift` on the after scene put on the before
  grid (what ``rsmon redline detect`` runs, NIR and red, up to 18 windows, median);
- AROSICS: ``arosics.COREG`` (global co-registration: one matching window, default 256 px, in the
  NIR band; ``max_shift=5``) on the NIR bands written as GeoTIFF with the scenes' own georeference.

Both report the move that puts the after scene's content onto the before scene, in before pixels
(rows down, columns right; AROSICS' ``y_shift_px``, ``x_shift_px``, checked against the planted
shifts). AROSICS needs GDAL's Python bindings, which rsmon does not: it runs in its own
environment, given by ``--arosics-python`` (e.g. a venv with ``GDAL==<libgdal version>`` built
against Debian's ``libgdal-dev``, ``arosics==1.9.2 geoarray==0.15.11 py_tools_ds==0.21.1`` for
GDAL 3.6). Prints a Markdown table.

    .venv/bin/python benchmarks/compare_arosics.py --arosics-python /tmp/arovenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from validate_change_sites import ALL_SITES, open_site  # noqa: E402

#: Planted moves of a real before scene against itself: (site, dy, dx), the content put dy rows
#: down and dx columns right, so the shift to find is (-dy, -dx).
PLANTED = (("rennes", 0.3, 0.4), ("rennes", -0.6, 0.25), ("beihai", 0.5, -0.7), ("mumbai", -0.35, -0.45))

_AROSICS = """
import json, sys, warnings
warnings.simplefilter("ignore")
from arosics import COREG
ref, tgt, ws = sys.argv[1], sys.argv[2], int(sys.argv[3])
cr = COREG(ref, tgt, ws=(ws, ws), max_shift=5, q=True, nodata=(-9999.0, -9999.0), ignore_errors=True)
cr.calculate_spatial_shifts()
print(json.dumps({"x": cr.x_shift_px, "y": cr.y_shift_px, "success": bool(cr.success)}, default=str))
"""


def _write_nir(ds, path: Path) -> Path:
    import rasterio

    nir = np.asarray(ds["nir"].values, dtype=np.float32)
    nir = np.where(np.isfinite(nir), nir, np.float32(-9999.0))
    crs = ds.rio.crs or "EPSG:4326"  # AROSICS needs one; both scenes share pixel space then
    profile = dict(driver="GTiff", width=nir.shape[1], height=nir.shape[0], count=1, dtype="float32",
                   crs=crs, transform=ds.rio.transform(), nodata=-9999.0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(nir, 1)
    return path


def _arosics(python: str, ref: Path, tgt: Path, ws: int) -> dict:
    proc = subprocess.run([python, "-c", _AROSICS, str(ref), str(tgt), str(ws)], capture_output=True, text=True,
                          check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    out = json.loads(lines[-1])
    if not out.get("success") or out.get("x") in (None, "None"):
        return {"error": "no reliable match"}
    return {"dy": float(out["y"]), "dx": float(out["x"])}


def _case(name: str, before, after, python: str, tmp: Path, ws: int, truth=None) -> dict:
    from rsmon.io.optical_align import align_pair
    from rsmon.products.coregister import estimate_shift

    ours = estimate_shift(align_pair(after, before, roles=("after", "before"))[0], before)
    slug = "".join(c if c.isalnum() else "_" for c in name)  # GDAL (AROSICS) refuses spaces in paths
    ref = _write_nir(before, tmp / f"{slug}-ref.tif")
    tgt = _write_nir(after, tmp / f"{slug}-tgt.tif")
    side = min(ws, before.sizes["y"], before.sizes["x"], after.sizes["y"], after.sizes["x"])
    side -= side % 2
    peer = _arosics(python, ref, tgt, side)
    return {"case": name, "truth": truth, "ours": ours, "peer": peer, "ws": side}


def _fmt(dy, dx) -> str:
    return f"{dy:+.2f}, {dx:+.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arosics-python", required=True, help="a Python with arosics and GDAL's bindings")
    parser.add_argument("--ws", type=int, default=256, help="AROSICS matching window (px; capped at the scene)")
    args = parser.parse_args(argv)
    from rsmon.io.optical_align import dataset_grid, shifted_georeference

    rows = []
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        for site in ALL_SITES:
            before, after = open_site(site)
            rows.append(_case(site, before, after, args.arosics_python, Path(tmp), args.ws))
            print(f"{site} done", file=sys.stderr, flush=True)
        for site, dy, dx in PLANTED:
            before, _ = open_site(site)
            moved = shifted_georeference(before, dy, dx, dataset_grid(before))
            rows.append(_case(f"{site} moved ({_fmt(dy, dx)})", before, moved, args.arosics_python, Path(tmp),
                              args.ws, truth=(-dy, -dx)))
            print(f"{site} planted done", file=sys.stderr, flush=True)
    print("| case | truth (dy, dx px) | rsmon (dy, dx px) | rsmon estimates agreeing | rsmon applies | "
          "AROSICS (dy, dx px) | AROSICS window | rsmon - AROSICS (px) | error rsmon / AROSICS (px) |")
    print("|---|---|---|---|---|---|---:|---|---|")
    for r in rows:
        ours, peer, truth = r["ours"], r["peer"], r["truth"]
        peer_txt = _fmt(peer["dy"], peer["dx"]) if "dy" in peer else peer["error"]
        diff = (f"{np.hypot(ours.dy - peer['dy'], ours.dx - peer['dx']):.2f}" if "dy" in peer and ours.estimates
                else "-")
        err = "-"
        if truth is not None:
            e_ours = np.hypot(ours.dy - truth[0], ours.dx - truth[1])
            e_peer = np.hypot(peer["dy"] - truth[0], peer["dx"] - truth[1]) if "dy" in peer else float("nan")
            err = f"{e_ours:.2f} / {e_peer:.2f}"
        print(f"| {r['case']} | {_fmt(*truth) if truth else '-'} | {_fmt(ours.dy, ours.dx)} | "
              f"{ours.agreeing} of {len(ours.estimates)} | {'yes' if ours.applied else 'no'} | {peer_txt} | "
              f"{r['ws']} | {diff} | {err} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
