"""Tropospheric NO2 L3 from TROPOMI L2 swaths: QA screening, periods, area-weighted binning.

The science rules live here, as named parameters with their sources:

- QA: keep pixels with ``qa_value > 0.75`` (tropomi.eu NO2 product page and the NO2 Product Readme
  File S5P-MPC-KNMI-PRF-NO2; Google Earth Engine uses the equivalent
  ``tropospheric_NO2_column_number_density_validity > 75``). The comparison is done on the stored
  integer (qa x 100), as HARP's ``validity`` does, so 0.75 never suffers float rounding.
- Negative columns are valid retrieval noise and are kept (tropomi.eu PRF); an optional lower limit
  (``min_column_mol_m2``, e.g. -0.001 as in the GEE notes) can drop outliers.
- Units: mol m-2 as in the L2 file; ``1e15 molec cm-2`` multiplies by the file's own
  ``multiplication_factor_to_convert_to_molecules_percm2`` (6.02214e19) and divides by 1e15.
- Binning: HARP ``bin_spatial`` semantics (see :mod:`rsmon.kernels.binning`).

Functions are pure: xarray in, accumulators / xarray out. Reading happens lazily through the dask
arrays the reader returned; nothing here opens or writes files.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
import xarray as xr

from rsmon.errors import InputError, NoDataError
from rsmon.grid import LonLatGrid
from rsmon.products.l3 import BinAccumulator, bin_pixels

log = logging.getLogger(__name__)

#: molecules per mol / cm2 per m2 (N_A / 1e4): used when a file lacks the attribute.
MOLECULES_PER_CM2_PER_MOL_M2 = 6.02214076e19

PERIODS = ("orbit", "day", "month")
DAY_BOUNDARIES = ("utc", "solar")
UNITS = ("mol m-2", "1e15 molec cm-2")
WEIGHTINGS = ("area", "inverse_variance")

MAIN_VARIABLE = "tropospheric_no2_column"


@dataclass(frozen=True)
class NO2Params:
    """Parameters of the NO2 L3 product (recorded in every output's provenance).

    Attributes
    ----------
    qa_min : float
        Keep pixels with ``qa_value > qa_min`` (0..1). Default 0.75 (tropomi.eu NO2 PRF); use 0.5
        only when cloudy scenes are acceptable.
    period : {"orbit", "day", "month"}
    day_boundary : {"utc", "solar"}
        Which day a pixel belongs to: its UTC date, or its local-solar date (UTC + lon/15 h).
    units : {"mol m-2", "1e15 molec cm-2"}
    weighting : {"area", "inverse_variance"}
        ``area``: HARP weights (overlap fraction). ``inverse_variance``: area weight x 1/precision^2.
    min_column_mol_m2 : float or None
        Drop columns below this (mol m-2); None keeps all (negative columns are valid noise).
    """

    qa_min: float = 0.75
    period: str = "day"
    day_boundary: str = "utc"
    units: str = "mol m-2"
    weighting: str = "area"
    min_column_mol_m2: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.qa_min, (int, float)) and 0.0 <= float(self.qa_min) <= 1.0):
            raise InputError(f"qa: expected a number in [0, 1], got {self.qa_min!r}")
        for name, allowed in (("period", PERIODS), ("day_boundary", DAY_BOUNDARIES), ("units", UNITS),
                              ("weighting", WEIGHTINGS)):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name}: expected one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _swath_rows_in_grid(ds: xr.Dataset, grid: LonLatGrid, margin_deg: float = 1.0) -> slice | None:
    """The scanline range whose pixel centres come within ``margin_deg`` of the grid (None if none).

    Only the centre coordinates are read for this; the expensive corner bounds and values are then
    read for the selected scanlines only.
    """
    lat = ds["latitude"].values
    lon = ds["longitude"].values
    west, south, east, north = grid.bounds
    inside = (lat > south - margin_deg) & (lat < north + margin_deg)
    lon_ok = np.zeros(lat.shape, dtype=bool)
    for shift in (-360.0, 0.0, 360.0):
        lon_ok |= (lon + shift > west - margin_deg) & (lon + shift < east + margin_deg)
    rows = np.flatnonzero((inside & lon_ok).any(axis=1))
    if rows.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1)


def _period_labels(ds: xr.Dataset, params: NO2Params) -> np.ndarray:
    """Label of the period each pixel belongs to, shape (scanline, ground_pixel)."""
    times = ds["time_utc"].values.astype("datetime64[s]")  # (scanline,)
    shape = ds["latitude"].shape
    if params.period == "orbit":
        orbit = int(ds.attrs.get("orbit", -1))
        return np.full(shape, f"{orbit:05d}", dtype=object)
    t = np.broadcast_to(times[:, None], shape)
    if params.period == "day" and params.day_boundary == "solar":
        lon = ds["longitude"].values.astype(np.float64)
        offset = np.nan_to_num(lon / 15.0 * 3600.0).astype("timedelta64[s]")
        t = t + offset
    unit = "D" if params.period == "day" else "M"
    return t.astype(f"datetime64[{unit}]").astype(str)


def grid_swath(ds: xr.Dataset, grid: LonLatGrid, params: NO2Params = NO2Params()) -> dict[str, BinAccumulator]:
    """Bin one TROPOMI NO2 swath onto ``grid``, split by period.

    Parameters
    ----------
    ds : xarray.Dataset
        As returned by :func:`rsmon.io.s5p.open_s5p` for an NO2 file (lazy).
    grid : LonLatGrid
    params : NO2Params

    Returns
    -------
    dict
        Period label -> accumulator (values in ``params.units``). Empty when no valid pixel of the
        swath reaches the grid.
    """
    if MAIN_VARIABLE not in ds:
        raise InputError(
            f"{ds.attrs.get('source_path', 'dataset')}: not an NO2 product (no {MAIN_VARIABLE}; "
            f"product is {ds.attrs.get('product')!r})"
        )
    source = str(ds.attrs.get("source_path", ""))
    rows = _swath_rows_in_grid(ds, grid)
    if rows is None:
        return {}
    sub = ds.isel(scanline=rows)
    names = ["latitude_bounds", "longitude_bounds", MAIN_VARIABLE, "qa_value_raw", "latitude", "longitude", "time_utc"]
    if params.weighting == "inverse_variance":
        names.append(f"{MAIN_VARIABLE}_precision")
    sub = sub[names].compute()

    values = sub[MAIN_VARIABLE].values.astype(np.float64)
    qa_raw = sub["qa_value_raw"].values
    # HARP-style integer comparison: qa_value > qa_min  <=>  raw > qa_min * 100
    keep = (qa_raw != 255) & (qa_raw.astype(np.float64) > round(params.qa_min * 100.0, 6))
    if params.min_column_mol_m2 is not None:
        keep &= values >= params.min_column_mol_m2
    values = np.where(keep, values, np.nan)
    if params.units == "1e15 molec cm-2":
        factor = float(ds[MAIN_VARIABLE].attrs.get("multiplication_factor_to_convert_to_molecules_percm2",
                                                   MOLECULES_PER_CM2_PER_MOL_M2))
        values = values * factor / 1e15
    extra = None
    if params.weighting == "inverse_variance":
        sigma = sub[f"{MAIN_VARIABLE}_precision"].values.astype(np.float64)
        if params.units == "1e15 molec cm-2":
            sigma = sigma * factor / 1e15
        with np.errstate(divide="ignore", invalid="ignore"):
            extra = 1.0 / (sigma * sigma)

    labels = _period_labels(sub, params)
    lon_b = sub["longitude_bounds"].values
    lat_b = sub["latitude_bounds"].values
    times = sub["time_utc"].values
    out: dict[str, BinAccumulator] = {}
    for label in np.unique(labels[np.isfinite(values)]) if np.isfinite(values).any() else []:
        sel = (labels == label) & np.isfinite(values)
        acc = BinAccumulator.empty(grid)
        used = bin_pixels(acc, lon_b[sel], lat_b[sel], values[sel], None if extra is None else extra[sel])
        if used == 0:
            continue
        rows_used = np.flatnonzero(sel.any(axis=1))
        acc.inputs = (source,)
        acc.time_start = times[rows_used[0]]
        acc.time_end = times[rows_used[-1]]
        if params.period == "orbit":
            acc.meta = {"orbit": int(ds.attrs.get("orbit", -1))}
        out[str(label)] = acc
    return out


def merge(parts: Iterable[dict[str, BinAccumulator]]) -> dict[str, BinAccumulator]:
    """Add per-swath accumulators into per-period totals."""
    total: dict[str, BinAccumulator] = {}
    for part in parts:
        for label, acc in part.items():
            total[label] = total[label] + acc if label in total else acc
    return total


def to_dataset(acc: BinAccumulator, label: str, params: NO2Params) -> xr.Dataset:
    """The L3 dataset of one period (band order: mean column, weight, count), per the writers' contract."""
    g = acc.grid
    coords = {"lat": ("lat", g.lat_centers()), "lon": ("lon", g.lon_centers())}
    units = params.units
    ds = xr.Dataset(
        {
            MAIN_VARIABLE: (("lat", "lon"), acc.mean(), {
                "units": units,
                "long_name": "tropospheric vertical column of nitrogen dioxide, area-weighted mean",
                "standard_name": "troposphere_mole_content_of_nitrogen_dioxide"
                if units == "mol m-2" else "",
            }),
            "weight": (("lat", "lon"), acc.sum_w.astype(np.float32), {
                "units": "1", "long_name": "sum of overlap fractions (HARP bin_spatial weight)"}),
            "count": (("lat", "lon"), acc.count.astype(np.int32), {
                "units": "1", "long_name": "number of L2 pixels overlapping the cell"}),
        },
        coords=coords,
    )
    if not ds[MAIN_VARIABLE].attrs["standard_name"]:
        del ds[MAIN_VARIABLE].attrs["standard_name"]
    method = "area: mean (area-weighted, HARP bin_spatial)"
    if params.weighting == "inverse_variance":
        method = "area: mean (area x inverse-variance weighted)"
    ds.attrs.update({
        "product": "no2",
        "period": params.period,
        "period_label": label,
        "time_coverage_start": _iso(acc.time_start),
        "time_coverage_end": _iso(acc.time_end),
        "cell_methods": f"{method} time: mean",
        "n_pixels": int(acc.n_pixels),
    })
    return ds


def _iso(t) -> str:
    if t is None:
        return ""
    return str(np.datetime64(t, "s")) + "Z"


def require_data(totals: dict[str, BinAccumulator], inputs: list[str], grid: LonLatGrid) -> None:
    """Raise :class:`NoDataError` when no valid pixel of any input reached the grid."""
    if not totals:
        names = ", ".join(inputs[:3]) + (" ..." if len(inputs) > 3 else "")
        raise NoDataError(
            f"no valid NO2 pixel of {names} falls inside bbox {grid.bounds} "
            "(swath outside the bbox, all fill values, or all pixels rejected by the QA filter)"
        )
