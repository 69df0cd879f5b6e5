"""Export the alerts of a store as GeoJSON, GeoPackage or CSV (with status, who, when, why).

GeoJSON is streamed from the store's cached feature text (EPSG:4326, RFC 7946), so it is exact
and needs no memory per alert; GeoPackage (layer ``alerts``) and CSV (a ``WKT`` geometry column,
which GDAL and QGIS recognise) go through a table. Files are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from rsmon.alerts.schema import PROPERTY_FIELDS
from rsmon.alerts.store import AlertStore
from rsmon.errors import InputError
from rsmon.io.atomic import atomic_output

__all__ = ["FORMATS", "export_alerts"]

FORMATS = ("geojson", "gpkg", "csv")


def _write_geojson(features, fh: TextIO) -> int:
    n = 0
    fh.write('{"type":"FeatureCollection","name":"alerts","features":[')
    for n, feature in enumerate(features, 1):
        fh.write(("\n" if n == 1 else ",\n") + feature)
    fh.write("\n]}\n")
    return n


def _write_csv(features, fh: TextIO) -> int:
    import shapely

    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(["id", *PROPERTY_FIELDS, "WKT"])
    n = 0
    for n, text in enumerate(features, 1):
        feature = json.loads(text)
        props = feature["properties"]
        wkt = shapely.to_wkt(shapely.geometry.shape(feature["geometry"]), rounding_precision=7, trim=True)
        writer.writerow([feature["id"], *("" if props.get(k) is None else props[k] for k in PROPERTY_FIELDS), wkt])
    return n


def _write_gpkg(features, tmp: Path) -> int:
    import geopandas as gpd

    from rsmon.io.vectors import write_vector

    parsed = [json.loads(text) for text in features]
    gdf = gpd.GeoDataFrame.from_features(parsed, crs="EPSG:4326", columns=["geometry", *PROPERTY_FIELDS])
    gdf.insert(0, "id", [f["id"] for f in parsed])
    polygonal = all(t in ("Polygon", "MultiPolygon") for t in gdf.geom_type)
    write_vector(tmp, gdf, "GPKG", layer="alerts", geometry_type="MultiPolygon" if polygonal else "Unknown")
    return len(gdf)


def export_alerts(store: AlertStore, fmt: str, output: str | os.PathLike | None = None, *,
                  redlines: frozenset[str] | None = None, statuses: frozenset[str] | None = None,
                  stdout: TextIO | None = None) -> int:
    """Write the store's alerts (optionally only some redlines/statuses) to ``output``.

    ``output`` None or ``-`` writes GeoJSON/CSV to standard output. Returns the number of alerts.

    Raises
    ------
    InputError
        Unknown format, or GeoPackage without an output file.
    OutputError
        The file cannot be written (nothing partial is left).
    """
    if fmt not in FORMATS:
        raise InputError(f"export format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    features = store.iter_features(redlines=redlines, statuses=statuses)
    to_stdout = output is None or str(output) == "-"
    if fmt == "gpkg":
        if to_stdout:
            raise InputError("export --format gpkg: a GeoPackage needs an output file (-o FILE.gpkg)")
        with atomic_output(output) as tmp:
            return _write_gpkg(features, tmp)
    writer = _write_geojson if fmt == "geojson" else _write_csv
    if to_stdout:
        return writer(features, stdout or sys.stdout)
    with atomic_output(output) as tmp, io.open(tmp, "w", encoding="utf-8", newline="") as fh:
        return writer(features, fh)
