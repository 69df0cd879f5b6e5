"""Vector data: read polygon layers (redlines, reserves) and write patch tables, atomically.

Patches are written twice (issue 5, item 5):

* GeoPackage, layer ``patches``, in the table's own CRS (the change raster's CRS, e.g. UTM): the
  polygons are pixel edges there, so the file overlays ``change.tif`` exactly and keeps areas and
  coordinates free of reprojection error. Analysts' GIS reprojects on the fly.
* GeoJSON in EPSG:4326 longitude/latitude (RFC 7946, 7 decimals, about 1 cm), for the alert
  service and web clients; written with GEOS and :mod:`json` rather than OGR (the same text
  content, several times faster for thousands of patches).

Both files go through :func:`rsmon.io.atomic.atomic_output` (temporary file beside the target,
then rename): a failed write leaves no partial file and keeps an existing older one. Geometries are
written as MultiPolygon so an empty table still produces valid files with a typed layer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from rsmon.errors import FormatError, InputError, OutputError
from rsmon.io.atomic import atomic_output

log = logging.getLogger(__name__)

__all__ = ["read_vector_file", "read_vectors", "write_patches", "write_vector"]

PATCH_LAYER = "patches"


def _sibling(path: Path, suffix: str) -> Path | None:
    """The file beside ``path`` with its stem and ``suffix`` in either case, if there is one."""
    for candidate in (path.with_suffix(suffix.lower()), path.with_suffix(suffix.upper())):
        if candidate.is_file():
            return candidate
    return None


#: Character ranges a Chinese attribute text is made of besides ASCII: CJK ideographs (and
#: extension A), CJK symbols and punctuation, full-width forms.
_CJK = ((0x3000, 0x303F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF))


def _shapefile_encoding(path: Path, gdf: gpd.GeoDataFrame) -> str | None:
    """The text encoding of a shapefile that declares none (no ``.cpg``, DBF language driver byte
    0), when its text says it plainly: UTF-8 if every non-ASCII value decodes as UTF-8, else
    GB18030 (the superset of GBK, what Chinese GIS software without a ``.cpg`` writes) if every
    one is made of two-byte characters that decode into Chinese ones. None otherwise (GDAL's
    ISO-8859-1 reading is kept). Limit: ISO-8859-1 text whose accented letters all come in pairs
    ("Aéé") can pass for GB18030; a ``.cpg`` file settles any doubt.

    ``gdf`` was read as GDAL reads such a file (ISO-8859-1), so each text value's bytes are its
    characters' code points."""
    if path.suffix.lower() != ".shp" or _sibling(path, ".cpg") is not None:
        return None
    dbf = _sibling(path, ".dbf")
    if dbf is None:
        return None
    with open(dbf, "rb") as fh:
        header = fh.read(32)
    if len(header) < 32 or header[29] != 0:  # a language driver id: GDAL decodes with its code page
        return None
    texts = [col for col in gdf.columns if col != gdf.geometry.name
             and (gdf[col].dtype == object or pd.api.types.is_string_dtype(gdf[col].dtype))]
    values = [v for col in texts for v in gdf[col].dropna()] + [str(c) for c in gdf.columns]  # field names too
    try:
        raw = {v.encode("latin-1") for v in values if isinstance(v, str) and not v.isascii()}
    except UnicodeEncodeError:  # not ISO-8859-1 text: GDAL decoded it with some other code page
        return None
    if not raw:
        return None
    try:
        {b.decode("utf-8") for b in raw}
        return "UTF-8"
    except UnicodeDecodeError:
        pass
    # GB2312/GBK characters are two bytes of 0x80 and above; ISO-8859-1 accents come alone among
    # ASCII letters ("Zürich"), which GB18030 would otherwise pair with the next letter
    if any(len(run) % 2 for b in raw for run in re.findall(rb"[\x80-\xff]+", b)):
        return None
    try:
        decoded = [b.decode("gb18030") for b in raw]
    except UnicodeDecodeError:
        return None
    chinese = all(ord(ch) < 128 or any(lo <= ord(ch) <= hi for lo, hi in _CJK) for text in decoded for ch in text)
    return "GB18030" if chinese else None


def read_vector_file(path: str | os.PathLike, *, layer: str | int | None = None) -> gpd.GeoDataFrame:
    """Read a vector layer as stored (any format GDAL/pyogrio reads), its CRS possibly missing.

    A shapefile that declares no text encoding (no ``.cpg``, no DBF language driver) is read as
    UTF-8 or GB18030 when its text decodes plainly as one of them (:func:`_shapefile_encoding`;
    GDAL alone would read ISO-8859-1 and garble Chinese redline and county names), with a warning
    saying so; a ``.cpg`` file beside it, or the ``SHAPE_ENCODING`` configuration option, decides
    otherwise.

    Raises
    ------
    FormatError
        The file is missing or cannot be read as vector data (message names the file).
    """
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
        encoding = None if os.environ.get("SHAPE_ENCODING") is not None else _shapefile_encoding(Path(path), gdf)
        if encoding is not None:
            log.warning("%s: no .cpg and no code page in the .dbf; its text decodes as %s, read so (write a .cpg "
                        "file naming the encoding to decide otherwise)", path, encoding)
            gdf = gpd.read_file(path, layer=layer, engine="pyogrio", encoding=encoding)
    except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError, OSError...
        raise FormatError(f"{path}: cannot read as vector data ({exc})") from None
    return gdf


def read_vectors(path: str | os.PathLike, *, layer: str | int | None = None) -> gpd.GeoDataFrame:
    """Read a vector layer (any format GDAL/pyogrio reads: GeoPackage, shapefile, GeoJSON, ...)
    through :func:`read_vector_file` (text encodings), and require its CRS.

    Geometries are returned as stored (invalid ones included): the product that uses them decides
    what is valid (:func:`rsmon.products.patches.prepare_redlines`).

    Raises
    ------
    FormatError
        The file is missing or cannot be read as vector data (message names the file).
    InputError
        The layer has no CRS.
    """
    gdf = read_vector_file(path, layer=layer)
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

    GeoJSON is RFC 7946 (:func:`_write_geojson`); ``geometry_type="MultiPolygon"`` promotes
    polygons to multipolygons.

    Raises
    ------
    OutputError
        GDAL cannot write the file or layer, or the GeoJSON file cannot be written.
    """
    if driver == "GeoJSON":
        _write_geojson(tmp, gdf, layer=layer, promote=geometry_type == "MultiPolygon")
        return
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    tmp.unlink(missing_ok=True)  # GDAL drivers want to create the file themselves
    try:
        pyogrio.write_dataframe(gdf, tmp, layer=layer, driver=driver, geometry_type=geometry_type,
                                promote_to_multi=True)
    except (DataSourceError, DataLayerError) as exc:
        raise OutputError(f"{tmp}: cannot write {driver} ({exc})") from exc


def _json_column(values: pd.Series) -> list:
    """A column as JSON-ready Python values: non-finite numbers and missing values as None."""
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_integer_dtype(values.dtype):
        return values.astype(object).where(values.notna(), None).tolist()
    if pd.api.types.is_float_dtype(values.dtype):
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        out = array.astype(object)
        out[~np.isfinite(array)] = None
        return out.tolist()
    return [None if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA or v is pd.NaT
            else v if isinstance(v, (str, int, float, bool)) else str(v) for v in values]


def _write_geojson(tmp: Path, gdf: gpd.GeoDataFrame, *, layer: str, promote: bool) -> None:
    """RFC 7946 GeoJSON as GDAL's driver writes it with ``RFC7946=YES``: longitude/latitude,
    coordinates rounded to 7 decimals, exterior rings counter-clockwise and holes clockwise,
    non-finite numbers as null, a ``name`` member with the layer name. The geometry text comes
    from GEOS (:func:`shapely.to_geojson`) and the properties from :mod:`json`: several times
    faster than OGR's feature-by-feature writer on thousands of patches. Geometries crossing the
    antimeridian are not split (rsmon's areas never do)."""
    if gdf.crs is not None and gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs("EPSG:4326")
    geoms = np.array(gdf.geometry.to_numpy(), dtype=object)
    present = np.flatnonzero(~(shapely.is_missing(geoms) | shapely.is_empty(geoms)))
    shapes = geoms[present]
    if promote:
        single = shapely.get_type_id(shapes) == 3  # Polygon -> MultiPolygon of one part
        shapes[single] = shapely.multipolygons(shapes[single][:, np.newaxis])
    shapes = shapely.orient_polygons(shapes, exterior_cw=False)
    coords = shapely.get_coordinates(shapes)
    shapes = shapely.set_coordinates(shapes, np.round(coords, 7))
    text = np.full(len(geoms), "null", dtype=object)
    text[present] = shapely.to_geojson(shapes)
    names = [c for c in gdf.columns if c != gdf.geometry.name]
    columns = [_json_column(gdf[c]) for c in names]
    features = [
        f'{{"type": "Feature", "properties": {json.dumps(dict(zip(names, row)), ensure_ascii=False)}, '
        f'"geometry": {geom}}}'
        for row, geom in zip(zip(*columns) if columns else [()] * len(geoms), text)
    ]
    body = ",\n".join(features)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(f'{{"type": "FeatureCollection", "name": {json.dumps(layer)}, "features": [\n{body}\n]}}\n')
    except OSError as exc:
        raise OutputError(f"{tmp}: cannot write GeoJSON ({exc.strerror or exc})") from exc


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
