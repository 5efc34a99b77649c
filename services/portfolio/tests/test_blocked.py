"""Funds blocked by open BUY orders: the domain, the service (restart-safe), and the bus."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from dalal_portfolio.app import build_app
from dalal_portfolio.blocked import BlockedFunds, Hold, order_value
from dalal_portfolio.config import PortfolioSettings
from dalal_portfolio.ledger import Fill
from dalal_portfolio.service import PortfolioService
from dalal_portfolio.store import LedgerStore
from dalal_shared.messages import (
    CancelOrder,
    Envelope,
    Message,
    ModifyOrder,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
    PlaceOrder,
    Tick,
)
from dalal_shared.streams import MARKET_TICKS, ORDERS_COMMANDS, ORDERS_EVENTS
from dalal_shared.testing import bearer, wait_until

NOW = datetime(2025, 3, 5, 10, 0, tzinfo=UTC)


# ------------------------------------------------------------------ domain


def test_order_value_limit_price_else_last_tick_else_unknown() -> None:
    assert order_value("LIMIT", D("101.5"), D("99")) == D("101.5")
    assert order_value("SL", D("101.5"), None) == D("101.5")
    assert order_value("MARKET", None, D("99")) == D("99")
    assert order_value("SL-M", None, D("99")) == D("99")
    assert order_value("MARKET", None, None) is None


def test_holds_shrink_on_partial_fills_and_release_on_the_end() -> None:
    book = BlockedFunds()
    assert book.place(Hold("o1", "INFY", "BUY", 10, D("100")))
    assert book.place(Hold("o1", "INFY", "BUY", 99, D("1"))) is None  # same client_order_id
    book.place(Hold("o2", "TCS", "SELL", 5, D("3000")))  # sells block nothing
    assert book.total() == D("1000")
    book.filled("o1", 4)
    assert book.total() == D("600")
    book.reported("o1", 3, terminal=False)  # an older report does not undo the fill
    assert book.total() == D("600")
    book.reported("o1", 7, terminal=False)
    assert book.total() == D("300")
    assert book.reported("o1", 7, terminal=False) is None  # no change, nothing to store
    book.reported("o1", 7, terminal=True)
    assert book.total() == 0 and book.open_holds() == [book.get("o2")]


def test_an_end_before_the_command_blocks_nothing() -> None:
    book = BlockedFunds()
    assert book.reported("o9", 0, terminal=True)  # OrderRejected raced ahead of PlaceOrder
    late = book.place(Hold("o9", "INFY", "BUY", 10, D("100")))
    assert late is not None and not late.open
    assert book.total() == 0
    assert book.place(Hold("o9", "INFY", "BUY", 10, D("100"))) is None


def test_a_modification_re_prices_an_open_hold_only() -> None:
    book = BlockedFunds()
    book.place(Hold("o1", "INFY", "BUY", 10, D("100")))
    book.filled("o1", 4)
    assert book.modified("o1", quantity=None, unit_price=D("90")) is not None
    assert book.total() == D("540")  # 6 left at the new price
    book.modified("o1", quantity=20, unit_price=None)
    assert book.total() == D("1440")  # 16 left
    assert book.modified("o1", quantity=20, unit_price=D("90")) is None  # nothing changed
    book.reported("o1", 4, terminal=True)
    assert book.modified("o1", quantity=50, unit_price=D("1")) is None  # closed: no effect
    assert book.total() == 0
    assert book.modified("unknown", quantity=5, unit_price=D("1")) is None


def test_a_market_order_without_a_tick_is_unknown_not_zero() -> None:
    book = BlockedFunds()
    book.place(Hold("m1", "SBIN", "BUY", 10, None))
    assert book.total() == 0 and book.unknown() == 1
    book.reported("m1", 0, terminal=True)
    assert book.unknown() == 0


# ------------------------------------------------------------------ service and store


def place(coid: str, **kw: object) -> PlaceOrder:
    fields: dict[str, object] = {
        "client_order_id": coid, "symbol": "INFY", "side": "BUY", "quantity": 10,
        "order_type": "LIMIT", "price": D("1500"), "product": "CNC",
    }  # fmt: skip
    return PlaceOrder(**{**fields, **kw})


def fill(coid: str, trade_id: str, qty: int, price: str = "1500") -> Fill:
    return Fill(trade_id, coid, f"b-{coid}", "NSE", "INFY", "BUY", "CNC", qty, D(price), NOW)


def open_service(url: str) -> PortfolioService:
    service = PortfolioService(
        LedgerStore.open(url), initial_capital=D("100000"), clock=lambda: NOW
    )
    service.load()
    return service


def test_available_capital_is_cash_minus_blocked_and_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    service = open_service(url)
    assert service.order_placed(place("L1"))  # 10 x 1500 = 15000
    assert not service.order_placed(place("L1"))  # redelivered command
    service.mark("INFY", D("1490"), NOW)
    service.order_placed(place("M1", order_type="MARKET", price=None, quantity=2))  # 2 x 1490
    service.order_placed(place("M2", symbol="TCS", order_type="MARKET", price=None))  # no tick
    v = service.valuation()
    assert v.blocked_funds == D("17980")
    assert v.available_capital == v.cash - D("17980") == D("82020")
    assert service.blocked_orders()["blocked_unknown_orders"] == 1

    service.apply_fill(fill("L1", "T1", 4))  # partial fill: 6 x 1500 still blocked
    service.apply_fill(fill("L1", "T1", 4))  # duplicate delivery counts once
    v = service.valuation()
    assert v.blocked_funds == D("9000") + D("2980")
    assert v.available_capital == D("100000") - D("6000") - v.charges - v.blocked_funds

    service.order_event(OrderCancelled(client_order_id="M1", filled_quantity=0))
    assert service.valuation().blocked_funds == D("9000")
    service.store.close()

    again = open_service(url)  # restart: holds and fills come back from the database
    assert again.valuation().blocked_funds == D("9000")
    assert again.blocked_orders()["blocked_unknown_orders"] == 1
    again.order_event(
        OrderUpdated(client_order_id="L1", broker_order_id="b-L1", status="COMPLETE",
                     filled_quantity=10)
    )  # fmt: skip
    again.order_event(OrderRejected(client_order_id="M2", reason="margin"))
    assert again.valuation().blocked_funds == 0
    assert again.blocked_orders() == {"blocked_unknown_orders": 0, "open_orders": []}
    again.store.close()


def test_modifications_re_price_the_hold_and_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    service = open_service(url)
    service.order_placed(place("L1"))  # 10 x 1500
    service.mark("INFY", D("1490"), NOW)
    assert service.order_modified(ModifyOrder(client_order_id="L1", price=D("1450")))
    assert service.valuation().blocked_funds == D("14500")
    # to MARKET: the last tick prices it
    service.order_modified(ModifyOrder(client_order_id="L1", order_type="MARKET"))
    assert service.valuation().blocked_funds == D("14900")
    # the broker's OrderUpdated reporting new terms wins
    service.order_event(
        OrderUpdated(client_order_id="L1", broker_order_id="b-L1", status="OPEN",
                     quantity=12, price=D("1400"))
    )  # fmt: skip
    assert service.valuation().blocked_funds == D("16800")
    assert not service.order_modified(ModifyOrder(client_order_id="nope", price=D("1")))
    service.store.close()
    again = open_service(url)
    assert again.valuation().blocked_funds == D("16800")
    again.store.close()


def test_a_fill_before_its_command_is_not_blocked_again(tmp_path: Path) -> None:
    service = open_service(f"sqlite:///{tmp_path}/ledger.sqlite3")
    service.apply_fill(fill("E1", "T9", 10))  # orders.events overtook orders.commands
    service.order_placed(place("E1"))
    assert service.valuation().blocked_funds == 0
    service.store.close()


# ------------------------------------------------------------------ through the bus


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = PortfolioSettings(
        redis_url=redis_url,
        api_key="portfolio-test-key-0123456789",
        database_url=f"sqlite:///{tmp_path}/ledger.sqlite3",
        initial_capital_rupees=D("100000"),
        bus_block_ms=50,
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as c:
        yield c


def publish(r: redis.Redis, stream: str, *messages: Message) -> None:
    for m in messages:
        r.xadd(stream, Envelope.wrap(m, source="test").to_fields())


def test_blocked_funds_through_the_bus(client: TestClient, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)

    def blocked() -> D:
        return D(client.get("/portfolio").json()["blocked_funds"])

    try:
        publish(r, MARKET_TICKS, Tick(instrument_token=1, symbol="SBIN", last_price=D("800"),
                                      exchange_ts=NOW))  # fmt: skip
        wait_until(lambda: client.app.state.portfolio.marks().get("SBIN"), message="tick")
        publish(
            r, ORDERS_COMMANDS,
            place("B1"),  # 15000
            place("B1"),  # a repeated command
            place("B2", symbol="SBIN", order_type="MARKET", price=None, quantity=5),  # 4000
            place("S1", side="SELL"),
            ModifyOrder(client_order_id="B1", price=D("1400")),  # re-priced: 14000
            CancelOrder(client_order_id="B2"),  # held until the broker says it is cancelled
        )  # fmt: skip
        wait_until(lambda: blocked() == D("18000"), message="orders blocked")
        summary = client.get("/portfolio").json()
        assert D(summary["available_capital"]) == D("82000")
        assert {o["client_order_id"] for o in summary["open_orders"]} == {"B1", "B2", "S1"}

        publish(
            r, ORDERS_EVENTS,
            OrderAccepted(client_order_id="B1", broker_order_id="b-B1"),
            OrderFilled(client_order_id="B1", broker_order_id="b-B1", trade_id="T1",
                        symbol="INFY", side="BUY", product="CNC", quantity=4,
                        price=D("1500"), filled_at=NOW),
            OrderCancelled(client_order_id="B2", broker_order_id="b-B2"),
        )  # fmt: skip
        wait_until(lambda: blocked() == D("8400"), message="partial fill and cancel released")
        publish(
            r, ORDERS_EVENTS,
            OrderUpdated(client_order_id="B1", broker_order_id="b-B1", status="COMPLETE",
                         filled_quantity=10),
        )  # fmt: skip
        wait_until(lambda: blocked() == 0, message="complete releases the rest")
        summary = client.get("/portfolio").json()
        assert D(summary["available_capital"]) == D(summary["cash"])
        assert r.xpending(ORDERS_COMMANDS, "portfolio")["pending"] == 0
    finally:
        r.close()
