"""The validation job: product files + station files -> matchups, statistics and a report.

Both ``rsmon validate`` and the workflow runner call :func:`run_validation`. Each product file is
recognised by its content: a TROPOMI L2 swath (the reader registry), an L3 grid (GeoTIFF/COG or
NetCDF), or an area-average time series (NASA Giovanni / eodash CSV); each is collocated with the
stations by the matching rule of :mod:`rsmon.validate.collocate`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from rsmon.errors import InputError, NoDataError

log = logging.getLogger(__name__)

#: kind -> (station variable, bias statistics meaningful?). A tropospheric NO2 column is not a
#: surface concentration: correlation and slopes only (atmos.md section 5.2).
KINDS = {"aod": ("aod_550", True), "no2": ("no2", False), "xch4": ("xch4", True)}

#: Default QA thresholds on L2 swaths by kind (the product rules: NO2 qa > 0.75, tropomi.eu PRF;
#: CH4 qa > 0.5, the file's own qa_value comment; atmos.md 1.2-1.3).
QA_DEFAULTS = {"no2": 0.75, "xch4": 0.5, "aod": None}

_CNEMC_FORMATS = ("CNEMC", "PRSA")


@dataclass
class ValidationResult:
    """What a validation run produced."""

    matchups: pd.DataFrame
    stats: object
    paths: dict[str, Path] = field(default_factory=dict)


def _product_kind(path: Path) -> str:
    """``"swath"``, ``"grid"`` or ``"series"`` for a product file."""
    if not path.exists():
        from rsmon.errors import FormatError

        raise FormatError(f"--product {path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "series"
    if suffix in (".tif", ".tiff"):
        return "grid"
    from rsmon.io.registry import find_reader
    from rsmon.errors import UnsupportedFormatError

    try:
        find_reader(path)
        return "swath"
    except UnsupportedFormatError:
        return "grid"


def _grid_units(path: Path) -> str:
    """Units of band 1 of a GeoTIFF (rsmon COG tags), or of the first data variable of a NetCDF grid."""
    if path.suffix.lower() in (".tif", ".tiff"):
        from rsmon.io.cog import read_cog_tags

        bands = read_cog_tags(path).get("bands") or [{}]
        return str(bands[0].get("units") or "")
    return ""


def read_station_files(paths: Sequence[str | os.PathLike], variable: str, sites=None) -> pd.DataFrame:
    """Read and concatenate station files, keeping ``variable``.

    ``sites`` (a CNEMC site list path or table) gives coordinates to the CNEMC/PRSA files that lack them.
    """
    from rsmon.io.stations import read_cnemc_sitelist, read_stations, sniff_station_format

    if isinstance(sites, (str, os.PathLike)):
        sites = read_cnemc_sitelist(sites)
    tables = []
    for raw in paths:
        path = Path(raw)
        name, _ = sniff_station_format(path)
        kw = {"sites": sites} if sites is not None and name.startswith(_CNEMC_FORMATS) else {}
        df = read_stations(path, **kw)
        if "variable" not in df.columns:
            raise InputError(f"--stations {path}: a {name} file holds no station measurements")
        tables.append(df)
    stations = pd.concat(tables, ignore_index=True)
    found = sorted(stations["variable"].unique())
    stations = stations[stations["variable"] == variable]
    if stations.empty:
        names = ", ".join(str(p) for p in paths)
        raise NoDataError(f"--stations {names}: no {variable!r} values (variables found: {', '.join(found)})")
    if stations["lon"].isna().all():
        raise InputError(f"--stations: the {variable} stations have no coordinates; give --sites SITELIST")
    return stations.reset_index(drop=True)


def run_validation(
    kind: str,
    products: Sequence[str | os.PathLike],
    stations: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    sites: str | os.PathLike | None = None,
    radius_km: float | None = None,
    window_min: float | None = None,
    overpass: str | None = None,
    max_distance_km: float = 50.0,
    qa_min: float | None = None,
    stamp: str | None = None,
    title: str | None = None,
    command: str | None = None,
    n_boot: int = 1000,
    ee: str | tuple[float, float] | None = "default",
) -> ValidationResult:
    """Collocate products with stations, compute statistics and write the report into ``out_dir``.

    Parameters
    ----------
    kind : {"aod", "no2", "xch4"}
    products, stations : sequences of paths
    sites : path, optional
        CNEMC site list for station files without coordinates.
    radius_km : float, optional
        Use all pixels / cells within this radius (default: the pixel or cell containing the station).
    window_min : float, optional
        Half-width of the time window around the overpass (default 30 min).
    overpass : "HH:MM", optional
        Nominal local solar overpass time for daily products (grids and series); without it a daily
        product is matched with the station values of the same UTC day.
    max_distance_km : float
        For area-average series: stations farther from the series' box are dropped.
    qa_min : float, optional
        QA threshold for L2 swaths (default per kind, :data:`QA_DEFAULTS`).
    stamp : {"start", "center", "end"}, optional
        Where a series' time stamp lies in its averaging window (see :func:`rsmon.io.series.read_giovanni_series`).
    ee : "default", (a, b) or None
        Expected-error envelope +-(a + b x ground); "default" takes the kind's
        (:data:`rsmon.validate.stats.EE_DEFAULTS`: Dark Target land for AOD).

    Raises
    ------
    InputError, FormatError, NoDataError, OutputError
        Bad parameters, unreadable files, zero matchups (nothing is written then), unwritable folder.
    """
    from rsmon.io.atomic import check_output_dir
    from rsmon.validate.collocate import collocate_grid, collocate_series, collocate_swath
    from rsmon.validate.report import write_report
    from rsmon.validate.stats import compute_stats

    if kind not in KINDS:
        raise InputError(f"--kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if not products:
        raise InputError("--product: no product file given")
    if not stations:
        raise InputError("--stations: no station file given")
    variable, bias_stats = KINDS[kind]
    window = 30.0 if window_min is None else float(window_min)
    if window <= 0:
        raise InputError(f"--window-min: must be positive, got {window_min}")
    if radius_km is not None and not radius_km > 0:
        raise InputError(f"--radius-km: must be positive, got {radius_km}")
    mode = "containing" if radius_km is None else "radius"
    radius = 10.0 if radius_km is None else float(radius_km)
    # fail on an unwritable output folder before the (possibly long) collocation
    check_output_dir(out_dir)

    table = read_station_files(stations, variable, sites)
    parts = []
    sat_units: set[str] = set()
    swaths = {str(Path(raw)): Path(raw) for raw in products if _product_kind(Path(raw)) == "swath"}
    if swaths:
        from rsmon.io.s5p import open_s5p
        from rsmon.workflow.repeats import remeasured_scanlines, without_remeasured

        swaths = {key: open_s5p(path) for key, path in swaths.items()}
        again = remeasured_scanlines(swaths)  # an orbit part in two processings is matched once
    for raw in products:
        path = Path(raw)
        what = _product_kind(path)
        try:
            if what == "swath":
                ds = without_remeasured(swaths[str(path)], again.get(str(path)), "product")
                if ds is None:
                    continue
                sat_units.add(str(ds[ds.attrs["main_variable"]].attrs.get("units", "")))
                qa = QA_DEFAULTS[kind] if qa_min is None else qa_min
                rule = "bracket_hours" if kind == "no2" else "window"
                m = collocate_swath(ds, table, variable=variable, qa_min=qa, mode=mode, radius_km=radius,
                                    window_min=window, ground_rule=rule)
            elif what == "grid":
                rule = "same_day" if overpass is None else "window"
                sat_units.add(_grid_units(path))
                m = collocate_grid(path, table, variable=variable, mode=mode, radius_km=radius,
                                   ground_rule=rule, overpass_local_solar=overpass or "13:30", window_min=window)
            else:
                from rsmon.io.series import read_giovanni_series

                series = read_giovanni_series(path, stamp=stamp)
                sat_units.add(str(series.attrs.get("units") or ""))
                rule = "same_day" if overpass is None else "overpass_window"
                m = collocate_series(series, table, variable=variable, max_distance_km=max_distance_km,
                                     ground_rule=rule, overpass_local_solar=overpass or "13:45", window_min=window)
        except NoDataError as exc:
            log.warning("%s: no matchups (%s)", path, exc)
            continue
        parts.append(m)
    if not parts or sum(len(p) for p in parts) == 0:
        names = ", ".join(str(p) for p in products)
        raise NoDataError(f"no matchups between --product {names} and the {variable} stations "
                          "(no overlap in space or time)")
    matchups = pd.concat(parts, ignore_index=True)
    stats = compute_stats(matchups["sat_mean"].to_numpy(), matchups["ground_mean"].to_numpy(), kind=kind,
                          bias_stats=bias_stats, n_boot=n_boot, ee=ee)
    meta = {
        "command": command or "",
        "kind": kind,
        "products": [str(Path(p).resolve()) for p in products],
        "stations": [str(Path(p).resolve()) for p in stations],
        "sites": str(Path(sites).resolve()) if sites else None,
        "parameters": {"mode": mode, "radius_km": radius if mode == "radius" else None, "window_min": window,
                       "overpass_local_solar": overpass, "max_distance_km": max_distance_km,
                       "qa_min": qa_min, "stamp": stamp, "variable": variable,
                       "ee": None if stats.ee is None else stats.ee.to_dict()},
    }
    units_ground = str(table["units"].iloc[0]) if "units" in table else ""
    units_sat = " / ".join(sorted(u for u in sat_units if u))
    paths = write_report(out_dir, matchups, stats, kind=kind, title=title or f"rsmon {kind} validation",
                         meta=meta, units_sat=units_sat, units_ground=units_ground)
    return ValidationResult(matchups, stats, paths)
