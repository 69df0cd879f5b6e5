"""Vector data: read polygon layers (redlines, reserves) and write patch tables, atomically.

Patches are written twice (issue 5, item 5):

* GeoPackage, layer ``patches``, in the table's own CRS (the change raster's CRS, e.g. UTM): the
  polygons are pixel edges there, so the file overlays ``change.tif`` exactly and keeps areas and
  coordinates free of reprojection error. Analysts' GIS reprojects on the fly.
* GeoJSON in EPSG:4326 longitude/latitude (RFC 7946, 7 decimals, about 1 cm), for the alert
  service and web clients.

Both files go through :func:`rsmon.io.atomic.atomic_output` (temporary file beside the target,
then rename): a failed write leaves no partial file and keeps an existing older one. Geometries are
written as MultiPolygon so an empty table still produces valid files with a typed layer.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import geopandas as gpd
import pandas as pd

from rsmon.errors import FormatError, InputError, OutputError
from rsmon.io.atomic import atomic_output

log = logging.getLogger(__name__)

__all__ = ["read_vectors", "write_patches", "write_vector"]

PATCH_LAYER = "patches"


def read_vectors(path: str | os.PathLike, *, layer: str | int | None = None) -> gpd.GeoDataFrame:
    """Read a vector layer (any format GDAL/pyogrio reads: GeoPackage, shapefile, GeoJSON, ...).

    Geometries are returned as stored (invalid ones included): the product that uses them decides
    what is valid (:func:`rsmon.products.patches.prepare_redlines`).

    Raises
    ------
    FormatError
        The file is missing or cannot be read as vector data (message names the file).
    InputError
        The layer has no CRS.
    """
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError, OSError...
        raise FormatError(f"{path}: cannot read as vector data ({exc})") from None
    if gdf.crs is None:
        raise InputError(f"{path}: the layer has no CRS (a .prj or CRS definition is needed)")
    return gdf


def _file_frame(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Columns as types every driver writes: categoricals and pandas strings as object text."""
    out = gdf.copy()
    for col in out.columns:
        if col != out.geometry.name and (
            isinstance(out[col].dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(out[col].dtype)
        ):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def write_vector(tmp: Path, gdf: gpd.GeoDataFrame, driver: str, *, layer: str,
                 geometry_type: str = "MultiPolygon") -> None:
    """Write ``gdf`` to the temporary path of an :func:`atomic_output` (GPKG or GeoJSON).

    Raises
    ------
    OutputError
        GDAL cannot write the file or layer.
    """
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    options = {"layer_options": {"RFC7946": "YES"}} if driver == "GeoJSON" else {}
    tmp.unlink(missing_ok=True)  # GDAL drivers want to create the file themselves
    try:
        pyogrio.write_dataframe(gdf, tmp, layer=layer, driver=driver, geometry_type=geometry_type,
                                promote_to_multi=True, **options)
    except (DataSourceError, DataLayerError) as exc:
        raise OutputError(f"{tmp}: cannot write {driver} ({exc})") from exc


def write_patches(
    gdf: gpd.GeoDataFrame,
    gpkg_path: str | os.PathLike | None,
    geojson_path: str | os.PathLike | None,
    *,
    layer: str = PATCH_LAYER,
) -> list[Path]:
    """Write a patch table as GeoPackage (raster CRS) and GeoJSON (EPSG:4326), atomically.

    Parameters
    ----------
    gdf : GeoDataFrame
        Patch table (:func:`rsmon.products.patches.patches_from_change`), may be empty.
    gpkg_path, geojson_path : path-like or None
        Outputs; None skips one. Both temporary files are complete before either is renamed.
    layer : str
        GeoPackage layer name (and GeoJSON ``name``), default ``patches``.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    InputError
        The table has no CRS.
    OutputError
        A folder cannot be created or written. On any error no partial file is left and existing
        files are kept.
    """
    if gdf.crs is None:
        raise InputError("patch table: no CRS")
    frame = _file_frame(gdf)
    targets = [(Path(p), driver) for p, driver in ((gpkg_path, "GPKG"), (geojson_path, "GeoJSON")) if p is not None]
    with contextlib.ExitStack() as stack:
        for path, driver in targets:
            tmp = stack.enter_context(atomic_output(path))
            write_vector(tmp, frame if driver == "GPKG" else frame.to_crs("EPSG:4326"), driver, layer=layer)
    log.info("wrote %d patches to %s", len(gdf), ", ".join(str(p) for p, _ in targets))
    return [p for p, _ in targets]
