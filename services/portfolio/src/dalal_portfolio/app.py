"""Wiring of the portfolio process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from dalal_portfolio.api import router
from dalal_portfolio.config import PortfolioSettings
from dalal_portfolio.handlers import (
    commands_handler,
    order_events_handler,
    system_events_handler,
    ticks_handler,
)
from dalal_portfolio.loops import OutboxPublisher, PeriodicTasks
from dalal_portfolio.open_orders import OpenOrders
from dalal_portfolio.reconcile import HttpBrokerView
from dalal_portfolio.reconciling import portfolio_runner
from dalal_portfolio.service import PortfolioService
from dalal_portfolio.store import LedgerStore
from dalal_shared.httpapp import create_app
from dalal_shared.service import ServiceRuntime
from dalal_shared.streams import MARKET_TICKS, ORDERS_COMMANDS, ORDERS_EVENTS, SYSTEM_EVENTS

NAME = "portfolio"


def build_app(settings: PortfolioSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME, settings)
    store = LedgerStore.open(settings.database_url)  # runs the migrations
    service = PortfolioService(store, initial_capital=settings.initial_capital_rupees)
    service.load()
    outbox = OutboxPublisher(service, runtime.publisher)
    tasks = PeriodicTasks(
        service,
        outbox,
        snapshot_interval_seconds=settings.equity_snapshot_interval_seconds,
        outbox_interval_seconds=settings.outbox_interval_seconds,
    )
    open_orders = OpenOrders()
    broker_view = HttpBrokerView(
        settings.broker_url,
        timeout=settings.broker_timeout_seconds,
        api_key=settings.client_api_key(),
    )
    reconciler = portfolio_runner(
        service,
        broker_view,
        runtime.publisher,
        retry_seconds=settings.reconcile_retry_seconds,
        confirm_seconds=settings.reconcile_confirm_seconds,
    )
    runtime.consume(
        {
            ORDERS_EVENTS: order_events_handler(open_orders, service, outbox.flush),
            ORDERS_COMMANDS: commands_handler(service),
            MARKET_TICKS: ticks_handler(service),
            SYSTEM_EVENTS: system_events_handler(
                service, outbox.flush, reconciler if settings.reconcile_enabled else None
            ),
        }
    )

    async def check_database() -> None:
        import asyncio

        await asyncio.to_thread(store.ping)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan(app):
            await tasks.start()
            if settings.reconcile_enabled:
                reconciler.start()  # the after-start run, retried until the broker can answer
            try:
                yield
            finally:
                await reconciler.stop()
                await tasks.stop()
                store.close()

    app = create_app(
        NAME,
        settings=settings,
        readiness={"redis": runtime.check_redis, "database": check_database},
        lifespan=lifespan,
        description="portfolio: ledger, positions, charges, performance, reconciliation",
    )
    app.include_router(router)
    app.state.runtime = runtime
    app.state.open_orders = open_orders
    app.state.portfolio = service
    app.state.broker_view = broker_view
    app.state.reconciler = reconciler
    return app
