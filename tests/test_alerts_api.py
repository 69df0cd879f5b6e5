"""Alert API (issue 6, items 2-3): OGC API - Features Core + GeoJSON, feed, lifecycle, keys, limits."""

import json
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from rsmon.alerts.api import CONFORMANCE, create_app
from rsmon.alerts.store import open_store
from rsmon.alerts.testing import synthetic_alerts
from rsmon.alerts.web import ServiceSettings

N = 57


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    store = open_store(f"sqlite:///{folder}/alerts.db")
    store.upsert(synthetic_alerts(N, seed=7, bbox=(116.0, 30.0, 118.0, 32.0), redlines=2), actor="import:test")
    keys = {scope: store.create_key(scope, name=f"{scope} key")[0] for scope in ("read", "write", "admin")}
    keys["rl1"] = store.create_key("write", name="county", redlines=["RL-1"])[0]
    app = create_app(store, ServiceSettings(webhooks=False, rate_limit=0, key_cache_s=0, cors_origins=["https://platform.example"]))
    with TestClient(app) as client:
        yield client, store, keys
    store.close()


def get(client, url, key=None, headers=None, **kw):
    return client.get(url, headers={**({"X-API-Key": key} if key else {}), **(headers or {})}, **kw)


def ids(body):
    return [f["id"] for f in body["features"]]


def test_landing_conformance_openapi_are_public(service):
    client, _, _ = service
    landing = client.get("/").json()
    rels = {link["rel"]: link for link in landing["links"]}
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= set(rels)
    assert rels["service-desc"]["type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert client.get("/conformance").json()["conformsTo"] == CONFORMANCE
    api = client.get("/api")
    assert api.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    doc = api.json()
    assert doc["openapi"] == "3.0.3" and "/collections/{collection_id}/items" in doc["paths"]
    assert doc["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    params = {p["name"]: p for p in doc["paths"]["/collections/{collection_id}/items"]["get"]["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 10000 and params["limit"]["schema"]["minimum"] == 1
    assert "null" not in json.dumps(doc).replace('"nullable"', "")
    assert client.get("/health").json()["status"] == "ok"


def test_collections(service):
    client, _, keys = service
    body = get(client, "/collections", keys["read"]).json()
    (coll,) = body["collections"]
    assert coll["id"] == "alerts" and coll["itemType"] == "feature"
    bbox = coll["extent"]["spatial"]["bbox"][0]
    assert 116 <= bbox[0] < bbox[2] <= 118.01 and 30 <= bbox[1] < bbox[3] <= 32.01
    assert any(link["rel"] == "items" and link["type"] == "application/geo+json" for link in coll["links"])
    assert get(client, "/collections/alerts", keys["read"]).json()["id"] == "alerts"
    assert get(client, "/collections/other", keys["read"]).status_code == 404
    assert get(client, "/collections/other/items", keys["read"]).status_code == 404


def test_items_pages_follow_next_links(service):
    client, _, keys = service
    url, seen, pages = "/collections/alerts/items?limit=10", [], 0
    while url:
        response = get(client, url, keys["read"])
        assert response.status_code == 200 and response.headers["content-type"] == "application/geo+json"
        body = response.json()
        assert body["type"] == "FeatureCollection" and body["numberMatched"] == N
        assert body["numberReturned"] == len(body["features"]) <= 10
        seen += ids(body)
        pages += 1
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
    assert pages == 6 and len(seen) == len(set(seen)) == N
    feature = body["features"][0]
    assert feature["type"] == "Feature" and feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert {"class", "confidence", "redline_id", "status", "first_detected", "version"} <= set(feature["properties"])


def test_filters_through_http(service):
    client, store, keys = service
    everything = get(client, "/collections/alerts/items?limit=10000", keys["read"]).json()["features"]

    def query(qs):
        response = get(client, "/collections/alerts/items?limit=10000&" + qs, keys["read"])
        assert response.status_code == 200, response.text
        return sorted(ids(response.json()))

    west = sorted(f["id"] for f in everything if f["properties"]["centroid_lon"] < 117)
    assert query("bbox=116,30,117,32") == [i for i in west if i in query("bbox=116,30,117,32")]
    assert len(query("bbox=116,30,117,32")) >= len(west) - 2  # polygons straddling 117 count too
    assert query("bbox=0,0,1,1") == []
    assert query("bbox=116,30,0,118,32,10") == query("bbox=116,30,118,32") == sorted(ids({"features": everything}))
    high = sorted(f["id"] for f in everything if f["properties"]["confidence_code"] >= 2)
    assert query("min_confidence=high") == high
    cls = sorted(f["id"] for f in everything if f["properties"]["class"] in ("construction", "other"))
    assert query("class=construction,other") == cls
    rl = sorted(f["id"] for f in everything if f["properties"]["redline_id"] == "RL-2")
    assert query("redline_id=RL-2") == rl and query("status=new") == sorted(ids({"features": everything}))
    days = sorted({f["properties"]["first_detected"] for f in everything})
    cut = days[len(days) // 3]
    early = sorted(f["id"] for f in everything if f["properties"]["first_detected"] <= cut)
    assert query(f"datetime=../{cut}") == early and 0 < len(early) < N
    late = sorted(f["id"] for f in everything if f["properties"]["last_detected"] >= cut)
    assert query(f"datetime={cut}T12:00:00Z/..") == late
    assert query(f"datetime={cut}") == sorted(set(early) & set(late))
    assert query("datetime=2030-01-01/..") == []


@pytest.mark.parametrize("qs, fragment", [
    ("limit=0", "limit"), ("limit=10001", "limit"), ("limit=abc", "limit"), ("bbox=1,2,3", "bbox"),
    ("bbox=1,2,3,95", "latitudes"), ("datetime=tomorrow", "datetime"),
    ("datetime=2024-02-01/2024-01-01", "ends before"),
    ("class=parking", "class"), ("status=open", "status"), ("min_confidence=5", "min_confidence"),
    ("foo=1", "unknown query parameter"), ("limit=5&limit=6", "more than once"), ("cursor=zzz", "cursor"),
    ("updated_since=2024-01-01T00:00:00Z", "updated_since"), ("updated_since=0&cursor=abc", "cannot be combined"),
    ("f=html", "GeoJSON"),
])
def test_invalid_parameters_are_400_problems(service, qs, fragment):
    client, _, keys = service
    response = get(client, "/collections/alerts/items?" + qs, keys["read"])
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert fragment in response.json()["detail"]


def test_feed_via_http(service):
    client, store, keys = service
    body = get(client, "/collections/alerts/items?updated_since=0&limit=40", keys["read"]).json()
    assert body["numberReturned"] == 40 and body["numberMatched"] >= N
    nxt = [link["href"] for link in body["links"] if link["rel"] == "next"][0]
    cursor = body["cursor"]
    assert f"updated_since={cursor}" in nxt
    rest = get(client, f"/collections/alerts/items?updated_since={cursor}&limit=1000", keys["read"]).json()
    assert not [link for link in rest["links"] if link["rel"] == "next"]
    assert len(set(ids(body)) | set(ids(rest))) == rest["numberReturned"] + 40
    idle = get(client, f"/collections/alerts/items?updated_since={rest['cursor']}", keys["read"]).json()
    assert idle["features"] == [] and idle["cursor"] == rest["cursor"]
    target = ids(body)[0]
    client.patch(f"/collections/alerts/items/{target}", json={"status": "under_review"},
                 headers={"X-API-Key": keys["write"]})
    changed = get(client, f"/collections/alerts/items?updated_since={idle['cursor']}", keys["read"]).json()
    assert ids(changed) == [target] and changed["features"][0]["properties"]["status"] == "under_review"


def test_item_etag_and_404(service):
    client, store, keys = service
    response = get(client, "/collections/alerts/items/syn-3", keys["read"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/geo+json"
    body = response.json()
    assert body["id"] == "syn-3" and any(link["rel"] == "self" for link in body["links"])
    etag = response.headers["etag"]
    again = client.get("/collections/alerts/items/syn-3", headers={"X-API-Key": keys["read"], "If-None-Match": etag})
    assert again.status_code == 304
    assert get(client, "/collections/alerts/items/nope", keys["read"]).status_code == 404
    assert get(client, "/collections/alerts/items/bad%20id", keys["read"]).status_code == 400
    history = get(client, "/collections/alerts/items/syn-3/history", keys["read"]).json()
    assert history["entries"][0]["action"] == "create" and history["entries"][0]["actor"] == "import:test"


def test_auth_401_403(service):
    client, store, keys = service
    assert get(client, "/collections/alerts/items").status_code == 401
    assert get(client, "/collections").status_code == 401
    assert get(client, "/collections/alerts/items", "rsk_deadbeef_nope").status_code == 401
    patch = client.patch("/collections/alerts/items/syn-4", json={"status": "under_review"},
                         headers={"X-API-Key": keys["read"]})
    assert patch.status_code == 403 and "needs write" in patch.json()["detail"]
    assert get(client, "/webhooks", keys["write"]).status_code == 403
    assert get(client, "/webhooks", keys["admin"]).status_code == 200
    token, info = store.create_key("read")
    assert get(client, "/collections/alerts/items", token).status_code == 200
    store.revoke_key(info.key_id)
    assert get(client, "/collections/alerts/items", token).status_code == 401  # key cache 0 s here


def test_patch_lifecycle_with_if_match(service):
    client, store, keys = service
    h = {"X-API-Key": keys["write"]}
    url = "/collections/alerts/items/syn-5"
    etag = get(client, url, keys["read"]).headers["etag"]
    bad = client.patch(url, json={"status": "confirmed"}, headers=h)
    assert bad.status_code == 409 and "new to confirmed" in bad.json()["detail"]
    ok = client.patch(url, json={"status": "under_review", "interpreter": "Li Wei"}, headers={**h, "If-Match": etag})
    assert ok.status_code == 200, ok.text
    props = ok.json()["properties"]
    assert props["status"] == "under_review" and "Li Wei" in props["status_by"] and "write key" in props["status_by"]
    assert ok.headers["etag"] != etag
    stale = client.patch(url, json={"status": "dismissed", "reason": "shadow"}, headers={**h, "If-Match": etag})
    assert stale.status_code == 412
    no_reason = client.patch(url, json={"status": "dismissed"}, headers=h)
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["detail"]
    done = client.patch(url, json={"status": "dismissed", "reason": "cloud shadow"},
                        headers={**h, "If-Match": ok.headers["etag"]})
    assert done.status_code == 200 and done.json()["properties"]["status_reason"] == "cloud shadow"
    for body in ({"status": "gone"}, {"status": "under_review", "extra": 1}, {}, {"status": "under_review",
                                                                                "reason": "x" * 3000}):
        assert client.patch(url, json=body, headers=h).status_code == 400
    assert client.patch(url, content=b"not json", headers={**h, "Content-Type": "application/json"}).status_code == 400
    assert client.patch("/collections/alerts/items/nope", json={"status": "under_review"}, headers=h).status_code == 404


def test_redline_limited_key_sees_only_its_redlines(service):
    client, store, keys = service
    everything = get(client, "/collections/alerts/items?limit=1000", keys["read"]).json()["features"]
    own = {f["id"] for f in everything if f["properties"]["redline_id"] == "RL-1"}
    other = sorted(f["id"] for f in everything if f["properties"]["redline_id"] != "RL-1")
    assert own and other
    key = keys["rl1"]
    body = get(client, "/collections/alerts/items?limit=1000", key).json()
    assert set(ids(body)) == own and body["numberMatched"] == len(own)
    assert get(client, "/collections/alerts/items?limit=1000&redline_id=RL-2", key).json()["features"] == []
    feed = get(client, "/collections/alerts/items?updated_since=0&limit=1000", key).json()
    assert set(ids(feed)) == own
    assert get(client, f"/collections/alerts/items/{other[0]}", key).status_code == 404
    assert get(client, f"/collections/alerts/items/{other[0]}/history", key).status_code == 404
    patch = client.patch(f"/collections/alerts/items/{other[0]}", json={"status": "under_review"},
                         headers={"X-API-Key": key})
    assert patch.status_code == 404
    assert get(client, f"/collections/alerts/items/{sorted(own)[0]}", key).status_code == 200


def test_rate_limit_body_limit_cors(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/a.db")
    token = store.create_key("admin")[0]
    app = create_app(store, ServiceSettings(webhooks=False, rate_limit=1, burst=3, max_body_bytes=1000,
                                            cors_origins=["https://platform.example"]))
    with TestClient(app) as client:
        codes = [get(client, "/collections/alerts/items", token).status_code for _ in range(5)]
        assert codes[:3] == [200] * 3 and codes[-1] == 429
        limited = get(client, "/collections/alerts/items", token)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert client.get("/conformance").status_code == 200  # public pages are not limited per key
        big = client.post("/webhooks", content=b"{" + b" " * 5000 + b"}",
                          headers={"X-API-Key": token, "Content-Type": "application/json"})
        assert big.status_code == 413
        long_query = client.get("/collections/alerts/items?bbox=" + "1" * 9000)
        assert long_query.status_code == 414
        preflight = client.options("/collections/alerts/items", headers={
            "Origin": "https://platform.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://platform.example"
        foreign = client.get("/conformance", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers
    store.close()


def test_webhook_admin_endpoints(service):
    client, store, keys = service
    h = {"X-API-Key": keys["admin"]}
    created = client.post("/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": "all"}, headers=h)
    assert created.status_code == 201 and len(created.json()["secret"]) >= 32
    hook_id = created.json()["id"]
    listed = client.get("/webhooks", headers=h).json()["webhooks"]
    assert [w["id"] for w in listed] == [hook_id] and "secret" not in listed[0]
    assert client.post("/webhooks", json={"url": "ftp://x"}, headers=h).status_code == 400
    assert client.post("/webhooks", json={"url": "http://x", "secret": "short"}, headers=h).status_code == 400
    assert client.delete(f"/webhooks/{hook_id}", headers=h).status_code == 204
    assert client.delete(f"/webhooks/{hook_id}", headers=h).status_code == 404


def test_gzip_only_when_enabled(service, tmp_path):
    client, store, keys = service
    plain = get(client, "/collections/alerts/items?limit=50", keys["read"], headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    app = create_app(store, ServiceSettings(webhooks=False, rate_limit=0, gzip=True))
    with TestClient(app) as gz:
        response = gz.get("/collections/alerts/items?limit=50",
                          headers={"X-API-Key": keys["read"], "Accept-Encoding": "gzip"})
        assert response.headers["content-encoding"] == "gzip" and response.json()["numberReturned"] == 50
