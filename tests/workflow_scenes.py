"""Small real-format inputs and workflow files for the workflow tests (tests/test_workflow_*.py).

Simulated TROPOMI L2 orbits cut to a small box (two orbits a day over the Bohai Sea) and a decimated
VIIRS L1B granule: each file takes about a second to write, and the jobs on them a second or two.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date, datetime, time
from pathlib import Path

from rsmon.sim.s5p import orbits_of_day, scanlines_crossing, simulate_orbit
from rsmon.sim.viirs import simulate_granule

ROOT = Path(__file__).resolve().parents[1]
BBOX = (118.0, 36.0, 124.0, 42.0)
DAY = date(2019, 6, 12)


def s5p_day(folder: Path, day: date = DAY, seed: int = 1) -> list[Path]:
    """The TROPOMI NO2 orbits of ``day`` crossing :data:`BBOX`, cut to it (two on 2019-06-12)."""
    files = []
    for orbit in orbits_of_day(day):
        rows = scanlines_crossing(orbit, BBOX)
        if rows:
            files.append(simulate_orbit(folder, orbit, seed=seed, scanline_range=rows))
    return files


def viirs_granule(folder: Path, day: date = DAY, seed: int = 1, n_fires: int = 30):
    """A decimated NOAA-20 day granule (384 x 640) over the North China Plain, with its truth CSV."""
    return simulate_granule(folder, seed=seed, start=datetime.combine(day, time(5, 24)), n_lines=384, n_pixels=640,
                            n_fires=n_fires, center=(117.0, 34.5))


def write_workflow(path: Path, sources: list[Path], *, jobs: tuple[str, ...] = ("no2", "fire"), name: str = "tiny",
                   schedule: str = "", extra_no2: str = "", retry: str = "{attempts: 3, backoff_s: 0.05}",
                   truth_dir: Path | None = None) -> Path:
    """A workflow file with a small NO2 L3 job and/or a fire job (validated against the simulator
    truth in ``truth_dir``, default the last source) on the catalogued ``sources``."""
    truth_dir = truth_dir or sources[-1]
    parts = {
        "no2": f"""
  - id: no2
    product: no2-l3
    inputs:
      l2: {{collection: s5p-l2-no2, bbox: {list(BBOX)}, window: {{start: P0D, end: P1D}}}}
    parameters: {{bbox: {list(BBOX)}, res: 0.1, formats: [tif, nc]{extra_no2}}}
    retry: {retry}
""",
        "fire": f"""
  - id: fire
    product: fire
    inputs:
      granules: {{collection: viirs-l1b-img, window: {{start: P0D, end: P1D}}}}
    parameters: {{map_png: false}}
    validation:
      references: ["{truth_dir}/*.A{{year}}{{doy}}.*.truth.csv"]
    retry: {retry}
""",
    }
    text = f"name: {name}\n{textwrap.dedent(schedule)}sources:\n" + "".join(f"  - {s}\n" for s in sources)
    text += "jobs:" + "".join(parts[j] for j in jobs)
    path.write_text(text, encoding="utf-8")
    return path


def rsmon(*args: str, check: bool = False, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``python -m rsmon.workflow.cli ARGS`` in a subprocess (the workflow commands alone)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RSMON_HOME", None)
    proc = subprocess.run([sys.executable, "-m", "rsmon.workflow.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"rsmon {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def popen(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RSMON_HOME", None)
    return subprocess.Popen([sys.executable, "-m", "rsmon.workflow.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def temp_leftovers(home: Path) -> list[Path]:
    """Temporary or partial files and folders anywhere under ``home`` (none may survive a run)."""
    return sorted(p for p in home.rglob("*") if ".partial" in p.name or ".rsmon-old" in p.name
                  or (p.name.startswith(".rsmon-") and p.name.endswith(".partial")))


def science_values(folder: Path) -> dict[str, bytes]:
    """The science content of a job's outputs: raster pixel bytes, NetCDF variable bytes, CSV rows.

    File bytes would differ between runs by their provenance time stamps, so rasters and NetCDF
    files are compared by their values.
    """
    import numpy as np
    import rasterio
    import xarray as xr

    out: dict[str, bytes] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.suffix == ".tif":
            with rasterio.open(p) as src:
                out[rel] = src.read().tobytes() + repr(src.transform).encode()
        elif p.suffix == ".nc":
            with xr.open_dataset(p) as ds:
                out[rel] = b"".join(np.ascontiguousarray(ds[v].values).tobytes() for v in sorted(ds.data_vars))
        elif p.suffix == ".csv":
            out[rel] = p.read_bytes()
    return out
