import hashlib
from decimal import Decimal

import pytest
from kiteconnect import exceptions as kex

from dalal_shared.testing import wait_until

from .conftest import API_SECRET, Kitesim

RELIANCE = 738561  # replayed from 15-minute bars: one tick per simulated minute


def ltp(kitesim, token=RELIANCE) -> Decimal:
    return kitesim.sim.clock.state(token).last_price


def grid(value: Decimal) -> Decimal:
    return (value / Decimal("0.05")).quantize(Decimal(1)) * Decimal("0.05")


def place(kite, **kw):
    params = {
        "variety": "regular",
        "exchange": "NSE",
        "tradingsymbol": "RELIANCE",
        "transaction_type": "BUY",
        "quantity": 10,
        "product": "CNC",
        "order_type": "LIMIT",
    }
    params.update(kw)
    return kite.place_order(**params)


def status(kite, order_id):
    return kite.order_history(order_id)[-1]


def test_limit_order_life_cycle_with_postbacks(kitesim, kite, postbacks):
    kitesim.advance(seconds=60)
    price = ltp(kitesim)
    low = grid(price * Decimal("0.9"))
    oid = place(kite, price=float(low), tag="cl-0001")
    history = kite.order_history(oid)
    assert [h["status"] for h in history] == [
        "PUT ORDER REQ RECEIVED",
        "VALIDATION PENDING",
        "OPEN PENDING",
        "OPEN",
    ]
    assert history[-1]["tag"] == "cl-0001"
    kitesim.advance(seconds=900)
    assert status(kite, oid)["status"] == "OPEN"  # far below the market: no fill
    # modify to a price above the market: fills at the next tick
    high = grid(ltp(kitesim) * Decimal("1.01"))
    assert kite.modify_order("regular", oid, price=float(high)) == oid
    statuses = [h["status"] for h in kite.order_history(oid)]
    assert statuses[-4:] == ["MODIFY VALIDATION PENDING", "MODIFY PENDING", "MODIFIED", "OPEN"]
    kitesim.advance(seconds=60)
    done = status(kite, oid)
    assert done["status"] == "COMPLETE" and done["filled_quantity"] == 10
    assert done["average_price"] <= float(high)
    trades = kite.order_trades(oid)
    assert sum(t["quantity"] for t in trades) == 10
    assert kite.trades()[0]["order_id"] == oid
    (position,) = kite.positions()["net"]
    assert position["tradingsymbol"] == "RELIANCE" and position["quantity"] == 10
    assert position["product"] == "CNC"
    orders = kite.orders()
    assert orders[0]["order_id"] == oid and orders[0]["status"] == "COMPLETE"
    # postbacks: every update, with Kite's checksum
    complete = wait_until(
        lambda: [b for b in postbacks.bodies if b["status"] == "COMPLETE"], message="postback"
    )[0]
    expected = hashlib.sha256(
        (complete["order_id"] + complete["order_timestamp"] + API_SECRET).encode()
    ).hexdigest()
    assert complete["checksum"] == expected
    assert complete["tag"] == "cl-0001" and complete["unfilled_quantity"] == 0
    margins = kite.margins()["equity"]
    assert margins["utilised"]["delivery"] == pytest.approx(done["average_price"] * 10, abs=0.01)


def test_market_order_needs_protection_and_fills_at_next_tick_with_costs(kitesim, kite):
    kitesim.advance(seconds=60)
    with pytest.raises(kex.InputException, match="market_protection"):
        place(kite, order_type="MARKET")
    oid = place(kite, order_type="MARKET", market_protection=-1)
    assert status(kite, oid)["status"] == "OPEN"
    kitesim.advance(seconds=60)
    filled = status(kite, oid)
    assert filled["status"] == "COMPLETE"
    assert filled["average_price"] > float(ltp(kitesim))  # buys pay half spread + slippage


def test_cancel_and_validation_errors(kitesim, kite):
    kitesim.advance(seconds=60)
    oid = place(kite, price=1100.0)  # below the market, inside the day's band
    assert kite.cancel_order("regular", oid) == oid
    assert status(kite, oid)["status"] == "CANCELLED"
    assert status(kite, oid)["cancelled_quantity"] == 10
    with pytest.raises(kex.OrderException):
        kite.cancel_order("regular", oid)
    with pytest.raises(kex.InputException, match="tick size"):
        place(kite, price=100.03)
    with pytest.raises(kex.InputException, match="instrument"):
        place(kite, tradingsymbol="NOSUCH", price=100.0)
    with pytest.raises(kex.InputException, match="quantity"):
        place(kite, quantity=0, price=100.0)
    with pytest.raises(kex.InputException, match="tag"):
        place(kite, price=100.0, tag="x" * 21)
    with pytest.raises(kex.InputException, match="product"):
        place(kite, price=100.0, product="NRML")
    with pytest.raises(kex.OrderException):
        kite.order_history("000000000000000")


def test_insufficient_funds_rejects_the_order(kitesim, kite, postbacks):
    kitesim.advance(seconds=60)
    oid = place(kite, quantity=100_000, price=float(ltp(kitesim)))
    rejected = status(kite, oid)
    assert rejected["status"] == "REJECTED"
    assert "Insufficient funds" in rejected["status_message"]
    wait_until(lambda: any(b["status"] == "REJECTED" for b in postbacks.bodies), message="pb")
    # selling shares one does not hold (CNC) is rejected too
    sell = place(kite, transaction_type="SELL", price=float(ltp(kitesim)))
    assert status(kite, sell)["status"] == "REJECTED"


def test_stop_loss_triggers_then_fills(kitesim, kite):
    kitesim.advance(seconds=60)
    trigger = grid(ltp(kitesim) * Decimal("1.0005")) + Decimal("0.05")
    oid = place(
        kite, order_type="SL-M", trigger_price=float(trigger), market_protection=5, product="MIS"
    )
    assert status(kite, oid)["status"] == "TRIGGER PENDING"
    wait_until(
        lambda: kitesim.advance(seconds=60) and status(kite, oid)["status"] == "COMPLETE",
        message="SL-M filled",
    )
    history = [h["status"] for h in kite.order_history(oid)]
    assert "TRIGGER PENDING" in history and history[-1] == "COMPLETE"
    assert kite.positions()["day"][0]["product"] == "MIS"


def test_ioc_cancels_what_does_not_fill(kitesim, kite):
    kitesim.advance(seconds=60)
    oid = place(kite, price=1100.0, validity="IOC")
    kitesim.advance(seconds=60)
    final = status(kite, oid)
    assert final["status"] == "CANCELLED" and final["filled_quantity"] == 0


def test_large_order_fills_in_parts():
    kitesim = Kitesim(kitesim_opening_balance_rupees=Decimal(10**9)).start()
    try:
        _large_order_fills_in_parts(kitesim, kitesim.client())
    finally:
        kitesim.stop()


def _large_order_fills_in_parts(kitesim, kite):
    kitesim.advance(seconds=60)
    state = kitesim.sim.clock.state(RELIANCE)
    cap = int(state.bar_volume * Decimal("0.1"))
    qty = cap + 500
    price = grid(ltp(kitesim) * Decimal("1.05"))
    oid = place(kite, quantity=qty, price=float(price), product="MIS")
    kitesim.advance(seconds=60)
    part = status(kite, oid)
    assert 0 < part["filled_quantity"] < qty and part["status"] == "OPEN"
    wait_until(
        lambda: kitesim.advance(seconds=900) and status(kite, oid)["status"] == "COMPLETE",
        message="complete",
    )
    assert len(kite.order_trades(oid)) >= 2


def test_mis_square_off_at_1520_and_no_fresh_mis_after(kitesim, kite):
    kitesim.advance(seconds=60)
    oid = place(kite, order_type="MARKET", market_protection=-1, product="MIS")
    kitesim.advance(seconds=60)
    assert status(kite, oid)["status"] == "COMPLETE"
    kitesim.advance(until="2024-01-02T15:21:00+05:30")
    (pos,) = kite.positions()["net"]
    assert pos["quantity"] == 0 and pos["sell_quantity"] == 10
    squares = [o for o in kite.orders() if o["tag"] == "squareoff"]
    assert squares and squares[0]["status"] == "COMPLETE"
    late = place(kite, order_type="MARKET", market_protection=-1, product="MIS")
    assert status(kite, late)["status"] == "REJECTED"


def test_market_closed_amo_and_cnc_to_holdings(kitesim, kite):
    kitesim.advance(seconds=60)
    oid = place(kite, order_type="MARKET", market_protection=-1)
    kitesim.advance(seconds=60)
    assert status(kite, oid)["status"] == "COMPLETE"
    kitesim.advance(until="2024-01-02T16:00:00+05:30")
    with pytest.raises(kex.InputException, match="Markets are closed"):
        place(kite, price=1000.0)
    amo = place(kite, variety="amo", price=float(ltp(kitesim)), quantity=1)
    assert status(kite, amo)["status"] == "AMO REQ RECEIVED"
    kitesim.advance(until="2024-01-03T09:15:00+05:30")
    holdings = kite.holdings()
    assert holdings[0]["tradingsymbol"] == "RELIANCE" and holdings[0]["t1_quantity"] == 10
    assert kite.positions()["net"] == []
    assert kite.order_history(amo)[-1]["status"] == "OPEN"
    assert [o["order_id"] for o in kite.orders()] == [amo]


def test_a_modification_is_checked_against_the_funds_like_a_new_order(kitesim, kite):
    kitesim.advance(seconds=60)
    low = grid(ltp(kitesim) * Decimal("0.9"))  # rests below the market
    oid = place(kite, quantity=10, price=float(low))
    assert status(kite, oid)["status"] == "OPEN"
    available = Decimal(str(kite.margins("equity")["net"]))
    too_many = int((available + low * 10) / low) + 10  # more than the funds once released
    with pytest.raises(kex.OrderException, match="Insufficient funds"):
        kite.modify_order("regular", oid, quantity=too_many)
    unchanged = status(kite, oid)
    assert (unchanged["status"], unchanged["quantity"]) == ("OPEN", 10)
    assert Decimal(str(unchanged["price"])) == low
    # within the funds (its own block released first): accepted
    fits = int((available + low * 10) / low) - 1
    assert kite.modify_order("regular", oid, quantity=fits) == oid
    assert status(kite, oid)["quantity"] == fits
    with pytest.raises(kex.InputException, match="trigger_price"):
        kite.modify_order("regular", oid, order_type="SL")


def test_each_order_says_when_it_reached_the_book_by_the_wall_clock(kitesim, kite):
    """The control API gives each order's arrival by the machine's clock (Kite's own times are
    the simulated market's, to the second): what a latency bench compares its stamps with."""
    from datetime import UTC, datetime

    kitesim.advance(seconds=60)
    before = datetime.now(UTC)
    first = place(kite, price=1100.0, tag="lat1")
    second = place(kite, price=1100.0)
    after = datetime.now(UTC)
    received = {o["order_id"]: o for o in kitesim.control("/orders/received", method="GET")}
    assert set(received) == {first, second}
    assert received[first]["tag"] == "lat1"
    times = [datetime.fromisoformat(received[o]["received_at"]) for o in (first, second)]
    assert all(t.tzinfo is not None for t in times)
    assert before <= times[0] <= times[1] <= after
    assert "received_at" not in kite.order_history(first)[-1]  # Kite's shape unchanged
