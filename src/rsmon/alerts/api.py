"""The alert API: OGC API - Features Part 1 (Core, GeoJSON, OpenAPI 3.0) over an alert store.

``create_app(store)`` returns a FastAPI application:

=========================================  =======  ==========================================
path                                       scope    what
=========================================  =======  ==========================================
``GET /``                                  public   landing page (OGC)
``GET /conformance``                       public   conformance classes
``GET /api``                               public   OpenAPI 3.0 document (``/docs`` renders it)
``GET /health``                            public   store reachable
``GET /collections``                       read     the one collection, ``alerts``
``GET /collections/alerts``                read     its metadata and extent
``GET /collections/alerts/items``          read     features: ``bbox``, ``datetime``, ``limit``
                                                    (1-10000), ``redline_id``, ``class``,
                                                    ``min_confidence``, ``status``; ``next``
                                                    links (``cursor``); the feed with
                                                    ``updated_since=<cursor>`` (0 = start)
``GET /collections/alerts/items/{id}``     read     one alert (``ETag``; ``If-None-Match``)
``PATCH /collections/alerts/items/{id}``   write    status change (``If-Match`` optional)
``GET .../items/{id}/history``             read     the alert's audit log
``GET|POST /webhooks``, ``DELETE``         admin    webhook subscriptions
=========================================  =======  ==========================================

Keys travel in the ``X-API-Key`` header. A key limited to redlines sees only their alerts
everywhere (lists, single items, feed, history, webhooks); an alert outside them is "not found".
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import threading
import time
from typing import Literal

from fastapi import Depends, FastAPI, Path, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response

from rsmon import __version__
from rsmon.alerts import params
from rsmon.alerts.cursor import decode_cursor, encode_cursor
from rsmon.alerts.errors import AuthenticationError, NotFoundError, PermissionDeniedError, PreconditionFailedError
from rsmon.alerts.lifecycle import Status
from rsmon.alerts.schema import CLASSES, ID_PATTERN, utc_now
from rsmon.alerts.security import KeyInfo, Scope, TokenBucket, hash_token
from rsmon.alerts.store import AlertQuery, AlertStore, open_store
from rsmon.alerts.web import (
    LimitMiddleware,
    ServiceSettings,
    error_headers,
    problem,
    status_for,
    to_openapi30,
)
from rsmon.errors import InputError, RsmonError

log = logging.getLogger(__name__)

__all__ = ["create_app", "app_from_environment", "CONFORMANCE"]

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GEOJSON = "application/geo+json"
OPENAPI_TYPE = "application/vnd.oai.openapi+json;version=3.0"
COLLECTION = "alerts"
MAX_LIMIT = 10000
#: Item pages up to this size are answered on the event loop (a few ms of SQL), larger ones in threads.
_INLINE_LIMIT = 1000
#: query parameters of the items endpoint and their longest accepted values
_ITEM_PARAMS = {"bbox": 400, "datetime": 100, "limit": 10, "cursor": 100, "updated_since": 100, "redline_id": 4000,
                "class": 400, "min_confidence": 10, "status": 200, "f": 40}


def _query_param(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string", "maxLength": _ITEM_PARAMS[name]}}


#: OpenAPI declaration of the items endpoint's query parameters (OGC API - Features Part 1 + rsmon's)
ITEM_PARAMETERS = [
    _query_param("bbox", "minx,miny,maxx,maxy (or 6 numbers with heights), CRS84 degrees; features whose "
                         "geometry intersects it", {"type": "array", "minItems": 4, "maxItems": 6,
                                                    "items": {"type": "number"}}) | {"style": "form", "explode": False},
    _query_param("datetime", "RFC 3339 instant or interval (2024-05-01, 2024-05-01/2024-05-31, ../2024-05-31, "
                             "2024-05-01/..) overlapping first_detected..last_detected"),
    _query_param("limit", "features per page (1-10000)",
                 {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 10}),
    _query_param("cursor", "page position, from a next link"),
    _query_param("updated_since", "incremental feed: alerts changed after this cursor, in change order (0 = from "
                                  "the start); the response's 'cursor' is the next value"),
    _query_param("redline_id", "comma-separated redline ids"),
    _query_param("class", "comma-separated classes: " + ", ".join(CLASSES)),
    _query_param("min_confidence", "low, high, highest (or 1-3)",
                 {"type": "string", "enum": ["low", "high", "highest", "1", "2", "3"]}),
    _query_param("status", "comma-separated statuses: new, under_review, confirmed, dismissed"),
    _query_param("f", "format: json or geojson (the only one)", {"type": "string", "enum": ["json", "geojson"]}),
]
_ETAG = re.compile(r'^\s*(?:W/)?"v(\d+)"\s*$')

_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description="API key made by `rsmon keys create` (scopes read, write, admin)")


class GeoJSONResponse(Response):
    media_type = GEOJSON


class StatusChange(BaseModel):
    """Body of ``PATCH /collections/alerts/items/{id}``."""

    model_config = ConfigDict(extra="forbid")
    status: Status = Field(description="new status: under_review, confirmed, dismissed (new -> under_review -> "
                                       "confirmed | dismissed; confirmed/dismissed -> under_review reopens)")
    reason: str | None = Field(None, max_length=2000, description="why (required to dismiss and to reopen)")
    interpreter: str | None = Field(None, max_length=200, description="person deciding, recorded with the key id")


class WebhookCreate(BaseModel):
    """Body of ``POST /webhooks``."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000, pattern=r"^https?://[^\s/?#]+[^\s]*$", description="http(s) URL receiving POSTs")
    secret: str | None = Field(None, min_length=16, max_length=200,
                               description="HMAC secret (16+ characters); generated and returned once when absent")
    events: Literal["new", "all"] = Field("new", description="new: alerts created since the last delivery; "
                                                             "all: every change")
    redlines: list[str] | None = Field(None, max_length=100, description="only these redline ids")
    from_start: bool = Field(False, description="deliver existing alerts too (default: only later ones)")


class _Keys:
    """Key lookups with a short cache (hash -> key info), so requests rarely touch the store."""

    def __init__(self, store: AlertStore, ttl_s: float):
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[KeyInfo | None, float]] = {}
        self._lock = threading.Lock()

    def lookup(self, token: str) -> KeyInfo | None:
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        info = self.store.find_key(token)
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[digest] = (info, now + self.ttl_s)
        return info


def _base(request: Request) -> str:
    return str(request.base_url)


def _links_common(request: Request) -> list[dict]:
    return [{"href": str(request.url), "rel": "self", "type": "application/json", "title": "this document"}]


def _json(data, status: int = 200, headers: dict | None = None, media_type: str = "application/json") -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type=media_type,
                    headers=headers)


def _etag(version: int) -> str:
    return f'"v{version}"'


def create_app(store: AlertStore | str, settings: ServiceSettings | None = None) -> FastAPI:
    """The alert API over ``store`` (an :class:`AlertStore` or a store URL, opened and closed by the app)."""
    settings = settings or ServiceSettings()
    owns_store = isinstance(store, str)
    alert_store: AlertStore = open_store(store) if owns_store else store
    keys = _Keys(alert_store, settings.key_cache_s)
    limiter = TokenBucket(settings.rate_limit, settings.burst)
    extent_cache: dict[frozenset | None, tuple[float, dict]] = {}
    dispatcher = None
    if settings.webhooks:
        from rsmon.alerts.webhook import WebhookDispatcher

        dispatcher = WebhookDispatcher(alert_store, poll_interval_s=settings.webhook_poll_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if dispatcher is not None:
            dispatcher.start()
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.stop()
            if owns_store:
                alert_store.close()

    app = FastAPI(title=settings.title, version=__version__, lifespan=lifespan, openapi_url="/openapi.json",
                  docs_url="/docs", redoc_url=None,
                  description="Change alerts of rsmon's redline supervision as OGC API - Features. "
                              "Send the key in the X-API-Key header.")
    app.state.store = alert_store
    app.state.settings = settings
    app.state.dispatcher = dispatcher

    # ---- errors: one table ----------------------------------------------------------------
    @app.exception_handler(RsmonError)
    async def _rsmon_error(request: Request, exc: RsmonError):
        status = status_for(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return problem(status, " ".join(str(exc).split()), error_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path", "header"))
            parts.append(f"{where or 'request'}: {err.get('msg')}")
        return problem(400, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return problem(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return problem(500, "internal error (logged on the server)")

    # ---- middleware (last added runs first) ------------------------------------------------
    if settings.gzip:
        app.add_middleware(GZipMiddleware, minimum_size=4096, compresslevel=5)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "PATCH", "POST", "DELETE", "OPTIONS"],
                           allow_headers=["X-API-Key", "Content-Type", "If-Match", "If-None-Match"],
                           expose_headers=["ETag", "Retry-After"], max_age=600)
    app.add_middleware(LimitMiddleware, max_body=settings.max_body_bytes, max_query=settings.max_query_bytes)

    # ---- authentication ----------------------------------------------------------------------
    def principal(needed: Scope):
        # async: runs on the event loop, no thread hop (lookups are cached; a miss reads the store)
        async def dependency(token: str | None = Security(_key_header)) -> KeyInfo:
            if not token:
                raise AuthenticationError("missing API key: send it in the X-API-Key header")
            if len(token) > 200:
                raise AuthenticationError("unknown or revoked API key")
            info = keys.lookup(token)
            if info is None:
                raise AuthenticationError("unknown or revoked API key")
            limiter.take(info.key_id)
            info.require(needed)
            return info
        return dependency

    reader, writer, admin = principal(Scope.read), principal(Scope.write), principal(Scope.admin)

    # ---- OGC: landing, conformance, API ----------------------------------------------------
    @app.get("/", summary="Landing page", tags=["Capabilities"])
    def landing(request: Request):
        base = _base(request)
        return _json({
            "title": settings.title,
            "description": "Human-activity change alerts in ecological protection redlines (rsmon).",
            "links": [
                *_links_common(request),
                {"href": base + "api", "rel": "service-desc", "type": OPENAPI_TYPE, "title": "API definition"},
                {"href": base + "docs", "rel": "service-doc", "type": "text/html", "title": "API documentation"},
                {"href": base + "conformance", "rel": "conformance", "type": "application/json",
                 "title": "conformance classes"},
                {"href": base + "collections", "rel": "data", "type": "application/json", "title": "collections"},
            ]})

    @app.get("/conformance", summary="Conformance classes", tags=["Capabilities"])
    def conformance():
        return _json({"conformsTo": CONFORMANCE})

    def openapi30():
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            app.openapi_schema = to_openapi30(get_openapi(title=app.title, version=app.version,
                                                          description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi30

    @app.get("/api", summary="OpenAPI 3.0 document", tags=["Capabilities"])
    def api_document():
        return _json(app.openapi(), media_type=OPENAPI_TYPE)

    @app.get("/health", summary="Store reachable", tags=["Capabilities"])
    def health():
        return _json({"status": "ok", "last_change": alert_store.last_seq()})

    # ---- collections ---------------------------------------------------------------------
    def collection_doc(request: Request, key: KeyInfo) -> dict:
        now = time.monotonic()
        cached = extent_cache.get(key.redlines)
        if cached is None or cached[0] < now:
            bbox, interval, count = alert_store.extent(redlines=key.redlines)
            extent = {"spatial": {"bbox": [list(bbox) if bbox else [-180.0, -90.0, 180.0, 90.0]], "crs": CRS84},
                      "temporal": {"interval": [[f"{interval[0]}T00:00:00Z", f"{interval[1]}T23:59:59Z"]
                                                if interval else [None, None]],
                                   "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}}
            extent_cache[key.redlines] = cached = (now + settings.extent_cache_s, extent)
        base = _base(request)
        return {
            "id": COLLECTION, "title": "Redline change alerts",
            "description": "Change patches (construction, mining/quarrying, farmland reclamation, vegetation "
                           "clearing, water-body change) detected in redlines, with the interpreters' status.",
            "itemType": "feature", "crs": [CRS84], "extent": cached[1],
            "links": [
                {"href": f"{base}collections/{COLLECTION}", "rel": "self", "type": "application/json"},
                {"href": f"{base}collections/{COLLECTION}/items", "rel": "items", "type": GEOJSON,
                 "title": "alerts"},
            ]}

    @app.get("/collections", summary="Feature collections", tags=["Data"])
    def collections(request: Request, key: KeyInfo = Depends(reader)):
        return _json({"collections": [collection_doc(request, key)], "links": _links_common(request)})

    @app.get("/collections/{collection_id}", summary="The alerts collection", tags=["Data"])
    def collection(request: Request, collection_id: str = Path(max_length=100), key: KeyInfo = Depends(reader)):
        _check_collection(collection_id)
        return _json(collection_doc(request, key))

    # ---- items -------------------------------------------------------------------------------
    @app.get("/collections/{collection_id}/items", summary="Alerts (filter, page, or follow the feed)",
             tags=["Data"], response_class=GeoJSONResponse,
             responses={200: {"content": {GEOJSON: {}}, "description": "GeoJSON FeatureCollection"}},
             openapi_extra={"parameters": ITEM_PARAMETERS})
    async def items(request: Request, collection_id: str = Path(max_length=100), key: KeyInfo = Depends(reader)):
        # query parameters are read here, strictly (rsmon.alerts.params), and declared in
        # ITEM_PARAMETERS: cheaper than FastAPI's per-parameter machinery on the hot path
        qp = request.query_params
        for name, longest in _ITEM_PARAMS.items():
            if len(qp.get(name, "")) > longest:
                raise InputError(f"{name}: longer than {longest} characters")
        bbox, datetime_, cursor, updated_since = (qp.get(n) for n in ("bbox", "datetime", "cursor", "updated_since"))
        redline_id, class_, min_confidence, status, f = (qp.get(n) for n in ("redline_id", "class", "min_confidence",
                                                                            "status", "f"))
        limit = params.parse_limit(qp.get("limit"), MAX_LIMIT)
        _check_collection(collection_id)
        _check_params(request)
        if f is not None and f not in ("json", "geojson", GEOJSON):
            raise InputError(f"f: the only format is GeoJSON (f=json), got {f!r}")
        if cursor is not None and updated_since is not None:
            raise InputError("cursor and updated_since cannot be combined: follow the feed with updated_since "
                             "(its next link carries the position)")
        feed = updated_since is not None
        after = 0
        if feed:
            after = decode_cursor(updated_since, "feed", alert_store.store_id, "updated_since")
        elif cursor is not None:
            after = decode_cursor(cursor, "page", alert_store.store_id, "cursor")
        query = AlertQuery(
            bbox=params.parse_bbox(bbox) if bbox is not None else None,
            days=params.parse_datetime(datetime_) if datetime_ is not None else None,
            redline_ids=params.parse_list(redline_id, "redline_id") if redline_id is not None else None,
            classes=params.parse_classes(class_) if class_ is not None else None,
            statuses=params.parse_statuses(status) if status is not None else None,
            min_confidence=params.parse_min_confidence(min_confidence) if min_confidence is not None else None,
            limit=limit, after=after, feed=feed)
        if limit <= _INLINE_LIMIT:  # a few ms: cheaper inline than a thread hop
            page = alert_store.query(query, redlines=key.redlines)
        else:  # large pages in the thread pool, so they do not hold up the event loop
            page = await run_in_threadpool(alert_store.query, query, redlines=key.redlines)
        links = [{"href": str(request.url), "rel": "self", "type": GEOJSON, "title": "this page"},
                 {"href": f"{_base(request)}collections/{COLLECTION}", "rel": "collection",
                  "type": "application/json", "title": "the collection"}]
        if page.more:
            token = encode_cursor("feed" if feed else "page", alert_store.store_id, page.next_after)
            nxt = request.url.include_query_params(**({"updated_since": token} if feed else {"cursor": token}))
            links.append({"href": str(nxt), "rel": "next", "type": GEOJSON, "title": "next page"})
        head = ('{"type":"FeatureCollection","timeStamp":"' + utc_now()[:19] + 'Z","numberMatched":'
                + str(page.number_matched) + ',"numberReturned":' + str(len(page.rows)))
        if feed:
            head += ',"cursor":' + json.dumps(encode_cursor("feed", alert_store.store_id, page.feed_position))
        body = (head + ',"links":' + json.dumps(links, separators=(",", ":")) + ',"features":['
                + ",".join(row.feature for row in page.rows) + "]}")
        return GeoJSONResponse(body, headers={"Cache-Control": "no-store"})

    def one_alert(request: Request, alert_id: str, key: KeyInfo) -> Response:
        alert = alert_store.get(alert_id, redlines=key.redlines)
        base = _base(request)
        links = [{"href": f"{base}collections/{COLLECTION}/items/{alert_id}", "rel": "self", "type": GEOJSON},
                 {"href": f"{base}collections/{COLLECTION}", "rel": "collection", "type": "application/json"},
                 {"href": f"{base}collections/{COLLECTION}/items/{alert_id}/history", "rel": "related",
                  "type": "application/json", "title": "audit log"}]
        body = alert.feature_text[:-1] + ',"links":' + json.dumps(links, separators=(",", ":")) + "}"
        return GeoJSONResponse(body, headers={"ETag": _etag(alert.version), "Cache-Control": "no-cache"})

    id_path = Path(pattern=ID_PATTERN, max_length=128, description="stable alert id")

    @app.get("/collections/{collection_id}/items/{alert_id}", summary="One alert", tags=["Data"],
             response_class=GeoJSONResponse,
             responses={200: {"content": {GEOJSON: {}}, "description": "GeoJSON Feature"}})
    async def item(request: Request, collection_id: str = Path(max_length=100), alert_id: str = id_path,
                   key: KeyInfo = Depends(reader)):
        _check_collection(collection_id)
        response = one_alert(request, alert_id, key)
        if request.headers.get("if-none-match", "").strip() == response.headers["ETag"]:
            return Response(status_code=304, headers={"ETag": response.headers["ETag"]})
        return response

    @app.patch("/collections/{collection_id}/items/{alert_id}", summary="Change an alert's status",
               tags=["Lifecycle"], response_class=GeoJSONResponse,
               responses={200: {"content": {GEOJSON: {}}, "description": "the updated alert"},
                          409: {"description": "transition not allowed"},
                          412: {"description": "If-Match does not match the current version"}})
    def patch_item(request: Request, change: StatusChange, collection_id: str = Path(max_length=100),
                   alert_id: str = id_path, key: KeyInfo = Depends(writer)):
        _check_collection(collection_id)
        if_version = _if_match(request, alert_id)
        actor = f"key:{key.key_id}" + (f" ({key.name})" if key.name else "")
        if change.interpreter:
            actor += f" interpreter:{' '.join(change.interpreter.split())}"
        alert_store.set_status(alert_id, change.status, actor=actor, reason=change.reason,
                               if_version=if_version, redlines=key.redlines)
        if dispatcher is not None:
            dispatcher.wake()
        return one_alert(request, alert_id, key)

    @app.get("/collections/{collection_id}/items/{alert_id}/history", summary="Audit log of one alert",
             tags=["Lifecycle"])
    def item_history(collection_id: str = Path(max_length=100), alert_id: str = id_path,
                     key: KeyInfo = Depends(reader)):
        _check_collection(collection_id)
        entries = alert_store.history(alert_id, redlines=key.redlines)
        return _json({"alert_id": alert_id, "entries": [e.to_dict() for e in entries]})

    # ---- webhooks (admin) --------------------------------------------------------------------
    @app.get("/webhooks", summary="Webhook subscriptions and their delivery state", tags=["Webhooks"])
    def list_webhooks(key: KeyInfo = Depends(admin)):
        hooks = [h for h in alert_store.list_webhooks() if _visible_hook(h.redlines, key)]
        return _json({"webhooks": [h.to_dict() for h in hooks]})

    @app.post("/webhooks", summary="Subscribe a URL to new alerts", tags=["Webhooks"], status_code=201)
    def add_webhook(spec: WebhookCreate, key: KeyInfo = Depends(admin)):
        if spec.redlines is not None:
            params.parse_list(",".join(spec.redlines), "redlines")
        redlines = frozenset(spec.redlines) if spec.redlines is not None else key.redlines
        if key.redlines is not None and not redlines <= key.redlines:
            raise PermissionDeniedError(f"key {key.key_id} may not subscribe to redlines outside its own")
        secret = spec.secret or secrets.token_urlsafe(32)
        hook = alert_store.add_webhook(spec.url, secret, events=spec.events, redlines=redlines,
                                       from_start=spec.from_start, created_by=f"key:{key.key_id}")
        body = hook.to_dict()
        if spec.secret is None:
            body["secret"] = secret  # shown once
        if dispatcher is not None:
            dispatcher.wake()
        return _json(body, status=201)

    @app.delete("/webhooks/{hook_id}", summary="Remove a webhook", tags=["Webhooks"], status_code=204)
    def delete_webhook(hook_id: str = Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$"), key: KeyInfo = Depends(admin)):
        hook = alert_store.get_webhook(hook_id)
        if not _visible_hook(hook.redlines, key):
            raise NotFoundError(f"webhook {hook_id}: not found")
        alert_store.remove_webhook(hook_id)
        return Response(status_code=204)

    return app


def _visible_hook(redlines: frozenset[str] | None, key: KeyInfo) -> bool:
    return key.redlines is None or (redlines is not None and redlines <= key.redlines)


def _check_collection(collection_id: str) -> None:
    if collection_id != COLLECTION:
        raise NotFoundError(f"collection {collection_id!r}: not found (the only one is {COLLECTION!r})")


def _check_params(request: Request) -> None:
    """OGC /req/core/query-param-unknown: unknown parameters are an error, as are repeated ones."""
    names = list(request.query_params.keys())
    unknown = sorted(set(names) - _ITEM_PARAMS.keys())
    if unknown:
        raise InputError(f"unknown query parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(_ITEM_PARAMS))}")
    repeated = sorted({n for n in names if len(request.query_params.getlist(n)) > 1})
    if repeated:
        raise InputError(f"query parameter(s) given more than once: {', '.join(repeated)}")


def _if_match(request: Request, alert_id: str) -> int | None:
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    match = _ETAG.match(header)
    if match is None:
        raise PreconditionFailedError(f"alert {alert_id}: If-Match {header!r} is not an ETag of this service")
    return int(match.group(1))


def app_from_environment() -> FastAPI:
    """Factory for uvicorn workers: store URL and settings from ``RSMON_ALERTS_CONFIG`` (set by rsmon serve)."""
    url, settings = ServiceSettings.from_env()
    return create_app(url, settings)

