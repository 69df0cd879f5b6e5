"""Persistence of API keys and webhook subscriptions: the parts of an alert store that are not alerts.

Mixed into :class:`rsmon.alerts.store.AlertStore`, whose backends supply ``_read`` and ``_write``
transactions (SQL with ``?`` placeholders on every backend).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Iterable

from rsmon.alerts.errors import ConflictError, NotFoundError
from rsmon.alerts.schema import utc_now
from rsmon.alerts.security import KeyInfo, Scope, hash_token, new_token, same_hash
from rsmon.errors import InputError

__all__ = ["KeyStore", "Webhook", "WebhookStore"]


@dataclass(frozen=True)
class Webhook:
    """A webhook subscription and its delivery state (``cursor`` = last delivered ``seq``)."""

    id: str
    url: str
    secret: str = field(repr=False)
    events: str
    redlines: frozenset[str] | None
    cursor: int
    created_at: str
    created_by: str | None
    failures: int
    next_attempt: float
    last_error: str | None
    last_delivery_at: str | None
    delivered: int

    def to_dict(self) -> dict:
        """Public view (no secret)."""
        return {"id": self.id, "url": self.url, "events": self.events,
                "redlines": sorted(self.redlines) if self.redlines is not None else None,
                "created_at": self.created_at, "created_by": self.created_by, "delivered": self.delivered,
                "failures": self.failures, "last_error": self.last_error, "last_delivery_at": self.last_delivery_at}


class KeyStore:
    """API keys: only their hashes are stored."""

    def create_key(self, scope: Scope | str, *, name: str | None = None,
                   redlines: Iterable[str] | None = None) -> tuple[str, KeyInfo]:
        """A new API key: ``(token, info)``. Only the token's hash is stored; show the token once."""
        scope = Scope(scope)
        key_id, token = new_token()
        info = KeyInfo(key_id, name, scope, frozenset(redlines) if redlines is not None else None, utc_now())
        with self._write(sequenced=False) as tx:
            tx.execute("INSERT INTO api_keys (key_id, name, token_hash, scope, redlines, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (key_id, name, hash_token(token), scope.value,
                        None if info.redlines is None else json.dumps(sorted(info.redlines)), info.created_at))
        return token, info

    @staticmethod
    def _key_info(row) -> KeyInfo:
        redlines = frozenset(json.loads(row[3])) if row[3] is not None else None
        return KeyInfo(row[0], row[1], Scope(row[2]), redlines, row[4], row[5])

    def list_keys(self) -> list[KeyInfo]:
        with self._read() as tx:
            rows = tx.all("SELECT key_id, name, scope, redlines, created_at, revoked_at FROM api_keys "
                          "ORDER BY created_at")
        return [self._key_info(r) for r in rows]

    def revoke_key(self, key_id: str) -> KeyInfo:
        """Revoke a key (it stays listed, with ``revoked_at``).

        Raises
        ------
        NotFoundError
            No key with this id.
        ConflictError
            Already revoked.
        """
        with self._write(sequenced=False) as tx:
            row = tx.one("SELECT key_id, name, scope, redlines, created_at, revoked_at FROM api_keys WHERE key_id = ?",
                         (key_id,))
            if row is None:
                raise NotFoundError(f"key {key_id}: no such key (see rsmon keys list)")
            if row[5] is not None:
                raise ConflictError(f"key {key_id}: already revoked at {row[5]}")
            now = utc_now()
            tx.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", (now, key_id))
        return self._key_info((*row[:5], now))

    def find_key(self, token: str) -> KeyInfo | None:
        """The active key whose token this is, or None (unknown or revoked)."""
        digest = hash_token(token)
        with self._read() as tx:
            row = tx.one("SELECT key_id, name, scope, redlines, created_at, revoked_at, token_hash FROM api_keys "
                         "WHERE token_hash = ?", (digest,))
        if row is None or not same_hash(row[6], digest) or row[5] is not None:
            return None
        return self._key_info(row)



class WebhookStore:
    """Webhook subscriptions and their delivery state (cursor, failures, lease)."""

    _WEBHOOK_COLS = ("id, url, secret, events, redlines, cursor, created_at, created_by, failures, next_attempt, "
                     "last_error, last_delivery_at, delivered")

    @staticmethod
    def _webhook(row) -> Webhook:
        redlines = frozenset(json.loads(row[4])) if row[4] is not None else None
        return Webhook(row[0], row[1], row[2], row[3], redlines, *row[5:])

    def add_webhook(self, url: str, secret: str, *, events: str = "new", redlines: Iterable[str] | None = None,
                    from_start: bool = False, created_by: str | None = None) -> Webhook:
        """Subscribe ``url`` to alerts (``events``: ``new`` or ``all`` changes) from now (or the start)."""
        if events not in ("new", "all"):
            raise InputError(f"webhook events: expected new or all, got {events!r}")
        hook_id = "wh_" + secrets.token_hex(6)
        red = None if redlines is None else json.dumps(sorted(set(redlines)))
        with self._write(sequenced=False) as tx:
            cursor = 0 if from_start else tx.one("SELECT value FROM rsmon_counters WHERE name = 'seq'")[0]
            tx.execute("INSERT INTO webhooks (id, url, secret, events, redlines, cursor, created_at, created_by) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (hook_id, url, secret, events, red, cursor, utc_now(), created_by))
        return self.get_webhook(hook_id)

    def get_webhook(self, hook_id: str) -> Webhook:
        with self._read() as tx:
            row = tx.one(f"SELECT {self._WEBHOOK_COLS} FROM webhooks WHERE id = ?", (hook_id,))
        if row is None:
            raise NotFoundError(f"webhook {hook_id}: not found")
        return self._webhook(row)

    def list_webhooks(self) -> list[Webhook]:
        with self._read() as tx:
            rows = tx.all(f"SELECT {self._WEBHOOK_COLS} FROM webhooks ORDER BY created_at")
        return [self._webhook(r) for r in rows]

    def remove_webhook(self, hook_id: str) -> None:
        with self._write(sequenced=False) as tx:
            if tx.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,)).rowcount == 0:
                raise NotFoundError(f"webhook {hook_id}: not found")

    def claim_webhook(self, hook_id: str, owner: str, now: float, lease_s: float) -> bool:
        """Take the delivery lease of a webhook (one dispatcher per webhook across processes)."""
        with self._write(sequenced=False) as tx:
            cur = tx.execute("UPDATE webhooks SET lease_owner = ?, lease_until = ? WHERE id = ? AND next_attempt <= ? "
                             "AND (lease_owner IS NULL OR lease_until < ? OR lease_owner = ?)",
                             (owner, now + lease_s, hook_id, now, now, owner))
            return cur.rowcount == 1

    def webhook_delivered(self, hook_id: str, owner: str, cursor: int, count: int, at: str) -> None:
        """Record a successful delivery (or a skipped range): advance the cursor, reset failures, release."""
        with self._write(sequenced=False) as tx:
            tx.execute("UPDATE webhooks SET cursor = ?, failures = 0, next_attempt = 0, last_error = NULL, "
                       "last_delivery_at = CASE WHEN ? > 0 THEN ? ELSE last_delivery_at END, "
                       "delivered = delivered + ?, "
                       "lease_owner = NULL, lease_until = 0 WHERE id = ? AND lease_owner = ?",
                       (cursor, count, at, count, hook_id, owner))

    def webhook_failed(self, hook_id: str, owner: str, error: str, next_attempt: float) -> None:
        """Record a failed delivery: count it, schedule the retry, release the lease."""
        with self._write(sequenced=False) as tx:
            tx.execute("UPDATE webhooks SET failures = failures + 1, last_error = ?, next_attempt = ?, "
                       "lease_owner = NULL, lease_until = 0 WHERE id = ? AND lease_owner = ?",
                       (error[:500], next_attempt, hook_id, owner))

    def release_webhook(self, hook_id: str, owner: str) -> None:
        with self._write(sequenced=False) as tx:
            tx.execute("UPDATE webhooks SET lease_owner = NULL, lease_until = 0 WHERE id = ? AND lease_owner = ?",
                       (hook_id, owner))
