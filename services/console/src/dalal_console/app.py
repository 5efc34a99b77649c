"""Wiring of the console process: pages, static files, `/api`, sessions and CSRF."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from dalal_console import pages
from dalal_console.api import router
from dalal_console.config import ConsoleSettings
from dalal_console.events import READ_TIMEOUT_SECONDS
from dalal_console.sessions import COOKIE_NAME, CSRF_HEADER, SessionSigner
from dalal_console.upstream import SERVICES, Upstreams
from dalal_shared.errors import NotFoundError
from dalal_shared.httpapp import MUTATING_METHODS, create_app, error_body

NAME = "console"
STATIC = Path(__file__).parent / "static"
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
PUBLIC_PATHS = {"/login", "/api/login", "/favicon.ico", *(f"/static/{a}" for a in ASSETS)}
# what a person reaches with the session cookie (`/api/...` too)
SESSION_PAGES = {*pages.PAGES, "/kite-login"}
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _same_origin(scope: Scope) -> bool:
    """A browser names the page's origin on a cross-site request; it must be this host."""
    origin = _header(scope, b"origin")
    if origin is None:  # not a browser, or a browser that names no origin: the token decides
        return True
    host = _header(scope, b"host")
    return host is not None and urlsplit(origin).netloc == host


class ConsoleAuth:
    """ASGI middleware in front of everything: a page or `/api` request carries either the API
    key (scripts: checked by the shared key middleware behind this one) or a valid session
    cookie, and a mutating one with a cookie also the session's CSRF token from a page of this
    origin. A cookie request that passes is handed on with the API key, so the shared key
    middleware and the routes see one kind of caller. Without either: pages redirect to the
    login page, `/api` answers 401."""

    def __init__(self, app: ASGIApp, *, signer: SessionSigner, api_key: str):
        self.app = app
        self.signer = signer
        self.authorization = (b"authorization", f"Bearer {api_key}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        mutating = method in MUTATING_METHODS
        if path in PUBLIC_PATHS or not (path in SESSION_PAGES or path.startswith("/api/")):
            # the login, assets, probes and docs (and unknown paths, refused behind us)
            if mutating and not _same_origin(scope):
                await self._refuse(scope, receive, send, 403, "cross_origin", "not from this site")
                return
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if any(k in (b"authorization", b"x-api-key") for k, _ in headers):
            await self.app(scope, receive, send)  # the key itself: checked behind us
            return
        cookie = SimpleCookie()
        try:
            cookie.load(_header(scope, b"cookie") or "")
        except Exception:  # a malformed Cookie header is no session
            cookie = SimpleCookie()
        morsel = cookie.get(COOKIE_NAME)
        session = self.signer.verify(morsel.value if morsel else None, time.time())
        if session is None:
            if path.startswith("/api/") or mutating:
                await self._refuse(
                    scope, receive, send, 401, "login_required", "log in to the console first"
                )
            else:
                target = "/login" + (f"?next={quote(path)}" if path != "/" else "")
                await RedirectResponse(target, status_code=303)(scope, receive, send)
            return
        token = _header(scope, CSRF_HEADER.encode())
        if mutating and not (_same_origin(scope) and self.signer.csrf_ok(session, token)):
            await self._refuse(
                scope, receive, send, 403, "csrf_failed",
                "the request did not come from a console page (missing or wrong CSRF token); "
                "reload the page",
            )  # fmt: skip
            return
        scope = dict(scope)
        scope["headers"] = [*headers, self.authorization]
        scope["state"] = {**scope.get("state", {}), "console_session": session}
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str
    ) -> None:
        await JSONResponse(error_body(code, message), status_code=status)(scope, receive, send)


class SecurityHeaders:
    """Every console page: only the console's own scripts, styles and connections; never in a
    frame; no referrer to other sites."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": PAGE_CSP.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"same-origin",
                }
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def build_app(settings: ConsoleSettings) -> FastAPI:
    signer = SessionSigner(settings.key(), lifetime_seconds=settings.session_hours * 3600)
    upstreams = Upstreams(
        {name: settings.url_of(name) for name in SERVICES},
        settings.key(),
        timeout=settings.upstream_timeout_seconds,
    )
    async_redis = aioredis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=READ_TIMEOUT_SECONDS
    )
    sync_redis = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await upstreams.close()
        await _app.state.http.aclose()
        await async_redis.aclose()
        sync_redis.close()

    async def check_redis() -> None:
        await async_redis.ping()

    app = create_app(
        NAME,
        settings=settings,
        readiness={"redis": check_redis},
        lifespan=lifespan,
        public_paths=PUBLIC_PATHS,
        description="The trading day in a browser: pages over the services' routes.",
    )
    app.state.settings = settings
    app.state.signer = signer
    app.state.upstreams = upstreams
    app.state.redis = async_redis
    app.state.sync_redis = sync_redis
    app.state.http = httpx.AsyncClient(timeout=10)
    app.state.login_failures = []
    app.include_router(router)

    def _csrf(request: Request) -> str:
        session = getattr(request.state, "console_session", None)
        return signer.csrf_token(session) if session is not None else ""

    def _page_route(path: str) -> None:
        async def show(request: Request) -> HTMLResponse:
            html = pages.page(path, _csrf(request), settings.grafana_url)
            return HTMLResponse(html, headers={"Cache-Control": "no-store"})

        app.add_api_route(path, show, methods=["GET"], include_in_schema=False)

    for path in pages.PAGES:
        _page_route(path)

    @app.get("/login", include_in_schema=False)
    async def login_page() -> HTMLResponse:
        return HTMLResponse(pages.login_page(), headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise NotFoundError(f"no asset {name}")
        return FileResponse(STATIC / name, media_type=ASSETS[name])

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/kite-login", include_in_schema=False)
    async def kite_login() -> RedirectResponse:
        """The broker's Kite login link, as the browser reaches the broker."""
        base = (settings.broker_public_url or settings.broker_url).rstrip("/")
        return RedirectResponse(f"{base}/session/login", status_code=303)

    app.add_middleware(ConsoleAuth, signer=signer, api_key=settings.key())
    app.add_middleware(SecurityHeaders)
    return app
