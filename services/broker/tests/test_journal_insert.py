"""The journal's insert hands back the row it wrote without reading it again: that row must be
the one a read gives (on SQLite and PostgreSQL), for a new intent and for a refused one; a
copy gets the row journaled first."""

from __future__ import annotations

from decimal import Decimal

from dalal_broker.journal import Journal, NewOrder
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


def test_several_intents_are_journaled_in_one_transaction_as_one_by_one(database_url: str) -> None:
    """`insert_many` (a bus read's orders): each new row is the row a read gives, a refusal's
    event is in the outbox, an order journaled before comes back as it was (not created), and
    an id twice in one call is the first one's copy."""
    journal = Journal(db.make_engine(database_url))
    journal.migrate()

    def buy(coid: str, qty: int) -> PlaceOrder:
        return PlaceOrder(
            client_order_id=coid,
            symbol="INFY",
            side="BUY",
            quantity=qty,
            order_type="LIMIT",
            price=Decimal("1499.05"),
            product="CNC",
        )

    old, _ = journal.insert(buy("many-old", 1), corr="c-old", status="OPEN", send_attempts=1)
    refusal = OrderRejected(client_order_id="many-no", reason="capital_cap", message="over")
    out = journal.insert_many(
        [
            NewOrder(buy("many-1", 2), "c-1", "PENDING", send_attempts=1),
            NewOrder(buy("many-old", 9), "c-9", "PENDING", send_attempts=1),
            NewOrder(
                buy("many-no", 3),
                "c-no",
                "REJECTED",
                reason="capital_cap",
                message="over",
                events=[(ORDERS_EVENTS, refusal)],
            ),
            NewOrder(buy("many-1", 5), "c-again", "PENDING", send_attempts=1),
        ]
    )

    assert [created for _row, created in out] == [True, False, True, False]
    assert out[0][0] == journal.get("many-1") and out[0][0].command.quantity == 2
    assert out[1][0] == old  # as it was journaled
    assert out[2][0] == journal.get("many-no") and out[2][0].reason == "capital_cap"
    assert out[3][0] == out[0][0]  # the copy in the same call: the first one's row
    assert journal_outbox(journal) == [("c-no", refusal)]
    journal.engine.dispose()


def journal_outbox(journal: Journal) -> list[tuple[str, object]]:
    """The outbox's rows in order: (the envelope's corr, its message)."""
    import json

    import sqlalchemy as sa

    from dalal_broker.journal import outbox_t
    from dalal_shared.messages import Envelope

    with journal.engine.connect() as conn:
        rows = conn.execute(sa.select(outbox_t).order_by(outbox_t.c.seq)).all()
    fields = [{k.encode(): str(v).encode() for k, v in json.loads(r.fields).items()} for r in rows]
    return [(e.corr, e.message) for e in map(Envelope.from_fields, fields)]
