"""HTTP plumbing of the alert API: settings, the error -> status table, size limits, OpenAPI 3.0.

Errors are mapped to HTTP status codes in ONE table (:data:`STATUS_CODES`, titiler's habit) and
answered as RFC 9457 problem details (``application/problem+json``), so handlers only raise.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from http import HTTPStatus

from rsmon.alerts.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitError,
    StoreError,
)
from rsmon.errors import FormatError, InputError, NoDataError, OutputError, RsmonError

log = logging.getLogger(__name__)

#: Error class -> HTTP status; the most specific class in an error's MRO wins.
STATUS_CODES: dict[type[BaseException], int] = {
    InputError: 400,
    FormatError: 400,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    NoDataError: 404,
    ConflictError: 409,
    PreconditionFailedError: 412,
    PayloadTooLargeError: 413,
    RateLimitError: 429,
    OutputError: 500,
    StoreError: 503,
    RsmonError: 500,
}

PROBLEM_TYPE = "application/problem+json"
ENV_CONFIG = "RSMON_ALERTS_CONFIG"


def status_for(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 500


def problem(status: int, detail: str, headers: dict | None = None):
    """A problem-details response."""
    from starlette.responses import Response

    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return Response(json.dumps(body), status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def error_headers(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, RateLimitError):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if isinstance(exc, AuthenticationError):
        return {"WWW-Authenticate": 'APIKey header="X-API-Key"'}
    return {}


@dataclass
class ServiceSettings:
    """How the API serves: limits, CORS, caching, webhook dispatch. Defaults suit one platform."""

    title: str = "rsmon redline change alerts"
    #: per-key token bucket: sustained requests/s (<= 0: no limit) and burst
    rate_limit: float = 50.0
    burst: float = 100.0
    #: largest request body (PATCH, POST /webhooks) and query string, bytes
    max_body_bytes: int = 64 * 1024
    max_query_bytes: int = 8 * 1024
    #: origins allowed by CORS (``["*"]`` for any); empty = no CORS headers
    cors_origins: list[str] = field(default_factory=list)
    #: seconds a key lookup is cached (a revoked key is refused at most this long after revocation)
    key_cache_s: float = 5.0
    #: seconds the collection extent is cached
    extent_cache_s: float = 30.0
    #: gzip responses for clients that accept it (GDAL, browsers): ~10x less traffic for ~2x the CPU
    #: of a 100-alert page; off by default (a reverse proxy usually compresses)
    gzip: bool = False
    #: run the webhook dispatcher in this process
    webhooks: bool = True
    webhook_poll_s: float = 2.0

    def to_env(self, store_url: str) -> str:
        return json.dumps({"store": store_url, "settings": asdict(self)})

    @classmethod
    def from_env(cls) -> tuple[str, "ServiceSettings"]:
        raw = os.environ.get(ENV_CONFIG)
        if not raw:
            raise InputError(f"{ENV_CONFIG} is not set (rsmon serve sets it for its workers)")
        data = json.loads(raw)
        return data["store"], cls(**data["settings"])


class LimitMiddleware:
    """Pure ASGI guard: query strings over ``max_query`` -> 414, bodies over ``max_body`` -> 413."""

    def __init__(self, app, max_body: int, max_query: int):
        self.app = app
        self.max_body = max_body
        self.max_query = max_query

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if len(scope.get("query_string", b"")) > self.max_query:
            return await problem(414, f"query string longer than {self.max_query} bytes")(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    return await problem(400, "invalid Content-Length")(scope, receive, send)
                if too_big:
                    return await problem(413, f"request body larger than {self.max_body} bytes")(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise PayloadTooLargeError(f"request body larger than {self.max_body} bytes")
            return message

        return await self.app(scope, limited_receive, send)


def _nullable(schema: dict) -> dict | None:
    any_of = schema.get("anyOf")
    if not isinstance(any_of, list) or len(any_of) != 2:
        return None
    others = [s for s in any_of if s != {"type": "null"}]
    if len(others) != 1:
        return None
    merged = {k: v for k, v in schema.items() if k != "anyOf"}
    other = others[0]
    if "$ref" in other:
        merged["allOf"] = [other]
    else:
        merged.update(other)
    merged["nullable"] = True
    return merged


def to_openapi30(document: dict) -> dict:
    """FastAPI's OpenAPI 3.1 document rewritten as 3.0.3 (OGC API - Features conformance class oas30).

    Handles what this API uses: ``anyOf [X, null]`` -> ``X`` + ``nullable``, ``const`` -> ``enum``,
    schema ``examples`` lists -> ``example``, numeric ``exclusiveMinimum/Maximum``.
    """
    doc = copy.deepcopy(document)

    def walk(node):
        if isinstance(node, dict):
            replaced = _nullable(node)
            if replaced is not None:
                node.clear()
                node.update(replaced)
            if "const" in node:
                node["enum"] = [node.pop("const")]
            for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
                if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
                    node[plain] = node.pop(bound)
                    node[bound] = True
            if isinstance(node.get("examples"), list) and "type" in node:
                examples = node.pop("examples")
                if examples:
                    node["example"] = examples[0]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    doc["openapi"] = "3.0.3"
    return doc
