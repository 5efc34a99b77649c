"""Bus handlers of the broker: `orders.commands` -> the order desk -> `orders.events`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from dalal_broker.desk import OrderDesk
from dalal_broker.protections import ProtectionDesk
from dalal_shared.bus import DeadLetter, DeadLetterHook
from dalal_shared.dbthread import Checkpoints
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
    """`orders.commands`: PlaceOrder, ModifyOrder and CancelOrder, each idempotent on
    client_order_id; ProtectPosition and CancelProtection.

    A refused modify or cancel (unknown or closed order, a guard, Kite's refusal) is logged and
    acknowledged: retrying cannot help. Temporary errors propagate, so the bus redelivers.

    `batch`: at a minute's close the engine publishes its orders together, and placing them one
    after another kept the last waiting for every Kite round trip before it. The `PlaceOrder`s
    at the head of a read are placed side by side (`OrderDesk.place_many`): each passes the
    guards in stream order (the desk's lock; a live buy's capital cap counts the read's buys
    before it), all their rows are journaled in one transaction, and then their Kite calls
    overlap. The first other command ends the run: it and everything after it go one by one,
    in stream order, after those placements (a protection's cancel before an exit order stays
    before it). A placement that fails, or a read whose transaction fails, goes one by one
    again (the journal makes a second try safe)."""

    def __init__(
        self,
        desk: OrderDesk,
        protections: ProtectionDesk | None = None,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        self.desk, self.protections = desk, protections
        # the journal's SQLite log checkpointed once a read's commands are done (the journal
        # is opened with `DEFERRED_CHECKPOINT_PAGES`: no placement's commit stops for it)
        self.checkpoints = checkpoints
        self._one = dispatcher(
            {
                PlaceOrder: self._on_place,
                CancelOrder: self._on_cancel,
                ModifyOrder: self._on_modify,
                ProtectPosition: self._on_protect,
                CancelProtection: self._on_unprotect,
            }
        )

    async def __call__(self, envelope: Envelope) -> None:
        try:
            await self._one(envelope)
        finally:
            self._checkpoint_soon()

    def _checkpoint_soon(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.soon()

    async def batch(self, envelopes: Sequence[Envelope]) -> set[str]:
        try:
            return await self._batch(envelopes)
        finally:
            self._checkpoint_soon()

    async def _batch(self, envelopes: Sequence[Envelope]) -> set[str]:
        head: list[Envelope] = []
        for envelope in envelopes:
            if not isinstance(envelope.message, PlaceOrder):
                break
            head.append(envelope)
        if not head:
            return set()
        desk = self.desk
        commands = [cast(PlaceOrder, e.message) for e in head]
        # copies of POST /orders placements under way here wait for them, then read their own
        # row; the others go straight to their guards and their journal insert, which returns
        # the row of an order journaled already (a copy: nothing is sent twice)
        over_http = {
            c.client_order_id for c in commands if desk.placing_over_http(c.client_order_id)
        }

        # the kill switch read once for the read's orders (one instant for all of them, a few
        # milliseconds before the last one's turn): read per order under the desk's lock, each
        # order waited for the Redis round trips of the orders before it
        kill_switch = await desk.kill_switch.state()

        desk_at = [i for i, c in enumerate(commands) if c.client_order_id not in over_http]
        http_at = [i for i, c in enumerate(commands) if c.client_order_id in over_http]

        async def by_desk() -> Sequence[object]:
            if not desk_at:
                return []
            chosen = [(commands[i], head[i].corr) for i in desk_at]
            return await desk.place_many(chosen, kill_switch=kill_switch)

        placed, *after_http = await asyncio.gather(
            by_desk(),
            *(self._place_after_http(commands[i], head[i].corr) for i in http_at),
            return_exceptions=True,
        )
        if isinstance(placed, BaseException):  # the journal's transaction failed: all of them
            placed = [placed] * len(desk_at)
        outcomes = dict(zip(desk_at, cast(Sequence[object], placed), strict=True)) | dict(
            zip(http_at, after_http, strict=True)
        )
        done = set()
        for i, envelope in enumerate(head):
            outcome = outcomes[i]
            if isinstance(outcome, BaseException):
                log.warning(
                    "order.batch_place_failed",
                    client_order_id=cast(PlaceOrder, envelope.message).client_order_id,
                    error=repr(outcome)[:300],
                )
            else:
                done.add(envelope.id)
        return done

    async def _on_place(self, command: PlaceOrder, envelope: Envelope) -> None:
        await self._place_after_http(command, envelope.corr)

    async def _place_after_http(self, command: PlaceOrder, corr: str) -> None:
        await self.desk.after_http(command.client_order_id)  # a POST /orders copy: placed there
        await self.desk.place(command, corr=corr)

    async def _on_cancel(self, command: CancelOrder, _envelope: Envelope) -> None:
        try:
            await self.desk.cancel(command.client_order_id)
        except PermanentError as exc:
            log.warning(
                "order.cancel_refused",
                client_order_id=command.client_order_id,
                error=exc.code,
                message=exc.message,
            )

    async def _on_modify(self, command: ModifyOrder, _envelope: Envelope) -> None:
        try:
            await self.desk.modify(command)
        except PermanentError as exc:
            log.warning(
                "order.modify_refused",
                client_order_id=command.client_order_id,
                error=exc.code,
                message=exc.message,
            )

    async def _on_protect(self, command: ProtectPosition, _envelope: Envelope) -> None:
        if self.protections is not None:
            await self.protections.protect(command)

    async def _on_unprotect(self, command: CancelProtection, _envelope: Envelope) -> None:
        if self.protections is not None:
            await self.protections.cancel(command)


def order_commands(
    desk: OrderDesk,
    protections: ProtectionDesk | None = None,
    checkpoints: Checkpoints | None = None,
) -> OrderCommands:
    return OrderCommands(desk, protections, checkpoints)


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
