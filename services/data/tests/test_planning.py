"""Gap planning against the NSE calendar: closed days are never requested, chunks respect
Kite's span limits, only uncovered days are fetched."""

from __future__ import annotations

from datetime import date, datetime

from dalal_data.planning import (
    SPAN_DAYS,
    DateRanges,
    last_closed_session,
    missing_days,
    plan_chunks,
)
from dalal_shared.calendar import nse_calendar
from dalal_shared.timeutil import IST

CAL = nse_calendar()


def chunks_for(first: date, last: date, interval: str, covered: DateRanges | None = None):
    days, missing = missing_days(CAL, first, last, covered or DateRanges())
    return plan_chunks(days, missing, interval)


def test_five_years_of_daily_bars_is_one_request_starting_and_ending_on_sessions() -> None:
    chunks = chunks_for(date(2020, 10, 1), date(2025, 9, 30), "day")
    assert len(chunks) == 1
    assert CAL.is_trading_day(chunks[0].first) and CAL.is_trading_day(chunks[0].last)


def test_chunks_never_exceed_the_span_limit_and_cover_every_session() -> None:
    for interval in ("minute", "5minute", "15minute", "60minute"):
        chunks = chunks_for(date(2023, 1, 1), date(2024, 12, 31), interval)
        assert all(c.days <= SPAN_DAYS[interval] for c in chunks)
        assert all((c.end - c.start).days < SPAN_DAYS[interval] for c in chunks)
        sessions = [d for d in CAL.trading_days(date(2023, 1, 1), date(2024, 12, 31))]
        assert all(any(c.first <= d <= c.last for c in chunks) for d in sessions)
    # 731 days of minute bars in 60-day chunks: the fewest possible is 13
    assert len(chunks_for(date(2023, 1, 1), date(2024, 12, 31), "minute")) == 13


def test_a_weekend_or_holiday_alone_is_never_requested() -> None:
    # 2024-01-26 (Republic Day, Friday) and the weekend after it: no session at all
    assert chunks_for(date(2024, 1, 26), date(2024, 1, 28), "day") == []


def test_only_the_uncovered_days_are_planned() -> None:
    covered = DateRanges([(date(2022, 1, 1), date(2022, 12, 31))])
    chunks = chunks_for(date(2021, 6, 1), date(2023, 6, 30), "day", covered)
    assert [(c.first, c.last) for c in chunks] == [
        (date(2021, 6, 1), date(2021, 12, 31)),
        (date(2023, 1, 2), date(2023, 6, 30)),
    ]


def test_missing_days_are_the_gaps_between_covered_ranges() -> None:
    covered = DateRanges(
        [
            (date(2023, 12, 1), date(2024, 1, 10)),  # starts before the asked range
            (date(2024, 2, 5), date(2024, 2, 9)),
            (date(2024, 3, 1), date(2024, 4, 30)),  # ends after it
        ]
    )
    days, missing = missing_days(CAL, date(2024, 1, 1), date(2024, 3, 15), covered)
    assert missing == [d for d in days if d not in covered]  # the per-day definition
    assert missing[0] == date(2024, 1, 11) and missing[-1] == date(2024, 2, 29)
    assert date(2024, 2, 7) not in missing and date(2024, 2, 12) in missing


def test_today_counts_as_covered_only_after_the_close() -> None:
    during = datetime(2024, 3, 12, 11, 0, tzinfo=IST)
    after = datetime(2024, 3, 12, 15, 31, tzinfo=IST)
    assert last_closed_session(CAL, during) == date(2024, 3, 11)
    assert last_closed_session(CAL, after) == date(2024, 3, 12)


def test_date_ranges_merge_adjacent_and_overlapping_days() -> None:
    r = DateRanges()
    r.add(date(2024, 1, 1), date(2024, 1, 10))
    r.add(date(2024, 1, 11), date(2024, 1, 20))
    r.add(date(2024, 1, 5), date(2024, 1, 6))
    assert r.ranges == [(date(2024, 1, 1), date(2024, 1, 20))]
    assert DateRanges.from_json(r.to_json()).ranges == r.ranges
