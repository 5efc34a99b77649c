"""The backtester: the live strategy and risk code, bar by bar, over cached history.

Event-driven: indicators are computed once per symbol (vectorised), then one lean loop walks
the union of the symbols' bar times. At each time, for each symbol with a bar:
1. orders decided on the previous bar meet this bar's ticks (`dalal_shared.fills`: seeded tick
   path, MARKET at the first tick with spread and slippage, the volume cap; what the bar cannot
   fill is cancelled, as a DAY order would be), and pay Zerodha's charges
   (`dalal_shared.charges`, plus the DP charge once per scrip and day of delivery sells);
2. the account is marked to market at the close (one equity point per bar time);
3. the strategy sees the completed bar and returns signals, which the risk manager turns into
   orders (or refuses, with a reason) for the next bar.
Flat symbols whose strategy marks no entry candidate on a bar are skipped (`Strategy.candidates`),
and so are open positions on bars where it marks no exit candidate (`Strategy.exit_candidates`).
The result carries trades (round trips, net of charges), fills, every risk decision, the equity
curve and `dalal_shared.performance` statistics: the same numbers the portfolio service reports.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from dalal_engine.orderids import client_order_id
from dalal_engine.risk import AccountState, MarketState, RiskDecision, RiskManager
from dalal_engine.strategy import Action, BarContext, BarSeries, PositionView, Signal, Strategy
from dalal_engine.strategyconfig import StrategyConfig
from dalal_engine.timing import bar_closes, bar_duration, order_time, session_open_of
from dalal_shared import fills
from dalal_shared.calendar import NseCalendar, nse_calendar
from dalal_shared.charges import ChargesBreakdown, dp_charge, order_charges
from dalal_shared.performance import EquityPoint, Report, compute
from dalal_shared.timeutil import to_ist

ZERO = Decimal("0")
ZERO2 = Decimal("0.00")


def _dec(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


@dataclass(frozen=True, slots=True)
class BacktestSettings:
    initial_capital_rupees: Decimal = Decimal("1000000")
    start: datetime | None = None  # first bar that may trade (earlier bars only warm up)
    end: datetime | None = None  # bars before this
    fill: fills.FillConfig = field(default_factory=fills.FillConfig)
    seed: int = 7  # of the tick paths


@dataclass(frozen=True, slots=True)
class PendingOrder:
    client_order_id: str
    symbol: str
    side: fills.Side
    quantity: int
    action: Action
    leg: str
    reason: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class FillRecord:
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    price: Decimal
    at: datetime
    leg: str
    reason: str
    charges: Decimal

    def to_json(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.quantity,
            "price": str(self.price),
            "at": self.at.isoformat(),
            "leg": self.leg,
            "reason": self.reason,
            "charges": str(self.charges),
        }


@dataclass(slots=True)
class Trade:
    """A round trip: one entry, its partial and final exits, net of every charge."""

    symbol: str
    opened_at: datetime
    quantity: int
    entry_price: Decimal
    exits: list[FillRecord] = field(default_factory=list)
    charges: Decimal = ZERO
    gross_pnl: Decimal = ZERO
    closed_at: datetime | None = None

    @property
    def net_pnl(self) -> Decimal:
        return self.gross_pnl - self.charges

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "opened_at": self.opened_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "quantity": self.quantity,
            "entry_price": str(self.entry_price),
            "exits": [
                {
                    "at": e.at.isoformat(),
                    "quantity": e.quantity,
                    "price": str(e.price),
                    "leg": e.leg,
                    "reason": e.reason,
                }
                for e in self.exits
            ],
            "gross_pnl": str(self.gross_pnl),
            "charges": str(self.charges),
            "net_pnl": str(self.net_pnl),
        }


@dataclass(slots=True)
class _Position:
    quantity: int = 0
    average_price: Decimal = ZERO
    opened_at: datetime | None = None
    trade: Trade | None = None


@dataclass
class BacktestResult:
    config: StrategyConfig
    settings: BacktestSettings
    bars: int
    trades: list[Trade]
    open_trades: list[Trade]
    fills: list[FillRecord]
    decisions: list[RiskDecision]
    equity: list[EquityPoint]
    report: Report
    charges: ChargesBreakdown

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "strategy": self.config.model_dump(mode="json"),
            "initial_capital_rupees": str(s.initial_capital_rupees),
            "start": s.start.isoformat() if s.start else None,
            "end": s.end.isoformat() if s.end else None,
            "bars": self.bars,
            "report": self.report.to_json(),
            "charges_rupees": {
                k: str(getattr(self.charges, k))
                for k in ("brokerage", "stt", "transaction", "sebi", "stamp", "gst", "dp", "other")
            }
            | {"total": str(self.charges.total)},
            "trades": [t.to_json() for t in self.trades],
            "open_trades": [t.to_json() for t in self.open_trades],
            "fills": [f.to_json() for f in self.fills],
            "decisions": [d.to_json() for d in self.decisions],
        }


Progress = Callable[[int, int], None]
MarketFeed = Callable[[datetime], MarketState]


class Backtester:
    def __init__(
        self,
        config: StrategyConfig,
        data: dict[str, BarSeries],
        settings: BacktestSettings | None = None,
        *,
        strategy: Strategy | None = None,
        market: MarketFeed | None = None,
        calendar: NseCalendar | None = None,
    ):
        self.config = config
        self.strategy = strategy or config.build()
        self.data = data
        self.settings = settings or BacktestSettings()
        self.calendar = calendar or nse_calendar()
        self.market = market or (lambda _at: MarketState())
        self.risk = RiskManager(config.risk, self.calendar)

    def run(self, progress: Progress | None = None) -> BacktestResult:
        cfg, s, strat = self.config, self.settings, self.strategy
        interval = cfg.interval
        duration = bar_duration(interval)
        ind = {sym: strat.indicators(series) for sym, series in self.data.items()}
        cand = {sym: strat.candidates(ind[sym]) for sym in self.data}
        exit_cand = {sym: strat.exit_candidates(ind[sym]) for sym in self.data}
        # plain Python lists for the per-bar loop (numpy scalar access is slow one at a time)
        cand = {sym: (m.tolist() if m is not None else None) for sym, m in cand.items()}
        exit_cand = {sym: (m.tolist() if m is not None else None) for sym, m in exit_cand.items()}
        closes = {sym: series.close.tolist() for sym, series in self.data.items()}
        timeline: dict[datetime, list[tuple[str, int]]] = {}
        for sym, series in self.data.items():
            lo = 0 if s.start is None else bisect.bisect_left(series.start, s.start)
            hi = len(series) if s.end is None else bisect.bisect_left(series.start, s.end)
            for i in range(lo, hi):
                ts = series.start[i]
                if ts in timeline:
                    timeline[ts].append((sym, i))
                else:
                    timeline[ts] = [(sym, i)]
        times = sorted(timeline)
        closes_at = bar_closes(interval, times, self.calendar)
        cash = s.initial_capital_rupees
        cash_f = float(cash)  # its float twin for sizing and marks (cash itself stays exact)
        held: set[str] = set()  # symbols with a position
        last_equity, last_equity_dec = math.nan, ZERO
        positions = {sym: _Position() for sym in self.data}
        states: dict[str, dict[str, Any]] = {sym: {} for sym in self.data}
        last_close = dict.fromkeys(self.data, 0.0)
        pending: dict[str, list[PendingOrder]] = {sym: [] for sym in self.data}
        trades: list[Trade] = []
        fill_log: list[FillRecord] = []
        decisions: list[RiskDecision] = []
        equity: list[EquityPoint] = []
        total_charges = ChargesBreakdown()
        dp_days: set[tuple[str, Any]] = set()
        open_count = 0
        report_every = max(1, len(times) // 100)

        waiting = 0  # orders pending in all (most bars have none: step 1 is skipped)
        for n, (ts, events, (close_at, close_day)) in enumerate(
            zip(times, [timeline[t] for t in times], closes_at, strict=True)
        ):
            # 1. fills of the orders decided on the previous bar
            for sym, i in events if waiting else ():
                if not pending[sym]:
                    continue
                series = self.data[sym]
                start = session_open_of(interval, ts, self.calendar)
                bar = fills.Bar(
                    start,
                    _dec(series.open[i]),
                    _dec(series.high[i]),
                    _dec(series.low[i]),
                    _dec(series.close[i]),
                    int(series.volume[i]),
                )
                # the bar's first tick alone fills most MARKET orders: the rest of the seeded
                # path is built only when an order is still open after it
                ticks: list[fills.Tick] | None = None
                first_tick = fills.opening_tick(bar)
                pos = positions[sym]
                for order in pending[sym]:
                    qty_wanted = order.quantity
                    if order.side is fills.Side.SELL:
                        qty_wanted = min(qty_wanted, pos.quantity)
                    got, notional, first_at = 0, ZERO, None
                    k = 0
                    while got < qty_wanted:
                        if k == 0:
                            tick = first_tick
                        else:
                            if ticks is None:
                                ticks = fills.tick_path(
                                    bar, duration, seed=s.seed, key=sym,
                                    tick_size=s.fill.tick_size,
                                )  # fmt: skip
                            if k >= len(ticks):
                                break
                            tick = ticks[k]
                        terms = fills.OrderTerms(
                            order.side, fills.OrderType.MARKET, qty_wanted - got
                        )
                        f = fills.match(terms, tick, s.fill, resting=k > 0, filled_in_bar=got)
                        if f is not None:
                            got += f.quantity
                            notional += f.price * f.quantity
                            first_at = first_at or tick.ts
                        k += 1
                    if got == 0 or first_at is None:
                        continue
                    price = (notional / got).quantize(Decimal("0.0001"))
                    day = to_ist(first_at).date()
                    ch = order_charges(order.side.value, cfg.product, got, price, day)
                    sell = order.side is fills.Side.SELL
                    if sell and cfg.product == "CNC" and (sym, day) not in dp_days:
                        dp_days.add((sym, day))
                        ch = ch + dp_charge(day)
                    total_charges = total_charges + ch
                    record = FillRecord(
                        order.client_order_id,
                        sym,
                        order.side.value,
                        got,
                        price,
                        first_at,
                        order.leg,
                        order.reason,
                        ch.total,
                    )
                    fill_log.append(record)
                    if order.side is fills.Side.BUY:
                        cash -= notional + ch.total
                        cash_f = float(cash)
                        held.add(sym)
                        if pos.quantity == 0:
                            open_count += 1
                            pos.trade = Trade(sym, first_at, got, price, charges=ch.total)
                            pos.opened_at = first_at
                            pos.average_price = price
                        else:  # scale-in (no built-in strategy does it)
                            total = pos.average_price * pos.quantity + notional
                            pos.average_price = (total / (pos.quantity + got)).quantize(
                                Decimal("0.0001")
                            )
                            assert pos.trade is not None
                            pos.trade.quantity += got
                            pos.trade.charges += ch.total
                        pos.quantity += got
                    else:
                        cash += notional - ch.total
                        cash_f = float(cash)
                        assert pos.trade is not None
                        trade = pos.trade
                        trade.exits.append(record)
                        trade.charges += ch.total
                        trade.gross_pnl += (price - pos.average_price) * got
                        pos.quantity -= got
                        if pos.quantity == 0:
                            trade.gross_pnl = trade.gross_pnl.quantize(Decimal("0.01"))
                            trade.closed_at = first_at
                            trades.append(trade)
                            positions[sym] = pos = _Position()
                            held.discard(sym)
                            states[sym].clear()
                            open_count -= 1
                waiting -= len(pending[sym])
                pending[sym] = []
            # 2. mark to market
            exposure = 0.0
            for sym, i in events:
                last_close[sym] = closes[sym][i]
            for sym in held:
                exposure += positions[sym].quantity * last_close[sym]
            equity_now = cash_f + exposure
            if equity_now != last_equity:  # (flat and no fill: the same rupees as before)
                last_equity, last_equity_dec = equity_now, _dec(equity_now)
            equity.append(
                EquityPoint(close_at, last_equity_dec, _dec(exposure) if exposure else ZERO2)
            )
            self.risk.mark_day(close_day, equity_now)
            # 3. decisions on the completed bar
            for sym, i in events:
                pos = positions[sym]
                mask = cand[sym] if pos.quantity == 0 else exit_cand[sym]
                if mask is not None and not mask[i]:
                    continue
                ctx = BarContext(
                    sym,
                    i,
                    self.data[sym],
                    ind[sym],
                    PositionView(pos.quantity, float(pos.average_price), pos.opened_at),
                    states[sym],
                    equity_now,
                    cash_f,
                )
                signals = strat.on_bar(ctx)
                if not signals:
                    continue
                at = order_time(interval, ts, self.calendar)
                for sig in signals:
                    order, decision = self._decide(
                        sig,
                        sym,
                        ts,
                        at,
                        pos.quantity,
                        AccountState(equity_now, cash_f, open_count),
                    )
                    decisions.append(decision)
                    if order is not None:
                        pending[sym].append(order)
                        waiting += 1
            if progress is not None and (n % report_every == 0 or n == len(times) - 1):
                progress(n + 1, len(times))

        open_trades = [p.trade for p in positions.values() if p.trade is not None]
        report = compute(
            [t.net_pnl for t in trades], equity, initial_equity=s.initial_capital_rupees
        )
        return BacktestResult(
            cfg,
            s,
            sum(len(v) for v in timeline.values()),
            trades,
            open_trades,
            fill_log,
            decisions,
            equity,
            report,
            total_charges,
        )

    def _decide(
        self,
        sig: Signal,
        sym: str,
        bar_start: datetime,
        at: datetime,
        held: int,
        account: AccountState,
    ) -> tuple[PendingOrder | None, RiskDecision]:
        cfg = self.config
        market = self.market(at)
        coid = client_order_id(cfg.name, sym, bar_start, sig.leg)
        if sig.action is Action.ENTER:
            decision = self.risk.check_entry(
                strategy=cfg.name,
                symbol=sym,
                at=at,
                reference_price=sig.reference_price or 0.0,
                stop=sig.stop,
                fixed_quantity=sig.quantity,
                account=account,
                market=market,
            )
            side = fills.Side.BUY
        else:
            quantity = held if sig.action is Action.EXIT else min(sig.quantity or 0, held)
            decision = self.risk.check_exit(
                strategy=cfg.name,
                symbol=sym,
                action=sig.action.value,
                at=at,
                quantity=quantity,
                market=market,
            )
            side = fills.Side.SELL
        decision = _with_detail(decision, sig)
        if not decision.approved or decision.quantity <= 0:
            return None, decision
        order = PendingOrder(
            coid, sym, side, decision.quantity, sig.action, sig.leg, sig.reason, at
        )
        return order, decision


def _with_detail(decision: RiskDecision, sig: Signal) -> RiskDecision:
    d, note = decision, f"{sig.leg} {sig.reason}"
    detail = f"{note}; {d.detail}" if d.detail else note
    return RiskDecision(
        d.at, d.strategy, d.symbol, d.action, d.approved, d.reason, d.quantity, detail
    )


def bars_per_second(result: BacktestResult, seconds: float) -> float:
    return result.bars / seconds if seconds > 0 else math.inf


def symbols_of(data: Iterable[str]) -> list[str]:
    return sorted(data)
