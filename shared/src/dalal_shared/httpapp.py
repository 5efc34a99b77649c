"""The HTTP app factory every service uses.

It gives each service `/healthz` (alive), `/readyz` (its own dependencies), `/metrics`
(Prometheus), OpenAPI at `/docs`, JSON errors with a stable `error` code (never a traceback),
request metrics, a request-body size limit, 503 `dependency_unavailable` when Redis or the
database does not answer, and bearer-key auth: every mutating route needs the API key, every
read route the API key or the read-only key (unless reads are configured open). The keys are
kept only as sha256 digests and compared in constant time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dalal_shared import __version__
from dalal_shared.errors import DalalError
from dalal_shared.health import task_registry
from dalal_shared.logging import get_logger

if TYPE_CHECKING:
    from dalal_shared.settings import DalalSettings

log = get_logger(__name__)
# *_created series only add noise to every scrape (prometheus_client leaves it unannotated)
disable_created_metrics()  # type: ignore[no-untyped-call]

ReadinessCheck = Callable[[], Awaitable[Any]]

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_PUBLIC_MAX_BODY_BYTES = 64 * 1024
# open without a key whatever the configuration: probes, scrapes and the API description
OPS_PATHS = ("/healthz", "/readyz", "/metrics")

HTTP_REQUESTS = Counter(
    "dalal_http_requests_total",
    "HTTP requests served",
    ["service", "method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "dalal_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
SERVICE_INFO = Gauge("dalal_service_info", "Static facts about the service", ["service", "version"])
READY = Gauge("dalal_service_ready", "1 when every readiness check passes", ["service"])
DEPENDENCY_ERRORS = Counter(
    "dalal_http_dependency_errors_total",
    "Requests answered 503 because a dependency (redis, database) did not answer",
    ["service", "dependency"],
)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}

# exceptions that mean "a dependency did not answer", not "this code is wrong": 503, retryable
_DEPENDENCY_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (redis.exceptions.ConnectionError, "redis"),
    (redis.exceptions.TimeoutError, "redis"),
    (sqlalchemy.exc.OperationalError, "database"),
    (sqlalchemy.exc.TimeoutError, "database"),
)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class HttpPolicy:
    """Who may call what, and how big a request may be."""

    api_key_digest: str | None = None
    read_key_digest: str | None = None
    read_key_required: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    public_max_body_bytes: int = DEFAULT_PUBLIC_MAX_BODY_BYTES

    @classmethod
    def from_settings(cls, settings: DalalSettings) -> HttpPolicy:
        return cls(
            api_key_digest=settings.api_key_digest(),
            read_key_digest=settings.read_key_digest(),
            read_key_required=settings.read_key_required,
            max_body_bytes=settings.max_body_bytes,
            public_max_body_bytes=settings.public_max_body_bytes,
        )


def _unauthorised(code: str, message: str, status: int = 401) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


class ApiKeyAuth:
    """ASGI middleware in front of routing, so a new route cannot forget it.

    Mutating requests need `Authorization: Bearer <api key>` (or `X-API-Key`); reads need the
    API key or the read-only key when `read_key_required`. `public_paths` need nothing;
    `open_read_paths` (probes, metrics, docs) need nothing to be read.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        digest: str | None,
        read_digest: str | None = None,
        read_key_required: bool = True,
        public_paths: Iterable[str] = (),
        open_read_paths: Iterable[str] = (),
    ):
        self.app = app
        self.digest = digest.encode() if digest else None
        self.read_digest = read_digest.encode() if read_digest else None
        self.read_key_required = read_key_required
        self.public_paths = frozenset(public_paths)
        self.open_read_paths = frozenset(open_read_paths)

    @staticmethod
    def _presented(headers: list[tuple[bytes, bytes]]) -> bytes | None:
        presented = None
        for name, value in headers:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].strip()
            elif name == b"x-api-key":
                presented = value.strip()
        return presented or None

    @staticmethod
    def _matches(candidate: bytes, digest: bytes | None) -> bool:
        return digest is not None and hmac.compare_digest(candidate, digest)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        """None when the request may pass, else the response refusing it."""
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            return None
        mutating = scope["method"] in MUTATING_METHODS
        if not mutating and (not self.read_key_required or scope["path"] in self.open_read_paths):
            return None
        presented = self._presented(scope["headers"])
        candidate = hashlib.sha256(presented).hexdigest().encode() if presented else b""
        full = self._matches(candidate, self.digest)
        read_only = self._matches(candidate, self.read_digest)
        if full or (read_only and not mutating):
            return None
        if read_only:
            return _unauthorised(
                "read_only_key", "the read-only key cannot change anything; use the API key", 403
            )
        if self.digest is None and (mutating or self.read_digest is None):
            return _unauthorised(
                "auth_not_configured", "this service has no API key configured (set DALAL_API_KEY)"
            )
        return _unauthorised("unauthorized", "a valid API key is required (Bearer token)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes its limit."""


class BodySizeLimit:
    """ASGI middleware: refuse a request body over its route's limit with 413.

    A declared `Content-Length` over the limit is refused before a byte of the body is read;
    a chunked (or lying) body is counted as it streams and cut off at the limit. The 413 closes
    the connection so the server does not go on reading the rest.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        path_limits: Mapping[str, int] | None = None,
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    @staticmethod
    def _too_large(limit: int) -> JSONResponse:
        return JSONResponse(
            error_body("payload_too_large", f"the request body is over {limit} bytes"),
            status_code=413,
            headers={"Connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    response = JSONResponse(
                        error_body("bad_request", "Content-Length is not a byte count"),
                        status_code=400,
                        headers={"Connection": "close"},
                    )
                    await response(scope, receive, send)
                    return
                if declared > limit:
                    await self._too_large(limit)(scope, receive, send)
                    return
        state = {"received": 0, "too_large": False, "started": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["too_large"] = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if state["too_large"]:  # whatever the app answers to the cut-off body: drop it
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        with suppress(_BodyTooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if state["too_large"] and not state["started"]:
            await self._too_large(limit)(scope, receive, send)


class RequestMetrics:
    """ASGI middleware: RED metrics per route template (never per raw path)."""

    def __init__(self, app: ASGIApp, *, service: str):
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            HTTP_SECONDS.labels(self.service, method, template).observe(
                time.perf_counter() - started
            )
            HTTP_REQUESTS.labels(self.service, method, template, str(status["code"])).inc()


ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "stable machine-readable code"},
        "message": {"type": "string", "description": "what went wrong, for a person"},
        "details": {
            "type": "array",
            "items": {"type": "object"},
            "description": "validation errors: where (loc) and what (msg)",
        },
        "checks": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "readiness: each dependency's state",
        },
    },
}
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document_errors(
    schema: dict[str, Any], *, public_paths: Iterable[str], read_key_required: bool
) -> dict[str, Any]:
    """Add the error answers every route can give to an OpenAPI document, with their schema."""
    public = set(public_paths) | set(OPS_PATHS)
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, item in schema.get("paths", {}).items():
        for method in _HTTP_METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            mutating = method.upper() in MUTATING_METHODS
            extra: dict[str, str] = {}
            if path not in public and (mutating or read_key_required):
                extra["401"] = "no API key, or a wrong one"
                if mutating:
                    extra["403"] = "the read-only key cannot change anything"
            elif mutating and path not in OPS_PATHS:
                extra["401"] = "the request's own credentials (Kite's checksum) do not match"
            if "{" in path:
                extra["404"] = "no such resource"
            if mutating:
                extra["409"] = "conflicts with the current state"
            if mutating or "requestBody" in operation:
                extra["413"] = "the request body is over the size limit"
            if "422" in responses or operation.get("parameters") or "requestBody" in operation:
                extra["422"] = "the request is not valid"
            if path not in ("/healthz", "/metrics"):
                extra["503"] = "a dependency (Redis, the database, Kite) is not available"
            for status, description in extra.items():
                if status == "422" or status not in responses:
                    responses[status] = _error_response(description)
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
    return schema


DOCS_ASSETS_PATH = "/docs-assets"
_DOCS_ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def _docs_assets() -> dict[str, Path]:
    """Swagger UI's and ReDoc's files, shipped by the fastapi-offline package."""
    import fastapi_offline

    static = Path(fastapi_offline.__file__).parent / "static"
    return {f.name: f for f in static.iterdir() if f.suffix in _DOCS_ASSET_TYPES}


def offline_docs(app: FastAPI) -> set[str]:
    """`/docs` (Swagger UI), `/docs/oauth2-redirect` and `/redoc` whose scripts, styles and icon
    come from the service itself under `/docs-assets/`, never from a CDN; the paths to leave
    open to reads without a key."""
    from fastapi.openapi.docs import (
        get_redoc_html,
        get_swagger_ui_html,
        get_swagger_ui_oauth2_redirect_html,
    )

    assets = _docs_assets()
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> Response:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS_PATH}/favicon.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> Response:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> Response:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(DOCS_ASSETS_PATH + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        path = assets.get(name)
        if path is None:
            raise DalalError(f"no docs asset {name}", code="not_found", status_code=404)
        return FileResponse(
            path,
            media_type=_DOCS_ASSET_TYPES[path.suffix],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    paths = {openapi_url, "/docs", "/docs/oauth2-redirect", "/redoc"}
    return paths | {f"{DOCS_ASSETS_PATH}/{name}" for name in assets}


def create_app(
    service: str,
    *,
    settings: DalalSettings | None = None,
    api_key_digest: str | None = None,
    policy: HttpPolicy | None = None,
    readiness: Mapping[str, ReadinessCheck] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    public_paths: Iterable[str] = (),
    description: str = "",
    readiness_timeout_seconds: float = 2.0,
) -> FastAPI:
    """A FastAPI app with Dalal's health, metrics, error, size-limit and auth conventions.

    The policy (keys, read auth, body limits) comes from `settings`, else `policy`, else
    `api_key_digest` alone (then only mutating routes need the key). `public_paths` need no
    key (Kite's postbacks and login redirect) and get the small `public_max_body_bytes` limit.
    """
    if settings is not None:
        policy = HttpPolicy.from_settings(settings)
    elif policy is None:  # only a digest: the key guards mutating routes
        policy = HttpPolicy(api_key_digest=api_key_digest, read_key_required=False)
    app = FastAPI(
        title=f"dalal-{service}",
        version=__version__,
        description=description,
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: /docs works with no internet
        redoc_url=None,
    )
    public = [*public_paths]
    open_reads = {*OPS_PATHS, *offline_docs(app)}
    checks = dict(readiness or {})
    # every long-lived task (consumers, lease loop, feed, relays) dead, wedged or behind: red
    checks.setdefault("tasks", task_registry().check)
    SERVICE_INFO.labels(service, __version__).set(1)

    @app.exception_handler(DalalError)
    async def _dalal_error(_request: Request, exc: DalalError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, **exc.extra), status_code=exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # never the input itself: it may be a secret, or bytes a terminal should not see
        details = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", "")}
            for err in exc.errors()
        ]
        return JSONResponse(
            error_body("validation_error", "the request is not valid", details=details),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=exc.headers
        )

    def _dependency_handler(dependency: str) -> Callable[..., Awaitable[JSONResponse]]:
        async def handle(request: Request, exc: Exception) -> JSONResponse:
            DEPENDENCY_ERRORS.labels(service, dependency).inc()
            log.warning(
                "http.dependency_unavailable",
                path=request.url.path,
                dependency=dependency,
                error=type(exc).__name__,
            )
            return JSONResponse(
                error_body(
                    "dependency_unavailable",
                    f"{dependency} is not available; retry later",
                    dependency=dependency,
                ),
                status_code=503,
                headers={"Retry-After": "5"},
            )

        return handle

    for exc_type, dependency in _DEPENDENCY_ERRORS:
        app.add_exception_handler(exc_type, _dependency_handler(dependency))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("http.unhandled", path=request.url.path, error=repr(exc), exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "an internal error occurred; see the service log"),
            status_code=500,
        )

    @app.get("/healthz", tags=["ops"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        await task_registry().check_alive()  # a dead or wedged task: 503, so it gets restarted
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["ops"], summary="Every dependency of this service answers")
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        ok = True
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout=readiness_timeout_seconds)
                results[name] = "ok"
            except Exception as exc:
                ok = False
                results[name] = f"{type(exc).__name__}: {exc}"[:200]
        READY.labels(service).set(1 if ok else 0)
        if ok:
            return JSONResponse({"status": "ready", "service": service, "checks": results})
        return JSONResponse(
            error_body("not_ready", "a dependency is not ready", checks=results),
            status_code=503,
        )

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics (text exposition format)",
        response_class=PlainTextResponse,
    )
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(
                generate_openapi(),
                public_paths={*open_reads, *public},
                read_key_required=policy.read_key_required,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.add_middleware(
        ApiKeyAuth,
        digest=policy.api_key_digest,
        read_digest=policy.read_key_digest,
        read_key_required=policy.read_key_required,
        public_paths=public,
        open_read_paths=open_reads,
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=policy.max_body_bytes,
        path_limits={p: min(policy.public_max_body_bytes, policy.max_body_bytes) for p in public},
    )
    app.add_middleware(RequestMetrics, service=service)
    return app
