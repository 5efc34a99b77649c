"""The trade-book sweep at the desk: a real journal (SQLite) and a real Redis for the events; the
Kite adapter is a small in-memory trade book (this is the desk's logic, kitesim runs in
test_fills_with_kitesim.py)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from dalal_broker.adapter import BrokerOrder, BrokerTrade
from dalal_broker.config import BrokerSettings
from dalal_broker.desk import OrderDesk
from dalal_broker.journal import Journal
from dalal_broker.killswitch import KillSwitch
from dalal_shared import db
from dalal_shared.bus import Publisher
from dalal_shared.messages import Envelope, OrderFilled, OrderUpdated, PlaceOrder
from dalal_shared.streams import ORDERS_EVENTS


class TradeBook:
    """Kite's order book and day trade book, as the adapter answers them."""

    def __init__(self) -> None:
        self.order_book: list[dict[str, Any]] = []
        self.trade_book: list[dict[str, Any]] = []

    async def trades(self) -> list[BrokerTrade]:
        return [BrokerTrade.from_kite(t) for t in self.trade_book]

    async def orders(self) -> list[BrokerOrder]:
        return [BrokerOrder.from_kite(o) for o in self.order_book]


class Session:
    valid = True

    async def expire(self, reason: str) -> None:
        self.valid = False


def order(order_id: str, tag: str | None, qty: int, status: str = "COMPLETE") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "tag": tag,
        "status": status,
        "exchange": "NSE",
        "tradingsymbol": "TCS",
        "transaction_type": "BUY",
        "quantity": qty,
        "filled_quantity": qty if status == "COMPLETE" else 0,
        "pending_quantity": 0,
        "average_price": 3500,
        "order_type": "MARKET",
        "product": "CNC",
        "price": 0,
        "validity": "DAY",
        "variety": "regular",
    }


def trade(trade_id: str, order_id: str, qty: int) -> dict[str, Any]:
    return {
        "trade_id": trade_id,
        "order_id": order_id,
        "quantity": qty,
        "average_price": 3500,
        "fill_timestamp": "2024-01-02 10:00:00",
    }


async def fills(client: aioredis.Redis) -> list[OrderFilled]:
    out = []
    for _id, fields in await client.xrange(ORDERS_EVENTS):
        message = Envelope.from_fields(fields).message
        if isinstance(message, OrderFilled):
            out.append(message)
    return out


async def test_the_sweep_adds_missing_trades_once_and_leaves_pending_sends_to_recover(
    tmp_path: Path, aredis: aioredis.Redis
) -> None:
    journal = Journal(db.make_engine(f"sqlite:///{tmp_path / 'journal.sqlite3'}"))
    journal.migrate()
    book = TradeBook()
    desk = OrderDesk(
        settings=BrokerSettings(),
        journal=journal,
        gateway=book,  # type: ignore[arg-type]
        session=Session(),  # type: ignore[arg-type]
        kill_switch=KillSwitch(aredis),
        publisher=Publisher(aredis, source="broker"),
    )
    desk.leader = True
    placed = PlaceOrder(client_order_id="d-1", symbol="TCS", side="BUY", quantity=3)
    journal.insert(placed, corr="d-1", status="OPEN")
    journal.update("d-1", broker_order_id="K1")
    pending = PlaceOrder(client_order_id="d-2", symbol="TCS", side="BUY", quantity=1)
    journal.insert(pending, corr="d-2", status="PENDING", send_attempts=1)
    given_up = PlaceOrder(client_order_id="d-3", symbol="TCS", side="BUY", quantity=1)
    journal.insert(given_up, corr="d-3", status="REJECTED", reason="kite_unavailable")
    book.order_book = [
        order("K1", "d-1", 3),
        order("K2", "d-2", 1),
        order("K3", None, 2),
        order("K4", "d-3", 1),
    ]
    book.trade_book = [
        trade("T1", "K1", 1),
        trade("T2", "K1", 2),  # both lost: no postback, no ticker message, no poll
        trade("T3", "K2", 1),  # the send's outcome is unknown to the journal: recover() owns it
        trade("T4", "K3", 2),  # placed by hand in Kite
        trade("T5", "K4", 1),  # at Kite under the tag of an order the journal gave up on
    ]

    assert await desk.sweep_trades() == 4
    got = await fills(aredis)
    assert sorted((f.client_order_id, f.trade_id, f.quantity) for f in got) == [
        ("d-1", "T1", 1),
        ("d-1", "T2", 2),
        ("xK3", "T4", 2),
        ("xK4", "T5", 1),
    ]
    row = journal.get("d-1")
    assert row is not None and (row.status, row.filled_quantity) == ("COMPLETE", 3)
    assert journal.get("d-2").status == "PENDING"  # type: ignore[union-attr]
    external = journal.get("xK3")
    assert external is not None
    assert (external.reason, external.status, external.command.quantity) == (
        "external",
        "COMPLETE",
        2,
    )
    updates = [
        Envelope.from_fields(f).message
        for _i, f in await aredis.xrange(ORDERS_EVENTS)
        if Envelope.from_fields(f).type == "OrderUpdated"
    ]
    assert sorted(
        (u.client_order_id, u.status) for u in updates if isinstance(u, OrderUpdated)
    ) == [
        ("d-1", "COMPLETE"),
        ("xK3", "COMPLETE"),
        ("xK4", "COMPLETE"),
    ]

    # a second sweep finds nothing new
    assert await desk.sweep_trades() == 0
    assert len(await fills(aredis)) == 4
    assert journal.traded_quantity("d-1") == 3
    assert sum(int(t["quantity"]) for t in journal.trades_of("xK3")) == 2  # type: ignore[call-overload]
    assert Decimal(str(journal.trades_of("xK3")[0]["price"])) == Decimal("3500")
