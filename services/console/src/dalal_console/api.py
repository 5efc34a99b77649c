"""The console's JSON routes (`/api/...`): login, the composite views of its pages, the DLQ,
live events, and the allow-listed routes of the services, forwarded with the API key."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from dalal_console import views
from dalal_console.events import event_stream
from dalal_console.sessions import COOKIE_NAME, Session
from dalal_console.upstream import SERVICES, Answer, Unreachable, allowed
from dalal_shared.dlq import DeadLetters, DlqError
from dalal_shared.errors import NotFoundError
from dalal_shared.httpapp import error_body
from dalal_shared.timeutil import ist_iso

router = APIRouter(prefix="/api", tags=["console"])

# login attempts with a wrong key: at most this many per window, then 429 until it passes
LOGIN_FAILURES_ALLOWED = 10
LOGIN_WINDOW_SECONDS = 60.0


class LoginBody(BaseModel):
    model_config = {"extra": "forbid"}
    key: str = Field(min_length=1, max_length=512)


class ReplayBody(BaseModel):
    model_config = {"extra": "forbid"}
    dlq_id: str = Field(min_length=1, max_length=64)
    stream: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9.]*$")


def _session(request: Request) -> Session | None:
    return getattr(request.state, "console_session", None)


@router.post("/login", summary="Log in with the API key: sets the session cookie")
async def login(body: LoginBody, request: Request) -> JSONResponse:
    state = request.app.state
    now = time.time()
    failures = [t for t in state.login_failures if now - t < LOGIN_WINDOW_SECONDS]
    state.login_failures = failures
    if len(failures) >= LOGIN_FAILURES_ALLOWED:
        return JSONResponse(
            error_body("too_many_attempts", "too many wrong keys; wait a minute and retry"),
            status_code=429,
            headers={"Retry-After": str(int(LOGIN_WINDOW_SECONDS))},
        )
    if not state.signer.key_matches(body.key.strip()):
        failures.append(now)
        return JSONResponse(
            error_body("bad_key", "that is not this stack's API key (see var/api_key)"),
            status_code=401,
        )
    cookie, session = state.signer.issue(now)
    resp = JSONResponse({"logged_in": True, "csrf": state.signer.csrf_token(session)})
    resp.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=int(state.signer.lifetime_seconds),
        httponly=True,
        samesite="strict",
        secure=state.settings.secure_cookies,
        path="/",
    )
    return resp


@router.post("/logout", summary="Forget the session cookie")
async def logout() -> JSONResponse:
    resp = JSONResponse({"logged_in": False})
    resp.delete_cookie(COOKIE_NAME, path="/")
    return resp


@router.get("/me", summary="The session: CSRF token and expiry")
async def me(request: Request) -> dict[str, Any]:
    session = _session(request)
    if session is None:  # the API key itself (a script): nothing to expire
        return {"session": False}
    expires = datetime.fromtimestamp(
        session.expires(request.app.state.signer.lifetime_seconds), UTC
    )
    return {
        "session": True,
        "csrf": request.app.state.signer.csrf_token(session),
        "expires_at": ist_iso(expires),
    }


async def _alerts(request: Request) -> Any:
    url = request.app.state.settings.prometheus_url
    if not url:
        return {"configured": False, "firing": []}
    client = request.app.state.http
    try:
        resp = await client.get(f"{url.rstrip('/')}/api/v1/alerts", timeout=5)
        alerts = resp.json().get("data", {}).get("alerts", [])
    except Exception as exc:  # Prometheus down or not Prometheus: the page says so
        return {"configured": True, "error": type(exc).__name__, "firing": []}
    firing = [
        {
            "name": a.get("labels", {}).get("alertname"),
            "severity": a.get("labels", {}).get("severity"),
            "summary": a.get("annotations", {}).get("summary"),
            "since": a.get("activeAt"),
        }
        for a in alerts
        if a.get("state") == "firing"
    ]
    return {"configured": True, "firing": firing}


@router.get("/today", summary="Session, kill switch, engine, P&L today, equity, alerts")
async def today(request: Request) -> dict[str, Any]:
    up = request.app.state.upstreams
    broker, engine, book, trips, curve, alerts = await asyncio.gather(
        up.get_json("broker", "/status"),
        up.get_json("engine", "/engine/status"),
        up.get_json("portfolio", "/portfolio"),
        up.get_json("portfolio", "/trades"),
        up.get_json("portfolio", "/equity-curve"),
        _alerts(request),
    )
    day = views.market_day(engine, datetime.now(UTC))
    trip_list = trips.get("trades") if isinstance(trips, dict) else trips
    points = curve.get("points", []) if isinstance(curve, dict) else []
    return {
        "broker": broker,
        "engine": engine,
        "portfolio": book,
        "pnl_today": views.pnl_today(book, trip_list, day),
        "equity_curve": points[-500:],
        "alerts": alerts,
        "kite_login_url": "/kite-login",
    }


OrderId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


@router.get("/audit/{client_order_id}", summary="One order's story across engine and broker")
async def audit(client_order_id: OrderId, request: Request) -> dict[str, Any]:
    up = request.app.state.upstreams
    intent, order, decisions = await asyncio.gather(
        up.get_json("engine", f"/engine/orders/{client_order_id}"),
        up.get_json("broker", f"/orders/{client_order_id}"),
        up.get_json("engine", "/signals", limit=1000),
    )
    trail = views.audit_trail(intent, order, decisions, client_order_id)
    if not trail["found"]:
        raise NotFoundError(f"no order with client_order_id {client_order_id}")
    return trail


@router.get("/backtests/compare", summary="Two finished backtests side by side")
async def compare(
    request: Request,
    a: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[\w-]+$")],
    b: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[\w-]+$")],
) -> dict[str, Any]:
    up = request.app.state.upstreams
    ja, jb = await asyncio.gather(
        up.get_json("engine", f"/backtests/{a}"), up.get_json("engine", f"/backtests/{b}")
    )
    for name, job in (("a", ja), ("b", jb)):
        if isinstance(job, dict) and job.get("error"):
            raise NotFoundError(f"backtest {name}: {job.get('message')}")
    return views.compare_runs(ja, jb)


@router.get("/reconcile/last", summary="Each book's last completed reconciliation")
async def reconcile_last(request: Request) -> dict[str, Any]:
    up = request.app.state.upstreams

    async def last(scope: str) -> dict[str, Any]:
        try:
            answer = await up.call(scope, "GET", "/metrics")
        except Unreachable as exc:
            return {"scope": scope, "error": "service_unavailable", "message": str(exc)}
        return views.last_reconcile(answer.body.decode("utf-8", "replace"), scope)

    broker, portfolio = await asyncio.gather(last("broker"), last("portfolio"))
    return {"broker": broker, "portfolio": portfolio}


def _dead_letters(request: Request) -> DeadLetters:
    return DeadLetters(request.app.state.sync_redis)


@router.get("/dlq", summary="Dead-lettered bus entries, per stream")
async def dlq(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
    def read() -> dict[str, Any]:
        letters = _dead_letters(request)
        return {
            "streams": letters.streams(),
            "entries": [e.detail() for e in letters.list_all(limit=limit)],
        }

    try:
        return await asyncio.to_thread(read)
    except redis.RedisError as exc:
        return JSONResponse(
            error_body("bus_unavailable", f"Redis is not reachable ({type(exc).__name__})"),
            status_code=503,
        )


@router.post("/dlq/replay", summary="Publish a dead-lettered entry again to its stream")
async def dlq_replay(body: ReplayBody, request: Request) -> Any:
    def replay() -> list[str]:
        letters = _dead_letters(request)
        return letters.replay([letters.find(body.dlq_id, body.stream)])

    try:
        published = await asyncio.to_thread(replay)
    except DlqError as exc:
        return JSONResponse(error_body("dlq_refused", str(exc)), status_code=404)
    return {"replayed": body.dlq_id, "stream": body.stream, "new_ids": published}


@router.get("/events", include_in_schema=False)  # a stream that never ends: docs/console.md
async def events(request: Request) -> StreamingResponse:
    return StreamingResponse(
        event_stream(request.app.state.redis, request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _passed_on(answer: Answer) -> Response:
    headers = {"Cache-Control": "no-store"}
    if answer.content_type.startswith("text/html"):
        # a report page, shown in a sandbox: it runs nothing and reaches nothing of the console
        headers["Content-Security-Policy"] = (
            "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        )
    return Response(
        answer.body, status_code=answer.status, media_type=answer.content_type, headers=headers
    )


@router.api_route(
    "/{service}/{path:path}",
    methods=["GET", "POST", "PATCH", "DELETE"],
    summary="A service's route, forwarded with the API key (allow-listed)",
)
async def forward(service: str, path: str, request: Request) -> Response:
    route = "/" + path
    if service not in SERVICES or not allowed(request.method, service, route):
        raise NotFoundError(f"the console does not forward {request.method} {service} {route}")
    raw = await request.body()
    try:
        answer = await request.app.state.upstreams.call(
            service,
            request.method,
            route,
            params=list(request.query_params.multi_items()) or None,
            body=raw or None,
        )
    except Unreachable as exc:
        return JSONResponse(
            error_body("service_unavailable", f"{exc}; retry later", service=exc.service),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return _passed_on(answer)
