"""End-of-day equity snapshots: the scheduler's SessionClosed takes one per session, whatever
the repetition of the signal, on SQLite and PostgreSQL, and through the bus."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from dalal_portfolio.app import build_app
from dalal_portfolio.config import PortfolioSettings
from dalal_portfolio.ledger import Fill
from dalal_portfolio.service import PortfolioService
from dalal_portfolio.store import LedgerStore
from dalal_shared.messages import Envelope, EquitySnapshot, KillSwitchEngaged, SessionClosed
from dalal_shared.money import INITIAL_CAPITAL_RUPEES
from dalal_shared.streams import PORTFOLIO_EVENTS, SYSTEM_EVENTS
from dalal_shared.testing import bearer, wait_until

CLOSE = datetime(2025, 3, 5, 10, 5, tzinfo=UTC)  # 15:35 IST


def open_service(url: str) -> PortfolioService:
    service = PortfolioService(
        LedgerStore.open(url), initial_capital=D("100000"), clock=lambda: CLOSE
    )
    service.load()
    return service


def test_one_end_of_day_snapshot_per_session(database_url: str) -> None:
    service = open_service(database_url)
    service.apply_fill(Fill("T1", "c1", "b1", "NSE", "INFY", "BUY", "CNC", 10, D("1500"), CLOSE))
    service.mark("INFY", D("1520"), CLOSE)
    first = service.end_of_day(date(2025, 3, 5))
    assert first is not None and first.session_day == date(2025, 3, 5)
    assert first.unrealised_pnl == D("200")
    assert service.end_of_day(date(2025, 3, 5)) is None  # the signal delivered again
    service.snapshot()  # periodic snapshots are not end-of-day ones
    service.store.close()

    again = open_service(database_url)  # after a restart the day is still taken
    assert again.end_of_day(date(2025, 3, 5)) is None
    assert again.end_of_day(date(2025, 3, 6)) is not None
    days = [s.session_day for s in again.store.snapshots()]
    assert days == [date(2025, 3, 5), None, date(2025, 3, 6)]
    assert len(again.equity_points(end_of_day_only=True)) == 2
    again.store.close()


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = PortfolioSettings(
        redis_url=redis_url,
        api_key="portfolio-test-key-0123456789",
        database_url=f"sqlite:///{tmp_path}/ledger.sqlite3",
        equity_snapshot_interval_seconds=3600,
        bus_block_ms=50,
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as c:
        yield c


def test_session_closed_on_the_bus_publishes_one_end_of_day_snapshot(
    client: TestClient, redis_url: str
) -> None:
    r = redis.Redis.from_url(redis_url)
    try:
        closed = SessionClosed(day=date(2025, 3, 5), closed_at=CLOSE)
        for message in (closed, KillSwitchEngaged(reason="test", engaged_by="api"), closed):
            r.xadd(SYSTEM_EVENTS, Envelope.wrap(message, source="test").to_fields())

        def end_of_day_events() -> list[EquitySnapshot]:
            out = []
            for _id, fields in r.xrange(PORTFOLIO_EVENTS):
                message = Envelope.from_fields(fields).message
                if isinstance(message, EquitySnapshot) and message.session_day is not None:
                    out.append(message)
            return out

        wait_until(
            lambda: (
                r.xpending(SYSTEM_EVENTS, "portfolio")["pending"] == 0
                and len(r.xrange(SYSTEM_EVENTS)) == 3
                and end_of_day_events()
            ),
            message="end-of-day snapshot published",
        )
        events = end_of_day_events()
        assert [e.session_day for e in events] == [date(2025, 3, 5)]
        assert D(events[0].equity) == INITIAL_CAPITAL_RUPEES  # the default capital, no fills
        assert not r.exists(f"dlq.{SYSTEM_EVENTS}")  # the other system events are not errors
        daily = client.get("/equity-curve", params={"daily": "true"}).json()["points"]
        assert len(daily) == 1
        assert client.get("/equity-curve", params={"daily": "maybe"}).status_code == 422
    finally:
        r.close()
