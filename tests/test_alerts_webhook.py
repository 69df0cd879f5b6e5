"""Webhook push (issue 6, item 2): HMAC signature, retries with exponential backoff, at-least-once order."""

import json
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import shapely

from rsmon.alerts.api import create_app
from rsmon.alerts.schema import make_input
from rsmon.alerts.store import open_store
from rsmon.alerts.testing import synthetic_alerts
from rsmon.alerts.web import ServiceSettings
from rsmon.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookDispatcher, sign, verify_signature

SECRET = "s3cret-for-the-test-receiver"


class Receiver:
    """A local HTTP receiver that fails the first ``fail_first`` requests with 500."""

    def __init__(self, fail_first=0):
        self.fail_first = fail_first
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((time.monotonic(), dict(self.headers), body))
                code = 500 if len(receiver.requests) <= receiver.fail_first else 204
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def features(self):
        return [f for _, _, body in self.requests[self.fail_first:] for f in json.loads(body)["features"]]


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/alerts.db")
    yield s
    s.close()


def _pump(dispatcher, until, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "webhook not delivered in time"
        dispatcher.run_once()
        time.sleep(0.01)


def test_signature_helpers():
    body = b'{"a":1}'
    signature = sign(SECRET, "1700000000", body)
    assert signature.startswith("sha256=") and len(signature) == 71
    assert verify_signature(SECRET, body, "1700000000", signature, now=1700000100)
    assert not verify_signature(SECRET, body + b" ", "1700000000", signature, now=1700000100)
    assert not verify_signature("other", body, "1700000000", signature, now=1700000100)
    assert not verify_signature(SECRET, body, "1700000000", signature, now=1700009999)  # replay
    assert not verify_signature(SECRET, body, "soon", signature)


def test_retries_with_backoff_then_delivers_signed_batches(store):
    with Receiver(fail_first=3) as receiver:
        hook = store.add_webhook(receiver.url, SECRET, events="new")
        store.upsert(synthetic_alerts(5, seed=1), actor="t")
        dispatcher = WebhookDispatcher(store, batch_size=3, backoff_base_s=0.05, backoff_max_s=0.15)
        assert [dispatcher.backoff(i) for i in (1, 2, 3, 4)] == [0.05, 0.1, 0.15, 0.15]
        _pump(dispatcher, lambda: len(receiver.features()) == 5)
        times = [t for t, _, _ in receiver.requests]
        gaps = [b - a for a, b in zip(times, times[1:4])]
        assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.14  # exponential, capped
        first_attempt, retry = receiver.requests[0], receiver.requests[3]
        assert first_attempt[1]["X-Rsmon-Delivery"] == retry[1]["X-Rsmon-Delivery"]  # same batch, same id
        for _, headers, body in receiver.requests:
            assert verify_signature(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
            assert headers["Content-Type"] == "application/geo+json"
        features = receiver.features()
        assert [f["id"] for f in features] == [f"syn-{i}" for i in range(5)]
        assert {f["event"] for f in features} == {"created"} and features[0]["properties"]["status"] == "new"
        state = store.get_webhook(hook.id)
        assert state.failures == 0 and state.delivered == 5 and state.cursor == store.last_seq()
        # nothing new: nothing sent; an update is not a new alert for events=new
        n = len(receiver.requests)
        store.set_status("syn-0", "under_review", actor="x")
        dispatcher.run_once()
        assert len(receiver.requests) == n and store.get_webhook(hook.id).cursor == store.last_seq()
        store.upsert(synthetic_alerts(1, seed=9, id_prefix="later"), actor="t")
        _pump(dispatcher, lambda: len(receiver.requests) == n + 1)
        assert [f["id"] for f in json.loads(receiver.requests[-1][2])["features"]] == ["later-0"]


def test_all_events_and_redline_filter(store):
    with Receiver() as receiver:
        store.upsert([make_input(f"a{i}", shapely.box(117, 31, 117.001, 31.001),
                                 {"class": "other", "confidence": "low", "first_detected": "2024-01-01",
                                  "redline_id": f"RL-{i % 2}"}) for i in range(4)], actor="t")
        store.add_webhook(receiver.url, SECRET, events="all", redlines=["RL-1"], from_start=True)
        dispatcher = WebhookDispatcher(store)
        _pump(dispatcher, lambda: len(receiver.features()) == 2)
        store.set_status("a1", "under_review", actor="x")
        store.set_status("a0", "under_review", actor="x")
        _pump(dispatcher, lambda: len(receiver.features()) == 3)
        dispatcher.run_once()
        got = receiver.features()
        assert [(f["id"], f["event"]) for f in got] == [("a1", "created"), ("a3", "created"), ("a1", "updated")]


def test_server_dispatches_after_import_and_patch(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    store = open_store(f"sqlite:///{tmp_path}/alerts.db")
    token = store.create_key("admin")[0]
    with Receiver() as receiver:
        app = create_app(store, ServiceSettings(webhook_poll_s=0.05, rate_limit=0))
        with TestClient(app) as client:
            created = client.post("/webhooks", json={"url": receiver.url, "secret": SECRET, "events": "all"},
                                  headers={"X-API-Key": token})
            assert created.status_code == 201 and "secret" not in created.json()
            store.upsert(synthetic_alerts(2, seed=4), actor="import")  # e.g. another process importing
            deadline = time.monotonic() + 10
            while len(receiver.features()) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            client.patch("/collections/alerts/items/syn-1", json={"status": "under_review"},
                         headers={"X-API-Key": token})
            while len(receiver.features()) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            got = [(f["id"], f["event"], f["properties"]["status"]) for f in receiver.features()]
            assert got == [("syn-0", "created", "new"), ("syn-1", "created", "new"),
                           ("syn-1", "updated", "under_review")]
            # the receiver has the third delivery before the dispatcher, on its answer, counts it
            listed = client.get("/webhooks", headers={"X-API-Key": token}).json()["webhooks"]
            while listed[0]["delivered"] < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
                listed = client.get("/webhooks", headers={"X-API-Key": token}).json()["webhooks"]
            assert listed[0]["delivered"] == 3 and listed[0]["failures"] == 0
    store.close()


def test_unreachable_receiver_keeps_alerts_and_records_error(store):
    store.add_webhook("http://127.0.0.1:9/nothing-listens", SECRET, from_start=True)
    store.upsert(synthetic_alerts(2, seed=5), actor="t")
    dispatcher = WebhookDispatcher(store, backoff_base_s=30, timeout_s=2)
    (result,) = dispatcher.run_once()
    assert not result.ok
    (hook,) = store.list_webhooks()
    assert hook.failures == 1 and hook.cursor == 0 and "URLError" in hook.last_error
    assert hook.next_attempt > time.time() + 20
    assert dispatcher.run_once() == []  # not due yet
