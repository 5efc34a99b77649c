"""kitesim keeps the day's orders that are not final yet apart from the whole order book, so a
day of thousands of finished orders costs a tick or an order admission nothing. Checked here
on the exchange itself (in process, no HTTP): after fills, rejections, cancels, modifications,
an AMO carried into the next session and a restart from the state file, the orders it matches,
blocks funds for and squares off are exactly the book's unfinished ones in placement order, and
a resting order placed before thousands of finished ones still fills at its price."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from dalal_kitesim.app import Simulator
from dalal_kitesim.config import KitesimSettings
from dalal_kitesim.exchange import FINAL_STATUSES, Exchange, Order


def simulator(state_file: Path) -> Simulator:
    return Simulator(
        KitesimSettings(
            kitesim_opening_balance_rupees=Decimal(10**10),
            kitesim_circuit_band_pct=Decimal(0),
            kitesim_state_file=state_file,
        )
    )


def unfinished(ex: Exchange) -> list[str]:
    return [o.order_id for o in ex.orders.values() if o.status not in FINAL_STATUSES]


def agrees(ex: Exchange) -> bool:
    """The kept set is the book's unfinished orders, in order; the funds' blocks are what a
    walk over the whole book gives."""
    blocks = sum((ex.order_margin(o) for o in ex.orders.values() if o.is_open), Decimal(0))
    live_blocks = sum((ex.order_margin(o) for o in ex.live_orders() if o.is_open), Decimal(0))
    return [o.order_id for o in ex.live_orders()] == unfinished(ex) and blocks == live_blocks


def order(symbol: str, side: str = "BUY", price: str | None = None, **kw: str) -> dict[str, str]:
    params = {
        "exchange": "NSE",
        "tradingsymbol": symbol,
        "transaction_type": side,
        "quantity": "1",
        "product": "MIS",
        "order_type": "MARKET",
        "market_protection": "5",
    }
    if price is not None:
        params.update(order_type="LIMIT", price=price)
        del params["market_protection"]
    params.update(kw)
    return params


def test_the_unfinished_orders_are_the_books_through_a_day_and_a_restart(tmp_path: Path) -> None:
    sim = simulator(tmp_path / "state.json")
    ex = sim.exchange
    sim.clock.advance(60)
    symbols = ["RELIANCE", "TCS", "INFY"]
    # a buy far below the market, placed first
    early: Order = ex.place("regular", order("INFY", price="1"))
    for k in range(1_500):  # filled at the next ticks
        ex.place("regular", order(symbols[k % 3], "BUY" if k % 2 == 0 else "SELL"))
    ex.reject_next = 1
    rejected = ex.place("regular", order("TCS", price="1"))
    resting = [ex.place("regular", order(s, price="1")) for s in symbols]
    assert rejected.status == "REJECTED" and agrees(ex)
    sim.clock.advance(900)
    assert [o.status for o in ex.orders.values()].count("COMPLETE") == 1_500
    assert agrees(ex)
    assert {o.order_id for o in ex.live_orders()} == {early.order_id} | {
        o.order_id for o in resting
    }

    ex.modify("regular", resting[0].order_id, {"quantity": "2"})  # through MODIFY ... statuses
    ex.cancel("regular", resting[1].order_id)
    assert agrees(ex)
    assert [o.order_id for o in ex.live_orders()] == [
        early.order_id,
        *(o.order_id for o in (resting[0], resting[2])),
    ]  # placement order kept across the modification

    # the resting buy placed before all of them fills once the market comes to it
    price = ex.last_price(early.instrument_token)
    ex.modify("regular", early.order_id, {"price": str(price + 50)})
    sim.clock.advance(300)
    assert early.status == "COMPLETE" and agrees(ex)

    # a restart from the state file: the same unfinished orders, the same order
    sim.save(sync=True)
    again = simulator(tmp_path / "state.json")
    assert [o.order_id for o in again.exchange.live_orders()] == unfinished(ex)
    assert unfinished(again.exchange) == unfinished(ex) and agrees(again.exchange)

    # the close cancels what rests; an AMO placed then is admitted at the next open, alone
    ex = again.exchange
    again.clock.run_until(again.clock.session.close + timedelta(minutes=5))
    assert ex.live_orders() == [] and agrees(ex)
    amo = ex.place("amo", order("RELIANCE", price="1", product="CNC"))
    assert [o.order_id for o in ex.live_orders()] == [amo.order_id]
    again.clock.advance(60)  # the next session opens
    assert [o.order_id for o in ex.live_orders()] == [amo.order_id]
    assert ex.orders[amo.order_id].status == "OPEN" and agrees(ex)
