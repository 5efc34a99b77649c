"""Kite's margin and charges calculators through the official client: order margins, basket
margins (full and compact) and the virtual contract note, in Kite's shapes, with the same margin
rules as kitesim's RMS and the charges of `dalal_shared.charges`."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from dalal_shared.charges import order_charges

from .conftest import Kitesim

KITE_MARGIN_KEYS = {
    "type", "tradingsymbol", "exchange", "span", "exposure", "option_premium", "additional",
    "bo", "cash", "var", "pnl", "leverage", "charges", "total",
}  # fmt: skip
KITE_CHARGES_KEYS = {
    "transaction_tax", "transaction_tax_type", "exchange_turnover_charge",
    "sebi_turnover_charge", "brokerage", "stamp_duty", "gst", "total",
}  # fmt: skip
DAY = date(2024, 1, 2)  # the simulated day


def order(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "exchange": "NSE",
        "tradingsymbol": "INFY",
        "transaction_type": "BUY",
        "variety": "regular",
        "product": "CNC",
        "order_type": "LIMIT",
        "quantity": 10,
        "price": 1500.0,
    }
    base.update(kw)
    return base


@pytest.fixture(scope="module")
def kite(shared_kitesim: Kitesim) -> KiteConnect:
    shared_kitesim.advance(seconds=60)
    return shared_kitesim.client()


def test_order_margins_follow_the_rms_rules(kite: KiteConnect) -> None:
    cnc, mis, sell = kite.order_margins(
        [order(), order(product="MIS"), order(transaction_type="SELL")]
    )
    assert set(cnc) == KITE_MARGIN_KEYS and set(cnc["charges"]) == KITE_CHARGES_KEYS
    assert cnc["total"] == 15000  # a CNC buy blocks its value
    assert mis["total"] == 3000 and mis["leverage"] == 5  # MIS: a fifth (5x)
    assert sell["total"] == 0  # a CNC sell is covered by the holdings
    expected = order_charges("BUY", "CNC", 10, Decimal(1500), DAY)
    assert Decimal(str(cnc["charges"]["total"])) == expected.total.quantize(Decimal("0.0001"))
    assert cnc["charges"]["transaction_tax"] == float(expected.stt)


def test_basket_margins_full_and_compact(kite: KiteConnect) -> None:
    basket = kite.basket_order_margins([order(), order(product="MIS")])
    assert basket["initial"]["total"] == basket["final"]["total"] == 18000
    assert [o["total"] for o in basket["orders"]] == [15000, 3000]
    compact = kite.basket_order_margins([order()], mode="compact")
    assert compact["orders"] == [{"tradingsymbol": "INFY", "exchange": "NSE", "total": 15000}]


def test_virtual_contract_note(kite: KiteConnect) -> None:
    (note,) = kite.get_virtual_contract_note(
        [order(order_id="1", average_price=1500.0, product="MIS", transaction_type="SELL")]
    )
    assert set(note["charges"]) == KITE_CHARGES_KEYS
    expected = order_charges("SELL", "MIS", 10, Decimal(1500), DAY)
    assert Decimal(str(note["charges"]["total"])) == expected.total.quantize(Decimal("0.0001"))
    assert (note["quantity"], note["price"]) == (10, 1500.0)


@pytest.mark.parametrize(
    ("orders", "match"),
    [
        ([order(tradingsymbol="NOSUCH")], "instrument"),
        ([order(quantity=0)], "quantity"),
        ([order(product="NRML")], "product"),
        ([], "list"),
    ],
)
def test_bad_input_is_an_input_exception(kite: KiteConnect, orders: list, match: str) -> None:
    with pytest.raises(kex.InputException, match=match):
        kite.order_margins(orders)
