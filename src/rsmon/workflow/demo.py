"""``make demo``: simulate one day of TROPOMI NO2 over eastern China and run the L3 product on it."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Callable

from rsmon.grid import LonLatGrid
from rsmon.products.no2 import MAIN_VARIABLE, NO2Params
from rsmon.workflow.l3 import run_l3

#: Eastern China: Beijing to Guangzhou, Chongqing to Shanghai.
DEMO_BBOX = (105.0, 20.0, 125.0, 42.0)
DEMO_RES = 0.05
DEMO_DAY = date(2019, 6, 12)  # the date of the bundled CNEMC station data
SEEDS = Path(__file__).resolve().parents[3] / "seeds"


def run_demo(out: str | Path, seed: int = 20190612, say: Callable[[str], None] = print) -> dict[str, Path]:
    """Simulate, grid (COG + NetCDF + STAC), map; return the paths written."""
    from rsmon.io.maps import read_outlines, write_map_png
    from rsmon.sim.s5p import simulate_day

    t0 = time.perf_counter()
    out = Path(out).resolve()
    l2_dir = out / "l2"
    l3_dir = out / "l3"
    catalog = out / "catalogs"
    say(f"simulating TROPOMI L2 NO2 orbits over eastern China for {DEMO_DAY} ...")
    files = simulate_day(l2_dir, DEMO_DAY, seed=seed, bbox=DEMO_BBOX)
    say(f"  {len(files)} L2 files in {l2_dir} ({time.perf_counter() - t0:.1f} s)")

    grid = LonLatGrid.from_bbox(DEMO_BBOX, DEMO_RES)
    params = NO2Params(period="day")
    t1 = time.perf_counter()
    tif = run_l3(files, grid, l3_dir, params, fmt="tif", catalog_dir=catalog)
    nc = run_l3(files, grid, l3_dir, params, fmt="nc", catalog_dir=catalog)
    say(f"gridded to {grid.width}x{grid.height} cells at {DEMO_RES} deg ({time.perf_counter() - t1:.1f} s)")

    import xarray as xr

    written: dict[str, Path] = {"l2": l2_dir, "catalog": catalog / "catalog.json"}
    for path in tif.outputs:
        written[f"cog {path.stem}"] = path
    for path in nc.outputs:
        written[f"netcdf {path.stem}"] = path
    outlines_path = SEEDS / "china-admin" / "100000_full.json"
    outlines = read_outlines(outlines_path) if outlines_path.exists() else None
    for path in nc.outputs:
        with xr.open_dataset(path) as ds:
            ds = ds.squeeze("time", drop=True) if "time" in ds.dims else ds
            png = path.with_suffix(".png")
            write_map_png(png, ds.load(), grid, MAIN_VARIABLE, outlines=outlines, scale=1e6,
                          units_label="tropospheric NO2 column (umol m-2)",
                          title=f"rsmon TROPOMI tropospheric NO2 (simulated), {ds.attrs.get('period_label', '')}, "
                                f"qa > {params.qa_min}")
            written[f"map {png.stem}"] = png
    say("")
    say(f"demo done in {time.perf_counter() - t0:.1f} s. Outputs:")
    for what, path in written.items():
        say(f"  {what:<45} {path}")
    return written
