"""Bus handlers of the engine.

Two consumers, each its own task and lock: control (`system.events`, `orders.events`,
`portfolio.events`) and market data (`market.bars.*`, `market.ticks`), so a kill switch or a
fill is never queued behind a backlog of ticks and bars. The live loop's work (its state and
its SQL) goes through one `EngineGate`: one step at a time, in a worker thread, so the event
loop stays free for the control consumer and the HTTP routes. System events do not wait for
the gate: they only swap flags in memory (`LiveEngine.on_system_event`).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from dalal_engine.live import BarsOutcome, LiveEngine
from dalal_shared.audit import audit
from dalal_shared.bus import Handler, Publisher
from dalal_shared.dbthread import Checkpoints
from dalal_shared.dispatch import dispatcher
from dalal_shared.logging import get_logger
from dalal_shared.messages import (
    Bar,
    DataStale,
    Envelope,
    EquitySnapshot,
    KillSwitchEngaged,
    KillSwitchReleased,
    KiteSessionRefused,
    Message,
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
    ReconcileCompleted,
    SessionClosed,
    SessionExpired,
    SessionValid,
    Tick,
)
from dalal_shared.streams import ORDERS_COMMANDS

T = TypeVar("T")
log = get_logger(__name__)

# the engine's store is opened with `own_checkpoints`: the bars handler checkpoints SQLite's
# write-ahead log once a read's orders are out, at most this often (seconds)
CHECKPOINT_INTERVAL_SECONDS = 1.0

# a history read at a bar (up to 20,000 bars a symbol after weeks live) is frozen out of the
# cyclic collector's walk once this many bars were read since the last time
FREEZE_HISTORY_BARS = 2_000


def freeze_histories(live: LiveEngine) -> bool:
    """After a step's orders are out: when the steps since the last time read histories of at
    least `FREEZE_HISTORY_BARS` bars, one full collection and `gc.freeze`, as at start-up
    (`dalal_shared.service.freeze_after_start`). The histories are read at a symbol's first
    bar, after start-up, so they stayed in the collector's walk: with 5 symbols of 19,000 bars
    a full collection took 60-90 ms, landing in some bar's step every few hours. Frozen bars
    are still freed by reference counting when the history is cut back. Returns whether it
    froze."""
    if live.history_read < FREEZE_HISTORY_BARS:
        return False
    live.history_read = 0
    gc.collect()
    gc.freeze()
    return True


class EngineGate:
    """The live loop one step at a time, off the event loop (SQL and indicators run in a
    worker thread while the loop serves control events and HTTP). The lock is fair: a fill
    waiting for it goes before the next tick of a backlog."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.outbox = asyncio.Lock()  # one outbox flush at a time

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._lock:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def run_here(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`run` on the event loop itself, for a step known to be short and local (CPU and a
        SQLite file: `LiveEngine.local_step`): no hand-off to a worker thread and back (two
        wake-ups, 0.2-0.7 ms of a minute's step on a VM), the loop held for the step's few
        milliseconds instead."""
        async with self._lock:
            return fn(*args, **kwargs)


async def publish_new(
    live: LiveEngine,
    publisher: Publisher,
    gate: EngineGate,
    *,
    corr: str | None = None,
    corrs: Mapping[str, str | None] | None = None,
) -> None:
    """The protections at the exchange that changed (exchange_stop), then every stored intent
    not published yet (the orders' outbox) in one round trip, then mark them; then the store's
    outbox: the cancels and decisions of the same steps, written with them (ids and corr fixed
    then). `corrs`: the corr of each new order by client_order_id (a burst of bars), `corr`
    for the others."""
    async with gate.outbox:
        await publish_new_locked(live, publisher, gate, corr=corr, corrs=corrs)


async def publish_new_locked(
    live: LiveEngine,
    publisher: Publisher,
    gate: EngineGate,
    *,
    corr: str | None = None,
    corrs: Mapping[str, str | None] | None = None,
    commands: list[PlaceOrder] | None = None,
) -> None:
    """`publish_new` with `gate.outbox` held by the caller; `commands`: the unpublished
    intents when the caller has just read them (under the same lock)."""
    if live.protects:  # stops at the exchange first: a GTT goes before its exit order
        protections, wanted = await gate.run(live.protection_commands)
        for message in protections:
            await publisher.publish(ORDERS_COMMANDS, message, corr=corr)
            audit(log, message, corr=corr)
        if protections:
            live.protections_sent(wanted)
    if commands is None:
        commands = await asyncio.to_thread(live.store.unpublished)
    if commands:
        chosen = [(corrs or {}).get(c.client_order_id, corr) for c in commands]
        # at once (MULTI/EXEC): the broker reads them in one batch
        await publisher.publish_many(ORDERS_COMMANDS, commands, corrs=chosen, atomic=True)
        await asyncio.to_thread(live.store.mark_published, *(c.client_order_id for c in commands))
        for command, command_corr in zip(commands, chosen, strict=True):
            audit(log, command, corr=command_corr)
    await drain_outbox(live)


async def drain_outbox(live: LiveEngine, *, always: bool = False) -> None:
    """Publish the store's outbox when a step wrote to it (or `always`: at start, and on the
    retry loop after a failure); the flag is cleared only once Redis has the rows."""
    store = live.store
    if live.relay is None or not (always or store.outbox_written):
        return
    store.outbox_written = False
    try:
        await live.relay.drain()
    except Exception:
        store.outbox_written = True  # the next step or the retry loop tries again
        raise


async def publish_decisions(
    live: LiveEngine, publisher: Publisher, *, corr: str | None = None
) -> None:
    """The decisions (RiskDecided) and cancels the last steps wrote to the store's outbox."""
    await drain_outbox(live)


async def publish_outcome(
    live: LiveEngine,
    publisher: Publisher,
    gate: EngineGate,
    new: list[Any],
    *,
    corr: str | None = None,
    corrs: Mapping[str, str | None] | None = None,
    protect: bool = False,
) -> None:
    """After a step: the new orders, then the cancels and decisions (the outbox); with
    stops at the exchange, after every order event and bar (a fill or a bar moves them)."""
    if new or live.store.outbox_written or protect:
        await publish_new(live, publisher, gate, corr=corr, corrs=corrs)


def order_events_handler(
    live: LiveEngine, publisher: Publisher | None = None, gate: EngineGate | None = None
) -> Handler:
    """Order events move the engine's intents along (strategy and hand-sent ones alike)."""
    gate = gate or EngineGate()

    async def on_event(event: Message, envelope: Envelope) -> None:
        new = await gate.run(live.traced, envelope.corr, live.on_order_event, event)
        if publisher is not None:  # bars that waited for this order, decided now
            await publish_outcome(
                live, publisher, gate, new, corr=envelope.corr, protect=live.protects
            )

    return dispatcher(
        {
            OrderAccepted: on_event,
            OrderRejected: on_event,
            OrderUpdated: on_event,
            OrderFilled: on_event,
            OrderCancelled: on_event,
            ProtectionPlaced: None,  # the stop at the exchange (its order's fills come as usual)
            ProtectionRemoved: None,
        }
    )


_SYMBOL_KEY = b'"symbol":"'


def _symbol_test(symbols: frozenset[str]) -> Callable[[bytes], bool]:
    """Whether a bar's raw JSON names one of `symbols` (the feed writes
    `{"exchange":..,"symbol":"X",..`); a bar it cannot read that way counts as one (a misjudged
    bar is still decided, in the bus's second step)."""
    wanted = frozenset(s.encode() for s in symbols)

    def named(data: bytes) -> bool:
        start = data.find(_SYMBOL_KEY)
        if start < 0:
            return True
        start += len(_SYMBOL_KEY)
        end = data.find(b'"', start)
        return end < 0 or data[start:end] in wanted

    return named


class BarsHandler:
    """`market.bars.<interval>`. One bar at a time, or a bus read's bars at once (`batch`):
    at a minute's close the feed publishes one bar per symbol together, and deciding them
    one transaction and one publish each would keep the last traded symbol's order waiting
    behind all the others. In a batch the traded symbols' bars are decided in one step and
    one transaction, their orders go out in one round trip, and only then are the bars
    nobody trades stored (`LiveEngine.on_bars`). A step that reads nothing from outside the
    process (`LiveEngine.local_step`) runs on the event loop, the others in a worker thread."""

    def __init__(self, live: LiveEngine, publisher: Publisher, gate: EngineGate) -> None:
        self.live, self.publisher, self.gate = live, publisher, gate
        self._one = dispatcher({Bar: self._on_bar})
        self._urgent = _symbol_test(live.traded_symbols())
        # the store is opened with `own_checkpoints`: its log is checkpointed once a read's
        # orders are out, so no step's commit stops for SQLite's own checkpoint (4-6 ms every
        # few hundred commits: the step's p99)
        self.checkpoints = Checkpoints(
            lambda: live.store.checkpoint(), interval=CHECKPOINT_INTERVAL_SECONDS, name="engine"
        )

    def urgent(self) -> Callable[[bytes], bool]:
        """The bus's hint (`dalal_shared.bus.urgent_first`): a read's bars of the symbols some
        instance trades are decoded and decided first; the other symbols' bars (45 of a
        minute's 50 in the latency bench, ~20 us each to decode) only once those orders are
        out."""
        return self._urgent

    async def __call__(self, envelope: Envelope) -> None:
        await self._one(envelope)

    async def _on_bar(self, bar: Bar, envelope: Envelope) -> None:
        live = self.live
        live.data_fresh()
        run = self.gate.run_here if live.local_step([(bar, envelope.corr)]) else self.gate.run
        new = await run(live.traced, envelope.corr, live.on_bar, bar)
        await publish_outcome(
            live, self.publisher, self.gate, new, corr=envelope.corr, protect=live.protects
        )
        freeze_histories(live)
        self.checkpoints.soon()

    async def batch(self, envelopes: Sequence[Envelope]) -> set[str]:
        bars = [e for e in envelopes if isinstance(e.message, Bar)]
        if not bars:
            return set()
        if len(bars) == 1:  # a read of one bar, or a minute's one traded bar (`urgent`): as
            # one by one, in this step's turn (left to the one-by-one path, it would wait
            # for the step of the other symbols' bars)
            await self._on_bar(cast(Bar, bars[0].message), bars[0])
            return {bars[0].id}
        items = [(cast(Bar, e.message), e.corr) for e in bars]
        live = self.live
        live.data_fresh()

        def step() -> tuple[BarsOutcome, list[PlaceOrder] | None]:
            out = live.on_bars(items, defer_quiet=True)
            # the orders to publish, read in the same step (no second trip to the thread)
            return out, live.store.unpublished() if out.orders else None

        async with self.gate.outbox:  # no other publisher between the step and its orders
            if live.local_step(items):
                out, commands = await self.gate.run_here(step)
            else:  # a history to read (the store, Kite's candles) or a database server
                out, commands = await self.gate.run(step)
            if out.orders or live.store.outbox_written or live.protects:
                await publish_new_locked(
                    live, self.publisher, self.gate, corrs=out.corrs, commands=commands
                )
        if out.unsettled:  # the bars nobody trades, once the orders are out

            def quiet() -> None:
                live.store.store_bars(live.settle_quiet(out))

            await self.gate.run(quiet)
        freeze_histories(live)
        self.checkpoints.soon()
        return {e.id for e in bars}


def bars_handler(live: LiveEngine, publisher: Publisher, gate: EngineGate) -> BarsHandler:
    return BarsHandler(live, publisher, gate)


def ticks_handler(live: LiveEngine, publisher: Publisher, gate: EngineGate) -> Handler:
    """`market.ticks`: stops and targets between bars. A tick of a symbol without an open
    position is done on the event loop (no thread, no lock)."""

    async def on_tick(tick: Tick, envelope: Envelope) -> None:
        live.data_fresh()
        if not live.may_act_on(tick):
            await asyncio.sleep(0)  # let control events in between the ticks of a batch
            return
        new = await gate.run(live.traced, envelope.corr, live.on_tick, tick)
        await publish_outcome(live, publisher, gate, new, corr=envelope.corr)

    return dispatcher({Tick: on_tick})


def portfolio_events_handler(live: LiveEngine, gate: EngineGate) -> Handler:
    async def on_equity(event: EquitySnapshot, _envelope: Envelope) -> None:
        await gate.run(live.on_equity, event)

    return dispatcher(
        {
            EquitySnapshot: on_equity,
            PositionOpened: None,
            PositionReduced: None,
            PositionClosed: None,
        }
    )


def system_events_handler(live: LiveEngine) -> Handler:
    async def on_event(event: Message, _envelope: Envelope) -> None:
        live.on_system_event(event)  # in memory, at once: never behind the gate

    return dispatcher(
        {
            KillSwitchEngaged: on_event,
            KillSwitchReleased: on_event,
            SessionValid: on_event,
            SessionExpired: on_event,
            DataStale: on_event,
            SessionClosed: None,  # end-of-day work is the portfolio's; the risk day rolls itself
            ReconcileCompleted: None,  # for alerts and operators
            KiteSessionRefused: None,  # the broker checks; its SessionExpired follows
        }
    )
