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

The store is injected (the SQL adapter in production); the clock too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import numpy as np

from dalal_engine import metrics
from dalal_engine.orderids import client_order_id
from dalal_engine.risk import AccountState, MarketState, RiskDecision, RiskManager
from dalal_engine.store import OPEN_STATUSES, EngineStore, Intent, StoredBar, SymbolState
from dalal_engine.strategy import Action, BarContext, BarSeries, Level, PositionView, Strategy
from dalal_engine.strategyconfig import StrategyConfig
from dalal_shared.calendar import NseCalendar, nse_calendar
from dalal_shared.messages import (
    Bar,
    CancelOrder,
    DataStale,
    EquitySnapshot,
    KillSwitchEngaged,
    KillSwitchReleased,
    Message,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    SessionExpired,
    SessionValid,
    Tick,
)
from dalal_shared.timeutil import utcnow

HISTORY_FLOOR_BARS = 300  # bars of warm-up loaded before the first live bar (at least)
# The history then grows from that first bar and is not slid along: indicators are computed over
# it from the same first bar each time, as the backtester computes them over its whole series,
# so the same bars give the same decisions (a sliding window re-seeds the EMA/ATR every bar).
# Only past this many bars is the history cut back (to its last HISTORY_FLOOR_BARS-or-more).
HISTORY_CAP_BARS = 20_000


class Clock(Protocol):
    def __call__(self) -> datetime: ...


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
        clock: Clock = utcnow,
        calendar: NseCalendar | None = None,
        warmup: Callable[[str, str, str], list[StoredBar]] | None = None,
    ):
        cal = calendar or nse_calendar()
        # decisions made since the last publish (stored in SQL with the bar either way)
        self.pending_decisions: list[RiskDecision] = []
        # cancels of stale or superseded orders (their intents are CANCELLING in SQL); a
        # restarted engine sends them again (cancelling twice is harmless)
        self.pending_cancels: list[CancelOrder] = [
            CancelOrder(client_order_id=i.command.client_order_id, reason="stale")
            for i in store.intents(open_only=True)
            if i.status == "CANCELLING"
        ]
        self.instances = {
            c.name: _Instance(c, c.build(), RiskManager(c.risk, cal)) for c in configs
        }
        self.store = store
        self.clock = clock
        self.market = MarketState()
        self.equity = float(initial_equity_rupees)
        self.cash = float(initial_equity_rupees)
        self.states: dict[tuple[str, str], SymbolState] = store.states()
        self.warmup = warmup
        # levels whose exit the kill switch refused: recorded once, not on every tick
        self._refused_levels: set[tuple[str, str, str]] = set()
        self._history: dict[tuple[str, str, str], list[StoredBar]] = {}
        for inst in self.instances.values():
            self._observe_risk(inst)

    # ---------------------------------------------------------------- control
    @property
    def running(self) -> bool:
        return self.store.get_meta("running", "false") == "true"

    def start(self) -> None:
        self.store.set_meta("running", "true")

    def stop(self) -> None:
        self.store.set_meta("running", "false")

    def watches_ticks(self) -> bool:
        """Whether any instance's strategy has intrabar levels (else `market.ticks` is not
        consumed at all)."""
        return any(type(i.strategy).levels is not Strategy.levels for i in self.instances.values())

    def intervals(self) -> set[str]:
        """Bar intervals consumed as events (scheduled instances poll instead)."""
        return {i.config.interval for i in self.instances.values() if i.config.schedule is None}

    def status(self) -> dict[str, Any]:
        open_positions = [
            {
                "strategy": k[0],
                "symbol": k[1],
                "quantity": s.quantity,
                "average_price": str(s.average_price),
            }
            for k, s in self.states.items()
            if s.quantity
        ]
        return {
            "running": self.running,
            "kill_switch": self.market.kill_switch,
            "kill_switch_reason": self.market.kill_switch_reason,
            "session_valid": self.market.session_valid,
            "data_stale": self.market.data_stale,
            "equity_rupees": f"{self.equity:.2f}",
            "cash_rupees": f"{self.cash:.2f}",
            "strategies": {
                name: {
                    "strategy": i.config.strategy,
                    "interval": i.config.interval,
                    "universe": i.config.universe,
                    "risk": i.risk.state(),
                }
                for name, i in self.instances.items()
            },
            "open_positions": open_positions,
            "open_intents": len(self.store.intents(open_only=True)),
        }

    # ---------------------------------------------------------------- bars
    def _history_of(self, exchange: str, symbol: str, interval: str, need: int) -> list[StoredBar]:
        key = (exchange, symbol, interval)
        if key not in self._history:
            bars = self.store.bars(exchange, symbol, interval, need)
            if self.warmup is not None and len(bars) < need:
                older = [
                    b
                    for b in self.warmup(exchange, symbol, interval)
                    if not bars or b.start < bars[0].start
                ]
                bars = older[-(need - len(bars)) :] + bars if need > len(bars) else bars
            self._history[key] = bars
        return self._history[key]

    def last_bar(self, name: str, symbol: str) -> datetime | None:
        """The last bar the instance decided on for the symbol (None: none yet)."""
        st = self.states.get((name, symbol))
        return st.last_bar if st is not None else None

    def on_bar(self, bar: Bar, *, only: str | None = None, decide: bool = True) -> list[PlaceOrder]:
        """Handle a completed bar; returns the new order commands to publish (already stored).

        Bar events go to the instances without a `schedule`; the fixed cycle passes `only` (its
        instance), and `decide=False` for bars that only warm the history up."""
        interested = [
            i
            for i in self.instances.values()
            if i.config.interval == bar.interval
            and bar.symbol in i.config.universe
            and i.config.exchange == bar.exchange
            and (i.config.name == only if only is not None else i.config.schedule is None)
        ]
        need = max([HISTORY_FLOOR_BARS] + [3 * i.strategy.warmup_bars for i in interested])
        history = self._history_of(bar.exchange, bar.symbol, bar.interval, need)
        stored = StoredBar(
            bar.start,
            float(bar.open),
            float(bar.high),
            float(bar.low),
            float(bar.close),
            bar.volume,
        )
        is_new = not history or bar.start > history[-1].start
        if is_new:
            history.append(stored)
            if len(history) > max(HISTORY_CAP_BARS, need):
                del history[:-need]
        running = self.running
        open_intents = self.store.intents(open_only=True)
        open_symbols = {s.command.symbol for s in open_intents}
        names = {i.config.name for i in interested}
        cancels = [
            i.command.client_order_id
            for i in open_intents
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
        if running and is_new and decide:
            series = _series(bar.symbol, history)
            for inst in interested:
                name = inst.config.name
                st = self.states.setdefault((name, bar.symbol), SymbolState(state={}))
                if st.last_bar is not None and st.last_bar >= bar.start:
                    continue  # this strategy has decided on this bar already
                st.last_bar = bar.start
                states[name] = st
                if bar.symbol in open_symbols:
                    continue  # an order of this symbol is still in flight
                inst.risk.mark(self.clock(), self.equity)
                self._observe_risk(inst)
                ind = inst.strategy.indicators(series)
                if st.state is None:
                    st.state = {}
                ctx = BarContext(
                    bar.symbol,
                    len(series) - 1,
                    series,
                    ind,
                    PositionView(st.quantity, float(st.average_price), st.opened_at),
                    st.state,
                    self.equity,
                    self.cash,
                )
                for sig in inst.strategy.on_bar(ctx):
                    coid = client_order_id(name, bar.symbol, bar.start, sig.leg)
                    decision = self._decide(
                        inst,
                        bar.symbol,
                        sig.action,
                        sig.reference_price,
                        sig.stop,
                        sig.quantity,
                        st.quantity,
                    )
                    decision = replace(
                        decision, detail=f"{sig.leg} {sig.reason}; {decision.detail}"
                    )
                    metrics.DECISIONS.labels(name, decision.action, decision.reason).inc()
                    decisions.append((decision, coid if decision.approved else None))
                    if decision.approved and decision.quantity > 0:
                        cmd = PlaceOrder(
                            client_order_id=coid,
                            exchange=bar.exchange,
                            symbol=bar.symbol,
                            side="BUY" if sig.action is Action.ENTER else "SELL",
                            quantity=decision.quantity,
                            product=inst.config.product,
                            strategy=name,
                        )
                        intents.append(Intent(cmd, name, "SUBMITTED", 0, False))
        self.pending_decisions.extend(d for d, _ in decisions)
        new = self.store.record_bar(
            exchange=bar.exchange,
            symbol=bar.symbol,
            interval=bar.interval,
            bar=stored,
            states=states,
            intents=intents,
            decisions=decisions,
            cancels=cancels,
        )
        self._cancel(cancels, "stale: not filled by the next bar")
        for cmd in new:
            metrics.ORDERS.labels(cmd.strategy or "", cmd.side).inc()
        return new

    def _cancel(self, coids: list[str], reason: str) -> None:
        for coid in coids:
            self.pending_cancels.append(CancelOrder(client_order_id=coid, reason=reason))
            metrics.CANCELS.labels(reason.split(":", 1)[0]).inc()

    # ---------------------------------------------------------------- ticks: stops and targets
    def on_tick(self, tick: Tick) -> list[PlaceOrder]:
        """Exit a position whose stop or target a trade reached between bars. One order per
        level and position: its id is derived from (instance, symbol, position opened at,
        leg), and the strategy state marks the level done in the same transaction, so a tick
        delivered again, or a restart, never exits twice. A stop cancels the position's
        target orders still open (the stop supersedes them)."""
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
            stop = next((lv for lv in levels if lv.kind == "stop" and lv.hit(price)), None)
            if stop is not None:
                hits.append((inst, st, stop))
            else:
                hits.extend((inst, st, lv) for lv in levels if lv.hit(price))
        if not hits or not self.running:
            return []
        of_symbol = [i for i in self.store.intents() if i.command.symbol == tick.symbol]
        open_intents = [i for i in of_symbol if i.status in OPEN_STATUSES]
        sent = {i.command.client_order_id for i in of_symbol}
        states: dict[str, SymbolState] = {}
        intents: list[Intent] = []
        decisions: list[tuple[RiskDecision, str | None]] = []
        cancels: list[str] = []
        for inst, st, level in hits:
            name = inst.config.name
            mine = [i for i in open_intents if i.strategy == name]
            if any(i.leg in ("X", "S") for i in mine):
                continue  # already exiting
            refused_key = (name, tick.symbol, level.leg)
            if self.market.kill_switch and refused_key in self._refused_levels:
                continue  # refused already while the switch is engaged
            superseded = [
                i.command.client_order_id
                for i in mine
                if level.kind == "stop" and i.status != "CANCELLING" and i.leg != level.leg
            ]
            if level.kind != "stop" and (mine or name in states):
                continue  # another order of this position is in flight
            coid = client_order_id(name, tick.symbol, st.opened_at or tick.exchange_ts, level.leg)
            if coid in sent:
                continue  # this level's order went out before (filled, rejected or cancelled)
            quantity = min(level.quantity or st.quantity, st.quantity)
            action = Action.EXIT if quantity >= st.quantity else Action.REDUCE
            decision = inst.risk.check_exit(
                strategy=name,
                symbol=tick.symbol,
                action=action.value,
                at=self.clock(),
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
            new_state = SymbolState(st.quantity, st.average_price, st.opened_at, state, st.last_bar)
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
            intents.append(Intent(cmd, name, "SUBMITTED", 0, False))
        self.pending_decisions.extend(d for d, _ in decisions)
        if not decisions:
            return []
        new = self.store.record_signals(
            symbol=tick.symbol,
            at=tick.exchange_ts,
            states=states,
            intents=intents,
            decisions=decisions,
            cancels=cancels,
        )
        for name, new_state in states.items():
            self.states[(name, tick.symbol)] = new_state
        self._cancel(cancels, "superseded: the stop was hit")
        for cmd in new:
            metrics.ORDERS.labels(cmd.strategy or "", cmd.side).inc()
        return new

    def _decide(
        self,
        inst: _Instance,
        symbol: str,
        action: Action,
        price: float | None,
        stop: float | None,
        quantity: int | None,
        held: int,
    ) -> RiskDecision:
        now = self.clock()
        if action is Action.ENTER:
            open_positions = sum(
                1 for (n, _), s in self.states.items() if n == inst.config.name and s.quantity > 0
            )
            return inst.risk.check_entry(
                strategy=inst.config.name,
                symbol=symbol,
                at=now,
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
            at=now,
            quantity=qty,
            market=self.market,
        )

    # ---------------------------------------------------------------- orders, portfolio, system
    def on_order_event(self, event: Message) -> None:
        coid = getattr(event, "client_order_id", None)
        if coid is None:
            return
        intent = next((i for i in self.store.intents() if i.command.client_order_id == coid), None)
        if intent is None:
            return  # not one of the loop's orders
        if isinstance(event, OrderRejected | OrderCancelled):
            self.store.set_intent_status(
                coid, "REJECTED" if isinstance(event, OrderRejected) else "CANCELLED"
            )
            return
        if not isinstance(event, OrderFilled):
            return
        key = (intent.strategy, intent.command.symbol)
        st = self.states.setdefault(key, SymbolState(state={}))
        new_state = SymbolState(
            st.quantity, st.average_price, st.opened_at, dict(st.state or {}), st.last_bar
        )
        if event.side == "BUY":
            total = new_state.average_price * new_state.quantity + event.price * event.quantity
            new_state.quantity += event.quantity
            new_state.average_price = (total / new_state.quantity).quantize(Decimal("0.0001"))
            new_state.opened_at = new_state.opened_at or event.filled_at
            inst = self.instances.get(intent.strategy)
            if inst is not None:
                inst.strategy.on_entry_filled(
                    PositionView(
                        new_state.quantity, float(new_state.average_price), new_state.opened_at
                    ),
                    new_state.state if new_state.state is not None else {},
                )
        else:
            new_state.quantity = max(0, new_state.quantity - event.quantity)
            if new_state.quantity == 0:
                new_state = SymbolState(state={}, last_bar=st.last_bar)
        if self.store.apply_trade(
            trade_id=event.trade_id,
            client_order_id=coid,
            quantity=event.quantity,
            strategy=intent.strategy,
            symbol=intent.command.symbol,
            state=new_state,
            order_quantity=intent.command.quantity,
        ):
            self.states[key] = new_state

    def on_system_event(self, event: Message) -> None:
        m = self.market
        if isinstance(event, KillSwitchEngaged):
            m = replace(m, kill_switch=True, kill_switch_reason=event.reason)
        elif isinstance(event, KillSwitchReleased):
            m = replace(m, kill_switch=False, kill_switch_reason="")
            self._refused_levels.clear()
        elif isinstance(event, SessionValid):
            m = replace(m, session_valid=True)
        elif isinstance(event, SessionExpired):
            m = replace(m, session_valid=False)
        elif isinstance(event, DataStale):
            m = replace(m, data_stale=True)
        self.market = m
        metrics.KILL_SWITCH.set(1 if m.kill_switch else 0)

    def data_fresh(self) -> None:
        """A bar or tick arrived: the feed is alive again."""
        if self.market.data_stale:
            self.market = replace(self.market, data_stale=False)

    def on_equity(self, snapshot: EquitySnapshot) -> None:
        self.equity = float(snapshot.equity)
        self.cash = float(snapshot.cash)
        for inst in self.instances.values():
            inst.risk.mark(snapshot.at, self.equity)
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


def _series(symbol: str, history: list[StoredBar]) -> BarSeries:
    return BarSeries(
        symbol=symbol,
        start=tuple(b.start for b in history),
        open=np.array([b.open for b in history], dtype=np.float64),
        high=np.array([b.high for b in history], dtype=np.float64),
        low=np.array([b.low for b in history], dtype=np.float64),
        close=np.array([b.close for b in history], dtype=np.float64),
        volume=np.array([b.volume for b in history], dtype=np.int64),
    )
