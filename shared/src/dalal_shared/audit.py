"""The trading audit trail in the logs: one INFO line per order, fill, protection, position and
risk event as a service announces it, with the fields an operator greps for
(`client_order_id`, `symbol`, `side`, `quantity`, `price`, `reason`, P&L), plus `purpose`
(stop-loss, target 1, ...) for an engine order. `grep '"audit": true'` over the JSON logs is
the day's trading, in order, across services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dalal_shared.messages import (
    CancelOrder,
    CancelProtection,
    Envelope,
    KillSwitchEngaged,
    KillSwitchReleased,
    Message,
    ModifyOrder,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
    PlaceOrder,
    PositionClosed,
    PositionOpened,
    PositionReduced,
    ProtectionPlaced,
    ProtectionRemoved,
    ProtectPosition,
    ReconcileCompleted,
    RiskDecided,
)
from dalal_shared.orderlegs import order_reason

EVENTS: dict[type[Message], str] = {
    PlaceOrder: "order.requested",
    ModifyOrder: "order.modify_requested",
    CancelOrder: "order.cancel_requested",
    OrderAccepted: "order.accepted",
    OrderUpdated: "order.updated",
    OrderFilled: "order.filled",
    OrderRejected: "order.rejected",
    OrderCancelled: "order.cancelled",
    ProtectPosition: "protection.requested",
    CancelProtection: "protection.cancel_requested",
    ProtectionPlaced: "protection.placed",
    ProtectionRemoved: "protection.removed",
    PositionOpened: "position.opened",
    PositionReduced: "position.reduced",
    PositionClosed: "position.closed",
    RiskDecided: "risk.decided",
    ReconcileCompleted: "reconcile.completed",
    KillSwitchEngaged: "kill_switch.engaged",
    KillSwitchReleased: "kill_switch.released",
}


def audit_line(message: Message) -> tuple[str, dict[str, Any]] | None:
    """The event name and fields of `message`'s audit line (None: not part of the trail)."""
    name = EVENTS.get(type(message))
    if name is None:
        return None
    fields = {k: v for k, v in message.model_dump(mode="json").items() if v not in (None, "")}
    coid = fields.get("client_order_id")
    if isinstance(coid, str) and (purpose := order_reason(coid)):
        fields["purpose"] = purpose
    return name, fields


def audit(logger: Any, message: Message, **context: Any) -> None:
    """Log `message`'s audit line at INFO (nothing for a message outside the trail)."""
    line = audit_line(message)
    if line is not None:
        name, fields = line
        logger.info(name, audit=True, **fields, **context)


def audit_envelopes(logger: Any) -> Callable[[list[Envelope]], None]:
    """An outbox relay's `on_published` hook: each event's audit line (with its `corr`) once
    Redis has it."""

    def hook(envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            audit(logger, envelope.message, corr=envelope.corr)

    return hook
