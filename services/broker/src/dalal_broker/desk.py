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
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Histogram

from dalal_broker.adapter import BrokerOrder, BrokerTrade, OrderAdapter
from dalal_broker.config import BrokerSettings
from dalal_broker.external import external_order
from dalal_broker.journal import PENDING, TERMINAL, Journal, NewOrder, OrderRow, outbox_t
from dalal_broker.killswitch import KillSwitch, KillSwitchState
from dalal_broker.kite import KiteRejected, KiteSessionError, KiteUnavailable
from dalal_broker.orders import GuardContext, admit, market_protection, order_value
from dalal_broker.prices import ReferencePrices
from dalal_broker.session import SessionManager
from dalal_shared.aio import wait_event
from dalal_shared.audit import audit, audit_envelopes
from dalal_shared.bus import Publisher
from dalal_shared.calendar import nse_calendar
from dalal_shared.dbthread import DbThread
from dalal_shared.errors import ConflictError, NotFoundError, PermanentError, TemporaryError
from dalal_shared.logging import get_logger
from dalal_shared.messages import (
    Message,
    ModifyOrder,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
    PlaceOrder,
)
from dalal_shared.outbox import OutboxRelay
from dalal_shared.ratelimit import DailyCapReached, RateLimitTimeout
from dalal_shared.streams import ORDERS_EVENTS
from dalal_shared.timeutil import utcnow

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

UPDATES = Counter(
    "dalal_broker_order_updates_total",
    "Kite order updates by path (postback, ticker, poll, sweep) and what became of them",
    ["path", "outcome"],
)
TRADE_FETCH_FAILED = Counter(
    "dalal_broker_order_trades_failed_total",
    "order_trades() calls after an order update that failed (the trades are fetched later)",
)
SWEEPS = Counter(
    "dalal_broker_trade_sweeps_total", "Sweeps of Kite's day trade book, by outcome", ["outcome"]
)
SWEEP_ADDED = Counter(
    "dalal_broker_trade_sweep_added_total",
    "Trades the trade-book sweep found missing from the journal and added, by the order's origin "
    "(dalal: an order Dalal placed; external: placed by hand in Kite)",
    ["origin"],
)
for _origin in ("dalal", "external"):
    SWEEP_ADDED.labels(_origin)
DEAD_LETTERED = Counter(
    "dalal_broker_commands_dead_lettered_total",
    "Order commands the bus dead-lettered, by type and what the broker made of them (rejected: "
    "journaled REJECTED dead_lettered; journaled: the order was already in the journal, left "
    "as it is; unknown_order: a cancel or modify of an order the journal does not hold; "
    "undecodable: no command could be read)",
    ["type", "outcome"],
)
DEAD_LETTERED_REASON = "dead_lettered"

# Steps Kite reports on the way to a state (ticker and postbacks send them too): never recorded,
# so a late one cannot move an order back.
TRANSIENT_STATUSES = frozenset(
    {
        "PUT ORDER REQ RECEIVED",
        "VALIDATION PENDING",
        "OPEN PENDING",
        "MODIFY VALIDATION PENDING",
        "MODIFY PENDING",
        "CANCEL PENDING",
        "UPDATE",
    }
)


def _drop(token: Awaitable[object] | None) -> None:
    """A token no send will use: stop waiting for it (one taken already is spent)."""
    if isinstance(token, asyncio.Future):
        token.cancel()
        # its outcome (a timeout, say) is nobody's to report
        token.add_done_callback(lambda t: t.cancelled() or t.exception())


class NotLeader(TemporaryError):
    code = "not_leader"


class OrderClosed(ConflictError):
    code = "order_closed"


class OrderDesk:
    def __init__(
        self,
        *,
        settings: BrokerSettings,
        journal: Journal,
        gateway: OrderAdapter,
        session: SessionManager,
        kill_switch: KillSwitch,
        publisher: Publisher,
        prices: ReferencePrices | None = None,
    ):
        self.settings = settings
        self.prices = prices  # None: MARKET orders have no reference price (refused)
        self.journal = journal
        self.gateway = gateway
        self.session = session
        self.kill_switch = kill_switch
        self.publisher = publisher
        self.leader = False
        # paper orders never reach Kite: they need no Kite session (the ticks do, at the data
        # service)
        self.needs_session = settings.mode != "paper"
        self._lock = asyncio.Lock()
        self._apply_lock = asyncio.Lock()  # one order update at a time in this process
        # the journal's calls (and its outbox's) on one thread, one after another: orders
        # placed side by side overlap their Kite calls, never their journal writes (on SQLite
        # those would wait on each other's lock in busy sleeps)
        self.db = DbThread("journal")
        self._relay = OutboxRelay(
            journal.engine,
            outbox_t,
            publisher.redis,
            batch=500,
            maxlen=publisher.maxlen,
            on_published=audit_envelopes(log),
            run=self.db.run,
        )
        self._poll_now = asyncio.Event()
        self._in_flight: set[str] = set()  # sends of this process not yet resolved
        # POST /orders placements under way: the bus copy of their command waits for them
        self._http_placing: dict[str, asyncio.Event] = {}
        # asked before a traded order nobody journaled is called external: a protective GTT
        # that fired places orders without a tag (protections.ProtectionDesk.check)
        self.before_external: Callable[[], Awaitable[object]] | None = None

    @property
    def can_trade(self) -> bool:
        return self.session.valid or not self.needs_session

    # ------------------------------------------------------------------ placing

    async def place_announced(
        self, command: PlaceOrder, announce: Callable[[PlaceOrder], Awaitable[object]]
    ) -> OrderRow:
        """POST /orders: the command is written to `orders.commands` first (`announce`), so
        every consumer sees an HTTP order as it sees one from the bus (the portfolio holds its
        funds), then placed here and answered with its row. The broker's own consumer, meeting
        the same command, waits for this placement and finds it journaled (`after_http`); if
        this process dies in between, the consumer places it after the restart."""
        if not self.leader:
            raise NotLeader("this broker replica is not the active order placer; retry shortly")
        coid = command.client_order_id
        known = await self.db.run(self.journal.get, coid)
        if known is not None:  # a retry (its row), or a reused id (never announced)
            if known.command != command:
                raise ConflictError(f"client_order_id {coid} was used for another order")
            return known
        done = self._http_placing.get(coid)
        if done is None:
            done = self._http_placing[coid] = asyncio.Event()
        try:
            await announce(command)
            audit(log, command, via="http")
            return await self.place(command)
        finally:
            if self._http_placing.get(coid) is done:
                del self._http_placing[coid]
            done.set()

    def placing_over_http(self, client_order_id: str) -> bool:
        """Whether a POST /orders placement of this order is under way in this process."""
        return client_order_id in self._http_placing

    async def after_http(self, client_order_id: str) -> None:
        """Wait for a POST /orders placement of this order under way in this process."""
        done = self._http_placing.get(client_order_id)
        if done is not None:
            await done.wait()

    async def place(
        self,
        command: PlaceOrder,
        corr: str | None = None,
        *,
        read_first: bool = True,
        kill_switch: KillSwitchState | None = None,
    ) -> OrderRow:
        """Idempotent on client_order_id: a command seen before returns its journal row.
        `read_first=False` (a first delivery from the bus, most likely new): no read of the
        journal before the guards; the insert finds a row there already and returns it (a
        copy costs its guards' reads, and a MARKET order's price, before it is found).
        `kill_switch`: the switch as the caller read it for a bus read's orders (else read
        here, under the lock)."""
        if not self.leader:
            raise NotLeader("this broker replica is not the active order placer; retry shortly")
        coid = command.client_order_id
        if read_first and coid not in self._in_flight:  # seen before: no Kite call
            known = await self.db.run(self.journal.get, coid)
            if known is not None:
                if known.command != command:
                    raise ConflictError(f"client_order_id {coid} was used for another order")
                return known
        reference = await self._reference(command)  # a Kite call maybe: outside the lock
        async with self._lock:
            rejection = admit(command, await self._guard_context(command, reference, kill_switch))
            # in flight before the row exists: recover() must never race this send
            mine = coid not in self._in_flight
            self._in_flight.add(coid)
            # one round trip: the intent is journaled, or the earlier row comes back; a send is
            # counted as attempted from the start (a crash before it means: look first). Its
            # turn on the journal's thread is taken under the lock, so rows are written in the
            # order the guards passed, and the next order's guards (which read the journal on
            # that thread) see this row; the wait for it is outside the lock, so a minute's
            # orders pass their guards while the rows before them are written
            inserting = self.db.submit(
                self.journal.insert,
                command,
                corr=corr or coid,
                status="REJECTED" if rejection else PENDING,
                send_attempts=0 if rejection else 1,
                reason=rejection.reason if rejection else None,
                message=rejection.message if rejection else None,
                events=[(ORDERS_EVENTS, rejection)] if rejection else [],
            )
        # the rate limiter's token is taken while the row is written (a Redis round trip
        # that would otherwise come after it); an order that turns out to be a copy leaves
        # its token unused
        token = self.gateway.take_order_token() if rejection is None else None
        try:
            row, created = await inserting
        except BaseException:
            _drop(token)
            if mine:
                self._in_flight.discard(coid)
            raise
        if mine and (not created or rejection is not None):  # nothing to send
            self._in_flight.discard(coid)
        if not created:
            _drop(token)
            if row.command != command:
                raise ConflictError(f"client_order_id {coid} was used for another order")
            return row
        if rejection is not None:
            ORDERS.labels("REJECTED").inc()
            await self.flush_outbox()
            return row
        try:
            return await self._send_once(row, fresh=True, token=token)
        finally:
            _drop(token)  # unused when the send ended before it (spent, or never taken)
            self._in_flight.discard(coid)

    async def place_many(
        self, orders: Sequence[tuple[PlaceOrder, str]], *, kill_switch: KillSwitchState
    ) -> list[OrderRow | BaseException]:
        """A bus read's `PlaceOrder`s (command, corr), first deliveries most likely new, as
        `place(read_first=False)` would place them one after another, with one difference:
        the journal's work is one turn on its thread and one transaction for all of them.
        Each passes its guards in stream order under the lock, with the kill switch as the
        caller read it and, for a live BUY, the capital cap counting the open orders in the
        journal and the buys of this read passed before it; then every row (intent or
        rejection) is journaled at once, and the orders passed go to Kite side by side. One
        after another, each order's insert waited for the rows before it on the journal's
        thread, behind the Kite calls already running (a minute's 4 orders: the last one's
        row 7-12 ms after its guards).

        Returns each order's row (a copy journaled before: that row, nothing sent) or the
        exception of its send. When the journal's transaction fails nothing is written and
        it is raised for the whole read (the bus places each one by one again)."""
        if not self.leader:
            raise NotLeader("this broker replica is not the active order placer; retry shortly")
        commands = [command for command, _corr in orders]
        # Kite calls maybe (a MARKET order's LTP): outside the lock, side by side
        references = await asyncio.gather(*(self._reference(c) for c in commands))
        async with self._lock:
            live = self.settings.mode == "live"
            open_value: Decimal | None = Decimal(0)
            if live and any(c.side == "BUY" for c in commands):
                open_value = await self._open_orders_value(
                    exclude={c.client_order_id for c in commands}
                )
            entries: list[NewOrder] = []
            rejections: list[OrderRejected | None] = []
            mine: list[bool] = []
            for (command, corr), reference in zip(orders, references, strict=True):
                coid = command.client_order_id
                rejection = admit(command, self._context(reference, kill_switch, open_value))
                if rejection is None and live and command.side == "BUY" and open_value is not None:
                    # the next buy of this read counts this one as the journal would show it
                    value = order_value(command, reference, self.settings.market_protection_pct)
                    open_value = None if value is None else open_value + value
                mine.append(coid not in self._in_flight)
                self._in_flight.add(coid)  # before the row exists: recover() must not race
                rejections.append(rejection)
                entries.append(
                    NewOrder(
                        command,
                        corr or coid,
                        "REJECTED" if rejection else PENDING,
                        send_attempts=0 if rejection else 1,
                        reason=rejection.reason if rejection else None,
                        message=rejection.message if rejection else None,
                        events=[(ORDERS_EVENTS, rejection)] if rejection else [],
                    )
                )
            inserting = self.db.submit(self.journal.insert_many, entries)
        # the rate limiter's tokens are taken while the rows are written
        tokens = [
            self.gateway.take_order_token() if rejection is None else None
            for rejection in rejections
        ]
        try:
            written = await inserting
        except BaseException:
            for command, token, own in zip(commands, tokens, mine, strict=True):
                _drop(token)
                if own:
                    self._in_flight.discard(command.client_order_id)
            raise

        async def settle(
            command: PlaceOrder,
            row: OrderRow,
            created: bool,
            rejected: bool,
            own: bool,
            token: Awaitable[object] | None,
        ) -> OrderRow:
            coid = command.client_order_id
            try:
                if not created:
                    if row.command != command:
                        raise ConflictError(f"client_order_id {coid} was used for another order")
                    return row
                if rejected:
                    return row
                return await self._send_once(row, fresh=True, token=token)
            finally:
                _drop(token)  # unused when nothing was sent (or the send ended before it)
                if own:
                    self._in_flight.discard(coid)

        rejected_new = sum(
            1 for (_row, created), r in zip(written, rejections, strict=True) if created and r
        )
        if rejected_new:
            ORDERS.labels("REJECTED").inc(rejected_new)
        sends = asyncio.gather(
            *(
                settle(command, row, created, rejection is not None, own, token)
                for command, (row, created), rejection, own, token in zip(
                    commands, written, rejections, mine, tokens, strict=True
                )
            ),
            return_exceptions=True,
        )
        if rejected_new:  # the rejections' events, while the others are sent
            try:
                await self.flush_outbox()
            except Exception as exc:  # they wait in the outbox for the tracker's next round
                log.warning("order.outbox_flush_failed", error=repr(exc)[:300])
        return list(await sends)

    async def dead_lettered(self, message: Message | None, corr: str | None, error: str) -> str:
        """A command the bus gave up on (dead-lettered): never silent. A PlaceOrder the journal
        does not hold is journaled REJECTED with reason `dead_lettered` and an OrderRejected
        (in one transaction, so a second call or a later replay of the command finds the row
        and adds nothing); an order already journaled (placed, pending or rejected) is left as
        it is. The outcome is returned and counted."""
        kind = type(message).__name__ if message is not None else "undecodable"
        outcome = "undecodable"
        coid = getattr(message, "client_order_id", None)
        if isinstance(message, PlaceOrder):
            text = f"the bus dead-lettered the command before it was placed: {error}"[:500]
            rejection = OrderRejected(
                client_order_id=message.client_order_id,
                reason=DEAD_LETTERED_REASON,
                message=text,
            )
            _row, created = await self.db.run(
                self.journal.insert,
                message,
                corr=corr or message.client_order_id,
                status="REJECTED",
                reason=DEAD_LETTERED_REASON,
                message=text,
                events=[(ORDERS_EVENTS, rejection)],
            )
            outcome = "rejected" if created else "journaled"
            if created:
                ORDERS.labels("REJECTED").inc()
                await self.flush_outbox()
        elif coid is not None:
            row = await self.db.run(self.journal.get, coid)
            outcome = "journaled" if row is not None else "unknown_order"
        DEAD_LETTERED.labels(kind, outcome).inc()
        log.error(
            "order.command_dead_lettered",
            type=kind,
            client_order_id=coid,
            outcome=outcome,
            error=error[:300],
        )
        return outcome

    async def _reference(self, command: PlaceOrder) -> Decimal | None:
        """A MARKET order's reference price (last tick, else Kite's LTP); None otherwise."""
        if command.order_type != "MARKET" or self.prices is None:
            return None
        return await self.prices.price(command.exchange, command.symbol)

    async def _guard_context(
        self,
        command: PlaceOrder,
        reference: Decimal | None = None,
        kill_switch: KillSwitchState | None = None,
    ) -> GuardContext:
        # only the live capital cap needs the open orders' value (a scan of the journal's live
        # rows, this one aside): read beside the kill switch (Redis), not after it, as each
        # order's guards hold up the next order's
        open_value: Decimal | None = Decimal(0)

        async def switch() -> KillSwitchState:  # as the caller read it, else read now
            return kill_switch if kill_switch is not None else await self.kill_switch.state()

        if self.settings.mode == "live" and command.side == "BUY":
            state, open_value = await asyncio.gather(
                switch(), self._open_orders_value(exclude={command.client_order_id})
            )
        else:
            state = await switch()
        return self._context(reference, state, open_value)

    def _context(
        self, reference: Decimal | None, state: KillSwitchState, open_value: Decimal | None
    ) -> GuardContext:
        s = self.settings
        live = s.mode == "live"
        return GuardContext(
            session_valid=self.can_trade,
            kill_switch_reason=(state.reason or "engaged") if state.engaged else None,
            now=utcnow(),
            calendar=nse_calendar() if s.enforce_market_hours else None,
            max_order_value_rupees=s.max_order_value_rupees,
            reference_price=reference,
            market_protection_pct=s.market_protection_pct,
            capital_cap_rupees=s.live_capital_cap_rupees if live else None,
            open_orders_value_rupees=open_value,
        )

    async def _open_orders_value(self, exclude: Collection[str] = ()) -> Decimal | None:
        """What the open BUY orders commit at their worst prices (MARKET ones at their
        reference price widened by their protection), those in `exclude` aside; None when
        one cannot be priced."""
        rows = [
            r
            for r in await self.db.run(self.journal.live)
            if r.current.side == "BUY" and r.client_order_id not in exclude
        ]
        keys = [
            (r.current.exchange, r.current.symbol) for r in rows if r.current.order_type == "MARKET"
        ]
        refs = await self.prices.lookup(keys) if keys and self.prices is not None else {}
        total = Decimal("0")
        for row in rows:
            terms = row.current
            value = order_value(
                terms,
                refs.get((terms.exchange, terms.symbol)),
                self.settings.market_protection_pct,
                quantity=max(0, terms.quantity - row.filled_quantity),
            )
            if value is None:
                return None
            total += value
        return total

    async def _send(self, row: OrderRow) -> OrderRow:
        coid = row.command.client_order_id
        if coid in self._in_flight:  # this process is already sending it
            current = await self.db.run(self.journal.get, coid)
            assert current is not None
            return current
        self._in_flight.add(coid)
        try:
            return await self._send_once(row)
        finally:
            self._in_flight.discard(coid)

    async def _send_once(
        self, row: OrderRow, *, fresh: bool = False, token: Awaitable[object] | None = None
    ) -> OrderRow:
        """Send `row`, retrying unknown outcomes after a lookup by tag. `fresh`: journaled just
        now by this call with the first attempt counted, so the first send needs no lookup.
        `token`: the first send's rate-limit token, being taken already."""
        command = row.command
        coid = command.client_order_id
        attempts = self.settings.send_attempts
        started = row.created_at
        for attempt in range(attempts):
            # an earlier attempt (or a crashed process) may have reached Kite: look first
            look_first = attempt > 0 or (row.send_attempts > 0 and not fresh)
            if look_first:
                try:
                    found = await self.gateway.find_by_tag(coid)
                except KiteSessionError:
                    return await self._session_lost(coid)
                except (KiteUnavailable, RateLimitTimeout):
                    return await self.db.run(self.journal.require, coid)  # stays PENDING
                if found is not None:
                    RECOVERED.labels("found_at_kite").inc()
                    return await self._accepted(coid, found.order_id, started)
                RECOVERED.labels("not_at_kite").inc()
            if attempt > 0 or not fresh:
                await self.db.run(self.journal.count_attempt, coid)
            first_token, token = token, None
            try:
                order_id = await self.gateway.place_order(
                    command,
                    market_protection=market_protection(
                        command, self.settings.market_protection_pct
                    ),
                    algo_id=self.settings.algo_id,
                    token=first_token,
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
            return await self.db.run(self.journal.require, coid)
        if found is not None:
            return await self._accepted(coid, found.order_id, started)
        return await self._rejected(
            coid,
            "kite_unavailable",
            f"Kite did not confirm the order after {attempts} attempts and has no order "
            f"tagged {coid}; nothing was placed",
        )

    async def _accepted(self, coid: str, order_id: str, started: datetime) -> OrderRow:
        row = await self.db.run(
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
        row = await self.db.run(
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
        if not self.can_trade:
            return
        for row in await self.db.run(self.journal.live):
            if row.status == PENDING and row.client_order_id not in self._in_flight:
                log.info("order.recovering", client_order_id=row.client_order_id)
                await self._send(row)

    # ------------------------------------------------------------------ cancel

    def _book_here(self) -> None:
        """A paper book lives in the order placer's memory: only it can change its orders (Kite
        takes a cancel or modify from any replica)."""
        if not self.needs_session and not self.leader:
            raise NotLeader("paper orders are changed by the active order placer; retry shortly")

    async def cancel(self, client_order_id: str) -> OrderRow:
        self._book_here()
        row = await self.db.run(self.journal.get, client_order_id)
        if row is None:
            raise NotFoundError(f"no order with client_order_id {client_order_id}")
        if row.terminal:
            raise OrderClosed(f"order {client_order_id} is already {row.status}")
        if row.broker_order_id is None:
            raise ConflictError(f"order {client_order_id} has not reached Kite yet")
        try:
            await self.gateway.cancel_order(row.command.variety, row.broker_order_id)
        except KiteSessionError:
            await self.session.expire("TokenException from Kite")
            raise
        self._poll_now.set()
        await self.sync()
        result = await self.db.run(self.journal.get, client_order_id)
        assert result is not None
        return result

    # ------------------------------------------------------------------ modify

    async def modify(self, command: ModifyOrder) -> OrderRow:
        """New price / quantity / trigger / order type for an open order, guards re-checked.

        Idempotent: terms the order already has change nothing and send nothing."""
        self._book_here()
        coid = command.client_order_id
        row = await self.db.run(self.journal.get, coid)
        if row is None:
            raise NotFoundError(f"no order with client_order_id {coid}")
        changes = command.model_dump(exclude={"client_order_id"}, exclude_none=True)
        if not changes:
            raise PermanentError(
                "a modify needs at least one of quantity, price, trigger_price, order_type",
                code="nothing_to_modify",
            )
        current = row.current
        try:
            new = PlaceOrder.model_validate({**current.model_dump(), **changes})
        except ValueError as exc:
            raise PermanentError(str(exc), code="invalid_modify") from None
        if new.order_type == "MARKET" and "price" not in changes:
            new = new.model_copy(update={"price": None})
        if new == current:
            return row
        if row.terminal:
            raise OrderClosed(f"order {coid} is already {row.status}")
        if row.broker_order_id is None:
            raise ConflictError(f"order {coid} has not reached Kite yet")
        if new.quantity <= row.filled_quantity:
            raise PermanentError(
                f"quantity {new.quantity} must exceed the {row.filled_quantity} already filled",
                code="invalid_modify",
            )
        rejection = admit(new, await self._guard_context(new, await self._reference(new)))
        if rejection is not None:
            raise PermanentError(rejection.message, code=rejection.reason, status_code=422)
        kw: dict[str, Any] = {"quantity": new.quantity, "order_type": new.order_type}
        if new.price is not None:
            kw["price"] = float(new.price)
        if new.trigger_price is not None:
            kw["trigger_price"] = float(new.trigger_price)
        try:
            await self.gateway.modify_order(new.variety, row.broker_order_id, **kw)
        except KiteSessionError:
            await self.session.expire("TokenException from Kite")
            raise
        event = OrderUpdated(
            client_order_id=coid,
            broker_order_id=row.broker_order_id,
            status=row.status,
            filled_quantity=row.filled_quantity,
            pending_quantity=new.quantity - row.filled_quantity,
            average_price=row.average_price,
            quantity=new.quantity,  # the new terms: the portfolio re-prices its hold
            price=new.price,
            trigger_price=new.trigger_price,  # an SL-M's new trigger (the engine's stops)
        )
        async with self._apply_lock:
            result = await self.db.run(
                self.journal.update,
                coid,
                terms=new.model_dump_json(),
                events=[(ORDERS_EVENTS, event)],
            )
        await self.flush_outbox()
        self._poll_now.set()
        log.info("order.modified", client_order_id=coid, **{k: str(v) for k, v in kw.items()})
        return result

    # ------------------------------------------------------------------ tracking

    async def sync(self) -> None:
        """Bring the journal in line with Kite's order book and trades; publish the changes."""
        live = {
            r.broker_order_id: r for r in await self.db.run(self.journal.live) if r.broker_order_id
        }
        if not live or not self.can_trade:
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
        async with self._apply_lock:
            for trade in trades:
                row = live.get(trade.order_id)
                if row is not None:
                    await self._apply_trade(row, trade)
            for order in orders:
                row = live.get(order.order_id)
                if row is not None:
                    await self._apply_order_update(order, "poll")
        await self.flush_outbox()

    async def sweep_trades(self) -> int:
        """Add every trade of Kite's day trade book the journal lacks (by trade_id); the number
        added. The same idempotent path as a fetched trade (one OrderFilled per trade), so the
        journal and the ledger converge on Kite's trade book after lost postbacks, ticker gaps
        and failed `order_trades` calls. Trades of orders placed by hand in Kite (no journal
        row, no Dalal tag) are journaled as `external` orders first."""
        if not self.leader or not self.can_trade:
            return 0
        try:
            trades = await self.gateway.trades()
        except KiteSessionError:
            SWEEPS.labels("failed").inc()
            await self.session.expire("TokenException from Kite")
            return 0
        except (KiteUnavailable, RateLimitTimeout) as exc:
            SWEEPS.labels("failed").inc()
            log.warning("trades.sweep_failed", error=str(exc))
            return 0
        ids = [t.trade_id for t in trades]
        known = await self.db.run(self.journal.known_trades, ids)
        missing = [t for t in trades if t.trade_id not in known]
        added = 0
        book: dict[str, BrokerOrder] | None = None  # Kite's orders, read when needed
        touched: dict[str, OrderRow] = {}
        checked = False
        async with self._apply_lock:
            for trade in missing:
                order_id = trade.order_id
                row = touched.get(order_id) or await self.db.run(
                    self.journal.by_broker_id, order_id
                )
                origin = "dalal"
                if row is None and self.before_external is not None and not checked:
                    checked = True  # once a sweep: a fired GTT's order gets its own id first
                    await self.before_external()
                    row = await self.db.run(self.journal.by_broker_id, order_id)
                if row is None:
                    if book is None:
                        book = await self._order_book()
                        if book is None:
                            SWEEPS.labels("failed").inc()
                            return added
                    row = await self._external_row(book.get(order_id), order_id)
                    if row is None:
                        continue
                if row.reason == "external":
                    origin = "external"
                touched[order_id] = row
                if await self._apply_trade(row, trade):
                    added += 1
                    SWEEP_ADDED.labels(origin).inc()
                    log.warning(
                        "trades.sweep_added",
                        client_order_id=row.client_order_id,
                        trade_id=trade.trade_id,
                        origin=origin,
                    )
            # the order's own state follows its trades (a held COMPLETE, an external order)
            if touched:
                if book is None:
                    book = await self._order_book() or {}
                for order_id in touched:
                    if order_id in book:
                        await self._apply_order_update(book[order_id], "sweep")
        SWEEPS.labels("ok").inc()
        await self.flush_outbox()
        return added

    async def _order_book(self) -> dict[str, BrokerOrder] | None:
        try:
            return {o.order_id: o for o in await self.gateway.orders()}
        except KiteSessionError:
            await self.session.expire("TokenException from Kite")
        except (KiteUnavailable, RateLimitTimeout) as exc:
            log.warning("trades.sweep_failed", error=str(exc))
        return None

    async def _external_row(self, order: BrokerOrder | None, order_id: str) -> OrderRow | None:
        """The journal row for a traded order the journal does not know: None when it carries
        the tag of a Dalal order still PENDING (recover() resolves that one first). Any other
        order (a second order under a Dalal tag included) is journaled as external, so its fills
        reach the ledger."""
        if order is None:
            log.error("trades.sweep_order_unknown", broker_order_id=order_id)
            return None
        tag = order.tag
        if tag:
            mine = await self.db.run(self.journal.get, tag)
            if mine is not None and mine.status == PENDING:
                return None
            if mine is not None:
                log.error(
                    "trades.sweep_tag_mismatch",
                    client_order_id=mine.client_order_id,
                    journal_status=mine.status,
                    journal_broker_order_id=mine.broker_order_id,
                    broker_order_id=order_id,
                )
        command = external_order(order)
        if command is None:
            log.error(
                "trades.sweep_external_unrecordable",
                broker_order_id=order_id,
                symbol=order.symbol,
                product=order.product,
            )
            return None
        row, created = await self.db.run(
            self.journal.insert_external,
            command,
            broker_order_id=order_id,
            message="placed outside Dalal (no Dalal tag); journaled from Kite's trade book",
        )
        if created:
            log.warning(
                "order.external",
                client_order_id=row.client_order_id,
                broker_order_id=order_id,
                symbol=command.symbol,
                side=command.side,
                quantity=command.quantity,
            )
        return row

    async def sweep_forever(self) -> None:
        """The trade-book sweep every `trade_sweep_seconds` (first one at once)."""
        while True:
            try:
                await self.sweep_trades()
            except Exception as exc:  # keep sweeping whatever one round did
                SWEEPS.labels("failed").inc()
                log.error("trades.sweep_error", error=repr(exc))
            await asyncio.sleep(self.settings.trade_sweep_seconds)

    async def _apply_trade(self, row: OrderRow, trade: BrokerTrade) -> bool:
        filled_at = trade.filled_at
        event = OrderFilled(
            client_order_id=row.client_order_id,
            broker_order_id=trade.order_id,
            trade_id=trade.trade_id,
            exchange=row.command.exchange,
            symbol=row.command.symbol,
            side=row.command.side,
            product=row.command.product,
            quantity=trade.quantity,
            price=trade.price,
            filled_at=filled_at,
        )
        added = await self.db.run(
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
        return added

    async def apply_order_update(self, order: BrokerOrder, path: str = "postback") -> bool:
        """One order update (a postback, a ticker order message, a poll) -> journal + events.

        The three paths (postback, ticker, polling) meet here: an update already recorded,
        stale or transient changes nothing, so each change yields its events once."""
        async with self._apply_lock:
            return await self._apply_order_update(order, path)

    async def _apply_order_update(self, order: BrokerOrder, path: str) -> bool:
        row = await self.db.run(self.journal.by_broker_id, order.order_id)
        status = order.status
        filled = order.filled_quantity
        if row is None or row.terminal or status in TRANSIENT_STATUSES:
            UPDATES.labels(path, "ignored").inc()
            return False
        if filled < row.filled_quantity or (status == row.status and filled == row.filled_quantity):
            UPDATES.labels(path, "duplicate").inc()
            return False
        pending = order.pending_quantity
        average = order.average_price
        if filled > row.filled_quantity and path not in ("poll", "sweep"):
            # the trades behind the new fills come first (polling and the sweep read them from
            # the trade book)
            try:
                for trade in await self.gateway.order_trades(order.order_id):
                    await self._apply_trade(row, trade)
            except KiteSessionError:
                await self.session.expire("TokenException from Kite")
            except (KiteUnavailable, RateLimitTimeout) as exc:
                # the order stays tracked: the next poll reads the trade book (and asked now)
                TRADE_FETCH_FAILED.inc()
                log.warning(
                    "order.trades_failed", client_order_id=row.client_order_id, error=str(exc)
                )
                self._poll_now.set()
        coid = row.client_order_id
        if status in TERMINAL and filled > 0:
            recorded = await self.db.run(self.journal.traded_quantity, coid)
            if recorded < filled:
                # COMPLETE (or CANCELLED after part fills) only once every trade is recorded:
                # until then the row stays live, so polling and the sweep fetch the trades
                UPDATES.labels(path, "awaiting_trades").inc()
                log.info(
                    "order.awaiting_trades",
                    client_order_id=coid,
                    status=status,
                    filled=filled,
                    recorded=recorded,
                )
                self._poll_now.set()
                return False
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
                        reason=order.status_message,
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
                        message=order.status_message or "rejected by Kite/exchange",
                    ),
                )
            )
        updated = await self.db.run(
            self.journal.update_if,
            coid,
            status=status,
            filled_quantity=filled,
            average_price=average,
            events=events,
            expect=(row.status, row.filled_quantity),
            **(
                {"reason": "exchange", "message": order.status_message}
                if status == "REJECTED"
                else {}
            ),
        )
        if updated is None:  # another path or replica recorded it first
            UPDATES.labels(path, "duplicate").inc()
            return False
        UPDATES.labels(path, "applied").inc()
        if status in TERMINAL:
            ORDERS.labels(status).inc()
        return True

    async def flush_outbox(self) -> int:
        """Publish journaled events in order; drop each after it reached Redis.

        Only the order placer publishes (a replica that journals a postback leaves its events
        to the placer's next round), and one flush at a time, so each event goes out once
        (a crash between publish and drop re-publishes it with the same envelope id)."""
        if not self.leader:
            return 0
        return await self._relay.drain()  # the relay sends one batch at a time

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
            await wait_event(self._poll_now, self.settings.poll_interval_seconds)
