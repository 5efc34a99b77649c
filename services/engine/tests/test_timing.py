"""Bar close times, computed once per backtest in a fast path, are the instants the slow
definition gives: a daily candle closes at its session's close, an intraday bar at its end."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np

from dalal_engine.timing import (
    bar_close_seconds,
    bar_duration,
    day_number,
    day_of_number,
    ist_day,
    session_open_of,
)
from dalal_shared.calendar import nse_calendar
from dalal_shared.timeutil import IST


def test_bar_closes_match_session_open_plus_duration() -> None:
    cal = nse_calendar()
    # every calendar day of 2024 stamped at 00:00 IST (trading days, weekends, holidays,
    # Muhurat), in UTC and in IST, and a few intraday stamps
    days = [datetime(2024, 1, 1, tzinfo=IST) + timedelta(days=k) for k in range(366)]
    trading = [d for d in days if cal.is_trading_day(d.date())]
    stamps = trading + [d.astimezone(UTC) for d in trading[:50]]
    for interval, starts in (
        ("day", stamps),
        ("15minute", [datetime(2024, 3, 5, 9, 15, tzinfo=IST) + timedelta(minutes=15 * k)
                      for k in range(25)]),
    ):  # fmt: skip
        expected = []
        for ts in starts:
            end = session_open_of(interval, ts, cal) + bar_duration(interval)
            expected.append((end, ist_day(end)))
        assert _closes(interval, starts) == expected
    # a Muhurat-only day is no regular session: the fast path leaves it to the slow one
    muhurat = datetime(2024, 11, 1, tzinfo=IST)
    end = session_open_of("day", muhurat, cal) + bar_duration("day")
    assert _closes("day", [muhurat]) == [(end, ist_day(end))]
    assert muhurat.date().toordinal() not in cal.trading_day_ordinals()
    assert {d.date().toordinal() for d in trading} <= cal.trading_day_ordinals()


def _closes(interval: str, starts: list[datetime]) -> list[tuple[datetime, date]]:
    seconds = np.array([int(ts.timestamp()) for ts in starts], dtype=np.int64)
    closes, days = bar_close_seconds(interval, seconds, nse_calendar())
    return [
        (datetime.fromtimestamp(int(c), UTC), day_of_number(int(d)))
        for c, d in zip(closes, days, strict=True)
    ]


def test_day_numbers_round_trip() -> None:
    assert day_number(date(1970, 1, 2)) == 1
    assert day_of_number(day_number(date(2025, 9, 30))) == date(2025, 9, 30)


def test_bars_past_the_holiday_list_keep_regular_session_times() -> None:
    """A daily bar on the list's last day orders for the next weekday's 09:15 IST; a day the
    list does not cover is a regular 09:15-15:30 session on weekdays, shut on weekends."""
    from dalal_engine.timing import order_time, session_bounds
    from dalal_shared.calendar import NseCalendar

    cal = NseCalendar({}, date(2024, 1, 1), date(2024, 12, 31))
    last = datetime(2024, 12, 31, tzinfo=IST)
    assert order_time("day", last, cal) == datetime(2025, 1, 1, 9, 15, tzinfo=IST)
    friday = datetime(2025, 1, 3, tzinfo=IST)
    assert order_time("day", friday, cal) == datetime(2025, 1, 6, 9, 15, tzinfo=IST)
    assert session_bounds(cal, date(2025, 1, 4)) is None  # a Saturday
    assert session_open_of("day", friday, cal) == datetime(2025, 1, 3, 9, 15, tzinfo=IST)
    closes, days = bar_close_seconds("day", np.array([int(friday.timestamp())]), cal)
    assert datetime.fromtimestamp(int(closes[0]), UTC) == datetime(2025, 1, 3, 15, 30, tzinfo=IST)
    assert day_of_number(int(days[0])) == date(2025, 1, 3)
