"""A small L3 product on a lon/lat grid, in the writers' input contract, for the writer tests.

Cell values encode their own centre (lon * 1000 + lat), so a flipped or shifted grid shows as a wrong
number; every seventh cell is empty (count 0, NaN mean and weight).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from rsmon.grid import LonLatGrid

GRID = LonLatGrid(west=100.0, south=20.0, res=0.05, width=700, height=600)


def expected_value(lon, lat) -> np.ndarray:
    """The value stored at a cell centre."""
    return np.float32(np.asarray(lon) * 1000.0 + np.asarray(lat))


def make_product(grid: LonLatGrid = GRID, day: str = "2019-06-12", *, coverage_end: str | None = None,
                 mean_attrs: dict | None = None) -> xr.Dataset:
    lon, lat = np.meshgrid(grid.lon_centers(), grid.lat_centers())
    mean = expected_value(lon, lat).astype(np.float32)
    rows, cols = np.indices(grid.shape)
    count = ((rows + 3 * cols) % 7).astype(np.int32)
    mean[count == 0] = np.nan
    weight = np.where(count > 0, count * 0.25, np.nan).astype(np.float32)
    attrs = {
        "units": "mol m-2",
        "long_name": "tropospheric vertical column of nitrogen dioxide",
        "standard_name": "troposphere_mole_content_of_nitrogen_dioxide",
        **(mean_attrs or {}),
    }
    return xr.Dataset(
        {
            "tropospheric_no2_column": (("lat", "lon"), mean, attrs),
            "weight": (("lat", "lon"), weight, {"units": "1", "long_name": "sum of overlap fractions (HARP bin_spatial weight)"}),
            "count": (("lat", "lon"), count, {"units": "1", "long_name": "number of L2 pixels overlapping the cell"}),
        },
        coords={"lat": grid.lat_centers(), "lon": grid.lon_centers()},
        attrs={
            "product": "no2",
            "period": "day",
            "period_label": day,
            "time_coverage_start": f"{day}T00:00:00Z",
            "time_coverage_end": coverage_end or f"{day}T23:59:59Z",
            "cell_methods": "area: mean (area-weighted, HARP bin_spatial) time: mean",
        },
    )
