"""Wiring of the engine process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from dalal_engine import strategy_control
from dalal_engine.api import backtests_router, router, strategies_router, sweeps_router
from dalal_engine.clock import ExchangeClock, MarketClock, WallClock
from dalal_engine.config import EngineSettings
from dalal_engine.cycle import FixedCycle
from dalal_engine.handlers import (
    EngineGate,
    bars_handler,
    drain_outbox,
    order_events_handler,
    portfolio_events_handler,
    publish_decisions,
    publish_new,
    system_events_handler,
    ticks_handler,
)
from dalal_engine.live import HISTORY_FLOOR_BARS, LiveEngine
from dalal_engine.restore import follow_shared_clock, restore_safety
from dalal_engine.sharding import consumer_group, shard_configs
from dalal_engine.store import EngineStore, StoredBar, outbox_t
from dalal_engine.strategyconfig import StrategyConfigError, load_file
from dalal_engine.tasks import make_celery
from dalal_engine.warmup import Warmup, from_data_service
from dalal_shared import candlestore
from dalal_shared.audit import audit_envelopes
from dalal_shared.bus import Handler
from dalal_shared.clients import BrokerClient, DataClient, PortfolioClient
from dalal_shared.health import supervise
from dalal_shared.httpapp import create_app
from dalal_shared.logging import get_logger
from dalal_shared.outbox import OutboxRelay
from dalal_shared.service import ServiceRuntime
from dalal_shared.streams import (
    MARKET_TICKS,
    ORDERS_EVENTS,
    PORTFOLIO_EVENTS,
    SYSTEM_EVENTS,
    bars_stream,
)

log = get_logger(__name__)
NAME = "engine"


def build_app(settings: EngineSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME, settings)
    configs = load_file(settings.strategies_file) if settings.strategies_file else []
    configs = shard_configs(configs, settings.shard_index, settings.shard_count)
    # runs the migrations; the bars handler checkpoints SQLite's log between minutes
    store = EngineStore.open(settings.shard_database_url, own_checkpoints=True)
    clock: MarketClock = ExchangeClock() if settings.market_clock == "exchange" else WallClock()
    api_key = settings.client_api_key()
    warmup: Warmup | None = None
    warmup_client: DataClient | None = None
    if settings.data_url:  # the owner of market history; it fills gaps from Kite first
        warmup_client = DataClient(settings.data_url, api_key=api_key, timeout=60.0)
        need = max([HISTORY_FLOOR_BARS, *(3 * c.build().warmup_bars for c in configs)])
        warmup = from_data_service(warmup_client, clock.now, bars=need)
    elif settings.candle_cache_dir is not None:
        root = settings.candle_cache_dir

        def warmup(exchange: str, symbol: str, interval: str) -> list[StoredBar]:
            t = candlestore.read(root, exchange, interval, symbol).to_pylist()
            return [
                StoredBar(r["ts"], r["open"], r["high"], r["low"], r["close"], r["volume"])
                for r in t
            ]

    live = LiveEngine(
        configs,
        store,
        initial_equity_rupees=settings.initial_capital_rupees,
        warmup=warmup,
        clock=clock,
        max_signal_delay_seconds=settings.max_signal_delay_seconds,
        # no portfolio to ask: the configured capital is the equity
        safety_known=("equity",) if settings.equity_source == "initial_capital" else (),
        start_mode=settings.start_mode,
    )
    # decisions and cancels: the store's outbox, published after each step that wrote to it
    live.relay = OutboxRelay(
        store.engine, outbox_t, runtime.redis, on_published=audit_envelopes(log)
    )
    gate = EngineGate()
    publisher = runtime.publisher
    # control apart from market data: two consumers, each its own task and lock, so a kill
    # switch or a fill never waits behind a backlog of ticks and bars
    control: dict[str, Handler] = {
        SYSTEM_EVENTS: system_events_handler(live),
        ORDERS_EVENTS: order_events_handler(live, publisher, gate),
        PORTFOLIO_EVENTS: portfolio_events_handler(live, gate),
    }
    data: dict[str, Handler] = {}
    for interval in sorted(live.intervals()):
        data[bars_stream(interval)] = bars_handler(live, publisher, gate)
    if live.watches_ticks():
        data[MARKET_TICKS] = ticks_handler(live, publisher, gate)
    # shards each read every entry (their own group) and act on their own symbols
    group = settings.consumer_group or consumer_group(settings.shard_index, settings.shard_count)
    runtime.consume(control, group=group)
    if data:
        runtime.consume(data, group=group)
    broker = BrokerClient(settings.broker_url, api_key=api_key, timeout=5.0)
    portfolio = (
        PortfolioClient(settings.portfolio_url, api_key=api_key, timeout=5.0)
        if settings.equity_source == "portfolio"
        else None
    )
    scheduled = [c for c in configs if c.schedule is not None]
    if scheduled and not settings.data_url:
        raise StrategyConfigError(
            f"strategies[{configs.index(scheduled[0])}].schedule: needs DALAL_DATA_URL "
            "(the fixed cycle reads candles from the data service)"
        )
    data_client = (
        DataClient(settings.data_url, api_key=api_key) if scheduled and settings.data_url else None
    )
    cycles = [FixedCycle(live, c, data_client, gate) for c in scheduled if data_client is not None]

    async def publish_all() -> None:
        await publish_new(live, publisher, gate)
        await publish_decisions(live, publisher)

    async def check_database() -> None:
        await asyncio.to_thread(store.ping)

    async def publish_stored() -> bool:
        """Publish the intents, cancels and decisions stored before a crash; False while the
        bus is unreachable."""
        try:
            await publish_new(live, publisher, gate)
            await drain_outbox(live, always=True)
            return True
        except Exception as exc:
            log.warning("engine.outbox_publish_failed", error=repr(exc))
            return False

    async def retry_stored() -> None:
        pause = 0.5
        while not await publish_stored():
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)

    async def retry_outbox() -> None:
        """A step's outbox rows whose publish failed (Redis away) go out once it is back."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await drain_outbox(live)
            except Exception as exc:
                log.warning("engine.outbox_publish_failed", error=repr(exc))

    def supervised(name: str, job: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        return asyncio.create_task(
            supervise(f"engine:{name}", lambda _health: job(), stale_after_seconds=None)
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # intents stored before a crash go out first; with the bus down the process still
        # starts (/readyz says why) and keeps trying in the background
        published = await publish_stored()
        async with runtime.lifespan(app):
            # each long-lived job restarted with back-off if it ends or fails (see /readyz)
            tasks = [
                supervised(f"cycle:{c.config.name}", partial(c.run_forever, publish_all))
                for c in cycles
            ]
            tasks.append(
                supervised(
                    "safety-state",
                    lambda: restore_safety(
                        live, broker, portfolio, refresh_seconds=settings.safety_refresh_seconds
                    ),
                )
            )
            if isinstance(clock, ExchangeClock) and settings.market_clock_redis_key:
                key = settings.market_clock_redis_key
                tasks.append(
                    supervised(
                        "market-clock", lambda: follow_shared_clock(clock, runtime.redis, key)
                    )
                )
            if not published:
                tasks.append(asyncio.create_task(retry_stored()))
            tasks.append(supervised("outbox", retry_outbox))
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if data_client is not None:
                    data_client.close()
                broker.close()
                if warmup_client is not None:
                    warmup_client.close()
                if portfolio is not None:
                    portfolio.close()
                store.close()

    app = create_app(
        NAME,
        settings=settings,
        readiness={"redis": runtime.check_redis, "database": check_database},
        lifespan=lifespan,
        description="engine: strategies, risk manager, live loop and backtester",
    )
    app.state.runtime = runtime
    app.state.broker = broker  # reference prices of hand-sent MARKET orders
    app.state.live = live
    app.state.gate = gate
    app.state.cycles = cycles
    app.state.celery = make_celery(settings)  # only sends backtest and sweep tasks
    app.state.backtests_dir = settings.backtests_dir
    app.include_router(router)
    app.include_router(strategies_router)
    app.include_router(strategy_control.router)
    app.include_router(backtests_router)
    app.include_router(sweeps_router)
    return app
