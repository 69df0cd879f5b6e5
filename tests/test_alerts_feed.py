"""The incremental feed under concurrent writers (issue 6, item 6).

Writer threads insert, re-detect and change the status of alerts while a reader pages the feed.
Each write transaction sleeps a little after taking its ``seq`` values, to widen the window in
which a later ``seq`` could commit before an earlier one. The reader must see ``seq`` strictly
increasing, no alert version twice, and at the end every alert's latest version.
"""

import json
import os
import random
import threading
import time
import warnings

import pytest
import shapely

from rsmon.alerts.schema import make_input
from rsmon.alerts.store import AlertQuery
from rsmon.alerts.testing import ENV_TEST_POSTGRES, open_test_store, synthetic_alerts

BACKENDS = ["sqlite", pytest.param("postgis", marks=pytest.mark.skipif(
    not os.environ.get(ENV_TEST_POSTGRES), reason=f"{ENV_TEST_POSTGRES} not set (no PostgreSQL/PostGIS server)"))]


def _slow_writes(store, monkeypatch):
    """Sleep inside write transactions after rows get their seq (before commit)."""
    for hook in ("_after_insert", "_after_update"):
        original = getattr(store, hook)

        def slow(tx, pk, row, _original=original):
            _original(tx, pk, row)
            time.sleep(random.uniform(0, 0.003))

        monkeypatch.setattr(store, hook, slow)


def _writer(store, wid: int, stop: threading.Event, errors: list):
    rng = random.Random(wid)
    n = 0
    try:
        while not stop.is_set():
            op = rng.random()
            if op < 0.4:
                store.upsert(synthetic_alerts(rng.randint(1, 4), seed=1000 * wid + n, id_prefix=f"w{wid}-{n}"),
                             actor=f"writer{wid}")
            elif op < 0.8:
                alert_id = f"syn-{rng.randrange(150)}"
                day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                geom = shapely.box(117, 31, 117 + rng.uniform(0.001, 0.01), 31.001)
                store.upsert([make_input(alert_id, geom, {"class": "other", "confidence": rng.choice(["low", "high"]),
                                                          "first_detected": "2023-01-01", "last_detected": day,
                                                          "redline_id": "RL-1"})], actor=f"writer{wid}")
            else:
                alert_id = f"syn-{rng.randrange(150)}"
                status = store.get(alert_id).status
                target = {"new": "under_review", "under_review": "confirmed", "confirmed": "under_review",
                          "dismissed": "under_review"}[status]
                try:
                    store.set_status(alert_id, target, actor=f"writer{wid}", reason="test")
                except Exception as exc:  # a concurrent writer changed it first
                    if type(exc).__name__ not in ("ConflictError",):
                        raise
            n += 1
    except Exception as exc:  # pragma: no cover - reported by the test
        errors.append(exc)


def _read_store(store):
    def read(after):
        page = store.query(AlertQuery(feed=True, after=after, limit=7))
        return [(r.seq, json.loads(r.feature)) for r in page.rows], page.feed_position
    return read


def _read_http(store):
    from rsmon.alerts.api import create_app
    from rsmon.alerts.cursor import decode_cursor
    from rsmon.alerts.web import ServiceSettings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    token = store.create_key("read")[0]
    client = TestClient(create_app(store, ServiceSettings(webhooks=False, rate_limit=0)))
    cursors = {0: "0"}

    def read(after):
        body = client.get(f"/collections/alerts/items?updated_since={cursors[after]}&limit=7",
                          headers={"X-API-Key": token}).json()
        position = decode_cursor(body["cursor"], "feed", store.store_id, "cursor")
        cursors[position] = body["cursor"]
        return [(None, f) for f in body["features"]], position
    return read


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reader", ["store", "http"])
def test_feed_sees_every_change_once_under_concurrent_writers(backend, reader, tmp_path, monkeypatch):
    if backend == "postgis" and reader == "http":
        pytest.skip("HTTP layer is backend-independent; covered on SQLite")
    store = open_test_store(backend, tmp_path)
    try:
        store.upsert(synthetic_alerts(150, seed=3), actor="seed")
        _slow_writes(store, monkeypatch)
        read = _read_store(store) if reader == "store" else _read_http(store)
        stop, errors = threading.Event(), []
        writers = [threading.Thread(target=_writer, args=(store, w, stop, errors)) for w in range(3)]
        for t in writers:
            t.start()
        seen_versions: dict[str, list[int]] = {}
        seqs, position, deadline, pages = [], 0, time.monotonic() + 2.0, 0
        while True:
            done = time.monotonic() > deadline
            if done:
                stop.set()
                for t in writers:
                    t.join()
            while True:  # after the writers stopped: drain until an empty page
                rows, position = read(position)
                pages += 1
                for seq, feature in rows:
                    seqs.append(seq)
                    seen_versions.setdefault(feature["id"], []).append(feature["properties"]["version"])
                if not rows or not done:
                    break
            if done:
                break
        assert not errors, errors
        if reader == "store":
            assert all(a < b for a, b in zip(seqs, seqs[1:])), "feed order must follow seq"
        for alert_id, versions in seen_versions.items():
            assert versions == sorted(set(versions)), f"{alert_id}: version seen twice or out of order {versions}"
        final = {}
        after = 0
        while True:
            page = store.query(AlertQuery(limit=500, after=after))
            final.update({json.loads(r.feature)["id"]: json.loads(r.feature)["properties"]["version"]
                          for r in page.rows})
            if not page.more:
                break
            after = page.next_after
        last_seen = {i: versions[-1] for i, versions in seen_versions.items()}
        missed = {i: (v, last_seen.get(i)) for i, v in final.items() if last_seen.get(i) != v}
        assert not missed, f"latest versions not seen: {dict(list(missed.items())[:5])}"
        changes = sum(len(v) for v in seen_versions.values())
        assert len(final) > 150 and changes > len(final) and pages > 20
    finally:
        store.close()
