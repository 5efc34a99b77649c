"""Kite's margin and charges calculators: `/margins/orders`, `/margins/basket` and the virtual
contract note `/charges/orders`, in Kite's response shapes.

Equity cash only, as kitesim trades it: a CNC buy blocks its value, a CNC sell nothing (the
holdings cover it), an MIS order `mis_margin_fraction` of its value (an MIS order that reduces a
position nothing), the same rules the exchange's RMS applies to a new order. A basket gets no
margin benefit (there is none for equity cash), so its final margin is the sum of its orders.
Charges are `dalal_shared.charges.order_charges` of each order alone on its scrip's day (what a
quote for one order can know) on the simulated day.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from dalal_kitesim.errors import InputException
from dalal_kitesim.exchange import Exchange
from dalal_kitesim.marketdata import Instrument
from dalal_shared.charges import ChargesBreakdown, order_charges
from dalal_shared.timeutil import IST

ZERO = Decimal(0)
MAX_ORDERS = 100


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.0001")))


def charges_kite(c: ChargesBreakdown) -> dict[str, Any]:
    """A charges breakdown as Kite's calculators show it."""
    return {
        "transaction_tax": _money(c.stt),
        "transaction_tax_type": "stt",
        "exchange_turnover_charge": _money(c.transaction),
        "sebi_turnover_charge": _money(c.sebi),
        "brokerage": _money(c.brokerage),
        "stamp_duty": _money(c.stamp),
        "gst": {"igst": _money(c.gst), "cgst": 0, "sgst": 0, "total": _money(c.gst)},
        "total": _money(c.total),
    }


def _orders(body: Any) -> list[Mapping[str, Any]]:
    if not isinstance(body, list) or not body:
        raise InputException("Send a JSON list of one or more orders.")
    if len(body) > MAX_ORDERS:
        raise InputException(f"At most {MAX_ORDERS} orders per request.")
    if not all(isinstance(o, dict) for o in body):
        raise InputException("Every order must be a JSON object.")
    return body


def _field(order: Mapping[str, Any], name: str, options: tuple[str, ...] | None = None) -> str:
    value = order.get(name)
    if not isinstance(value, str) or not value:
        raise InputException(f"Missing or empty field `{name}`.")
    if options is not None and value not in options:
        raise InputException(f"Invalid `{name}`: {value!r}; expected one of {list(options)}.")
    return value


def _number(order: Mapping[str, Any], name: str, *, required: bool = False) -> Decimal:
    raw = order.get(name)
    if raw in (None, ""):
        if required:
            raise InputException(f"Missing field `{name}`.")
        return ZERO
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise InputException(f"Invalid `{name}`: {raw!r} is not a number.") from None
    if not value.is_finite() or value < 0:
        raise InputException(f"Invalid `{name}`: {raw!r}.")
    return value


def _instrument(exchange: Exchange, order: Mapping[str, Any]) -> Instrument:
    key = f"{_field(order, 'exchange')}:{_field(order, 'tradingsymbol')}"
    inst = exchange.instruments.lookup(key)
    if inst is None:
        raise InputException(f"Invalid instrument {key}.")
    return inst


def _quantity(order: Mapping[str, Any]) -> int:
    quantity = _number(order, "quantity", required=True)
    if quantity <= 0 or quantity != quantity.to_integral_value():
        raise InputException("Invalid `quantity`: a whole number above 0.")
    return int(quantity)


def order_margin(exchange: Exchange, order: Mapping[str, Any]) -> dict[str, Any]:
    inst = _instrument(exchange, order)
    side = _field(order, "transaction_type", ("BUY", "SELL"))
    product = _field(order, "product", ("CNC", "MIS"))
    order_type = _field(order, "order_type", ("MARKET", "LIMIT", "SL", "SL-M"))
    quantity = _quantity(order)
    if order_type in ("LIMIT", "SL"):
        price = _number(order, "price", required=True)
    elif order_type == "SL-M":
        price = _number(order, "trigger_price", required=True)
    else:
        price = exchange.last_price(inst.instrument_token)
    value = price * quantity
    if product == "CNC":
        margin = value if side == "BUY" else ZERO
    else:
        position = exchange.positions.get((inst.instrument_token, "MIS"))
        held = position.quantity if position is not None else 0
        reduces = (held < 0) if side == "BUY" else (held > 0)
        fraction = exchange.config.mis_margin_fraction
        margin = ZERO if reduces and quantity <= abs(held) else value * fraction
    day = exchange.now.astimezone(IST).date()
    charges = ChargesBreakdown()
    if price > 0:
        charges = order_charges(side, product, quantity, price, day)
    return {
        "type": "equity",
        "tradingsymbol": inst.tradingsymbol,
        "exchange": inst.exchange,
        "span": 0,
        "exposure": 0,
        "option_premium": 0,
        "additional": 0,
        "bo": 0,
        "cash": 0,
        "var": _money(margin),
        "pnl": {"realised": 0, "unrealised": 0},
        "leverage": 1 if product == "CNC" else float(1 / exchange.config.mis_margin_fraction),
        "charges": charges_kite(charges),
        "total": _money(margin),
    }


def order_margins(exchange: Exchange, body: Any) -> list[dict[str, Any]]:
    return [order_margin(exchange, o) for o in _orders(body)]


def basket_margins(exchange: Exchange, body: Any, *, compact: bool) -> dict[str, Any]:
    orders = order_margins(exchange, body)
    total = sum((Decimal(str(o["total"])) for o in orders), start=ZERO)
    charges_total = sum((Decimal(str(o["charges"]["total"])) for o in orders), start=ZERO)

    def whole() -> dict[str, Any]:
        return {
            "type": "equity",
            "tradingsymbol": "",
            "exchange": "",
            "span": 0,
            "exposure": 0,
            "option_premium": 0,
            "additional": 0,
            "bo": 0,
            "cash": 0,
            "var": _money(total),
            "pnl": {"realised": 0, "unrealised": 0},
            "leverage": 0,
            "charges": {"total": _money(charges_total)},
            "total": _money(total),
        }

    if compact:
        orders = [
            {"tradingsymbol": o["tradingsymbol"], "exchange": o["exchange"], "total": o["total"]}
            for o in orders
        ]
    return {
        "initial": whole(),
        "final": whole(),
        "orders": orders,
        "charges": {"total": _money(charges_total)},
    }


def contract_note(exchange: Exchange, body: Any) -> list[dict[str, Any]]:
    """Charges of executed orders (`average_price` x `quantity` each)."""
    out = []
    day = exchange.now.astimezone(IST).date()
    for order in _orders(body):
        inst = _instrument(exchange, order)
        side = _field(order, "transaction_type", ("BUY", "SELL"))
        product = _field(order, "product", ("CNC", "MIS"))
        quantity = _quantity(order)
        price = _number(order, "average_price", required=True)
        if price <= 0:
            raise InputException("Invalid `average_price`: above 0.")
        out.append(
            {
                "transaction_type": side,
                "tradingsymbol": inst.tradingsymbol,
                "exchange": inst.exchange,
                "variety": order.get("variety") or "regular",
                "product": product,
                "order_type": order.get("order_type") or "MARKET",
                "quantity": quantity,
                "price": float(price),
                "charges": charges_kite(order_charges(side, product, quantity, price, day)),
            }
        )
    return out
