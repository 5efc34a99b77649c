"""Order admission: the checks an order passes before anything is sent to Kite."""

from __future__ import annotations

from dalal_broker.session import KiteSession
from dalal_shared.messages import OrderRejected, PlaceOrder


def admit(command: PlaceOrder, session: KiteSession | None) -> OrderRejected | None:
    """The reason `command` cannot be sent now, or None when it may go to Kite."""
    if session is None:
        return OrderRejected(
            client_order_id=command.client_order_id,
            reason="no_session",
            message="no valid Kite session: log in (`dalal login`) before placing orders",
        )
    if command.order_type in ("LIMIT", "SL") and command.price is None:
        return OrderRejected(
            client_order_id=command.client_order_id,
            reason="input",
            message=f"{command.order_type} orders need a price",
        )
    if command.order_type in ("SL", "SL-M") and command.trigger_price is None:
        return OrderRejected(
            client_order_id=command.client_order_id,
            reason="input",
            message=f"{command.order_type} orders need a trigger_price",
        )
    return None
