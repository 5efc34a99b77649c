"""Orders placed by hand in Kite, as the journal records them (domain code)."""

from __future__ import annotations

from decimal import Decimal

from dalal_broker.adapter import BrokerOrder
from dalal_broker.external import external_id, external_order

KITE_ORDER = {
    "order_id": "240102000000017",
    "exchange": "NSE",
    "tradingsymbol": "INFY",
    "transaction_type": "SELL",
    "quantity": 5,
    "order_type": "LIMIT",
    "product": "MIS",
    "price": 1510.5,
    "trigger_price": 0,
    "validity": "DAY",
    "variety": "regular",
    "tag": None,
}


def test_an_external_order_keeps_kites_terms_under_a_stable_id() -> None:
    command = external_order(BrokerOrder.from_kite(KITE_ORDER))
    assert command is not None
    assert command.client_order_id == "x240102000000017" == external_id("240102000000017")
    assert (command.symbol, command.side, command.quantity, command.product) == (
        "INFY",
        "SELL",
        5,
        "MIS",
    )
    assert (command.order_type, command.price, command.trigger_price) == (
        "LIMIT",
        Decimal("1510.5"),
        None,
    )
    assert command.strategy == "external"


def test_a_long_or_odd_kite_order_id_still_fits_a_client_order_id() -> None:
    odd = external_id("2401-02/000000000000017")
    assert len(odd) == 20 and odd.startswith("x") and odd == external_id("2401-02/000000000000017")
    assert external_id("a" * 19) == "x" + "a" * 19
    assert len(external_id("a" * 20)) == 20 and external_id("a" * 20) != "x" + "a" * 19


def test_a_market_order_has_no_price_and_an_unmodelled_product_is_not_recorded() -> None:
    market = external_order(
        BrokerOrder.from_kite({**KITE_ORDER, "order_type": "MARKET", "price": 0})
    )
    assert market is not None and market.price is None
    assert external_order(BrokerOrder.from_kite({**KITE_ORDER, "product": "MTF"})) is None
    assert external_order(BrokerOrder.from_kite({**KITE_ORDER, "exchange": "NCO"})) is None
