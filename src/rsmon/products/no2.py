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
from rsmon.products.l3 import BinAccumulator, PixelSet, lazy_sums

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


def extract_pixels(ds: xr.Dataset, grid: LonLatGrid, params: NO2Params = NO2Params()) -> dict[str, PixelSet]:
    """Valid pixels of one TROPOMI NO2 swath that may reach ``grid``, split by period.

    Only the pixel centres of the whole swath are read; corner bounds, values and QA are read for
    the scanlines that come near the grid.

    Parameters
    ----------
    ds : xarray.Dataset
        As returned by :func:`rsmon.io.s5p.open_s5p` for an NO2 file (lazy).
    grid : LonLatGrid
    params : NO2Params

    Returns
    -------
    dict
        Period label -> :class:`PixelSet` (values in ``params.units``); empty when no valid pixel
        of the swath comes near the grid.
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
    keep = (qa_raw != 255) & (qa_raw.astype(np.float64) > round(params.qa_min * 100.0, 6)) & np.isfinite(values)
    if params.min_column_mol_m2 is not None:
        keep &= values >= params.min_column_mol_m2
    factor = 1.0
    if params.units == "1e15 molec cm-2":
        factor = float(ds[MAIN_VARIABLE].attrs.get("multiplication_factor_to_convert_to_molecules_percm2",
                                                   MOLECULES_PER_CM2_PER_MOL_M2)) / 1e15
    extra = None
    if params.weighting == "inverse_variance":
        sigma = sub[f"{MAIN_VARIABLE}_precision"].values.astype(np.float64) * factor
        with np.errstate(divide="ignore", invalid="ignore"):
            extra = 1.0 / (sigma * sigma)
        keep &= np.isfinite(extra) & (extra > 0)
    if not keep.any():
        return {}
    labels = _period_labels(sub, params)
    lon_b = sub["longitude_bounds"].values
    lat_b = sub["latitude_bounds"].values
    times = sub["time_utc"].values
    scan_index = np.broadcast_to(np.arange(keep.shape[0])[:, None], keep.shape)
    out: dict[str, PixelSet] = {}
    for label in np.unique(labels[keep]):
        sel = keep & (labels == label)
        scans = scan_index[sel]
        meta = {"orbit": int(ds.attrs.get("orbit", -1))} if params.period == "orbit" else {}
        ps = PixelSet(
            lon_bounds=lon_b[sel], lat_bounds=lat_b[sel], values=values[sel] * factor,
            extra_weight=None if extra is None else extra[sel], source=source,
            time_start=times[scans.min()], time_end=times[scans.max()], meta=meta,
        )
        if ps.select(grid).size:
            out[str(label)] = ps
    return out


def grid_swath(ds: xr.Dataset, grid: LonLatGrid, params: NO2Params = NO2Params()) -> dict[str, BinAccumulator]:
    """Bin one swath eagerly: period label -> :class:`BinAccumulator` (labels with no hit omitted)."""
    out = {}
    for label, ps in extract_pixels(ds, grid, params).items():
        acc = BinAccumulator.empty(grid)
        if ps.bin_into(acc) == 0:
            continue
        acc.inputs = (ps.source,)
        acc.time_start, acc.time_end = ps.time_start, ps.time_end
        out[label] = acc
    return out


def merge(parts: Iterable[dict[str, BinAccumulator]]) -> dict[str, BinAccumulator]:
    """Add per-swath accumulators into per-period totals."""
    total: dict[str, BinAccumulator] = {}
    for part in parts:
        for label, acc in part.items():
            total[label] = total[label] + acc if label in total else acc
    return total


def group_pixels(parts: Iterable[dict[str, PixelSet]]) -> dict[str, list[PixelSet]]:
    """Collect per-swath pixel sets into per-period lists."""
    grouped: dict[str, list[PixelSet]] = {}
    for part in parts:
        for label, ps in part.items():
            grouped.setdefault(label, []).append(ps)
    return grouped


def to_dataset(pixelsets: list[PixelSet], grid: LonLatGrid, label: str, params: NO2Params,
               block_size: int | None = None) -> xr.Dataset:
    """The lazy L3 dataset of one period (band order: mean column, weight, count), per the writers' contract.

    Values are dask arrays computed block by block when a writer asks for them.
    """
    import dask.array as da

    sum_wy, sum_w, count = lazy_sums(pixelsets, grid, block_size)
    mean = da.where(sum_w > 0, sum_wy / da.where(sum_w > 0, sum_w, 1.0), np.nan).astype(np.float32)
    units = params.units
    attrs = {"units": units, "long_name": "tropospheric vertical column of nitrogen dioxide, area-weighted mean"}
    if units == "mol m-2":
        attrs["standard_name"] = "troposphere_mole_content_of_nitrogen_dioxide"
    ds = xr.Dataset(
        {
            MAIN_VARIABLE: (("lat", "lon"), mean, attrs),
            "weight": (("lat", "lon"), sum_w.astype(np.float32), {
                "units": "1", "long_name": "sum of overlap fractions (HARP bin_spatial weight)"}),
            "count": (("lat", "lon"), count.astype(np.int32), {
                "units": "1", "long_name": "number of L2 pixels overlapping the cell"}),
        },
        coords={"lat": ("lat", grid.lat_centers()), "lon": ("lon", grid.lon_centers())},
    )
    method = "area: mean (area-weighted, HARP bin_spatial)"
    if params.weighting == "inverse_variance":
        method = "area: mean (area x inverse-variance weighted)"
    starts = [ps.time_start for ps in pixelsets if ps.time_start is not None]
    ends = [ps.time_end for ps in pixelsets if ps.time_end is not None]
    ds.attrs.update({
        "product": "no2",
        "period": params.period,
        "period_label": label,
        "time_coverage_start": _iso(min(starts)) if starts else "",
        "time_coverage_end": _iso(max(ends)) if ends else "",
        "cell_methods": f"{method} time: mean",
        "n_pixels": int(sum(len(ps) for ps in pixelsets)),
    })
    return ds


def _iso(t) -> str:
    if t is None:
        return ""
    return str(np.datetime64(t, "s")) + "Z"


def require_data(totals: dict, inputs: list[str], grid: LonLatGrid) -> None:
    """Raise :class:`NoDataError` when no valid pixel of any input reached the grid."""
    if not totals:
        names = ", ".join(inputs[:3]) + (" ..." if len(inputs) > 3 else "")
        raise NoDataError(
            f"no valid NO2 pixel of {names} falls inside bbox {grid.bounds} "
            "(swath outside the bbox, all fill values, or all pixels rejected by the QA filter)"
        )
