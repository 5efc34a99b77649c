"""A position closed by an engine order says why (stop-loss, target, flatten, the exchange's
GTT...) in its round trip's exits and in `PositionClosed`, not just the order's id."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from dalal_portfolio.ledger import Book
from dalal_portfolio.service import events_for, fill_from_message
from dalal_shared.messages import OrderFilled, PositionClosed


def filled(coid: str, side: str, trade: str, price: str, minute: int) -> OrderFilled:
    return OrderFilled(
        client_order_id=coid,
        broker_order_id=f"b-{trade}",
        trade_id=trade,
        symbol="INFY",
        side=side,
        product="CNC",
        quantity=10,
        price=Decimal(price),
        filled_at=datetime(2025, 1, 6, 4, minute, tzinfo=UTC),
    )


def test_a_stop_exit_names_itself_in_the_ledger_and_the_event() -> None:
    book = Book(Decimal("1000000"))
    book.apply(fill_from_message(filled("E-2501060915-ab12cd3", "BUY", "t1", "1500", 0)))
    stop = fill_from_message(filled("S-2501061000-ab12cd3", "SELL", "t2", "1480", 45))
    applied = book.apply(stop)
    assert applied.effect is not None
    [closed] = [e for e in events_for(stop, applied.position, applied.effect)]
    assert isinstance(closed, PositionClosed)
    assert closed.reason == "stop-loss (S-2501061000-ab12cd3)"
    [trip] = book.round_trips()
    assert trip.exits[-1].reason == "stop-loss (S-2501061000-ab12cd3)"


def test_an_order_sent_by_hand_keeps_its_own_id_as_the_reason() -> None:
    book = Book(Decimal("1000000"))
    book.apply(fill_from_message(filled("hand-buy-1", "BUY", "t1", "1500", 0)))
    sell = fill_from_message(filled("hand-sell-1", "SELL", "t2", "1510", 5))
    applied = book.apply(sell)
    assert applied.effect is not None
    [closed] = events_for(sell, applied.position, applied.effect)
    assert isinstance(closed, PositionClosed) and closed.reason == "hand-sell-1"
