"""Bus handlers of the broker: `orders.commands` -> the order desk -> `orders.events`."""

from __future__ import annotations

from dalal_broker.desk import OrderDesk
from dalal_broker.protections import ProtectionDesk
from dalal_shared.bus import DeadLetter, DeadLetterHook, Handler
from dalal_shared.dispatch import dispatcher
from dalal_shared.errors import PermanentError
from dalal_shared.logging import get_logger
from dalal_shared.messages import (
    CancelOrder,
    CancelProtection,
    Envelope,
    ModifyOrder,
    PlaceOrder,
    ProtectPosition,
)

log = get_logger(__name__)


def order_commands(desk: OrderDesk, protections: ProtectionDesk | None = None) -> Handler:
    """PlaceOrder, ModifyOrder and CancelOrder; each idempotent on client_order_id.

    A refused modify or cancel (unknown or closed order, a guard, Kite's refusal) is logged and
    acknowledged: retrying cannot help. Temporary errors propagate, so the bus redelivers."""

    async def on_place(command: PlaceOrder, envelope: Envelope) -> None:
        await desk.after_http(command.client_order_id)  # a POST /orders copy: placed there
        await desk.place(command, corr=envelope.corr)

    async def on_cancel(command: CancelOrder, _envelope: Envelope) -> None:
        try:
            await desk.cancel(command.client_order_id)
        except PermanentError as exc:
            log.warning(
                "order.cancel_refused",
                client_order_id=command.client_order_id,
                error=exc.code,
                message=exc.message,
            )

    async def on_modify(command: ModifyOrder, _envelope: Envelope) -> None:
        try:
            await desk.modify(command)
        except PermanentError as exc:
            log.warning(
                "order.modify_refused",
                client_order_id=command.client_order_id,
                error=exc.code,
                message=exc.message,
            )

    async def on_protect(command: ProtectPosition, _envelope: Envelope) -> None:
        if protections is not None:
            await protections.protect(command)

    async def on_unprotect(command: CancelProtection, _envelope: Envelope) -> None:
        if protections is not None:
            await protections.cancel(command)

    return dispatcher(
        {
            PlaceOrder: on_place,
            CancelOrder: on_cancel,
            ModifyOrder: on_modify,
            ProtectPosition: on_protect,
            CancelProtection: on_unprotect,
        }
    )


def dead_letters(desk: OrderDesk) -> DeadLetterHook:
    """The consumer's dead-letter hook: a dead-lettered order command is never silent (a
    PlaceOrder not yet journaled becomes a REJECTED row and an OrderRejected `dead_lettered`).
    It runs before the entry is acknowledged; if it raises, the bus runs it again."""

    async def on_dead_letter(dead: DeadLetter) -> None:
        envelope = dead.envelope
        await desk.dead_lettered(
            envelope.message if envelope is not None else None,
            envelope.corr if envelope is not None else None,
            dead.error,
        )

    return on_dead_letter
