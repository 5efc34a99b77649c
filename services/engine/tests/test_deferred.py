"""No decision is silently skipped: a bar that comes while an order of its symbol is in flight
is decided when that order settles.

Two strategy instances trade INFY on real daily bars through the engine app on a real bus; the
test plays the broker and fills every order only after the next bar has come (so orders are
in flight when bars arrive). Instance `slow` then decides the bars that waited for `fast`'s
orders once they fill: its orders are the ones it makes alone with instant fills."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import redis
from engine_fixtures import KNOWN, announce_safe, infy_bars, replay_settings
from fastapi.testclient import TestClient

from dalal_engine.app import build_app
from dalal_engine.config import EngineSettings
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import Bar, Envelope, OrderFilled, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS, ORDERS_EVENTS
from dalal_shared.testing import bearer, wait_until

KEY = "engine-deferred-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
FAST = """
  - name: fast
    strategy: sma_cross
    universe: [INFY]
    params: {fast_bars: 2, slow_bars: 5, fixed_quantity: 5}
    risk: {enforce_market_hours: false, max_orders_per_minute: 200}
"""
SLOW = """
  - name: slow
    strategy: sma_cross
    universe: [INFY]
    params: {fast_bars: 3, slow_bars: 8, fixed_quantity: 7}
    risk: {enforce_market_hours: false, max_orders_per_minute: 200}
"""


def filled(order: PlaceOrder, bar: Bar, n: int) -> OrderFilled:
    return OrderFilled(
        client_order_id=order.client_order_id,
        broker_order_id=f"b-{n}",
        trade_id=f"t-{n}",
        symbol="INFY",
        side=order.side,
        product="CNC",
        quantity=order.quantity,
        price=bar.open,
        filled_at=bar.start + timedelta(hours=9, minutes=20),
    )


def alone(tmp_path: Path) -> list[str]:
    """`slow` trading alone, each order filled at once: its order ids."""
    live = LiveEngine(
        load_text("strategies:" + SLOW),
        EngineStore.open(f"sqlite:///{tmp_path}/alone.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    live.start()
    out, n = [], 0
    for bar in infy_bars():
        for order in live.on_bar(bar):
            n += 1
            out.append(order.client_order_id)
            live.on_order_event(filled(order, bar, n))
    return out


def test_bars_waiting_for_an_order_are_decided_when_it_fills(
    redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "strategies.yaml").write_text("strategies:" + FAST + SLOW)
    settings = EngineSettings(
        redis_url=redis_url,
        api_key=KEY,
        database_url=f"sqlite:///{tmp_path}/engine.sqlite3",
        strategies_file=tmp_path / "strategies.yaml",
        bus_block_ms=50,
        **replay_settings(),
    )
    r = redis.Redis.from_url(redis_url)
    announce_safe(r)

    def orders() -> list[PlaceOrder]:
        out = [Envelope.from_fields(f).message for _id, f in r.xrange(ORDERS_COMMANDS)]
        return [m for m in out if isinstance(m, PlaceOrder)]

    def consumed(stream: str) -> bool:
        last = r.xrevrange(stream, count=1)
        return not last or any(
            g["name"] == b"engine" and g["last-delivered-id"] == last[0][0] and g["pending"] == 0
            for g in r.xinfo_groups(stream)
        )

    with TestClient(build_app(settings), headers=bearer(settings)) as client:
        assert client.post("/engine/start", headers=AUTH).json()["running"]
        wait_until(lambda: client.get("/engine/status").json()["safety_state_known"])
        done: set[str] = set()
        n = 0

        def fill_all(sent: list[PlaceOrder], bar: Bar) -> None:
            nonlocal n
            for order in sent:
                n += 1
                done.add(order.client_order_id)
                fill = filled(order, bar, n)
                r.xadd(ORDERS_EVENTS, Envelope.wrap(fill, source="broker").to_fields())
            wait_until(lambda: consumed(ORDERS_EVENTS), message="fills consumed")

        for bar in infy_bars():
            # what was sent before this bar fills only now: in flight when the bar comes
            in_flight = [o for o in orders() if o.client_order_id not in done]
            r.xadd("market.bars.day", Envelope.wrap(bar, source="data").to_fields())
            wait_until(lambda: consumed("market.bars.day"), message="bar consumed")
            of_this_bar = {o.client_order_id for o in orders()} - done
            fill_all(in_flight, bar)  # (this bar's own orders stay in flight)
            # the fills release the decisions that waited: their orders go at once
            released = [o for o in orders() if o.client_order_id not in done | of_this_bar]
            if released:
                fill_all(released, bar)
        by_slow = [o.client_order_id for o in orders() if o.strategy == "slow"]
        status = client.get("/engine/status").json()
        deferred = [
            line
            for line in client.get("/metrics").text.splitlines()
            if line.startswith('dalal_engine_deferred_decisions_total{strategy="slow"}')
        ]
    assert deferred and float(deferred[0].rsplit(" ", 1)[1]) > 0  # bars did wait
    assert by_slow == alone(tmp_path)  # not one of its decisions lost
    assert len(by_slow) >= 4 and status["running"] is True
