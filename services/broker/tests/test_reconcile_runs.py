"""The broker reconciles its journal with kitesim's order book by itself: once the Kite session
is valid after a start, and after the scheduler's SessionClosed; each result is a
ReconcileCompleted on system.events and the dalal_reconcile_* metrics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
import redis

from dalal_shared.messages import Envelope, ReconcileCompleted, SessionClosed
from dalal_shared.streams import SYSTEM_EVENTS
from dalal_shared.testing import wait_until

from .conftest import Broker, Sim, events

pytestmark = pytest.mark.slow


def completed(redis_url: str) -> list[ReconcileCompleted]:
    return [
        e.message
        for e in events(redis_url, SYSTEM_EVENTS)
        if isinstance(e.message, ReconcileCompleted)
    ]


def metric(broker: Broker, line_start: str) -> float | None:
    for line in broker.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    return None


def test_the_broker_reconciles_once_the_session_is_valid_and_after_the_close(
    start_broker: Callable[..., Broker], kitesim: Sim, redis_url: str
) -> None:
    broker = start_broker(DALAL_RECONCILE_RETRY_SECONDS="0.2", DALAL_RECONCILE_CONFIRM_SECONDS="0")
    assert completed(redis_url) == []  # no Kite session yet: nothing to compare with
    broker.login(kitesim)
    wait_until(lambda: completed(redis_url), timeout=60, message="a run once the session is valid")
    first = completed(redis_url)[0]
    assert (first.scope, first.breaks) == ("broker", 0)
    assert first.trigger in ("start", "session_valid")
    assert metric(broker, 'dalal_reconcile_breaks{scope="broker"}') == 0

    # an order placed by hand in Kite, then the day's close: a break, published and exported
    kitesim.client().place_order(
        variety="regular", exchange="NSE", tradingsymbol="TCS", transaction_type="BUY",
        quantity=1, product="CNC", order_type="LIMIT", price=1.0, tag="by-hand",
    )  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    try:
        closed = SessionClosed(
            day=date(2024, 1, 2), closed_at=datetime(2024, 1, 2, 10, 5, tzinfo=UTC)
        )
        client.xadd(SYSTEM_EVENTS, Envelope.wrap(closed, source="scheduler").to_fields())
    finally:
        client.close()
    wait_until(
        lambda: any(e.trigger == "session_closed" for e in completed(redis_url)),
        timeout=60,
        message="the end-of-day run",
    )
    last = next(e for e in completed(redis_url) if e.trigger == "session_closed")
    assert (last.day, last.breaks, last.kinds) == (date(2024, 1, 2), 1, ("unknown_order",))
    assert metric(broker, 'dalal_reconcile_breaks{scope="broker"}') == 1
    assert broker.get("/reconcile").json()["ok"] is False
