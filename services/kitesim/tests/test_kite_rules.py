"""Kite's rules and order-update semantics, through the unmodified official client: market
protection on a modification to MARKET, circuit limits from the day's band, disclosed quantity,
the 500-instrument quote limit, and pushes as Kite sends them (nothing for an accepted order,
UPDATE on a partial fill and on a modification, then the final status)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from dalal_shared.testing import wait_until

from .conftest import Kitesim, PostbackSink

RELIANCE = 738561


def grid(value: Decimal) -> float:
    return float((value / Decimal("0.05")).quantize(Decimal(1)) * Decimal("0.05"))


def ltp(sim: Kitesim) -> Decimal:
    return sim.sim.clock.state(RELIANCE).last_price


def place(kite: KiteConnect, **kw: object) -> str:
    params: dict[str, object] = {
        "variety": "regular",
        "exchange": "NSE",
        "tradingsymbol": "RELIANCE",
        "transaction_type": "BUY",
        "quantity": 10,
        "product": "CNC",
        "order_type": "LIMIT",
    }
    params.update(kw)
    return str(kite.place_order(**params))


def last(kite: KiteConnect, order_id: str) -> dict:
    return kite.order_history(order_id)[-1]


@pytest.fixture
def rich(postbacks: PostbackSink) -> Iterator[Kitesim]:
    """Funds for an order larger than a bar's volume cap (it fills in parts)."""
    server = Kitesim(
        kitesim_postback_url=postbacks.url, kitesim_opening_balance_rupees=Decimal(10**9)
    ).start()
    server.advance(seconds=60)
    yield server
    server.stop()


def test_limit_to_market_needs_market_protection(rich: Kitesim) -> None:
    kite = rich.client()
    oid = place(kite, price=grid(ltp(rich) * Decimal("0.95")))
    with pytest.raises(kex.InputException, match="market_protection"):
        kite.modify_order("regular", oid, order_type="MARKET")
    assert (last(kite, oid)["order_type"], last(kite, oid)["status"]) == ("LIMIT", "OPEN")
    kite.modify_order("regular", oid, order_type="MARKET", market_protection=-1)
    rich.advance(seconds=60)
    done = last(kite, oid)
    assert (done["order_type"], done["status"]) == ("MARKET", "COMPLETE")
    assert done["market_protection"] == 3  # the automatic percentage


def test_circuit_limits_come_from_the_days_band(rich: Kitesim) -> None:
    kite = rich.client()
    quote = kite.quote(["NSE:RELIANCE"])["NSE:RELIANCE"]
    lower, upper = quote["lower_circuit_limit"], quote["upper_circuit_limit"]
    close = quote["ohlc"]["close"]
    assert lower == pytest.approx(close * 0.8, abs=0.05)
    assert upper == pytest.approx(close * 1.2, abs=0.05)
    far = place(kite, price=grid(ltp(rich) * 3))  # a BUY at 3x the last price
    rejected = last(kite, far)
    assert rejected["status"] == "REJECTED"
    assert "upper circuit limit" in rejected["status_message"]
    below = place(kite, price=grid(Decimal(str(lower)) - 1), transaction_type="BUY")
    assert "lower circuit limit" in last(kite, below)["status_message"]
    at_edge = place(kite, price=upper)  # the band's edge is inside it
    assert last(kite, at_edge)["status"] in ("OPEN", "COMPLETE")
    resting = place(kite, price=grid(ltp(rich) * Decimal("0.95")))
    with pytest.raises(kex.OrderException, match="upper circuit limit"):
        kite.modify_order("regular", resting, price=grid(ltp(rich) * 3))
    assert last(kite, resting)["status"] == "OPEN"


def test_disclosed_quantity_at_most_the_quantity(rich: Kitesim) -> None:
    kite = rich.client()
    price = grid(ltp(rich) * Decimal("0.95"))
    with pytest.raises(kex.InputException, match="disclosed_quantity"):
        place(kite, price=price, quantity=10, disclosed_quantity=11)
    with pytest.raises(kex.InputException, match="10%"):
        place(kite, price=price, quantity=100, disclosed_quantity=5)
    oid = place(kite, price=price, quantity=100, disclosed_quantity=10)
    assert last(kite, oid)["disclosed_quantity"] == 10
    with pytest.raises(kex.InputException, match="disclosed_quantity"):
        kite.modify_order("regular", oid, quantity=50, disclosed_quantity=60)


def test_quote_takes_at_most_500_instruments(rich: Kitesim) -> None:
    kite = rich.client()
    keys = [f"NSE:{row['tradingsymbol']}" for row in kite.instruments("NSE")[:501]]
    assert len(kite.quote(keys[:500])) >= 1
    with pytest.raises(kex.InputException, match="500"):
        kite.quote(keys)
    kite.ltp(keys)  # LTP and OHLC take up to 1000
    kite.ohlc(keys)


def test_order_updates_are_pushed_as_kite_sends_them(
    rich: Kitesim, postbacks: PostbackSink
) -> None:
    kite = rich.client()
    resting = place(kite, price=grid(ltp(rich) * Decimal("0.95")), tag="upd")
    kite.modify_order("regular", resting, price=grid(ltp(rich) * Decimal("0.94")))
    state = rich.sim.clock.state(RELIANCE)
    big = int(state.bar_volume * Decimal("0.1")) + 500  # more than one bar lets it take
    crossing = place(kite, quantity=big, price=grid(ltp(rich) * Decimal("1.05")), product="MIS")
    rich.advance(seconds=60)
    assert 0 < last(kite, crossing)["filled_quantity"] < big
    kite.cancel_order("regular", resting)

    def pushed(order_id: str) -> list[tuple[str, int]]:
        bodies = [b for b in postbacks.bodies if b["order_id"] == order_id]
        return [(b["status"], b["filled_quantity"]) for b in bodies]

    wait_until(lambda: ("CANCELLED", 0) in pushed(resting), message="the cancellation")
    # no push for the accepted order; UPDATE for its modification; then the cancellation
    assert pushed(resting) == [("UPDATE", 0), ("CANCELLED", 0)]
    wait_until(lambda: pushed(crossing), message="the partial fill")
    first_status, first_filled = pushed(crossing)[0]
    assert first_status == "UPDATE" and 0 < first_filled < big  # a partial fill
    wait_until(
        lambda: rich.advance(seconds=600) and ("COMPLETE", big) in pushed(crossing),
        message="the completion",
    )
    assert all(status in ("UPDATE", "COMPLETE") for status, _ in pushed(crossing))
    # the order book itself shows Kite's statuses, never UPDATE
    assert all(h["status"] != "UPDATE" for h in kite.order_history(crossing))
