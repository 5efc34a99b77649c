"""The engine's own record of the orders it asked for and what became of them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from dalal_shared.errors import ConflictError, NotFoundError
from dalal_shared.messages import (
    Message,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
    PlaceOrder,
)
from dalal_shared.timeutil import utcnow


@dataclass(frozen=True)
class OrderIntent:
    command: PlaceOrder
    status: str = "SUBMITTED"
    reason: str | None = None
    filled_quantity: int = 0
    updated_at: datetime = field(default_factory=utcnow)


class IntentBook:
    """Intents keyed by client_order_id; order events move them along."""

    def __init__(self) -> None:
        self._intents: dict[str, OrderIntent] = {}
        self._trades: dict[str, set[str]] = {}

    def submit(self, command: PlaceOrder) -> tuple[OrderIntent, bool]:
        """Record a new intent; (existing, False) when the id was used before with the same
        order, ConflictError when it was used for a different order."""
        existing = self._intents.get(command.client_order_id)
        if existing is not None:
            if existing.command != command:
                raise ConflictError(
                    f"client_order_id {command.client_order_id} was already used for another order"
                )
            return existing, False
        intent = OrderIntent(command)
        self._intents[command.client_order_id] = intent
        return intent, True

    def withdraw(self, client_order_id: str) -> None:
        """Forget an intent whose command could not be sent (the bus was down), so a retry of
        the same order is new again and goes out."""
        self._intents.pop(client_order_id, None)

    def get(self, client_order_id: str) -> OrderIntent:
        try:
            return self._intents[client_order_id]
        except KeyError:
            raise NotFoundError(f"no order with client_order_id {client_order_id}") from None

    def apply(self, event: Message) -> OrderIntent | None:
        """Move an intent along; events for orders this engine did not send are ignored."""
        coid = getattr(event, "client_order_id", None)
        intent = self._intents.get(coid) if coid else None
        if intent is None or coid is None:
            return None
        now = utcnow()
        if isinstance(event, OrderRejected):
            intent = replace(intent, status="REJECTED", reason=event.reason, updated_at=now)
        elif isinstance(event, OrderAccepted):
            if intent.status == "SUBMITTED":
                intent = replace(intent, status="OPEN", updated_at=now)
        elif isinstance(event, OrderUpdated):
            intent = replace(
                intent, status=event.status, filled_quantity=event.filled_quantity, updated_at=now
            )
        elif isinstance(event, OrderFilled):
            seen = self._trades.setdefault(coid, set())
            if event.trade_id not in seen:
                seen.add(event.trade_id)
                filled = intent.filled_quantity + event.quantity
                status = "COMPLETE" if filled >= intent.command.quantity else "OPEN"
                intent = replace(intent, status=status, filled_quantity=filled, updated_at=now)
        elif isinstance(event, OrderCancelled):
            intent = replace(
                intent, status="CANCELLED", reason=event.reason or None, updated_at=now
            )
        self._intents[coid] = intent
        return intent
