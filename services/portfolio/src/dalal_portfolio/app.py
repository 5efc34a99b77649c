"""Wiring of the portfolio process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from dalal_portfolio import metrics
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
from dalal_shared.bus import default_consumer_name
from dalal_shared.errors import TemporaryError
from dalal_shared.httpapp import create_app
from dalal_shared.lease import Lease, LeaseLoop
from dalal_shared.logging import get_logger
from dalal_shared.messages import Envelope
from dalal_shared.notify import Notifier, Sink, TelegramSink, WebhookSink
from dalal_shared.service import ServiceRuntime
from dalal_shared.streams import (
    MARKET_TICKS,
    ORDERS_COMMANDS,
    ORDERS_EVENTS,
    PORTFOLIO_EVENTS,
    SYSTEM_EVENTS,
)

NAME = "portfolio"
LEASE_NAME = "portfolio-ledger"
log = get_logger(__name__)


def notification_sinks(settings: PortfolioSettings) -> list[Sink]:
    """Telegram when a bot token and a chat are set, a webhook when its URL is."""
    sinks: list[Sink] = []
    if settings.telegram_bot_token is not None and settings.telegram_chat_id:
        sinks.append(
            TelegramSink(
                settings.telegram_bot_token.get_secret_value(),
                settings.telegram_chat_id,
                api_base=settings.telegram_api_url,
            )
        )
    if settings.notify_webhook_url:
        sinks.append(WebhookSink(settings.notify_webhook_url))
    return sinks


def build_app(settings: PortfolioSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME, settings, lease_ttl_seconds=settings.lease_ttl_seconds)
    store = LedgerStore.open(settings.database_url)  # runs the migrations
    service = PortfolioService(store, initial_capital=settings.initial_capital_rupees)
    service.load()
    outbox = OutboxPublisher(service, runtime.redis)
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

    notifier = Notifier(
        notification_sinks(settings), min_interval_seconds=settings.notify_min_interval_seconds
    )
    if notifier.enabled:  # its own group: it sees every entry, whatever the ledger consumes

        async def notify(envelope: Envelope) -> None:
            notifier.offer(envelope.message)

        runtime.consume(
            {ORDERS_EVENTS: notify, SYSTEM_EVENTS: notify, PORTFOLIO_EVENTS: notify},
            group=f"{NAME}-notifier",
        )

    async def check_database() -> None:
        await asyncio.to_thread(store.ping)

    # one ledger writer at a time (ADR 0013): the lease holder consumes the streams, keeps the
    # book and serves the API; another replica waits as a standby (not ready) and takes over,
    # reloading the book from the database, when the writer is gone
    holder = settings.consumer_name or default_consumer_name()
    lease = Lease(runtime.redis, LEASE_NAME, ttl_seconds=settings.lease_ttl_seconds, owner=holder)
    consuming: list[asyncio.Task[None]] = []

    async def take_lead() -> None:
        await asyncio.to_thread(service.load)  # what the previous writer committed
        consuming[:] = [asyncio.create_task(c.run()) for c in runtime.consumers]
        await tasks.start()
        if settings.reconcile_enabled:
            reconciler.start()  # the after-start run, retried until the broker can answer
        metrics.LEDGER_WRITER.set(1)
        log.info("portfolio.writer", holder=holder)

    async def give_up_lead() -> None:
        metrics.LEDGER_WRITER.set(0)
        await reconciler.stop()
        for c in runtime.consumers:
            c.stop()  # at the next batch boundary
        if consuming:
            _done, pending = await asyncio.wait(consuming, timeout=5)
            for task in pending:
                task.cancel()
        consuming.clear()
        await tasks.stop()
        log.warning("portfolio.standby", holder=holder)

    writer = LeaseLoop(
        lease,
        on_acquired=take_lead,
        on_lost=give_up_lead,
        renew_every_seconds=settings.lease_ttl_seconds / 3,
    )

    async def check_writer() -> None:
        if not writer.held:
            raise TemporaryError(
                "standby: another replica writes the ledger (this one takes over when it stops)",
                code="standby",
            )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer_task = asyncio.create_task(writer.run())
        notify_task = asyncio.create_task(notifier.run()) if notifier.enabled else None
        try:
            yield
        finally:
            if notify_task is not None:
                notify_task.cancel()
            while not writer_task.done():  # until it is really over, whatever it was doing
                writer_task.cancel()
                await asyncio.wait([writer_task], timeout=1)
            if writer.held:
                await give_up_lead()
            with suppress(Exception):
                await lease.release()  # before the Redis client closes: a successor starts now
            await runtime.stop()
            store.close()

    app = create_app(
        NAME,
        settings=settings,
        readiness={
            "redis": runtime.check_redis,
            "database": check_database,
            "ledger_writer": check_writer,
        },
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
