"""The live loop: the same strategies and risk manager as the backtester, driven by bus events.

A completed bar (`market.bars.<interval>`) is added to the symbol's history; when the loop is
running, each strategy instance trading that symbol and interval computes its indicators over
the history, is asked about the last bar, and its signals pass the risk manager. Approved
signals become `PlaceOrder` commands whose `client_order_id` is derived from (strategy
instance, symbol, signal bar, leg). The bar, the strategy state, the intents and the decisions
are stored in one transaction before anything is published, and an intent whose id is already
stored is not new: a bar delivered again (after a crash, or twice) never makes a second order.
Fills of its own orders (`orders.events`) move the strategy's position; `system.events` set
the kill switch, session and data-staleness flags; `portfolio.events` equity snapshots give
the equity and cash for sizing and the day's loss limit.

Safety first: the engine starts knowing neither the kill switch, the session nor the equity;
until their owners told it (`safety.py`), entries are refused with `safety_state_unknown`.
Every time is the market clock's (`clock.py`): a decision on a bar is stamped with the time its
order reaches the market (as in the backtester), and a bar older than the allowed delay on that
clock is used for the indicators only, never for an order (a backlog after a restart warms the
history up and trades nothing). A bar whose symbol has an order in flight is decided when the
order settles. The engine runs, is paused (no entries; exits, stops and targets keep working)
or is stopped (nothing decided: allowed only when flat, or when told to abandon the exits).

The store is injected (the SQL adapter in production); the clock too. The methods are
synchronous and touch SQL: the handlers call them one at a time in a worker thread
(`handlers.EngineGate`), so the event loop stays free; `on_system_event` and `restore` only
swap in-memory values and run on the loop at once (a kill switch never waits for a bar).
"""

from __future__ import annotations

import copy
import enum
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Literal, Protocol, TypeVar

from numpy.typing import NDArray

from dalal_engine import indicators as ta
from dalal_engine import intraday, metrics
from dalal_engine.barcolumns import BarColumns
from dalal_engine.clock import ExchangeClock, MarketClock
from dalal_engine.orderids import client_order_id
from dalal_engine.risk import (
    MANUAL,
    AccountState,
    MarketState,
    RiskConfig,
    RiskDecision,
    RiskManager,
)
from dalal_engine.safety import SafetyTracker
from dalal_engine.store import TERMINAL_STATUSES, EngineStore, Intent, StoredBar, SymbolState
from dalal_engine.strategy import Action, BarContext, BarSeries, Level, PositionView, Strategy
from dalal_engine.strategyconfig import StrategyConfig
from dalal_engine.timing import bar_duration, order_time, session_bounds, session_open_of
from dalal_shared import accounting
from dalal_shared.calendar import CalendarCoverageError, NseCalendar, nse_calendar
from dalal_shared.errors import ConflictError, PermanentError
from dalal_shared.messages import (
    Bar,
    CancelOrder,
    CancelProtection,
    DataStale,
    EquitySnapshot,
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
    ProtectPosition,
    SessionExpired,
    SessionValid,
    Tick,
)
from dalal_shared.timeutil import to_ist

HISTORY_FLOOR_BARS = 300  # bars of warm-up loaded before the first live bar (at least)
# The history then grows from that first bar and is not slid along: indicators are computed over
# it from the same first bar each time, as the backtester computes them over its whole series,
# so the same bars give the same decisions (a sliding window re-seeds the EMA/ATR every bar).
# Only past this many bars is the history cut back (to its last HISTORY_FLOOR_BARS-or-more).
HISTORY_CAP_BARS = 20_000
TICK_MAX_DELAY = timedelta(seconds=60)  # a tick older than this on the market clock moves no level
EXIT_LEGS = ("X", "S", "F", "Q")  # orders that close the whole position (Q: MIS square-off)
T = TypeVar("T")


class OutboxRelayLike(Protocol):
    """What publishes the store's outbox (`dalal_shared.outbox.OutboxRelay`)."""

    async def drain(self) -> int: ...


# why the engine cancels an order of its own (CancelOrder.reason)
STALE = "stale: not filled by the next bar"
SUPERSEDED = "superseded: the stop was hit"
FLATTEN = "flatten: exiting every position"
PROTECT_LEG = "G"  # the exit a protective GTT at the exchange places (exchange_stop, CNC)
# an MIS position's stop at the exchange (exchange_stop, MIS) is an SL-M sell, legs P1, P2, ...:
# a fresh id for each one placed after the last was cancelled (a journaled id never goes twice)
SLM_LEG = "P"
MAKE_WAY = "make way: the engine's own sell goes once the stop at the exchange is cancelled"
SLM_SOLD = "the stop at the exchange sold first"
SLM_TOO_BIG = "the stop at the exchange covered more than the position holds"
SLM_CANCEL_AGAIN_SECONDS = 5.0
TICK = Decimal("0.05")


DISABLED_KEY = "disabled_strategies"


class Mode(enum.StrEnum):
    RUNNING = "running"  # decides entries and exits
    PAUSED = "paused"  # no new entries; exits, stops and targets keep working
    STOPPED = "stopped"  # decides nothing (history is still recorded)


class NotFlatError(ConflictError):
    code = "not_flat"


class RiskRefused(PermanentError):
    """A manual order the risk manager refused (422 `risk_refused`; `reason` is its code)."""

    code = "risk_refused"
    status_code = 422

    def __init__(self, decision: RiskDecision):
        detail = f": {decision.detail}" if decision.detail else ""
        super().__init__(
            f"refused by the engine's risk manager ({decision.reason}){detail}",
            extra={"reason": decision.reason},
        )
        self.reason = decision.reason


@dataclass
class BarsOutcome:
    """What `LiveEngine.on_bars` did: the new orders (stored, not yet published) with the corr
    of the bar each came from, and the bars nobody decided on, still to be stored."""

    orders: list[PlaceOrder] = field(default_factory=list)
    corrs: dict[str, str | None] = field(default_factory=dict)
    quiet: list[tuple[str, str, str, StoredBar]] = field(default_factory=list)
    unsettled: list[Bar] = field(default_factory=list)  # quiet bars left for `settle_quiet`


@dataclass
class _Instance:
    config: StrategyConfig
    strategy: Strategy
    risk: RiskManager


class LiveEngine:
    def __init__(
        self,
        configs: list[StrategyConfig],
        store: EngineStore,
        *,
        initial_equity_rupees: Decimal,
        clock: MarketClock | None = None,
        calendar: NseCalendar | None = None,
        warmup: Callable[[str, str, str], list[StoredBar]] | None = None,
        max_signal_delay_seconds: float | None = None,
        safety_known: tuple[str, ...] = (),
        start_mode: str = "stopped",
        manual_risk: RiskConfig | None = None,
    ):
        cal = calendar or nse_calendar()
        self.calendar = cal
        # the intents still in flight, by client_order_id (loaded once; kept current in memory)
        self._open: dict[str, Intent] = {
            i.command.client_order_id: i for i in store.intents(open_only=True)
        }
        # decisions (RiskDecided) and cancels of stale or superseded orders go to the store's
        # outbox in the transaction of their step; a restarted engine sends the cancels of
        # intents still CANCELLING again (cancelling twice is harmless)
        store.requeue_cancels()
        # the relay that publishes that outbox (set by the app; None in process-free tests)
        self.relay: OutboxRelayLike | None = None
        self.instances = {
            c.name: _Instance(c, c.build(), RiskManager(c.risk, cal)) for c in configs
        }
        # the symbols some instance decides on as bars come (the instances never change)
        self._traded = frozenset(s for c in configs if c.schedule is None for s in c.universe)
        if MANUAL in self.instances:
            raise ValueError(f"{MANUAL!r} is the name of hand-sent orders: rename that instance")
        # orders sent by hand through the engine: their own book (strategy "manual") and limits
        self.manual_risk = RiskManager(manual_risk or RiskConfig(), cal)
        self.store = store
        self.clock: MarketClock = clock if clock is not None else ExchangeClock()
        for interval, start in store.latest_bars().items():  # where the market was
            self.clock.observe(_bar_close(interval, start, cal))
        self.max_signal_delay = (
            timedelta(seconds=max_signal_delay_seconds)
            if max_signal_delay_seconds is not None
            else None
        )
        self.safety = SafetyTracker(safety_known)
        self.market = MarketState()
        self._refresh_safety()
        self.equity = float(initial_equity_rupees)
        self.cash = float(initial_equity_rupees)
        self.states: dict[tuple[str, str], SymbolState] = store.states()
        self.held_symbols: frozenset[str] = frozenset()
        self._update_held()
        self.warmup = warmup
        self._mode = _stored_mode(store, Mode(start_mode))
        # strategies switched off by hand (no new entries; their exits keep working)
        self.disabled: set[str] = set(json.loads(store.get_meta(DISABLED_KEY) or "[]"))
        _observe_mode(self._mode)
        # levels whose exit the kill switch refused: recorded once, not on every tick
        self._refused_levels: set[tuple[str, str, str]] = set()
        self._history: dict[tuple[str, str, str], list[StoredBar]] = {}
        # bars read into histories since the handlers last froze them (`freeze_histories`)
        self.history_read = 0
        self._columns: dict[tuple[str, str, str], BarColumns] = {}  # the histories as arrays
        # per (instance, symbol): where the recursive indicators stopped (`ta.continuing`)
        self._recursions: dict[tuple[str, str], dict[Any, Any]] = {}
        for inst in self.instances.values():
            self._observe_risk(inst)
        # what the exchange holds for each protected position (exchange_stop), as last sent;
        # empty at start, so a restarted engine sends every protection again (idempotent)
        self._protected: dict[tuple[str, str], ProtectPosition] = {}
        self.protects = any(i.config.exchange_stop for i in self.instances.values())
        # MIS stops at the exchange (SL-M): the terms last asked of each by a ModifyOrder, and
        # the stop price of the last one the broker or Kite refused (not placed again until the
        # stop moves; the engine's own intrabar stop covers the position meanwhile)
        self._slm_asked: dict[str, tuple[Decimal, int]] = {}
        self._slm_refused: dict[tuple[str, str], Decimal] = {}
        self._slm_cancel_asked: dict[str, float] = {}  # monotonic time of the last cancel asked
        self._resume_held()

    # ---------------------------------------------------------------- control
    def set_enabled(self, name: str, enabled: bool) -> None:
        """Switch one strategy instance's entries on or off (kept across restarts); its exits,
        stop-losses and targets keep working either way. KeyError for an unknown instance."""
        if name not in self.instances:
            raise KeyError(name)
        if enabled:
            self.disabled.discard(name)
        else:
            self.disabled.add(name)
        self.store.set_meta(DISABLED_KEY, json.dumps(sorted(self.disabled)))

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def running(self) -> bool:
        return self._mode is Mode.RUNNING

    def _set_mode(self, mode: Mode) -> None:
        self.store.set_meta("mode", mode.value)
        self._mode = mode
        _observe_mode(mode)

    def start(self) -> None:
        """Run (from paused or stopped): entries and exits."""
        self._set_mode(Mode.RUNNING)

    def resume(self) -> None:
        self.start()

    def pause(self) -> None:
        """No new entries; exits, stops and targets keep working."""
        self._set_mode(Mode.PAUSED)

    def stop(self, *, abandon_exits: bool = False) -> None:
        """Decide nothing more. Only when flat (no position, no order in flight), else
        `NotFlatError`, unless `abandon_exits`: then open positions are left without their
        exits, stops and targets until the engine runs again."""
        if not abandon_exits:  # hand-sent positions have no exits here to strand
            held = [p for p in self.open_positions() if p["strategy"] != MANUAL]
            if held or self._open:
                raise NotFlatError(
                    f"{len(held)} open position(s) and {len(self._open)} order(s) in flight: "
                    "stopping would leave them without exits, stops and targets; pause or "
                    "flatten instead, or stop with abandon_exits=true"
                )
        self._set_mode(Mode.STOPPED)

    def open_positions(self) -> list[dict[str, Any]]:
        return [
            {
                "strategy": k[0],
                "symbol": k[1],
                "quantity": s.quantity,
                "average_price": str(s.average_price),
            }
            for k, s in self.states.items()
            if s.quantity
        ]

    def watches_ticks(self) -> bool:
        """Whether any instance's strategy has intrabar levels (else `market.ticks` is not
        consumed at all)."""
        return any(type(i.strategy).levels is not Strategy.levels for i in self.instances.values())

    def traded_symbols(self) -> frozenset[str]:
        """The symbols some instance decides on as bars come (those without a `schedule`)."""
        return self._traded

    def intervals(self) -> set[str]:
        """Bar intervals consumed as events (scheduled instances poll instead)."""
        return {i.config.interval for i in self.instances.values() if i.config.schedule is None}

    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "mode": self._mode.value,
            "running": self.running,
            "kill_switch": self.market.kill_switch,
            "kill_switch_reason": self.market.kill_switch_reason,
            "session_valid": self.market.session_valid,
            "data_stale": self.market.data_stale,
            "safety_state_known": self.market.safety_known,
            "safety_state_missing": list(self.market.safety_missing),
            "market_clock": {"source": self.clock.name, "now": to_ist(now).isoformat()},
            "equity_rupees": f"{self.equity:.2f}",
            "cash_rupees": f"{self.cash:.2f}",
            "strategies": {
                name: {
                    "strategy": i.config.strategy,
                    "enabled": name not in self.disabled,
                    "interval": i.config.interval,
                    "universe": i.config.universe,
                    "risk": i.risk.state(),
                }
                for name, i in self.instances.items()
            },
            "open_positions": self.open_positions(),
            "open_intents": len(self._open),
        }

    # ---------------------------------------------------------------- safety state
    def _refresh_safety(self) -> None:
        self.market = replace(
            self.market,
            safety_known=self.safety.complete,
            safety_missing=tuple(self.safety.missing()),
        )
        metrics.SAFETY_KNOWN.set(1 if self.safety.complete else 0)

    def restore(
        self,
        ticket: dict[str, int],
        *,
        kill_switch: tuple[bool, str] | None = None,
        session_valid: bool | None = None,
        funds: tuple[Decimal, Decimal] | None = None,
    ) -> None:
        """What the owners answered over HTTP (kill switch and reason, session validity,
        equity and cash), asked for with `ticket`; a source the bus spoke about since is
        newer than the answer and keeps its value."""
        m = self.market
        if kill_switch is not None and self.safety.fresh("kill_switch", ticket):
            m = replace(m, kill_switch=kill_switch[0], kill_switch_reason=kill_switch[1])
            self.safety.restored("kill_switch")
        if session_valid is not None and self.safety.fresh("session", ticket):
            m = replace(m, session_valid=session_valid)
            self.safety.restored("session")
        self.market = m
        if funds is not None and self.safety.fresh("equity", ticket):
            self.equity, self.cash = float(funds[0]), float(funds[1])
            self.safety.restored("equity")
        metrics.KILL_SWITCH.set(1 if self.market.kill_switch else 0)
        self._refresh_safety()

    # ---------------------------------------------------------------- bars
    def _history_of(
        self,
        exchange: str,
        symbol: str,
        interval: str,
        need: int,
        before: datetime | None = None,
    ) -> list[StoredBar]:
        """The series' history in memory, read the first time it is asked for. `before`: the
        start of the bar being handled, which the warm-up must not hold (Kite's history has a
        bar as soon as it closes, so a first bar handled after its close would otherwise be
        in the history already and never decided)."""
        key = (exchange, symbol, interval)
        if key not in self._history:
            # every stored bar (up to the cap) and `need` warm-up bars before the first: after
            # a restart the history starts where it started before, so the indicators (and
            # the backtester's over the same bars) stay the same
            bars = self.store.bars(exchange, symbol, interval, max(HISTORY_CAP_BARS, need))
            if self.warmup is not None:
                bound = bars[0].start if bars else before
                older = [
                    b
                    for b in self.warmup(exchange, symbol, interval)
                    if bound is None or b.start < bound
                ]
                bars = older[-need:] + bars
            self._history[key] = bars
            self.history_read += len(bars)
        return self._history[key]

    def _series_of(
        self, exchange: str, symbol: str, interval: str, history: list[StoredBar]
    ) -> BarSeries:
        """The history as the strategy's arrays (kept up to date bar by bar: `BarColumns`)."""
        key = (exchange, symbol, interval)
        columns = self._columns.get(key)
        if columns is None:
            columns = self._columns[key] = BarColumns()
        return columns.series(symbol, history)

    def indicators_of(
        self, inst: _Instance, symbol: str, series: BarSeries
    ) -> dict[str, NDArray[Any]]:
        """The instance's indicators over the symbol's history, as the backtester computes them
        over the whole series; the recursive ones (EMA, ATR) go on from where they stopped at
        the previous bar (`ta.continuing`: the same values, without a pass from bar one)."""
        memo = self._recursions.get((inst.config.name, symbol))
        if memo is None:
            memo = self._recursions[(inst.config.name, symbol)] = {}
        with ta.continuing(memo, series.append_only):
            return inst.strategy.indicators(series)

    def last_bar(self, name: str, symbol: str) -> datetime | None:
        """The last bar the instance decided on for the symbol (None: none yet)."""
        st = self.states.get((name, symbol))
        return st.last_bar if st is not None else None

    def stale(self, interval: str, order_at: datetime) -> bool:
        """Whether a decision whose order should have reached the market at `order_at` comes
        too late on the market clock: more than the configured delay, by default one bar for
        intraday bars and past the close of that session for daily bars."""
        now = self.clock.now()
        if self.max_signal_delay is not None:
            return now > order_at + self.max_signal_delay
        if interval == "day":
            bounds = session_bounds(self.calendar, to_ist(order_at).date())
            return now > (bounds[1] if bounds is not None else order_at + bar_duration("day"))
        return now > order_at + bar_duration(interval)

    def _interested(self, bar: Bar, only: str | None) -> list[_Instance]:
        return [
            i
            for i in self.instances.values()
            if i.config.interval == bar.interval
            and bar.symbol in i.config.universe
            and i.config.exchange == bar.exchange
            and (i.config.name == only if only is not None else i.config.schedule is None)
        ]

    def on_bar(self, bar: Bar, *, only: str | None = None, decide: bool = True) -> list[PlaceOrder]:
        """Handle a completed bar; returns the new order commands to publish (already stored).

        Bar events go to the instances without a `schedule`; the fixed cycle passes `only` (its
        instance), and `decide=False` for bars that only warm the history up.

        When the bar's transaction fails, its history and the instances' states are put back
        as they were (as `on_bars` does), so the same bar handled again (the bus retries it)
        is decided again rather than taken for one decided already."""
        interested = self._interested(bar, only)
        undo = self._undo_point(bar, interested)
        try:
            new, stored = self._bar_step(bar, interested, decide)
        except BaseException:
            undo()
            raise
        stored()
        return new

    def on_bars(
        self, bars: Sequence[tuple[Bar, str | None]], *, defer_quiet: bool = False
    ) -> BarsOutcome:
        """A burst of bars (one bus read; (bar, corr) in stream order), as `on_bar` would
        handle them one after another, with two differences that keep the first order of a
        minute from waiting behind the other 49 symbols: the bars some instance decides on
        are stored in one transaction (a new one where a symbol comes again, so a bar sees
        the orders of the symbol's bar before it), and the bars nobody trades only move the
        market clock here; they are returned, to be stored (`store_bars`) after the orders
        are out. Returns the new orders (stored), each with the corr of its bar.

        `defer_quiet`: the bars nobody trades are not even looked at here (the bus handler's
        way: ~10 us each, half a millisecond a minute on 50 symbols, before the first order);
        they wait in `unsettled` for `settle_quiet`, after the orders are out. Nothing decided
        here reads them: they are other symbols' bars, and a traded bar moves the market
        clock to its own close."""
        out = BarsOutcome()
        run: list[tuple[Bar, str | None, list[_Instance]]] = []
        seen: set[tuple[str, str]] = set()
        for bar, corr in bars:
            interested = self._interested(bar, None)
            if not interested and defer_quiet:
                out.unsettled.append(bar)
                continue
            if interested and (bar.exchange, bar.symbol) in seen:
                self._bars_run(run, out)
                run, seen = [], set()
            if interested:
                seen.add((bar.exchange, bar.symbol))
            run.append((bar, corr, interested))
        self._bars_run(run, out)
        return out

    def local_step(self, bars: Sequence[tuple[Bar, str | None]]) -> bool:
        """Whether `on_bars(bars)` touches nothing outside this process but a local SQLite
        file: every bar some instance decides on has its history in memory (a first bar reads
        it from the store and may ask Kite for candles) and the store is SQLite (a database
        server is a network round trip, and may stall). Such a step is a few milliseconds of
        CPU, and may run on the event loop."""
        if not self.store.local:
            return False
        return all(
            (bar.exchange, bar.symbol, bar.interval) in self._history
            for bar, _corr in bars
            if self._interested(bar, None)
        )

    def settle_quiet(self, out: BarsOutcome) -> list[tuple[str, str, str, StoredBar]]:
        """The quiet bars `on_bars(defer_quiet=True)` left: the market clock and the histories
        in memory move, as `on_bars` would have done; the bars to store (`out.quiet`)."""
        for bar in out.unsettled:
            self._quiet_bar(bar, out.quiet)
        out.unsettled = []
        return out.quiet

    def _bars_run(
        self, run: list[tuple[Bar, str | None, list[_Instance]]], out: BarsOutcome
    ) -> None:
        """Bars of distinct traded symbols (and quiet ones), in order, in one transaction.
        When it fails, the traded bars' histories and strategy states are put back as they
        were, so the same bars handled again (the bus's one-by-one path) are decided again."""
        committed: list[Callable[[], None]] = []
        undo: list[Callable[[], None]] = []
        try:
            with self.store.batch():
                for bar, corr, interested in run:
                    if not interested:
                        self._quiet_bar(bar, out.quiet)
                        continue
                    undo.append(self._undo_point(bar, interested))
                    self.store.corr = corr
                    new, stored = self._bar_step(bar, interested, True)
                    committed.append(stored)
                    for cmd in new:
                        out.orders.append(cmd)
                        out.corrs[cmd.client_order_id] = corr
        except BaseException:
            for restore in reversed(undo):
                restore()
            raise
        finally:
            self.store.corr = None
        for stored in committed:
            stored()

    def _undo_point(self, bar: Bar, interested: list[_Instance]) -> Callable[[], None]:
        """What puts a bar's history and its instances' states back as they are now (the
        risk managers' counters stay: they only make the next decision more careful)."""
        key = (bar.exchange, bar.symbol, bar.interval)
        history = self._history.get(key)
        length = len(history) if history is not None else 0
        first = history[0] if history else None
        saved = []
        for inst in interested:
            st = self.states.get((inst.config.name, bar.symbol))
            kept = None if st is None else (st.last_bar, copy.deepcopy(st.state))
            saved.append(((inst.config.name, bar.symbol), st, kept))

        def restore() -> None:
            now = self._history.get(key)
            if history is None or now is not history or (history and history[0] is not first):
                self._history.pop(key, None)  # loaded or trimmed since: read it again
            else:
                del history[length:]
            for state_key, st, kept in saved:
                if st is None or kept is None:
                    self.states.pop(state_key, None)
                else:
                    st.last_bar, st.state = kept

        return restore

    def _quiet_bar(self, bar: Bar, quiet: list[tuple[str, str, str, StoredBar]]) -> None:
        """A bar no instance decides on: the market clock and a history already in memory
        move; its row is left for later (`store_bars`)."""
        self.clock.observe(_bar_close(bar.interval, bar.start, self.calendar))
        stored = _stored(bar)
        history = self._history.get((bar.exchange, bar.symbol, bar.interval))
        if history is not None and (not history or bar.start > history[-1].start):
            history.append(stored)
            if len(history) > HISTORY_CAP_BARS:
                del history[:-HISTORY_FLOOR_BARS]
        quiet.append((bar.exchange, bar.symbol, bar.interval, stored))

    def _bar_step(
        self, bar: Bar, interested: list[_Instance], decide: bool
    ) -> tuple[list[PlaceOrder], Callable[[], None]]:
        """One bar's work up to its rows (written in the store's open batch, or committed at
        once); returns the new orders and what to do once the rows are committed."""
        need = max([HISTORY_FLOOR_BARS] + [3 * i.strategy.warmup_bars for i in interested])
        history = self._history_of(bar.exchange, bar.symbol, bar.interval, need, bar.start)
        stored = _stored(bar)
        is_new = not history or bar.start > history[-1].start
        if is_new:
            history.append(stored)
            if len(history) > max(HISTORY_CAP_BARS, need):
                del history[:-need]
        close = _bar_close(bar.interval, bar.start, self.calendar)
        self.clock.observe(close)
        order_at = order_time(bar.interval, bar.start, self.calendar)
        # the order reaches the market at its order time (the backtester's instant), or now
        # when the bar is handled later than that
        at = max(order_at, self.clock.now())
        names = {i.config.name for i in interested}
        cancels = [
            i.command.client_order_id
            for i in self._open.values()
            if is_new
            and decide
            and i.status != "CANCELLING"
            and i.command.symbol == bar.symbol
            and i.strategy in names
            and i.leg == "E"
            and i.created_at is not None
            and i.created_at < bar.start
        ]
        states: dict[str, SymbolState] = {}
        intents: list[Intent] = []
        decisions: list[tuple[RiskDecision, str | None]] = []
        if self._mode is not Mode.STOPPED and is_new and decide and interested:
            if self.stale(bar.interval, order_at):
                for inst in interested:  # indicators only: the history grew, nothing trades
                    metrics.STALE_BARS.labels(inst.config.name).inc()
            else:
                in_flight = {i.command.symbol for i in self._open.values() if not _is_slm(i)}
                series: BarSeries | None = None
                for inst in interested:
                    # the day's loss is marked at every bar's close, decided on or not
                    inst.risk.mark(close, self.equity)
                    self._observe_risk(inst)
                    name = inst.config.name
                    st = self.states.setdefault((name, bar.symbol), SymbolState(state={}))
                    if st.last_bar is not None and st.last_bar >= bar.start:
                        continue  # this strategy has decided on this bar already
                    if bar.symbol in in_flight:
                        # an order of this symbol is still in flight: the bar is decided when
                        # it settles (`_settled`)
                        metrics.DEFERRED.labels(name).inc()
                        continue
                    if series is None:
                        series = self._series_of(bar.exchange, bar.symbol, bar.interval, history)
                    st.last_bar = bar.start
                    states[name] = st
                    self._decide_bar(
                        inst, st, bar.exchange, bar.symbol, bar.start, series, at, close,
                        intents, decisions,
                    )  # fmt: skip
        intents, make_way = self._hold(intents)
        new = self.store.record_bar(
            exchange=bar.exchange,
            symbol=bar.symbol,
            interval=bar.interval,
            bar=stored,
            states=states,
            intents=intents,
            decisions=decisions,
            cancels=[*cancels, *make_way],
            cancel_reason=STALE,
        )

        def stored_() -> None:
            self._track(intents, new, [*cancels, *(c for c, _ in make_way)])
            self._cancel(cancels, STALE)
            for cmd in new:
                metrics.ORDERS.labels(cmd.strategy or "", cmd.side).inc()

        return new, stored_

    def _decide_bar(
        self,
        inst: _Instance,
        st: SymbolState,
        exchange: str,
        symbol: str,
        bar_start: datetime,
        series: BarSeries,
        at: datetime,
        mark_at: datetime,
        intents: list[Intent],
        decisions: list[tuple[RiskDecision, str | None]],
    ) -> None:
        """The strategy's signals on the last bar of `series`, through the risk manager."""
        name = inst.config.name
        inst.risk.mark(mark_at, self.equity)
        self._observe_risk(inst)
        ind = self.indicators_of(inst, symbol, series)
        if st.state is None:
            st.state = {}
        ctx = BarContext(
            symbol,
            len(series) - 1,
            series,
            ind,
            PositionView(st.quantity, float(st.average_price), st.opened_at),
            st.state,
            self.equity,
            self.cash,
        )
        cfg = inst.config
        signals = intraday.session_end(
            product=cfg.product,
            interval=cfg.interval,
            exit_at=cfg.mis_exit_at,
            order_at=at,
            held=st.quantity,
            signals=inst.strategy.on_bar(ctx),
        )
        for sig in signals:
            coid = client_order_id(name, symbol, bar_start, sig.leg)
            decision = self._decide(
                inst,
                symbol,
                sig.action,
                sig.reference_price,
                sig.stop,
                sig.quantity,
                st.quantity,
                at,
            )
            decision = replace(decision, detail=f"{sig.leg} {sig.reason}; {decision.detail}")
            metrics.DECISIONS.labels(name, decision.action, decision.reason).inc()
            decisions.append((decision, coid if decision.approved else None))
            if decision.approved and decision.quantity > 0:
                cmd = PlaceOrder(
                    client_order_id=coid,
                    exchange=exchange,
                    symbol=symbol,
                    side="BUY" if sig.action is Action.ENTER else "SELL",
                    quantity=decision.quantity,
                    product=inst.config.product,
                    variety=self._variety(),
                    strategy=name,
                )
                intents.append(Intent(cmd, name, "SUBMITTED", 0, False, bar_start))

    def _variety(self) -> Literal["regular", "amo"]:
        """`amo` when the market is closed now (by the market clock): a decision on a daily
        bar, or on the bar that ends at the close, reaches the market at the next session's
        open as an after-market order, the instant the backtester fills it at. Kite takes
        equity AMOs from 16:00 to 08:58 IST (regular orders in session only)."""
        now = self.clock.now()
        try:
            open_now = self.calendar.session_at(now, assume_regular=True) is not None
        except CalendarCoverageError:
            open_now = True
        return "regular" if open_now else "amo"

    def _track(self, intents: list[Intent], new: list[PlaceOrder], cancels: list[str]) -> None:
        """Keep the in-memory book of intents in flight in step with what was stored."""
        created = {c.client_order_id for c in new}
        for intent in intents:
            if intent.command.client_order_id in created:
                self._open[intent.command.client_order_id] = intent
        for coid in cancels:
            open_intent = self._open.get(coid)
            if open_intent is not None and open_intent.status in ("SUBMITTED", "OPEN"):
                self._open[coid] = replace(open_intent, status="CANCELLING")
            elif open_intent is not None and open_intent.status == "HELD":
                del self._open[coid]  # never published: cancelled in the store at once

    def _settled(self, exchange: str, symbol: str) -> list[PlaceOrder]:
        """The symbol's last order settled: decide the bars that waited for it (the latest bar
        of each instance trading the symbol, when it has not decided on it yet and it is not
        stale). Returns the new orders (stored)."""
        if self._mode is Mode.STOPPED or any(
            i.command.symbol == symbol and not _is_slm(i) for i in self._open.values()
        ):
            return []
        new: list[PlaceOrder] = []
        for inst in self.instances.values():
            cfg = inst.config
            if cfg.schedule is not None or symbol not in cfg.universe or cfg.exchange != exchange:
                continue
            st = self.states.get((cfg.name, symbol))
            need = max(HISTORY_FLOOR_BARS, 3 * inst.strategy.warmup_bars)
            history = self._history_of(exchange, symbol, cfg.interval, need)
            if st is None or not history:
                continue
            last = history[-1]
            if st.last_bar is not None and st.last_bar >= last.start:
                continue
            order_at = order_time(cfg.interval, last.start, self.calendar)
            if self.stale(cfg.interval, order_at):
                metrics.STALE_BARS.labels(cfg.name).inc()
                continue
            now = self.clock.now()
            st.last_bar = last.start
            intents: list[Intent] = []
            decisions: list[tuple[RiskDecision, str | None]] = []
            self._decide_bar(
                inst, st, exchange, symbol, last.start,
                self._series_of(exchange, symbol, cfg.interval, history),
                max(order_at, now), now, intents, decisions,
            )  # fmt: skip
            decisions = [
                (replace(d, detail=f"{d.detail} (decided once the order in flight settled)"), c)
                for d, c in decisions
            ]
            intents, make_way = self._hold(intents)
            created = self.store.record_signals(
                symbol=symbol,
                at=last.start,
                states={cfg.name: st},
                intents=intents,
                decisions=decisions,
                cancels=list(make_way),
            )
            self._track(intents, created, [c for c, _ in make_way])
            for cmd in created:
                metrics.ORDERS.labels(cmd.strategy or "", cmd.side).inc()
            new.extend(created)
        return new

    @staticmethod
    def _cancel(coids: list[str], reason: str) -> None:
        """Count the cancels a step stored (their CancelOrder went to the outbox with it)."""
        for _coid in coids:
            metrics.CANCELS.labels(reason.split(":", 1)[0]).inc()

    def traced(self, corr: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one step with the correlation id of the event that caused it: the outbox rows
        it writes (decisions, cancels) carry it. Steps are serialised by the gate."""
        self.store.corr = corr
        try:
            return fn(*args, **kwargs)
        finally:
            self.store.corr = None

    # ---------------------------------------------------------------- ticks: stops and targets
    def may_act_on(self, tick: Tick) -> bool:
        """Cheap test (safe on the event loop): whether a position of the tick's symbol is
        open, so its levels need looking at. Observes the tick's time on the market clock."""
        self.clock.observe(tick.exchange_ts)
        return tick.symbol in self.held_symbols and self._mode is not Mode.STOPPED

    def on_tick(self, tick: Tick) -> list[PlaceOrder]:
        """Exit a position whose stop or target a trade reached between bars. One order per
        level and position: its id is derived from (instance, symbol, position opened at,
        leg), and the strategy state marks the level done in the same transaction, so a tick
        delivered again, or a restart, never exits twice. A stop cancels the position's
        target orders still open (the stop supersedes them). A tick older than a minute on
        the market clock (a backlog) moves nothing."""
        self.clock.observe(tick.exchange_ts)
        if self._mode is Mode.STOPPED:
            return []
        delay = self.max_signal_delay or TICK_MAX_DELAY
        if self.clock.now() - tick.exchange_ts > delay:
            return []
        price = float(tick.last_price)
        hits: list[tuple[_Instance, SymbolState, Level]] = []
        for inst in self.instances.values():
            if tick.symbol not in inst.config.universe or inst.config.exchange != tick.exchange:
                continue
            st = self.states.get((inst.config.name, tick.symbol))
            if st is None or st.quantity <= 0 or st.opened_at is None:
                continue
            pos = PositionView(st.quantity, float(st.average_price), st.opened_at)
            levels = inst.strategy.levels(pos, st.state or {})
            if self._exchange_holds_stop(inst.config.name, tick.symbol, st, levels):
                # an SL-M at the exchange sells at this stop: the engine's own would race it
                levels = [lv for lv in levels if lv.kind != "stop"]
            stop = next((lv for lv in levels if lv.kind == "stop" and lv.hit(price)), None)
            if stop is not None:
                hits.append((inst, st, stop))
            else:
                hits.extend((inst, st, lv) for lv in levels if lv.hit(price))
        if not hits:
            return []
        open_intents = [i for i in self._open.values() if i.command.symbol == tick.symbol]
        states: dict[str, SymbolState] = {}
        intents: list[Intent] = []
        decisions: list[tuple[RiskDecision, str | None]] = []
        cancels: list[str] = []
        for inst, st, level in hits:
            name = inst.config.name
            mine = [i for i in open_intents if i.strategy == name]
            if any(i.leg in EXIT_LEGS for i in mine):
                continue  # already exiting
            refused_key = (name, tick.symbol, level.leg)
            if self.market.kill_switch and refused_key in self._refused_levels:
                continue  # refused already while the switch is engaged
            superseded = [
                i.command.client_order_id
                for i in mine
                if level.kind == "stop" and i.status != "CANCELLING" and i.leg != level.leg
            ]
            if level.kind != "stop" and (any(not _is_slm(i) for i in mine) or name in states):
                continue  # another order of this position is in flight (a resting stop is not)
            coid = client_order_id(name, tick.symbol, st.opened_at or tick.exchange_ts, level.leg)
            if self.store.has_intent(coid):
                continue  # this level's order went out before (filled, rejected or cancelled)
            quantity = min(level.quantity or st.quantity, st.quantity)
            action = Action.EXIT if quantity >= st.quantity else Action.REDUCE
            decision = inst.risk.check_exit(
                strategy=name,
                symbol=tick.symbol,
                action=action.value,
                at=tick.exchange_ts,
                quantity=quantity,
                market=self.market,
            )
            reason = "stop" if level.kind == "stop" else f"target{level.leg[-1]}"
            decision = replace(
                decision,
                detail=f"{level.leg} {reason} intrabar at {price:.2f} (level {level.price:.2f})"
                + (f"; {decision.detail}" if decision.detail else ""),
            )
            metrics.DECISIONS.labels(name, decision.action, decision.reason).inc()
            decisions.append((decision, coid if decision.approved else None))
            if not decision.approved or quantity <= 0:
                self._refused_levels.add(refused_key)
                continue
            cancels.extend(superseded)
            state = dict(st.state or {})
            inst.strategy.on_level(level, state)
            new_state = replace(st, state=state)
            states[name] = new_state
            cmd = PlaceOrder(
                client_order_id=coid,
                exchange=tick.exchange,
                symbol=tick.symbol,
                side="SELL",
                quantity=quantity,
                product=inst.config.product,
                strategy=name,
            )
            intents.append(Intent(cmd, name, "SUBMITTED", 0, False, tick.exchange_ts))
        if not decisions:
            return []
        intents, make_way = self._hold(intents)
        new = self.store.record_signals(
            symbol=tick.symbol,
            at=tick.exchange_ts,
            states=states,
            intents=intents,
            decisions=decisions,
            cancels=[*make_way, *cancels],
            cancel_reason=SUPERSEDED,
        )
        for name, new_state in states.items():
            self.states[(name, tick.symbol)] = new_state
        self._track(intents, new, [*(c for c, _ in make_way), *cancels])
        self._cancel(cancels, SUPERSEDED)
        for cmd in new:
            metrics.ORDERS.labels(cmd.strategy or "", cmd.side).inc()
        return new

    # ---------------------------------------------------------------- flatten
    def flatten(self) -> dict[str, Any]:
        """Exit every open position at market (leg `F`, one order per position: its id comes
        from the position's opening time, so flattening twice sends nothing new), cancel the
        entries and targets in flight, then pause. A position already exiting is left to its
        exit; the kill switch refuses the exits (recorded, and said in the answer)."""
        at = self.clock.now()
        exits: list[PlaceOrder] = []
        refused: list[dict[str, str]] = []
        already: list[str] = []
        cancels_all: list[str] = []
        held: list[str] = []  # exits waiting for their SL-M at the exchange to be cancelled
        for (name, symbol), st in list(self.states.items()):
            inst = self.instances.get(name)
            if inst is None or st.quantity <= 0:
                continue
            mine = [
                i for i in self._open.values() if i.strategy == name and i.command.symbol == symbol
            ]
            if any(i.leg in EXIT_LEGS and i.status != "CANCELLING" for i in mine):
                already.append(f"{name}:{symbol}")
                continue
            coid = client_order_id(name, symbol, st.opened_at or at, "F")
            if self.store.has_intent(coid):
                already.append(f"{name}:{symbol}")
                continue
            decision = inst.risk.check_exit(
                strategy=name,
                symbol=symbol,
                action=Action.EXIT.value,
                at=at,
                quantity=st.quantity,
                market=self.market,
            )
            decision = replace(
                decision,
                detail="F flatten" + (f"; {decision.detail}" if decision.detail else ""),
            )
            metrics.DECISIONS.labels(name, decision.action, decision.reason).inc()
            intents: list[Intent] = []
            cancels = [i.command.client_order_id for i in mine if i.status != "CANCELLING"]
            if decision.approved:
                cmd = PlaceOrder(
                    client_order_id=coid,
                    exchange=inst.config.exchange,
                    symbol=symbol,
                    side="SELL",
                    quantity=st.quantity,
                    product=inst.config.product,
                    strategy=name,
                )
                intents.append(Intent(cmd, name, "SUBMITTED", 0, False, at))
            else:
                refused.append({"strategy": name, "symbol": symbol, "reason": decision.reason})
                cancels = []
            intents, make_way = self._hold(intents)
            held.extend(i.command.client_order_id for i in intents if i.status == "HELD")
            new = self.store.record_signals(
                symbol=symbol,
                at=at,
                states={},
                intents=intents,
                decisions=[(decision, coid if decision.approved else None)],
                cancels=[*make_way, *cancels],
                cancel_reason=FLATTEN,
            )
            self._track(intents, new, [*(c for c, _ in make_way), *cancels])
            cancels_all.extend(cancels)
            exits.extend(new)
        # entries still in flight would open new positions: cancel them too
        entries = [
            coid
            for coid, i in self._open.items()
            if i.leg == "E" and i.status in ("SUBMITTED", "OPEN") and coid not in cancels_all
        ]
        if entries:
            self.store.record_signals(
                symbol="", at=at, states={}, intents=[], decisions=[], cancels=entries,
                cancel_reason=FLATTEN,
            )  # fmt: skip
            self._track([], [], entries)
            cancels_all.extend(entries)
        self._cancel(cancels_all, FLATTEN)
        for cmd in exits:
            metrics.ORDERS.labels(cmd.strategy or "", cmd.side).inc()
        self._set_mode(Mode.PAUSED)
        return {
            "exits": [c.client_order_id for c in exits],
            "exits_waiting_for_stop_cancel": held,
            "exits_refused": refused,
            "already_exiting": already,
            "cancelled": cancels_all,
            "orders": exits,
        }

    def _decide(
        self,
        inst: _Instance,
        symbol: str,
        action: Action,
        price: float | None,
        stop: float | None,
        quantity: int | None,
        held: int,
        at: datetime,
    ) -> RiskDecision:
        if action is Action.ENTER:
            if self._mode is Mode.PAUSED:
                return RiskDecision(
                    at, inst.config.name, symbol, "ENTER", False, "paused", 0, "engine paused"
                )
            if inst.config.name in self.disabled:
                return RiskDecision(
                    at,
                    inst.config.name,
                    symbol,
                    "ENTER",
                    False,
                    "strategy_disabled",
                    0,
                    "strategy disabled",
                )
            open_positions = sum(
                1 for (n, _), s in self.states.items() if n == inst.config.name and s.quantity > 0
            )
            return inst.risk.check_entry(
                strategy=inst.config.name,
                symbol=symbol,
                at=at,
                reference_price=price or 0.0,
                stop=stop,
                fixed_quantity=quantity,
                account=AccountState(self.equity, self.cash, open_positions),
                market=self.market,
            )
        qty = held if action is Action.EXIT else min(quantity or 0, held)
        return inst.risk.check_exit(
            strategy=inst.config.name,
            symbol=symbol,
            action=action.value,
            at=at,
            quantity=qty,
            market=self.market,
        )

    # ---------------------------------------------------------------- orders, portfolio, system
    # ---------------------------------------------------------------- stops at the exchange
    def protection_commands(
        self,
    ) -> tuple[
        list[ProtectPosition | CancelProtection | ModifyOrder | CancelOrder],
        dict[tuple[str, str], ProtectPosition],
    ]:
        """What the exchange should hold for each position of an `exchange_stop` instance.
        CNC: its stop for the whole quantity as a `ProtectPosition` (a GTT at the broker; with
        the strategy's target as the second leg when that target sells the whole position),
        sent when it differs from what was sent last (a new position, a trailed stop, a partial
        exit); a `CancelProtection` once the position is closed or an exit of its own is in
        flight (published before that exit: Kite refuses a CNC sell past the holding, so the
        two never both sell). The exit the GTT places is stored as an intent (leg G) so its
        fills close the position. MIS: an SL-M order (`_slm_commands`; ModifyOrders returned
        here, new SL-Ms stored as intents). Returns the commands and the new GTT state, to be
        passed to `protections_sent` once they are published."""
        wanted: dict[tuple[str, str], ProtectPosition] = {}
        exiting = {
            (i.strategy, i.command.symbol) for i in self._open.values() if i.leg in EXIT_LEGS
        }
        for inst, symbol, st, levels in self._stop_kept_positions("CNC"):
            name = inst.config.name
            price = _stop_of(levels)
            if (name, symbol) in exiting or price is None or st.opened_at is None:
                continue
            wanted[(name, symbol)] = ProtectPosition(
                client_order_id=client_order_id(name, symbol, st.opened_at, PROTECT_LEG),
                exchange=inst.config.exchange,
                symbol=symbol,
                quantity=st.quantity,
                stop_price=price,
                target_price=_whole_target(levels, st.quantity, price),
                strategy=name,
            )
        out: list[ProtectPosition | CancelProtection | ModifyOrder | CancelOrder] = []
        for key, cmd in wanted.items():
            if self._protected.get(key) != cmd:
                exit_order = PlaceOrder(
                    client_order_id=cmd.client_order_id,
                    exchange=cmd.exchange,
                    symbol=cmd.symbol,
                    side="SELL",
                    quantity=cmd.quantity,
                    product="CNC",
                    strategy=cmd.strategy,
                )
                self.store.put_protection_intent(exit_order, key[0], self.clock.now())
                out.append(cmd)
        for key, cmd in self._protected.items():
            if key not in wanted:
                out.append(
                    CancelProtection(
                        client_order_id=cmd.client_order_id,
                        reason="the position closed or is exiting",
                    )
                )
        out.extend(self._slm_commands())
        return out, wanted

    def protections_sent(self, wanted: dict[tuple[str, str], ProtectPosition]) -> None:
        self._protected = wanted

    # ---------------------------------------------------------------- MIS stops at the exchange
    # Kite lets an MIS sell run past the position (a short), so the SL-M at the exchange and a
    # sell of the engine's own must never both be live: the engine's sell is stored HELD and the
    # SL-M cancelled in the same transaction; the sell goes out once the broker reports the
    # SL-M cancelled (cut to what is still held) or is dropped when the SL-M sold first.
    def _slm_of(self, name: str, symbol: str) -> Intent | None:
        """The position's SL-M still live at the exchange (placed, resting or cancelling)."""
        for i in self._open.values():
            if i.strategy == name and i.command.symbol == symbol and _is_slm(i):
                return i
        return None

    def _hold(self, intents: list[Intent]) -> tuple[list[Intent], list[tuple[str, str]]]:
        """Sells of positions whose SL-M is live become HELD, with a cancel of that SL-M."""
        out: list[Intent] = []
        cancels: list[tuple[str, str]] = []
        for intent in intents:
            slm = (
                self._slm_of(intent.strategy, intent.command.symbol)
                if intent.command.side == "SELL" and not _is_slm(intent)
                else None
            )
            if slm is None:
                out.append(intent)
                continue
            out.append(replace(intent, status="HELD"))
            cancel = (slm.command.client_order_id, MAKE_WAY)
            if slm.status != "CANCELLING" and cancel not in cancels:
                cancels.append(cancel)
        return out, cancels

    def _release_held(self, name: str, symbol: str, unseen_filled: int = 0) -> list[PlaceOrder]:
        """The position's SL-M is gone: its HELD sells go out, cut to what is still held (an
        exit of the whole position first, the others dropped), or are dropped when nothing is
        left (the SL-M sold it). `unseen_filled`: shares the SL-M sold whose fills have not
        reached the engine yet. Returns the released orders (to publish)."""
        held = sorted(
            (
                i
                for i in self._open.values()
                if i.strategy == name and i.command.symbol == symbol and i.status == "HELD"
            ),
            key=lambda i: (
                i.leg not in EXIT_LEGS,
                i.created_at.timestamp() if i.created_at is not None else 0.0,
                i.leg,
            ),
        )
        if not held or self._slm_of(name, symbol) is not None:
            return []
        st = self.states.get((name, symbol))
        left = max(0, (st.quantity if st is not None else 0) - unseen_filled)
        released: list[PlaceOrder] = []
        exited = False  # an exit of the whole position went: the rest is superseded
        for intent in held:
            coid = intent.command.client_order_id
            whole = intent.leg in EXIT_LEGS
            quantity = left if whole else min(intent.command.quantity, left)
            if quantity <= 0 or exited:
                self.store.drop_held(coid, SUPERSEDED if exited else SLM_SOLD)
                del self._open[coid]
                continue
            command = intent.command.model_copy(update={"quantity": quantity})
            if self.store.release_held(command):
                self._open[coid] = replace(intent, command=command, status="SUBMITTED")
                released.append(command)  # counted in ORDERS when it was decided
            left -= quantity
            exited = whole
        return released

    def _resume_held(self) -> None:
        """At start: a HELD sell whose SL-M is no longer live is released (the engine died
        between the two); one whose SL-M is still resting gets its cancel again."""
        positions = {
            (i.strategy, i.command.symbol) for i in self._open.values() if i.status == "HELD"
        }
        for name, symbol in positions:
            slm = self._slm_of(name, symbol)
            if slm is None:
                self._release_held(name, symbol)
            elif slm.status in ("SUBMITTED", "OPEN"):
                cancel = (slm.command.client_order_id, MAKE_WAY)
                self.store.record_signals(
                    symbol=symbol, at=self.clock.now(), states={}, intents=[], decisions=[],
                    cancels=[cancel],
                )  # fmt: skip
                self._track([], [], [cancel[0]])

    def _stop_kept_positions(
        self, product: str
    ) -> list[tuple[_Instance, str, SymbolState, list[Level]]]:
        """The open positions of the `exchange_stop` instances of `product`, with their
        strategy's levels (instance, symbol, state, levels)."""
        out = []
        for (name, symbol), st in list(self.states.items()):
            inst = self.instances.get(name)
            if (
                inst is None
                or not inst.config.exchange_stop
                or inst.config.product != product
                or st.quantity <= 0
                or st.opened_at is None
            ):
                continue
            pos = PositionView(st.quantity, float(st.average_price), st.opened_at)
            out.append((inst, symbol, st, inst.strategy.levels(pos, st.state or {})))
        return out

    def _exchange_holds_stop(
        self, name: str, symbol: str, st: SymbolState, levels: list[Level]
    ) -> bool:
        """Whether an SL-M accepted at the exchange sells the whole position at the strategy's
        stop (its trigger is that stop): then the engine leaves the stop to it."""
        slm = self._slm_of(name, symbol)
        if slm is None or slm.status != "OPEN":
            return False
        stop = _stop_of(levels)
        return (
            stop is not None
            and slm.command.trigger_price == stop
            and slm.command.quantity - slm.filled_quantity >= st.quantity
        )

    def _confirm_terms(self, intent: Intent, event: OrderUpdated) -> None:
        """The broker modified the SL-M at the exchange: its terms now."""
        update: dict[str, Any] = {}
        if event.quantity is not None and event.quantity != intent.command.quantity:
            update["quantity"] = event.quantity
        if event.trigger_price is not None and event.trigger_price != intent.command.trigger_price:
            update["trigger_price"] = event.trigger_price
        if not update:
            return
        command = intent.command.model_copy(update=update)
        self.store.set_intent_terms(command)
        self._open[command.client_order_id] = replace(intent, command=command)

    def _slm_commands(self) -> list[ModifyOrder | CancelOrder]:
        """Place, follow or cancel the SL-M of each MIS position of an `exchange_stop`
        instance: a new SL-M (stored as an intent, published with the others) when the
        position has none and nothing of its own in flight; a ModifyOrder when the stop moved
        or the position grew; a cancel when the position is smaller than the SL-M (only a sell
        of its own makes it smaller, and that goes through `_hold`). Nothing while the market
        is closed or past the MIS cut-off, with the kill switch engaged or no session (the
        broker would refuse it; the engine's intrabar stop covers the position). The cancel of
        an SL-M a held sell waits for is asked again every `SLM_CANCEL_AGAIN_SECONDS` (a
        cancel the broker could not act on, e.g. the SL-M had not reached Kite yet, is
        acknowledged and gone)."""
        commands: list[ModifyOrder | CancelOrder] = [*self._cancels_again()]
        now = self.clock.now()
        try:
            session = self.calendar.session_at(now, assume_regular=True)
        except CalendarCoverageError:
            session = None
        market = self.market
        if (
            session is None
            or now >= session.mis_square_off
            or market.kill_switch
            or not market.session_valid
        ):
            return commands
        for inst, symbol, st, levels in self._stop_kept_positions("MIS"):
            assert st.opened_at is not None
            if session.open > st.opened_at:
                # an MIS position of an earlier session was squared off by Kite at its cut-off
                # (the engine's view may not know yet): an SL-M now could only open a short
                continue
            name = inst.config.name
            stop = _stop_of(levels)
            mine = [
                i for i in self._open.values() if i.strategy == name and i.command.symbol == symbol
            ]
            if stop is None or any(not _is_slm(i) for i in mine):
                continue  # no stop, or an order of the position in flight: once it settles
            slm = next(iter(mine), None)
            if slm is None:
                if self._slm_refused.get((name, symbol)) == stop:
                    continue
                self._place_slm(inst, symbol, st, stop, now)
            elif slm.status == "OPEN":
                coid = slm.command.client_order_id
                resting = slm.command.quantity - slm.filled_quantity
                if st.quantity < resting:
                    cancel = (coid, SLM_TOO_BIG)
                    self.store.record_signals(
                        symbol=symbol, at=now, states={}, intents=[], decisions=[],
                        cancels=[cancel],
                    )  # fmt: skip
                    self._track([], [], [coid])
                    continue
                want = (stop, st.quantity + slm.filled_quantity)
                have = (slm.command.trigger_price, slm.command.quantity)
                if want != have and self._slm_asked.get(coid) != want:
                    self._slm_asked[coid] = want
                    commands.append(
                        ModifyOrder(client_order_id=coid, trigger_price=want[0], quantity=want[1])
                    )
        return commands

    def _cancels_again(self) -> list[CancelOrder]:
        waiting = {
            (i.strategy, i.command.symbol) for i in self._open.values() if i.status == "HELD"
        }
        out: list[CancelOrder] = []
        clock = time.monotonic()
        for name, symbol in waiting:
            slm = self._slm_of(name, symbol)
            if slm is None or slm.status != "CANCELLING":
                continue
            coid = slm.command.client_order_id
            last = self._slm_cancel_asked.setdefault(coid, clock)
            if clock - last >= SLM_CANCEL_AGAIN_SECONDS:
                self._slm_cancel_asked[coid] = clock
                out.append(CancelOrder(client_order_id=coid, reason=MAKE_WAY))
        return out

    def _place_slm(
        self, inst: _Instance, symbol: str, st: SymbolState, stop: Decimal, now: datetime
    ) -> None:
        name = inst.config.name
        state = dict(st.state or {})
        seq = int(state.get("_slm_seq", 0)) + 1
        if seq > 99:
            return  # 99 stops for one position: the engine's intrabar stop goes on alone
        state["_slm_seq"] = seq
        assert st.opened_at is not None
        command = PlaceOrder(
            client_order_id=client_order_id(name, symbol, st.opened_at, f"{SLM_LEG}{seq}"),
            exchange=inst.config.exchange,
            symbol=symbol,
            side="SELL",
            quantity=st.quantity,
            order_type="SL-M",
            trigger_price=stop,
            product="MIS",
            strategy=name,
        )
        new_state = replace(st, state=state)
        intent = Intent(command, name, "SUBMITTED", 0, False, now)
        created = self.store.record_signals(
            symbol=symbol, at=now, states={name: new_state}, intents=[intent], decisions=[],
            cancels=[],
        )  # fmt: skip
        self.states[(name, symbol)] = new_state
        self._track([intent], created, [])

    # ---------------------------------------------------------------- orders sent by hand
    def submit_manual(self, command: PlaceOrder, reference_price: float) -> tuple[Intent, bool]:
        """An order sent by hand (`POST /engine/orders`): the same path as a strategy's
        order. Checked by the manual book's risk manager (`RiskManager.check_manual`, valued
        at `reference_price`), then stored as an intent of strategy `manual` with its decision
        in one transaction (the outbox: `publish_new` sends it). Returns (intent, created):
        the id seen before with the same order gives its intent; with another order,
        `ConflictError`; a refusal raises `RiskRefused` (the decision is recorded and pending
        for publication either way)."""
        coid = command.client_order_id
        known = self.store.intent(coid)
        if known is not None:
            if known.command != command:
                raise ConflictError(f"client_order_id {coid} was already used for another order")
            return known, False
        now = self.clock.now()
        held = self.states.get((MANUAL, command.symbol))
        decision = self.manual_risk.check_manual(
            symbol=command.symbol,
            side=command.side,
            quantity=command.quantity,
            held=held.quantity if held is not None else 0,
            at=now,
            reference_price=reference_price,
            account=AccountState(
                self.equity,
                self.cash,
                sum(1 for (n, _s), st in self.states.items() if n == MANUAL and st.quantity),
            ),
            market=self.market,
        )
        intent = Intent(command, MANUAL, "SUBMITTED", 0, False, now)
        self.store.record_signals(
            symbol=command.symbol,
            at=now,
            states={},
            intents=[intent] if decision.approved else [],
            decisions=[(decision, coid)],
            cancels=[],
        )
        metrics.DECISIONS.labels(MANUAL, decision.action, decision.reason).inc()
        if not decision.approved:
            raise RiskRefused(decision)
        metrics.ORDERS.labels(MANUAL, command.side).inc()
        return intent, True

    def unsent(self, client_order_id: str) -> None:
        """A manual intent whose publication failed (the bus is down, the caller was told
        503): REJECTED `bus_unavailable`, so it never goes out later by surprise; the same
        request again revives it (`revive`)."""
        self.store.set_intent_status(
            client_order_id, "REJECTED", "bus_unavailable", only_from=("SUBMITTED",)
        )

    def revive(self, intent: Intent) -> Intent:
        """The same manual order again after `unsent`: back to SUBMITTED, to be published."""
        if intent.status == "REJECTED" and intent.reason == "bus_unavailable":
            self.store.set_intent_status(
                intent.command.client_order_id, "SUBMITTED", "", only_from=("REJECTED",)
            )
            return replace(intent, status="SUBMITTED", reason=None)
        return intent

    def on_order_event(self, event: Message) -> list[PlaceOrder]:
        """Move an intent along (a lookup by client_order_id: in memory while in flight, one
        primary-key read for a late event of a settled order). When the symbol's last order in
        flight settles, the bars that waited for it are decided: returns those new orders."""
        coid = getattr(event, "client_order_id", None)
        if coid is None or not isinstance(
            event, OrderRejected | OrderCancelled | OrderFilled | OrderAccepted | OrderUpdated
        ):
            return []
        intent = self._open.get(coid) or self.store.intent(coid)
        if intent is None:
            return []  # not one of the loop's orders
        symbol, exchange = intent.command.symbol, intent.command.exchange
        manual = intent.strategy == MANUAL  # no strategy waits for it
        slm = _is_slm(intent)
        if isinstance(event, OrderUpdated):
            if slm and coid in self._open:
                self._confirm_terms(intent, event)
            return []
        if isinstance(event, OrderAccepted):
            if intent.status == "SUBMITTED":
                self.store.set_intent_status(coid, "OPEN", only_from=("SUBMITTED",))
                if coid in self._open:
                    self._open[coid] = replace(intent, status="OPEN")
            return []
        if isinstance(event, OrderRejected | OrderCancelled):
            if intent.status in TERMINAL_STATUSES:
                return []
            self.store.set_intent_status(
                coid,
                "REJECTED" if isinstance(event, OrderRejected) else "CANCELLED",
                event.reason or None,
            )
            self._open.pop(coid, None)
            if manual:
                return []
            released: list[PlaceOrder] = []
            if slm:
                if isinstance(event, OrderRejected) and intent.command.trigger_price is not None:
                    self._slm_refused[(intent.strategy, symbol)] = intent.command.trigger_price
                # fills the cancel reports that have not reached the engine yet still sell
                unseen = (
                    max(0, event.filled_quantity - intent.filled_quantity)
                    if isinstance(event, OrderCancelled)
                    else 0
                )
                released = self._release_held(intent.strategy, symbol, unseen)
            return released + self._settled(exchange, symbol)
        key = (intent.strategy, symbol)
        st = self.states.setdefault(key, SymbolState(state={}))
        new_state = _after_fill(st, event)
        if event.side == "BUY":
            inst = self.instances.get(intent.strategy)
            if inst is not None:
                inst.strategy.on_entry_filled(
                    PositionView(
                        new_state.quantity, float(new_state.average_price), new_state.opened_at
                    ),
                    new_state.state if new_state.state is not None else {},
                )
        elif new_state.quantity == 0:
            new_state = SymbolState(state={}, last_bar=st.last_bar)
        if not self.store.apply_trade(
            trade_id=event.trade_id,
            client_order_id=coid,
            quantity=event.quantity,
            strategy=intent.strategy,
            symbol=symbol,
            state=new_state,
            order_quantity=intent.command.quantity,
        ):
            return []  # this trade was applied before
        self.states[key] = new_state
        self._update_held()
        filled = intent.filled_quantity + event.quantity
        if manual:
            return []
        if filled < intent.command.quantity:
            if intent.status not in TERMINAL_STATUSES:  # a late fill of a cancelled order
                status = intent.status if intent.status == "CANCELLING" else "OPEN"
                self._open[coid] = replace(intent, status=status, filled_quantity=filled)
            return []
        self._open.pop(coid, None)
        released = self._release_held(intent.strategy, symbol) if slm else []
        return released + self._settled(exchange, symbol)

    def _update_held(self) -> None:
        self.held_symbols = frozenset(s for (_n, s), st in self.states.items() if st.quantity > 0)

    def on_system_event(self, event: Message) -> None:
        """Kill switch, session and data flags: in memory only, so it runs at once on the
        event loop, whatever the engine is busy with."""
        m = self.market
        if isinstance(event, KillSwitchEngaged):
            m = replace(m, kill_switch=True, kill_switch_reason=event.reason)
            self.safety.heard("kill_switch")
        elif isinstance(event, KillSwitchReleased):
            m = replace(m, kill_switch=False, kill_switch_reason="")
            self.safety.heard("kill_switch")
            self._refused_levels = set()
        elif isinstance(event, SessionValid):
            m = replace(m, session_valid=True)
            self.safety.heard("session")
        elif isinstance(event, SessionExpired):
            m = replace(m, session_valid=False)
            self.safety.heard("session")
        elif isinstance(event, DataStale):
            m = replace(m, data_stale=True)
        self.market = m
        self._refresh_safety()
        metrics.KILL_SWITCH.set(1 if m.kill_switch else 0)

    def data_fresh(self) -> None:
        """A bar or tick arrived: the feed is alive again."""
        if self.market.data_stale:
            self.market = replace(self.market, data_stale=False)

    def on_equity(self, snapshot: EquitySnapshot) -> None:
        """The portfolio's equity and cash; the day's loss is marked at the market clock's
        time (not the snapshot's stamp: in sim the two differ), once that time is known: a
        mark on the machine's day before the first bar of a replay would hold the risk day
        years after the replay's, where it never moves (a day never goes back), and the
        daily loss limit would never count a loss."""
        self.equity = float(snapshot.equity)
        self.cash = float(snapshot.cash)
        self.safety.heard("equity")
        self._refresh_safety()
        if not self.clock.known:
            return
        now = self.clock.now()
        for inst in self.instances.values():
            inst.risk.mark(now, self.equity)
            self._observe_risk(inst)

    @staticmethod
    def _observe_risk(inst: _Instance) -> None:
        """The daily-loss gauges of one instance, from its risk manager's state."""
        metrics.observe_risk(
            inst.config.name,
            inst.risk.daily_pnl,
            float(inst.config.risk.max_daily_loss_rupees),
            inst.risk.halted_for_the_day,
        )


def _is_slm(intent: Intent) -> bool:
    """Whether the intent is an MIS position's stop at the exchange (an SL-M, leg P<n>)."""
    leg = intent.leg
    return leg[:1] == SLM_LEG and leg[1:].isdigit()


def _stop_of(levels: list[Level]) -> Decimal | None:
    """The strategy's stop for the position, down to the tick (None: it has none)."""
    stop = next((lv for lv in levels if lv.kind == "stop"), None)
    if stop is None:
        return None
    price = (Decimal(str(stop.price)) / TICK).to_integral_value(rounding=ROUND_FLOOR) * TICK
    return price if price > 0 else None


def _whole_target(levels: list[Level], quantity: int, stop: Decimal) -> Decimal | None:
    """The strategy's first target that sells the whole position (the GTT's second leg, up to
    the tick), None when every target is partial: a GTT fires once, for its whole quantity."""
    for lv in levels:
        if lv.kind == "target" and (lv.quantity is None or lv.quantity >= quantity):
            price = (Decimal(str(lv.price)) / TICK).to_integral_value(rounding=ROUND_CEILING) * TICK
            return price if price > stop else None
    return None


def _stored_mode(store: EngineStore, first: Mode = Mode.STOPPED) -> Mode:
    """The mode stored last; `first` (DALAL_START_MODE) when none was ever stored."""
    mode = store.get_meta("mode")
    if mode is not None:
        return Mode(mode)
    running = store.get_meta("running")  # before modes: a running flag
    if running is not None:
        return Mode.RUNNING if running == "true" else Mode.STOPPED
    return first


def _observe_mode(mode: Mode) -> None:
    metrics.RUNNING.set(1 if mode is Mode.RUNNING else 0)
    metrics.PAUSED.set(1 if mode is Mode.PAUSED else 0)


def _stored(bar: Bar) -> StoredBar:
    return StoredBar(
        bar.start, float(bar.open), float(bar.high), float(bar.low), float(bar.close), bar.volume
    )


def _bar_close(interval: str, start: datetime, calendar: NseCalendar) -> datetime:
    """When a bar's trading ends (a daily candle, stamped 00:00 IST, at its session's close)."""
    return session_open_of(interval, start, calendar) + bar_duration(interval)


def _after_fill(st: SymbolState, event: OrderFilled) -> SymbolState:
    """A strategy's position after one of its fills, by the shared accounting kernel (FIFO
    lots, the portfolio ledger's and the backtester's rule). A strategy's view never goes
    short: a sell beyond what it holds (a hand-made trade) reduces it to flat."""
    quantity = event.quantity if event.side == "BUY" else min(event.quantity, st.quantity)
    account = accounting.PositionReplay.holding(
        (event.exchange, event.symbol, event.product), st.lots, st.opened_at
    )
    if quantity:
        account.step(
            accounting.Fill(
                trade_id=event.trade_id,
                client_order_id=event.client_order_id,
                broker_order_id=event.broker_order_id,
                exchange=event.exchange,
                symbol=event.symbol,
                side=event.side,
                product=event.product,
                quantity=quantity,
                price=event.price,
                filled_at=event.filled_at,
                charged=False,  # the engine sizes on positions; the ledger owns the charges
            )
        )
    pos = account.pos
    return SymbolState(
        pos.quantity,
        pos.average_price,
        pos.opened_at,
        dict(st.state or {}),
        st.last_bar,
        list(pos.lots),
    )
