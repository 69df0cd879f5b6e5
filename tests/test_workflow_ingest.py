"""rsmon ingest: STAC items per input (footprint, time, platform, product, checksums), incremental
re-ingest, unreadable files listed with the reason, and the index the runner queries."""

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rsmon.provenance import sha256_file
from rsmon.workflow.ingest import ingest
from rsmon.workflow.input_index import INDEX_NAME, InputIndex, read_index_items
from workflow_scenes import BBOX, ROOT, rsmon, s5p_day, viirs_granule

TAIZHOU = ROOT / "seeds" / "landsat-cd-taizhou-nanjing" / "Taizhou"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder like an incoming area: two S5P orbits, a VIIRS pair + truth, an ENVI pair, junk."""
    root = tmp_path_factory.mktemp("incoming")
    s5p = s5p_day(root / "s5p")
    g = viirs_granule(root / "viirs")
    (root / "landsat").mkdir()
    for name in ("2000TM", "2000TM.HDR", "change.bmp"):
        shutil.copy(TAIZHOU / name, root / "landsat" / name)
    (root / "README.txt").write_text("not data\n")
    bad = root / "s5p" / s5p[0].name.replace("_08608_", "_08600_")
    bad.write_bytes(s5p[0].read_bytes()[:50_000])  # a truncated granule
    return {"root": root, "s5p": s5p, "viirs": g, "bad": bad}


def test_items_carry_footprint_time_platform_product_and_checksums(inputs, tmp_path):
    report = ingest(inputs["root"], tmp_path / "cat")
    assert len(report.new) == 4 and not report.updated
    by_collection = {i.collection: i for i in report.new}
    assert set(by_collection) == {"s5p-l2-no2", "viirs-l1b-img", "optical-landsat"}

    no2 = sorted((i for i in report.new if i.collection == "s5p-l2-no2"), key=lambda i: i.start)
    assert [Path(i.path).name for i in no2] == [p.name for p in inputs["s5p"]]
    data = json.loads(Path(no2[0].item_file).read_text())
    props = data["properties"]
    assert props["platform"] == "Sentinel-5P" and props["instruments"] == ["TROPOMI"]
    assert props["rsmon:product_type"] == "NO2" and props["rsmon:orbit"] == 8608
    assert props["start_datetime"].startswith("2019-06-12T") and props["end_datetime"] > props["start_datetime"]
    assert data["geometry"]["type"] == "Polygon" and props["rsmon:footprint_source"] == "pixel_bounds"
    w, s, e, n = data["bbox"]
    assert w < BBOX[2] and e > BBOX[0] and s < BBOX[3] and n > BBOX[1]
    asset = data["assets"]["data"]
    assert asset["file:checksum"] == "1220" + sha256_file(inputs["s5p"][0])
    assert asset["file:size"] == inputs["s5p"][0].stat().st_size

    viirs = by_collection["viirs-l1b-img"]
    assert viirs.platform == "NOAA-20" and viirs.instrument == "VIIRS" and viirs.product == "VJ102IMG"
    assert Path(viirs.path) == inputs["viirs"].img_path.resolve()
    assert str(inputs["viirs"].geo_path.resolve()) in viirs.files  # the 03IMG is an asset, not a problem
    vdata = json.loads(Path(viirs.item_file).read_text())
    assert vdata["assets"]["geolocation"]["roles"] == ["data", "geolocation"]

    landsat = by_collection["optical-landsat"]
    assert landsat.item_id == "landsat-2000TM" and landsat.platform == "Landsat 7 ETM+"
    assert landsat.start == datetime(2000, 3, 17, tzinfo=timezone.utc)
    assert any(f.endswith("2000TM.HDR") for f in landsat.files)  # the header belongs to the scene

    problems = {Path(p.path).name: p for p in report.problems}
    assert problems[inputs["bad"].name].kind == "unreadable" and problems[inputs["bad"].name].reason
    assert problems["README.txt"].kind == "unrecognised"
    assert problems["change.bmp"].kind == "unrecognised"
    assert problems[inputs["viirs"].truth_path.name].kind == "unrecognised"
    assert inputs["viirs"].geo_path.name not in problems and "2000TM.HDR" not in problems
    # STAC: collections and root link the items
    root = json.loads((tmp_path / "cat" / "catalog.json").read_text())
    assert {lk["href"] for lk in root["links"] if lk["rel"] == "child"} == {
        "./s5p-l2-no2/collection.json", "./viirs-l1b-img/collection.json", "./optical-landsat/collection.json"}


def test_reingest_skips_unchanged_and_updates_changed(inputs, tmp_path):
    root = tmp_path / "in"
    shutil.copytree(inputs["root"] / "s5p", root)
    cat = tmp_path / "cat"
    first = ingest(root, cat)
    assert len(first.new) == 2 and len(first.unreadable) == 1
    item_file = Path(first.new[0].item_file)
    stamp = item_file.stat().st_mtime_ns

    again = ingest(root, cat)
    assert again.unchanged == 2 and not again.new and not again.updated
    assert [p.new for p in again.problems] == [False]  # still listed, not news
    assert item_file.stat().st_mtime_ns == stamp

    # a new time stamp but the same bytes: the item stays
    target = Path(first.new[0].path)
    os.utime(target, ns=(stamp + 10**9, stamp + 10**9))
    touched = ingest(root, cat)
    assert touched.unchanged == 2 and not touched.updated and item_file.stat().st_mtime_ns == stamp

    # new content under the same name: the item is updated with the new checksum
    s5p_day(tmp_path / "other", seed=7)
    shutil.copy(tmp_path / "other" / target.name, target)
    changed = ingest(root, cat)
    assert [Path(i.path).name for i in changed.updated] == [target.name]
    assert changed.updated[0].sha256 != first.new[0].sha256
    assert json.loads(item_file.read_text())["assets"]["data"]["file:checksum"] == "1220" + sha256_file(target)

    # a file removed from disk leaves the index
    target.unlink()
    gone = ingest(root, cat)
    assert gone.vanished == [str(target.resolve())]
    assert len(read_index_items(cat)) == 1


def test_index_queries_by_collection_bbox_and_time(inputs, tmp_path):
    ingest(inputs["root"], tmp_path / "cat")
    with InputIndex(tmp_path / "cat") as index:
        day = (datetime(2019, 6, 12, tzinfo=timezone.utc), datetime(2019, 6, 13, tzinfo=timezone.utc))
        assert len(index.query("s5p-l2-no2", bbox=BBOX, start=day[0], end=day[1])) == 2
        assert index.query("s5p-l2-no2", bbox=(0, 0, 10, 10), start=day[0], end=day[1]) == []
        later = (datetime(2019, 6, 13, tzinfo=timezone.utc), datetime(2019, 6, 14, tzinfo=timezone.utc))
        assert index.query("s5p-l2-no2", start=later[0], end=later[1]) == []
        assert len(index.query("optical-landsat", platform="landsat 7")) == 1
        assert index.query("optical-landsat", platform="sentinel") == []
    # the index is a cache of the items: it is rebuilt from them when lost
    (tmp_path / "cat" / INDEX_NAME).unlink()
    assert len(read_index_items(tmp_path / "cat")) == 4


def test_cli_lists_unreadable_files_and_exits_3(inputs, tmp_path):
    proc = rsmon("ingest", str(inputs["root"] / "s5p"), "--catalog", str(tmp_path / "cat"))
    assert proc.returncode == 3, proc.stderr
    assert f"unreadable: {inputs['bad'].resolve()}:" in proc.stdout
    assert "2 new, 0 updated, 0 unchanged" in proc.stdout
    proc = rsmon("ingest", str(inputs["root"] / "viirs"), "--home", str(tmp_path / "home"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["catalog"] == str(tmp_path / "home" / "catalogs" / "inputs") and len(report["new"]) == 1
    missing = rsmon("ingest", str(tmp_path / "nope"), "--catalog", str(tmp_path / "cat"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr


def test_write_item_checks_what_it_stores(tmp_path):
    from rsmon.catalog import write_item
    from rsmon.errors import InputError

    item = {"type": "Feature", "stac_version": "1.1.0", "id": "x", "collection": "c", "bbox": [0, 0, 1, 1],
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
            "properties": {"datetime": "2019-06-12T00:00:00Z"}, "assets": {}, "links": []}
    path = write_item(tmp_path, item, "test items")
    assert json.loads((tmp_path / "c" / "collection.json").read_text())["description"] == "test items"
    assert {lk["rel"] for lk in json.loads(path.read_text())["links"]} == {"root", "parent", "collection"}
    with pytest.raises(InputError, match="needs bbox and datetime"):
        write_item(tmp_path, {**item, "properties": {}})
    with pytest.raises(InputError, match="it names a folder"):
        write_item(tmp_path, {**item, "id": "../x"})
