"""Orders placed outside Dalal (by hand in Kite's app or web), as the journal records them.

The trade-book sweep finds their trades (no journal row has their Kite order id, and their tag
is no Dalal client order id). They are journaled as `external` rows so their fills reach the
ledger like any other; their client order id is derived from Kite's order id, so the same
order maps to the same row however often it is seen. Plain domain code.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from dalal_shared.messages import PlaceOrder

PREFIX = "x"  # Dalal's own client order ids are 26-character ULIDs or caller-chosen ids
_PLAIN = re.compile(r"^[A-Za-z0-9]{1,19}$")


def external_id(broker_order_id: str) -> str:
    """A stable client order id (at most 20 characters) for an order Kite numbered this way."""
    if _PLAIN.match(broker_order_id):
        return PREFIX + broker_order_id
    return PREFIX + hashlib.sha256(broker_order_id.encode()).hexdigest()[:19]


def _price(value: Any) -> Decimal | None:
    if value in (None, "", 0, 0.0, "0"):
        return None
    price = Decimal(str(value))
    return price if price > 0 else None


def external_order(order: dict[str, Any]) -> PlaceOrder | None:
    """The terms of a Kite order dict as a PlaceOrder, or None when they cannot be recorded
    (an exchange, product or symbol Dalal does not model)."""
    order_type = str(order.get("order_type") or "MARKET")
    price = _price(order.get("price"))
    trigger = _price(order.get("trigger_price"))
    try:
        return PlaceOrder(
            client_order_id=external_id(str(order["order_id"])),
            exchange=order.get("exchange") or "NSE",
            symbol=str(order.get("tradingsymbol") or ""),
            side=str(order.get("transaction_type") or ""),
            quantity=int(order.get("quantity") or 0),
            order_type=order_type,
            product=str(order.get("product") or ""),
            price=price if order_type in ("LIMIT", "SL") else None,
            trigger_price=trigger if order_type in ("SL", "SL-M") else None,
            validity="IOC" if order.get("validity") == "IOC" else "DAY",
            variety="amo" if order.get("variety") == "amo" else "regular",
            strategy="external",
        )
    except (ValidationError, KeyError, ValueError, ArithmeticError):
        return None
