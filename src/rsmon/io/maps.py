"""Quicklook maps (PNG) of gridded products, with administrative outlines, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from rsmon.grid import LonLatGrid
from rsmon.io.atomic import atomic_output


def read_outlines(path: str | os.PathLike):
    """Read boundary polygons (any vector format geopandas reads) in EPSG:4326.

    Raises
    ------
    FormatError
        The file cannot be read as vector data.
    """
    from rsmon.io.vectors import read_vector_file  # (shapefiles without a .cpg: their text encoding)

    gdf = read_vector_file(path)
    if gdf.crs is not None and gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs(4326)
    return gdf


def write_map_png(
    path: str | os.PathLike,
    ds: xr.Dataset,
    grid: LonLatGrid,
    variable: str,
    *,
    outlines=None,
    title: str = "",
    scale: float = 1.0,
    units_label: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
) -> Path:
    """Write a map of ``ds[variable] * scale`` with optional outlines (a GeoDataFrame) as PNG.

    The colour range defaults to the 2nd-98th percentiles of the finite values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.asarray(ds[variable].values, dtype=np.float64) * scale
    finite = data[np.isfinite(data)]
    if vmin is None:
        vmin = float(np.percentile(finite, 2)) if finite.size else 0.0
    if vmax is None:
        vmax = float(np.percentile(finite, 98)) if finite.size else 1.0
    west, south, east, north = grid.bounds
    aspect = 1.0 / max(np.cos(np.radians((south + north) / 2)), 0.2)
    fig, ax = plt.subplots(figsize=(10, 10 * (north - south) / (east - west) * aspect * 0.9 + 1.2), dpi=110)
    im = ax.imshow(data, extent=(west, east, south, north), origin="upper", vmin=vmin, vmax=vmax, cmap=cmap,
                   interpolation="nearest", aspect=aspect)
    if outlines is not None:
        outlines.boundary.plot(ax=ax, color="0.15", linewidth=0.5)
        ax.set_xlim(west, east)
        ax.set_ylim(south, north)
    label = units_label or ds[variable].attrs.get("units", "")
    fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    ax.set_xlabel("longitude (degrees east)")
    ax.set_ylabel("latitude (degrees north)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure as PNG atomically, then close it (pyplot figures) or clear it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        if plt.fignum_exists(fig.number if hasattr(fig, "number") else -1):
            plt.close(fig)
        else:
            fig.clear()
    return path
