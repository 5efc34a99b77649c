"""When a bar's decision reaches the market."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from dalal_shared.calendar import NseCalendar
from dalal_shared.timeutil import to_ist

IST_OFFSET = timedelta(hours=5, minutes=30)
_DAILY_CLOSE = timedelta(hours=15, minutes=30)  # after a daily candle's 00:00 IST stamp
_IST_SECONDS = 19_800
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

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


def ist_day(moment: datetime) -> date:
    """The IST calendar day of an aware time (plain arithmetic: IST has no DST)."""
    offset = moment.utcoffset()
    assert offset is not None, "aware datetimes only"
    return (moment - offset + IST_OFFSET).date()


def bar_closes(
    interval: str, starts: list[datetime], calendar: NseCalendar
) -> list[tuple[datetime, date]]:
    """(close time, IST day of it) of each bar: the session close for a daily candle (stamped
    00:00 IST), the bar's end for an intraday one. Computed once per backtest, outside the
    per-bar loop; the same instants as `session_open_of(...) + bar_duration(...)`."""
    duration = bar_duration(interval)
    out = []
    if interval != "day":
        for ts in starts:
            end = ts + duration
            out.append((end, ist_day(end)))
        return out
    trading = calendar.trading_day_ordinals()
    for ts in starts:
        # IST wall seconds from the epoch: a daily candle is stamped at 00:00 IST of its day
        wall = ts.timestamp() + _IST_SECONDS
        ordinal = int(wall // 86_400) + _EPOCH_ORDINAL
        if wall % 86_400 == 0 and ordinal in trading:
            out.append((ts + _DAILY_CLOSE, date.fromordinal(ordinal)))  # 15:30 IST that day
        else:
            end = session_open_of(interval, ts, calendar) + duration
            out.append((end, ist_day(end)))
    return out
