"""Real adapters wired together, shared by the API process, the worker and the feed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from dalal_data.candles import CandleService
from dalal_data.config import DataSettings
from dalal_data.instruments import InstrumentsMaster
from dalal_data.kite import KiteGateway, NoKiteSession
from dalal_shared.calendar import nse_calendar
from dalal_shared.kitesession import SessionStore
from dalal_shared.ratelimit import RateLimiter


def token_source(settings: DataSettings, redis: aioredis.Redis) -> Any:
    """The access token: DALAL_KITE_ACCESS_TOKEN, else the broker's stored session."""
    fixed = settings.kite_access_token
    store = (
        SessionStore(redis, settings.session_key.get_secret_value())
        if settings.session_key is not None
        else None
    )

    async def current() -> str:
        if fixed is not None:
            return fixed.get_secret_value()
        if store is None:
            raise NoKiteSession("no Kite session: set DALAL_SESSION_KEY (and log in)")
        record = await store.load()
        if record is None:
            raise NoKiteSession("no valid Kite session stored; run `dalal login`")
        return record.access_token

    return current


def redis_lock(redis: aioredis.Redis) -> Any:
    """One writer per cached series across processes (API and workers)."""

    @contextlib.asynccontextmanager
    async def lock(key: str) -> AsyncIterator[None]:
        async with redis.lock(f"data:lock:{key}", timeout=600, blocking_timeout=900):
            yield

    return lock


@dataclass
class Core:
    gateway: KiteGateway
    instruments: InstrumentsMaster
    candles: CandleService


def build_core(settings: DataSettings, redis: aioredis.Redis) -> Core:
    gateway = KiteGateway(
        api_key=settings.kite_api_key,
        root_url=settings.kite_root_url,
        token_source=token_source(settings, redis),
        limiter=RateLimiter(redis, namespace=settings.kite_api_key or "default"),
        timeout_seconds=settings.kite_timeout_seconds,
        max_attempts=settings.kite_max_attempts,
        ratelimit_wait_seconds=settings.kite_ratelimit_wait_seconds,
    )
    instruments = InstrumentsMaster(settings.cache_dir, gateway.instruments)
    candles = CandleService(
        root=settings.cache_dir,
        calendar=nse_calendar(),
        instruments=instruments,
        kite=gateway,
        lock=redis_lock(redis),
    )
    return Core(gateway, instruments, candles)
