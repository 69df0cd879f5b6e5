"""STAC catalog of rsmon products (pystac): one Item per output, with its provenance.

Layout (a self-contained catalog, all links relative)::

    <catalog_dir>/catalog.json                             root Catalog "rsmon"
    <catalog_dir>/<collection_id>/collection.json          Collection, extent = union of items
    <catalog_dir>/<collection_id>/<item_id>/<item_id>.json Item

An Item carries the grid (``proj:*``), the band layout of raster assets (``raster:bands``),
processing information (``processing:*``), the file size and checksum of each asset
(``file:*``), the product parameters (``rsmon:parameters``) and one ``derived_from`` link per
input file. Every JSON file is written through :func:`~rsmon.io.atomic.atomic_output`, and the
read-modify-write of the collection and root is serialised by a lock file, so concurrent writers
on one machine do not lose each other's items.

References
----------
STAC 1.1 (https://stacspec.org); extensions projection v2.0.0, raster v1.1.0, processing v1.1.0,
file v2.1.0 (https://stac-extensions.github.io).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pystac
import xarray as xr
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, NoDataStrings, RasterBand, RasterExtension, Sampling

from rsmon.errors import FormatError, InputError
from rsmon.grid import LonLatGrid
from rsmon.io.atomic import atomic_output, check_output_dir
from rsmon.provenance import Provenance, dataset_coverage, format_datetime, parse_datetime, sha256_file

try:  # POSIX advisory locks; elsewhere the catalog update is simply not serialised.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = [
    "write_product_item",
    "write_item",
    "load_catalog",
    "load_collection",
    "load_item",
    "item_path",
    "MEDIA_TYPE_COG",
    "MEDIA_TYPE_NETCDF",
]

ROOT_ID = "rsmon"
MEDIA_TYPE_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
MEDIA_TYPE_NETCDF = "application/netcdf"
MEDIA_TYPE_JSON = "application/json"
MEDIA_TYPE_GEOJSON = "application/geo+json"

#: Media type by file suffix (lower case).
MEDIA_TYPES = {
    ".tif": MEDIA_TYPE_COG,
    ".tiff": MEDIA_TYPE_COG,
    ".nc": MEDIA_TYPE_NETCDF,
    ".nc4": MEDIA_TYPE_NETCDF,
    ".json": MEDIA_TYPE_JSON,
    ".geojson": MEDIA_TYPE_GEOJSON,
    ".gpkg": "application/geopackage+sqlite3",
    ".csv": "text/csv",
    ".html": "text/html",
    ".png": "image/png",
}

PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.1.0/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LOCK_NAME = ".rsmon-catalog.lock"


# --------------------------------------------------------------------------------------------
# paths and small helpers
# --------------------------------------------------------------------------------------------
def _check_id(value: str, name: str) -> str:
    if not isinstance(value, str) or not _SAFE_ID.match(value) or ".." in value:
        raise InputError(
            f"{name}: expected letters, digits, '.', '_' or '-' (it names a folder), got {value!r}"
        )
    return value


def item_path(catalog_dir: str | os.PathLike, collection_id: str, item_id: str) -> Path:
    """Where the Item JSON of ``item_id`` lives: ``<catalog_dir>/<collection>/<item>/<item>.json``."""
    return Path(catalog_dir) / collection_id / item_id / f"{item_id}.json"


def _multihash_sha256(hex_digest: str) -> str:
    """SHA-256 as a multihash hex string (code 0x12, length 0x20), the ``file:checksum`` form."""
    return "1220" + hex_digest.lower()


def _is_url(href: str) -> bool:
    return "://" in href


def _relative_href(target: Path, start: Path) -> str:
    """``target`` relative to folder ``start`` (POSIX separators), or absolute if impossible."""
    try:
        rel = os.path.relpath(target.resolve(), start.resolve())
    except ValueError:  # different drives on Windows
        return target.resolve().as_posix()
    rel = Path(rel).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a JSON object")
    return data


@contextlib.contextmanager
def _catalog_lock(catalog_dir: Path) -> Iterator[None]:
    """Serialise catalog updates between processes (advisory ``flock`` on a lock file)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(catalog_dir / _LOCK_NAME, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _link(rel: str, href: str, media_type: str | None = MEDIA_TYPE_JSON, title: str | None = None) -> dict[str, Any]:
    link: dict[str, Any] = {"rel": rel, "href": href}
    if media_type:
        link["type"] = media_type
    if title:
        link["title"] = title
    return link


# --------------------------------------------------------------------------------------------
# item
# --------------------------------------------------------------------------------------------
def _coverage(ds: xr.Dataset, provenance: Provenance, item_id: str) -> tuple[datetime, datetime]:
    return dataset_coverage(ds.attrs, f"item {item_id}", provenance.inputs)


def _raster_bands(ds: xr.Dataset) -> tuple[list[RasterBand], list[dict[str, Any]]]:
    """``raster:bands`` and STAC 1.1 common ``bands`` (names) for a COG of ``ds`` (all float32)."""
    raster_bands, common_bands = [], []
    for name in ds.data_vars:
        attrs = ds[name].attrs
        raster_bands.append(
            RasterBand.create(
                nodata=NoDataStrings.NAN,
                sampling=Sampling.AREA,
                data_type=DataType.FLOAT32,  # write_cog stores every band as float32
                unit=str(attrs["units"]) if "units" in attrs else None,
                scale=float(attrs.get("scale_factor", 1.0)),
                offset=float(attrs.get("add_offset", 0.0)),
            )
        )
        band = {"name": str(name)}
        if attrs.get("long_name"):
            band["description"] = str(attrs["long_name"])
        common_bands.append(band)
    return raster_bands, common_bands


def _lineage(ds: xr.Dataset, provenance: Provenance) -> str:
    product = ds.attrs.get("product", "product")
    period = ds.attrs.get("period", "")
    label = ds.attrs.get("period_label", "")
    text = (
        f"{product} L3 {period} {label}".replace("  ", " ").strip()
        + f": gridded by {provenance.software} from {len(provenance.inputs)} input file(s)"
        + " (see derived_from links)"
    )
    if ds.attrs.get("cell_methods"):
        text += f"; cell methods: {ds.attrs['cell_methods']}"
    return text + "; parameters in rsmon:parameters."


def _build_item(
    item_file: Path,
    collection_id: str,
    item_id: str,
    assets: Mapping[str, str | os.PathLike],
    grid: LonLatGrid,
    ds: xr.Dataset,
    provenance: Provenance,
    title: str | None,
) -> pystac.Item:
    west, south, east, north = grid.bounds
    geometry = {
        "type": "Polygon",
        "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
    }
    start, end = _coverage(ds, provenance, item_id)
    properties: dict[str, Any] = {
        "created": format_datetime(provenance.created),
        "processing:level": "L3",
        "processing:software": {"rsmon": provenance.software_version},
        "processing:lineage": _lineage(ds, provenance),
        "rsmon:parameters": provenance.to_dict()["parameters"],
    }
    if title:
        properties["title"] = title
    for key in ("product", "period", "period_label"):
        if key in ds.attrs:
            properties[f"rsmon:{key}"] = str(ds.attrs[key])
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=[west, south, east, north],
        datetime=None,
        start_datetime=start,
        end_datetime=end,
        properties=properties,
        collection=collection_id,
    )
    item.stac_extensions.extend([PROCESSING_SCHEMA, FILE_SCHEMA])

    proj = ProjectionExtension.ext(item, add_if_missing=True)
    t = grid.transform
    proj.apply(
        epsg=4326,
        shape=[grid.height, grid.width],
        transform=[t.a, t.b, t.c, t.d, t.e, t.f],
        bbox=[west, south, east, north],
    )

    raster_bands, common_bands = _raster_bands(ds)
    for key, asset_path in assets.items():
        asset_path = Path(asset_path)
        media_type = MEDIA_TYPES.get(asset_path.suffix.lower())
        extra: dict[str, Any] = {}
        if asset_path.is_file():
            extra["file:size"] = asset_path.stat().st_size
            extra["file:checksum"] = _multihash_sha256(sha256_file(asset_path))
        else:
            log.warning("item %s: asset %s (%s) does not exist (yet)", item_id, key, asset_path)
        asset = pystac.Asset(
            href=_relative_href(asset_path, item_file.parent),
            media_type=media_type,
            title=f"{title or item_id} ({asset_path.suffix.lstrip('.') or key})",
            roles=["data"],
            extra_fields=extra,
        )
        item.add_asset(key, asset)
        if media_type == MEDIA_TYPE_COG:
            RasterExtension.ext(item.assets[key], add_if_missing=True).apply(
                [RasterBand(dict(b.to_dict())) for b in raster_bands]
            )
            item.assets[key].extra_fields["bands"] = [dict(b) for b in common_bands]

    for ref in provenance.inputs:
        href = ref.path if _is_url(ref.path) else Path(os.path.abspath(ref.path)).as_posix()
        extra = {}
        if ref.sha256:
            extra["file:checksum"] = _multihash_sha256(ref.sha256)
            extra["rsmon:sha256"] = ref.sha256
        if ref.start is not None and ref.end is not None:
            # STAC common metadata: start_datetime and end_datetime come as a pair
            extra["start_datetime"] = format_datetime(ref.start)
            extra["end_datetime"] = format_datetime(ref.end)
        item.add_link(pystac.Link(rel="derived_from", target=href, title=ref.id, extra_fields=extra))

    for rel, href in (
        ("root", "../../catalog.json"),
        ("parent", "../collection.json"),
        ("collection", "../collection.json"),
    ):
        item.add_link(pystac.Link(rel=rel, target=href, media_type=MEDIA_TYPE_JSON))
    return item


def _item_dict(item: pystac.Item) -> dict[str, Any]:
    """The Item as JSON, with our relative link hrefs kept verbatim."""
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    data["links"] = [link.to_dict(transform_href=False) for link in item.links if link.rel != "self"]
    return data


# --------------------------------------------------------------------------------------------
# collection and root
# --------------------------------------------------------------------------------------------
def _item_extent(data: dict[str, Any]) -> tuple[list[float], str, str] | None:
    props = data.get("properties", {})
    bbox = data.get("bbox")
    start = props.get("start_datetime") or props.get("datetime")
    end = props.get("end_datetime") or props.get("datetime")
    if not bbox or not start or not end:
        return None
    return list(bbox[:4]), start, end


def _union(extents: list[tuple[list[float], str, str]]) -> dict[str, Any]:
    bboxes = np.array([e[0] for e in extents], dtype=np.float64)
    starts = [parse_datetime(e[1]) for e in extents]
    ends = [parse_datetime(e[2]) for e in extents]
    bbox = [float(bboxes[:, 0].min()), float(bboxes[:, 1].min()), float(bboxes[:, 2].max()), float(bboxes[:, 3].max())]
    return {
        "spatial": {"bbox": [bbox]},
        "temporal": {"interval": [[format_datetime(min(starts)), format_datetime(max(ends))]]},  # type: ignore[type-var]
    }


def _collection_extent_of_items(collection_dir: Path, links: list[dict[str, Any]]) -> list[tuple[list[float], str, str]]:
    extents = []
    for link in links:
        if link.get("rel") != "item":
            continue
        path = (collection_dir / link["href"]).resolve()
        try:
            extent = _item_extent(_read_json(path))
        except FormatError as exc:
            log.warning("collection %s: skipping unreadable item (%s)", collection_dir.name, exc)
            continue
        if extent is not None:
            extents.append(extent)
    return extents


def _new_collection(collection_id: str, item_extent: tuple[list[float], str, str],
                    description: str | None = None) -> dict[str, Any]:
    bbox, start, end = item_extent
    collection = pystac.Collection(
        id=collection_id,
        description=description or f"rsmon gridded products: {collection_id}",
        extent=pystac.Extent(
            pystac.SpatialExtent([bbox]),
            pystac.TemporalExtent([[parse_datetime(start), parse_datetime(end)]]),
        ),
        title=collection_id,
        license="other",
        providers=[pystac.Provider(name="rsmon", roles=[pystac.ProviderRole.PROCESSOR])],
    )
    data = collection.to_dict(include_self_link=False, transform_hrefs=False)
    data["links"] = [
        _link("root", "../catalog.json"),
        _link("parent", "../catalog.json"),
    ]
    return data


def _update_collection(collection_file: Path, collection_id: str, item_id: str, item_data: dict[str, Any],
                       description: str | None = None) -> None:
    item_extent = _item_extent(item_data)
    assert item_extent is not None
    if collection_file.exists():
        data = _read_json(collection_file)
    else:
        data = _new_collection(collection_id, item_extent, description)
    href = f"./{item_id}/{item_id}.json"
    links = data.get("links", [])
    kept = [lk for lk in links if not (lk.get("rel") == "item" and lk.get("href") == href)]
    replaced = len(kept) != len(links)
    kept.append(_link("item", href, MEDIA_TYPE_GEOJSON, item_data["properties"].get("title") or item_id))
    data["links"] = kept
    if replaced:
        # The replaced item may have been the one stretching the extent: recompute from all items.
        extents = _collection_extent_of_items(collection_file.parent, kept)
    else:
        old = data.get("extent", {})
        extents = [item_extent]
        try:
            extents.append(
                (old["spatial"]["bbox"][0], old["temporal"]["interval"][0][0], old["temporal"]["interval"][0][1])
            )
        except (KeyError, IndexError, TypeError):
            extents = _collection_extent_of_items(collection_file.parent, kept)
    data["extent"] = _union(extents or [item_extent])
    pystac.Collection.from_dict(data, preserve_dict=True)  # a malformed collection fails here, not on read
    _write_json(collection_file, data)


def _update_root(catalog_file: Path, collection_id: str) -> None:
    if catalog_file.exists():
        data = _read_json(catalog_file)
    else:
        catalog = pystac.Catalog(id=ROOT_ID, description="rsmon monitoring products", title="rsmon")
        data = catalog.to_dict(include_self_link=False, transform_hrefs=False)
        data["links"] = [_link("root", "./catalog.json")]
    href = f"./{collection_id}/collection.json"
    if any(lk.get("rel") == "child" and lk.get("href") == href for lk in data.get("links", [])):
        return
    data.setdefault("links", []).append(_link("child", href, MEDIA_TYPE_JSON, collection_id))
    _write_json(catalog_file, data)


def write_product_item(
    catalog_dir: str | os.PathLike,
    collection_id: str,
    item_id: str,
    assets: Mapping[str, str | os.PathLike],
    grid: LonLatGrid,
    ds: xr.Dataset,
    provenance: Provenance,
    title: str | None = None,
) -> Path:
    """Add (or replace) the STAC Item of one product output and update its Collection and root.

    Parameters
    ----------
    catalog_dir : str or path-like
        Root folder of the catalog (created if missing).
    collection_id : str
        Collection (and folder) name, e.g. ``"no2-l3-day"``.
    item_id : str
        Item (and folder) name, unique in the collection, e.g. ``"no2-l3-day-2019-06-12"``.
        Re-adding an existing id replaces the Item; the Collection keeps one link to it.
    assets : mapping of str to path
        Asset key to output file, e.g. ``{"cog": ".../x.tif", "netcdf": ".../x.nc"}``. Hrefs are
        written relative to the Item file; media types follow the suffix (``.tif`` COG, ``.nc``
        NetCDF). COG assets get ``raster:bands`` (float32, nodata NaN, unit, scale, offset) and
        ``bands`` (variable names). Existing files get ``file:size`` and ``file:checksum``.
    grid : LonLatGrid
        Product grid: geometry, bbox and ``proj:code``/``proj:shape``/``proj:transform``.
    ds : xarray.Dataset
        The product dataset (attributes ``time_coverage_start``/``_end`` give
        ``start_datetime``/``end_datetime``; variable attributes the band units).
    provenance : Provenance
        Inputs become ``derived_from`` links (href = input path, title = input id, checksum);
        parameters become ``rsmon:parameters``; software ``processing:software``.
    title : str, optional
        Item title.

    Returns
    -------
    pathlib.Path
        The Item JSON file.

    Raises
    ------
    InputError
        An id that cannot name a folder, or no time coverage.
    FormatError
        An existing catalog or collection JSON cannot be read.
    OutputError
        A file cannot be written (each write is atomic).
    """
    _check_id(collection_id, "collection_id")
    _check_id(item_id, "item_id")
    root_dir = check_output_dir(catalog_dir)
    item_file = item_path(root_dir, collection_id, item_id)
    item = _build_item(item_file, collection_id, item_id, assets, grid, ds, provenance, title)
    return _store_item(root_dir, collection_id, item_id, _item_dict(item))


def _store_item(root_dir: Path, collection_id: str, item_id: str, item_data: dict[str, Any],
                description: str | None = None) -> Path:
    """Write the Item JSON and update its Collection and the root, under the catalog lock."""
    item_file = item_path(root_dir, collection_id, item_id)
    with _catalog_lock(root_dir):
        _write_json(item_file, item_data)
        _update_collection(root_dir / collection_id / "collection.json", collection_id, item_id, item_data,
                           description)
        _update_root(root_dir / "catalog.json", collection_id)
    log.info("catalogued %s/%s in %s", collection_id, item_id, root_dir)
    return item_file


def write_item(catalog_dir: str | os.PathLike, item: Mapping[str, Any], description: str | None = None) -> Path:
    """Add (or replace) an Item given as STAC JSON, and update its Collection and the root.

    For items that are not gridded products (catalogued input files, job outputs such as fire
    points or change patches). The Item's ``collection`` names the Collection; its ``root``,
    ``parent`` and ``collection`` links are set here; asset hrefs are kept as given (relative
    hrefs are relative to the Item file, ``<catalog_dir>/<collection>/<id>/<id>.json``).

    Parameters
    ----------
    catalog_dir : str or path-like
        Root folder of the catalog (created if missing).
    item : mapping
        STAC Item JSON with ``id``, ``collection``, ``bbox``, ``geometry`` and ``properties``
        holding ``start_datetime``/``end_datetime`` or ``datetime``.
    description : str, optional
        Description of the Collection when this Item creates it.

    Returns
    -------
    pathlib.Path
        The Item JSON file.

    Raises
    ------
    InputError
        Ids that cannot name a folder, an Item without time, or not a valid STAC Item.
    FormatError, OutputError
        As :func:`write_product_item`.
    """
    data = json.loads(json.dumps(dict(item)))  # a deep, JSON-clean copy
    item_id = _check_id(data.get("id"), "item id")
    collection_id = _check_id(data.get("collection"), "item collection")
    if _item_extent(data) is None:
        raise InputError(f"item {item_id}: needs bbox and datetime or start_datetime/end_datetime")
    data["links"] = [lk for lk in data.get("links", []) if lk.get("rel") not in ("self", "root", "parent", "collection")]
    data["links"] += [_link("root", "../../catalog.json"), _link("parent", "../collection.json"),
                      _link("collection", "../collection.json")]
    try:
        pystac.Item.from_dict(data, preserve_dict=True)
    except Exception as exc:  # pystac raises several classes for malformed items
        raise InputError(f"item {item_id}: not a valid STAC Item ({exc})") from None
    return _store_item(check_output_dir(catalog_dir), collection_id, item_id, data, description)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def load_catalog(catalog_dir: str | os.PathLike) -> pystac.Catalog:
    """Open ``<catalog_dir>/catalog.json``.

    Raises
    ------
    InputError
        There is no catalog in ``catalog_dir``.
    """
    path = Path(catalog_dir) / "catalog.json"
    if not path.is_file():
        raise InputError(f"catalog_dir: no catalog.json in {catalog_dir}")
    return pystac.Catalog.from_file(str(path))


def load_collection(catalog_dir: str | os.PathLike, collection_id: str) -> pystac.Collection:
    """Open the Collection ``collection_id`` (its items resolve through ``get_items()``).

    Raises
    ------
    InputError
        There is no such collection in ``catalog_dir``.
    """
    path = Path(catalog_dir) / collection_id / "collection.json"
    if not path.is_file():
        raise InputError(f"collection_id: no collection {collection_id!r} in catalog {catalog_dir} ({path})")
    return pystac.Collection.from_file(str(path))


def load_item(catalog_dir: str | os.PathLike, collection_id: str, item_id: str) -> pystac.Item:
    """Open one Item by collection and item id.

    Raises
    ------
    InputError
        There is no such item.
    """
    path = item_path(catalog_dir, collection_id, item_id)
    if not path.is_file():
        raise InputError(f"item_id: no item {item_id!r} in collection {collection_id!r} ({path})")
    return pystac.Item.from_file(str(path))

