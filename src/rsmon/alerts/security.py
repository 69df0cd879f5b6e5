"""API keys and rate limits.

Keys are random 256-bit tokens (``rsk_<key id>_<secret>``). The store keeps only the SHA-256 hash
of a token (a fast hash is enough for high-entropy random tokens; a password hash adds nothing),
looked up by index and compared in constant time. The key id in the token lets operators tell
which key a client uses without the store ever holding the token.

Scopes are ordered: ``read`` < ``write`` (status changes) < ``admin`` (webhooks, audit of all).
A key may be limited to a set of redline ids; every query of that key is restricted to them.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass
from enum import Enum

from rsmon.alerts.errors import PermissionDeniedError, RateLimitError
from rsmon.errors import InputError

TOKEN_PREFIX = "rsk_"
_REDLINE_ID = re.compile(r"^[^\s,]{1,128}$")


class Scope(str, Enum):
    read = "read"
    write = "write"
    admin = "admin"

    @property
    def rank(self) -> int:
        return ("read", "write", "admin").index(self.value)

    def allows(self, needed: "Scope") -> bool:
        return self.rank >= needed.rank


def parse_scope(text: str) -> Scope:
    """The :class:`Scope` named ``text``.

    Raises
    ------
    InputError
        Not read, write or admin.
    """
    try:
        return Scope(text)
    except ValueError:
        raise InputError(f"scope: expected read, write or admin, got {text!r}") from None


def parse_redlines(text: str | None, where: str = "redlines") -> frozenset[str] | None:
    """Comma-separated redline ids as a set; None for no restriction.

    Raises
    ------
    InputError
        An empty list or an id with spaces or commas, or longer than 128 characters.
    """
    if text is None:
        return None
    ids = [part.strip() for part in text.split(",")]
    if not ids or any(not _REDLINE_ID.match(i) for i in ids):
        raise InputError(f"{where}: expected comma-separated redline ids (1-128 characters, no spaces), got {text!r}")
    return frozenset(ids)


@dataclass(frozen=True)
class KeyInfo:
    """An API key as stored (never the token): id, label, scope, redline limit, lifetime."""

    key_id: str
    name: str | None
    scope: Scope
    redlines: frozenset[str] | None
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def require(self, needed: Scope) -> None:
        """Raise :class:`PermissionDeniedError` unless this key's scope covers ``needed``."""
        if not self.scope.allows(needed):
            raise PermissionDeniedError(f"key {self.key_id} has scope {self.scope.value}; "
                                        f"this operation needs {needed.value}")


def new_token() -> tuple[str, str]:
    """A fresh ``(key_id, token)``; the token is shown once and never stored."""
    key_id = secrets.token_hex(4)
    return key_id, f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token: what the store keeps and looks keys up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two token hashes."""
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


class TokenBucket:
    """Token-bucket rate limiter per key: ``rate`` requests/s sustained, bursts up to ``burst``.

    In memory, per server process (each uvicorn worker limits on its own: with N workers a key
    gets up to N x rate). ``rate`` <= 0 disables limiting.
    """

    def __init__(self, rate: float, burst: float):
        self.rate = float(rate)
        self.burst = max(float(burst), 1.0)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> None:
        """Spend one token of ``key``'s bucket.

        Raises
        ------
        RateLimitError
            The bucket is empty; ``retry_after`` says when one token is back (s).
        """
        if self.rate <= 0:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise RateLimitError(f"rate limit of {self.rate:g} requests/s (burst {self.burst:g}) exceeded; "
                                     f"retry in {math.ceil(wait)} s", retry_after=wait)
            self._buckets[key] = (tokens - 1.0, now)
