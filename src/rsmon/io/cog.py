"""Cloud-optimised GeoTIFF writer for gridded (L3) products.

One output is one multi-band COG: band *i* is the *i*-th data variable of the product dataset.
A GeoTIFF holds one data type for all its bands, so every band is written as float32; integer
variables such as ``count`` are exact in float32 up to 2**24 = 16 777 216 (checked), and their
original dtype is kept in the band tag ``rsmon_dtype`` so a reader can cast back.

The file is built in two steps (rio-cogeo's habit): the bands are written block by block into an
uncompressed tiled GTiff (in memory, or in a temporary folder beside the target when large), then
GDAL's COG driver copies it into the :func:`~rsmon.io.atomic.atomic_output` temporary path,
compressing the tiles and computing the overviews with ``AVERAGE`` resampling (which skips
NaN/nodata pixels). The final name appears only once the COG is complete.

:func:`write_raster_cog` writes one band of any type on its own grid the same way; for ``MODE``
overviews of integer (class) rasters it computes the levels itself with a numba kernel
(:mod:`rsmon.kernels.overviews`, 25x cheaper than GDAL's mode) and the COG driver copies them.

References
----------
COG layout: https://gdal.org/drivers/raster/cog.html ; validation with
``rio_cogeo.cogeo.cog_validate`` (GDAL's ``validate_cloud_optimized_geotiff.py`` rules).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from xml.etree import ElementTree

import numpy as np
import rasterio
import rasterio.shutil
import xarray as xr
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import MemoryFile
from rasterio.windows import Window

import rsmon
from rsmon.errors import FormatError, InputError, OutputError, RsmonError
from rsmon.grid import LonLatGrid
from rsmon.io.atomic import atomic_output
from rsmon.provenance import Provenance

log = logging.getLogger(__name__)

__all__ = [
    "COGProfile",
    "write_cog",
    "write_raster_cog",
    "read_cog_tags",
    "check_dataset_on_grid",
    "iter_grid_blocks",
    "compression_supported",
    "FLOAT32_EXACT_INT_MAX",
]

#: Largest integer magnitude float32 represents exactly (2**24).
FLOAT32_EXACT_INT_MAX = 1 << 24

#: Dataset attributes copied to GeoTIFF tags (and NetCDF global attributes) when present.
PRODUCT_ATTRS = ("product", "period", "period_label", "time_coverage_start", "time_coverage_end", "cell_methods")

#: Variable attributes copied to per-band tags when present.
BAND_ATTRS = ("units", "long_name", "standard_name", "cell_methods")

PROVENANCE_TAG = "rsmon_provenance"


# --------------------------------------------------------------------------------------------
# dataset checks shared with the NetCDF writer
# --------------------------------------------------------------------------------------------
def check_dataset_on_grid(ds: xr.Dataset, grid: LonLatGrid, where: str | os.PathLike = "dataset") -> list[str]:
    """Check that ``ds`` is a product dataset laid out on ``grid``; return its data variable names.

    Parameters
    ----------
    ds : xarray.Dataset
        Data variables with dims exactly ``("lat", "lon")``; coordinates ``lat`` (cell centres,
        north to south) and ``lon`` (cell centres, west to east), degrees.
    grid : LonLatGrid
        The target grid the product was computed on.
    where : str or path-like
        Output named in error messages.

    Raises
    ------
    InputError
        No data variables, a variable with other dims, non-numeric data, a shape that differs
        from ``grid``, or ``lat``/``lon`` centres that do not match the grid (e.g. a south-to-north
        ``lat``, which would flip the image).
    """
    names = [str(n) for n in ds.data_vars]
    if not names:
        raise InputError(f"{where}: the dataset has no data variables to write")
    for name in names:
        var = ds[name]
        if var.dims != ("lat", "lon"):
            raise InputError(f"{where}: variable {name!r} has dims {var.dims}, expected ('lat', 'lon')")
        if not (np.issubdtype(var.dtype, np.number) or np.issubdtype(var.dtype, np.bool_)):
            raise InputError(f"{where}: variable {name!r} has non-numeric dtype {var.dtype}")
    shape = (ds.sizes.get("lat"), ds.sizes.get("lon"))
    if shape != grid.shape:
        raise InputError(f"{where}: dataset shape (lat, lon) = {shape} differs from the grid's {grid.shape}")
    tol = grid.res * 1e-3
    for coord, expected, order in (
        ("lat", grid.lat_centers(), "north to south"),
        ("lon", grid.lon_centers(), "west to east"),
    ):
        if coord not in ds.coords:
            raise InputError(f"{where}: coordinate {coord!r} is missing (cell centres, {order})")
        values = np.asarray(ds[coord].values, dtype=np.float64)
        if not np.allclose(values, expected, rtol=0.0, atol=tol):
            raise InputError(
                f"{where}: coordinate {coord!r} does not match the grid's cell centres ({order}, "
                f"{expected[0]:.6f} .. {expected[-1]:.6f}); got {values[0]:.6f} .. {values[-1]:.6f}"
            )
    return names


def iter_grid_blocks(
    ds: xr.Dataset, grid: LonLatGrid, names: list[str], block_size: int = 2048
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """Yield ``(row_off, col_off, {name: 2-D numpy block})`` over ``grid``, one compute per block.

    All variables of a block are computed together (one dask graph per block, never one global
    graph), so shared intermediate results (sum / weight) are computed once.
    """
    for row_off, col_off, sub in grid.blocks(block_size):
        part = ds[names].isel(
            lat=slice(row_off, row_off + sub.height), lon=slice(col_off, col_off + sub.width)
        )
        part = part.compute()
        yield row_off, col_off, {name: np.asarray(part[name].values) for name in names}


def _as_float32_band(name: str, values: np.ndarray, where: str | os.PathLike) -> np.ndarray:
    """Cast one block to float32, checking that integers stay exact."""
    if np.issubdtype(values.dtype, np.integer) and values.size:
        peak = int(np.max(np.abs(values.astype(np.int64))))
        if peak > FLOAT32_EXACT_INT_MAX:
            raise InputError(
                f"{where}: variable {name!r} holds {peak}, beyond 2**24 = {FLOAT32_EXACT_INT_MAX}, "
                "the largest integer a float32 GeoTIFF band stores exactly"
            )
    return values.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# profile
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def compression_supported(compress: str) -> bool:
    """Whether this GDAL build's GTiff driver can write ``compress`` (e.g. ``"ZSTD"``).

    Checked once per process by writing a 1x1 GeoTIFF in memory: rasterio exposes no driver
    creation-option list, and a missing codec only shows when a file is created.
    """
    try:
        with warnings.catch_warnings(), rasterio.Env(GDAL_PAM_ENABLED="NO"), MemoryFile() as mem:
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with mem.open(driver="GTiff", width=1, height=1, count=1, dtype="float32", compress=compress) as dst:
                dst.write(np.zeros((1, 1, 1), dtype=np.float32))
            with mem.open() as src:
                found = src.compression
        return found is not None and found.name.upper() == compress.upper()
    except (RasterioError, ValueError, KeyError):
        return False


@dataclass(frozen=True)
class COGProfile:
    """Creation settings for product COGs (rasterio's ``DefaultGTiffProfile`` habit).

    Attributes
    ----------
    blocksize : int
        Tile size in pixels (square tiles), default 512.
    compress : str
        Preferred codec, default ``"ZSTD"``; ``fallback_compress`` is used when the GDAL build
        lacks it.
    fallback_compress : str
        Codec used when ``compress`` is unavailable, default ``"DEFLATE"``.
    level : int or None
        Codec level (``ZSTD_LEVEL`` / ``LEVEL``); None keeps GDAL's default (ZSTD 9, DEFLATE 6).
    predictor_float, predictor_int : int
        TIFF predictor for floating-point (3) and integer (2) bands.
    overview_resampling : str
        Overview resampling, default ``"average"`` (GDAL skips nodata/NaN pixels).
    bigtiff : str
        ``BIGTIFF`` creation option, default ``"IF_SAFER"``.
    num_threads : str or int
        Threads used to compress tiles (``NUM_THREADS``), default ``"ALL_CPUS"``.
    max_memory_bytes : int
        The uncompressed staging raster is held in memory up to this size (bytes), otherwise
        written to a temporary folder beside the output.
    gdal_cachemax_mb : int
        GDAL block cache while writing (MB).
    """

    blocksize: int = 512
    compress: str = "ZSTD"
    fallback_compress: str = "DEFLATE"
    level: int | None = None
    predictor_float: int = 3
    predictor_int: int = 2
    overview_resampling: str = "average"
    bigtiff: str = "IF_SAFER"
    num_threads: str | int = "ALL_CPUS"
    max_memory_bytes: int = 256 << 20
    gdal_cachemax_mb: int = 128

    def __post_init__(self) -> None:
        if self.blocksize <= 0 or self.blocksize % 16:
            raise InputError(f"COGProfile.blocksize: expected a positive multiple of 16, got {self.blocksize}")

    def resolved_compress(self) -> str:
        """The codec actually used: ``compress`` if this GDAL build has it, else the fallback."""
        if compression_supported(self.compress):
            return self.compress.upper()
        log.warning("GDAL lacks %s compression; writing COGs with %s", self.compress, self.fallback_compress)
        return self.fallback_compress.upper()

    def predictor(self, dtype: np.dtype | str) -> int:
        """TIFF predictor for ``dtype``: 3 (floating point) or 2 (horizontal differencing)."""
        return self.predictor_float if np.issubdtype(np.dtype(dtype), np.floating) else self.predictor_int

    def overview_count(self, width: int, height: int) -> int:
        """Number of 2x overview levels until the coarsest fits in one block (rio-cogeo's rule)."""
        count = 0
        while width > self.blocksize or height > self.blocksize:
            width, height = math.ceil(width / 2), math.ceil(height / 2)
            count += 1
        return count

    def creation_options(self, dtype: np.dtype | str, width: int, height: int) -> dict[str, Any]:
        """GDAL COG driver creation options for a ``width`` x ``height`` raster of ``dtype``."""
        compress = self.resolved_compress()
        options: dict[str, Any] = {
            "BLOCKSIZE": self.blocksize,
            "COMPRESS": compress,
            "PREDICTOR": self.predictor(dtype) if self.predictor(dtype) > 1 else "NO",  # the COG driver's word for 1
            "BIGTIFF": self.bigtiff,
            "NUM_THREADS": self.num_threads,
            "OVERVIEW_RESAMPLING": self.overview_resampling.upper(),
        }
        if self.level is not None:
            options["LEVEL"] = self.level
        count = self.overview_count(width, height)
        if count:
            options["OVERVIEWS"] = "AUTO"
            options["OVERVIEW_COUNT"] = count
        else:
            options["OVERVIEWS"] = "NONE"
        return options


# --------------------------------------------------------------------------------------------
# writer
# --------------------------------------------------------------------------------------------
def _scale_offset(attrs: dict[str, Any]) -> tuple[float, float]:
    return float(attrs.get("scale_factor", 1.0)), float(attrs.get("add_offset", 0.0))


def _tag_value(value: Any) -> str | None:
    if isinstance(value, (str, int, float, np.number)) and not isinstance(value, bool):
        return str(value)
    return None


def _dataset_tags(ds: xr.Dataset, provenance: Provenance) -> dict[str, str]:
    tags: dict[str, str] = {}
    for key, value in ds.attrs.items():
        text = _tag_value(value)
        if text is not None and key != PROVENANCE_TAG:
            tags[str(key)] = text
    tags.update(
        {
            PROVENANCE_TAG: provenance.to_json(),
            "rsmon_version": rsmon.__version__,
            "rsmon_input_count": str(len(provenance.inputs)),
        }
    )
    return tags


def _band_tags(var: xr.DataArray) -> dict[str, str]:
    tags = {key: str(var.attrs[key]) for key in BAND_ATTRS if key in var.attrs}
    scale, offset = _scale_offset(var.attrs)
    tags.update({"scale": repr(scale), "offset": repr(offset), "rsmon_dtype": str(var.dtype)})
    return tags


@contextlib.contextmanager
def _staging_dataset(grid: LonLatGrid, count: int, profile: COGProfile, folder: Path) -> Iterator[Any]:
    """An uncompressed, tiled float32 GTiff to assemble the bands in before the COG copy."""
    meta = dict(
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=count,
        dtype="float32",
        crs=grid.crs,
        transform=grid.transform,
        nodata=np.nan,
        tiled=True,
        blockxsize=profile.blocksize,
        blockysize=profile.blocksize,
        interleave="pixel",
        BIGTIFF="IF_SAFER",
    )
    with _staging(meta, grid.width * grid.height * count * 4, profile, folder) as dst:
        yield dst


@contextlib.contextmanager
def _staging_paths(nbytes: int, profile: COGProfile, folder: Path) -> Iterator[Callable[[str], str]]:
    """Yield ``new_path(suffix)``, which names a new staging file: in memory (``/vsimem/``), or in a
    temporary folder beside the output when the staged ``nbytes`` exceed
    ``profile.max_memory_bytes``. Every staging file is removed on exit."""
    with contextlib.ExitStack() as stack:
        if nbytes <= profile.max_memory_bytes:
            yield lambda suffix: stack.enter_context(MemoryFile(ext=suffix)).name
        else:
            tmpdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".rsmon-cog-", dir=folder)))
            numbers = itertools.count()
            yield lambda suffix: str(tmpdir / f"staging{next(numbers)}{suffix}")


@contextlib.contextmanager
def _staging(meta: dict[str, Any], nbytes: int, profile: COGProfile, folder: Path) -> Iterator[Any]:
    """Open the staging GTiff ``meta`` for writing (:func:`_staging_paths` decides where)."""
    with _staging_paths(nbytes, profile, folder) as new_path, rasterio.open(new_path(".tif"), "w", **meta) as dst:
        yield dst


@contextlib.contextmanager
def _cog_output(path: Path, profile: COGProfile) -> Iterator[Path]:
    """GDAL settings and the :func:`atomic_output` temporary path for writing one COG; GDAL and
    OS failures become :class:`OutputError` naming ``path``."""
    try:
        # GDAL's block cache defaults to 5 % of RAM (1.2 GB here); bound it so continental grids
        # stay within a few hundred MB while the COG driver builds overviews
        with rasterio.Env(GDAL_PAM_ENABLED="NO", GDAL_CACHEMAX=profile.gdal_cachemax_mb << 20), atomic_output(path) as tmp:
            yield tmp
    except RsmonError:
        raise
    except (RasterioError, OSError) as exc:
        raise OutputError(f"{path}: cannot write the COG ({exc})") from exc


def _translate(src: Any, dst_path: Path, options: dict[str, Any]) -> None:
    """Copy the staging raster into a COG at ``dst_path`` (GDAL COG driver: tiles + overviews)."""
    rasterio.shutil.copy(src, dst_path, driver="COG", **options)


def write_cog(
    path: str | os.PathLike,
    ds: xr.Dataset,
    grid: LonLatGrid,
    provenance: Provenance,
    profile: COGProfile = COGProfile(),
) -> Path:
    """Write a product dataset as one multi-band cloud-optimised GeoTIFF, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file (``.tif``). Its folder is created if missing.
    ds : xarray.Dataset
        Product on ``grid`` (see :func:`check_dataset_on_grid`); band *i* = *i*-th data variable.
        Values may be dask-backed: they are computed one block of the grid at a time.
    grid : LonLatGrid
        The product grid; its transform and CRS (EPSG:4326) georeference the file exactly.
    provenance : Provenance
        Stored as JSON in the dataset tag ``rsmon_provenance``.
    profile : COGProfile
        Tiling, compression and overview settings.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    All bands are float32 with nodata NaN (a GeoTIFF has one data type); integer variables are
    exact up to 2**24. Band descriptions are the variable names; per band the unit, scale and
    offset are set (``units``/``scales``/``offsets``) and the tags ``units``, ``long_name``,
    ``standard_name``, ``scale``, ``offset``, ``rsmon_dtype`` written. Dataset tags carry the
    product attributes (``product``, ``period``, ``period_label``, ``time_coverage_start``,
    ``time_coverage_end``, ...), ``rsmon_provenance``, ``rsmon_version`` and ``rsmon_input_count``.

    Raises
    ------
    InputError
        ``ds`` does not lie on ``grid`` or an integer exceeds 2**24.
    OutputError
        The folder cannot be created or written, or GDAL fails to write (message names ``path``).
        On any error no file is left at ``path`` (an existing one is kept) and no temporary file.
    """
    path = Path(path)
    names = check_dataset_on_grid(ds, grid, path)
    options = profile.creation_options("float32", grid.width, grid.height)
    band_tags = [_band_tags(ds[name]) for name in names]
    scales_offsets = [_scale_offset(ds[name].attrs) for name in names]
    tags = _dataset_tags(ds, provenance)
    tags["OVERVIEW_RESAMPLING"] = profile.overview_resampling.upper()  # what rio-cogeo records
    with _cog_output(path, profile) as tmp:
        with _staging_dataset(grid, len(names), profile, tmp.parent) as src:
            for row_off, col_off, block in iter_grid_blocks(ds, grid, names):
                arrays = [_as_float32_band(name, block[name], path) for name in names]
                height, width = arrays[0].shape
                src.write(np.stack(arrays), window=Window(col_off, row_off, width, height))
            src.descriptions = tuple(names)
            src.units = tuple(t.get("units", "") for t in band_tags)
            src.scales = tuple(s for s, _ in scales_offsets)
            src.offsets = tuple(o for _, o in scales_offsets)
            for bidx, btags in enumerate(band_tags, start=1):
                src.update_tags(bidx, **btags)
            src.update_tags(**tags)
            _translate(src, tmp, options)
    log.info("wrote COG %s (%d bands, %dx%d, %s)", path, len(names), grid.width, grid.height, options["COMPRESS"])
    return path


def _own_mode_overviews(profile: COGProfile, dtype: np.dtype) -> bool:
    """Whether :func:`write_raster_cog` computes the overviews itself: ``MODE`` on integer data.

    GDAL's mode costs about 1.9 CPU-s per 10980 x 10980 uint8 raster (a Sentinel-2 tile), the
    numba kernel :func:`rsmon.kernels.overviews.mode_halve` about 0.07 s for all five levels;
    other resamplings (and mode on floats) stay with GDAL.
    """
    return profile.overview_resampling.lower() == "mode" and np.issubdtype(dtype, np.integer)


def _level_meta(meta: dict[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
    """Creation settings of a staged overview level of ``shape`` for the raster of ``meta``."""
    scale = Affine.scale(meta["width"] / shape[1], meta["height"] / shape[0])
    return {**meta, "width": shape[1], "height": shape[0], "transform": meta["transform"] @ scale}


@contextlib.contextmanager
def _with_overviews(full: str, levels: list[str]) -> Iterator[Any]:
    """Open the staged raster ``full`` with the staged rasters ``levels`` (finest first) as its
    overview levels.

    GDAL's COG driver takes precomputed overviews only from a source dataset that has them
    (``OVERVIEWS=FORCE_USE_EXISTING``), and rasterio cannot write into a GTiff's overview levels.
    So each level is staged as a tiled GTiff and the source is a VRT: GDAL's own VRT copy of
    ``full`` (metadata, nodata, band description and georeferencing come along unchanged) with one
    ``<Overview>`` element per level (GDAL VRT format, https://gdal.org/drivers/raster/vrt.html).
    Without ``levels`` the VRT has none, and GDAL's COG driver computes them.
    """
    with MemoryFile(ext=".vrt") as copy:
        rasterio.shutil.copy(full, copy.name, driver="VRT")
        root = ElementTree.fromstring(copy.read())
    band = root.find("VRTRasterBand")
    for path in levels:
        element = ElementTree.SubElement(band, "Overview")
        ElementTree.SubElement(element, "SourceFilename", relativeToVRT="0").text = path
        ElementTree.SubElement(element, "SourceBand").text = "1"
    with MemoryFile(ElementTree.tostring(root), ext=".vrt") as vrt, vrt.open() as src:
        yield src


def write_raster_cog(
    path: str | os.PathLike,
    data: xr.DataArray,
    provenance: Provenance,
    *,
    nodata: float | int | None = None,
    attrs: dict[str, Any] | None = None,
    profile: COGProfile = COGProfile(),
    block_size: int = 2048,
) -> Path:
    """Write one band on its own grid (any CRS, e.g. UTM) as a COG, keeping its data type, atomically.

    The companion of :func:`write_cog` for rasters that are not on a :class:`LonLatGrid`, such as
    integer masks on a scene's projected grid (change rasters).

    Parameters
    ----------
    path : str or path-like
        Output ``.tif``; its folder is created if missing.
    data : xarray.DataArray
        Dims ``("y", "x")`` with a rioxarray CRS and transform (``data.rio``); may be dask-backed
        (computed ``block_size`` x ``block_size`` pixels at a time). The band description is
        ``data.name``; ``units``/``long_name``/... attributes become band tags.
    provenance : Provenance
        Stored as JSON in the dataset tag ``rsmon_provenance``.
    nodata : number, optional
        Nodata value of the band.
    attrs : dict, optional
        Dataset tags (scalar values); default ``data.attrs``.
    profile : COGProfile
        Tiling, compression and overviews (use ``overview_resampling="mode"`` or ``"nearest"``
        for classes).
    block_size : int
        Pixels per side computed and staged at a time; even, so each block's 2x2 windows are
        whole.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    With ``MODE`` overviews of an integer raster the levels are computed here by
    :func:`rsmon.kernels.overviews.mode_halve` (nodata pixels do not vote, ties go to the first
    tied value in row-major order), each from the previous one, block by block while the blocks
    are staged (a block's 2x2 windows never straddle blocks while ``block_size`` is divisible by
    two at that level: 11 levels for 2048; deeper levels, a 4**11th of the raster, are computed
    from the last one whole), and staged like the raster; GDAL's COG driver then copies them
    (``OVERVIEWS=FORCE_USE_EXISTING``). Nothing of the raster's size is held in memory: a raster
    larger than ``profile.max_memory_bytes`` is written in bounded memory whatever its size.
    Otherwise GDAL's COG driver computes the overviews.

    Raises
    ------
    InputError
        Other dims, non-numeric data, no CRS, or an odd ``block_size``.
    OutputError
        The folder cannot be created or GDAL fails; no file is left at ``path`` (an existing
        one is kept).
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    from rsmon.kernels.overviews import mode_halve

    path = Path(path)
    if data.dims != ("y", "x"):
        raise InputError(f"{path}: variable {data.name!r} has dims {data.dims}, expected ('y', 'x')")
    dtype = np.dtype(data.dtype)
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise InputError(f"{path}: variable {data.name!r} has non-numeric dtype {dtype}")
    dtype = np.dtype("uint8") if dtype == np.bool_ else dtype
    if data.rio.crs is None:
        raise InputError(f"{path}: variable {data.name!r} has no CRS (rioxarray spatial_ref)")
    if block_size <= 0 or block_size % 2:
        raise InputError(f"{path}: block_size must be a positive even number, got {block_size}")
    height, width = data.shape
    meta = dict(driver="GTiff", width=width, height=height, count=1, dtype=dtype.name, crs=data.rio.crs,
                transform=data.rio.transform(), nodata=nodata, tiled=True, blockxsize=profile.blocksize,
                blockysize=profile.blocksize, BIGTIFF="IF_SAFER")
    options = profile.creation_options(dtype, width, height)
    # blocks holding only the nodata value are left out (GDAL's SPARSE_OK: readers get the nodata
    # value there), in the staged raster and in the COG: a redline run's rasters are mostly no data
    # outside the blocks near the redlines, which then cost neither compression nor bytes
    sparse = nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata))
    if sparse:
        meta["SPARSE_OK"] = "TRUE"
        options["SPARSE_OK"] = "TRUE"
    levels = options.pop("OVERVIEW_COUNT", 0) if _own_mode_overviews(profile, dtype) else 0
    if levels:
        del options["OVERVIEW_RESAMPLING"]
        options["OVERVIEWS"] = "FORCE_USE_EXISTING"
    shapes = [(height, width)]
    for _ in range(levels):
        shapes.append(((shapes[-1][0] + 1) // 2, (shapes[-1][1] + 1) // 2))
    blockwise = 0  # levels computed block by block: while the block's offsets stay even
    while blockwise < levels and block_size % (2 << blockwise) == 0:
        blockwise += 1
    tags = _dataset_tags(xr.Dataset(attrs=dict(data.attrs if attrs is None else attrs)), provenance)
    tags["OVERVIEW_RESAMPLING"] = profile.overview_resampling.upper()
    nbytes = width * height * dtype.itemsize
    nbytes += nbytes // 3 if levels else 0  # the overviews are staged too
    with _cog_output(path, profile) as tmp, _staging_paths(nbytes, profile, tmp.parent) as new_path:
        full = new_path(".tif")
        level_paths = [new_path(".tif") for _ in range(levels)]
        with contextlib.ExitStack() as stack:
            dst = stack.enter_context(rasterio.open(full, "w", **meta))
            level_dsts = [stack.enter_context(rasterio.open(p, "w", **_level_meta(meta, shape)))
                          for p, shape in zip(level_paths[:blockwise], shapes[1:])]
            for row_off in range(0, height, block_size):
                for col_off in range(0, width, block_size):
                    part = data.isel(y=slice(row_off, row_off + block_size), x=slice(col_off, col_off + block_size))
                    block = np.asarray(part.values).astype(dtype, copy=False)
                    if sparse and (block == nodata).all():
                        continue  # no data at every level of the block: nothing to write
                    dst.write(block, 1, window=Window(col_off, row_off, block.shape[1], block.shape[0]))
                    r, c = row_off, col_off
                    for level_dst in level_dsts:
                        block, r, c = mode_halve(block, nodata), r // 2, c // 2
                        level_dst.write(block, 1, window=Window(c, r, block.shape[1], block.shape[0]))
            dst.set_band_description(1, str(data.name or "band_1"))
            dst.update_tags(1, **_band_tags(data))
            dst.update_tags(**tags)
        if blockwise < levels:  # the deeper levels from the last blockwise one, each a quarter of the one before
            with rasterio.open(level_paths[blockwise - 1]) as src:
                level = src.read(1)
            for path_k, shape in zip(level_paths[blockwise:], shapes[blockwise + 1:]):
                level = mode_halve(level, nodata)
                with rasterio.open(path_k, "w", **_level_meta(meta, shape)) as level_dst:
                    level_dst.write(level, 1)
        with _with_overviews(full, level_paths) as src:
            _translate(src, tmp, options)
    log.info("wrote COG %s (%s, %dx%d, %s)", path, dtype.name, width, height, options["COMPRESS"])
    return path


# --------------------------------------------------------------------------------------------
# reading back
# --------------------------------------------------------------------------------------------
def read_cog_tags(path: str | os.PathLike) -> dict[str, Any]:
    """Read the rsmon metadata of a COG written by :func:`write_cog`.

    Returns
    -------
    dict
        ``tags`` (dataset tags, str to str), ``bands`` (one dict per band: ``name``, ``units``,
        ``scale``, ``offset``, ``tags``), ``provenance`` (:class:`~rsmon.provenance.Provenance`
        or None when the tag is absent), ``nodata``, ``dtype``, ``crs`` (WKT), ``transform``
        (affine), ``shape`` ``(height, width)``.

    Raises
    ------
    FormatError
        The file cannot be opened as a GeoTIFF or its provenance tag is not valid JSON.
    """
    try:
        with rasterio.open(path) as src:
            tags = src.tags()
            bands = [
                {
                    "name": src.descriptions[i],
                    "units": src.units[i],
                    "scale": src.scales[i],
                    "offset": src.offsets[i],
                    "tags": src.tags(i + 1),
                }
                for i in range(src.count)
            ]
            info = {
                "nodata": src.nodata,
                "dtype": src.dtypes[0],
                "crs": src.crs.to_wkt() if src.crs else None,
                "transform": src.transform,
                "shape": (src.height, src.width),
            }
    except RasterioError as exc:
        raise FormatError(f"{path}: cannot open as a GeoTIFF ({exc})") from None
    text = tags.get(PROVENANCE_TAG)
    provenance = None
    if text is not None:
        try:
            provenance = Provenance.from_json(text)
        except FormatError as exc:
            raise FormatError(f"{path}: tag {PROVENANCE_TAG}: {exc}") from None
    if provenance is None and "rsmon_version" in tags:
        log.warning("%s: rsmon COG without a %s tag", path, PROVENANCE_TAG)
    return {"tags": tags, "bands": bands, "provenance": provenance, **info}

