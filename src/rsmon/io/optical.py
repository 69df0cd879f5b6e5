"""Optical scenes (Sentinel-2, Landsat, ENVI and GeoTIFF stacks) as lazy xarray Datasets.

>>> from rsmon.io.optical import open_optical, align_pair, BANDS
>>> before = open_optical("S2A_MSIL2A_20230501T030551_N0509_R075_T50SMF_20230501T061234.SAFE")  # doctest: +SKIP
>>> after = open_optical("T50SMF_20230601/")                                                      # doctest: +SKIP
>>> before_on_after, after = align_pair(before, after)                                            # doctest: +SKIP

Every reader returns the same contract: variables named by :data:`BANDS` (those the product has;
red and nir at least), float32 reflectance 0-1 (surface reflectance for S2 L2A and Landsat C2 L2,
top-of-atmosphere for S2 L1C; raw digital numbers with ``attrs["radiometry"] = "dn"`` for stacks
without a calibration), NaN at fill, nodata and saturated or defective pixels; dims ``("y", "x")``
with pixel-centre coordinates, CRS and transform through rioxarray (``ds.rio.crs``,
``ds.rio.transform()``), dask chunks on 512-pixel blocks. Products with their own QA layer add the
raw layer (``scl`` uint8 or ``qa_pixel`` uint16), ``clear`` (bool, usable clear land or water) and
``water`` (bool). The readers never filter by QA beyond NaN at defective pixels: products decide.

Formats (:mod:`rsmon.io.optical_s2`, :mod:`~rsmon.io.optical_landsat`, :mod:`~rsmon.io.optical_stack`):

1. Sentinel-2 L2A: SAFE folder (or the ``.SAFE.zip`` Copernicus Data Space delivers), or a flat
   folder of per-band JP2/GeoTIFF files (``MTD_MSIL2A.xml`` optional); 20 m bands and SCL resampled
   onto the 10 m grid (bilinear / nearest), lazily.
2. Sentinel-2 L1C per-band folders (OSCD ``imgs_1``/``imgs_2``, dates from ``dates.txt``).
3. Landsat Collection 2 Level-2 folders (``*_SR_B<n>.TIF``, ``*_QA_PIXEL.TIF``, ``*_MTL.txt``), or
   the ``.tar`` USGS delivers.
4. ENVI stacks (``.hdr``/``.HDR`` sidecar), bands mapped by the header's wavelengths.
5. Any other multi-band raster with an explicit ``band_map`` (``{"red": 3, "nir": 4}``, 1-based).

Sentinel-2 and Landsat products are read in place from a ``.zip`` or plain ``.tar`` holding one
product (:mod:`rsmon.io.archive`): nothing is unpacked; the dataset's ``source`` is the archive and
``source_files`` the archive file (what provenance checksums).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import xarray as xr

from rsmon.errors import FormatError, InputError, UnsupportedFormatError
from rsmon.io.archive import ArchivePath, archive_root, is_archive_name
from rsmon.io.optical_align import align_pair, dataset_grid
from rsmon.io.optical_landsat import find_landsat_root, is_landsat_folder, landsat_layout, parse_landsat_id
from rsmon.io.optical_raster import BANDS, DEFAULT_CHUNK, OpticalLayout, build_dataset, chunk_sizes, open_raster
from rsmon.io.optical_s2 import find_s2_root, is_s2_folder, s2_layout, s2_tile_of_name
from rsmon.io.optical_stack import envi_header, envi_layout, generic_layout

log = logging.getLogger(__name__)

__all__ = ["BANDS", "align_pair", "dataset_grid", "open_optical", "optical_layout", "read_metadata", "sniff_optical"]

#: File endings that claim to be rasters: a file with one that GDAL cannot open is corrupt, not foreign.
_RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".img", ".vrt", ".bsq", ".bil", ".bip", ".dat"}


def optical_layout(path: str | Path, band_map: Mapping[str, Any] | None = None) -> OpticalLayout:
    """Sniff ``path`` and describe the product (files, grids, decoding, attributes) without reading pixels.

    Raises
    ------
    FormatError
        The path does not exist, or a file of the product is unreadable, or bands are missing.
    UnsupportedFormatError
        No optical layout fits the path.
    InputError
        A generic stack without ``band_map``, or a bad ``band_map``.
    """
    text = os.fspath(path)
    root = archive_root(text if text.startswith("/vsi") else os.path.expanduser(text))
    if root is not None:
        return _archive_layout(path, root, band_map)
    p = Path(path).expanduser()
    if not p.exists():
        raise FormatError(f"{p}: does not exist")
    if p.is_dir():
        return _folder_layout(p, band_map)
    envi = envi_header(p)
    if envi is not None:
        return envi_layout(*envi, band_map=band_map)
    root = find_landsat_root(p)  # first: a Landsat file name can look like a Sentinel-2 band (_folder_layout)
    if root is not None:
        return landsat_layout(root, band_map)
    root = find_s2_root(p)
    if root is not None:
        return s2_layout(root, band_map)
    try:
        open_raster(p).close()
    except FormatError:
        if p.suffix.lower() in _RASTER_SUFFIXES:
            raise
        raise UnsupportedFormatError(
            f"{p}: not an optical product (expected a Sentinel-2 or Landsat folder, an ENVI file with a .hdr, "
            "or a multi-band raster with band_map)") from None
    return generic_layout(p, band_map)


def _folder_layout(folder, band_map) -> OpticalLayout:
    """The layout of a product folder (on disk or in an archive). Landsat is recognised first: a
    USGS Level-2 folder also holds ``*_ST_B10.TIF`` (the thermal band), a name Sentinel-2's band
    pattern takes for band B10, while no Sentinel-2 file passes for a Landsat one."""
    if is_landsat_folder(folder):
        return landsat_layout(folder, band_map)
    if is_s2_folder(folder):
        return s2_layout(folder, band_map)
    raise UnsupportedFormatError(
        f"{folder}: not an optical product folder (expected a Sentinel-2 SAFE or per-band *_B04[_10m].jp2/.tif "
        "files, or Landsat Collection 2 *_SR_B4.TIF files)")


#: Folder depth searched for the product inside an archive (a SAFE.zip holds ``X.SAFE/`` at depth 1).
_ARCHIVE_DEPTH = 3


def _archive_product(root: ArchivePath) -> ArchivePath:
    """The one product folder inside an archive (the shallowest Sentinel-2 or Landsat folder)."""
    level = [root]
    for _ in range(_ARCHIVE_DEPTH):
        found = [node for node in level if is_s2_folder(node) or is_landsat_folder(node)]
        if len(found) > 1:
            raise InputError(f"{root}: holds {len(found)} products ({', '.join(n.name for n in found[:4])}); give an "
                             f"archive of one product, or one of them by its path ({found[0]})")
        if found:
            return found[0]
        level = [child for node in level for child in node.iterdir() if child.is_dir()]
    raise UnsupportedFormatError(
        f"{root.archive.path}: no optical product inside (expected a Sentinel-2 SAFE folder or per-band "
        "*_B04[_10m].jp2/.tif files, or Landsat Collection 2 *_SR_B4.TIF files)")


def _archive_layout(path, root: ArchivePath, band_map) -> OpticalLayout:
    """The layout of the product in an archive (or of the folder a GDAL /vsizip/ path names)."""
    if root.is_file():
        raise UnsupportedFormatError(f"{root}: give the archive or a product folder inside it, not one of its files")
    product = _archive_product(root) if not root.inner else root
    layout = _folder_layout(product, band_map)
    layout.attrs.update(source=str(path), source_files=[str(root.archive.path)], archive_member=product.inner or ".")
    return layout


def open_optical(path: str | Path, *, band_map: Mapping[str, Any] | None = None, chunks: Any = DEFAULT_CHUNK) -> xr.Dataset:
    """Open an optical scene lazily with standard band names.

    Parameters
    ----------
    path : str or Path
        A Sentinel-2 SAFE or per-band folder (or one of its band files or its MTD XML), a Landsat C2
        L2 folder (or one of its files), either product as delivered in a ``.zip`` or plain ``.tar``
        (or GDAL's ``/vsizip/`` path of a product folder inside one), an ENVI data file or header, or
        a multi-band raster.
    band_map : mapping, optional
        Standard band name -> band in the product: 1-based band number for stacks (required for a
        generic raster), band id for Sentinel-2 (``{"nir": "B8A"}``) or band number for Landsat
        (``{"nir": 5}``). Overrides the defaults (S2: B02 B03 B04 B08 B11 B12; Landsat OLI: B2-B7,
        TM/ETM+: B1-B5, B7; ENVI: by header wavelength).
    chunks : int, (rows, cols) or {"y": rows, "x": cols}
        Dask chunk size in pixels of the output grid (default 512); chunks start at multiples of it.

    Returns
    -------
    xarray.Dataset
        Lazy (dask) variables from :data:`BANDS` (float32, reflectance or DN), optional ``scl`` /
        ``qa_pixel``, ``clear``, ``water``; attrs ``sensor``, ``product``, ``datetime`` (ISO 8601 UTC,
        or a date; None when unknown), ``datetime_source``, ``source``, ``source_files``, ``radiometry``.

    Raises
    ------
    FormatError
        Missing path, unreadable or truncated file (named), missing red/nir band (named).
    UnsupportedFormatError
        No optical layout fits the path.
    InputError
        Generic stack without ``band_map``; bad ``band_map`` or ``chunks``.
    """
    chunk_sizes(chunks)
    return build_dataset(optical_layout(path, band_map), chunks)


def sniff_optical(path: str | Path) -> bool:
    """True for a Sentinel-2 or Landsat product folder or file, or an ENVI stack. Never raises.

    Generic GeoTIFFs are not claimed (they need a ``band_map``; other readers may own them)."""
    try:
        if is_archive_name(path):
            name = Path(path).name
            if Path(path).is_file() and (s2_tile_of_name(name) or parse_landsat_id(name)):
                return True  # a product's archive by its name: a corrupt one is then unreadable, not foreign
            root = archive_root(path)
            if root is None:
                return False
            try:
                _archive_product(root)  # UnsupportedFormatError (an OSError) when no product is inside
            except InputError:
                pass  # several products: recognised, and refused by name when read (ingest: unreadable)
            return True
        p = Path(path)
        if p.is_dir():
            return is_s2_folder(p) or is_landsat_folder(p)
        return p.is_file() and bool(envi_header(p) or find_s2_root(p) or find_landsat_root(p))
    except OSError:
        return False


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Scene facts for catalogs and ``rsmon info`` without reading pixel values.

    Returns
    -------
    dict
        ``reader`` ("optical"), ``path``, ``product``, ``platform`` (the sensor), ``start_datetime``
        (ISO text), ``crs``, ``dims``, ``resolution``, ``bbox`` (lon/lat W, S, E, N), ``footprint``
        (GeoJSON), ``footprint_source``, ``variables``, ``files``.
    """
    layout = optical_layout(path)
    grid = layout.grid
    footprint, bbox = _footprint(grid.crs, grid.bounds)
    variables = list(layout.bands) + ([layout.qa.name, "clear"] if layout.qa else [])
    if layout.qa is not None and layout.qa.water is not None:
        variables.append("water")
    return {
        "reader": "optical", "path": str(Path(path).resolve()), "product": layout.attrs.get("product"),
        "platform": layout.attrs.get("sensor"), "start_datetime": layout.attrs.get("datetime"),
        "crs": grid.crs, "dims": {"y": grid.height, "x": grid.width}, "resolution": grid.res[0],
        "bbox": bbox, "footprint": footprint, "footprint_source": "raster bounds" if bbox else None,
        "variables": variables, "files": layout.attrs.get("source_files") or layout.files,
    }


def _footprint(crs: str | None, bounds: tuple[float, float, float, float]):
    """Lon/lat GeoJSON polygon and bbox of projected bounds (edges densified); (None, None) without CRS."""
    if crs is None:
        return None, None
    import numpy as np
    from rasterio.warp import transform
    from shapely.geometry import Polygon

    from rsmon.io.footprint import footprint_bbox, to_geojson

    west, south, east, north = bounds
    t = np.linspace(0.0, 1.0, 11)
    xs = np.concatenate([west + (east - west) * t, np.full(11, east), east - (east - west) * t, np.full(11, west)])
    ys = np.concatenate([np.full(11, north), north - (north - south) * t, np.full(11, south), south + (north - south) * t])
    lon, lat = transform(crs, "EPSG:4326", xs.tolist(), ys.tolist())
    polygon = Polygon(zip(lon, lat))
    return to_geojson(polygon), footprint_bbox(polygon)


def _register() -> None:
    from rsmon.io.registry import ReaderSpec, register

    register(ReaderSpec(
        name="optical",
        description="optical scenes: Sentinel-2 L2A/L1C (SAFE or .SAFE.zip, per-band JP2/GeoTIFF, OSCD), "
                    "Landsat C2 L2 (folder or .tar), ENVI stacks",
        sniff=sniff_optical,
        open=open_optical,
        metadata=read_metadata,
    ))


_register()
