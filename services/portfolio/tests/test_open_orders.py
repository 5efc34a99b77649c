"""Orders in flight as the portfolio sees them."""

from __future__ import annotations

from dalal_portfolio.open_orders import OpenOrders
from dalal_shared.messages import OrderAccepted, OrderRejected, OrderUpdated


def test_accepted_orders_are_open_until_terminal() -> None:
    book = OpenOrders()
    book.apply(OrderAccepted(client_order_id="p1", broker_order_id="b"))
    book.apply(
        OrderUpdated(
            client_order_id="p1",
            broker_order_id="b",
            status="OPEN",
            filled_quantity=1,
            pending_quantity=1,
        )
    )
    assert book.is_open("p1") and book.count() == 1
    book.apply(OrderUpdated(client_order_id="p1", broker_order_id="b", status="COMPLETE"))
    assert not book.is_open("p1") and book.count() == 0


def test_a_late_accept_after_a_rejection_does_not_reopen() -> None:
    book = OpenOrders()
    book.apply(OrderRejected(client_order_id="p2", reason="no_session"))
    book.apply(OrderAccepted(client_order_id="p2", broker_order_id="b"))
    assert not book.is_open("p2")
