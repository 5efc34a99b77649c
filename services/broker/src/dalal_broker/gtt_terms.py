"""A protection's terms as Kite's GTT arguments, and a Kite GTT read back. Plain domain code.

A protection sells a CNC holding: a `single` GTT (the stop only) or a `two-leg` OCO (stop and
target). Kite's GTT orders are LIMIT orders, so the stop leg's limit sits below its trigger by
the market protection percentage (rounded down to the tick: a falling market still fills it);
the target leg sells at the target price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from dalal_shared.messages import PlaceOrder, ProtectPosition

TICK = Decimal("0.05")


def stop_limit(stop: Decimal, protection_pct: Decimal, tick: Decimal = TICK) -> Decimal:
    """The stop leg's limit price: `protection_pct` below the trigger, down to the tick."""
    raw = stop * (1 - protection_pct / 100)
    return max(tick, (raw / tick).to_integral_value(rounding=ROUND_FLOOR) * tick)


def gtt_request(
    command: ProtectPosition, last_price: Decimal, protection_pct: Decimal
) -> dict[str, Any]:
    """The keyword arguments of kiteconnect's `place_gtt` / `modify_gtt`."""
    leg = {
        "transaction_type": "SELL",
        "quantity": command.quantity,
        "order_type": "LIMIT",
        "product": command.product,
    }
    stop_leg = {**leg, "price": float(stop_limit(command.stop_price, protection_pct))}
    if command.target_price is None:
        kind, values, orders = "single", [float(command.stop_price)], [stop_leg]
    else:
        kind = "two-leg"
        values = [float(command.stop_price), float(command.target_price)]
        orders = [stop_leg, {**leg, "price": float(command.target_price)}]
    return {
        "trigger_type": kind,
        "tradingsymbol": command.symbol,
        "exchange": command.exchange,
        "trigger_values": values,
        "last_price": float(last_price),
        "orders": orders,
    }


def same_terms(a: ProtectPosition, b: ProtectPosition) -> bool:
    return (a.symbol, a.exchange, a.quantity, a.stop_price, a.target_price) == (
        b.symbol,
        b.exchange,
        b.quantity,
        b.stop_price,
        b.target_price,
    )


@dataclass(frozen=True)
class GttOutcome:
    """What became of a GTT: `active`, `triggered` (with the order it placed), `cancelled`,
    `expired` or `failed` (with why)."""

    status: str
    broker_order_id: str | None = None
    price: Decimal | None = None
    quantity: int | None = None
    message: str = ""


def read_gtt(data: dict[str, Any]) -> GttOutcome:
    status = str(data.get("status") or "")
    if status == "active":
        return GttOutcome("active")
    if status == "triggered":
        for order in data.get("orders") or []:
            result = order.get("result")
            if not result:
                continue
            outcome = result.get("order_result") or {}
            if outcome.get("status") == "success" and outcome.get("order_id"):
                return GttOutcome(
                    "triggered",
                    broker_order_id=str(outcome["order_id"]),
                    price=Decimal(str(result.get("price") or order.get("price"))),
                    quantity=int(result.get("quantity") or order.get("quantity")),
                )
            return GttOutcome("failed", message=str(outcome.get("rejection_reason") or status))
        return GttOutcome("failed", message="triggered without an order result")
    if status in ("deleted", "cancelled", "disabled"):
        return GttOutcome("cancelled", message=f"the GTT is {status} at Kite")
    if status == "expired":
        return GttOutcome("expired", message="the GTT expired at Kite")
    return GttOutcome("failed", message=f"the GTT is {status or 'unknown'} at Kite")


def triggered_order(command: ProtectPosition, outcome: GttOutcome) -> PlaceOrder:
    """The order a triggered GTT placed, as the journal records it (under the protection's
    client order id)."""
    return PlaceOrder(
        client_order_id=command.client_order_id,
        exchange=command.exchange,
        symbol=command.symbol,
        side="SELL",
        quantity=outcome.quantity or command.quantity,
        order_type="LIMIT",
        product=command.product,
        price=outcome.price,
        strategy=command.strategy,
    )
