"""Every Kite trade reaches `orders.events`: after failed `order_trades` calls (502, 429) and for
orders placed by hand at Kite (the trade-book sweep), against kitesim through the official
client."""

from __future__ import annotations

from typing import Any

import pytest

from dalal_shared.testing import wait_until

from .conftest import Broker, Sim, events, metric
from .test_orders_with_kitesim import limit_buy

pytestmark = pytest.mark.slow


def fills_of(redis_url: str, coid: str) -> list[Any]:
    return [e.message for e in events(redis_url, coid=coid) if e.type == "OrderFilled"]


def kite_trades(kitesim: Sim, coid: str) -> list[dict[str, Any]]:
    [at_kite] = kitesim.orders_tagged(coid)
    return kitesim.client().order_trades(at_kite["order_id"])


@pytest.mark.parametrize("status", [502, 429])
def test_trades_reach_the_events_when_order_trades_fails(
    start_broker, kitesim: Sim, redis_url: str, status: int
) -> None:
    # polling, the sweep and the session check all but off: only the ticker tells the broker
    # of the fill, and the order_trades call it then makes fails
    broker: Broker = start_broker(
        DALAL_POLL_INTERVAL_SECONDS="600",
        DALAL_TRADE_SWEEP_SECONDS="600",
        DALAL_SESSION_CHECK_SECONDS="600",
    )
    broker.login(kitesim)
    wait_until(
        lambda: metric(broker, "dalal_broker_order_stream_connected") == 1,
        message="order stream connected",
    )
    coid = f"otf-{status}"
    placed = broker.post("/orders", limit_buy(coid, symbol="RELIANCE", qty=3))
    assert placed.json()["status"] == "OPEN", placed.text
    # the broker's next read call (nothing else polls now) is the fill's order_trades
    kitesim.control("/faults", {"kind": "status", "status": status, "route": "other"})
    kitesim.control("/clock/advance", {"seconds": 120})

    done = wait_until(
        lambda: (o := broker.order(coid))["status"] == "COMPLETE" and o,
        timeout=60,
        message="order complete",
    )
    assert metric(broker, "dalal_broker_order_trades_failed_total") >= 1  # the fault was met
    assert done["filled_quantity"] == 3
    assert sum(t["quantity"] for t in done["trades"]) == 3
    fills = fills_of(redis_url, coid)
    expected = kite_trades(kitesim, coid)
    assert sorted(f.trade_id for f in fills) == sorted(str(t["trade_id"]) for t in expected)
    assert sum(f.quantity for f in fills) == 3
    # the fills come before the update that says COMPLETE, which comes once
    types = [(e.type, getattr(e.message, "status", None)) for e in events(redis_url, coid=coid)]
    complete = types.index(("OrderUpdated", "COMPLETE"))
    assert [t for t, _ in types[complete:]] == ["OrderUpdated"]
    assert types.count(("OrderFilled", None)) == len(expected)


def test_the_sweep_journals_an_order_placed_by_hand_at_kite(
    start_broker, kitesim: Sim, redis_url: str
) -> None:
    broker: Broker = start_broker(DALAL_TRADE_SWEEP_SECONDS="0.5")
    broker.login(kitesim)
    by_hand = kitesim.client()  # the user's own session, as in Kite's web app
    order_id = by_hand.place_order(
        variety="regular",
        exchange="NSE",
        tradingsymbol="INFY",
        transaction_type="BUY",
        quantity=4,
        product="CNC",
        order_type="LIMIT",
        price=9000,
    )
    kitesim.control("/clock/advance", {"seconds": 120})
    coid = f"x{order_id}"
    row = wait_until(
        lambda: (o := broker.order(coid)).get("status") == "COMPLETE" and o,
        timeout=60,
        message="the hand-placed order journaled",
    )
    assert (row["reason"], row["symbol"], row["side"], row["filled_quantity"]) == (
        "external",
        "INFY",
        "BUY",
        4,
    )
    expected = by_hand.order_trades(order_id)
    fills = fills_of(redis_url, coid)
    assert sorted(f.trade_id for f in fills) == sorted(str(t["trade_id"]) for t in expected)
    assert {(f.symbol, f.side, f.product) for f in fills} == {("INFY", "BUY", "CNC")}
    assert sum(f.quantity for f in fills) == 4
    # this broker's journal started empty: every trade in kitesim's day trade book (earlier
    # tests' too) is external to it, and each was added once
    added = metric(broker, "dalal_broker_trade_sweep_added_total", origin="external")
    assert added == len(by_hand.trades())

    # later sweeps find nothing new: no second OrderFilled
    swept = metric(broker, "dalal_broker_trade_sweeps_total", outcome="ok")
    wait_until(
        lambda: metric(broker, "dalal_broker_trade_sweeps_total", outcome="ok") >= swept + 2,
        timeout=60,
        message="two more sweeps",
    )
    assert len(fills_of(redis_url, coid)) == len(expected)
    assert metric(broker, "dalal_broker_trade_sweep_added_total", origin="external") == added
