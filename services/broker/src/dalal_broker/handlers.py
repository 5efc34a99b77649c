"""Bus handlers of the broker: `orders.commands` -> the order desk -> `orders.events`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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


class OrderCommands:
    """The broker's `orders.commands` handler: one command at a time (`__call__`), and the
    PlaceOrders that open a bus read placed side by side (`batch`): at a minute's close the
    engine sends one order per traded symbol at once, and placing them one after another
    made the last wait for every Kite round trip before it. Only the leading run of
    PlaceOrders with distinct ids is taken (a cancel or a protection before or between them
    keeps its place: everything from it on goes one by one, in order); each order keeps its
    own guards, journal row and limiter token (`OrderDesk.place` is safe side by side: the
    HTTP route runs beside the bus already). An order that raised is left to the one by one
    path, which retries it as usual."""

    def __init__(self, desk: OrderDesk, one: Handler) -> None:
        self.desk, self._one = desk, one

    async def __call__(self, envelope: Envelope) -> None:
        await self._one(envelope)

    async def batch(self, envelopes: Sequence[Envelope]) -> set[str]:
        run: list[Envelope] = []
        ids: set[str] = set()
        for envelope in envelopes:
            command = envelope.message
            if not isinstance(command, PlaceOrder) or command.client_order_id in ids:
                break
            ids.add(command.client_order_id)
            run.append(envelope)
        if len(run) < 2:
            return set()
        results = await asyncio.gather(*(self._one(e) for e in run), return_exceptions=True)
        done: set[str] = set()
        for envelope, result in zip(run, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                log.warning(
                    "order.batch_place_failed",
                    client_order_id=getattr(envelope.message, "client_order_id", None),
                    error=repr(result)[:300],
                )
                continue  # the bus hands it to __call__ (the usual retries and DLQ rule)
            done.add(envelope.id)
        return done


def order_commands(desk: OrderDesk, protections: ProtectionDesk | None = None) -> OrderCommands:
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

    one = dispatcher(
        {
            PlaceOrder: on_place,
            CancelOrder: on_cancel,
            ModifyOrder: on_modify,
            ProtectPosition: on_protect,
            CancelProtection: on_unprotect,
        }
    )
    return OrderCommands(desk, one)


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
