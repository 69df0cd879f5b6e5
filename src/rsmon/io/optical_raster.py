"""Lazy reading of optical band files onto one target pixel grid (shared by the optical readers).

An optical product is a set of band files (or bands of one stack) that may sit on different grids
(Sentinel-2: 10, 20 and 60 m). A reader describes the product as an :class:`OpticalLayout`: the
target :class:`PixelGrid` and, per output variable, a :class:`BandSource` (file, band, decoding).
:func:`build_dataset` turns the layout into a lazy xarray Dataset: every 512 x 512 chunk is one dask
task that opens the file by path (a per-thread handle cache avoids re-opening), reads only the
source window under the chunk, decodes it (8/16-bit DN through a lookup table) and, when the grids
differ, resamples it (:func:`rsmon.io.optical_grid.warp_array`: bilinear for reflectance, nearest
for QA layers). Nothing is read when the Dataset is built, except the last pixel of each file (a
truncated file fails at open), so a 10980 x 10980 tile costs a few chunks of memory per worker
thread, never the whole array.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from rsmon.errors import FormatError, InputError
from rsmon.io.archive import file_stat
from rsmon.io.jp2_blocks import JP2_DRIVERS, read_by_tiles
from rsmon.io.optical_grid import PixelGrid, integer_offset, source_window, warp_array
from rsmon.io.tiff_tiles import tiled_tiff
from rsmon.kernels.decode import lut_decode

log = logging.getLogger(__name__)

__all__ = ["BANDS", "BandSource", "BlockSource", "DEFAULT_CHUNK", "OpticalLayout", "PixelGrid", "QaLayer",
           "SCENE_BLOCKS", "SceneBlocks", "WAVELENGTH_RANGES_UM",
           "band_by_wavelength", "build_dataset", "check_band_map", "check_required", "chunk_sizes", "open_raster",
           "read_window", "require_readable"]

#: Standard optical variable names, in spectral order.
BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")
#: Bands every optical dataset must have (NDVI needs them).
REQUIRED_BANDS = ("red", "nir")
#: Chunk edge (pixels) of the lazy arrays; chunks start at multiples of it (512-pixel blocks).
DEFAULT_CHUNK = 512
#: Wavelength windows (micrometres) of :data:`BANDS`, from the Landsat TM/ETM+/OLI band edges
#: (USGS Landsat band designations) widened to include the Sentinel-2 MSI centres.
WAVELENGTH_RANGES_UM: Mapping[str, tuple[float, float]] = {
    "blue": (0.45, 0.52), "green": (0.52, 0.60), "red": (0.63, 0.69),
    "nir": (0.76, 0.90), "swir1": (1.55, 1.75), "swir2": (2.08, 2.35),
}
_HANDLES_PER_THREAD = 16


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BandSource:
    """One band of one file and how to decode it.

    Attributes
    ----------
    path : str
        The raster file (any GDAL format: GeoTIFF, JPEG 2000, ENVI...).
    band : int
        1-based band index in the file.
    scale, offset : float
        Physical value = DN * scale + offset (float32 output).
    invalid : tuple of int
        DN values that become NaN (fill, nodata, saturated).
    raw : bool
        Keep the integer DN (QA layers): no decoding, nearest-neighbour resampling, ``fill`` outside
        the file's footprint.
    fill : int
        Value of a raw layer outside the footprint (SCL 0 = NO_DATA, QA_PIXEL 1 = fill bit).
    grid : PixelGrid
        The file's own grid.
    dtype : str
        The file's data type.
    """

    path: str
    band: int
    grid: PixelGrid
    dtype: str
    scale: float = 1.0
    offset: float = 0.0
    invalid: tuple[int, ...] = ()
    raw: bool = False
    fill: int = 0

    @property
    def out_dtype(self) -> np.dtype:
        return np.dtype(self.dtype) if self.raw else np.dtype(np.float32)

    def decode(self, dn: np.ndarray) -> np.ndarray:
        """DN window -> output values (float32 with NaN at ``invalid``; raw layers unchanged).

        8- and 16-bit DN go through a lookup table (one gather, :func:`rsmon.kernels.decode.lut_decode`;
        the table is computed in float64)."""
        if self.raw:
            return dn
        if dn.dtype in (np.uint8, np.uint16):
            out = np.empty(dn.shape, np.float32)
            lut_decode(dn, _decode_table(dn.dtype.str, self.scale, self.offset, tuple(self.invalid)), out)
            return out
        values = (dn.astype(np.float64) * self.scale + self.offset).astype(np.float32)
        if self.invalid:
            values[np.isin(dn, self.invalid)] = np.nan
        return values


@functools.lru_cache(maxsize=64)
def _decode_table(dtype: str, scale: float, offset: float, invalid: tuple) -> np.ndarray:
    dn = np.arange(np.iinfo(np.dtype(dtype)).max + 1)
    table = (dn * scale + offset).astype(np.float32)
    table[[int(v) for v in invalid if 0 <= v < dn.size and float(v).is_integer()]] = np.nan
    return table


@dataclass(frozen=True)
class QaLayer:
    """A product's own quality layer and what it says.

    ``clear``/``water``/``defective`` are module-level functions (picklable) of the raw QA window
    returning bool arrays; ``defective`` pixels become NaN in every reflectance band.
    """

    name: str
    source: BandSource
    clear: Callable[[np.ndarray], np.ndarray]
    water: Callable[[np.ndarray], np.ndarray] | None = None
    defective: Callable[[np.ndarray], np.ndarray] | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class OpticalLayout:
    """What a reader found: target grid, band sources, QA layer and attributes (no pixel read yet)."""

    grid: PixelGrid
    bands: dict[str, BandSource]
    band_attrs: dict[str, dict[str, Any]]
    attrs: dict[str, Any]
    qa: QaLayer | None = None

    @property
    def files(self) -> list[str]:
        paths = [src.path for src in self.bands.values()] + ([self.qa.source.path] if self.qa else [])
        return list(dict.fromkeys(paths))


# --------------------------------------------------------------------------------------------------
# File access
# --------------------------------------------------------------------------------------------------

_LOCAL = threading.local()


def open_raster(path: str | os.PathLike):
    """Open a raster with rasterio, turning GDAL's refusal into :class:`FormatError` naming the file."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        return rasterio.open(os.fspath(path))  # also GDAL's /vsizip/ path of an archive member (rsmon.io.archive)
    except (RasterioError, OSError) as exc:
        raise FormatError(f"{path}: cannot be read as a raster ({exc})") from None


def _cached_handle(path: str):
    """A rasterio dataset for ``path`` owned by this thread (rasterio handles are not thread-safe);
    re-opened when the file (or the archive holding it) changes on disk."""
    st = file_stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    cache: OrderedDict = getattr(_LOCAL, "handles", None)
    if cache is None:
        cache = _LOCAL.handles = OrderedDict()
    handle = cache.get(key)
    if handle is not None and not handle.closed:
        cache.move_to_end(key)
        return handle
    handle = open_raster(path)
    cache[key] = handle
    while len(cache) > _HANDLES_PER_THREAD:
        cache.popitem(last=False)[1].close()
    return handle


def _read_values(src: BandSource, row0: int, col0: int, height: int, width: int) -> np.ndarray:
    """Decoded values of a window of the source file; outside the file: NaN, or ``src.fill`` for raw
    layers."""
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + height, src.grid.height), min(col0 + width, src.grid.width)
    if r1 <= r0 or c1 <= c0:
        return np.full((height, width), _outside_value(src), dtype=src.out_dtype)
    try:
        tiles = tiled_tiff(src.path) if src.band == 1 else None
        if tiles is not None:  # tiled GeoTIFF: its tiles decoded here (rsmon.io.tiff_tiles)
            dn = tiles.read(r0, c0, r1 - r0, c1 - c0)
            if src.raw and not dn.flags.writeable:  # a raw layer is handed on as read
                dn = dn.copy()
        else:
            handle = _cached_handle(src.path)
            if handle.driver in JP2_DRIVERS:  # by whole code tiles, each decoded once (rsmon.io.jp2_blocks)
                dn = read_by_tiles(handle, src.path, src.band, r0, c0, r1 - r0, c1 - c0)
            else:
                dn = handle.read(src.band, window=Window(c0, r0, c1 - c0, r1 - r0))
    except (RasterioError, OSError) as exc:
        raise FormatError(f"{src.path}: band {src.band} cannot be read (truncated or corrupt file?): {exc}") from None
    if (r1 - r0, c1 - c0) == (height, width):  # inside the file: decoded as read
        return src.decode(dn)
    out = np.full((height, width), _outside_value(src), dtype=src.out_dtype)
    out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = src.decode(dn)
    return out


def _outside_value(src: BandSource):
    return src.fill if src.raw else np.nan


def read_window(src: BandSource, grid: PixelGrid, rows: slice, cols: slice) -> np.ndarray:
    """Values of ``src`` on the window ``rows`` x ``cols`` of ``grid`` (decoded, resampled if needed).

    Same grid or an integer shift of the same pixels: the DN are read as they are. Otherwise the
    source window under the target window (plus a margin) is decoded first and then resampled
    (:func:`~rsmon.io.optical_grid.warp_array`): bilinear for decoded bands (NaN excluded from the
    kernel), nearest for raw layers.
    """
    height, width = rows.stop - rows.start, cols.stop - cols.start
    shift = integer_offset(src.grid, grid)
    if shift is not None:
        return _read_values(src, shift[0] + rows.start, shift[1] + cols.start, height, width)
    dst_transform = grid.window_transform(rows.start, cols.start)
    window = source_window(src.grid, grid.crs, dst_transform, height, width)
    if window is None:
        return np.full((height, width), _outside_value(src), dtype=src.out_dtype)
    row0, col0, h, w = window
    values = _read_values(src, row0, col0, h, w)
    return warp_array(values, src.grid.window_transform(row0, col0), src.grid.crs, dst_transform, grid.crs,
                      (height, width), nearest=src.raw, fill=_outside_value(src))


def require_readable(path: str, src) -> None:
    """Read the last pixel of every band of an open raster: a file truncated before its last block
    fails here, at open time, with :class:`FormatError` naming it."""
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    try:
        src.read(window=Window(src.width - 1, src.height - 1, 1, 1))
    except (RasterioError, OSError) as exc:
        raise FormatError(f"{path}: truncated or corrupt raster, its last block cannot be read ({exc})") from None


# --------------------------------------------------------------------------------------------------
# Band maps
# --------------------------------------------------------------------------------------------------

def band_by_wavelength(wavelengths_um: Sequence[float]) -> dict[str, int]:
    """Map :data:`BANDS` to 1-based band indexes by centre wavelength (:data:`WAVELENGTH_RANGES_UM`);
    the band nearest the window's centre wins when several fall in one window."""
    found: dict[str, int] = {}
    for name, (lo, hi) in WAVELENGTH_RANGES_UM.items():
        inside = [(abs(w - (lo + hi) / 2), i + 1) for i, w in enumerate(wavelengths_um) if lo <= w <= hi]
        if inside:
            found[name] = min(inside)[1]
    return found


def check_band_map(band_map: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """Validate a user ``band_map`` (keys must be :data:`BANDS`)."""
    if band_map is None:
        return {}
    if not isinstance(band_map, Mapping):
        raise InputError(f"band_map for {where}: expected a mapping like {{'red': 3, 'nir': 4}}, got {band_map!r}")
    unknown = sorted(set(band_map) - set(BANDS))
    if unknown:
        raise InputError(f"band_map for {where}: unknown band name(s) {unknown}; expected names from {list(BANDS)}")
    return dict(band_map)


def check_required(found: Mapping[str, Any], where: str, detail: str = "") -> None:
    """FormatError naming the required bands (red, nir) that ``found`` lacks."""
    missing = [name for name in REQUIRED_BANDS if name not in found]
    if missing:
        raise FormatError(f"{where}: missing band(s) {', '.join(missing)} (red and nir are required){detail}")


# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------

class _LazyBand:
    """Array-like over one :class:`BandSource` on a target grid; ``dask.array.from_array`` slices it."""

    def __init__(self, src: BandSource, grid: PixelGrid) -> None:
        self.src, self.grid = src, grid
        self.shape = grid.shape
        self.dtype = src.out_dtype
        self.ndim = 2

    def __getitem__(self, key):
        """Read the bounding window of ``key`` (ints, slices, index arrays) and index it."""
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (2 - len(key))
        bounds, local = [], []
        for k, n in zip(key, self.shape):
            if isinstance(k, slice) and k.indices(n)[2] == 1:
                start, stop, _ = k.indices(n)
                bounds.append((start, max(start, stop)))
                local.append(slice(None))
                continue
            index = np.arange(n)[k]
            lo, hi = (int(index.min()), int(index.max()) + 1) if index.size else (0, 0)
            bounds.append((lo, hi))
            local.append(index - lo)
        (r0, r1), (c0, c1) = bounds
        if r1 <= r0 or c1 <= c0:
            block = np.empty((r1 - r0, c1 - c0), dtype=self.dtype)
        else:
            block = read_window(self.src, self.grid, slice(r0, r1), slice(c0, c1))
        return block[tuple(local)]


def chunk_sizes(chunks: Any) -> tuple[int, int]:
    """(rows, cols) of a ``chunks`` argument: int, (rows, cols), {"y": r, "x": c} or None (512)."""
    if chunks is None:
        return DEFAULT_CHUNK, DEFAULT_CHUNK
    if isinstance(chunks, Mapping):
        chunks = (chunks.get("y", DEFAULT_CHUNK), chunks.get("x", DEFAULT_CHUNK))
    if isinstance(chunks, (int, np.integer)) and not isinstance(chunks, bool):
        chunks = (chunks, chunks)
    try:
        rows, cols = (int(c) for c in chunks)
    except (TypeError, ValueError):
        raise InputError(f"chunks: expected an int, (rows, cols) or {{'y': rows, 'x': cols}}, got {chunks!r}") from None
    if rows <= 0 or cols <= 0:
        raise InputError(f"chunks: sizes must be positive, got {chunks!r}")
    return rows, cols


def _token(src: BandSource, grid: PixelGrid, chunks: tuple[int, int]) -> str:
    from dask.base import tokenize

    st = file_stat(src.path)
    return tokenize(src, grid, chunks, st.st_mtime_ns, st.st_size)


def _lazy(src: BandSource, grid: PixelGrid, chunks: tuple[int, int], name: str):
    import dask.array as dsa

    return dsa.from_array(_LazyBand(src, grid), chunks=chunks, name=f"{name}-{_token(src, grid, chunks)}",
                          lock=False, meta=np.empty((0, 0), dtype=src.out_dtype))


def _mask_defective(values: np.ndarray, bad: np.ndarray) -> np.ndarray:
    return np.where(bad, np.float32(np.nan), values) if bad.any() else values


def _coords(grid: PixelGrid) -> dict[str, tuple]:
    """Pixel-centre coordinate vectors with CF attributes (longitude/latitude on a geographic CRS)."""
    from rasterio.crs import CRS

    values = grid.coords()
    if grid.crs is not None and CRS.from_user_input(grid.crs).is_geographic:
        names = {"x": ("longitude", "degrees_east"), "y": ("latitude", "degrees_north")}
    else:
        names = {"x": ("projection_x_coordinate", "m"), "y": ("projection_y_coordinate", "m")}
    return {axis: (axis, values[axis], {"long_name": f"{axis} coordinate of pixel centre", "standard_name": name,
                                        "units": units})
            for axis, (name, units) in names.items()}


#: Key of :class:`SceneBlocks` in the ``encoding`` of a Dataset built by :func:`build_dataset`.
SCENE_BLOCKS = "rsmon_scene_blocks"


class BlockSource:
    """Direct block access of a Dataset's variables, stored in its ``encoding`` (key
    :data:`SCENE_BLOCKS`): :class:`SceneBlocks` (a reader's scene) or a product's own (a composite,
    :class:`rsmon.products.change_composite.CompositeBlocks`). Subclasses have ``chunks`` (the
    block grid), ``names`` ((variable, dask name) pairs of the arrays they stand for) and
    ``read(rows, cols, bands=None)`` (``bands``: only these bands and the QA variables are
    needed; a source may still give more)."""

    chunks: tuple[tuple[int, ...], tuple[int, ...]]
    names: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, ds: xr.Dataset, variables, chunks) -> BlockSource | None:
        """The block source of ``ds`` if ``variables`` are all its unmodified arrays on ``chunks``."""
        blocks = ds.encoding.get(SCENE_BLOCKS)
        if not isinstance(blocks, cls) or tuple(map(tuple, chunks)) != blocks.chunks:
            return None
        names = dict(blocks.names)
        for name in variables:
            data = ds[name].data if name in ds.variables else None
            if name not in names or getattr(data, "name", None) != names[name]:
                return None
        return blocks

    def read(self, rows: slice, cols: slice, bands=None) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class SceneBlocks(BlockSource):
    """Every variable of one block of a scene in one call, without the dask graph.

    :func:`build_dataset` stores one in the Dataset's ``encoding`` (key :data:`SCENE_BLOCKS`). A
    block's values are those its dask tasks compute (same functions: :func:`read_window`, the QA
    layer's masks, :func:`_mask_defective`), with the QA window read once for all of them: a
    consumer that walks a whole scene block by block (the change pass) skips materialising and
    walking ~16 tasks per block. :meth:`of` returns it only while the Dataset's variables are
    still the reader's own arrays (same dask names and chunks), so a modified variable is never
    silently replaced by the file's values.
    """

    layout: OpticalLayout
    chunks: tuple[tuple[int, ...], tuple[int, ...]]
    names: tuple[tuple[str, str], ...]

    def read(self, rows: slice, cols: slice, bands=None) -> dict[str, np.ndarray]:
        """The values on the window ``rows`` x ``cols`` (unit step) of the scene grid: every
        variable, or only the QA variables and ``bands`` when given. Values equal those of the
        lazy arrays on chunk-aligned windows; elsewhere a resampled band can differ in the last
        bit where a window holds no-data pixels (resampling normalises per window)."""
        grid, qa = self.layout.grid, self.layout.qa
        out: dict[str, np.ndarray] = {}
        bad = None
        if qa is not None:
            out[qa.name] = raw = read_window(qa.source, grid, rows, cols)
            bad = qa.defective(raw) if qa.defective is not None else None
            bad = bad if bad is not None and bad.any() else None  # checked once, not per band
            out["clear"] = qa.clear(raw)
            if qa.water is not None:
                out["water"] = qa.water(raw)
        for name, src in self.layout.bands.items():
            if bands is None or name in bands:
                values = read_window(src, grid, rows, cols)
                out[name] = values if bad is None else _mask_defective(values, bad)
        return out


def build_dataset(layout: OpticalLayout, chunks: Any = DEFAULT_CHUNK) -> xr.Dataset:
    """The lazy Dataset of a layout: bands in :data:`BANDS` order, QA layer and its masks, CRS and
    transform written with rioxarray. Reads no pixel."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    sizes = chunk_sizes(chunks)
    grid = layout.grid
    qa_data = None
    data_vars: dict[str, xr.DataArray] = {}
    defective = None
    if layout.qa is not None:
        qa_data = _lazy(layout.qa.source, grid, sizes, layout.qa.name)
        if layout.qa.defective is not None:  # one mask per block, shared by every band
            defective = qa_data.map_blocks(layout.qa.defective, dtype=bool)
    for name in BANDS:
        if name not in layout.bands:
            continue
        data = _lazy(layout.bands[name], grid, sizes, name)
        if defective is not None:
            data = data.map_blocks(_mask_defective, defective, dtype=np.float32)
        data_vars[name] = xr.DataArray(data, dims=("y", "x"), attrs=dict(layout.band_attrs.get(name, {})))
    if qa_data is not None:
        qa = layout.qa
        data_vars[qa.name] = xr.DataArray(qa_data, dims=("y", "x"), attrs=dict(qa.attrs))
        data_vars["clear"] = xr.DataArray(
            qa_data.map_blocks(qa.clear, dtype=bool), dims=("y", "x"),
            attrs={"long_name": f"clear land or water observation (from {qa.name})", "units": "1"})
        if qa.water is not None:
            data_vars["water"] = xr.DataArray(
                qa_data.map_blocks(qa.water, dtype=bool), dims=("y", "x"),
                attrs={"long_name": f"water (from {qa.name})", "units": "1"})
    ds = xr.Dataset(data_vars, coords=_coords(grid))
    ds.encoding[SCENE_BLOCKS] = SceneBlocks(
        layout, tuple(map(tuple, next(iter(data_vars.values())).chunks)) if data_vars else ((), ()),
        tuple((name, var.data.name) for name, var in data_vars.items()))
    ds.attrs = dict(layout.attrs)
    ds.attrs.setdefault("source_files", layout.files)
    if grid.crs is not None:
        ds = ds.rio.write_crs(grid.crs)
    else:
        log.warning("%s: no CRS in the file; the dataset has none", layout.attrs.get("source"))
    return ds.rio.write_transform(grid.transform)
