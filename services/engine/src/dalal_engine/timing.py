"""When a bar's decision reaches the market."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from dalal_shared.calendar import CalendarCoverageError, NseCalendar
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


def warmup_days(interval: str, bars: int) -> int:
    """Calendar days that hold at least `bars` bars of `interval` (weekends, holidays and a
    margin included): how far before a start the indicators' history must reach."""
    if interval == "day":
        return bars * 7 // 5 + 10
    per_day = max(1, int(bar_duration("day") / bar_duration(interval)))
    return (bars // per_day + 1) * 7 // 5 + 4


def session_bounds(calendar: NseCalendar, day: date) -> tuple[datetime, datetime] | None:
    """(open, close) in UTC of the day's session, None when the market is shut. A day the NSE
    holiday list does not cover yet is taken as a regular weekday session
    (`NseCalendar.session_or_regular`), so bars keep their times; the risk manager refuses
    entries on such days (`calendar_not_covered`)."""
    session = calendar.session_or_regular(day)
    return (session.open, session.close) if session is not None else None


def _next_session_day(calendar: NseCalendar, day: date) -> date:
    try:
        return calendar.next_trading_day(day)
    except CalendarCoverageError:  # beyond the holiday list: the next weekday
        day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        return day


def order_time(interval: str, bar_start: datetime, calendar: NseCalendar) -> datetime:
    """When an order decided on this completed bar reaches the market: the next trading
    session's open for daily bars, the bar's end for intraday bars."""
    if interval == "day":
        day = _next_session_day(calendar, to_ist(bar_start).date())
        bounds = session_bounds(calendar, day)
        assert bounds is not None
        return bounds[0]
    return bar_start + bar_duration(interval)


def session_open_of(interval: str, bar_start: datetime, calendar: NseCalendar) -> datetime:
    """The time the bar's trading starts (a daily candle is stamped 00:00 IST)."""
    if interval == "day":
        bounds = session_bounds(calendar, to_ist(bar_start).date())
        return bounds[0] if bounds is not None else bar_start
    return bar_start


def ist_day(moment: datetime) -> date:
    """The IST calendar day of an aware time (plain arithmetic: IST has no DST)."""
    offset = moment.utcoffset()
    assert offset is not None, "aware datetimes only"
    return (moment - offset + IST_OFFSET).date()


def bar_close_seconds(
    interval: str, start_seconds: NDArray[np.int64], calendar: NseCalendar
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Close time (epoch seconds) and IST day (days since 1970-01-01) of each bar, whose start
    is given in epoch seconds: the session close for a daily candle (stamped 00:00 IST), the
    bar's end for an intraday one. Vectorised, once per backtest; the same instants as
    `session_open_of(...) + bar_duration(...)`."""
    starts = np.asarray(start_seconds, dtype=np.int64)
    duration = int(bar_duration(interval).total_seconds())
    if interval != "day":
        closes = starts + duration
        return closes, (closes + _IST_SECONDS) // 86_400
    wall = starts + _IST_SECONDS
    days = wall // 86_400
    trading = calendar.trading_day_ordinals()
    regular = (wall % 86_400 == 0) & np.fromiter(
        ((d + _EPOCH_ORDINAL) in trading for d in days.tolist()), dtype=bool, count=len(days)
    )
    closes = starts + int(_DAILY_CLOSE.total_seconds())  # 15:30 IST of the candle's day
    for k in np.flatnonzero(~regular).tolist():  # odd stamps and Muhurat days: the slow way
        ts = datetime.fromtimestamp(int(starts[k]), UTC)
        end = session_open_of(interval, ts, calendar) + bar_duration(interval)
        closes[k] = int(end.timestamp())
        days[k] = (closes[k] + _IST_SECONDS) // 86_400
    return closes, days


def day_number(day: date) -> int:
    """Days since 1970-01-01 (the day numbers of `bar_close_seconds`)."""
    return day.toordinal() - _EPOCH_ORDINAL


def day_of_number(number: int) -> date:
    return date.fromordinal(number + _EPOCH_ORDINAL)
