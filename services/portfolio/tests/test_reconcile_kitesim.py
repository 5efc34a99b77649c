"""Reconciliation against a real kitesim through the official `kiteconnect` client: CNC bought
twice, sold and bought again; MIS bought, sold and bought again (then squared off by the
broker); checked during the day, after the close, at the next open (T1 holdings) and after a
second day. A clean book reconciles clean at every point; a lost fill is a break."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from dalal_kitesim.testing import Kitesim
from dalal_portfolio.ledger import Book, Fill
from dalal_portfolio.reconcile import Reconciliation, reconcile, view_from_kite
from dalal_shared.timeutil import IST

pytestmark = pytest.mark.slow


@pytest.fixture
def kitesim() -> Iterator[Kitesim]:
    sim = Kitesim().start()
    try:
        yield sim
    finally:
        sim.stop()


class Account:
    """The official client on kitesim, and a ledger built from every trade Kite reported."""

    def __init__(self, sim: Kitesim):
        self.sim = sim
        self.kite = sim.client()
        self.fills: dict[str, Fill] = {}

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.kite, name)(*args, **kwargs)
        except kex.TokenException:  # the daily token died overnight: log in again
            self.kite: KiteConnect = self.sim.client()
            return getattr(self.kite, name)(*args, **kwargs)

    def trade(self, symbol: str, side: str, quantity: int, product: str) -> None:
        order_id = self.call(
            "place_order",
            variety="regular", exchange="NSE", tradingsymbol=symbol, transaction_type=side,
            quantity=quantity, product=product, order_type="MARKET", market_protection=-1,
        )  # fmt: skip
        self.sim.advance(seconds=60)
        assert self.call("order_history", order_id)[-1]["status"] == "COMPLETE"
        self.record()

    def record(self) -> None:
        """Today's trade book into the ledger (the book resets at the next open)."""
        for t in self.call("trades"):
            self.fills.setdefault(
                str(t["trade_id"]),
                Fill(
                    trade_id=str(t["trade_id"]),
                    client_order_id=str(t["order_id"]),
                    broker_order_id=str(t["order_id"]),
                    exchange=t["exchange"],
                    symbol=t["tradingsymbol"],
                    side=t["transaction_type"],
                    product=t["product"],
                    quantity=int(t["quantity"]),
                    price=Decimal(str(t["average_price"])),
                    filled_at=t["fill_timestamp"].replace(tzinfo=IST),
                ),
            )

    def reconcile(self, *, drop: str | None = None) -> Reconciliation:
        book = Book(initial_capital=Decimal("1000000"))
        for trade_id, f in self.fills.items():
            if trade_id != drop:
                book.apply(f)
        trades = [
            {"trade_id": str(t["trade_id"]), "exchange": t["exchange"],
             "symbol": t["tradingsymbol"], "product": t["product"],
             "side": t["transaction_type"], "quantity": int(t["quantity"]),
             "price": Decimal(str(t["average_price"]))}
            for t in self.call("trades")
        ]  # fmt: skip
        view = view_from_kite(self.call("positions"), self.call("holdings"), trades)
        return reconcile(book.positions(), book.fills(), view)


def assert_clean(account: Account, when: str) -> None:
    result = account.reconcile()
    assert result.clean, f"{when}: {result.breaks}"


def test_a_clean_book_reconciles_clean_through_the_close_and_the_next_open(
    kitesim: Kitesim,
) -> None:
    account = Account(kitesim)
    kitesim.advance(seconds=60)
    account.trade("RELIANCE", "BUY", 10, "CNC")
    account.trade("RELIANCE", "BUY", 5, "CNC")  # bought twice in a day
    account.trade("INFY", "BUY", 4, "MIS")
    account.trade("INFY", "SELL", 4, "MIS")
    account.trade("INFY", "BUY", 6, "MIS")  # re-bought: FIFO average != Kite's day average
    assert_clean(account, "day 1, in the session")
    reliance = account.reconcile()
    assert reliance.positions_compared == 2 and reliance.trades_compared == 5

    kitesim.advance(until="2024-01-02T16:00:00+05:30")  # MIS squared off, the session closed
    account.record()
    positions = account.call("positions")["net"]
    assert {(p["tradingsymbol"], p["product"], p["quantity"]) for p in positions} == {
        ("RELIANCE", "CNC", 15),
        ("INFY", "MIS", 0),
    }
    assert_clean(account, "day 1, after the close")

    kitesim.advance(until="2024-01-03T09:16:00+05:30")  # the next open: T1 holdings
    holdings = account.call("holdings")
    assert [(h["tradingsymbol"], h["quantity"], h["t1_quantity"]) for h in holdings] == [
        ("RELIANCE", 0, 15)
    ]
    assert account.call("positions")["net"] == []
    assert_clean(account, "day 2, at the open")

    account.trade("RELIANCE", "SELL", 5, "CNC")  # out of the T1 holding
    account.trade("RELIANCE", "BUY", 3, "CNC")
    account.trade("RELIANCE", "BUY", 2, "CNC")
    assert_clean(account, "day 2, in the session")
    kitesim.advance(until="2024-01-03T16:00:00+05:30")
    assert_clean(account, "day 2, after the close")
    kitesim.advance(until="2024-01-04T09:16:00+05:30")
    assert_clean(account, "day 3, at the open")

    # the same account with one of day 2's fills lost from the ledger is not clean
    day2_buy = next(
        f.trade_id
        for f in account.fills.values()
        if f.filled_at.date().day == 3 and f.side == "BUY" and f.quantity == 3
    )
    broken = account.reconcile(drop=day2_buy)
    assert [(b.kind, b.symbol) for b in broken.breaks] == [("quantity_mismatch", "RELIANCE")]
