"""Reference gridding with HARP (``harpconvert``), for acceptance tests and benchmarks.

:func:`run_harp_bin` grids S5P L2 NO2 files with HARP's area-weighted ``bin_spatial`` (stcorp/harp
``doc/algorithms/regridding.rst``; ``shared/reference/atmos.md`` section 2.1), one ``harpconvert`` run
per file, and combines the per-file grids with HARP's own weights: since each cell's ``weight`` is the
sum of the pixel overlap fractions, ``sum_f(mean_f * weight_f) / sum_f(weight_f)`` is exactly the
mean a single ``bin_spatial`` over all pixels would give.

The grid is the one :class:`rsmon.grid.LonLatGrid` builds for the same bbox and resolution (edges
from ``west``/``south`` in steps of ``res``; the last cell may reach past ``east``/``north``); the
result is north-up (row 0 northernmost) like rsmon's products.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np

from rsmon.errors import InputError, RsmonError
from rsmon.grid import LonLatGrid

log = logging.getLogger(__name__)

__all__ = ["HarpError", "harp_bin_operations", "harpconvert_path", "run_harp_bin"]

#: HARP variable of the tropospheric NO2 column (S5P_L2_NO2 ingestion), mol m-2.
HARP_NO2 = "tropospheric_NO2_column_number_density"


class HarpError(RsmonError, RuntimeError):
    """``harpconvert`` is missing or failed."""


def harpconvert_path() -> str | None:
    """Path of ``harpconvert`` (Debian package ``harp``), or None."""
    return shutil.which("harpconvert")


def _grid_edges(bbox: Sequence[float], res: float) -> tuple[int, float, int, float]:
    """``(height, south, width, west)`` of the :class:`rsmon.grid.LonLatGrid` for ``bbox`` and ``res``."""
    grid = LonLatGrid.from_bbox(bbox, res)
    return grid.height, grid.south, grid.width, grid.west


def harp_bin_operations(bbox: Sequence[float], res: float, qa: int = 75) -> str:
    """The ``harpconvert -a`` operations: qa filter, keep what binning needs, area-weighted binning.

    ``qa`` is compared as HARP does, on the integer ``*_validity`` = 100 x ``qa_value``, with ``>``:
    ``qa=75`` keeps ``qa_value > 0.75`` (the recommended NO2 filter), i.e. rejects the 0.74 of cloudy
    scenes.
    """
    height, south, width, west = _grid_edges(bbox, res)
    return (f"{HARP_NO2}_validity>{int(qa)};"
            f"keep(latitude_bounds,longitude_bounds,{HARP_NO2});"
            f"bin_spatial({height + 1},{south!r},{float(res)!r},{width + 1},{west!r},{float(res)!r})")


def _run_one(src: Path, dst: Path, operations: str, timeout: float) -> bool:
    """Run harpconvert; False when every pixel was filtered out (HARP: exit 2, "product is empty")."""
    exe = harpconvert_path()
    if exe is None:
        raise HarpError("harpconvert not found (apt-get install harp)")
    cmd = [exe, "-a", operations, str(src), str(dst)]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    message = (proc.stderr or proc.stdout).strip()
    if proc.returncode == 2 and "product is empty" in message:
        log.info("%s: no pixel left after %s", src.name, operations)
        return False
    if proc.returncode != 0:
        raise HarpError(f"harpconvert failed on {src.name} (exit {proc.returncode}): {message[-2000:]}")
    return True


def run_harp_bin(files: Sequence[str | Path], bbox: Sequence[float], res: float, out_path: str | Path,
                 qa: int = 75, *, timeout: float = 600.0):
    """Grid S5P L2 NO2 files with ``harpconvert`` (qa filter + ``bin_spatial``); return a north-up grid.

    Parameters
    ----------
    files : sequence of path
        S5P L2 NO2 files (real or :mod:`rsmon.sim.s5p`).
    bbox : (W, S, E, N)
        Degrees.
    res : float
        Cell size, degrees.
    out_path : path
        NetCDF file for the combined grid; the per-file HARP outputs are written beside it as
        ``<stem>.<i>.harp.nc``.
    qa : int
        Keep pixels with ``tropospheric_NO2_column_number_density_validity > qa`` (qa_value x 100).

    Returns
    -------
    xarray.Dataset
        ``tropospheric_NO2_column_number_density`` (mol m-2; NaN where no pixel contributes) and
        ``weight`` (sum of the pixel-overlap fractions of the cell, as HARP defines it), dimensions
        ``(lat, lon)``; ``lat`` descending (north-up), ``lon`` ascending, both cell centres. Attributes
        record bbox, res, qa and the HARP operations.

    Raises
    ------
    HarpError
        ``harpconvert`` is missing or fails.
    InputError
        Bad bbox, resolution or empty file list.
    """
    import netCDF4
    import xarray as xr

    files = [Path(f) for f in files]
    if not files:
        raise InputError("files: no input files")
    height, south, width, west = _grid_edges(bbox, res)
    operations = harp_bin_operations(bbox, res, qa)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    weighted = np.zeros((height, width))
    weight = np.zeros((height, width))
    for i, src in enumerate(files):
        dst = out_path.with_name(f"{out_path.stem}.{i}.harp.nc")
        if not _run_one(src, dst, operations, timeout):
            continue
        with netCDF4.Dataset(dst) as ds:
            if HARP_NO2 not in ds.variables:  # every pixel filtered out: HARP writes an empty product
                continue
            mean = np.ma.filled(ds[HARP_NO2][0].astype(np.float64), np.nan)
            w = np.ma.filled(ds["weight"][0].astype(np.float64), 0.0)
            lat_b = np.asarray(ds["latitude_bounds"][:], dtype=np.float64)
        if mean.shape != (height, width):
            raise HarpError(f"{dst.name}: grid {mean.shape}, expected {(height, width)}")
        if lat_b[0, 0] > lat_b[-1, 0]:  # keep south-up internally whatever HARP's order
            mean, w = mean[::-1], w[::-1]
        ok = (w > 0) & np.isfinite(mean)
        weighted[ok] += mean[ok] * w[ok]
        weight[ok] += w[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        combined = np.where(weight > 0, weighted / weight, np.nan)
    lat = south + (np.arange(height) + 0.5) * res
    lon = west + (np.arange(width) + 0.5) * res
    result = xr.Dataset(
        {HARP_NO2: (("lat", "lon"), combined[::-1], {"units": "mol m-2"}),
         "weight": (("lat", "lon"), weight[::-1], {"units": "1",
                                                    "long_name": "sum of pixel overlap fractions (HARP)"})},
        coords={"lat": ("lat", lat[::-1], {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"})},
        attrs={"bbox": [float(v) for v in bbox], "res": float(res), "qa": int(qa), "harp_operations": operations,
               "source_files": ", ".join(f.name for f in files)},
    )
    result.to_netcdf(out_path)
    return result
