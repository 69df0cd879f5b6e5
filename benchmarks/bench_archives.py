#!/usr/bin/env python
"""Benchmark: the Sentinel-2 tile pair read in place from ``.SAFE.zip`` archives (issue 5 readers).

Input: the simulated full tile pair of ``benchmarks/bench_change_tile.py`` (``<data>/s2tile``,
10980 x 10980, DEFLATE GeoTIFF bands), packed once as Copernicus Data Space packs products: the
``.SAFE`` folder in a zip whose band files are stored, not deflated (``<data>/s2tile_zip``); and once
with deflated members (``<data>/s2tile_zipdeflate``), the case GDAL must inflate.

Cases, each a one-off ``rsmon -v redline detect ... --no-quicklooks --no-checksums`` under GNU time,
alternating, best of ``--repeat``:

``folder``        the unpacked folders (what rsmon read before archives were supported);
``zip``           the two ``.SAFE.zip`` (stored members: the direct tile reader at their offsets);
``unzip+folder``  the peer, what a centre does without in-place reading: ``unzip -q`` of both
                  archives (Info-ZIP; Python's zipfile when ``unzip`` is absent) into a scratch
                  folder, then the folder run; wall is the sum, peak the larger;
``zip-deflated``  deflated members, inflated by GDAL's ``/vsizip/`` (no direct tile reads);
``jp2-folder`` / ``jp2-zip``  (``--jp2``) the pair as ESA writes its bands (lossless JPEG 2000,
                  ``bench_change_tile.py``'s ``s2tile_jp2`` copy), unpacked and as stored
                  ``.SAFE.zip``, once each: what a Copernicus Data Space download holds.

The rasters of every case are compared with the folder run's (they must be equal).

Usage::

    .venv/bin/python benchmarks/bench_archives.py [--data benchmarks/data] [--repeat 2] [--jp2]

Needs GNU time (Debian package ``time``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_change_tile import RSMON, _stages, recompressed, tile, timed  # noqa: E402

NAMES = {"before": "S2A_MSIL2A_20230501T030551_N0509_R075_T50SMF_20230501T061234.SAFE",
         "after": "S2A_MSIL2A_20230601T030551_N0509_R075_T50SMF_20230601T061234.SAFE"}


def packed(src: Path, deflate: bool) -> Path:
    """The pair as two ``<SAFE name>.zip`` files, once."""
    dst = src.parent / f"{src.name}_{'zipdeflate' if deflate else 'zip'}"
    done = dst / ".complete"
    if done.is_file():
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    for role, name in NAMES.items():
        method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        with zipfile.ZipFile(dst / f"{name}.zip", "w", method, allowZip64=True) as zf:
            zf.writestr(f"{name}/", "")
            for f in sorted((src / role).iterdir()):
                zf.write(f, f"{name}/{f.name}")
    done.touch()
    return dst


def run(before: Path, after: Path, out: Path) -> dict:
    result = timed([RSMON, "-v", "redline", "detect", "--before", str(before), "--after", str(after), "-o", str(out),
                    "--no-quicklooks", "--no-checksums"])
    result["stages"] = _stages(result["stderr"])
    return result


def unzip(archive: Path, into: Path) -> dict:
    into.mkdir(parents=True, exist_ok=True)
    if shutil.which("unzip"):
        return timed(["unzip", "-q", str(archive), "-d", str(into)])
    return timed([sys.executable, "-m", "zipfile", "-e", str(archive), str(into)])


def same_rasters(a: Path, b: Path) -> bool:
    import rasterio

    for name in ("change.tif", "change_class.tif", "confidence.tif"):
        with rasterio.open(a / name) as x, rasterio.open(b / name) as y:
            if not np.array_equal(x.read(1), y.read(1)):
                return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent / "data")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--jp2", action="store_true", help="also the JPEG 2000 copy, unpacked and zipped (slow)")
    args = parser.parse_args()
    folder = tile(args.data)
    stored, deflated = packed(folder, deflate=False), packed(folder, deflate=True)
    sizes = {"folder": sum(f.stat().st_size for r in NAMES for f in (folder / r).iterdir()),
             "zip": sum(f.stat().st_size for f in stored.glob("*.zip")),
             "zip-deflated": sum(f.stat().st_size for f in deflated.glob("*.zip"))}
    zips = {role: stored / f"{name}.zip" for role, name in NAMES.items()}
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=args.data) as tmp:
        tmp = Path(tmp)
        reference = tmp / "reference"
        run(folder / "before", folder / "after", reference)
        for i in range(args.repeat):
            cases = {
                "folder": lambda out: run(folder / "before", folder / "after", out),
                "zip": lambda out: run(zips["before"], zips["after"], out),
                "zip-deflated": lambda out: run(deflated / zips["before"].name, deflated / zips["after"].name, out),
            }
            for case, call in cases.items():
                out = tmp / f"{case}-{i}"
                result = call(out)
                result["equal"] = same_rasters(reference, out)
                shutil.rmtree(out)
                if case not in best or result["wall"] < best[case]["wall"]:
                    best[case] = result
            unpacked = tmp / f"unpacked-{i}"
            steps = [unzip(zips[role], unpacked / role) for role in NAMES]
            out = tmp / f"peer-{i}"
            result = run(unpacked / "before" / NAMES["before"], unpacked / "after" / NAMES["after"], out)
            result["equal"] = same_rasters(reference, out)
            result["unzip"] = sum(s["wall"] for s in steps)
            result["wall"] += result["unzip"]
            result["peak_mb"] = max([result["peak_mb"]] + [s["peak_mb"] for s in steps])
            shutil.rmtree(out)
            shutil.rmtree(unpacked)
            if "unzip+folder" not in best or result["wall"] < best["unzip+folder"]["wall"]:
                best["unzip+folder"] = result
        if args.jp2:
            jp2 = recompressed(folder, "jp2")
            jp2_zips = packed(jp2, deflate=False)
            best["jp2-folder"] = run(jp2 / "before", jp2 / "after", tmp / "jp2-folder")
            best["jp2-zip"] = run(jp2_zips / zips["before"].name, jp2_zips / zips["after"].name, tmp / "jp2-zip")
            for case in ("jp2-folder", "jp2-zip"):
                best[case]["equal"] = same_rasters(tmp / "jp2-folder", tmp / case)
    print(f"input: {folder} ({sizes['folder'] / 1e9:.2f} GB unpacked; stored zips {sizes['zip'] / 1e9:.2f} GB, "
          f"deflated zips {sizes['zip-deflated'] / 1e9:.2f} GB); best of {args.repeat}\n")
    print("| case | wall s | user s | sys s | peak MB | / folder (same bands) | rasters equal | stages (s) |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for case in ("folder", "zip", "unzip+folder", "zip-deflated", "jp2-folder", "jp2-zip"):
        if case not in best:
            continue
        r = best[case]
        base = best["jp2-folder"]["wall"] if case.startswith("jp2") else best["folder"]["wall"]
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
        if case == "unzip+folder":
            stages = f"unzip {r['unzip']:.2f}; " + stages
        print(f"| {case} | {r['wall']:.2f} | {r['user']:.2f} | {r['sys']:.2f} | {r['peak_mb']:.0f} | "
              f"{r['wall'] / base:.2f} | {'yes' if r['equal'] else 'NO'} | {stages} |")
    return 0 if all(r["equal"] for r in best.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
