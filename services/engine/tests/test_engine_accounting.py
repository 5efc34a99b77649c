"""The engine books its strategies' fills with the shared accounting kernel (FIFO lots, the
portfolio ledger's and the backtester's rule), keeps the lots across a restart, and reads a
state saved before lots were kept as one lot at its average price."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from engine_fixtures import CONFIG, KNOWN, infy_bars

from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore, state_t
from dalal_engine.strategyconfig import load_text
from dalal_shared import accounting
from dalal_shared.messages import OrderFilled, PlaceOrder
from dalal_shared.timeutil import IST

T0 = datetime(2021, 1, 1, 10, tzinfo=IST)


def open_engine(url: str) -> LiveEngine:
    live = LiveEngine(
        load_text(CONFIG),
        EngineStore.open(url),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    live.start()
    return live


def trade(order: PlaceOrder, n: int, quantity: int, price: str) -> OrderFilled:
    return OrderFilled(
        client_order_id=order.client_order_id,
        broker_order_id=f"b-{order.client_order_id}",
        trade_id=f"t{n}",
        symbol=order.symbol,
        side=order.side,
        product="CNC",
        quantity=quantity,
        price=Decimal(price),
        filled_at=T0 + timedelta(minutes=n),
    )


def first_order(live: LiveEngine, side: str) -> PlaceOrder:
    for bar in infy_bars():
        for order in live.on_bar(bar):
            if order.side == side:
                return order
    raise AssertionError(f"no {side} order in the history")


def ledger_view(fills: list[OrderFilled]) -> accounting.Position:
    return accounting.replay(
        ("NSE", "INFY", "CNC"),
        [
            accounting.Fill(
                trade_id=f.trade_id,
                client_order_id=f.client_order_id,
                broker_order_id=f.broker_order_id,
                exchange="NSE",
                symbol="INFY",
                side=f.side,
                product="CNC",
                quantity=f.quantity,
                price=f.price,
                filled_at=f.filled_at,
            )
            for f in fills
        ],
    )


def test_the_engines_position_is_the_kernels_across_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/engine.sqlite3"
    live = open_engine(url)
    entry = first_order(live, "BUY")
    q = entry.quantity
    assert q >= 2
    # the entry fills in two trades at two prices
    fills = [trade(entry, 1, q - 1, "1000.05"), trade(entry, 2, 1, "1010.00")]
    for f in fills:
        live.on_order_event(f)
    state = live.states[("ref", "INFY")]
    kernel = ledger_view(fills)
    assert (state.quantity, state.average_price) == (kernel.quantity, kernel.average_price)
    assert [(lot.quantity, lot.price) for lot in state.lots] == [
        (q - 1, Decimal("1000.05")),
        (1, Decimal("1010.00")),
    ]

    # restarted on the same database: the lots are still there
    again = open_engine(url)
    restored = again.states[("ref", "INFY")]
    assert [(lot.quantity, lot.price, lot.trade_id) for lot in restored.lots] == [
        (lot.quantity, lot.price, lot.trade_id) for lot in state.lots
    ]
    # the restarted engine's exit fills all but one share: the oldest lot closes first (FIFO)
    exit_order = first_order(again, "SELL")
    assert exit_order.quantity == q
    fills.append(trade(exit_order, 3, q - 1, "1020.00"))
    again.on_order_event(fills[-1])
    after = again.states[("ref", "INFY")]
    kernel = ledger_view(fills)
    assert (after.quantity, after.average_price) == (1, Decimal("1010.0000"))
    assert (after.quantity, after.average_price) == (kernel.quantity, kernel.average_price)


def test_a_state_saved_before_lots_were_kept_is_one_lot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/engine.sqlite3"
    live = open_engine(url)
    entry = first_order(live, "BUY")
    live.on_order_event(trade(entry, 1, entry.quantity, "1000.05"))
    store = live.store
    with store.engine.begin() as c:  # what migration 0006 leaves of an older row
        c.execute(sa.update(state_t).values(lots=None))
    again = open_engine(url)
    st = again.states[("ref", "INFY")]
    assert st.quantity == entry.quantity
    assert [(lot.quantity, lot.price) for lot in st.lots] == [(entry.quantity, Decimal("1000.05"))]
    # and the exit goes on from it
    exit_order = first_order(again, "SELL")
    again.on_order_event(trade(exit_order, 2, 1, "1001.00"))
    st = again.states[("ref", "INFY")]
    assert st.quantity == entry.quantity - 1
    assert st.average_price == Decimal("1000.0500")
