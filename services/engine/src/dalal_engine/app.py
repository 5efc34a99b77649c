"""Wiring of the engine process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from dalal_engine.api import router, strategies_router
from dalal_engine.config import EngineSettings
from dalal_engine.handlers import (
    bars_handler,
    order_events_handler,
    portfolio_events_handler,
    publish_new,
    system_events_handler,
)
from dalal_engine.intents import IntentBook
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore, StoredBar
from dalal_engine.strategyconfig import load_file
from dalal_shared import candlestore
from dalal_shared.bus import Handler
from dalal_shared.httpapp import create_app
from dalal_shared.service import ServiceRuntime
from dalal_shared.streams import ORDERS_EVENTS, PORTFOLIO_EVENTS, SYSTEM_EVENTS, bars_stream

NAME = "engine"


def build_app(settings: EngineSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME, settings)
    book = IntentBook()
    configs = load_file(settings.strategies_file) if settings.strategies_file else []
    store = EngineStore.open(settings.database_url)  # runs the migrations
    warmup = None
    if settings.candle_cache_dir is not None:
        root = settings.candle_cache_dir

        def warmup(exchange: str, symbol: str, interval: str) -> list[StoredBar]:
            t = candlestore.read(root, exchange, interval, symbol).to_pylist()
            return [
                StoredBar(r["ts"], r["open"], r["high"], r["low"], r["close"], r["volume"])
                for r in t
            ]

    live = LiveEngine(
        configs, store, initial_equity_rupees=settings.initial_capital_rupees, warmup=warmup
    )
    handlers: dict[str, Handler] = {
        ORDERS_EVENTS: order_events_handler(book, live),
        PORTFOLIO_EVENTS: portfolio_events_handler(live),
        SYSTEM_EVENTS: system_events_handler(live),
    }
    for interval in sorted(live.intervals()):
        handlers[bars_stream(interval)] = bars_handler(live, runtime.publisher)
    runtime.consume(handlers)

    async def check_database() -> None:
        await asyncio.to_thread(store.ping)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await publish_new(live, runtime.publisher)  # intents stored before a crash
        async with runtime.lifespan(app):
            try:
                yield
            finally:
                store.close()

    app = create_app(
        NAME,
        api_key_digest=settings.api_key_digest(),
        readiness={"redis": runtime.check_redis, "database": check_database},
        lifespan=lifespan,
        description="engine: strategies, risk manager, live loop and backtester",
    )
    app.state.runtime = runtime
    app.state.book = book
    app.state.live = live
    app.include_router(router)
    app.include_router(strategies_router)
    return app
