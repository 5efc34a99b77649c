"""The engine's record of its order intents, moved along by order events."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dalal_engine.intents import IntentBook
from dalal_shared.errors import ConflictError, NotFoundError
from dalal_shared.messages import (
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
)

ORDER = PlaceOrder(client_order_id="e1", symbol="INFY", side="BUY", quantity=10)


def fill(trade_id: str, qty: int) -> OrderFilled:
    return OrderFilled(
        client_order_id="e1",
        broker_order_id="b1",
        trade_id=trade_id,
        symbol="INFY",
        side="BUY",
        product="CNC",
        quantity=qty,
        price=Decimal("1500"),
        filled_at=datetime(2025, 1, 1, 4, 0, tzinfo=UTC),
    )


def test_submit_is_idempotent_and_refuses_a_reused_id() -> None:
    book = IntentBook()
    first, created = book.submit(ORDER)
    again, created_again = book.submit(ORDER)
    assert created and not created_again and first is again
    with pytest.raises(ConflictError):
        book.submit(ORDER.model_copy(update={"quantity": 11}))


def test_rejection_is_recorded_with_its_reason() -> None:
    book = IntentBook()
    book.submit(ORDER)
    book.apply(OrderRejected(client_order_id="e1", reason="no_session"))
    assert (book.get("e1").status, book.get("e1").reason) == ("REJECTED", "no_session")


def test_fills_count_once_per_trade_even_when_redelivered() -> None:
    book = IntentBook()
    book.submit(ORDER)
    book.apply(OrderAccepted(client_order_id="e1", broker_order_id="b1"))
    for event in (fill("t1", 4), fill("t1", 4), fill("t2", 6)):
        book.apply(event)
    intent = book.get("e1")
    assert (intent.status, intent.filled_quantity) == ("COMPLETE", 10)


def test_partial_fill_then_cancel() -> None:
    book = IntentBook()
    book.submit(ORDER)
    book.apply(fill("t1", 3))
    assert book.get("e1").status == "OPEN"
    book.apply(OrderCancelled(client_order_id="e1", filled_quantity=3, reason="user"))
    assert (book.get("e1").status, book.get("e1").filled_quantity) == ("CANCELLED", 3)


def test_events_of_other_orders_are_ignored_and_unknown_ids_are_not_found() -> None:
    book = IntentBook()
    assert book.apply(OrderRejected(client_order_id="other", reason="x")) is None
    with pytest.raises(NotFoundError):
        book.get("other")
