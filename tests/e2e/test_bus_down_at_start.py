"""A service restarted while Redis is down, with events it committed before a crash still in
its outbox: it starts (readiness says Redis is not ready), and once Redis is up the events go
out without a restart. Real processes, a real Redis started late on the port they were given."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import redis

from dalal_engine.store import EngineStore, Intent
from dalal_portfolio.ledger import Fill
from dalal_portfolio.service import PortfolioService
from dalal_portfolio.store import LedgerStore
from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.messages import PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS, PORTFOLIO_EVENTS
from dalal_shared.testing import ServiceProcesses, wait_until
from dalal_shared.timeutil import IST

AT = datetime(2025, 3, 3, 10, 0, tzinfo=IST)


def seed_portfolio(url: str) -> None:
    store = LedgerStore.open(url)
    service = PortfolioService(store, initial_capital=Decimal("100000"))
    service.load()
    fill = Fill("T1", "c1", "b1", "NSE", "INFY", "BUY", "CNC", 5, Decimal("1500"), AT)
    assert service.apply_fill(fill)
    assert store.pending_events()
    store.close()


def seed_engine(url: str) -> None:
    store = EngineStore.open(url)
    command = PlaceOrder(client_order_id="E-2503031000-ab12cd", symbol="INFY", side="BUY",
                         quantity=5)  # fmt: skip
    store.record_signals(
        symbol="INFY",
        at=AT,
        states={},
        intents=[Intent(command, "s", "SUBMITTED", 0, False, AT)],
        decisions=[],
        cancels=[],
    )
    assert store.unpublished() == [command]
    store.close()


def readiness(url: str) -> int:
    return httpx.get(f"{url}/readyz", timeout=5).status_code


def test_stored_events_wait_for_redis_instead_of_a_crash(
    tmp_path: Path, service_processes: ServiceProcesses
) -> None:
    port = free_port()
    bus = f"redis://127.0.0.1:{port}/0"
    seed_portfolio(f"sqlite:///{tmp_path}/portfolio.sqlite3")
    seed_engine(f"sqlite:///{tmp_path}/engine.sqlite3")
    common = {"DALAL_REDIS_URL": bus, "DALAL_LOG_FORMAT": "json"}
    portfolio = service_processes.start(
        "dalal_portfolio",
        {**common, "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/portfolio.sqlite3",
         "DALAL_OUTBOX_INTERVAL_SECONDS": "0.2"},
    )  # fmt: skip
    engine = service_processes.start(
        "dalal_engine", {**common, "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/engine.sqlite3"}
    )
    assert readiness(portfolio.base_url) == 503 and readiness(engine.base_url) == 503

    server = EmbeddedRedis(tmp_path / "redis", port, appendonly=False)
    server.start()
    client = redis.Redis.from_url(bus)
    try:
        wait_until(lambda: client.xlen(PORTFOLIO_EVENTS) > 0, timeout=60,
                   message="the portfolio's stored events on the bus")  # fmt: skip
        wait_until(lambda: client.xlen(ORDERS_COMMANDS) == 1, timeout=60,
                   message="the engine's stored order on the bus")  # fmt: skip
        wait_until(lambda: readiness(portfolio.base_url) == 200, timeout=30, message="ready")
        wait_until(lambda: readiness(engine.base_url) == 200, timeout=30, message="ready")
    finally:
        client.close()
        service_processes.stop_all()
        server.stop()
    assert EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3").unpublished() == []
