"""Real adapters wired together, shared by the API process, the worker and the feed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import LockError

from dalal_data.candles import CandleService
from dalal_data.config import DataSettings
from dalal_data.instruments import InstrumentMaster
from dalal_data.kite import KiteGateway, NoKiteSession
from dalal_shared.bus import Publisher
from dalal_shared.calendar import nse_calendar
from dalal_shared.kitesession import SessionStore
from dalal_shared.logging import get_logger
from dalal_shared.messages import KiteSessionRefused
from dalal_shared.ratelimit import RateLimiter
from dalal_shared.streams import SYSTEM_EVENTS

log = get_logger(__name__)


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


def redis_lock(redis: aioredis.Redis, ttl_seconds: float = 60.0) -> Any:
    """One writer per cached series across processes (API and workers).

    The lock lapses `ttl_seconds` after its holder stops renewing it (a worker killed
    mid-fetch), so a redelivered task waits at most that long; a live holder renews it every
    third of the TTL however long its Kite fetches take."""

    @contextlib.asynccontextmanager
    async def lock(key: str) -> AsyncIterator[None]:
        held = redis.lock(f"data:lock:{key}", timeout=ttl_seconds, blocking_timeout=900)
        if not await held.acquire():
            raise TimeoutError(f"the cache of {key} stayed locked by another writer")

        async def renew() -> None:
            while True:
                await asyncio.sleep(ttl_seconds / 3)
                try:
                    await held.reacquire()
                except LockError as exc:  # lapsed (a stall longer than the TTL): say so
                    log.error("cache.lock_lost", key=key, error=str(exc)[:200])
                    return

        renewer = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            with contextlib.suppress(Exception):
                await held.release()

    return lock


@dataclass
class Core:
    gateway: KiteGateway
    instruments: InstrumentMaster
    candles: CandleService


def token_refused_reporter(redis: aioredis.Redis, source: str) -> Any:
    """Publish KiteSessionRefused on system.events (the broker checks the session at once)."""
    publisher = Publisher(redis, source=source)

    async def report(reason: str) -> None:
        await publisher.publish(SYSTEM_EVENTS, KiteSessionRefused(service=source, reason=reason))

    return report


def build_core(settings: DataSettings, redis: aioredis.Redis, *, source: str = "data") -> Core:
    gateway = KiteGateway(
        api_key=settings.kite_api_key,
        root_url=settings.kite_root_url,
        token_source=token_source(settings, redis),
        limiter=RateLimiter(redis, namespace=settings.kite_api_key or "default"),
        timeout_seconds=settings.kite_timeout_seconds,
        max_attempts=settings.kite_max_attempts,
        ratelimit_wait_seconds=settings.kite_ratelimit_wait_seconds,
        on_token_refused=token_refused_reporter(redis, source),
    )
    instruments = InstrumentMaster(settings.cache_dir, gateway.instruments)
    candles = CandleService(
        root=settings.cache_dir,
        calendar=nse_calendar(),
        instruments=instruments,
        kite=gateway,
        lock=redis_lock(redis, settings.cache_lock_seconds),
    )
    return Core(gateway, instruments, candles)
