"""The HTTP app factory every service uses.

It gives each service `/healthz` (alive), `/readyz` (its own dependencies), `/metrics`
(Prometheus), OpenAPI at `/docs`, JSON errors with a stable `error` code (never a traceback),
request metrics, and bearer-key auth on every mutating route (the key is kept only as a sha256
digest and compared in constant time).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
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
from dalal_shared.logging import get_logger

log = get_logger(__name__)
disable_created_metrics()  # *_created series only add noise to every scrape

ReadinessCheck = Callable[[], Awaitable[Any]]

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

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


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyAuth:
    """ASGI middleware: every mutating request needs `Authorization: Bearer <key>`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        digest: str | None,
        public_paths: Iterable[str] = (),
    ):
        self.app = app
        self.digest = digest.encode() if digest else None
        self.public_paths = frozenset(public_paths)

    def _authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        presented = None
        for name, value in headers:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].strip()
            elif name == b"x-api-key":
                presented = value.strip()
        if presented is None or self.digest is None:
            return False
        candidate = hashlib.sha256(presented).hexdigest().encode()
        return hmac.compare_digest(candidate, self.digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in MUTATING_METHODS
            and scope["path"] not in self.public_paths
            and not self._authorised(scope["headers"])
        ):
            if self.digest is None:
                body = error_body(
                    "auth_not_configured",
                    "this service has no API key configured (set DALAL_API_KEY)",
                )
            else:
                body = error_body("unauthorized", "a valid API key is required (Bearer token)")
            response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


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


def create_app(
    service: str,
    *,
    api_key_digest: str | None,
    readiness: Mapping[str, ReadinessCheck] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    public_paths: Iterable[str] = (),
    description: str = "",
    readiness_timeout_seconds: float = 2.0,
) -> FastAPI:
    """A FastAPI app with Dalal's health, metrics, error and auth conventions."""
    app = FastAPI(
        title=f"dalal-{service}",
        version=__version__,
        description=description,
        lifespan=lifespan,
    )
    checks = dict(readiness or {})
    SERVICE_INFO.labels(service, __version__).set(1)

    @app.exception_handler(DalalError)
    async def _dalal_error(_request: Request, exc: DalalError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("http.unhandled", path=request.url.path, error=repr(exc), exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "an internal error occurred; see the service log"),
            status_code=500,
        )

    @app.get("/healthz", tags=["ops"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
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

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(ApiKeyAuth, digest=api_key_digest, public_paths=public_paths)
    app.add_middleware(RequestMetrics, service=service)
    return app
