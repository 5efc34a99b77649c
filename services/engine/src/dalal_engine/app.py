"""Wiring of the engine process."""

from __future__ import annotations

from fastapi import FastAPI

from dalal_engine.api import router
from dalal_engine.config import EngineSettings
from dalal_engine.handlers import order_events_handler
from dalal_engine.intents import IntentBook
from dalal_shared.httpapp import create_app
from dalal_shared.service import ServiceRuntime
from dalal_shared.streams import ORDERS_EVENTS

NAME = "engine"


def build_app(settings: EngineSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME, settings)
    book = IntentBook()
    runtime.consume({ORDERS_EVENTS: order_events_handler(book)})
    app = create_app(
        NAME,
        api_key_digest=settings.api_key_digest(),
        readiness={"redis": runtime.check_redis},
        lifespan=runtime.lifespan,
        description="engine: strategies, risk manager, live loop and backtester",
    )
    app.state.runtime = runtime
    app.state.book = book
    app.include_router(router)
    return app
