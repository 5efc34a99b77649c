"""The risk manager: each limit stops entries and says why; exits only stop for the kill switch."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from dalal_engine.risk import AccountState, MarketState, RiskConfig, RiskManager
from dalal_engine.timing import day_of_number
from dalal_shared.timeutil import IST

OPEN = datetime(2025, 3, 3, 10, 0, tzinfo=IST)  # a Monday, market open
ACCOUNT = AccountState(equity=1_000_000, cash=1_000_000, open_positions=0)


def entry(
    rm: RiskManager,
    *,
    at: datetime = OPEN,
    account: AccountState = ACCOUNT,
    market: MarketState = MarketState(),
    price: float = 100.0,
    stop: float | None = 95.0,
):
    return rm.check_entry(
        strategy="s",
        symbol="INFY",
        at=at,
        reference_price=price,
        stop=stop,
        fixed_quantity=None,
        account=account,
        market=market,
    )


def test_size_is_risk_over_stop_distance_capped_by_position_capital_and_cash() -> None:
    rm = RiskManager(RiskConfig(risk_per_trade_pct=1, max_position_pct_of_equity=100))
    assert entry(rm).quantity == 2000  # 10,000 rupees at risk / 5 rupees a share
    capped = RiskManager(RiskConfig(risk_per_trade_pct=1, max_position_pct_of_equity=10))
    assert entry(capped).quantity == 1000  # 10% of equity at 100
    poor = AccountState(equity=1_000_000, cash=5_000, open_positions=0)
    assert entry(rm, account=poor).quantity == 50


@pytest.mark.parametrize(
    ("market", "reason"),
    [
        (MarketState(kill_switch=True, kill_switch_reason="manual"), "kill_switch"),
        (MarketState(session_valid=False), "session_invalid"),
        (MarketState(data_stale=True), "data_stale"),
    ],
)
def test_system_states_stop_entries(market: MarketState, reason: str) -> None:
    d = entry(RiskManager(RiskConfig()), market=market)
    assert (d.approved, d.reason, d.quantity) == (False, reason, 0)


def test_market_hours_and_holidays() -> None:
    rm = RiskManager(RiskConfig())
    assert entry(rm, at=OPEN.replace(hour=8)).reason == "market_closed"
    assert entry(rm, at=datetime(2025, 3, 14, 10, tzinfo=IST)).reason == "market_holiday"  # Holi
    assert entry(rm, at=datetime(2025, 3, 8, 10, tzinfo=IST)).reason == "market_holiday"  # Sat
    assert entry(rm).approved


def test_max_open_positions() -> None:
    rm = RiskManager(RiskConfig(max_open_positions=2))
    full = AccountState(equity=1_000_000, cash=1_000_000, open_positions=2)
    assert entry(rm, account=full).reason == "max_open_positions"


def test_daily_loss_halts_entries_for_the_rest_of_the_day_only() -> None:
    rm = RiskManager(RiskConfig(max_daily_loss_rupees=Decimal("5000")))
    rm.mark(OPEN, 1_000_000)
    rm.mark(OPEN + timedelta(minutes=5), 994_000)
    rm.mark(OPEN + timedelta(minutes=10), 999_000)  # recovers, still halted
    assert entry(rm, at=OPEN + timedelta(minutes=15)).reason == "daily_loss"
    next_day = OPEN + timedelta(days=1)
    rm.mark(next_day, 999_000)
    assert entry(rm, at=next_day).approved


def test_the_days_loss_counts_from_the_previous_close() -> None:
    """One mark a day (daily bars): a close 6,000 under the previous close is a 6,000 loss
    today and halts entries decided on it; the next day's budget starts from that close."""
    rm = RiskManager(RiskConfig(max_daily_loss_rupees=Decimal("5000")))
    days = [OPEN + timedelta(days=k) for k in range(3)]
    rm.mark(days[0], 1_000_000)
    assert not rm.halted_for_the_day
    rm.mark(days[1], 994_000)
    assert rm.daily_pnl == -6_000 and entry(rm, at=days[1]).reason == "daily_loss"
    rm.mark(days[2], 990_000)  # 4,000 under the previous close: within the limit
    assert rm.daily_pnl == -4_000 and entry(rm, at=days[2]).approved


def test_orders_per_minute() -> None:
    rm = RiskManager(RiskConfig(max_orders_per_minute=3))
    got = [entry(rm, at=OPEN + timedelta(seconds=s)).reason for s in (0, 10, 20, 30)]
    assert got == ["ok", "ok", "ok", "order_rate"]
    assert entry(rm, at=OPEN + timedelta(seconds=61)).approved


def test_exits_pass_every_gate_but_the_kill_switch() -> None:
    rm = RiskManager(RiskConfig())
    stale = MarketState(data_stale=True, session_valid=False)
    ok = rm.check_exit(
        strategy="s",
        symbol="INFY",
        action="EXIT",
        at=OPEN.replace(hour=20),
        quantity=5,
        market=stale,
    )
    assert ok.approved and ok.quantity == 5
    killed = rm.check_exit(
        strategy="s",
        symbol="INFY",
        action="EXIT",
        at=OPEN,
        quantity=5,
        market=MarketState(kill_switch=True),
    )
    assert (killed.approved, killed.reason) == (False, "kill_switch")


def test_marking_a_span_at_once_equals_marking_each_point() -> None:
    """The backtester marks the bars between events in one call: the day's start, its loss
    and the halt come out as if each bar had been marked."""
    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(1, 12))
        days = np.sort(rng.integers(0, 4, n)) + 20_000
        equities = 1_000_000 + rng.integers(-8_000, 8_000, n).astype(float)
        one = RiskManager(RiskConfig(max_daily_loss_rupees=Decimal("5000")))
        many = RiskManager(RiskConfig(max_daily_loss_rupees=Decimal("5000")))
        if trial % 2:  # a day already under way, perhaps halted, before the span
            earlier = float(rng.integers(990_000, 1_000_000))
            for rm in (one, many):
                rm.mark_day(day_of_number(20_000), 1_000_000)
                rm.mark_day(day_of_number(20_000), earlier)
        for d, e in zip(days.tolist(), equities.tolist(), strict=True):
            one.mark_day(day_of_number(d), e)
        many.mark_span(days, equities)
        assert many.state() == one.state()


def test_short_spans_as_lists_equal_the_array_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """`mark_span` takes a short span as lists (the backtester's usual few bars): the same
    state as the array way, long spans, NaN marks and infinities included."""
    from dalal_engine import risk

    rng = np.random.default_rng(5)
    odd = (math.nan, math.inf, -math.inf)
    for trial in range(400):
        n = int(rng.integers(1, 70))
        days = np.sort(rng.integers(0, 4, n)) + 20_000
        equities = 1_000_000 + rng.integers(-8_000, 8_000, n).astype(float)
        if trial % 3 == 0:  # a NaN or an infinity somewhere
            equities[int(rng.integers(0, n))] = odd[trial % 9 // 3]
        states = []
        for short in (risk._SHORT_SPAN, 0):
            monkeypatch.setattr(risk, "_SHORT_SPAN", short)
            rm = RiskManager(RiskConfig(max_daily_loss_rupees=Decimal("5000")))
            if trial % 2:  # a day under way before the span
                rm.mark_day(day_of_number(20_000), 1_000_000)
                rm.mark_day(day_of_number(20_000), 994_000.0)
            rm.mark_span(days, equities)
            states.append(repr(rm.state()))  # repr: NaN equals itself
        assert states[0] == states[1], (trial, n)


def test_a_day_the_holiday_list_does_not_cover_refuses_entries_not_exits() -> None:
    """NSE publishes its holiday list a year at a time: past its end, entries wait (reason
    `calendar_not_covered`) and exits still go."""
    from datetime import date

    from dalal_shared.calendar import NseCalendar

    rm = RiskManager(RiskConfig(), NseCalendar({}, date(2024, 1, 1), date(2024, 12, 31)))
    later = datetime(2025, 1, 6, 10, tzinfo=IST)
    assert entry(rm, at=later).reason == "calendar_not_covered"
    assert rm.check_exit(
        strategy="s", symbol="INFY", action="EXIT", at=later, quantity=5, market=MarketState()
    ).approved
    assert entry(rm, at=datetime(2024, 12, 31, 10, tzinfo=IST)).approved
