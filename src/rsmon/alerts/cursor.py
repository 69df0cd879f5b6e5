"""Opaque cursors for paging (``cursor=``) and for the incremental feed (``updated_since=``).

A cursor carries a position in one store: the internal row key for ordinary paging, the change
sequence number for the feed. It is base64url text so that clients store it and send it back
without reading it; it names the store it came from, so a cursor from another store (a restored
or rebuilt database) is refused with a clear message instead of silently skipping alerts.

Cursors are not secrets and need no signature: a forged one only moves the caller's own position
inside what its key may see anyway.
"""

from __future__ import annotations

import base64
import binascii

from rsmon.errors import InputError

#: ``updated_since`` value that starts the feed from the first change.
FEED_START = "0"

_KINDS = {"page": "p", "feed": "f"}
_STORE_CHARS = 12


def encode_cursor(kind: str, store_id: str, position: int) -> str:
    """Opaque text for ``position`` (>= 0) of ``kind`` (``page`` or ``feed``) in store ``store_id``."""
    raw = f"{_KINDS[kind]}1.{store_id[:_STORE_CHARS]}.{int(position)}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(text: str, kind: str, store_id: str, param: str) -> int:
    """The position in a cursor made by :func:`encode_cursor` for this store and ``kind``.

    For the feed, :data:`FEED_START` (``0``) means "from the beginning".

    Raises
    ------
    InputError
        Not a cursor of this kind, or one from another store (the message names ``param``).
    """
    if kind == "feed" and text == FEED_START:
        return 0
    if not text or len(text) > 100:
        raise InputError(f"{param}: not a cursor of this service (use the value from a previous response)")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        tag, store, position = raw.split(".")
        number = int(position)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InputError(f"{param}: not a cursor of this service (use the value from a previous response"
                         + (", or 0 to start the feed)" if kind == "feed" else ")")) from None
    if tag != f"{_KINDS[kind]}1" or number < 0:
        raise InputError(f"{param}: not a {kind} cursor of this service")
    if store != store_id[:_STORE_CHARS]:
        raise InputError(f"{param}: the cursor comes from another alert store (this one was rebuilt or "
                         "restored); start again" + (" with updated_since=0" if kind == "feed" else ""))
    return number
