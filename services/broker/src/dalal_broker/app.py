"""Wiring of the broker process: settings -> Kite gateway, session, journal, desk -> app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial

from fastapi import FastAPI

from dalal_broker.adapter import OrderAdapter
from dalal_broker.api import router
from dalal_broker.config import BrokerSettings
from dalal_broker.desk import OrderDesk
from dalal_broker.handlers import dead_letters, order_commands
from dalal_broker.instrument_store import InstrumentStore
from dalal_broker.journal import Journal
from dalal_broker.killswitch import KillSwitch
from dalal_broker.kite import KiteGateway
from dalal_broker.orderstream import OrderStream, ticker_base
from dalal_broker.paper import PaperBroker, TickFollower
from dalal_broker.prices import LastPrices, ReferencePrices
from dalal_broker.protections import ProtectionDesk
from dalal_broker.protections import watch_forever as watch_protections
from dalal_broker.quote import install as install_quote
from dalal_broker.reconciling import broker_runner
from dalal_broker.reconciling import system_events_handler as reconcile_triggers
from dalal_broker.session import SessionManager, session_reports_handler
from dalal_shared import db
from dalal_shared.bus import default_consumer_name
from dalal_shared.dbthread import Checkpoints
from dalal_shared.dispatch import all_of
from dalal_shared.fills import FillConfig
from dalal_shared.health import supervise
from dalal_shared.httpapp import create_app
from dalal_shared.kitesession import SessionStore
from dalal_shared.lease import Lease, LeaseLoop
from dalal_shared.logging import get_logger, register_secret
from dalal_shared.ratelimit import RateLimiter
from dalal_shared.service import ServiceRuntime
from dalal_shared.streams import ORDERS_COMMANDS, SYSTEM_EVENTS

NAME = "broker"
LEASE_NAME = "broker-order-placer"
log = get_logger(__name__)
# the journal's SQLite log checkpointed at most this often (seconds), once a read's commands
# are done
CHECKPOINT_INTERVAL_SECONDS = 1.0


def build_app(settings: BrokerSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME, settings, lease_ttl_seconds=settings.lease_ttl_seconds)
    api_key = settings.kite_api_key or "unset"
    api_secret = settings.kite_api_secret.get_secret_value() if settings.kite_api_secret else ""
    register_secret(api_secret, settings.session_key.get_secret_value())
    limiter = RateLimiter(runtime.redis, namespace=api_key)
    gateway = KiteGateway(
        api_key=api_key,
        root_url=settings.kite_root_url,
        limiter=limiter,
        timeout_seconds=settings.kite_timeout_seconds,
        rate_limit_timeout_seconds=settings.rate_limit_timeout_seconds,
    )
    session = SessionManager(
        gateway=gateway,
        store=SessionStore(runtime.redis, settings.session_key.get_secret_value()),
        publisher=runtime.publisher,
        api_key=api_key,
        api_secret=api_secret,
        login_url=settings.login_url(),
        check_interval_seconds=settings.session_check_seconds,
    )
    # SQLite's checkpoints of the journal's log between commands (`order_commands`), not
    # inside a placement's commit
    journal = Journal(
        db.make_engine(settings.database_url, wal_autocheckpoint=db.DEFERRED_CHECKPOINT_PAGES),
        source=NAME,
    )
    kill_switch = KillSwitch(runtime.redis)
    paper: PaperBroker | None = None
    adapter: OrderAdapter = gateway
    if settings.mode == "paper":  # Kite for the session and instruments, fills from ticks
        paper = PaperBroker(
            journal,
            FillConfig(
                spread_bps=settings.paper_spread_bps,
                slippage_bps=settings.paper_slippage_bps,
                max_participation=settings.paper_max_participation,
            ),
            protection_pct=settings.market_protection_pct,
        )
        adapter = paper
    last_prices = LastPrices()
    reference_prices = ReferencePrices(
        last_prices, gateway.ltp, max_age_seconds=settings.reference_price_max_age_seconds
    )
    desk = OrderDesk(
        settings=settings,
        journal=journal,
        gateway=adapter,
        session=session,
        kill_switch=kill_switch,
        publisher=runtime.publisher,
        prices=reference_prices,
    )
    protections = ProtectionDesk(
        journal=journal,
        gateway=gateway if paper is None else paper,  # the paper book holds paper GTTs
        prices=reference_prices,
        protection_pct=settings.market_protection_pct,
        flush=desk.flush_outbox,
        expire_session=session.expire,
        write=desk.db.run,
    )
    desk.before_external = protections.check
    instruments = InstrumentStore(runtime.redis, gateway)
    holder = settings.consumer_name or default_consumer_name()
    lease = Lease(runtime.redis, LEASE_NAME, ttl_seconds=settings.lease_ttl_seconds, owner=holder)
    # ticks feed the paper book (paper mode) and the guards' reference prices (every mode)
    follower = TickFollower(runtime.redis, paper, desk.sync, prices=last_prices)
    reference_prices.catch_up = follower.catch_up
    order_stream = (
        OrderStream(
            desk=desk,
            session=session,
            api_key=api_key,
            base_url=ticker_base(settings.kite_root_url, settings.kite_ticker_url),
            silence_seconds=settings.order_stream_silence_seconds,
        )
        if paper is None and settings.order_stream_enabled
        else None
    )

    reconciler = broker_runner(
        journal,
        adapter,
        session,
        runtime.publisher,
        retry_seconds=settings.reconcile_retry_seconds,
        confirm_seconds=settings.reconcile_confirm_seconds,
    )
    tasks: list[asyncio.Task[None]] = []  # consumers: stopped cleanly at a batch boundary
    tracker: list[asyncio.Task[None]] = []  # order tracking: cancelled

    def supervised(name: str, job: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """A long-lived leader task, restarted with back-off if it fails (see /readyz)."""
        return asyncio.create_task(
            supervise(f"broker:{name}", lambda _health: job(), stale_after_seconds=None)
        )

    async def take_lead() -> None:
        """The order-placer lease is ours: consume commands and track orders."""
        if paper is not None:
            restored = await asyncio.to_thread(paper.restore)
            log.info("paper.restored", orders=restored)
        await follower.prime()  # every tick from here on meets the paper book and the guards
        desk.leader = True
        await session.load()
        with suppress(Exception):
            await instruments.ensure_fresh(session.valid)
        tasks[:] = [asyncio.create_task(c.run()) for c in runtime.consumers]
        tracker[:] = [
            supervised("track", desk.track_forever),
            supervised("sweep", desk.sweep_forever),
            supervised("session-watch", session.watch),
            supervised(
                "protections",
                partial(
                    watch_protections,
                    protections,
                    every_seconds=settings.protection_check_seconds,
                    ready=lambda: desk.leader and (session.valid or not desk.needs_session),
                ),
            ),
        ]
        if follower is not None:
            tracker.append(supervised("paper-follower", follower.run))
        if order_stream is not None:
            tracker.append(supervised("order-stream", order_stream.run))
        if settings.reconcile_enabled:
            reconciler.start()  # once the session is valid; again on SessionValid/SessionClosed

    async def give_up_lead() -> None:
        """The lease is gone (or Redis is): stop placing orders until it is ours again."""
        desk.leader = False
        await reconciler.stop()
        for c in runtime.consumers:
            c.stop()  # at the next batch boundary; run() starts them afresh on re-acquire
        for t in tracker:
            t.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=5)
            for t in pending:
                t.cancel()
        tasks.clear()
        tracker.clear()

    leader = LeaseLoop(
        lease,
        on_acquired=take_lead,
        on_lost=give_up_lead,
        renew_every_seconds=settings.lease_ttl_seconds / 3,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(journal.migrate)
        await session.load()
        with suppress(Exception):
            await instruments.load_cached()
        leader_task = asyncio.create_task(leader.run())
        try:
            yield
        finally:
            leader_task.cancel()
            desk.leader = False
            await reconciler.stop()
            for task in tracker:
                task.cancel()
            for consumer in runtime.consumers:
                consumer.stop()
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=5)
                for task in pending:
                    task.cancel()
            with suppress(Exception):
                await lease.release()  # before the Redis client closes: a successor starts now
            await runtime.stop()
            await asyncio.to_thread(desk.db.close)  # the journal's last writes, then its thread

    async def database_ok() -> None:
        await asyncio.to_thread(db.ping, journal.engine)

    checkpoints = Checkpoints(
        lambda: db.checkpoint(journal.engine), interval=CHECKPOINT_INTERVAL_SECONDS, name=NAME
    )
    runtime.consume(
        {ORDERS_COMMANDS: order_commands(desk, protections, checkpoints)},
        on_dead_letter=dead_letters(desk),
    )
    # one consumer of system.events (one group: two would split its entries between them)
    system_handlers = [session_reports_handler(session)]
    if settings.reconcile_enabled:
        system_handlers.append(reconcile_triggers(reconciler))
    runtime.consume({SYSTEM_EVENTS: all_of(system_handlers)})
    app = create_app(
        NAME,
        settings=settings,
        readiness={"redis": runtime.check_redis, "database": database_ok},
        lifespan=lifespan,
        # Kite calls these (the postback) or sends the browser to them (the login)
        public_paths=["/postbacks/kite", "/session/callback", "/session/login"],
        description="broker-gateway: Kite session, instruments, exactly-once orders",
    )
    state = app.state
    state.runtime, state.session, state.desk, state.journal = runtime, session, desk, journal
    state.kill_switch, state.instruments, state.gateway = kill_switch, instruments, gateway
    state.adapter = adapter
    state.reconciler = reconciler
    state.protections = protections
    state.api_secret = api_secret
    app.include_router(router)
    install_quote(app, reference_prices)
    return app
