"""The portfolio reconciles by itself: after start (retried until the broker can answer), on a
new session and after the scheduler's SessionClosed; each result is a ReconcileCompleted on
system.events and the dalal_reconcile_* metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from test_reconcile_http import StubBroker, broker_trade, fill, kite_holding, kite_position

from dalal_portfolio.app import build_app
from dalal_portfolio.config import PortfolioSettings
from dalal_shared.messages import (
    Envelope,
    ReconcileCompleted,
    SessionClosed,
    SessionValid,
)
from dalal_shared.streams import SYSTEM_EVENTS
from dalal_shared.testing import bearer, wait_until
from dalal_shared.timeutil import IST

KEY = "portfolio-test-key-0123456789"
DAY = datetime(2025, 3, 4, 10, 0, tzinfo=IST)


@pytest.fixture
def stub() -> Iterator[StubBroker]:
    with StubBroker() as s:
        yield s


def completed(r: redis.Redis) -> list[ReconcileCompleted]:
    out = []
    for _id, fields in r.xrange(SYSTEM_EVENTS):
        message = Envelope.from_fields(fields).message
        if isinstance(message, ReconcileCompleted):
            out.append(message)
    return out


def metric(client: TestClient, line_start: str) -> float | None:
    text = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    return None


def test_reconciles_after_start_on_a_new_session_and_after_the_close(
    stub: StubBroker, redis_url: str, tmp_path: Path
) -> None:
    r = redis.Redis.from_url(redis_url)
    r.delete(SYSTEM_EVENTS)
    # no Kite session at the broker yet: the after-start run waits for it
    stub.routes = {"/positions": (503, {"error": "no_session", "message": "log in"})}
    settings = PortfolioSettings(
        redis_url=redis_url,
        api_key=KEY,
        database_url=f"sqlite:///{tmp_path}/ledger.sqlite3",
        bus_block_ms=50,
        broker_url=stub.url,
        broker_timeout_seconds=5,
        reconcile_retry_seconds=0.2,
        reconcile_confirm_seconds=0,
        equity_snapshot_interval_seconds=3600,
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as client:
        client.app.state.portfolio.apply_fill(fill("T1", "INFY", 10, "1500", DAY))
        wait_until(lambda: stub.hits.count("/positions") >= 2, message="retried while no session")
        assert completed(r) == []
        stub.routes = {
            "/positions": (200, {"net": [kite_position("INFY", 10, 1500.0)], "day": []}),
            "/holdings": (200, []),
            "/trades": (200, {"trades": [broker_trade("T1", "INFY", 10, "1500")]}),
        }
        wait_until(lambda: len(completed(r)) == 1, timeout=30, message="the after-start run")
        first = completed(r)[0]
        assert (first.scope, first.trigger, first.breaks, first.kinds) == (
            "portfolio", "start", 0, ()
        )  # fmt: skip
        assert metric(client, 'dalal_reconcile_breaks{scope="portfolio"}') == 0

        # a new login reconciles again
        r.xadd(SYSTEM_EVENTS, Envelope.wrap(SessionValid(user_id="AB1234", expires_at=DAY),
                                            source="broker").to_fields())  # fmt: skip
        wait_until(lambda: len(completed(r)) == 2, timeout=30, message="the session_valid run")
        assert completed(r)[1].trigger == "session_valid"

        # after the close the broker holds shares the ledger never saw: a break, published
        stub.routes["/holdings"] = (200, [kite_holding("WIPRO", 7, 0, 300.0)])
        closed = SessionClosed(
            day=date(2025, 3, 4), closed_at=datetime(2025, 3, 4, 10, 5, tzinfo=UTC)
        )
        r.xadd(SYSTEM_EVENTS, Envelope.wrap(closed, source="scheduler").to_fields())
        wait_until(lambda: len(completed(r)) == 3, timeout=30, message="the end-of-day run")
        last = completed(r)[2]
        assert (last.trigger, last.day, last.breaks, last.kinds) == (
            "session_closed", date(2025, 3, 4), 1, ("missing_in_ledger",)
        )  # fmt: skip
        assert metric(client, 'dalal_reconcile_breaks{scope="portfolio"}') == 1
        assert (metric(client, 'dalal_reconcile_last_run_timestamp_seconds{scope="portfolio"}')
                or 0) >= last.completed_at.timestamp() - 1  # fmt: skip
        # its own ReconcileCompleted events are not dead-lettered by its system.events consumer
        assert r.xlen(f"dlq.{SYSTEM_EVENTS}") == 0
