"""When a bar's decision reaches the market."""

from __future__ import annotations

from datetime import datetime, timedelta

from dalal_shared.calendar import NseCalendar
from dalal_shared.timeutil import to_ist

INTERVAL_SECONDS = {
    "minute": 60,
    "3minute": 180,
    "5minute": 300,
    "10minute": 600,
    "15minute": 900,
    "30minute": 1800,
    "60minute": 3600,
}


def bar_duration(interval: str) -> timedelta:
    if interval == "day":
        return timedelta(hours=6, minutes=15)  # 09:15-15:30
    return timedelta(seconds=INTERVAL_SECONDS[interval])


def order_time(interval: str, bar_start: datetime, calendar: NseCalendar) -> datetime:
    """When an order decided on this completed bar reaches the market: the next trading
    session's open for daily bars, the bar's end for intraday bars."""
    if interval == "day":
        day = calendar.next_trading_day(to_ist(bar_start).date())
        session = calendar.session(day)
        assert session is not None
        return session.open
    return bar_start + bar_duration(interval)


def session_open_of(interval: str, bar_start: datetime, calendar: NseCalendar) -> datetime:
    """The time the bar's trading starts (a daily candle is stamped 00:00 IST)."""
    if interval == "day":
        session = calendar.session(to_ist(bar_start).date())
        return session.open if session is not None else bar_start
    return bar_start
