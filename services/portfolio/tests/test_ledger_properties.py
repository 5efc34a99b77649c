"""The ledger is a function of the set of fills (hypothesis): any delivery order, with
redeliveries, gives the same positions, lots, round trips, realised P&L and charges, fill by
fill, as one replay in time order. Fills: two symbols, CNC and MIS, partial fills of one
order, several IST days, same-day round trips (the charges' day-netting case)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from dalal_portfolio.ledger import Book, Fill
from dalal_shared.timeutil import IST

OPEN = datetime(2025, 3, 3, 9, 15, tzinfo=IST)


@st.composite
def histories(draw: st.DrawFn) -> list[Fill]:
    fills: list[Fill] = []
    held: dict[tuple[str, str], int] = {}
    n = draw(st.integers(1, 30))
    for i in range(n):
        symbol = draw(st.sampled_from(["INFY", "TCS"]))
        product = draw(st.sampled_from(["CNC", "CNC", "MIS"]))
        have = held.get((symbol, product), 0)
        side = "SELL" if have > 0 and draw(st.booleans()) else "BUY"
        qty = draw(st.integers(1, have)) if side == "SELL" else draw(st.integers(1, 40))
        held[(symbol, product)] = have + (qty if side == "BUY" else -qty)
        day = draw(st.integers(0, 2))
        at = OPEN + timedelta(days=day, minutes=5 * i)
        price = D(draw(st.integers(18_000, 22_000)) * 5) / 100  # the 0.05 grid
        # an order fills in one or two trades
        parts = [qty] if qty == 1 or draw(st.booleans()) else [qty // 2, qty - qty // 2]
        for k, part in enumerate(parts):
            fills.append(
                Fill(
                    trade_id=f"T{i:03d}{k}",
                    client_order_id=f"c{i}",
                    broker_order_id=f"o{i}",
                    exchange="NSE",
                    symbol=symbol,
                    side=side,  # type: ignore[arg-type]
                    product=product,
                    quantity=part,
                    price=price,
                    filled_at=at + timedelta(seconds=k),
                )
            )
    return fills


def summary(book: Book) -> object:
    return (
        [
            (p.key, p.quantity, p.lots, p.charges_breakdown, p.fill_charges)
            for p in book.positions()
        ],
        book.round_trips(),
        book.realised_gross(),
        book.realised_net(),
        book.charges(),
        book.cash(),
    )


@settings(max_examples=150, deadline=None)
@given(fills=histories(), data=st.data())
def test_the_ledger_is_a_function_of_the_set_of_fills(fills: list[Fill], data: st.DataObject):
    clean = Book(D("1000000"))
    clean.load(fills)
    delivered = data.draw(st.permutations(fills + data.draw(st.lists(st.sampled_from(fills)))))
    book = Book(D("1000000"))
    for fill in delivered:
        applied = book.apply(fill)
        assert applied.fill == fill
    assert summary(book) == summary(clean)
    # what the book paid is what the positions' per-fill charges add up to
    assert book.charges() == sum(
        (c for p in book.positions() for c in p.fill_charges.values()), D(0)
    )
