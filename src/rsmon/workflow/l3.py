"""The L3 job: L2 files -> per-period gridded products (COG or NetCDF) + STAC items.

This is the glue between readers, products and writers that both the CLI (``rsmon l3``) and the
workflow runner call. Files are read in parallel (threads) into compact pixel sets holding only the
valid pixels near the grid; each period's grid is then a lazy dask array computed block by block by
the writer (the numba kernel releases the GIL, so blocks run in parallel). Memory is bounded by the
pixel sets plus the blocks in flight, whatever the grid size.
"""

from __future__ import annotations

import ctypes
import logging
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from rsmon.errors import InputError
from rsmon.grid import LonLatGrid
from rsmon.io.atomic import check_output_dir
from rsmon.products import no2

log = logging.getLogger(__name__)

FORMATS = {"tif": ".tif", "nc": ".nc"}
COLLECTION_IDS = {"no2": "rsmon-no2-l3"}


@dataclass
class L3Result:
    """What an L3 run wrote."""

    outputs: list[Path] = field(default_factory=list)
    items: list[Path] = field(default_factory=list)
    periods: list[str] = field(default_factory=list)


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given; folders expand to the ``*.nc``/``*.nc4`` files they hold (sorted)."""
    paths: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix in (".nc", ".nc4") and q.is_file())
            if not found:
                raise InputError(f"INPUT {p}: folder holds no .nc/.nc4 file")
            paths.extend(found)
        else:
            paths.append(p)
    if not paths:
        raise InputError("INPUT: no input file given")
    return paths


def output_name(product: str, period: str, label: str, grid: LonLatGrid, fmt: str) -> str:
    """File name of one period's output, e.g. ``rsmon_no2_l3_day_2019-06-12_0.05deg.tif``."""
    res = f"{grid.res:g}deg"
    return f"rsmon_{product}_l3_{period}_{label}_{res}{FORMATS[fmt]}"


def run_l3(
    inputs: Sequence[str | os.PathLike],
    grid: LonLatGrid,
    out_dir: str | os.PathLike,
    params: no2.NO2Params = no2.NO2Params(),
    *,
    product: str = "no2",
    fmt: str = "tif",
    catalog_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    checksums: bool = True,
    progress: Callable[[str], None] | None = None,
) -> L3Result:
    """Grid L2 swaths to one output per period.

    Raises
    ------
    InputError
        Bad parameter (format, product).
    FormatError, NoDataError
        An input cannot be read, or no valid pixel reaches the grid.
    OutputError
        The output folder cannot be written.
    """
    # Imports here keep `rsmon --help` fast.
    from rsmon.catalog import write_product_item
    from rsmon.io.cog import write_cog
    from rsmon.io.netcdf import write_netcdf
    from rsmon.io.s5p import open_s5p
    from rsmon.provenance import InputRef, Provenance, sha256_file
    from rsmon.workflow.repeats import remeasured_scanlines, without_remeasured

    if product not in COLLECTION_IDS:
        raise InputError(f"--product: expected one of {', '.join(COLLECTION_IDS)}, got {product!r}")
    if fmt not in FORMATS:
        raise InputError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    paths = expand_inputs(inputs)
    out_dir = check_output_dir(out_dir)
    catalog_dir = None if catalog_dir is None else check_output_dir(catalog_dir)  # fail before writing
    workers = workers or min(2, os.cpu_count() or 1)

    # Open every input first: a bad file fails the run before any output is written.
    datasets = {}
    for p in paths:
        ds = open_s5p(p, product="NO2")
        # keyed like the pixel sets' ``source``, so provenance finds its dataset again
        datasets[str(ds.attrs.get("source_path", p))] = ds

    # an orbit part held by two processings (a near-real-time granule past the end of the offline
    # orbit there) counts once: the older processing's copy of those scanlines is left out
    again = remeasured_scanlines(datasets)

    def work(path: str):
        ds = datasets[path]
        try:
            part = without_remeasured(ds, again.get(path))
            return {} if part is None else no2.extract_pixels(part, grid, params)
        finally:
            # the pixel sets hold all that is needed: release the file and its HDF5 chunk caches
            ds.close()

    def digest(path: str):
        return sha256_file(path) if checksums else None

    parts = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashes = {p: pool.submit(digest, p) for p in datasets}
        futures = {pool.submit(work, p): p for p in datasets}
        for done, fut in enumerate(as_completed(futures), 1):
            parts.append(fut.result())
            if progress:
                progress(f"read {done}/{len(futures)}: {Path(futures[fut]).name}")
        digests = {p: h.result() for p, h in hashes.items()}
    _release_freed_memory()
    periods = no2.group_pixels(parts)
    no2.require_data(periods, list(datasets), grid)

    result = L3Result()
    for label in sorted(periods):
        pixelsets = periods[label]
        ds = no2.to_dataset(pixelsets, grid, label, params)
        refs = []
        for src in sorted({ps.source for ps in pixelsets}):
            src_ds = datasets[src]
            refs.append(InputRef(
                path=str(Path(src).resolve()),
                sha256=digests.get(src),
                id=Path(src).name.split(".")[0],
                start=src_ds.attrs.get("time_coverage_start"),
                end=src_ds.attrs.get("time_coverage_end"),
            ))
        left_out = {Path(p).name: int(mask.sum()) for p, mask in again.items()}
        prov = Provenance(inputs=refs, parameters={
            "product": product, **params.to_dict(), "grid": grid.to_dict(), "bbox": list(grid.bounds),
            **({"scanlines_held_by_newer_processing": left_out} if left_out else {}),
        })
        name = output_name(product, params.period, label, grid, fmt)
        path = out_dir / name
        if fmt == "tif":
            write_cog(path, ds, grid, prov)
        else:
            write_netcdf(path, ds, grid, prov)
        result.outputs.append(path)
        result.periods.append(label)
        if catalog_dir is not None:
            item_id = Path(name).stem
            result.items.append(write_product_item(
                catalog_dir, COLLECTION_IDS[product], item_id, {"data": path}, grid, ds, prov,
                title=f"TROPOMI tropospheric NO2 L3, {params.period} {label}",
            ))
        if progress:
            progress(f"wrote {path}")
    return result


def _release_freed_memory() -> None:
    """Hand memory freed by the reading threads back to the OS (glibc keeps per-thread arenas).

    After reading, only the compact pixel sets stay alive, but glibc would keep the decompression
    buffers' pages mapped; ``malloc_trim`` returns them, so the peak during writing stays low.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


__all__ = ["run_l3", "L3Result", "expand_inputs", "output_name"]
