"""What a service process is made of: settings, logging, Redis, a publisher, its consumers and
its HTTP app, started and stopped together (SIGTERM/SIGINT stop consumers cleanly)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI

from dalal_shared.bus import (
    ConsumerConfig,
    DeadLetterHook,
    Handler,
    Publisher,
    StreamConsumer,
    default_consumer_name,
)
from dalal_shared.errors import ConfigError
from dalal_shared.logging import configure_logging, get_logger
from dalal_shared.settings import DalalSettings, load_settings

log = get_logger(__name__)
S = TypeVar("S", bound=DalalSettings)


class ServiceRuntime:
    """Redis client, publisher and consumer tasks of one service process."""

    def __init__(
        self, name: str, settings: DalalSettings, *, lease_ttl_seconds: float | None = None
    ):
        """`lease_ttl_seconds`: this process consumes only while it holds a lease of that TTL
        (one writer per group). A holder that died with entries unacknowledged is gone once
        the lease lapsed, so its successor takes them over after that long idle, not after
        `bus_claim_idle_ms` (meant for groups whose consumers run side by side)."""
        self.name = name
        self.settings = settings
        self.claim_idle_ms = settings.bus_claim_idle_ms
        if lease_ttl_seconds is not None:
            self.claim_idle_ms = min(self.claim_idle_ms, int(lease_ttl_seconds * 1000))
        self.redis = aioredis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=2, health_check_interval=30
        )
        self.publisher = Publisher(self.redis, source=name, maxlen=settings.bus_stream_maxlen)
        self.consumers: list[StreamConsumer] = []
        self._tasks: list[asyncio.Task[None]] = []

    def consume(
        self,
        handlers: Mapping[str, Handler],
        *,
        group: str | None = None,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> StreamConsumer:
        """Register a consumer of `handlers`' streams in `group`, else the configured
        consumer group, else the group named after this service. `on_dead_letter` is awaited
        for each entry it dead-letters, before the ack (see `dalal_shared.bus`)."""
        s = self.settings
        config = ConsumerConfig(
            group=group or s.consumer_group or self.name,
            consumer=s.consumer_name or default_consumer_name(),
            batch_size=s.bus_batch_size,
            block_ms=s.bus_block_ms,
            max_deliveries=s.bus_max_deliveries,
            max_crash_deliveries=s.bus_max_crash_deliveries,
            claim_idle_ms=self.claim_idle_ms,
            stale_after_s=max(s.task_stale_seconds, 2 * s.bus_block_ms / 1000),
            max_pending=s.bus_max_pending,
            max_lag=s.bus_max_lag,
            backlog_grace_s=s.bus_backlog_grace_seconds,
        )
        consumer = StreamConsumer(self.redis, config, handlers, on_dead_letter=on_dead_letter)
        self.consumers.append(consumer)
        return consumer

    async def check_redis(self) -> None:
        await self.redis.ping()

    async def start(self) -> None:
        for consumer in self.consumers:
            self._tasks.append(asyncio.create_task(consumer.run(), name=f"consumer-{self.name}"))

    async def stop(self) -> None:
        for consumer in self.consumers:
            consumer.stop()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
        await self.redis.aclose()

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        log.info("service.started", consumers=len(self.consumers))
        try:
            yield
        finally:
            await self.stop()
            log.info("service.stopped")


def refuse_to_start(name: str, exc: ConfigError) -> NoReturn:
    """Leave with status 2 and the problem in one line on stderr (it names the variable)."""
    message = " ".join(exc.message.split())
    print(f"dalal-{name}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def bootstrap_settings(name: str, cls: type[S]) -> S:
    """Load settings and configure logging, or exit with a message naming the bad variable."""
    try:
        settings = load_settings(cls)
    except ConfigError as exc:
        refuse_to_start(name, exc)
    configure_logging(
        name,
        level=settings.log_level,
        fmt=settings.log_format,
        secrets=settings.secret_values(),
    )
    return settings


class _StartupRefusal(logging.Filter):
    """Holds a ConfigError raised while the app starts (a database that cannot be opened) and
    keeps uvicorn from logging it as a traceback: `serve` reports it in one line instead."""

    def __init__(self) -> None:
        super().__init__()
        self.error: ConfigError | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        return self.error is None or record.levelno < logging.ERROR

    def guard(self, app: FastAPI) -> None:
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def guarded(app_: FastAPI) -> AsyncIterator[Any]:
            started = False
            try:
                async with inner(app_) as state:
                    started = True
                    yield state
            except ConfigError as exc:
                if started:
                    raise
                self.error = exc
                raise

        app.router.lifespan_context = guarded


def freeze_after_start(app: FastAPI) -> None:
    """Once the app has started, what the process built to get there (modules, the app,
    settings, clients: ~140,000 objects in the engine) is moved out of the cyclic garbage
    collector's reach, after one full collection (`gc.freeze`). A full collection then walks
    only what came after: without it one took ~60 ms on a 2-core machine, and one landing in
    a bar's step put that much on the tick-to-order path. What is frozen is still freed by
    reference counting; only a cycle among frozen objects would stay."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def frozen(app_: FastAPI) -> AsyncIterator[Any]:
        async with inner(app_) as state:
            gc.collect()
            gc.freeze()
            yield state

    app.router.lifespan_context = frozen


def serve(app: FastAPI, settings: DalalSettings, *, name: str | None = None) -> None:
    """Run the app with uvicorn (our logging, no access-log duplication of secrets). A
    ConfigError while starting ends the process with status 2 and a one-line message. The
    started process's objects are frozen (`freeze_after_start`)."""
    freeze_after_start(app)
    refusal = _StartupRefusal()
    refusal.guard(app)
    logging.getLogger("uvicorn.error").addFilter(refusal)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=True,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; by then everything has
    # stopped cleanly, so leave with status 0 rather than "killed by signal".
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    try:
        server.run()  # a failed start-up leaves through SystemExit(3)
    finally:
        if refusal.error is not None:
            refuse_to_start(name or app.title.removeprefix("dalal-"), refusal.error)


def _exit_cleanly(_sig: int, _frame: object) -> None:
    raise SystemExit(0)


def main_for(name: str, cls: type[S], build: Callable[[S], FastAPI]) -> None:
    """The `python -m dalal_<svc>` entry point shared by every service."""
    settings = bootstrap_settings(name, cls)
    try:
        app = build(settings)
    except ConfigError as exc:
        refuse_to_start(name, exc)
    serve(app, settings, name=name)
