"""The risk manager: whether an order may go, and how big an entry may be.

Plain Python, no I/O. Every call returns a `RiskDecision` (approved or refused, with a stable
reason code and the numbers behind it); the caller records it and counts it in a metric.

Entries are refused (reason code in brackets) while the engine does not yet know the kill switch,
the session or the equity from their owners (`safety_state_unknown`, see `safety.py`), when the
kill switch is engaged (`kill_switch`),
the Kite session is not valid (`session_invalid`), market data is stale (`data_stale`), the
order would reach the market on an NSE holiday or weekend (`market_holiday`), outside
09:15-15:30 IST (`market_closed`) or on a day the NSE holiday list does not cover yet
(`calendar_not_covered`), the day's loss reached `max_daily_loss_rupees` (`daily_loss`,
and entries stay halted for the rest of that IST day), `max_open_positions` are open
(`max_open_positions`), `max_orders_per_minute` orders went in the last 60 s
(`order_rate`), or the size comes out below one share (`size_zero`). Exits are only refused
while the kill switch is engaged: reducing risk never waits for anything else. The live loop
adds its own codes to the decisions it records: `paused` (an entry while the engine is paused),
`stale_signal` (a deferred decision whose bar became too old), `order_in_flight` (a bar whose
decision waits for an order of the symbol to settle; decided then).

Every time here is the market clock's (`clock.py`): the risk day, the order-rate window and the
market hours follow the exchange's time (kitesim's in sim, the bar's in a backtest), never the
machine's clock in a replay.

Size of an entry = floor(equity x `risk_per_trade_pct` / stop distance), capped by
`max_position_pct_of_equity` of equity and by the cash available at the reference price.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from dalal_engine.timing import day_of_number
from dalal_shared.calendar import NseCalendar, nse_calendar
from dalal_shared.slots import slot_init
from dalal_shared.timeutil import ensure_aware, isoformat, to_ist

MANUAL = "manual"  # the strategy name of orders sent by hand through the engine


class RiskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    risk_per_trade_pct: float = Field(1.0, gt=0, le=100)
    max_position_pct_of_equity: float = Field(25.0, gt=0, le=100)
    max_open_positions: int = Field(5, ge=1, le=1000)
    max_daily_loss_rupees: Decimal = Field(Decimal("10000"), gt=0)
    max_orders_per_minute: int = Field(20, ge=1, le=200)
    enforce_market_hours: bool = Field(
        True, description="refuse entries outside NSE sessions (off only for tests and replays)"
    )


@dataclass(frozen=True, slots=True)
class MarketState:
    """What the system says about trading right now."""

    kill_switch: bool = False
    kill_switch_reason: str = ""
    session_valid: bool = True
    data_stale: bool = False
    # False until the kill switch, session and equity came from their owners (a live engine
    # starts so; a backtest knows its own world)
    safety_known: bool = True
    safety_missing: tuple[str, ...] = ()


@slot_init
@dataclass(frozen=True, slots=True)
class AccountState:
    """The account as the risk manager sizes against it."""

    equity: float
    cash: float
    open_positions: int


@slot_init
@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The risk manager's answer to one signal: approved or refused (why), and the quantity."""

    at: datetime
    strategy: str
    symbol: str
    action: str  # ENTER / REDUCE / EXIT
    approved: bool
    reason: str  # "ok" or a refusal code
    quantity: int = 0
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "at": isoformat(self.at),
            "strategy": self.strategy,
            "symbol": self.symbol,
            "action": self.action,
            "approved": self.approved,
            "reason": self.reason,
            "quantity": self.quantity,
            "detail": self.detail,
        }


def _noted(note: str, detail: str) -> str:
    """A decision's detail with `note` in front (`note; detail`, or either alone)."""
    if not note:
        return detail
    return f"{note}; {detail}" if detail else note


_SHORT_SPAN = 32  # marks up to which `mark_span` works on lists


@dataclass(slots=True)
class _Day:
    """The trading day the daily loss limit counts from."""

    day: date | None = None
    start_equity: float = 0.0
    equity: float = 0.0
    halted: bool = False


@dataclass
class RiskManager:
    """A strategy instance's checks before an order: limits, sizing, market hours, daily loss."""

    config: RiskConfig
    calendar: NseCalendar = field(default_factory=nse_calendar)
    _orders: deque[datetime] = field(default_factory=deque)
    _day: _Day = field(default_factory=_Day)
    _loss_limit: float = 0.0

    def __post_init__(self) -> None:
        self._loss_limit = float(self.config.max_daily_loss_rupees)

    # ------------------------------------------------------------ the day's loss

    def mark(self, at: datetime, equity: float) -> None:
        """Tell the manager the equity at `at` (each bar, each snapshot): starts a new IST day's
        loss budget on a new day, halts entries once the day's loss reaches the limit. The day's
        loss is counted from the equity it started with: the last mark of an earlier day (the
        previous close), or the day's first mark when there is none."""
        self.mark_day(to_ist(at).date(), equity)

    def mark_day(self, day: date, equity: float) -> None:
        """`mark` with the IST day already known (the backtester computes it once per bar)."""
        current = self._day
        if current.day is not None and day < current.day:
            return  # a late mark of an earlier day (a backlog bar): the day never goes back
        if current.day != day:  # a new day: reset in place (once per bar on daily bars)
            start = current.equity if current.day is not None else equity
            current.day, current.start_equity, current.halted = day, start, False
        current.equity = equity
        if current.start_equity - equity >= self._loss_limit:
            current.halted = True

    def mark_span(self, days: NDArray[np.int64], equities: NDArray[np.float64]) -> None:
        """`mark_day` for each of many marks in time order at once (the backtester marks the
        bars between two events this way): `days` are IST days as days since 1970-01-01."""
        n = len(days)
        if n == 0:
            return
        if n <= _SHORT_SPAN:  # the usual span, a few bars between two events: as lists
            # (numpy's fixed cost per call outweighs a few marks; the same values)
            numbers, values = days.tolist(), equities.tolist()
            last = numbers[-1]
            # the last day's first mark (the days are sorted: numpy's searchsorted)
            first = n - 1 if n == 1 or numbers[-2] != last else numbers.index(last)
            tail = values[first:]
            # numpy's minimum: NaN when there is one, which Python's `min` need not give
            lowest = float(np.min(tail)) if math.isnan(sum(tail)) else min(tail)
            before, opening, closing = values[first - 1], values[0], values[-1]
        else:
            last = int(days[-1])
            if n == 1 or int(days[-2]) != last:  # the last day has one mark here (daily bars)
                first = n - 1
            else:
                first = int(np.searchsorted(days, last, side="left"))
            lowest = float(equities[first]) if first == n - 1 else float(equities[first:].min())
            before, opening, closing = (
                float(equities[first - 1]),
                float(equities[0]),
                float(equities[-1]),
            )
        current = self._day
        day = day_of_number(last)
        if first == 0 and current.day == day:  # the span continues the day under way
            start, halted = current.start_equity, current.halted
        elif first > 0:  # the day starts inside the span: from the mark before it
            start, halted = before, False
        else:  # the day starts with the span: from the last mark of an earlier day, if any
            start = current.equity if current.day is not None else opening
            halted = False
        if not halted:
            halted = start - lowest >= self._loss_limit
        current.day, current.start_equity, current.halted = day, start, halted
        current.equity = closing

    @property
    def halted_for_the_day(self) -> bool:
        return self._day.halted

    @property
    def daily_pnl(self) -> float:
        """Equity change since the IST day started (0 before any mark)."""
        return self._day.equity - self._day.start_equity if self._day.day else 0.0

    def state(self) -> dict[str, object]:
        return {
            "day": self._day.day.isoformat() if self._day.day else None,
            "day_start_equity": self._day.start_equity,
            "daily_pnl_rupees": f"{self.daily_pnl:.2f}",
            "daily_loss_limit_rupees": str(self.config.max_daily_loss_rupees),
            "halted_for_the_day": self._day.halted,
            "orders_last_minute": len(self._orders),
        }

    # ------------------------------------------------------------ decisions

    def check_entry(
        self,
        *,
        strategy: str,
        symbol: str,
        at: datetime,
        reference_price: float,
        stop: float | None,
        fixed_quantity: int | None,
        account: AccountState,
        market: MarketState,
        note: str = "",
    ) -> RiskDecision:
        """May an entry reach the market at `at`, and with how many shares. `note` (say the
        signal's leg and reason) leads the decision's detail."""
        ensure_aware(at)

        def refuse(reason: str, detail: str) -> RiskDecision:
            noted = _noted(note, detail)
            return RiskDecision(at, strategy, symbol, "ENTER", False, reason, 0, noted)

        c = self.config
        gate = self._gate(at, market)
        if gate:
            return refuse(gate[0], gate[1])
        if self._day.halted:
            return refuse("daily_loss", f"day's loss reached {c.max_daily_loss_rupees} rupees")
        if account.open_positions >= c.max_open_positions:
            return refuse(
                "max_open_positions", f"{account.open_positions} open, limit {c.max_open_positions}"
            )
        if self._rate_exceeded(at):
            return refuse("order_rate", f"{c.max_orders_per_minute} orders in the last minute")
        quantity = self.size(
            equity=account.equity,
            cash=account.cash,
            reference_price=reference_price,
            stop=stop,
            fixed_quantity=fixed_quantity,
        )
        if quantity <= 0:
            return refuse("size_zero", "risk budget, position cap or cash allow no share")
        self._orders.append(at)
        return RiskDecision(at, strategy, symbol, "ENTER", True, "ok", quantity, note)

    def check_exit(
        self,
        *,
        strategy: str,
        symbol: str,
        action: str,
        at: datetime,
        quantity: int,
        market: MarketState,
        note: str = "",
    ) -> RiskDecision:
        """May an exit go (only the kill switch stops one). `note` as for `check_entry`."""
        ensure_aware(at)
        if market.kill_switch:
            return RiskDecision(
                at,
                strategy,
                symbol,
                action,
                False,
                "kill_switch",
                detail=_noted(note, market.kill_switch_reason),
            )
        self._rate_exceeded(at)  # keeps the window current
        self._orders.append(at)
        return RiskDecision(at, strategy, symbol, action, True, "ok", quantity, note)

    def check_manual(
        self,
        *,
        symbol: str,
        side: str,
        quantity: int,
        held: int,
        at: datetime,
        reference_price: float,
        account: AccountState,
        market: MarketState,
    ) -> RiskDecision:
        """A manual order (the engine's order route): a SELL of at most the shares the manual
        book holds is an exit (`check_exit`); anything else is an entry, refused by the same
        gate as a strategy's (kill switch, unknown safety state, no session; not market hours
        or stale data: the person decides, the broker's guards stay the last line), the order
        rate, and a value over `max_position_pct_of_equity` of equity or, for a BUY, over the
        cash (`position_cap`, never resized: a manual order goes as asked or not at all)."""
        ensure_aware(at)
        if side == "SELL" and 0 < quantity <= held:
            action = "EXIT" if quantity == held else "REDUCE"
            return self.check_exit(
                strategy=MANUAL, symbol=symbol, action=action, at=at, quantity=quantity,
                market=market,
            )  # fmt: skip

        def refuse(reason: str, detail: str) -> RiskDecision:
            return RiskDecision(at, MANUAL, symbol, "ENTER", False, reason, 0, detail)

        if market.kill_switch:
            return refuse("kill_switch", market.kill_switch_reason)
        if not market.safety_known:
            return refuse(
                "safety_state_unknown",
                "not yet known from their owners: " + ", ".join(market.safety_missing),
            )
        if not market.session_valid:
            return refuse("session_invalid", "no valid Kite session")
        if self._rate_exceeded(at):
            return refuse(
                "order_rate", f"{self.config.max_orders_per_minute} orders in the last minute"
            )
        if reference_price <= 0:
            return refuse("no_reference_price", "no price to value the order at")
        value = quantity * reference_price
        cap = account.equity * self.config.max_position_pct_of_equity / 100
        if value > cap:
            return refuse(
                "position_cap",
                f"{quantity} x {reference_price:.2f} = {value:,.2f} rupees is over "
                f"{self.config.max_position_pct_of_equity:g}% of equity ({cap:,.2f})",
            )
        if side == "BUY" and value > max(account.cash, 0.0):
            return refuse(
                "insufficient_cash",
                f"{quantity} x {reference_price:.2f} = {value:,.2f} rupees is over the cash "
                f"({account.cash:,.2f})",
            )
        self._orders.append(at)
        return RiskDecision(at, MANUAL, symbol, "ENTER", True, "ok", quantity)

    def size(
        self,
        *,
        equity: float,
        cash: float,
        reference_price: float,
        stop: float | None,
        fixed_quantity: int | None = None,
    ) -> int:
        c = self.config
        if reference_price <= 0:
            return 0
        if fixed_quantity is not None:
            quantity = fixed_quantity
        else:
            if stop is None or stop >= reference_price:
                return 0
            quantity = math.floor(equity * c.risk_per_trade_pct / 100 / (reference_price - stop))
        by_capital = math.floor(equity * c.max_position_pct_of_equity / 100 / reference_price)
        by_cash = math.floor(max(cash, 0.0) / reference_price)
        return max(0, min(quantity, by_capital, by_cash))

    def _gate(self, at: datetime, market: MarketState) -> tuple[str, str] | None:
        if market.kill_switch:
            return "kill_switch", market.kill_switch_reason
        if not market.safety_known:
            return (
                "safety_state_unknown",
                "not yet known from their owners: " + ", ".join(market.safety_missing),
            )
        if not market.session_valid:
            return "session_invalid", "no valid Kite session"
        if market.data_stale:
            return "data_stale", "market data is stale"
        if self.config.enforce_market_hours:
            day = to_ist(at).date()
            if not self.calendar.covers(day):
                return (
                    "calendar_not_covered",
                    f"the NSE holiday list ends {self.calendar.last}: {day} is not covered "
                    "(add the new year's list to dalal_shared's nse_holidays.csv)",
                )
            if not self.calendar.is_trading_day(day):
                kind = self.calendar.kind(day)
                return (
                    "market_holiday",
                    f"{day} is a {kind} ({self.calendar.description(day) or kind})",
                )
            if self.calendar.session_at(at) is None:
                return "market_closed", f"{to_ist(at):%H:%M} IST is outside 09:15-15:30"
        return None

    def _rate_exceeded(self, at: datetime) -> bool:
        window_start = at - timedelta(seconds=60)
        while self._orders and self._orders[0] <= window_start:
            self._orders.popleft()
        return len(self._orders) >= self.config.max_orders_per_minute
