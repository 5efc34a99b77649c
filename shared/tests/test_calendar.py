from datetime import UTC, date, datetime, time, timedelta

import pytest

from dalal_shared.calendar import CalendarCoverageError, DayKind, nse_calendar
from dalal_shared.timeutil import to_ist


@pytest.fixture(scope="module")
def cal():
    return nse_calendar()


def test_weekday_holiday_and_weekend(cal):
    assert cal.kind(date(2024, 1, 26)) is DayKind.HOLIDAY  # Republic Day, a Friday
    assert not cal.is_trading_day(date(2024, 1, 26))
    assert cal.kind(date(2024, 1, 27)) is DayKind.WEEKEND
    assert cal.is_trading_day(date(2024, 1, 25))


def test_special_session_saturday_trades(cal):
    assert cal.kind(date(2024, 1, 20)) is DayKind.SPECIAL_SESSION
    assert cal.is_trading_day(date(2024, 1, 20))
    session = cal.session(date(2024, 1, 20))
    assert session is not None
    assert session.open == datetime(2024, 1, 20, 3, 45, tzinfo=UTC)  # 09:15 IST


def test_muhurat_is_a_session_but_not_a_trading_day(cal):
    day = date(2024, 11, 1)
    assert cal.kind(day) is DayKind.MUHURAT
    assert not cal.is_trading_day(day)
    assert cal.has_session(day)
    session = cal.session(day)
    assert session is not None
    assert session.open == datetime(2024, 11, 1, 12, 30, tzinfo=UTC)  # 18:00 IST


def test_regular_session_hours_and_square_off(cal):
    session = cal.session(date(2024, 3, 5))
    assert session is not None
    assert session.open == datetime(2024, 3, 5, 3, 45, tzinfo=UTC)
    assert session.close == datetime(2024, 3, 5, 10, 0, tzinfo=UTC)  # 15:30 IST
    assert session.mis_square_off == datetime(2024, 3, 5, 9, 50, tzinfo=UTC)  # 15:20 IST
    assert cal.session(date(2024, 3, 9)) is None


def test_next_and_previous_trading_day_skip_holidays(cal):
    # 2024-03-08 Mahashivratri (Fri) and the weekend: Thursday -> Monday.
    assert cal.next_trading_day(date(2024, 3, 7)) == date(2024, 3, 11)
    assert cal.previous_trading_day(date(2024, 3, 11)) == date(2024, 3, 7)


def test_trading_days_in_a_month(cal):
    # January 2024: 23 weekdays, minus the 22nd (Ram Mandir) and the 26th, plus Saturday 20th.
    days = cal.trading_days(date(2024, 1, 1), date(2024, 1, 31))
    assert len(days) == 22
    assert date(2024, 1, 20) in days
    assert date(2024, 1, 22) not in days


def test_session_at(cal):
    assert cal.session_at(datetime(2024, 3, 5, 5, 0, tzinfo=UTC)) is not None
    assert cal.session_at(datetime(2024, 3, 5, 10, 0, tzinfo=UTC)) is None  # 15:30 is closed


def test_outside_coverage_raises(cal):
    with pytest.raises(CalendarCoverageError):
        cal.is_trading_day(date(2014, 12, 31))
    with pytest.raises(CalendarCoverageError):
        cal.is_trading_day(cal.assumed_until + timedelta(days=1))


def test_a_year_past_the_list_weekdays_are_assumed_to_trade(cal):
    """NSE publishes its list a year at a time: past its end the services keep running on
    assumed weekday sessions, and `covers` says the day is only assumed."""
    monday = date(2027, 1, 4)
    assert cal.last < monday <= cal.assumed_until
    assert not cal.covers(monday) and cal.covers(cal.last)
    assert cal.kind(monday) is DayKind.TRADING and cal.is_trading_day(monday)
    assert cal.kind(date(2027, 1, 2)) is DayKind.WEEKEND
    assert cal.next_trading_day(date(2026, 12, 31)) == date(2027, 1, 1)  # a Friday, assumed
    session = cal.session(monday)
    assert session is not None and to_ist(session.open).time() == time(9, 15)
    assert cal.session_days(date(2026, 12, 31), date(2027, 1, 5)) == [
        date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 4), date(2027, 1, 5)
    ]  # fmt: skip


def test_session_days_come_from_the_table_like_a_walk_over_the_days() -> None:
    from datetime import timedelta

    cal = nse_calendar()
    walk, day = [], cal.first
    while day <= cal.last:
        if cal.has_session(day):
            walk.append(day)
        day += timedelta(days=1)
    assert cal.session_days(cal.first, cal.last) == walk
    assert cal.session_days(date(2024, 11, 1), date(2024, 11, 1)) == [date(2024, 11, 1)]  # Muhurat
    assert cal.session_days(date(2024, 1, 27), date(2024, 1, 28)) == []  # a weekend
    assert cal.session_days(date(2024, 2, 1), date(2024, 1, 1)) == []
    with pytest.raises(CalendarCoverageError):
        cal.session_days(date(2010, 1, 1), date(2024, 1, 1))


def test_past_the_calendar_a_weekday_is_taken_as_a_regular_session(cal) -> None:
    beyond = cal.assumed_until + timedelta(days=1)
    while beyond.weekday() >= 5:
        beyond += timedelta(days=1)
    session = cal.session_or_regular(beyond)
    assert session is not None and session.kind is DayKind.TRADING
    assert to_ist(session.open).time() == time(9, 15) and to_ist(session.close).time() == time(
        15, 30
    )
    saturday = beyond + timedelta(days=(5 - beyond.weekday()))
    assert cal.session_or_regular(saturday) is None
    assert cal.session_at(session.open + timedelta(hours=1), assume_regular=True) == session
    with pytest.raises(CalendarCoverageError):
        cal.session_at(session.open)
    inside = date(2024, 1, 26)  # Republic Day: the list still decides inside its years
    assert cal.session_or_regular(inside) is None


def test_isoformat_is_the_datetimes_own_text_whatever_zone_an_equal_instant_came_in() -> None:
    from datetime import UTC, datetime

    from dalal_shared.timeutil import IST, isoformat

    utc = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)
    ist = utc.astimezone(IST)
    assert utc == ist  # the same instant ...
    for _ in range(2):  # ... each keeps its own offset, remembered or not
        assert isoformat(utc) == "2024-01-02T03:45:00+00:00" == utc.isoformat()
        assert isoformat(ist) == "2024-01-02T09:15:00+05:30" == ist.isoformat()
    naive = datetime(2024, 1, 2, 3, 45)
    assert isoformat(naive) == naive.isoformat()


def test_the_holiday_list_is_read_the_same_without_the_file_beside_the_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The list is read from the file beside the module; where there is none (a zipped
    install), through the package's loader: the same text."""
    from dalal_shared import calendar

    beside = calendar._holidays_text()
    assert "2024-01-22" in beside  # a holiday the list holds
    monkeypatch.setattr(calendar, "__file__", "/nonexistent/dalal_shared/calendar.py")
    assert calendar._holidays_text() == beside
