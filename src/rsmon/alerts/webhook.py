"""Webhook push of alerts: signed, in order, at least once, with exponential-backoff retries.

A webhook (added through ``POST /webhooks`` with an admin key, or :meth:`AlertStore.add_webhook`)
follows the store's change feed from its own cursor. The dispatcher posts batches of up to
``batch_size`` alerts as a GeoJSON FeatureCollection; each feature carries ``"event": "created"``
or ``"updated"`` (``events="new"`` sends only alerts created since the last delivery). The cursor
advances only after a 2xx answer, so nothing is lost across failures or server restarts, and a
receiver may see a batch again after a crash: deduplicate by ``X-Rsmon-Delivery`` or by alert id
and ``version``.

Signature (verify with :func:`verify_signature`)::

    X-Rsmon-Timestamp: 1717000000
    X-Rsmon-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

Signing the timestamp with the body lets receivers refuse replays older than a few minutes.
Failed deliveries are retried after ``backoff_base * 2**(failures - 1)`` seconds, at most
``backoff_max`` (defaults 2 s ... 10 min); a webhook is never dropped, its state
(``failures``, ``last_error``) is listed by ``GET /webhooks``. Several server processes may run
dispatchers: a lease in the store gives each webhook to one of them at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from rsmon.alerts.schema import utc_now
from rsmon.alerts.store import AlertQuery, AlertStore, Webhook

log = logging.getLogger(__name__)

__all__ = ["WebhookDispatcher", "sign", "verify_signature"]

SIGNATURE_HEADER = "X-Rsmon-Signature"
TIMESTAMP_HEADER = "X-Rsmon-Timestamp"
DELIVERY_HEADER = "X-Rsmon-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``"<timestamp>.<body>"`` with the webhook's secret."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, body: bytes, timestamp: str, signature: str, *, tolerance_s: float = 300,
                     now: float | None = None) -> bool:
    """True if ``signature`` signs ``body`` at ``timestamp`` and the timestamp is recent (receivers' helper)."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class DeliveryResult:
    webhook: str
    delivered: int
    ok: bool
    error: str | None = None


class WebhookDispatcher:
    """Deliver pending alerts to every due webhook; :meth:`run_once` for one pass, :meth:`start` for a thread."""

    def __init__(self, store: AlertStore, *, batch_size: int = 100, timeout_s: float = 10.0,
                 backoff_base_s: float = 2.0, backoff_max_s: float = 600.0, poll_interval_s: float = 2.0,
                 lease_s: float = 60.0, user_agent: str = "rsmon-alerts-webhook"):
        self.store = store
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.poll_interval_s = poll_interval_s
        self.lease_s = max(lease_s, 2 * timeout_s)
        self.user_agent = user_agent
        self.owner = "disp-" + secrets.token_hex(6)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def backoff(self, failures: int) -> float:
        """Seconds before retry number ``failures`` (1, 2, ...): base x 2^(failures-1), capped."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** max(failures - 1, 0))

    # ---- one pass --------------------------------------------------------------------------
    def run_once(self) -> list[DeliveryResult]:
        """Deliver one batch to each webhook that is due and not leased by another dispatcher."""
        results = []
        for hook in self.store.list_webhooks():
            now = time.time()
            if hook.next_attempt > now or not self.store.claim_webhook(hook.id, self.owner, now, self.lease_s):
                continue
            try:
                results.append(self._deliver(self.store.get_webhook(hook.id)))
            except Exception as exc:  # never let one webhook stop the others
                log.exception("webhook %s: delivery crashed", hook.id)
                self.store.webhook_failed(hook.id, self.owner, f"internal error: {exc}", time.time() + self.backoff(1))
        return results

    def _deliver(self, hook: Webhook) -> DeliveryResult:
        page = self.store.query(AlertQuery(feed=True, after=hook.cursor, limit=self.batch_size),
                                redlines=hook.redlines)
        if not page.rows:
            if page.feed_position and page.feed_position > hook.cursor:
                self.store.webhook_delivered(hook.id, self.owner, page.feed_position, 0, utc_now())
            else:
                self.store.release_webhook(hook.id, self.owner)
            return DeliveryResult(hook.id, 0, True)
        features = []
        for row in page.rows:
            created = row.created_seq > hook.cursor
            if hook.events == "new" and not created:
                continue
            features.append(row.feature[:-1] + ',"event":"' + ("created" if created else "updated") + '"}')
        new_cursor = page.rows[-1].seq if page.more else page.feed_position
        if not features:  # only updates in this range and the webhook wants new alerts
            self.store.webhook_delivered(hook.id, self.owner, new_cursor, 0, utc_now())
            return DeliveryResult(hook.id, 0, True)
        delivery = f"{hook.id}-{hook.cursor}-{new_cursor}"
        body = ('{"type":"FeatureCollection","webhook":' + json.dumps(hook.id) + ',"delivery":' + json.dumps(delivery)
                + ',"sent_at":' + json.dumps(utc_now()) + ',"features":[' + ",".join(features) + "]}").encode("utf-8")
        timestamp = str(int(time.time()))
        request = urllib.request.Request(hook.url, data=body, method="POST", headers={
            "Content-Type": "application/geo+json", "User-Agent": self.user_agent,
            SIGNATURE_HEADER: sign(hook.secret, timestamp, body), TIMESTAMP_HEADER: timestamp,
            DELIVERY_HEADER: delivery})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - admin-set URL
                status = response.status
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            status, error = None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if status is not None and 200 <= status < 300:
            self.store.webhook_delivered(hook.id, self.owner, new_cursor, len(features), utc_now())
            log.info("webhook %s: delivered %d alert(s) (%s)", hook.id, len(features), delivery)
            return DeliveryResult(hook.id, len(features), True)
        if status is not None:
            error = f"HTTP {status}"
        retry_in = self.backoff(hook.failures + 1)
        self.store.webhook_failed(hook.id, self.owner, error, time.time() + retry_in)
        log.warning("webhook %s: delivery failed (%s); retry %d in %.0f s", hook.id, error, hook.failures + 1, retry_in)
        return DeliveryResult(hook.id, 0, False, error)

    # ---- background thread -----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="rsmon-webhooks", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run a pass now (e.g. after a status change in this process)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = any(r.delivered for r in self.run_once())
            except Exception:  # store unavailable: keep the server up, try again later
                log.exception("webhook dispatcher pass failed")
                busy = False
            if not busy:
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()
