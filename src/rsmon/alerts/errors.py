"""Errors of the alert service, under :class:`rsmon.errors.RsmonError`.

Each also inherits the builtin it resembles, as the rest of rsmon does. The web layer maps these
classes to HTTP status codes in ONE table (:data:`rsmon.alerts.api.STATUS_CODES`), not per handler.
"""

from __future__ import annotations

from rsmon.errors import RsmonError


class NotFoundError(RsmonError, LookupError):
    """No such alert, key or webhook (or one the caller's key may not see)."""


class ConflictError(RsmonError, ValueError):
    """The change contradicts the current state (e.g. an invalid status transition)."""


class PreconditionFailedError(ConflictError):
    """The caller's ``If-Match`` version is not the current one (optimistic concurrency)."""


class AuthenticationError(RsmonError, PermissionError):
    """No API key, or an unknown or revoked one."""


class PermissionDeniedError(RsmonError, PermissionError):
    """The API key is valid but its scope does not allow the operation."""


class RateLimitError(RsmonError):
    """The API key has used up its request budget; ``retry_after`` is in seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLargeError(RsmonError, ValueError):
    """A request body or query string is larger than the service accepts."""


class StoreError(RsmonError, OSError):
    """The alert store cannot be opened, migrated or reached."""
