"""Change-detection outputs: the change raster COG and before/after quicklook PNGs per patch.

``change.tif`` (issue 5, CLI contract): uint8, 1 = change, 0 = no change, 255 = no data, on the
after image's exact grid (CRS and transform of the change dataset), 512-pixel tiles, ZSTD level 1
(DEFLATE when GDAL lacks it) without predictor, overviews by ``MODE`` (the majority class, never a
value that is not in the data; computed by :func:`rsmon.kernels.overviews.mode_halve`), provenance
tags. ``change_class`` and ``confidence`` are written the same way as separate files
(:func:`write_change_cog` ``variable=``); :func:`write_change_cogs` writes several at once.

Quicklooks: ``OUTDIR/quicklooks/<patch_id>.png``, before and after chips side by side around the
patch with its outline and a title, drawn with PIL (no matplotlib figure per patch) in two threads.
Only the window around each patch is read from the (lazy) images.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds

from rsmon.errors import InputError
from rsmon.io.atomic import atomic_output
from rsmon.io.cog import COGProfile, write_raster_cog
from rsmon.provenance import Provenance

log = logging.getLogger(__name__)

__all__ = ["CHANGE_COG_PROFILE", "CHANGE_NODATA", "RGB_BANDS", "FALSE_COLOUR_BANDS", "ChangeCogJobs",
           "write_change_cog", "write_change_cogs", "write_quicklooks"]

CHANGE_NODATA = 255

#: Change-raster COG settings: categorical data, so overviews take the majority class. ZSTD level 1
#: without predictor: on the three rasters of a Sentinel-2 tile it compresses 3.9x faster than
#: GDAL's default level 9 with the horizontal predictor, for files 1.6x larger (4.2 MB instead of
#: 2.6 MB in all); the predictor would save 0.5 % for 30 % more time on these masks. This keeps the
#: writes within the 20 Mpixel/s pipeline budget.
CHANGE_COG_PROFILE = replace(COGProfile(), overview_resampling="mode", level=1, predictor_int=1)

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
        Default :data:`CHANGE_COG_PROFILE`: 512 tiles, ZSTD level 1 (or DEFLATE), no predictor,
        ``MODE`` overviews.

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


class ChangeCogJobs:
    """Several change variables to write as COGs ``folder/<variable>.tif``, shared by threads.

    Any thread calling :meth:`work` takes the next unwritten variable (in ``variables`` order, so
    the largest-first order of the caller is kept) and writes it with :func:`write_change_cog`
    (atomically), until none is left. A background thread can start the work while the caller
    does something else and then helps with what is left: the writes end about when the slower of
    the two would have ended alone, without more threads than cores competing for the CPU.

    Parameters
    ----------
    folder : str or path-like
        Output folder, created if missing.
    data : xarray.Dataset
        The change dataset (see :func:`write_change_cog`).
    provenance : Provenance
        Stored in each file's ``rsmon_provenance`` tag.
    variables : sequence of str
        Variables to write, each to ``<variable>.tif``.
    profile : COGProfile
        As for :func:`write_change_cog`.
    """

    def __init__(self, folder: str | os.PathLike, data: xr.Dataset, provenance: Provenance,
                 variables: tuple[str, ...] | list[str] = ("change", "change_class", "confidence"), *,
                 profile: COGProfile = CHANGE_COG_PROFILE) -> None:
        self.folder, self.data, self.provenance, self.profile = Path(folder), data, provenance, profile
        self.variables = list(variables)
        self._pending = list(self.variables)
        self._lock = threading.Lock()
        self._outcome: dict[str, Path | BaseException] = {}
        self._ended = threading.Condition(self._lock)
        profile.resolved_compress()  # probe the codec once, here: the probe's warnings filter is not thread-safe

    def work(self) -> None:
        """Write variables until none is left to start (failures are kept for :meth:`result`)."""
        while True:
            with self._lock:
                if not self._pending:
                    return
                name = self._pending.pop(0)
            try:
                outcome: Path | BaseException = write_change_cog(self.folder / f"{name}.tif", self.data,
                                                                 self.provenance, variable=name, profile=self.profile)
            except BaseException as exc:  # noqa: BLE001  (re-raised by result())
                outcome = exc
            with self._ended:
                self._outcome[name] = outcome
                self._ended.notify_all()

    def result(self) -> dict[str, Path]:
        """Help with the remaining writes, wait for the others, and return the path of each variable
        (in ``variables`` order); the first failure (in that order) is raised once every write has
        ended. A failed file is not left behind; the others are complete."""
        self.work()
        with self._ended:
            self._ended.wait_for(lambda: len(self._outcome) == len(self.variables))
        for name in self.variables:
            if isinstance(self._outcome[name], BaseException):
                raise self._outcome[name]
        return {name: self._outcome[name] for name in self.variables}


def write_change_cogs(
    folder: str | os.PathLike,
    data: xr.Dataset,
    provenance: Provenance,
    variables: tuple[str, ...] | list[str] = ("change", "change_class", "confidence"),
    *,
    profile: COGProfile = CHANGE_COG_PROFILE,
    threads: int | None = None,
) -> dict[str, Path]:
    """Write several variables of the change dataset as COGs ``folder/<variable>.tif``, concurrently.

    The writes are shared by ``threads`` threads (:class:`ChangeCogJobs`): the overview kernel and
    GDAL's staging, compression and copying release the GIL, so they overlap. Each write stages
    its raster in memory meanwhile (about 1.6x its size), so fewer ``threads`` use less memory.

    Parameters
    ----------
    folder, data, provenance, variables, profile
        As for :class:`ChangeCogJobs`.
    threads : int, optional
        Concurrent writes; default one per variable.

    Returns
    -------
    dict of str to pathlib.Path
        Path of each variable, in ``variables`` order.

    Raises
    ------
    InputError, OutputError
        As :func:`write_change_cog`; the first failure (in ``variables`` order) is raised once
        every write has ended. A failed file is not left behind; the others are complete.
    """
    jobs = ChangeCogJobs(folder, data, provenance, variables, profile=profile)
    helpers = max((threads or len(jobs.variables)) - 1, 0)  # the calling thread writes too
    with ThreadPoolExecutor(max(helpers, 1)) as pool:
        for _ in range(helpers):
            pool.submit(jobs.work)
        return jobs.result()


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


@dataclass(frozen=True)
class _Window:
    """A chip window of one image: rows/cols with a stride and its extent (image CRS)."""

    rows: slice
    cols: slice
    extent: tuple[float, float, float, float]  # left, right, bottom, top


@dataclass(frozen=True)
class _Image:
    """One date's image for the quicklooks: display variables, the patches in its CRS, its grid."""

    ds: xr.Dataset
    names: list[str]
    label: str
    geoms: np.ndarray
    transform: Affine
    shape: tuple[int, int]

    def window(self, k: int, pad_fraction: float, min_pad_px: int, max_px: int) -> _Window | None:
        """The window around patch ``k`` plus its margin, strided to at most ``max_px`` a side."""
        bounds = self.geoms[k].bounds
        size = max(bounds[2] - bounds[0], bounds[3] - bounds[1])
        pad = max(min_pad_px, math.ceil(pad_fraction * size / abs(self.transform.a)))
        win = from_bounds(*bounds, transform=self.transform)
        height, width = self.shape
        c0, c1 = max(math.floor(win.col_off) - pad, 0), min(math.ceil(win.col_off + win.width) + pad, width)
        r0, r1 = max(math.floor(win.row_off) - pad, 0), min(math.ceil(win.row_off + win.height) + pad, height)
        if c0 >= c1 or r0 >= r1:
            return None
        step = max(1, math.ceil(max(r1 - r0, c1 - c0) / max_px))  # decimate big patches' chips
        n_rows, n_cols = len(range(r0, r1, step)), len(range(c0, c1, step))
        left, bottom, right, top = window_bounds(Window(c0, r0, n_cols * step, n_rows * step), self.transform)
        return _Window(slice(r0, r1, step), slice(c0, c1, step), (left, right, bottom, top))


def _read_chips(images: list[_Image], windows: dict[int, list[_Window | None]], threads: int) -> dict[int, list]:
    """Chips (bands x rows x cols, float64; None outside an image) of several patches, both dates.

    An image with direct block access (one the optical reader opened and nobody changed since,
    :class:`rsmon.io.optical_raster.SceneBlocks`; one aligned or co-registered onto the after grid,
    :class:`rsmon.io.optical_align.AlignedBlocks`; a composite of such) is read window by window
    by it (only the chip's pixels and their resampling margin, no dask graph); any other image in
    one dask computation of the windows. Both in ``threads`` threads."""
    import dask

    from rsmon.io.optical_raster import BlockSource

    def direct(image: _Image, w: _Window, scene: BlockSource) -> np.ndarray:
        values = scene.read(slice(w.rows.start, w.rows.stop), slice(w.cols.start, w.cols.stop), image.names)
        return np.stack([values[n][::w.rows.step, ::w.cols.step].astype(np.float64) for n in image.names])

    scenes = [BlockSource.of(image.ds, image.names, image.ds[image.names[0]].chunks or ()) for image in images]
    jobs = [(k, i) for k, wins in windows.items() for i, w in enumerate(wins) if w is not None]
    chips: dict[tuple[int, int], np.ndarray] = {}
    lazy = [(k, i) for k, i in jobs if scenes[i] is None]
    if lazy:
        arrays = [[images[i].ds[n].data[windows[k][i].rows, windows[k][i].cols] for n in images[i].names]
                  for k, i in lazy]
        for key, parts in zip(lazy, dask.compute(arrays, scheduler="threads", num_workers=max(threads, 1))[0]):
            chips[key] = np.stack([np.asarray(a, dtype=np.float64) for a in parts])
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        own = [(k, i) for k, i in jobs if scenes[i] is not None]
        for key, chip in zip(own, pool.map(lambda ki: direct(images[ki[1]], windows[ki[0]][ki[1]], scenes[ki[1]]),
                                           own)):
            chips[key] = chip
    return {k: [chips.get((k, i)) for i in range(len(wins))] for k, wins in windows.items()}


#: At most this many values per band go into a quicklook's stretch percentiles (an even stride
#: through them): the 2 and 98 % points of a 400 x 400 chip pair move by well under one grey level
#: of 255, at a sixth of the cost of sorting all 320 000.
_STRETCH_SAMPLE = 65_536


def _stretch(cubes: list[np.ndarray | None]) -> list[np.ndarray | None]:
    """2-98 % linear stretch per band, common to the before and after chips; no data -> black (uint8 RGB)."""
    valid = [c for c in cubes if c is not None]
    limits = []  # per band: the common 2 and 98 % points, None when no finite value
    for b in range(3):
        values = np.concatenate([c[b][np.isfinite(c[b])] for c in valid]) if valid else np.empty(0)
        if values.size > _STRETCH_SAMPLE:
            values = values[::-(-values.size // _STRETCH_SAMPLE)]
        limits.append(np.percentile(values, [2, 98]) if values.size else None)
    out = []
    for cube in cubes:
        if cube is None:
            out.append(None)
            continue
        rgb = np.zeros(cube.shape[1:] + (3,), np.uint8)
        for b, limit in enumerate(limits):
            if limit is not None:
                lo, hi = limit
                scaled = (cube[b] - np.float32(lo)) * np.float32(255.0 / (hi - lo if hi > lo else 1.0))
                np.fmax(scaled, 0.0, out=scaled)  # NaN -> 0 too (black below in any case)
                np.minimum(scaled, 255.0, out=scaled)
                rgb[..., b] = np.rint(scaled)
        rgb[~np.isfinite(cube).all(axis=0)] = 0
        out.append(rgb)
    return out


def _text(value) -> str:
    """Table value for a title: '' for None / NaN (pandas may hold either)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _safe_name(patch_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(patch_id))


# Quicklook layout (pixels): 1000 x 560 like a 10 x 5.6 inch figure at 100 dpi.
_SIZE = (1000, 560)
_MARGIN, _GAP, _TITLE_H, _PANEL_TITLE_H = 12, 16, 46, 22
_OUTLINE = (255, 255, 0)
_BATCH = 16  # patches read in one dask computation, then drawn in the threads


_FONTS = threading.local()  # a FreeType face must not be used by two threads at once


def _font(size: int):
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels, one per thread; PIL's default
    font if it is missing."""
    from PIL import ImageFont

    fonts = _FONTS.__dict__.setdefault("by_size", {})
    if size not in fonts:
        try:
            import matplotlib

            path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
            fonts[size] = ImageFont.truetype(str(path), size)
        except (ImportError, OSError):
            fonts[size] = ImageFont.load_default()
    return fonts[size]


def _centred_text(draw, xy_centre, text: str, size: int) -> None:
    font = _font(size)
    draw.multiline_text(xy_centre, text, fill=(0, 0, 0), font=font, anchor="ma", align="center", spacing=3)


def _draw_panel(image, draw, box, rgb: np.ndarray | None, extent, geom, title: str) -> None:
    """One chip scaled (nearest) into ``box`` = (x0, y0, x1, y1) with the patch outline, and its title."""
    from PIL import Image

    x0, y0, x1, y1 = box
    _centred_text(draw, ((x0 + x1) / 2, y0 - _PANEL_TITLE_H + 2), title, 13)
    if rgb is None:
        draw.rectangle(box, outline=(0, 0, 0))
        _centred_text(draw, ((x0 + x1) / 2, (y0 + y1) / 2 - 8), "no image data here", 13)
        return
    rows, cols = rgb.shape[:2]
    scale = min((x1 - x0) / cols, (y1 - y0) / rows)
    width, height = max(1, round(cols * scale)), max(1, round(rows * scale))
    left, top = x0 + ((x1 - x0) - width) // 2, y0 + ((y1 - y0) - height) // 2
    image.paste(Image.fromarray(rgb, "RGB").resize((width, height), Image.NEAREST), (left, top))
    draw.rectangle((left - 1, top - 1, left + width, top + height), outline=(0, 0, 0))
    west, east, south, north = extent
    sx, sy = width / (east - west), height / (north - south)
    for poly in getattr(geom, "geoms", [geom]):
        for ring in [poly.exterior, *poly.interiors]:
            xy = np.asarray(ring.coords)[:, :2]
            points = np.column_stack([left + (xy[:, 0] - west) * sx, top + (north - xy[:, 1]) * sy])
            draw.line([tuple(p) for p in points.tolist()], fill=_OUTLINE, width=2, joint="curve")


def _quicklook_png(path: Path, row: dict, chips, extents, images: list[_Image], k: int) -> Path:
    """Compose one quicklook (title, before | after panels) and write it atomically as PNG."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", _SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    area = row.get("area_m2")
    area_text = f"{area / 1e4:.2f} ha" if area is not None and np.isfinite(area) else ""
    title = (f"{row['patch_id']}: {_text(row.get('change_class'))}, confidence {_text(row.get('confidence'))}, "
             f"{area_text}\n{_text(row.get('before_date'))} -> {_text(row.get('after_date'))}"
             + (f", redline {_text(row.get('redline_id'))}" if _text(row.get("redline_id")) else ""))
    _centred_text(draw, (_SIZE[0] / 2, 6), title, 14)
    panel_w = (_SIZE[0] - 2 * _MARGIN - _GAP) // 2
    y0 = _TITLE_H + _PANEL_TITLE_H
    for i, (rgb, extent, im, when) in enumerate(zip(chips, extents, images, ("before", "after"))):
        x0 = _MARGIN + i * (panel_w + _GAP)
        _draw_panel(image, draw, (x0, y0, x0 + panel_w, _SIZE[1] - _MARGIN), rgb, extent, im.geoms[k],
                    f"{when} {_text(row.get(f'{when}_date'))} ({im.label})")
    data = _png(image)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path


def _png(image) -> bytes:
    """An RGB PIL image as PNG bytes, encoded fast.

    libpng (through imagecodecs) with one row filter, Paeth, and zlib level 1 with the run-length
    strategy: the chips are scaled up by repeating pixels, so the rows repeat (Paeth then leaves
    zeros) and runs are what there is to find. On 30 of a simulated tile's quicklooks this took
    7.9 ms per image against 16.7 ms for Pillow at level 1 with the same strategy (Pillow tries
    every filter on every row), for files the same size (375 against 372 KB); lossless either way
    (docs/benchmarks.md). Pillow's encoder is the fallback where imagecodecs has no PNG codec."""
    import imagecodecs

    if getattr(imagecodecs, "PNG", None) is not None and imagecodecs.PNG.available:
        return bytes(imagecodecs.png_encode(np.asarray(image), level=1, strategy=imagecodecs.PNG.STRATEGY.RLE,
                                            filter=imagecodecs.PNG.FILTER.PAETH))
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
    return buffer.getvalue()


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
    threads: int = 2,
) -> list[Path]:
    """Write one before/after PNG per patch: ``out_dir/quicklooks/<patch_id>.png``.

    Each PNG (1000 x 560 pixels) shows the before and after chips side by side around the patch,
    its outline in yellow, and a title with the patch id, class, confidence, area, dates and
    redline. Only the window around each patch is read from the (lazy) images, both dates and
    16 patches in one dask computation; the PNGs are drawn with PIL and written in ``threads``
    threads, each file atomically.

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
    threads : int
        Threads reading the chips and drawing the PNGs (GDAL decoding, PIL resizing and PNG
        encoding release the GIL).

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
        images.append(_Image(ds, names, label, order.to_crs(ds.rio.crs).geometry.to_numpy(), ds.rio.transform(),
                             (ds.sizes["y"], ds.sizes["x"])))
    folder = Path(out_dir) / "quicklooks"
    rows = order.drop(columns=order.geometry.name).to_dict("records")

    def draw(k: int, windows: list[_Window | None], chips: list) -> Path:
        return _quicklook_png(folder / f"{_safe_name(rows[k]['patch_id'])}.png", rows[k], _stretch(chips),
                              [None if w is None else w.extent for w in windows], images, k)

    written = []
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        for start in range(0, len(rows), _BATCH):
            windows = {k: [image.window(k, pad_fraction, min_pad_px, max_chip_px) for image in images]
                       for k in range(start, min(start + _BATCH, len(rows)))}
            chips = _read_chips(images, windows, threads)
            written += pool.map(draw, windows, windows.values(), chips.values())
    log.info("wrote %d quicklooks to %s", len(written), folder)
    return written
