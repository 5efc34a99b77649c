"""Orders placed outside Dalal (by hand in Kite's app or web), as the journal records them.

The trade-book sweep finds their trades (no journal row has their Kite order id, and their tag
is no Dalal client order id). They are journaled as `external` rows so their fills reach the
ledger like any other; their client order id is derived from Kite's order id, so the same
order maps to the same row however often it is seen. Plain domain code.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import ValidationError

from dalal_broker.adapter import BrokerOrder
from dalal_shared.messages import PlaceOrder

PREFIX = "x"  # Dalal's own client order ids are 26-character ULIDs or caller-chosen ids
_PLAIN = re.compile(r"^[A-Za-z0-9]{1,19}$")


def external_id(broker_order_id: str) -> str:
    """A stable client order id (at most 20 characters) for an order Kite numbered this way."""
    if _PLAIN.match(broker_order_id):
        return PREFIX + broker_order_id
    return PREFIX + hashlib.sha256(broker_order_id.encode()).hexdigest()[:19]


def external_order(order: BrokerOrder) -> PlaceOrder | None:
    """The terms of an order placed outside Dalal as a PlaceOrder, or None when they cannot be
    recorded (an exchange, product or symbol Dalal does not model)."""
    try:
        return PlaceOrder(
            client_order_id=external_id(order.order_id),
            exchange=order.exchange or "NSE",
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            order_type=order.order_type,
            product=order.product,
            price=order.price if order.order_type in ("LIMIT", "SL") else None,
            trigger_price=order.trigger_price if order.order_type in ("SL", "SL-M") else None,
            validity="IOC" if order.validity == "IOC" else "DAY",
            variety="amo" if order.variety == "amo" else "regular",
            strategy="external",
        )
    except (ValidationError, ValueError, ArithmeticError):
        return None
