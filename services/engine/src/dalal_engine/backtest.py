"""The backtester: the live strategy and risk code, bar by bar, over cached history.

Event-driven: indicators are computed once per symbol (vectorised), then one lean loop walks
the union of the symbols' bar times. At each time, for each symbol with a bar:
1. orders decided on the previous bar meet this bar's ticks (`dalal_shared.fills`: seeded tick
   path, MARKET at the first tick with spread and slippage, the volume cap; what the bar cannot
   fill is cancelled, as a DAY order would be), and are booked by the shared accounting kernel
   (`dalal_shared.accounting`, the portfolio ledger's: FIFO lots, realised P&L, and Zerodha's
   charges as what the fill adds to its scrip's day, so a same-day CNC buy and sell are
   intraday for the matched quantity and the DP charge is paid once per scrip and day);
2. the account is marked to market at the close (one equity point per bar time) and the risk
   manager sees the mark (the day's loss);
3. the strategy sees the completed bar and returns signals, which the risk manager turns into
   orders (or refuses, with a reason) for the next bar.
Only the bars where something can happen are visited: a flat symbol's entry candidates
(`Strategy.candidates`), an open position's exit candidates (`Strategy.exit_candidates`; None
means every bar) and the bar after an order. Between two visited bars nothing trades, so those
bars are marked to market in bulk (numpy) and handed to the risk manager at once; the result is
the one a walk over every bar gives (a test holds the two equal).
The result carries trades (round trips, net of charges), fills, every risk decision, the equity
curve (paise arrays; `BacktestResult.equity` as points) and `dalal_shared.performance`
statistics: the same numbers the portfolio service reports.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import Decimal
from functools import cached_property
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from dalal_engine import intraday
from dalal_engine.orderids import client_order_id
from dalal_engine.risk import AccountState, MarketState, RiskDecision, RiskManager
from dalal_engine.strategy import Action, BarContext, BarSeries, PositionView, Signal, Strategy
from dalal_engine.strategyconfig import StrategyConfig
from dalal_engine.timing import bar_close_seconds, bar_duration, order_time, session_open_of
from dalal_shared import accounting, fills
from dalal_shared.calendar import CalendarCoverageError, NseCalendar, nse_calendar
from dalal_shared.charges import ChargesBreakdown
from dalal_shared.money import INITIAL_CAPITAL_RUPEES, paise, q4
from dalal_shared.performance import EquityPoint, Report, compute_paise
from dalal_shared.slots import slot_init
from dalal_shared.timeutil import isoformat, to_ist

ZERO = Decimal("0")
ZERO2 = Decimal("0.00")
OPEN_TIME = time(9, 15)  # IST: a requested end after it on a trading day includes that day


def _dec(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


@dataclass(frozen=True, slots=True)
class BacktestSettings:
    """A backtest's money, window, fill model and market protection."""

    initial_capital_rupees: Decimal = INITIAL_CAPITAL_RUPEES
    start: datetime | None = None  # first bar that may trade (earlier bars only warm up)
    end: datetime | None = None  # bars before this
    fill: fills.FillConfig = field(default_factory=fills.FillConfig)
    seed: int = 7  # of the tick paths
    # the market protection MARKET orders carry (the broker's DALAL_MARKET_PROTECTION_PCT,
    # SEBI's rule for API orders): never filled beyond this % of the last price when placed
    # (the decision bar's close), as at Kite and kitesim; None: no protection
    market_protection_pct: Decimal | None = Decimal("3")


@slot_init
@dataclass(frozen=True, slots=True)
class PendingOrder:
    """An order decided on a bar, filled from the next bar's open."""

    client_order_id: str
    symbol: str
    side: fills.Side
    quantity: int
    action: Action
    leg: str
    reason: str
    decided_at: datetime
    reference: Decimal | None = None  # the last price when it was placed (the bar's close)


@slot_init
@dataclass(frozen=True, slots=True)
class FillRecord:
    """One fill of a backtest, with its charges."""

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
            "at": isoformat(self.at),
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
            "opened_at": isoformat(self.opened_at),
            "closed_at": isoformat(self.closed_at) if self.closed_at else None,
            "quantity": self.quantity,
            "entry_price": str(self.entry_price),
            "exits": [
                {
                    "at": isoformat(e.at),
                    "quantity": e.quantity,
                    "price": str(e.price),
                    "leg": e.leg,
                    "reason": e.reason,
                }
                for e in self.exits
            ],
            "gross_pnl": str(paise(self.gross_pnl)),
            "charges": str(paise(self.charges)),
            "net_pnl": str(paise(self.net_pnl)),
        }


@dataclass(slots=True)
class _Position:
    """What a strategy sees of its position (the kernel's figures) and its open round trip."""

    quantity: int = 0
    average_price: Decimal = ZERO
    opened_at: datetime | None = None
    trade: Trade | None = None


@dataclass(frozen=True, slots=True)
class EquityCurve:
    """A backtest's equity curve, one point per bar time (at the bar's close), kept as arrays:
    equity and gross exposure in whole paise, and the IST day of each point (days since
    1970-01-01). `points()` gives the `EquityPoint`s the portfolio service uses too."""

    close_seconds: NDArray[np.int64]
    days: NDArray[np.int64]
    equity_paise: NDArray[np.int64]
    exposure_paise: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.close_seconds)

    def points(self) -> list[EquityPoint]:
        rupees: dict[int, Decimal] = {}  # one Decimal per distinct value (flat days repeat)

        def dec(paise: int) -> Decimal:
            value = rupees.get(paise)
            if value is None:
                value = rupees[paise] = Decimal(paise).scaleb(-2)
            return value

        return [
            EquityPoint(datetime.fromtimestamp(at, UTC), dec(equity), dec(exposure))
            for at, equity, exposure in zip(
                self.close_seconds.tolist(),
                self.equity_paise.tolist(),
                self.exposure_paise.tolist(),
                strict=True,
            )
        ]


@dataclass
class BacktestResult:
    """What a backtest produced: trades, fills, decisions, equity curve, figures, charges."""

    config: StrategyConfig
    settings: BacktestSettings
    bars: int
    trades: list[Trade]
    open_trades: list[Trade]
    fills: list[FillRecord]
    decisions: list[RiskDecision]
    curve: EquityCurve
    report: Report
    charges: ChargesBreakdown
    # the bars the run actually had (first and last bar start in the range, any symbol) and
    # what falls short of the requested range (a cache that covers less says so)
    data_start: datetime | None = None
    data_end: datetime | None = None
    warnings: list[str] = field(default_factory=list)
    # orders the bar they met could not fill (beyond their market protection, or no volume):
    # cancelled, as a DAY order is at the close
    unfilled: list[PendingOrder] = field(default_factory=list)

    @cached_property
    def equity(self) -> list[EquityPoint]:
        """The equity curve as points (built on first use)."""
        return self.curve.points()

    def to_json(self) -> dict[str, Any]:
        return self.json_head() | {
            "trades": [t.to_json() for t in self.trades],
            "open_trades": [t.to_json() for t in self.open_trades],
            "fills": [f.to_json() for f in self.fills],
            "unfilled": self.unfilled_json(),
            "decisions": [d.to_json() for d in self.decisions],
        }

    def json_head(self) -> dict[str, Any]:
        """`to_json` up to its lists of records (trades, fills, unfilled orders, decisions),
        which come last."""
        s = self.settings
        return {
            "strategy": self.config.model_dump(mode="json"),
            "initial_capital_rupees": str(s.initial_capital_rupees),
            "start": s.start.isoformat() if s.start else None,
            "end": s.end.isoformat() if s.end else None,
            "data_start": to_ist(self.data_start).isoformat() if self.data_start else None,
            "data_end": to_ist(self.data_end).isoformat() if self.data_end else None,
            "warnings": list(self.warnings),
            "bars": self.bars,
            "report": self.report.to_json(),
            "charges_rupees": {
                k: str(getattr(self.charges, k))
                for k in ("brokerage", "stt", "transaction", "sebi", "stamp", "gst", "dp", "other")
            }
            | {"total": str(self.charges.total)},
        }

    def unfilled_json(self) -> list[dict[str, Any]]:
        return [
            {
                "client_order_id": o.client_order_id,
                "symbol": o.symbol,
                "side": o.side.value,
                "quantity": o.quantity,
                "leg": o.leg,
                "reason": o.reason,
            }
            for o in self.unfilled
        ]


Progress = Callable[[int, int], None]
MarketFeed = Callable[[datetime], MarketState]
_OPEN_MARKET = MarketState()  # a backtest's market, unless a feed says otherwise


class _Book:
    """The account of one run: exact cash, and per symbol the shared accounting kernel
    (`dalal_shared.accounting`: FIFO lots, realised P&L, Zerodha's charges per scrip and day),
    the one the portfolio ledger books live fills with, so the same fills give the same rupees."""

    def __init__(self, config: StrategyConfig, settings: BacktestSettings, symbols: list[str]):
        self.config, self.settings = config, settings
        self.duration = bar_duration(config.interval)
        self.cash = settings.initial_capital_rupees
        self.cash_f = float(self.cash)  # its float twin for sizing and marks
        self.cash_paise = _paise(self.cash)
        self.held: dict[str, int] = {}  # symbol -> shares, for the open positions
        self.positions = {sym: _Position() for sym in symbols}
        self.accounts = {
            sym: accounting.PositionReplay(("NSE", sym, config.product)) for sym in symbols
        }
        self.states: dict[str, dict[str, Any]] = {sym: {} for sym in symbols}
        self.trades: list[Trade] = []
        self.fills: list[FillRecord] = []
        self.unfilled: list[PendingOrder] = []

    @property
    def charges(self) -> ChargesBreakdown:
        total = ChargesBreakdown()
        for account in self.accounts.values():
            total = total + account.pos.charges_breakdown
        return total

    def fill(
        self, sym: str, series: BarSeries, i: int, opened_at: datetime, orders: list[PendingOrder]
    ) -> None:
        """The orders decided on the previous bar meet bar `i` of `series` (its trading opened
        at `opened_at`), tick by tick. The bar's first tick alone fills most MARKET orders:
        the rest of the seeded path (and the bar's high, low and close as Decimals) is built
        only when an order is still open after it."""
        s = self.settings
        ticks: list[fills.Tick] | None = None
        volume = int(series.volume[i])
        open_price = _dec(series.open[i])
        for order in orders:
            side = order.side
            qty_wanted = order.quantity
            if side is fills.Side.SELL:
                qty_wanted = min(qty_wanted, self.positions[sym].quantity)
            limit = None
            if s.market_protection_pct and order.reference is not None:
                limit = fills.protection_limit(
                    side, order.reference, s.market_protection_pct, s.fill.tick_size
                )
            # the bar's first tick (at the open, when its trading opened)
            first = fills.match_market(side, qty_wanted, open_price, volume, s.fill, limit)
            if first is None:
                got, notional, first_at = 0, ZERO, None
            else:
                got, price = first
                notional, first_at = price * got, opened_at
            k = 1
            while got < qty_wanted:
                if ticks is None:
                    bar = fills.Bar(
                        opened_at,
                        open_price,
                        _dec(series.high[i]),
                        _dec(series.low[i]),
                        _dec(series.close[i]),
                        volume,
                    )
                    ticks = fills.tick_path(
                        bar, self.duration, seed=s.seed, key=sym, tick_size=s.fill.tick_size
                    )
                if k >= len(ticks):
                    break
                tick = ticks[k]
                terms = fills.OrderTerms(
                    side, fills.OrderType.MARKET, qty_wanted - got, protection_price=limit
                )
                f = fills.match(terms, tick, s.fill, resting=True, filled_in_bar=got)
                if f is not None:
                    got += f.quantity
                    notional += f.price * f.quantity
                    first_at = first_at or tick.ts
                k += 1
            if got == 0 or first_at is None:
                self.unfilled.append(order)  # cancelled, as a DAY order would be
                continue
            self._book(sym, order, got, q4(notional / got), first_at)

    def _book(self, sym: str, order: PendingOrder, got: int, price: Decimal, at: datetime) -> None:
        """One fill through the kernel: cash, the strategy's position, the round trip."""
        coid, reason = order.client_order_id, order.reason
        side: Literal["BUY", "SELL"] = "BUY" if order.side is fills.Side.BUY else "SELL"
        account = self.accounts[sym]
        effect = account.step(  # trade, client and broker order ids are the client order id
            accounting.Fill(
                coid, coid, coid, "NSE", sym, side, self.config.product, got, price, at, reason
            )
        )
        kp = account.pos
        charge = kp.fill_charges[coid]
        record = FillRecord(coid, sym, side, got, price, at, order.leg, reason, charge)
        self.fills.append(record)
        self._set_cash(self.cash - price * (got if side == "BUY" else -got) - charge)
        pos = self.positions[sym]
        pos.quantity, pos.average_price, pos.opened_at = (
            kp.quantity,
            effect.average_price_after,  # the kernel's average price after the fill
            kp.opened_at,
        )
        if effect.kind == "opened":
            pos.trade = Trade(sym, at, got, price, charges=charge)
        elif effect.kind == "increased":  # scale-in (no built-in strategy does it)
            assert pos.trade is not None
            pos.trade.quantity += got
            pos.trade.entry_price = effect.average_price_after
            pos.trade.charges += charge
        else:  # an exit: the strategy's sells never exceed what it holds
            trade = pos.trade
            assert trade is not None
            trade.exits.append(record)
            trade.charges += charge
            trade.gross_pnl += effect.realised_gross
        if kp.quantity:
            self.held[sym] = kp.quantity
        elif effect.kind == "closed":
            trip = kp.round_trips[-1]  # the kernel's round trip is the trade's figures
            trade = pos.trade
            assert trade is not None
            trade.quantity, trade.entry_price = trip.quantity, trip.entry_price
            trade.gross_pnl, trade.charges = trip.realised_gross, trip.charges
            trade.closed_at = at
            self.trades.append(trade)
            self.positions[sym] = _Position()
            self.held.pop(sym, None)
            self.states[sym].clear()

    def _set_cash(self, cash: Decimal) -> None:
        self.cash, self.cash_f, self.cash_paise = cash, float(cash), _paise(cash)


def _paise(rupees: Decimal) -> int:
    return int(rupees.quantize(ZERO2) * 100)


def _timeline(
    spans: dict[str, NDArray[np.int64]],
) -> tuple[NDArray[np.int64], dict[str, NDArray[np.int64]]]:
    """The union of the symbols' bar starts (epoch seconds, sorted), and where each symbol's
    bars sit in it."""
    arrays = list(spans.values())
    first = arrays[0] if arrays else np.zeros(0, dtype=np.int64)
    if all(len(a) == len(first) and np.array_equal(a, first) for a in arrays[1:]):
        index = np.arange(len(first))
        return first, dict.fromkeys(spans, index)
    times = np.sort(np.concatenate(arrays))  # np.unique's result, without its numpy.ma import
    times = times[np.append(True, times[1:] != times[:-1])]
    return times, {sym: np.searchsorted(times, a) for sym, a in spans.items()}


def _carried(values: NDArray[np.float64], where: NDArray[np.int64], n: int) -> NDArray[np.float64]:
    """`values` (one per bar of a symbol) at each of the `n` bar times of the timeline: the
    symbol's latest value at that time, 0 before its first bar."""
    if len(where) == n:
        return values
    latest = np.full(n, -1, dtype=np.int64)
    latest[where] = np.arange(len(where))
    latest = np.maximum.accumulate(latest)
    return np.where(latest >= 0, values[np.maximum(latest, 0)], 0.0)


def _marked(mask: NDArray[np.bool_] | None) -> tuple[list[bool], list[int]] | None:
    """A candidate mask as a list (to test one bar) and the indices it marks (to find the
    next); None (every bar is a candidate) stays None."""
    if mask is None:
        return None
    return mask.tolist(), np.flatnonzero(mask).tolist()


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
        self.market = market or (lambda _at: _OPEN_MARKET)
        self.risk = RiskManager(config.risk, self.calendar)
        self._order_at: dict[datetime, datetime] = {}  # bar start -> its orders' market time

    def run(self, progress: Progress | None = None) -> BacktestResult:
        cfg, s, strat, cal = self.config, self.settings, self.strategy, self.calendar
        interval = cfg.interval
        symbols = list(self.data)
        windows: dict[str, tuple[int, int]] = {}
        for sym, series in self.data.items():
            lo = 0 if s.start is None else bisect.bisect_left(series.start, s.start)
            hi = len(series) if s.end is None else bisect.bisect_left(series.start, s.end)
            windows[sym] = (lo, max(lo, hi))
        times, where = _timeline(
            {sym: self.data[sym].seconds[lo:hi] for sym, (lo, hi) in windows.items()}
        )
        n_times = len(times)
        close_seconds, days = bar_close_seconds(interval, times, cal)
        ind = {sym: strat.indicators(series) for sym, series in self.data.items()}
        entry_marks = {sym: _marked(strat.candidates(ind[sym])) for sym in symbols}
        exit_marks = {sym: _marked(self._exit_mask(sym, ind[sym])) for sym in symbols}
        closes = {  # each symbol's close at every bar time of the run
            sym: _carried(self.data[sym].close[lo:hi], where[sym], n_times)
            for sym, (lo, hi) in windows.items()
        }
        last_close = {sym: values.tolist() for sym, values in closes.items()}  # one at a time
        book = _Book(cfg, s, symbols)
        pending: dict[str, list[PendingOrder]] = {sym: [] for sym in symbols}
        decisions: list[RiskDecision] = []
        equity_f = np.empty(n_times)  # the marks, as the risk manager sees them
        equity_paise = np.empty(n_times, dtype=np.int64)
        exposure_paise = np.zeros(n_times, dtype=np.int64)

        # Only bars where a symbol may act are visited: a flat symbol at its entry candidates,
        # an open position at its exit candidates, a symbol with orders at its next bar. Each
        # symbol has one entry in the heap: (time index, symbol order, symbol, bar index).
        order_of = {sym: k for k, sym in enumerate(symbols)}
        heap: list[tuple[int, int, str, int]] = []
        opens: dict[datetime, datetime] = {}  # bar start -> when its trading opened

        def schedule(sym: str, i: int) -> None:
            """Put `sym` back in the heap at its first bar from `i` on where it may act."""
            lo, hi = windows[sym]
            if not pending[sym]:
                marks = entry_marks[sym] if book.positions[sym].quantity == 0 else exit_marks[sym]
                if marks is not None:
                    at = bisect.bisect_left(marks[1], i)
                    i = marks[1][at] if at < len(marks[1]) else hi
            if i < hi:
                heapq.heappush(heap, (int(where[sym][i - lo]), order_of[sym], sym, i))

        def mark(a: int, b: int) -> None:
            """Mark bars a..b-1 to market (nothing trades between two visited bars). A short
            span bar by bar as at a visited bar (numpy's fixed cost per call outweighs a few
            bars; the same float operations in the same order, so the same marks)."""
            if b - a <= 8:
                held = [(shares, last_close[sym]) for sym, shares in book.held.items()]
                for k in range(a, b):
                    value = 0.0
                    for shares, close in held:
                        value += shares * close[k]
                    equity_f[k] = book.cash_f + value
                    exposure_paise[k] = paise = round(value * 100)
                    equity_paise[k] = book.cash_paise + paise
                return
            exposure = np.zeros(b - a)
            for sym, shares in book.held.items():
                exposure += shares * closes[sym][a:b]
            equity_f[a:b] = book.cash_f + exposure
            exposure_paise[a:b] = np.rint(exposure * 100)
            equity_paise[a:b] = book.cash_paise + exposure_paise[a:b]

        for sym in symbols:
            schedule(sym, windows[sym][0])
        marked = 0  # bars marked so far
        report_every, next_report = max(1, n_times // 100), 0
        while heap:
            n = heap[0][0]
            due = []
            while heap and heap[0][0] == n:
                due.append(heapq.heappop(heap))
            if marked < n:
                mark(marked, n)
            # 1. fills of the orders decided on each symbol's previous bar
            for _, _, sym, i in due:
                if pending[sym]:
                    series = self.data[sym]
                    start = series.start[i]
                    opened_at = opens.get(start)
                    if opened_at is None:  # the symbols of one bar time share it
                        opened_at = opens[start] = session_open_of(interval, start, cal)
                    book.fill(sym, series, i, opened_at, pending[sym])
                    pending[sym] = []
            # 2. mark to market at this bar's close
            exposure = 0.0
            for sym, shares in book.held.items():
                exposure += shares * last_close[sym][n]
            equity_now = book.cash_f + exposure
            equity_f[n] = equity_now
            exposure_paise[n] = paise = round(exposure * 100)
            equity_paise[n] = book.cash_paise + paise
            self.risk.mark_span(days[marked : n + 1], equity_f[marked : n + 1])
            marked = n + 1
            # 3. decisions on the completed bar
            for _, _, sym, i in due:
                marks = entry_marks[sym] if book.positions[sym].quantity == 0 else exit_marks[sym]
                if marks is None or marks[0][i]:
                    self._decide_bar(sym, i, ind[sym], book, equity_now, pending[sym], decisions)
                schedule(sym, i + 1)
            if progress is not None and n >= next_report:
                progress(n + 1, n_times)
                next_report = n + report_every
        if marked < n_times:
            mark(marked, n_times)
            self.risk.mark_span(days[marked:], equity_f[marked:])
        if progress is not None:
            progress(n_times, n_times)

        curve = EquityCurve(close_seconds, days, equity_paise, exposure_paise)
        open_trades = [p.trade for p in book.positions.values() if p.trade is not None]
        report = compute_paise(
            [t.net_pnl for t in book.trades],
            days,
            equity_paise,
            exposure_paise,
            initial_equity=s.initial_capital_rupees,
        )
        data_start, data_end, warnings = _coverage(self.data, windows, s, cal)
        return BacktestResult(
            cfg,
            s,
            sum(hi - lo for lo, hi in windows.values()),
            book.trades,
            open_trades,
            book.fills,
            decisions,
            curve,
            report,
            book.charges,
            data_start,
            data_end,
            warnings,
            book.unfilled,
        )

    def _exit_mask(self, sym: str, ind: dict[str, NDArray[Any]]) -> NDArray[np.bool_] | None:
        """Bars where an open position may act: the strategy's exit candidates, and for MIS on
        intraday bars the bars from its `mis_exit_at` on (the square-off)."""
        mask = self.strategy.exit_candidates(ind)
        cfg = self.config
        if mask is None or cfg.product != "MIS" or cfg.interval == "day":
            return mask
        late = intraday.late_bars(
            self.data[sym].seconds, int(bar_duration(cfg.interval).total_seconds()), cfg.mis_exit_at
        )
        return mask | late

    def _decide_bar(
        self,
        sym: str,
        i: int,
        ind: dict[str, NDArray[Any]],
        book: _Book,
        equity_now: float,
        pending: list[PendingOrder],
        decisions: list[RiskDecision],
    ) -> None:
        """The strategy's signals on bar `i` of `sym`, through the risk manager into orders."""
        pos = book.positions[sym]
        series = self.data[sym]
        ctx = BarContext(
            sym,
            i,
            series,
            ind,
            PositionView(pos.quantity, float(pos.average_price), pos.opened_at),
            book.states[sym],
            equity_now,
            book.cash_f,
        )
        signals = self.strategy.on_bar(ctx)
        cfg = self.config
        intraday_mis = cfg.product == "MIS" and cfg.interval != "day"
        if not signals and not (intraday_mis and pos.quantity > 0):
            return
        ts = series.start[i]
        at = self._order_at.get(ts)
        if at is None:  # the symbols of one bar time share it
            at = self._order_at[ts] = order_time(cfg.interval, ts, self.calendar)
        if intraday_mis:  # the live loop's rule: MIS positions end with the session
            signals = intraday.session_end(
                product=cfg.product,
                interval=cfg.interval,
                exit_at=cfg.mis_exit_at,
                order_at=at,
                held=pos.quantity,
                signals=signals,
            )
        if not signals:
            return
        account = AccountState(equity_now, book.cash_f, len(book.held))
        close = float(series.close[i])
        for sig in signals:
            order, decision = self._decide(sig, sym, ts, at, pos.quantity, account, close)
            decisions.append(decision)
            if order is not None:
                pending.append(order)

    def _decide(
        self,
        sig: Signal,
        sym: str,
        bar_start: datetime,
        at: datetime,
        held: int,
        account: AccountState,
        close: float,
    ) -> tuple[PendingOrder | None, RiskDecision]:
        """The risk manager's decision on one signal, and the order it makes (at the market
        from the next bar, the decision bar's `close` its reference price)."""
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
                note=f"{sig.leg} {sig.reason}",
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
                note=f"{sig.leg} {sig.reason}",
            )
            side = fills.Side.SELL
        if not decision.approved or decision.quantity <= 0:
            return None, decision
        order = PendingOrder(
            coid, sym, side, decision.quantity, sig.action, sig.leg, sig.reason, at, _dec(close)
        )
        return order, decision


def _coverage(
    data: dict[str, BarSeries],
    windows: dict[str, tuple[int, int]],
    settings: BacktestSettings,
    cal: NseCalendar,
) -> tuple[datetime | None, datetime | None, list[str]]:
    """The first and last bar start the run had, and a warning per symbol whose bars start
    after the requested start's first session or end before the requested end's last one."""
    firsts, lasts, warnings = [], [], []
    want_first = want_last = None
    try:
        if settings.start is not None:
            day = to_ist(settings.start).date()
            want_first = day if cal.is_trading_day(day) else cal.next_trading_day(day)
        if settings.end is not None:
            end = to_ist(settings.end)
            day = end.date()
            opened = end.time() > OPEN_TIME and cal.is_trading_day(day)
            want_last = day if opened else cal.previous_trading_day(day)
    except CalendarCoverageError as exc:  # a date the calendar cannot place: say so
        warnings.append(f"coverage not checked: {exc}")
    for sym, (lo, hi) in windows.items():
        series = data[sym]
        if hi <= lo:
            warnings.append(f"{sym}: no bars in the requested range")
            continue
        first, last = series.start[lo], series.start[hi - 1]
        firsts.append(first)
        lasts.append(last)
        if want_first is not None and to_ist(first).date() > want_first:
            warnings.append(
                f"{sym}: the data starts {to_ist(first).date()}, after the requested "
                f"{to_ist(settings.start).date() if settings.start else want_first}"
            )
        if want_last is not None and to_ist(last).date() < want_last:
            warnings.append(
                f"{sym}: the data ends {to_ist(last).date()}, before the requested end {want_last}"
            )
    return (min(firsts) if firsts else None, max(lasts) if lasts else None, warnings)


def bars_per_second(result: BacktestResult, seconds: float) -> float:
    return result.bars / seconds if seconds > 0 else math.inf


def symbols_of(data: Iterable[str]) -> list[str]:
    return sorted(data)
