"""The order desk: PlaceOrder -> guards -> journal -> Kite, exactly once; Kite's view -> events.

Exactly once at the broker (DESIGN.md, "Orders"):
1. the intent is journaled (PENDING) before Kite is called, keyed on client_order_id, which is
   also sent as Kite's `tag`;
2. a Kite rejection is final (OrderRejected); a TokenException pauses trading;
3. after an unknown outcome (timeout, 5xx, 429, a crash between send and reply) the order book
   is searched for the tag before the order is ever sent again;
4. PENDING rows found at start-up go through the same lookup (`recover`).

Order state after acceptance comes from Kite's order book and trades (polling, and at once on
a checksum-verified postback); each change becomes one event (OrderUpdated, OrderFilled per
trade, OrderCancelled, OrderRejected) through the journal's outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Histogram

from dalal_broker.config import BrokerSettings
from dalal_broker.journal import PENDING, TERMINAL, Journal, OrderRow
from dalal_broker.killswitch import KillSwitch
from dalal_broker.kite import KiteGateway, KiteRejected, KiteSessionError, KiteUnavailable
from dalal_broker.orders import GuardContext, admit, market_protection
from dalal_broker.session import SessionManager
from dalal_shared.bus import Handler, Publisher
from dalal_shared.calendar import nse_calendar
from dalal_shared.dispatch import dispatcher
from dalal_shared.errors import ConflictError, NotFoundError, TemporaryError
from dalal_shared.logging import get_logger
from dalal_shared.messages import (
    CancelOrder,
    Envelope,
    Message,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
    PlaceOrder,
)
from dalal_shared.ratelimit import DailyCapReached, RateLimitTimeout
from dalal_shared.streams import ORDERS_EVENTS
from dalal_shared.timeutil import IST, utcnow

log = get_logger(__name__)

ORDERS = Counter("dalal_broker_orders_total", "Orders by final or current status", ["status"])
LATENCY = Histogram(
    "dalal_broker_order_latency_seconds",
    "Order latency by stage: intent->ack (Kite accepted), intent->fill (first trade)",
    ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECOVERED = Counter(
    "dalal_broker_unknown_outcomes_total",
    "Orders whose send had an unknown outcome, by how the lookup resolved it",
    ["resolution"],
)

KITE_STATUS = {  # Kite order statuses that mean the same as ours
    "COMPLETE": "COMPLETE",
    "CANCELLED": "CANCELLED",
    "REJECTED": "REJECTED",
}


class NotLeader(TemporaryError):
    code = "not_leader"


class OrderDesk:
    def __init__(
        self,
        *,
        settings: BrokerSettings,
        journal: Journal,
        gateway: KiteGateway,
        session: SessionManager,
        kill_switch: KillSwitch,
        publisher: Publisher,
    ):
        self.settings = settings
        self.journal = journal
        self.gateway = gateway
        self.session = session
        self.kill_switch = kill_switch
        self.publisher = publisher
        self.leader = False
        self._lock = asyncio.Lock()
        self._poll_now = asyncio.Event()
        self._in_flight: set[str] = set()  # sends of this process not yet resolved

    # ------------------------------------------------------------------ placing

    async def place(self, command: PlaceOrder, corr: str | None = None) -> OrderRow:
        """Idempotent on client_order_id: a command seen before returns its journal row."""
        if not self.leader:
            raise NotLeader("this broker replica is not the active order placer; retry shortly")
        async with self._lock:
            existing = await asyncio.to_thread(self.journal.get, command.client_order_id)
            if existing is not None:
                if existing.command != command:
                    raise ConflictError(
                        f"client_order_id {command.client_order_id} was used for another order"
                    )
                return existing
            corr = corr or command.client_order_id
            rejection = admit(command, await self._guard_context())
            if rejection is not None:
                row, _ = await asyncio.to_thread(
                    self.journal.insert,
                    command,
                    corr=corr,
                    status="REJECTED",
                    reason=rejection.reason,
                    message=rejection.message,
                    events=[(ORDERS_EVENTS, rejection)],
                )
                ORDERS.labels("REJECTED").inc()
                await self.flush_outbox()
                return row
            # in flight before the row exists: recover() must never race this send
            self._in_flight.add(command.client_order_id)
            try:
                row, _ = await asyncio.to_thread(
                    self.journal.insert, command, corr=corr, status=PENDING
                )
            except BaseException:
                self._in_flight.discard(command.client_order_id)
                raise
        try:
            return await self._send_once(row)
        finally:
            self._in_flight.discard(command.client_order_id)

    async def _guard_context(self) -> GuardContext:
        state = await self.kill_switch.state()
        s = self.settings
        live = s.mode == "live"
        return GuardContext(
            session_valid=self.session.valid,
            kill_switch_reason=(state.reason or "engaged") if state.engaged else None,
            now=utcnow(),
            calendar=nse_calendar() if s.enforce_market_hours else None,
            max_order_value_rupees=s.max_order_value_rupees,
            capital_cap_rupees=s.live_capital_cap_rupees if live else None,
            # only the live capital cap needs it: a scan of the open orders
            open_orders_value_rupees=await self._open_orders_value() if live else Decimal(0),
        )

    async def _open_orders_value(self) -> Decimal:
        total = Decimal("0")
        for row in await asyncio.to_thread(self.journal.live):
            price = row.command.price or row.command.trigger_price
            if price is not None and row.command.side == "BUY":
                total += price * (row.command.quantity - row.filled_quantity)
        return total

    async def _send(self, row: OrderRow) -> OrderRow:
        coid = row.command.client_order_id
        if coid in self._in_flight:  # this process is already sending it
            current = await asyncio.to_thread(self.journal.get, coid)
            assert current is not None
            return current
        self._in_flight.add(coid)
        try:
            return await self._send_once(row)
        finally:
            self._in_flight.discard(coid)

    async def _send_once(self, row: OrderRow) -> OrderRow:
        command = row.command
        coid = command.client_order_id
        attempts = self.settings.send_attempts
        started = row.created_at
        for attempt in range(attempts):
            # an earlier attempt (or a crashed process) may have reached Kite: look first
            if attempt > 0 or row.send_attempts > 0:
                try:
                    found = await self.gateway.find_by_tag(coid)
                except KiteSessionError:
                    return await self._session_lost(coid)
                except (KiteUnavailable, RateLimitTimeout):
                    return await asyncio.to_thread(self.journal.get, coid)  # stays PENDING
                if found is not None:
                    RECOVERED.labels("found_at_kite").inc()
                    return await self._accepted(coid, str(found["order_id"]), started)
                if row.send_attempts > 0 or attempt > 0:
                    RECOVERED.labels("not_at_kite").inc()
            await asyncio.to_thread(self.journal.count_attempt, coid)
            try:
                order_id = await self.gateway.place_order(
                    command,
                    market_protection=market_protection(
                        command, self.settings.market_protection_pct
                    ),
                    algo_id=self.settings.algo_id,
                )
            except KiteRejected as exc:
                return await self._rejected(coid, exc.code, exc.message)
            except KiteSessionError:
                return await self._session_lost(coid)
            except DailyCapReached as exc:
                return await self._rejected(coid, exc.code, exc.message)
            except (KiteUnavailable, RateLimitTimeout) as exc:
                log.warning(
                    "order.send_unknown", client_order_id=coid, attempt=attempt + 1, error=str(exc)
                )
                await asyncio.sleep(self.settings.send_backoff_seconds * (2**attempt))
                continue
            return await self._accepted(coid, order_id, started)
        # every attempt ended unknown: one last look, then a clear rejection
        try:
            found = await self.gateway.find_by_tag(coid)
        except (KiteUnavailable, RateLimitTimeout, KiteSessionError):
            # still PENDING: recover() resolves it when Kite answers again
            return await asyncio.to_thread(self.journal.get, coid)
        if found is not None:
            return await self._accepted(coid, str(found["order_id"]), started)
        return await self._rejected(
            coid,
            "kite_unavailable",
            f"Kite did not confirm the order after {attempts} attempts and has no order "
            f"tagged {coid}; nothing was placed",
        )

    async def _accepted(self, coid: str, order_id: str, started: datetime) -> OrderRow:
        row = await asyncio.to_thread(
            self.journal.update,
            coid,
            status="OPEN",
            broker_order_id=order_id,
            events=[(ORDERS_EVENTS, OrderAccepted(client_order_id=coid, broker_order_id=order_id))],
        )
        ORDERS.labels("OPEN").inc()
        LATENCY.labels("ack").observe(max(0.0, (utcnow() - started).total_seconds()))
        await self.flush_outbox()  # the tracker picks the order up at its next poll
        return row

    async def _rejected(self, coid: str, reason: str, message: str) -> OrderRow:
        row = await asyncio.to_thread(
            self.journal.update,
            coid,
            status="REJECTED",
            reason=reason,
            message=message,
            events=[
                (ORDERS_EVENTS, OrderRejected(client_order_id=coid, reason=reason, message=message))
            ],
        )
        ORDERS.labels("REJECTED").inc()
        await self.flush_outbox()
        return row

    async def _session_lost(self, coid: str) -> OrderRow:
        await self.session.expire("TokenException from Kite")
        return await self._rejected(
            coid, "session_expired", "the Kite session expired; log in again (`dalal login`)"
        )

    async def recover(self) -> None:
        """Resolve PENDING rows (sends with an unknown outcome, e.g. before a crash)."""
        if not self.session.valid:
            return
        for row in await asyncio.to_thread(self.journal.live):
            if row.status == PENDING and row.client_order_id not in self._in_flight:
                log.info("order.recovering", client_order_id=row.client_order_id)
                await self._send(row)

    # ------------------------------------------------------------------ cancel

    async def cancel(self, client_order_id: str) -> OrderRow:
        row = await asyncio.to_thread(self.journal.get, client_order_id)
        if row is None:
            raise NotFoundError(f"no order with client_order_id {client_order_id}")
        if row.terminal:
            raise ConflictError(f"order {client_order_id} is already {row.status}")
        if row.broker_order_id is None:
            raise ConflictError(f"order {client_order_id} has not reached Kite yet")
        try:
            await self.gateway.cancel_order(row.command.variety, row.broker_order_id)
        except KiteSessionError:
            await self.session.expire("TokenException from Kite")
            raise
        self._poll_now.set()
        await self.sync()
        result = await asyncio.to_thread(self.journal.get, client_order_id)
        assert result is not None
        return result

    # ------------------------------------------------------------------ tracking

    async def sync(self) -> None:
        """Bring the journal in line with Kite's order book and trades; publish the changes."""
        live = {
            r.broker_order_id: r
            for r in await asyncio.to_thread(self.journal.live)
            if r.broker_order_id
        }
        if not live or not self.session.valid:
            return
        try:
            trades = await self.gateway.trades()
            orders = await self.gateway.orders()
        except KiteSessionError:
            await self.session.expire("TokenException from Kite")
            return
        except (KiteUnavailable, RateLimitTimeout) as exc:
            log.warning("order.sync_failed", error=str(exc))
            return
        for trade in trades:
            row = live.get(str(trade.get("order_id")))
            if row is not None:
                await self._apply_trade(row, trade)
        for order in orders:
            row = live.get(str(order.get("order_id")))
            if row is not None:
                await self.apply_order_update(order)
        await self.flush_outbox()

    async def _apply_trade(self, row: OrderRow, trade: dict[str, Any]) -> None:
        filled_at = _kite_time(trade.get("fill_timestamp") or trade.get("exchange_timestamp"))
        event = OrderFilled(
            client_order_id=row.client_order_id,
            broker_order_id=str(trade["order_id"]),
            trade_id=str(trade["trade_id"]),
            exchange=row.command.exchange,
            symbol=row.command.symbol,
            side=row.command.side,
            product=row.command.product,
            quantity=int(trade["quantity"]),
            price=Decimal(str(trade["average_price"])),
            filled_at=filled_at,
        )
        added = await asyncio.to_thread(
            self.journal.add_trade,
            trade_id=event.trade_id,
            client_order_id=row.client_order_id,
            broker_order_id=event.broker_order_id,
            quantity=event.quantity,
            price=event.price,
            filled_at=filled_at,
            events=[(ORDERS_EVENTS, event)],
        )
        if added and row.filled_quantity == 0:
            LATENCY.labels("fill").observe(max(0.0, (utcnow() - row.created_at).total_seconds()))

    async def apply_order_update(self, order: dict[str, Any]) -> None:
        """One Kite order dict (from the order book or a postback) -> journal + events."""
        row = await asyncio.to_thread(self.journal.by_broker_id, str(order.get("order_id")))
        if row is None or row.terminal:
            return
        status = str(order.get("status", "")).upper()
        filled = int(order.get("filled_quantity") or 0)
        pending = int(order.get("pending_quantity") or 0)
        avg = order.get("average_price")
        average = Decimal(str(avg)) if avg not in (None, "", 0, 0.0) else None
        if status == row.status and filled == row.filled_quantity:
            return
        coid = row.client_order_id
        events: list[tuple[str, Message]] = [
            (
                ORDERS_EVENTS,
                OrderUpdated(
                    client_order_id=coid,
                    broker_order_id=row.broker_order_id or "",
                    status=status,
                    filled_quantity=filled,
                    pending_quantity=pending,
                    average_price=average,
                ),
            )
        ]
        if status == "CANCELLED":
            events.append(
                (
                    ORDERS_EVENTS,
                    OrderCancelled(
                        client_order_id=coid,
                        broker_order_id=row.broker_order_id,
                        filled_quantity=filled,
                        reason=str(order.get("status_message") or ""),
                    ),
                )
            )
        elif status == "REJECTED":
            events.append(
                (
                    ORDERS_EVENTS,
                    OrderRejected(
                        client_order_id=coid,
                        broker_order_id=row.broker_order_id,
                        reason="exchange",
                        message=str(order.get("status_message") or "rejected by Kite/exchange"),
                    ),
                )
            )
        await asyncio.to_thread(
            self.journal.update,
            coid,
            status=status,
            filled_quantity=filled,
            average_price=average,
            events=events,
            **(
                {"reason": "exchange", "message": str(order.get("status_message") or "")}
                if status == "REJECTED"
                else {}
            ),
        )
        if status in TERMINAL:
            ORDERS.labels(status).inc()
        self._poll_now.set()

    async def flush_outbox(self) -> int:
        """Publish journaled events in order; drop each after it reached Redis."""
        published = 0
        while True:
            batch = await asyncio.to_thread(self.journal.take_outbox)
            if not batch:
                return published
            for _seq, stream, fields in batch:
                await self.publisher.redis.xadd(
                    stream, fields, maxlen=self.publisher.maxlen, approximate=True
                )
            await asyncio.to_thread(self.journal.drop_outbox, [b[0] for b in batch])
            published += len(batch)

    async def track_forever(self) -> None:
        """Poll Kite while orders are live (faster after a postback or a new order)."""
        while True:
            try:
                await self.recover()
                await self.sync()
                await self.flush_outbox()
                self.session.refresh_gauges()
            except Exception as exc:  # keep tracking whatever one round did
                log.error("order.track_failed", error=repr(exc))
            self._poll_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._poll_now.wait(), timeout=self.settings.poll_interval_seconds
                )

    # ------------------------------------------------------------------ bus

    def handler(self) -> Handler:
        async def on_place(command: PlaceOrder, envelope: Envelope) -> None:
            await self.place(command, corr=envelope.corr)

        async def on_cancel(command: CancelOrder, _envelope: Envelope) -> None:
            try:
                await self.cancel(command.client_order_id)
            except (NotFoundError, ConflictError) as exc:
                log.warning(
                    "order.cancel_refused",
                    client_order_id=command.client_order_id,
                    error=exc.message,
                )

        return dispatcher({PlaceOrder: on_place, CancelOrder: on_cancel})


def _kite_time(value: Any) -> datetime:
    """Kite sends naive IST timestamps (the client parses them without a zone)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=IST)
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=IST)
    return utcnow()
