"""Kite's order and trade dicts become typed results at the edge (REST, postback, ticker):
numbers parsed once, a zero price read as none, our tag found in `tag` or `tags`, Kite's
naive timestamps read as IST."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from dalal_broker.adapter import BrokerOrder, BrokerTrade
from dalal_shared.timeutil import IST

POSTBACK = {  # the shape of Kite's postback body (numbers may come as strings)
    "order_id": "240102000000123",
    "status": "complete",
    "tag": None,
    "tags": ["01HZX0000000000000000000AB"],
    "exchange": "NSE",
    "tradingsymbol": "INFY",
    "transaction_type": "BUY",
    "product": "CNC",
    "order_type": "LIMIT",
    "variety": "regular",
    "validity": "DAY",
    "quantity": "10",
    "filled_quantity": 10,
    "pending_quantity": "0",
    "price": "1500.5",
    "trigger_price": 0,
    "average_price": "1500.25",
    "status_message": None,
}


def test_an_order_dict_is_parsed_once_at_the_edge() -> None:
    order = BrokerOrder.from_kite(POSTBACK)
    assert (order.status, order.quantity, order.filled_quantity) == ("COMPLETE", 10, 10)
    assert (order.price, order.trigger_price) == (Decimal("1500.5"), None)
    assert order.average_price == Decimal("1500.25") and order.status_message == ""
    assert order.tag == "01HZX0000000000000000000AB" and order.carries(order.tag)
    assert not order.carries("someone-else")
    unfilled = BrokerOrder.from_kite({**POSTBACK, "average_price": 0, "filled_quantity": None})
    assert unfilled.average_price is None and unfilled.filled_quantity == 0


def test_a_trade_dict_keeps_exact_money_and_an_aware_time() -> None:
    trade = BrokerTrade.from_kite(
        {
            "trade_id": 5001,
            "order_id": 240102000000123,
            "quantity": "4",
            "average_price": 1500.05,
            "fill_timestamp": "2024-01-02 10:00:00",
        }
    )
    assert (trade.trade_id, trade.order_id, trade.quantity) == ("5001", "240102000000123", 4)
    assert trade.price == Decimal("1500.05")
    assert trade.filled_at == datetime(2024, 1, 2, 10, 0, tzinfo=IST)
