"""Change-detection outputs: the change raster COG and before/after quicklook PNGs per patch.

``change.tif`` (issue 5, CLI contract): uint8, 1 = change, 0 = no change, 255 = no data, on the
after image's exact grid (CRS and transform of the change dataset), 512-pixel tiles, ZSTD (DEFLATE
when GDAL lacks it) with the horizontal predictor, overviews by ``MODE`` resampling (the majority
class, never a value that is not in the data), provenance tags. ``change_class`` and
``confidence`` can be written the same way as separate files (:func:`write_change_cog`
``variable=``).

Quicklooks: ``OUTDIR/quicklooks/<patch_id>.png``, before and after chips side by side around the
patch with its outline. Only the window around each patch is read from the (lazy) images.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import xarray as xr
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds

from rsmon.errors import InputError
from rsmon.io.cog import COGProfile, write_raster_cog
from rsmon.io.maps import save_figure
from rsmon.provenance import Provenance

log = logging.getLogger(__name__)

__all__ = ["CHANGE_COG_PROFILE", "CHANGE_NODATA", "RGB_BANDS", "FALSE_COLOUR_BANDS", "write_change_cog",
           "write_quicklooks"]

CHANGE_NODATA = 255

#: Change-raster COG settings: categorical data, so overviews take the majority class.
CHANGE_COG_PROFILE = replace(COGProfile(), overview_resampling="mode")

#: Variable names tried (case-insensitively, in order) for each display band: STAC ``eo`` common
#: names first, then Sentinel-2 band ids (Landsat ids are not guessed: B4 is red on OLI, NIR on TM).
RGB_BANDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "B04"),
    "green": ("green", "B03"),
    "blue": ("blue", "B02"),
    "nir": ("nir", "nir08", "B08", "B8A"),
}
#: True colour, and the false colour (NIR, red, green) used when blue is missing.
TRUE_COLOUR_BANDS = ("red", "green", "blue")
FALSE_COLOUR_BANDS = ("nir", "red", "green")


def write_change_cog(
    path: str | os.PathLike,
    data: xr.Dataset | xr.DataArray,
    provenance: Provenance,
    *,
    variable: str = "change",
    profile: COGProfile = CHANGE_COG_PROFILE,
) -> Path:
    """Write the change raster (or another uint8 change variable) as a single-band COG, atomically.

    Parameters
    ----------
    path : str or path-like
        Output, e.g. ``OUTDIR/change.tif``.
    data : xarray.Dataset or xarray.DataArray
        The change dataset (``data[variable]`` is written, the dataset attributes become tags)
        or one DataArray; dims ``("y", "x")``, rioxarray CRS/transform, uint8 (or bool); may be
        dask-backed.
    provenance : Provenance
        Inputs and parameters, stored in the ``rsmon_provenance`` tag.
    variable : str
        Variable of a dataset to write (``change``, ``change_class``, ``confidence``).
    profile : COGProfile
        Default: 512 tiles, ZSTD/DEFLATE, predictor 2, ``MODE`` overviews.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        Missing variable, not uint8/bool, other dims or no CRS.
    OutputError
        Cannot write; no partial file is left and an existing file is kept.
    """
    if isinstance(data, xr.Dataset):
        if variable not in data.data_vars:
            raise InputError(f"{path}: the change dataset has no variable {variable!r}")
        band, attrs = data[variable], {**data.attrs, **data[variable].attrs}
    else:
        band, attrs = data, dict(data.attrs)
    if band.dtype not in (np.uint8, np.bool_):
        raise InputError(f"{path}: variable {band.name!r} is {band.dtype}, expected uint8 (0/1, 255 = no data)")
    return write_raster_cog(path, band.rename(band.name or variable), provenance, nodata=CHANGE_NODATA,
                            attrs=attrs, profile=profile)


# --------------------------------------------------------------------------------------------
# quicklooks
# --------------------------------------------------------------------------------------------
def _band_names(ds: xr.Dataset, bands: dict[str, tuple[str, ...]]) -> tuple[list[str], str]:
    """Variables for the display (true colour, else false colour) and its label."""
    lower = {str(v).lower(): str(v) for v in ds.data_vars}
    found = {role: next((lower[c.lower()] for c in names if c.lower() in lower), None) for role, names in bands.items()}
    for roles, label in ((TRUE_COLOUR_BANDS, "true colour"), (FALSE_COLOUR_BANDS, "false colour NIR/red/green")):
        if all(found.get(r) for r in roles):
            return [found[r] for r in roles], label
    raise InputError(
        f"quicklooks: the image needs red, green and blue (or nir, red, green) variables; "
        f"tried {dict(bands)}, found {sorted(lower.values())}"
    )


def _chip(ds: xr.Dataset, names: list[str], bounds, pad_px: int, max_px: int):
    """Read the window around ``bounds`` (image CRS); returns ``(bands x rows x cols array, extent)``."""
    transform = ds.rio.transform()
    height, width = ds.sizes["y"], ds.sizes["x"]
    win = from_bounds(*bounds, transform=transform)
    c0, c1 = max(math.floor(win.col_off) - pad_px, 0), min(math.ceil(win.col_off + win.width) + pad_px, width)
    r0, r1 = max(math.floor(win.row_off) - pad_px, 0), min(math.ceil(win.row_off + win.height) + pad_px, height)
    if c0 >= c1 or r0 >= r1:
        return None, None
    step = max(1, math.ceil(max(r1 - r0, c1 - c0) / max_px))  # decimate big patches' chips
    part = ds[names].isel(y=slice(r0, r1, step), x=slice(c0, c1, step)).compute()
    cube = np.stack([np.asarray(part[n].values, dtype=np.float64) for n in names])
    left, bottom, right, top = window_bounds(Window(c0, r0, cube.shape[2] * step, cube.shape[1] * step), transform)
    return cube, (left, right, bottom, top)


def _stretch(cubes: list[np.ndarray | None]) -> list[np.ndarray | None]:
    """2-98 % linear stretch per band, common to the before and after chips; no data -> black."""
    valid = [c for c in cubes if c is not None]
    out = []
    for cube in cubes:
        if cube is None:
            out.append(None)
            continue
        rgb = np.zeros(cube.shape[1:] + (3,))
        for b in range(3):
            values = np.concatenate([c[b][np.isfinite(c[b])] for c in valid])
            if values.size:
                lo, hi = np.percentile(values, [2, 98])
                rgb[..., b] = np.clip((cube[b] - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
        rgb[~np.isfinite(cube).all(axis=0)] = 0.0
        out.append(rgb)
    return out


def _draw_outline(ax, geom) -> None:
    for poly in getattr(geom, "geoms", [geom]):
        for ring in [poly.exterior, *poly.interiors]:
            x, y = ring.xy
            ax.plot(x, y, color="#ffff00", linewidth=1.4)


def _safe_name(patch_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(patch_id))


def write_quicklooks(
    patches,
    before_ds: xr.Dataset,
    after_ds: xr.Dataset,
    out_dir: str | os.PathLike,
    *,
    max_patches: int = 200,
    bands: dict[str, tuple[str, ...]] | None = None,
    pad_fraction: float = 0.5,
    min_pad_px: int = 16,
    max_chip_px: int = 400,
) -> list[Path]:
    """Write one before/after PNG per patch: ``out_dir/quicklooks/<patch_id>.png``.

    Parameters
    ----------
    patches : GeoDataFrame
        Patch table (:func:`rsmon.products.patches.patches_from_change`), any CRS.
    before_ds, after_ds : xarray.Dataset
        Reflectance images with dims ``("y", "x")`` and a rioxarray CRS/transform, lazy or not;
        band variables found through ``bands`` (default :data:`RGB_BANDS`). True colour, or
        NIR/red/green false colour when blue is missing.
    out_dir : path-like
        The output folder; PNGs go to its ``quicklooks`` sub-folder.
    max_patches : int
        At most this many quicklooks, largest patches first (the rest are logged as skipped).
    pad_fraction, min_pad_px : float, int
        Margin around the patch's bounding box: ``max(min_pad_px, pad_fraction * patch size)`` pixels.
    max_chip_px : int
        Chips larger than this (pixels per side) are read with a stride.

    Returns
    -------
    list of Path
        The PNGs written, in patch order.

    Raises
    ------
    InputError
        An image lacks the display bands, or the patch table has no CRS / ``patch_id``.
    """
    import rioxarray  # noqa: F401
    from matplotlib.figure import Figure

    if patches.crs is None or "patch_id" not in patches.columns:
        raise InputError("quicklooks: the patch table needs a CRS and a 'patch_id' column")
    bands = {**RGB_BANDS, **(bands or {})}
    order = patches.sort_values("area_m2", ascending=False) if "area_m2" in patches.columns else patches
    if len(order) > max_patches:
        log.warning("quicklooks: %d patches, writing the %d largest", len(order), max_patches)
        order = order.iloc[:max_patches]
    images = []
    for ds in (before_ds, after_ds):
        names, label = _band_names(ds, bands)
        images.append((ds, names, label, order.to_crs(ds.rio.crs).geometry.to_numpy()))
    folder = Path(out_dir) / "quicklooks"
    written = []
    for k, (_, row) in enumerate(order.iterrows()):
        chips, extents = [], []
        for ds, names, _, geoms in images:
            minx, miny, maxx, maxy = geoms[k].bounds
            res = abs(ds.rio.transform().a)
            pad = max(min_pad_px, math.ceil(pad_fraction * max(maxx - minx, maxy - miny) / res))
            cube, extent = _chip(ds, names, geoms[k].bounds, pad, max_chip_px)
            chips.append(cube)
            extents.append(extent)
        fig = Figure(figsize=(10, 5.6), dpi=100)
        for i, (rgb, extent, (_, _, label, geoms), when) in enumerate(
            zip(_stretch(chips), extents, images, ("before", "after"))
        ):
            ax = fig.add_subplot(1, 2, i + 1)
            date = row.get(f"{when}_date") or ""
            if rgb is None:
                ax.text(0.5, 0.5, "no image data here", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.imshow(rgb, extent=extent, interpolation="nearest")
                _draw_outline(ax, geoms[k])
                ax.set_xlim(extent[0], extent[1])
                ax.set_ylim(extent[2], extent[3])
            ax.set_title(f"{when} {date} ({label})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        area = row.get("area_m2")
        area_text = f"{area / 1e4:.2f} ha" if area is not None and np.isfinite(area) else ""
        fig.suptitle(
            f"{row['patch_id']}: {row.get('change_class', '')}, confidence {row.get('confidence', '')}, "
            f"{area_text}\n{row.get('before_date', '')} -> {row.get('after_date', '')}"
            + (f", redline {row['redline_id']}" if row.get("redline_id") else ""),
            fontsize=10,
        )
        fig.tight_layout()
        written.append(save_figure(fig, folder / f"{_safe_name(row['patch_id'])}.png"))
    log.info("wrote %d quicklooks to %s", len(written), folder)
    return written
