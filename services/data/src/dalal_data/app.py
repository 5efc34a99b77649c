"""Wiring of the data-cache process."""

from __future__ import annotations

import os

from fastapi import FastAPI

from dalal_data.config import DataSettings
from dalal_shared.httpapp import create_app
from dalal_shared.service import ServiceRuntime

NAME = "data"


def build_app(settings: DataSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME, settings)

    async def cache_writable() -> None:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(settings.cache_dir, os.W_OK):
            raise PermissionError(f"cache directory {settings.cache_dir} is not writable")

    app = create_app(
        NAME,
        api_key_digest=settings.api_key_digest(),
        readiness={"redis": runtime.check_redis, "cache_dir": cache_writable},
        lifespan=runtime.lifespan,
        description="data-cache: Parquet candle cache over Kite's historical API, live ticks",
    )
    app.state.runtime = runtime
    return app
