"""The journal's insert hands back the row it wrote without reading it again: that row must be
the one a read gives (on SQLite and PostgreSQL), for a new intent and for a refused one; a
copy gets the row journaled first."""

from __future__ import annotations

from decimal import Decimal

from dalal_broker.journal import Journal
from dalal_shared import db
from dalal_shared.messages import OrderRejected, PlaceOrder
from dalal_shared.streams import ORDERS_EVENTS


def test_an_inserted_row_is_the_row_read_back(database_url: str) -> None:
    journal = Journal(db.make_engine(database_url))
    journal.migrate()
    limit = PlaceOrder(
        client_order_id="ins-limit",
        symbol="INFY",
        side="BUY",
        quantity=3,
        order_type="LIMIT",
        price=Decimal("1499.05"),
        product="CNC",
        strategy="sma",
    )
    row, created = journal.insert(limit, corr="tick-1", status="PENDING", send_attempts=1)
    assert created and row == journal.get("ins-limit")

    market = PlaceOrder(client_order_id="ins-refused", symbol="TCS", side="SELL", quantity=1)
    refusal = OrderRejected(client_order_id="ins-refused", reason="max_order_value", message="x")
    row, created = journal.insert(
        market,
        corr="tick-2",
        status="REJECTED",
        reason="max_order_value",
        message="worth too much",
        events=[(ORDERS_EVENTS, refusal)],
    )
    assert created and row == journal.get("ins-refused")
    assert row.created_at.utcoffset() is not None

    again = limit.model_copy(update={"quantity": 4})  # the same id again: the first row back
    first, created = journal.insert(again, corr="tick-3", status="PENDING", send_attempts=1)
    assert not created and first == journal.get("ins-limit") and first.command == limit
    journal.engine.dispose()
