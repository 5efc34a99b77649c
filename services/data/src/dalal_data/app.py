"""Wiring of the data-cache process."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from fastapi import FastAPI

from dalal_data.api import router
from dalal_data.config import DataSettings
from dalal_data.feed import MARKET_OPEN, market_open
from dalal_data.jobs import JobStore
from dalal_data.scheduler import jobs_of
from dalal_data.tasks import enqueue_with, make_celery
from dalal_data.wiring import build_core
from dalal_shared.calendar import nse_calendar
from dalal_shared.httpapp import create_app
from dalal_shared.service import ServiceRuntime
from dalal_shared.timeutil import utcnow

NAME = "data"


def build_app(settings: DataSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME, settings)
    core = build_core(settings, runtime.redis)
    celery = make_celery(settings)
    feed = None
    if settings.feed_enabled:
        from dalal_data.feed import build_feed

        feed = build_feed(settings, runtime, core)

    async def cache_writable() -> None:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(settings.cache_dir, os.W_OK):
            raise PermissionError(f"cache directory {settings.cache_dir} is not writable")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            if feed is not None:
                await feed.start()
            try:
                yield
            finally:
                if feed is not None:
                    await feed.stop()

    app = create_app(
        NAME,
        settings=settings,
        readiness={"redis": runtime.check_redis, "cache_dir": cache_writable},
        lifespan=lifespan,
        description="data-cache: Parquet candle cache over Kite's historical API, live ticks",
    )
    app.include_router(router)
    app.state.runtime = runtime
    app.state.candles = core.candles
    app.state.instruments = core.instruments
    app.state.gateway = core.gateway
    app.state.jobs = JobStore(runtime.redis, enqueue_with(celery))
    app.state.celery = celery
    app.state.feed = feed
    app.state.schedule = jobs_of(settings)
    calendar = nse_calendar()
    clock = feed.market_now if feed is not None else utcnow
    MARKET_OPEN.set_function(lambda: 1.0 if market_open(calendar, clock()) else 0.0)
    return app
