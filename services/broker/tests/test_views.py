"""The broker's read-only views for the portfolio's reconciliation: Kite's positions and
holdings passed through, and the journal's trades with their orders' terms."""

from __future__ import annotations

from decimal import Decimal

from dalal_shared.testing import wait_until

from .conftest import Sim


def test_positions_holdings_and_trades_after_a_fill(broker, kitesim: Sim) -> None:
    order = {
        "client_order_id": "view-1",
        "symbol": "SBIN",
        "side": "BUY",
        "quantity": 3,
        "order_type": "LIMIT",
        "price": "9000",  # far above any price: crosses at the next tick
        "product": "MIS",
    }
    assert broker.post("/orders", order).status_code == 200
    kitesim.control("/clock/advance", {"seconds": 120})
    wait_until(lambda: broker.order("view-1")["status"] == "COMPLETE", message="order complete")

    positions = broker.get("/positions")
    assert positions.status_code == 200, positions.text
    body = positions.json()
    assert set(body) >= {"net", "day"}
    [sbin] = [p for p in body["net"] if p["tradingsymbol"] == "SBIN" and p["product"] == "MIS"]
    assert sbin["quantity"] >= 3 and sbin["average_price"] > 0

    holdings = broker.get("/holdings")
    assert holdings.status_code == 200 and isinstance(holdings.json(), list)

    trades = broker.get("/trades").json()["trades"]
    mine = [t for t in trades if t["client_order_id"] == "view-1"]
    assert sum(t["quantity"] for t in mine) == 3
    assert {(t["symbol"], t["side"], t["product"], t["exchange"]) for t in mine} == {
        ("SBIN", "BUY", "MIS", "NSE")
    }
    assert all(Decimal(t["price"]) > 0 and t["trade_id"] and t["filled_at"] for t in mine)
    assert broker.get("/trades", params={"limit": 0}).status_code == 422
