"""Alert store (issue 6, item 1): same behaviour on SQLite and PostgreSQL/PostGIS.

PostGIS cases run when ``RSMON_TEST_POSTGRES_URL`` names a test database (``.ci/run`` starts a
throwaway cluster); the tests drop and recreate the alert tables there.
"""

import json
import os
import sqlite3

import geopandas as gpd
import pytest
import shapely

from rsmon.alerts.errors import ConflictError, NotFoundError, PreconditionFailedError, StoreError
from rsmon.alerts.importer import import_alerts, read_alert_file
from rsmon.alerts.migrations import LATEST
from rsmon.alerts.schema import make_input
from rsmon.alerts.store import AlertQuery, open_store
from rsmon.alerts.testing import ENV_TEST_POSTGRES, open_test_store, patch_table, synthetic_alerts
from rsmon.errors import FormatError, InputError
from rsmon.io.vectors import write_patches

BACKENDS = ["sqlite", pytest.param("postgis", marks=pytest.mark.skipif(
    not os.environ.get(ENV_TEST_POSTGRES), reason=f"{ENV_TEST_POSTGRES} not set (no PostgreSQL/PostGIS server)"))]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    s = open_test_store(request.param, tmp_path)
    yield s
    s.close()


def _alert(alert_id, geom, **props):
    base = {"class": "construction", "confidence": "low", "first_detected": "2024-03-01", "redline_id": "RL-1"}
    return make_input(alert_id, geom, {**base, **props})


@pytest.fixture
def patch_files(tmp_path):
    gdf = patch_table()
    gpkg, geojson = tmp_path / "patches.gpkg", tmp_path / "patches.geojson"
    write_patches(gdf, gpkg, geojson)
    return gdf, gpkg, geojson


# ---- migrations --------------------------------------------------------------------------------
def test_migrations_applied_once_and_store_id_kept(store):
    assert store.schema_version() == LATEST
    store_id = store.store_id
    again = open_store(store.url if store.dialect == "sqlite" else os.environ[ENV_TEST_POSTGRES])
    try:
        assert again.store_id == store_id and again.schema_version() == LATEST
    finally:
        again.close()


def test_newer_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    open_store(url).close()
    with sqlite3.connect(tmp_path / "a.db") as conn:
        conn.execute("INSERT INTO rsmon_schema VALUES (99, 'from the future', '2030-01-01')")
    with pytest.raises(StoreError, match="newer than this rsmon"):
        open_store(url)


def test_bad_urls(tmp_path):
    with pytest.raises(InputError, match="sqlite:///PATH"):
        open_store(str(tmp_path / "a.db"))
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/missing/a.db")
    (tmp_path / "not.db").write_text("not a database " * 100)
    with pytest.raises(StoreError):
        open_store(f"sqlite:///{tmp_path}/not.db")


# ---- import / upsert -----------------------------------------------------------------------
def test_import_twice_changes_nothing(store, patch_files):
    gdf, gpkg, geojson = patch_files
    first = import_alerts(store, gpkg)
    assert sorted(first.inserted) == sorted(gdf["patch_id"]) and not first.updated
    seq, audits = store.last_seq(), store.audit_count()
    second = import_alerts(store, geojson)  # same alerts through the other file: nothing to do
    third = import_alerts(store, gpkg)
    assert len(second.unchanged) == len(third.unchanged) == len(gdf)
    assert not (second.inserted or second.updated or third.inserted or third.updated)
    assert (store.last_seq(), store.audit_count()) == (seq, audits)
    page = store.query(AlertQuery(limit=100))
    assert page.number_matched == len(gdf)
    alert = store.get("chg-0000000000000001")
    assert alert.version == 1 and alert.status == "new"
    props = alert.properties
    assert props["class"] == "mining_quarrying" and props["confidence"] == "high" and props["redline_id"] == "RL-2"
    lon, lat = alert.feature["geometry"]["coordinates"][0][0][0]
    assert 116.9 < lon < 117.1 and 31.5 < lat < 31.7  # UTM 50N reprojected to EPSG:4326


def test_redetection_updates_but_never_touches_status(store):
    a = _alert("a-1", shapely.box(117, 31, 117.001, 31.001))
    store.upsert([a], actor="import:run1")
    store.set_status("a-1", "under_review", actor="li")
    store.set_status("a-1", "confirmed", actor="li", reason="field visit")
    before = store.get("a-1")
    redetected = _alert("a-1", shapely.box(117, 31, 117.002, 31.001), confidence="high", first_detected="2024-04-01",
                        last_detected="2024-06-01")
    result = store.upsert([redetected], actor="import:run2")
    assert result.updated == ["a-1"]
    after = store.get("a-1")
    assert after.version == before.version + 1 and after.seq > before.seq
    props = after.properties
    assert props["confidence"] == "high" and props["last_detected"] == "2024-06-01"
    assert props["first_detected"] == "2024-03-01"  # the earlier detection date is kept
    assert props["status"] == "confirmed" and props["status_by"] == "li" and props["status_reason"] == "field visit"
    assert props["created_at"] == before.properties["created_at"]
    assert max(x for x, _ in after.feature["geometry"]["coordinates"][0][0]) == pytest.approx(117.002)
    history = store.history("a-1")
    assert [e.action for e in history] == ["create", "status", "status", "update"]
    update = history[-1]
    assert update.actor == "import:run2" and update.changes["confidence"] == ["low", "high"]
    assert update.changes["geometry"] == "changed" and "status" not in update.changes
    # an older detection arriving late is skipped, not applied
    old = _alert("a-1", shapely.box(117, 31, 117.003, 31.003), last_detected="2024-03-15")
    assert store.upsert([old], actor="import:late").stale == ["a-1"]
    assert store.get("a-1").version == after.version


def test_duplicate_ids_in_one_upsert_apply_in_order(store):
    a1 = _alert("d-1", shapely.box(117, 31, 117.001, 31.001))
    a2 = _alert("d-1", shapely.box(117, 31, 117.001, 31.001), confidence="highest", last_detected="2024-03-05")
    result = store.upsert([a1, a2], actor="t")
    assert result.inserted == ["d-1"] and result.updated == ["d-1"]
    assert store.get("d-1").properties["confidence"] == "highest"


def test_importer_minimal_file_derives_id_area_and_codes(tmp_path, store):
    gdf = gpd.GeoDataFrame({"class": ["construction", "other"], "confidence": [2, "low"],
                            "redline_id": ["RL-9", None],
                            "first_detected": ["2024-01-05", "2024-02-01T08:00:00+08:00"]},
                           geometry=[shapely.box(117, 31, 117.001, 31.001), shapely.Point(117.5, 31.5)],
                           crs="EPSG:4326")
    path = tmp_path / "minimal.geojson"
    gdf.to_file(path, driver="GeoJSON")
    alerts = read_alert_file(path)
    assert all(a.id.startswith("alr-") for a in alerts) and alerts[0].id != alerts[1].id
    assert [a.id for a in read_alert_file(path)] == [a.id for a in alerts]  # derived ids are stable
    p0, p1 = alerts[0].properties, alerts[1].properties
    assert p0["confidence"] == "high" and p0["confidence_code"] == 2 and p0["class_code"] == 1
    assert p0["area_m2"] == pytest.approx(111_320 * 110_900 * 1e-6 * 0.857, rel=0.02)
    assert p0["last_detected"] == "2024-01-05" and p1["first_detected"] == "2024-02-01"
    assert import_alerts(store, path).summary() == "2 new, 0 updated, 0 unchanged"
    assert import_alerts(store, path).summary() == "0 new, 0 updated, 2 unchanged"


@pytest.mark.parametrize("change, message", [
    ({"class": "parking"}, "class must be one of"),
    ({"confidence": "sure"}, "confidence must be one of"),
    ({"first_detected": None}, "first_detected"),
    ({"first_detected": "2024-13-01"}, "expected date"),
    ({"last_detected": "2023-01-01"}, "before first_detected"),
])
def test_importer_names_file_and_row(tmp_path, change, message):
    props = {"patch_id": "x-1", "class": "construction", "confidence": "low", "redline_id": "RL-1",
             "first_detected": "2024-01-05", **change}
    gdf = gpd.GeoDataFrame({k: [v] for k, v in props.items()}, geometry=[shapely.box(117, 31, 117.001, 31.001)],
                           crs="EPSG:4326")
    path = tmp_path / "bad.gpkg"
    gdf.to_file(path, driver="GPKG")
    with pytest.raises(InputError, match=message) as info:
        read_alert_file(path)
    assert "bad.gpkg: row 1" in str(info.value)


def test_importer_refuses_missing_columns_and_bad_files(tmp_path):
    path = tmp_path / "nocols.geojson"
    gpd.GeoDataFrame({"name": ["x"]}, geometry=[shapely.Point(1, 1)], crs="EPSG:4326").to_file(path)
    with pytest.raises(InputError, match="missing column.*class"):
        read_alert_file(path)
    with pytest.raises(FormatError):
        read_alert_file(tmp_path / "absent.gpkg")


# ---- lifecycle ---------------------------------------------------------------------------------
def test_status_lifecycle_records_who_when_why(store):
    store.upsert([_alert("s-1", shapely.box(117, 31, 117.001, 31.001))], actor="t")
    with pytest.raises(ConflictError, match="from new to confirmed"):
        store.set_status("s-1", "confirmed", actor="li")
    with pytest.raises(ConflictError, match="from new to new"):
        store.set_status("s-1", "new", actor="li")
    reviewed = store.set_status("s-1", "under_review", actor="li", if_version=1)
    assert reviewed.version == 2
    with pytest.raises(PreconditionFailedError, match="version is 2, not 1"):
        store.set_status("s-1", "dismissed", actor="wang", reason="cloud shadow", if_version=1)
    with pytest.raises(InputError, match="reason is required"):
        store.set_status("s-1", "dismissed", actor="wang")
    dismissed = store.set_status("s-1", "dismissed", actor="wang", reason="cloud shadow", if_version=2)
    props = dismissed.properties
    assert (props["status"], props["status_by"], props["status_reason"]) == ("dismissed", "wang", "cloud shadow")
    assert props["status_at"] == props["updated_at"]
    with pytest.raises(InputError, match="reason is required"):
        store.set_status("s-1", "under_review", actor="zhao")
    store.set_status("s-1", "under_review", actor="zhao", reason="field check found a quarry")
    store.set_status("s-1", "confirmed", actor="zhao")
    assert store.get("s-1").status == "confirmed"
    entries = store.history("s-1")
    assert [(e.action, e.actor, (e.changes or {}).get("status")) for e in entries] == [
        ("create", "t", None), ("status", "li", ["new", "under_review"]),
        ("status", "wang", ["under_review", "dismissed"]), ("status", "zhao", ["dismissed", "under_review"]),
        ("status", "zhao", ["under_review", "confirmed"])]
    assert entries[2].reason == "cloud shadow"
    with pytest.raises(NotFoundError):
        store.set_status("nope", "under_review", actor="x")


# ---- queries -----------------------------------------------------------------------------------
def test_redline_restriction_everywhere(store):
    store.upsert([_alert("r1", shapely.box(117, 31, 117.001, 31.001), redline_id="RL-1"),
                  _alert("r2", shapely.box(117, 31, 117.001, 31.001), redline_id="RL-2"),
                  _alert("r0", shapely.box(117, 31, 117.001, 31.001), redline_id=None)], actor="t")
    only1 = frozenset({"RL-1"})
    assert store.get("r1", redlines=only1).id == "r1"
    for call in (lambda: store.get("r2", redlines=only1), lambda: store.get("r0", redlines=only1),
                 lambda: store.history("r2", redlines=only1),
                 lambda: store.set_status("r2", "under_review", actor="x", redlines=only1)):
        with pytest.raises(NotFoundError):
            call()
    for q in (AlertQuery(limit=10), AlertQuery(feed=True), AlertQuery(bbox=(116, 30, 118, 32)),
              AlertQuery(redline_ids=frozenset({"RL-1", "RL-2"}))):
        page = store.query(q, redlines=only1)
        assert [json.loads(r.feature)["id"] for r in page.rows] == ["r1"] and page.number_matched == 1
    assert store.query(AlertQuery(redline_ids=frozenset({"RL-2"})), redlines=only1).number_matched == 0
    assert store.get("r2").id == "r2"  # unrestricted keys see everything


def test_bbox_is_exact_and_datetime_overlaps(store):
    l_shape = shapely.Polygon([(117, 31), (117.01, 31), (117.01, 31.001), (117.001, 31.001), (117.001, 31.01),
                               (117, 31.01)])
    store.upsert([
        _alert("L", l_shape, first_detected="2024-03-01", last_detected="2024-03-31"),
        _alert("far", shapely.box(118, 32, 118.001, 32.001), first_detected="2024-05-01"),
        _alert("dateline", shapely.box(179.99, 10, 179.999, 10.001), first_detected="2024-05-01"),
        _alert("pt", shapely.Point(117.005, 31.0005), first_detected="2024-01-01"),
    ], actor="t")

    def ids(**kw):
        return sorted(json.loads(r.feature)["id"] for r in store.query(AlertQuery(limit=100, **kw)).rows)

    # the box overlaps the L's bounding box but not the L itself
    assert ids(bbox=(117.005, 31.005, 117.009, 31.009)) == []
    assert ids(bbox=(117.005, 31.0, 117.009, 31.009)) == ["L", "pt"]
    assert ids(bbox=(117.0095, 31.0005, 117.02, 31.02)) == ["L"]
    assert ids(bbox=(117.01, 31.0005, 117.02, 31.02)) == ["L"]  # touching the edge intersects
    assert ids(bbox=(170, 0, -170, 20)) == ["dateline"]  # across the antimeridian
    day = __import__("rsmon.alerts.schema", fromlist=["day_number"]).day_number
    assert ids(days=(day("2024-03-15"), day("2024-03-15"))) == ["L"]
    assert ids(days=(None, day("2024-02-29"))) == ["pt"]
    assert ids(days=(day("2024-03-31"), None)) == ["L", "dateline", "far"]
    assert ids(days=(day("2024-04-01"), day("2024-04-30"))) == []
    assert ids(bbox=(116, 30, 119, 33), days=(day("2024-04-01"), None)) == ["far"]


def test_attribute_filters(store):
    store.upsert([_alert("a", shapely.box(117, 31, 117.001, 31.001), **{"class": "construction", "confidence": "low"}),
                  _alert("b", shapely.box(117, 31, 117.001, 31.001), **{"class": "other", "confidence": "high"}),
                  _alert("c", shapely.box(117, 31, 117.001, 31.001), **{"class": "other", "confidence": "highest"})],
                 actor="t")
    store.set_status("c", "under_review", actor="x")

    def ids(**kw):
        return sorted(json.loads(r.feature)["id"] for r in store.query(AlertQuery(limit=100, **kw)).rows)

    assert ids(classes=frozenset({"other"})) == ["b", "c"]
    assert ids(min_confidence=2) == ["b", "c"] and ids(min_confidence=3) == ["c"]
    assert ids(statuses=frozenset({"new"})) == ["a", "b"]
    assert ids(statuses=frozenset({"under_review"}), classes=frozenset({"other"}), min_confidence=3) == ["c"]


def test_keyset_pages_cover_everything_once_while_inserting(store):
    store.upsert(synthetic_alerts(120, seed=1), actor="t")
    seen, after, extra = [], 0, 0
    while True:
        page = store.query(AlertQuery(limit=25, after=after))
        assert page.number_matched == 120 + extra
        seen += [json.loads(r.feature)["id"] for r in page.rows]
        if not page.more:
            break
        after = page.next_after
        store.upsert(synthetic_alerts(3, seed=100 + extra, id_prefix=f"late{extra}"), actor="t")
        extra += 3
    assert len(seen) == len(set(seen)) == 120 + extra


def test_feed_positions(store):
    assert store.query(AlertQuery(feed=True)).feed_position == 0
    store.upsert(synthetic_alerts(5, seed=2), actor="t")
    page = store.query(AlertQuery(feed=True, limit=3))
    assert page.more and page.feed_position == page.rows[-1].seq == page.next_after
    rest = store.query(AlertQuery(feed=True, limit=3, after=page.feed_position))
    assert not rest.more and len(rest.rows) == 2 and rest.feed_position == store.last_seq()
    # filters: the position still advances past non-matching changes
    store.upsert([_alert("x", shapely.box(117, 31, 117.001, 31.001), redline_id="RL-77")], actor="t")
    other = store.query(AlertQuery(feed=True, after=rest.feed_position, redline_ids=frozenset({"RL-1"})))
    assert other.rows == [] and other.feed_position == store.last_seq()
    store.set_status("syn-0", "under_review", actor="x")
    moved = store.query(AlertQuery(feed=True, after=other.feed_position))
    assert [json.loads(r.feature)["id"] for r in moved.rows] == ["syn-0"]


# ---- keys --------------------------------------------------------------------------------------
def test_keys_hashed_scoped_revocable(store, tmp_path):
    token, info = store.create_key("write", name="platform", redlines=["RL-1", "RL-2"])
    assert token.startswith(f"rsk_{info.key_id}_") and len(token) > 40
    found = store.find_key(token)
    assert found.key_id == info.key_id and found.scope.value == "write" and found.redlines == {"RL-1", "RL-2"}
    assert store.find_key(token + "x") is None and store.find_key("rsk_nope") is None
    listed = store.list_keys()
    assert [k.key_id for k in listed] == [info.key_id] and "token" not in repr(listed).lower()
    store.revoke_key(info.key_id)
    assert store.find_key(token) is None and store.list_keys()[0].revoked_at is not None
    with pytest.raises(ConflictError, match="already revoked"):
        store.revoke_key(info.key_id)
    with pytest.raises(NotFoundError):
        store.revoke_key("deadbeef")
    if store.dialect == "sqlite":
        secret = token.split("_", 2)[2].encode()
        for path in tmp_path.glob("alerts.db*"):
            assert secret not in path.read_bytes()
