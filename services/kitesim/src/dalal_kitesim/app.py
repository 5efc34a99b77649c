"""Wiring: settings -> market data, clock, exchange, sessions, ticker hub, faults -> FastAPI app."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dalal_kitesim import api, control
from dalal_kitesim.clock import MarketClock
from dalal_kitesim.config import KitesimSettings, bundled_data_dir
from dalal_kitesim.errors import GeneralException, InputException, KiteError, NetworkException
from dalal_kitesim.exchange import Exchange, ExchangeConfig
from dalal_kitesim.faults import FaultPlan, RateLimiter, route_class
from dalal_kitesim.gtt import GttBook
from dalal_kitesim.marketdata import BarStore, InstrumentStore
from dalal_kitesim.session import SessionStore
from dalal_kitesim.state import OrderCache, StateFile, restore, snapshot
from dalal_kitesim.ticker import TickerHub
from dalal_shared.calendar import nse_calendar
from dalal_shared.fills import FillConfig
from dalal_shared.httpapp import BodySizeLimit, RequestMetrics
from dalal_shared.logging import get_logger
from dalal_shared.timeutil import utcnow

log = get_logger(__name__)

SESSION_SECONDS = 6 * 3600 + 15 * 60  # 09:15-15:30
TICKS = Counter("dalal_kitesim_ticks_total", "Ticks replayed by kitesim")
ORDER_UPDATES = Counter(
    "dalal_kitesim_order_updates_total", "Order status changes in kitesim", ["status"]
)
POSTBACKS = Counter("dalal_kitesim_postbacks_total", "Postbacks sent by kitesim", ["outcome"])
FAULTS = Counter("dalal_kitesim_faults_total", "Faults and rate limits applied", ["kind"])
KITE_PATH_PREFIXES = (
    "/session",
    "/user",
    "/instruments",
    "/quote",
    "/orders",
    "/trades",
    "/portfolio",
    "/margins",
    "/charges",
)


class Simulator:
    """Everything one kitesim process holds. Mutated only on the event loop's thread."""

    def __init__(self, settings: KitesimSettings):
        self.settings = settings
        roots = [settings.kitesim_data_dir, bundled_data_dir()]
        self.bars = BarStore([r for r in roots if r is not None])
        csv_path = settings.kitesim_instruments_csv or bundled_data_dir() / "instruments.csv"
        self.instruments = InstrumentStore.from_csv(csv_path)
        symbols = self.bars.symbols()
        replayed = [
            inst
            for inst in self.instruments.by_token.values()
            if inst.tradingsymbol.replace(" ", "") in symbols and inst.exchange == "NSE"
        ]
        self.calendar = nse_calendar()
        self.clock = MarketClock(
            calendar=self.calendar,
            bars=self.bars,
            instruments=replayed,
            start_date=settings.kitesim_start_date,
            seed=settings.kitesim_seed,
            tick_interval_seconds=settings.kitesim_tick_interval_seconds,
            tick_noise_bps=settings.kitesim_tick_noise_bps,
        )
        self.fill_config = FillConfig(
            spread_bps=settings.kitesim_spread_bps,
            slippage_bps=settings.kitesim_slippage_bps,
            max_participation=settings.kitesim_max_participation,
        )
        self.exchange = Exchange(
            self.clock,
            self.instruments,
            ExchangeConfig(
                user_id=settings.kitesim_user_id,
                opening_balance=settings.kitesim_opening_balance_rupees,
                mis_margin_fraction=settings.kitesim_mis_margin_fraction,
                require_market_protection=settings.kitesim_require_market_protection,
                default_market_protection_pct=settings.kitesim_default_market_protection_pct,
                fill=self.fill_config,
                circuit_band_pct=settings.kitesim_circuit_band_pct,
            ),
        )
        self.gtts = GttBook(self.exchange)  # after the exchange: an order fired matches next
        self.sessions = SessionStore(
            api_key=settings.kitesim_api_key,
            api_secret=settings.kitesim_api_secret.get_secret_value(),
            user_id=settings.kitesim_user_id,
            clock=self._token_now,
            expire=settings.kitesim_token_expiry,
        )
        self.hub = TickerHub(
            self.clock.states,
            spread_bps=settings.kitesim_spread_bps,
            max_instruments=settings.kitesim_ticker_max_instruments,
        )
        self.faults = FaultPlan()
        self.limiter = RateLimiter(
            quote=settings.kitesim_rate_quote_per_second,
            historical=settings.kitesim_rate_historical_per_second,
            orders=settings.kitesim_rate_orders_per_second,
            orders_per_minute=settings.kitesim_rate_orders_per_minute,
            other=settings.kitesim_rate_other_per_second,
        )
        self.clock.listeners.ticks.append(self.hub.on_ticks)
        self.clock.listeners.ticks.append(lambda batch: TICKS.inc(len(batch)))
        self.exchange.listeners.append(self.hub.on_order)
        self.exchange.listeners.append(self._postback)
        self.exchange.listeners.append(lambda o: ORDER_UPDATES.labels(o["status"]).inc())
        self.speed = (
            SESSION_SECONDS / settings.kitesim_session_seconds
            if settings.kitesim_session_seconds
            else 0.0
        )
        self.paused = self.speed == 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None
        path = settings.kitesim_state_file
        self.state_file = StateFile(path) if path else None
        self.dirty = False
        self._saved_at = 0.0
        self._order_cache: OrderCache = {}
        self.exchange.on_change = lambda: self._mark_dirty(None)
        self.sessions.on_change = lambda: self._mark_dirty(None)
        self.gtts.on_change = lambda: self._mark_dirty(None)
        saved = self.state_file.load(self.identity()) if self.state_file else None
        if saved is not None:
            restore(
                saved,
                clock=self.clock,
                exchange=self.exchange,
                sessions=self.sessions,
                gtts=self.gtts,
            )
            log.info("kitesim.restored", day=str(self.clock.day), now=self.clock.now.isoformat())
        else:
            self.clock.start()
            self.save()

    # -- persistence (state.py) ---------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What a snapshot must match to be this replay's."""
        return {
            "start_date": self.settings.kitesim_start_date.isoformat(),
            "seed": self.settings.kitesim_seed,
            "user_id": self.settings.kitesim_user_id,
        }

    def _mark_dirty(self, _order: Any) -> None:
        self.dirty = True

    def save(self, *, sync: bool = False) -> None:
        """Write the snapshot now (nothing when persistence is off)."""
        if self.state_file is None:
            return
        self.state_file.save(
            snapshot(
                clock=self.clock,
                exchange=self.exchange,
                sessions=self.sessions,
                gtts=self.gtts,
                identity=self.identity(),
                cache=self._order_cache,
            ),
            sync=sync,
        )
        self.dirty = False
        self._saved_at = time.monotonic()

    def save_if_due(self) -> None:
        """After a clock step: at once when the book changed, else once a second."""
        if self.state_file is not None and (self.dirty or time.monotonic() - self._saved_at >= 1.0):
            self.save()

    def _token_now(self) -> datetime:
        """The clock tokens expire on (ADR 0005): the wall clock, or the simulated one."""
        return self.clock.now if self.settings.kitesim_expiry_clock == "market" else utcnow()

    # -- postbacks ----------------------------------------------------------------------------
    def postback_body(self, order: dict[str, Any]) -> dict[str, Any]:
        secret = self.settings.kitesim_api_secret.get_secret_value()
        checksum = hashlib.sha256(
            (order["order_id"] + (order["order_timestamp"] or "") + secret).encode()
        ).hexdigest()
        return {
            "user_id": order["placed_by"],
            "unfilled_quantity": order["pending_quantity"],
            "app_id": 1,
            "checksum": checksum,
            **order,
        }

    def _postback(self, order: dict[str, Any]) -> None:
        url = self.settings.kitesim_postback_url
        if not url:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        body = self.postback_body(order)
        task = loop.create_task(self._send_postback(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_postback(self, url: str, body: dict[str, Any]) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=5)
        try:
            await self._http.post(
                url, content=json.dumps(body), headers={"Content-Type": "application/json"}
            )
            POSTBACKS.labels("sent").inc()
        except httpx.HTTPError as exc:
            POSTBACKS.labels("failed").inc()
            log.warning("kitesim.postback_failed", error=type(exc).__name__)

    # -- the running clock --------------------------------------------------------------------
    async def run_clock(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            elapsed, last = now - last, now
            if not self.paused and self.speed > 0:
                self.clock.advance(elapsed * self.speed)
                self.save_if_due()
            elif self.dirty:
                self.save()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.aclose()


def _kite_error(exc: KiteError) -> JSONResponse:
    return JSONResponse(exc.envelope(), status_code=exc.status_code)


_WRITES = ("POST", "PUT", "DELETE", "PATCH")


class Persist:
    """A request that may have changed something is answered once the state is saved (saved
    before its response starts)."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITES:
            await self.app(scope, receive, send)
            return
        sim, control_path = self.sim, scope["path"].startswith("/_sim")

        async def send_saved(message: Message) -> None:
            if message["type"] == "http.response.start" and (sim.dirty or control_path):
                sim.save()
            await send(message)

        await self.app(scope, receive, send_saved)


class LimitsAndFaults:
    """Kite's routes: the injected faults of the route's class, then its rate limit (429)."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(KITE_PATH_PREFIXES):
            await self.app(scope, receive, send)
            return
        sim = self.sim
        cls = route_class(scope["method"], path)
        delay_reply = 0.0
        for fault in sim.faults.take(cls):
            FAULTS.labels(fault.kind).inc()
            if fault.kind == "latency":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "timeout_after_accept":
                delay_reply = fault.seconds
            elif fault.kind == "status":
                refusal: Response
                if fault.html:
                    refusal = Response(
                        f"<html><body><h1>{fault.status}</h1></body></html>",
                        status_code=fault.status,
                        media_type="text/html",
                    )
                else:
                    error: KiteError = (
                        NetworkException("Too many requests", status_code=429)
                        if fault.status == 429
                        else GeneralException("Injected fault", status_code=fault.status)
                    )
                    refusal = _kite_error(error)
                await refusal(scope, receive, send)
                return
        if not sim.limiter.allow(cls):
            FAULTS.labels("rate_limit").inc()
            await _kite_error(NetworkException("Too many requests", status_code=429))(
                scope, receive, send
            )
            return
        if not delay_reply:
            await self.app(scope, receive, send)
            return

        async def send_late(message: Message) -> None:
            if message["type"] == "http.response.start":  # done: only the answer waits
                await asyncio.sleep(delay_reply)
            await send(message)

        await self.app(scope, receive, send_late)


def build_app(settings: KitesimSettings) -> FastAPI:
    sim = Simulator(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        clock_task = asyncio.create_task(sim.run_clock(), name="kitesim-clock")
        log.info("kitesim.started", day=str(sim.clock.day), speed=sim.speed)
        try:
            yield
        finally:
            clock_task.cancel()
            sim.save(sync=True)
            await sim.aclose()

    app = FastAPI(
        title="dalal-kitesim",
        description="A Kite Connect v3 compatible exchange simulator replaying real NSE bars",
        lifespan=lifespan,
    )
    app.state.sim = sim

    @app.exception_handler(KiteError)
    async def _kite(_request: Request, exc: KiteError) -> JSONResponse:
        return _kite_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors())
        return _kite_error(InputException(f"Invalid or missing input: {fields}."))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _kite_error(GeneralException("Route not found", status_code=404))
        if exc.status_code == 405:
            return _kite_error(GeneralException("Method not allowed", status_code=405))
        return _kite_error(GeneralException(str(exc.detail), status_code=exc.status_code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("kitesim.unhandled", path=request.url.path, error=repr(exc), exc_info=exc)
        return _kite_error(GeneralException("An unexpected error occurred in kitesim."))

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "kitesim"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> dict[str, Any]:
        clock = sim.clock
        replay = f"to {clock.last_data_day}" if clock.last_data_day else "no data"
        if clock.replay_exhausted:  # still serving the books; the market is silent
            replay = f"exhausted: the data ends {clock.last_data_day}, the clock is at {clock.day}"
        return {
            "status": "ready",
            "service": "kitesim",
            "checks": {"instruments": str(len(sim.instruments.by_token)), "replay": replay},
        }

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api.router)
    app.include_router(control.router)
    # plain ASGI middleware (Starlette's `@app.middleware("http")` wraps every request's body
    # stream in tasks of its own: most of an order call's time in kitesim); innermost first
    app.add_middleware(Persist, sim=sim)
    app.add_middleware(LimitsAndFaults, sim=sim)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)  # 413 over
    app.add_middleware(RequestMetrics, service="kitesim")
    return app
