"""Protective stops at the exchange: a `ProtectPosition` becomes a Kite GTT that sells the
holding when the price reaches the stop (or the target), so it fires while Dalal is down.

* `protect`: journal PENDING, place the GTT (or modify the live one when the terms changed),
  journal ACTIVE with `ProtectionPlaced` in the same transaction (the journal's outbox). A
  PENDING row met again (a crash after Kite took the GTT) is matched against Kite's GTT list
  before anything is placed, so a redelivered command never leaves two GTTs behind.
* `cancel`: delete the GTT, CANCELLED with `ProtectionRemoved(cancelled)`.
* `check` (every `protection_check_seconds`, and by the trade-book sweep before it calls an
  unknown order external): a triggered GTT's order is journaled under the protection's client
  order id (reason `gtt`), so the desk tracks it like its own and its fills reach the ledger
  and the engine under that id; `ProtectionRemoved(triggered)`. Expired, deleted-by-hand and
  failed GTTs are reported the same way.

In paper mode the paper book holds the triggers (`paper.PaperBroker` answers the same GTT calls
in Kite's shapes and fires them on the ticks), so everything above runs unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from dalal_broker.gtt_terms import GttOutcome, gtt_request, read_gtt, same_terms, triggered_order
from dalal_broker.journal import Journal, ProtectionRow
from dalal_broker.kite import KiteRejected, KiteSessionError
from dalal_broker.prices import ReferencePrices
from dalal_shared.logging import get_logger
from dalal_shared.messages import (
    CancelProtection,
    Message,
    ProtectionPlaced,
    ProtectionRemoved,
    ProtectPosition,
)
from dalal_shared.streams import ORDERS_EVENTS

log = get_logger(__name__)

PROTECTIONS = Counter(
    "dalal_broker_protections_total",
    "Protective GTTs by what happened (placed, modified, triggered, cancelled, expired, failed)",
    ["outcome"],
)
ACTIVE = Gauge("dalal_broker_protections_active", "Protective GTTs live at the exchange")

LIVE = ("PENDING", "ACTIVE")
ENDED = {"cancelled": "CANCELLED", "expired": "EXPIRED", "failed": "FAILED"}


class GttVenue(Protocol):
    """Where the triggers live: Kite (`kite.KiteGateway`) or the paper book
    (`paper.PaperBroker`), with kiteconnect's GTT arguments and Kite's GTT dicts."""

    async def place_gtt(self, **request: Any) -> int: ...

    async def modify_gtt(self, trigger_id: int, **request: Any) -> int: ...

    async def delete_gtt(self, trigger_id: int) -> None: ...

    async def gtt(self, trigger_id: int) -> dict[str, Any]: ...

    async def gtts(self) -> list[dict[str, Any]]: ...


class ProtectionDesk:
    def __init__(
        self,
        *,
        journal: Journal,
        gateway: GttVenue | None,
        prices: ReferencePrices,
        protection_pct: Decimal,
        flush: Callable[[], Awaitable[object]],
        expire_session: Callable[[str], Awaitable[None]],
        write: Callable[..., Awaitable[Any]] | None = None,
    ):
        self.journal = journal
        # how a journal write runs: the order desk's journal thread in the service, so a
        # protection written as an order's row is written never meets SQLite's busy waits
        self._write = write or asyncio.to_thread
        self.gateway = gateway  # None: no venue (every protection fails)
        self.prices = prices
        self.protection_pct = protection_pct
        self.flush = flush
        self.expire_session = expire_session
        self._lock = asyncio.Lock()  # one change at a time: the check never races a protect

    async def _put(
        self,
        command: ProtectPosition,
        status: str,
        *,
        events: list[Message] | None = None,
        **kw: Any,
    ) -> None:
        await self._write(
            self.journal.put_protection,
            command,
            status,
            events=[(ORDERS_EVENTS, e) for e in events or []],
            **kw,
        )

    async def _fail(self, command: ProtectPosition, message: str, gtt_id: int | None) -> None:
        PROTECTIONS.labels("failed").inc()
        log.warning("protection.failed", client_order_id=command.client_order_id, message=message)
        removed = ProtectionRemoved(
            client_order_id=command.client_order_id,
            reason="failed",
            gtt_id=gtt_id,
            message=message[:400],
        )
        await self._put(command, "FAILED", gtt_id=gtt_id, message=message, events=[removed])

    # ------------------------------------------------------------------ commands
    async def protect(self, command: ProtectPosition) -> None:
        async with self._lock:
            await self._protect(command)
        await self.flush()

    async def _protect(self, command: ProtectPosition) -> None:
        coid = command.client_order_id
        row = await asyncio.to_thread(self.journal.protection, coid)
        if row is not None and row.status == "TRIGGERED":
            return  # its order is out: nothing left to protect under this id
        if row is not None and row.status == "ACTIVE" and same_terms(row.command, command):
            return  # a redelivery
        if self.gateway is None:
            await self._fail(command, "no venue holds GTTs here", None)
            return
        price = await self.prices.price(command.exchange, command.symbol)
        if price is None:
            await self._fail(command, f"no last price for {command.symbol}", None)
            return
        request = gtt_request(command, price, self.protection_pct)
        gtt_id = row.gtt_id if row is not None and row.status in LIVE else None
        try:
            if row is not None and row.status == "PENDING" and gtt_id is None:
                gtt_id = await self._adopt(row.command)  # Kite may have taken it before a crash
            if gtt_id is not None:
                gtt_id = await self.gateway.modify_gtt(gtt_id, **request)
                outcome = "modified"
            else:
                await self._put(command, "PENDING")
                gtt_id = await self.gateway.place_gtt(**request)
                outcome = "placed"
        except KiteSessionError as exc:
            await self.expire_session("TokenException from Kite")
            await self._fail(command, f"no Kite session: {exc}", gtt_id)
            return
        except KiteRejected as exc:
            await self._fail(command, f"Kite refused the GTT: {exc}", gtt_id)
            return
        # KiteUnavailable / RateLimitTimeout propagate: the bus delivers the command again
        placed = ProtectionPlaced(
            client_order_id=coid,
            gtt_id=gtt_id,
            stop_price=command.stop_price,
            target_price=command.target_price,
        )
        await self._put(command, "ACTIVE", gtt_id=gtt_id, events=[placed])
        PROTECTIONS.labels(outcome).inc()
        log.info(
            "protection.active",
            client_order_id=coid,
            gtt_id=gtt_id,
            symbol=command.symbol,
            quantity=command.quantity,
            stop=str(command.stop_price),
            target=str(command.target_price) if command.target_price else None,
            outcome=outcome,
        )

    async def _adopt(self, command: ProtectPosition) -> int | None:
        """The id of an active GTT at Kite with exactly these terms, if any."""
        assert self.gateway is not None
        for gtt in await self.gateway.gtts():
            cond = gtt.get("condition") or {}
            orders = gtt.get("orders") or []
            wanted = [float(command.stop_price)]
            if command.target_price is not None:
                wanted.append(float(command.target_price))
            if (
                gtt.get("status") == "active"
                and cond.get("tradingsymbol") == command.symbol
                and cond.get("exchange") == command.exchange
                and [float(v) for v in cond.get("trigger_values") or []] == wanted
                and orders
                and int(orders[0].get("quantity") or 0) == command.quantity
            ):
                return int(gtt["id"])
        return None

    async def cancel(self, command: CancelProtection) -> None:
        async with self._lock:
            row = await asyncio.to_thread(self.journal.protection, command.client_order_id)
            if row is None or row.status not in LIVE:
                return
            gtt_id = row.gtt_id
            if gtt_id is None and self.gateway is not None:
                gtt_id = await self._adopt(row.command)
            if gtt_id is not None and self.gateway is not None:
                try:
                    await self.gateway.delete_gtt(gtt_id)
                except KiteRejected as exc:  # already fired or gone: the check tells which
                    log.warning("protection.delete_refused", gtt_id=gtt_id, error=str(exc))
                    await self._check_one(row)
                    await self.flush()
                    return
            removed = ProtectionRemoved(
                client_order_id=row.client_order_id,
                reason="cancelled",
                gtt_id=gtt_id,
                message=command.reason or "",
            )
            await self._put(
                row.command, "CANCELLED", gtt_id=gtt_id, message=command.reason, events=[removed]
            )
            PROTECTIONS.labels("cancelled").inc()
        await self.flush()

    # ------------------------------------------------------------------ what Kite did
    async def check(self) -> int:
        """Read every live protection's GTT at Kite and act on what changed; how many did."""
        if self.gateway is None:
            return 0
        changed = 0
        async with self._lock:
            rows = await asyncio.to_thread(self.journal.protections, ["ACTIVE"])
            ACTIVE.set(len(rows))
            for row in rows:
                changed += await self._check_one(row)
        if changed:
            await self.flush()
        return changed

    async def _check_one(self, row: ProtectionRow) -> int:
        assert self.gateway is not None
        if row.gtt_id is None:
            return 0
        try:
            outcome = read_gtt(await self.gateway.gtt(row.gtt_id))
        except KiteSessionError:
            await self.expire_session("TokenException from Kite")
            return 0
        except KiteRejected as exc:  # Kite no longer knows it
            outcome = GttOutcome("cancelled", message=f"Kite does not know GTT {row.gtt_id}: {exc}")
        if outcome.status == "active":
            return 0
        if outcome.status == "triggered":
            await self._triggered(row, outcome)
            return 1
        if outcome.status == "failed":
            await self._fail(row.command, outcome.message, row.gtt_id)
            return 1
        removed = ProtectionRemoved(
            client_order_id=row.client_order_id,
            reason="expired" if outcome.status == "expired" else "cancelled",
            gtt_id=row.gtt_id,
            message=outcome.message,
        )
        await self._put(
            row.command,
            ENDED[outcome.status],
            gtt_id=row.gtt_id,
            message=outcome.message,
            events=[removed],
        )
        PROTECTIONS.labels(outcome.status).inc()
        return 1

    async def _triggered(self, row: ProtectionRow, outcome: GttOutcome) -> None:
        assert outcome.broker_order_id is not None
        order = triggered_order(row.command, outcome)
        await self._write(
            self.journal.insert_external,
            order,
            broker_order_id=outcome.broker_order_id,
            message=f"placed by Kite's GTT {row.gtt_id} (protective stop or target)",
            reason="gtt",
        )
        removed = ProtectionRemoved(
            client_order_id=row.client_order_id,
            reason="triggered",
            gtt_id=row.gtt_id,
            broker_order_id=outcome.broker_order_id,
        )
        await self._put(
            row.command,
            "TRIGGERED",
            gtt_id=row.gtt_id,
            broker_order_id=outcome.broker_order_id,
            events=[removed],
        )
        PROTECTIONS.labels("triggered").inc()
        log.info(
            "protection.triggered",
            client_order_id=row.client_order_id,
            gtt_id=row.gtt_id,
            broker_order_id=outcome.broker_order_id,
            price=str(outcome.price),
        )


async def watch_forever(
    desk: ProtectionDesk, *, every_seconds: float, ready: Callable[[], bool]
) -> None:
    """`check` every `every_seconds` while this broker places orders with a session (first
    at once: a GTT that fired while Dalal was down is found at start)."""
    while True:
        if ready():
            try:
                await desk.check()
            except Exception as exc:  # one failed round (Kite down) must not end the watch
                log.warning("protection.check_failed", error=repr(exc)[:300])
        await asyncio.sleep(every_seconds)
