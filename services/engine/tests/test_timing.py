"""Bar close times, computed once per backtest in a fast path, are the instants the slow
definition gives: a daily candle closes at its session's close, an intraday bar at its end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dalal_engine.timing import bar_closes, bar_duration, ist_day, session_open_of
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
        assert bar_closes(interval, starts, cal) == expected
    # a Muhurat-only day is no regular session: the fast path leaves it to the slow one
    muhurat = datetime(2024, 11, 1, tzinfo=IST)
    end = session_open_of("day", muhurat, cal) + bar_duration("day")
    assert bar_closes("day", [muhurat], cal) == [(end, ist_day(end))]
    assert muhurat.date().toordinal() not in cal.trading_day_ordinals()
    assert {d.date().toordinal() for d in trading} <= cal.trading_day_ordinals()
