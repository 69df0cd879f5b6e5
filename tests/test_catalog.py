"""STAC catalog of products: item content (proj, raster, processing, provenance links), collection
extent as the union of its items, replacement without duplicates, schema validation."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pystac
import pystac.validation
import pytest
import xarray as xr
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension

import rsmon
from rsmon.catalog import (
    MEDIA_TYPE_COG,
    MEDIA_TYPE_NETCDF,
    item_path,
    load_catalog,
    load_collection,
    load_item,
    write_product_item,
)
from rsmon.errors import InputError, OutputError
from rsmon.grid import LonLatGrid
from rsmon.io.cog import write_cog
from rsmon.io.netcdf import write_netcdf
from rsmon.provenance import InputRef, Provenance, sha256_file

GRID = LonLatGrid(west=100.0, south=20.0, res=0.5, width=60, height=40)
COLLECTION = "no2-l3-day"


def make_product(grid: LonLatGrid, day: str) -> xr.Dataset:
    lon, lat = np.meshgrid(grid.lon_centers(), grid.lat_centers())
    mean = (lon * 1000.0 + lat).astype(np.float32)
    return xr.Dataset(
        {
            "tropospheric_no2_column": (
                ("lat", "lon"),
                mean,
                {"units": "mol m-2", "long_name": "tropospheric NO2 column",
                 "standard_name": "troposphere_mole_content_of_nitrogen_dioxide"},
            ),
            "weight": (("lat", "lon"), np.ones_like(mean), {"units": "1", "long_name": "sum of overlap fractions"}),
            "count": (("lat", "lon"), np.ones(grid.shape, np.int32), {"units": "1", "long_name": "number of L2 pixels"}),
        },
        coords={"lat": grid.lat_centers(), "lon": grid.lon_centers()},
        attrs={
            "product": "no2",
            "period": "day",
            "period_label": day,
            "time_coverage_start": f"{day}T00:00:00Z",
            "time_coverage_end": f"{day}T23:59:59Z",
            "cell_methods": "area: mean time: mean",
        },
    )


@pytest.fixture
def inputs(tmp_path) -> list[InputRef]:
    refs = []
    for i in range(2):
        path = tmp_path / "l2" / f"S5P_OFFL_L2__NO2____20190612T0{i}0000_orbit{i}.nc"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"fake L2 granule %d" % i)
        refs.append(InputRef.from_path(path, start=datetime(2019, 6, 12, i, tzinfo=timezone.utc)))
    return refs


def add_item(tmp_path, inputs, grid=GRID, day="2019-06-12", item_id=None) -> Path:
    ds = make_product(grid, day)
    prov = Provenance(inputs=inputs, parameters={"qa_min": 0.75, "res": grid.res})
    out = tmp_path / "products" / day
    cog_file = write_cog(out / f"no2_{day}.tif", ds, grid, prov)
    nc_file = write_netcdf(out / f"no2_{day}.nc", ds, grid, prov)
    return write_product_item(
        tmp_path / "catalog", COLLECTION, item_id or f"no2-{day}", {"cog": cog_file, "netcdf": nc_file},
        grid, ds, prov, title=f"NO2 {day}",
    )


def test_item_layout_and_links(tmp_path, inputs):
    path = add_item(tmp_path, inputs)
    assert path == item_path(tmp_path / "catalog", COLLECTION, "no2-2019-06-12")
    assert (tmp_path / "catalog" / "catalog.json").is_file()
    assert (tmp_path / "catalog" / COLLECTION / "collection.json").is_file()
    data = json.loads(path.read_text())
    derived = [lk for lk in data["links"] if lk["rel"] == "derived_from"]
    assert [lk["title"] for lk in derived] == [ref.id for ref in inputs]
    for link, ref in zip(derived, inputs):
        assert link["href"] == Path(ref.path).as_posix()
        assert link["rsmon:sha256"] == sha256_file(ref.path)
        assert link["file:checksum"] == "1220" + ref.sha256
    rels = {lk["rel"]: lk["href"] for lk in data["links"] if lk["rel"] != "derived_from"}
    assert rels == {"root": "../../catalog.json", "parent": "../collection.json", "collection": "../collection.json"}
    assert data["collection"] == COLLECTION


def test_item_properties_proj_raster_processing(tmp_path, inputs):
    path = add_item(tmp_path, inputs)
    data = json.loads(path.read_text())
    props = data["properties"]
    assert data["bbox"] == list(GRID.bounds)
    assert data["geometry"]["coordinates"][0][0] == [GRID.west, GRID.south]
    assert props["start_datetime"] == "2019-06-12T00:00:00Z"
    assert props["end_datetime"] == "2019-06-12T23:59:59Z"
    assert props["datetime"] is None
    # projection extension v2: proj:code replaces proj:epsg
    assert props["proj:code"] == "EPSG:4326"
    assert props["proj:shape"] == [GRID.height, GRID.width]
    assert props["proj:transform"] == list(GRID.transform)[:6]
    assert props["processing:level"] == "L3"
    assert props["processing:software"] == {"rsmon": rsmon.__version__}
    assert "2 input file(s)" in props["processing:lineage"]
    assert props["rsmon:parameters"] == {"qa_min": 0.75, "res": 0.5}
    assert props["title"] == "NO2 2019-06-12"

    item = load_item(tmp_path / "catalog", COLLECTION, "no2-2019-06-12")
    assert ProjectionExtension.ext(item).epsg == 4326
    cog_asset = item.assets["cog"]
    assert cog_asset.media_type == MEDIA_TYPE_COG
    assert cog_asset.roles == ["data"]
    bands = RasterExtension.ext(cog_asset).bands
    assert len(bands) == 3
    assert [b.data_type for b in bands] == ["float32"] * 3
    assert [b.nodata for b in bands] == ["nan"] * 3
    assert [b.unit for b in bands] == ["mol m-2", "1", "1"]
    assert all(b.scale == 1.0 and b.offset == 0.0 for b in bands)
    assert [b["name"] for b in cog_asset.extra_fields["bands"]] == ["tropospheric_no2_column", "weight", "count"]
    nc_asset = item.assets["netcdf"]
    assert nc_asset.media_type == MEDIA_TYPE_NETCDF
    assert "raster:bands" not in nc_asset.extra_fields
    for asset in (cog_asset, nc_asset):
        assert asset.extra_fields["file:size"] == Path(asset.get_absolute_href()).stat().st_size


def test_asset_hrefs_are_relative_and_resolve(tmp_path, inputs):
    path = add_item(tmp_path, inputs)
    data = json.loads(path.read_text())
    for key, suffix in (("cog", ".tif"), ("netcdf", ".nc")):
        href = data["assets"][key]["href"]
        assert not Path(href).is_absolute()
        target = (path.parent / href).resolve()
        assert target == (tmp_path / "products" / "2019-06-12" / f"no2_2019-06-12{suffix}").resolve()
        assert data["assets"][key]["file:checksum"] == "1220" + sha256_file(target)


def test_item_validates_against_core_stac_schema(tmp_path, inputs):
    path = add_item(tmp_path, inputs)
    root = tmp_path / "catalog"
    for file in (path, root / COLLECTION / "collection.json", root / "catalog.json"):
        data = json.loads(file.read_text())
        core_only = copy.deepcopy(data)
        core_only["stac_extensions"] = []  # extension schemas need the network; see next test
        assert pystac.validation.validate_dict(core_only, href=str(file))


def test_item_validates_with_extension_schemas(tmp_path, inputs):
    pytest.importorskip("jsonschema")
    add_item(tmp_path, inputs)
    item = load_item(tmp_path / "catalog", COLLECTION, "no2-2019-06-12")
    try:
        item.validate()
    except pystac.validation.GetSchemaError as exc:
        pytest.skip(f"extension JSON schemas are fetched from stac-extensions.github.io (no network): {exc}")


def test_collection_extent_is_the_union_of_items(tmp_path, inputs):
    add_item(tmp_path, inputs, GRID, "2019-06-12")
    east = LonLatGrid(west=110.0, south=15.0, res=0.5, width=70, height=20)  # 110..145, 15..25
    add_item(tmp_path, inputs, east, "2019-06-14")
    collection = load_collection(tmp_path / "catalog", COLLECTION)
    bbox = collection.extent.spatial.bboxes[0]
    assert bbox == [100.0, 15.0, 145.0, 40.0]
    start, end = collection.extent.temporal.intervals[0]
    assert start == datetime(2019, 6, 12, tzinfo=timezone.utc)
    assert end == datetime(2019, 6, 14, 23, 59, 59, tzinfo=timezone.utc)
    assert sorted(item.id for item in collection.get_items()) == ["no2-2019-06-12", "no2-2019-06-14"]
    catalog = load_catalog(tmp_path / "catalog")
    assert [c.id for c in catalog.get_children()] == [COLLECTION]


def test_re_adding_an_item_replaces_it_without_duplicates(tmp_path, inputs):
    add_item(tmp_path, inputs, GRID, "2019-06-12")
    wide = LonLatGrid(west=90.0, south=10.0, res=0.5, width=100, height=40)
    add_item(tmp_path, inputs, wide, "2019-06-13")
    collection_file = tmp_path / "catalog" / COLLECTION / "collection.json"
    assert json.loads(collection_file.read_text())["extent"]["spatial"]["bbox"][0] == [90.0, 10.0, 140.0, 40.0]

    # the same item id again, now on the small grid: replaced, and the extent shrinks back
    add_item(tmp_path, inputs, GRID, "2019-06-13")
    add_item(tmp_path, inputs, GRID, "2019-06-13")
    data = json.loads(collection_file.read_text())
    item_links = [lk["href"] for lk in data["links"] if lk["rel"] == "item"]
    assert sorted(item_links) == ["./no2-2019-06-12/no2-2019-06-12.json", "./no2-2019-06-13/no2-2019-06-13.json"]
    assert data["extent"]["spatial"]["bbox"][0] == list(GRID.bounds)
    root = json.loads((tmp_path / "catalog" / "catalog.json").read_text())
    assert [lk["href"] for lk in root["links"] if lk["rel"] == "child"] == [f"./{COLLECTION}/collection.json"]
    assert not list((tmp_path / "catalog").rglob("*.partial*"))


def test_bad_ids_and_unwritable_catalog(tmp_path, inputs):
    ds = make_product(GRID, "2019-06-12")
    prov = Provenance(inputs=inputs)
    with pytest.raises(InputError, match="item_id"):
        write_product_item(tmp_path / "catalog", COLLECTION, "../escape", {}, GRID, ds, prov)
    with pytest.raises(InputError, match="collection_id"):
        write_product_item(tmp_path / "catalog", "a/b", "x", {}, GRID, ds, prov)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="file.txt"):
        write_product_item(blocker / "catalog", COLLECTION, "x", {}, GRID, ds, prov)


def test_missing_time_coverage_falls_back_to_inputs_or_fails(tmp_path, inputs):
    ds = make_product(GRID, "2019-06-12")
    ds.attrs = {k: v for k, v in ds.attrs.items() if not k.startswith("time_coverage")}
    with pytest.raises(InputError, match="time_coverage"):
        write_product_item(tmp_path / "catalog", COLLECTION, "x", {}, GRID, ds, Provenance(inputs=[]))
    timed = [InputRef("/a.nc", start="2019-06-12T01:00:00Z", end="2019-06-12T02:00:00Z")]
    path = write_product_item(tmp_path / "catalog", COLLECTION, "x", {}, GRID, ds, Provenance(inputs=timed))
    props = json.loads(path.read_text())["properties"]
    assert (props["start_datetime"], props["end_datetime"]) == ("2019-06-12T01:00:00Z", "2019-06-12T02:00:00Z")


def test_load_missing_collection(tmp_path):
    with pytest.raises(InputError, match="no collection"):
        load_collection(tmp_path, "nope")
