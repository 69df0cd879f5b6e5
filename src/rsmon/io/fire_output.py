"""Fire-point writers: FIRMS-style VIIRS CSV, GeoJSON, GeoPackage and a PNG map, all atomic.

Input: a fire table, one row per fire pixel, either the detector's (``acq_date``/``acq_time``,
``confidence`` 'low'|'nominal'|'high') or :func:`rsmon.io.stations.read_firms`'s (``time``,
``confidence`` 'l'|'n'|'h', ``confidence_class``). Every file goes through
:func:`rsmon.io.atomic.atomic_output` (temporary file, then rename).

FIRMS VIIRS CSV layout (``shared/reference/fire.md`` section 3, checked against the real archive
file ``shared/data/firms-germany-2023/viirs-snpp_2023_Germany.csv``): columns
:data:`FIRMS_VIIRS_COLUMNS` in that order, then ``type`` in standard-processing archives;
``confidence`` written ``l``/``n``/``h``; ``acq_time`` zero-padded ``HHMM`` UTC; numbers in
FIRMS precision with trailing zeros dropped (``2`` not ``2.00``, ``0.4`` not ``0.40``): 5 decimals
for latitude/longitude, 2 for brightness temperatures (K), ``scan``/``track`` (km) and ``frp`` (MW).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import rsmon
from rsmon.errors import InputError
from rsmon.io.atomic import atomic_output
from rsmon.io.maps import save_figure

log = logging.getLogger(__name__)

__all__ = [
    "CATEGORY_COLORS",
    "FIRMS_VIIRS_COLUMNS",
    "firms_viirs_table",
    "write_fire_geojson",
    "write_fire_gpkg",
    "write_fire_map_png",
    "write_firms_csv",
]

#: FIRMS VIIRS 375 m CSV columns, in the order FIRMS writes them (NRT and archive; archives add ``type``).
FIRMS_VIIRS_COLUMNS: tuple[str, ...] = (
    "latitude", "longitude", "bright_ti4", "scan", "track", "acq_date", "acq_time", "satellite",
    "instrument", "confidence", "version", "bright_ti5", "frp", "daynight",
)

# Decimals FIRMS uses per numeric column (real VIIRS archive CSV).
_DECIMALS = {"latitude": 5, "longitude": 5, "bright_ti4": 2, "bright_ti5": 2, "scan": 2, "track": 2, "frp": 2}

_CONF_CODE = {"l": "l", "n": "n", "h": "h", "low": "l", "nominal": "n", "high": "h"}

#: Colours of :func:`rsmon.products.straw.classify` categories on maps.
CATEGORY_COLORS: dict[str, str] = {
    "straw_burning_suspected": "#d7301f",
    "other_fire": "#fd8d3c",
    "static_source": "#54278f",
    "low_confidence_day": "#969696",
}


def _format_number(values: pd.Series, decimals: int) -> pd.Series:
    """Round to ``decimals`` and print without trailing zeros, like FIRMS; NaN -> empty field."""
    num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    out = [np.format_float_positional(round(v, decimals), trim="-") if np.isfinite(v) else "" for v in num]
    return pd.Series(out, index=values.index, dtype=object)


def _acquisition(fires: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """``acq_date`` (YYYY-MM-DD) and ``acq_time`` (HHMM) strings from the columns or from ``time``."""
    if "acq_date" in fires.columns and "acq_time" in fires.columns:
        date = fires["acq_date"]
        if pd.api.types.is_datetime64_any_dtype(date):
            date = date.dt.strftime("%Y-%m-%d")
        hhmm = fires["acq_time"]
        if pd.api.types.is_numeric_dtype(hhmm):
            hhmm = hhmm.astype("int64").astype(str)
        return date.astype(str).str.strip(), hhmm.astype(str).str.strip().str.zfill(4)
    if "time" in fires.columns:
        t = pd.to_datetime(fires["time"], utc=True)
        return t.dt.strftime("%Y-%m-%d"), t.dt.strftime("%H%M")
    raise InputError("fire table: needs columns 'acq_date' and 'acq_time' (UTC) or 'time'")


def _confidence_codes(fires: pd.DataFrame) -> pd.Series:
    """VIIRS confidence as FIRMS writes it (``l``/``n``/``h``)."""
    for col in ("confidence", "confidence_class"):
        if col not in fires.columns:
            continue
        codes = fires[col].astype("string").str.strip().str.lower().map(_CONF_CODE)
        if codes.notna().all():
            return codes.astype(object)
    raise InputError("fire table: column 'confidence' (or 'confidence_class') must hold VIIRS classes "
                     "l/n/h or low/nominal/high for a FIRMS VIIRS CSV; MODIS percentages are not VIIRS")


def firms_viirs_table(fires: pd.DataFrame, *, extra: bool = False, include_type: bool | None = None,
                      version: str | None = None) -> pd.DataFrame:
    """The fire table as FIRMS VIIRS CSV fields (all strings), columns in FIRMS order.

    Parameters
    ----------
    fires : DataFrame
        One row per fire pixel (see the module docstring).
    extra : bool
        Append the table's other columns (rsmon diagnostics, categories) after the FIRMS ones.
    include_type : bool, optional
        Write the archive ``type`` column (0 vegetation, 1 volcano, 2 static land source,
        3 offshore) after ``daynight``. Default: when the table has a ``type`` column with a
        value (FIRMS NRT files have none, standard archives do).
    version : str, optional
        ``version`` for rows without one (default ``rsmon-<version>``).

    Raises
    ------
    InputError
        A FIRMS column is missing, or confidence is not a VIIRS class.
    """
    missing = [c for c in ("latitude", "longitude", "bright_ti4", "bright_ti5", "frp", "scan", "track",
                           "daynight") if c not in fires.columns]
    if missing:
        raise InputError(f"fire table: missing column(s) {', '.join(missing)} for a FIRMS VIIRS CSV")
    date, hhmm = _acquisition(fires)
    out = pd.DataFrame(index=fires.index)
    default_version = version or f"rsmon-{rsmon.__version__}"
    for col in FIRMS_VIIRS_COLUMNS:
        if col in _DECIMALS:
            out[col] = _format_number(fires[col], _DECIMALS[col])
        elif col == "acq_date":
            out[col] = date
        elif col == "acq_time":
            out[col] = hhmm
        elif col == "confidence":
            out[col] = _confidence_codes(fires)
        elif col == "version":
            out[col] = (fires[col].astype("string").fillna(default_version) if col in fires.columns
                        else default_version)
        elif col == "instrument":
            out[col] = fires[col].astype(str) if col in fires.columns else "VIIRS"
        elif col == "satellite":
            out[col] = fires[col].astype(str) if col in fires.columns else ""
        else:
            out[col] = fires[col].astype(str)
    has_type = "type" in fires.columns and pd.to_numeric(fires["type"], errors="coerce").notna().any()
    if include_type if include_type is not None else has_type:
        if "type" not in fires.columns:
            raise InputError("fire table: include_type=True but there is no 'type' column")
        t = pd.to_numeric(fires["type"], errors="coerce").astype("Int64")
        out["type"] = t.astype("string").fillna("")
    if extra:
        skip = set(out.columns) | {"time", "confidence_class", "geometry"}
        for col in fires.columns:
            if col not in skip:
                out[col] = fires[col]
    return out


def write_firms_csv(path: str | os.PathLike, fires: pd.DataFrame, *, extra: bool = False,
                    include_type: bool | None = None, version: str | None = None) -> Path:
    """Write fire points as a FIRMS VIIRS 375 m CSV (exact column names, order and encodings).

    Parameters
    ----------
    path : str or PathLike
        Output CSV (UTF-8, ``\\n`` line ends, header row, no index).
    fires : DataFrame
        Fire table (detector output or :func:`~rsmon.io.stations.read_firms` output).
    extra, include_type, version
        See :func:`firms_viirs_table`. With ``extra=False`` (default) the file has exactly the
        FIRMS columns, so FIRMS tools and :func:`~rsmon.io.stations.read_firms` read it unchanged.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        See :func:`firms_viirs_table`.
    OutputError
        The folder cannot be created or written.
    """
    table = firms_viirs_table(fires, extra=extra, include_type=include_type, version=version)
    path = Path(path)
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")
    log.info("wrote %d fire points to %s", len(table), path)
    return path


def _points_frame(fires: pd.DataFrame, columns: Sequence[str] | None):
    """A GeoDataFrame (EPSG:4326 points) with file-friendly column types."""
    import geopandas as gpd

    for c in ("latitude", "longitude"):
        if c not in fires.columns:
            raise InputError(f"fire table: missing column {c!r}")
    cols = [c for c in (columns or fires.columns) if c != "geometry"]
    missing = [c for c in cols if c not in fires.columns]
    if missing:
        raise InputError(f"fire table: missing column(s) {', '.join(missing)}")
    data = fires[cols].copy()
    for c in data.columns:
        s = data[c]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object:
            data[c] = s.astype("string")
    geometry = gpd.points_from_xy(fires["longitude"].to_numpy(float), fires["latitude"].to_numpy(float))
    return gpd.GeoDataFrame(data.reset_index(drop=True), geometry=geometry, crs="EPSG:4326")


def write_fire_geojson(path: str | os.PathLike, fires: pd.DataFrame, *,
                       columns: Sequence[str] | None = None) -> Path:
    """Write fire points as GeoJSON (RFC 7946: WGS84 longitude/latitude, one Feature per fire).

    Parameters
    ----------
    path : str or PathLike
        Output ``.geojson``.
    fires : DataFrame
        Needs ``latitude``/``longitude`` (degrees); other columns become properties (all of
        them, or ``columns``). Categoricals are written as text, times as ISO 8601.

    Returns
    -------
    Path
        ``path``.
    """
    gdf = _points_frame(fires, columns)
    path = Path(path)
    with atomic_output(path) as tmp:
        gdf.to_file(tmp, driver="GeoJSON", engine="pyogrio", layer=path.stem,
                    layer_options={"RFC7946": "YES"})
    return path


def write_fire_gpkg(path: str | os.PathLike, fires: pd.DataFrame, *, layer: str = "fires",
                    columns: Sequence[str] | None = None) -> Path:
    """Write fire points to a GeoPackage layer (EPSG:4326 points, default layer ``fires``).

    The whole file is replaced atomically, so it holds this one layer (writing into an existing
    multi-layer GeoPackage in place could leave it half-written).

    Returns
    -------
    Path
        ``path``.
    """
    gdf = _points_frame(fires, columns)
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.unlink()  # GDAL's GPKG driver wants to create the file itself
        gdf.to_file(tmp, driver="GPKG", layer=layer, engine="pyogrio")
    return path


def write_fire_map_png(path: str | os.PathLike, fires: pd.DataFrame, outlines=None, *, title: str = "",
                       category_column: str = "category", bounds: tuple[float, float, float, float] | None = None,
                       colors: dict[str, str] | None = None, marker_size: float = 9.0) -> Path:
    """Map of fire points coloured by category over administrative outlines (PNG).

    Parameters
    ----------
    path : str or PathLike
        Output ``.png``.
    fires : DataFrame
        ``latitude``/``longitude`` (degrees) and, if present, ``category_column`` (categories of
        :func:`rsmon.products.straw.classify`; without it every point is drawn in one colour).
    outlines : GeoDataFrame, optional
        Boundaries in EPSG:4326 (:func:`rsmon.io.maps.read_outlines`), drawn as thin lines.
    title : str
        Figure title.
    bounds : (west, south, east, north), optional
        Map extent, degrees. Default: the fires' extent padded by 10 % (at least 0.05 degrees),
        or the outlines' extent when there are no fires.
    colors : dict, optional
        Category -> colour; default :data:`CATEGORY_COLORS`.
    marker_size : float
        Marker area, points^2.

    Returns
    -------
    Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {**CATEGORY_COLORS, **(colors or {})}
    lon = pd.to_numeric(fires["longitude"], errors="coerce").to_numpy(float) if len(fires) else np.array([])
    lat = pd.to_numeric(fires["latitude"], errors="coerce").to_numpy(float) if len(fires) else np.array([])
    if bounds is None:
        if np.isfinite(lon).any():
            west, east = np.nanmin(lon), np.nanmax(lon)
            south, north = np.nanmin(lat), np.nanmax(lat)
            pad = max(0.1 * max(east - west, north - south), 0.05)
            bounds = (west - pad, south - pad, east + pad, north + pad)
        elif outlines is not None and len(outlines):
            bounds = tuple(outlines.total_bounds)
        else:
            bounds = (-180.0, -90.0, 180.0, 90.0)
    west, south, east, north = bounds
    aspect = 1.0 / max(np.cos(np.radians((south + north) / 2)), 0.2)
    height = min(max(8 * (north - south) / max(east - west, 1e-9) * aspect, 3.0), 14.0)
    fig, ax = plt.subplots(figsize=(9, height + 1.0), dpi=110)
    if outlines is not None and len(outlines):
        outlines.boundary.plot(ax=ax, color="0.3", linewidth=0.5, zorder=1)
    if category_column in fires.columns:
        cats = fires[category_column].astype("string").fillna("unknown")
        for cat in sorted(cats.unique(), key=lambda c: list(colors).index(c) if c in colors else 99):
            m = (cats == cat).to_numpy()
            ax.scatter(lon[m], lat[m], s=marker_size, c=colors.get(cat, "#3182bd"), label=f"{cat} ({m.sum()})",
                       edgecolors="none", zorder=2)
        if len(fires):
            ax.legend(loc="best", fontsize=8, frameon=True)
    elif len(fires):
        ax.scatter(lon, lat, s=marker_size, c="#d7301f", edgecolors="none", label=f"fires ({len(fires)})", zorder=2)
        ax.legend(loc="best", fontsize=8)
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    ax.set_aspect(aspect)
    ax.set_xlabel("longitude (degrees east)")
    ax.set_ylabel("latitude (degrees north)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
