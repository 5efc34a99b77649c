"""A recorded session of fills (partial fills, scale-ins, partial exits, an intraday short)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal as D

from dalal_portfolio.ledger import Book, Fill
from dalal_shared.timeutil import IST

DAY1 = datetime(2025, 3, 3, 9, 20, tzinfo=IST)
DAY2 = datetime(2025, 3, 4, 10, 0, tzinfo=IST)


def fill(
    trade_id: str,
    order: str,
    symbol: str,
    side: str,
    quantity: int,
    price: str,
    at: datetime,
    product: str = "CNC",
    reason: str | None = None,
) -> Fill:
    return Fill(
        trade_id=trade_id,
        client_order_id=f"c{order}",
        broker_order_id=f"b{order}",
        exchange="NSE",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        product=product,
        quantity=quantity,
        price=D(price),
        filled_at=at,
        reason=reason,
    )


def m(minutes: int, base: datetime = DAY1) -> datetime:
    return base + timedelta(minutes=minutes)


# fmt: off
SESSION: list[Fill] = [
    # INFY delivery: one buy order filled in two trades, then a second buy (scale in)
    fill("T001", "1", "INFY", "BUY", 6, "1500", m(0)),
    fill("T002", "1", "INFY", "BUY", 4, "1501", m(1)),
    fill("T003", "2", "INFY", "BUY", 10, "1510", m(30)),
    # two partial exits on day 2 (targets), then the rest (stop)
    fill("T004", "3", "INFY", "SELL", 5, "1560", m(0, DAY2), reason="target_1"),
    fill("T005", "4", "INFY", "SELL", 5, "1580", m(60, DAY2), reason="target_2"),
    fill("T006", "5", "INFY", "SELL", 4, "1530", m(120, DAY2)),
    fill("T007", "5", "INFY", "SELL", 6, "1531", m(121, DAY2), reason="stop"),
    # TCS intraday short, covered in two trades of one order
    fill("T101", "6", "TCS", "SELL", 20, "3500", m(10), product="MIS"),
    fill("T102", "7", "TCS", "BUY", 12, "3480", m(200), product="MIS"),
    fill("T103", "7", "TCS", "BUY", 8, "3479.5", m(201), product="MIS"),
    # RELIANCE: still open at the end
    fill("T201", "8", "RELIANCE", "BUY", 3, "2900.05", m(15)),
]
# fmt: on


def build(fills: list[Fill], capital: str = "1000000") -> Book:
    book = Book(D(capital))
    for f in fills:
        book.apply(f)
    return book


def digest(book: Book) -> dict:
    """Everything a user reads off the ledger, as plain data."""
    return {
        "cash": book.cash(),
        "positions": [
            (
                p.key,
                p.quantity,
                p.average_price,
                p.realised_gross,
                p.realised_net,
                p.charges,
                [(lot.quantity, lot.price, lot.entry_charges) for lot in p.lots],
                [(e.trade_id, e.quantity, e.reason, e.realised_net) for e in p.exits],
                dict(p.fill_charges),
            )
            for p in book.positions()
        ],
        "round_trips": [
            (
                t.symbol,
                t.direction,
                t.quantity,
                t.entry_price,
                t.exit_price,
                t.realised_gross,
                t.charges,
                t.realised_net,
                [(e.trade_id, e.reason) for e in t.exits],
            )
            for t in book.round_trips()
        ],
    }
