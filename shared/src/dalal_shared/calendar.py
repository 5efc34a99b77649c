"""The NSE capital-market calendar: which days trade, and the hours of a session.

Days come from `data/nse_holidays.csv` (NSE holiday list 2015-2026, origin in data/README.md).
A day has a regular session when it is a weekday not listed as a holiday, or a listed
`special_session` (e.g. Budget Saturdays). A `muhurat` day has no regular session but a short
evening (or afternoon) Muhurat session.

NSE publishes its holiday list a year at a time, so the list always ends soon. For up to
`ASSUMED_DAYS` past its end the calendar assumes every weekday trades and no weekend does (the
services keep running: bars, backfills, exits); `covers(day)` tells a day the list really
covers from an assumed one, and what must not act on a guess (the engine's entries) checks it.
Dates before the list or past the assumed stretch raise `CalendarCoverageError`.

Session hours (IST): pre-open 09:00-09:08, normal market 09:15-15:30; brokers square off MIS
positions from 15:20. Times returned are timezone-aware UTC.
"""

from __future__ import annotations

import csv
import enum
import io
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path

from dalal_shared.timeutil import IST, to_utc

PRE_OPEN_START = time(9, 0)
PRE_OPEN_END = time(9, 8)
MARKET_OPEN = time(9, 15)
MARKET_CLOSE = time(15, 30)
MIS_SQUARE_OFF = time(15, 20)

# Muhurat session hours (IST) of the days we know; other Muhurat days default to 18:15-19:15,
# the usual hour of the 2015-2023 sessions (NSE circulars per year).
_MUHURAT_HOURS: dict[date, tuple[time, time]] = {
    date(2024, 11, 1): (time(18, 0), time(19, 0)),  # NSE circular, Diwali 2024
    date(2025, 10, 21): (time(13, 45), time(14, 45)),  # NSE circular, Diwali 2025
}
_MUHURAT_DEFAULT = (time(18, 15), time(19, 15))


ASSUMED_DAYS = 366  # past the holiday list's end: weekdays assumed to trade


class DayKind(enum.StrEnum):
    TRADING = "trading"  # a weekday with a regular session
    SPECIAL_SESSION = "special_session"  # a listed day (often a Saturday) that did trade
    MUHURAT = "muhurat"  # regular session closed, Muhurat session held
    HOLIDAY = "holiday"  # a listed weekday holiday
    WEEKEND = "weekend"  # Saturday or Sunday without a session


class CalendarCoverageError(ValueError):
    """The date lies outside the years the holiday list covers."""


@dataclass(frozen=True, slots=True)
class Session:
    """One session of one day; `open`/`close` are UTC."""

    day: date
    kind: DayKind
    open: datetime
    close: datetime

    @property
    def mis_square_off(self) -> datetime:
        """When brokers start squaring off MIS positions (15:20 IST on a regular session)."""
        if self.kind in (DayKind.TRADING, DayKind.SPECIAL_SESSION):
            return _at(self.day, MIS_SQUARE_OFF)
        return self.close - timedelta(minutes=10)


def _at(day: date, clock: time) -> datetime:
    return to_utc(datetime.combine(day, clock, tzinfo=IST))


@dataclass(frozen=True, slots=True)
class ListedDay:
    """A day NSE lists: a holiday or a special session, with its description."""

    day: date
    kind: str
    description: str


class NseCalendar:
    """Trading days and session hours of NSE's cash market."""

    def __init__(self, listed: dict[date, ListedDay], first: date, last: date):
        self._listed = listed
        self.first = first
        self.last = last  # of the holiday list; up to `assumed_until` weekdays are assumed
        self.assumed_until = last + timedelta(days=ASSUMED_DAYS)
        self._sessions: tuple[date, ...] | None = None  # built on first use
        self._trading_ordinals: frozenset[int] | None = None
        self._session_of: dict[date, Session | None] = {}  # sessions are asked for again and again

    @classmethod
    def from_csv(cls, path: Path) -> NseCalendar:
        with path.open(newline="") as fh:
            return cls._from_rows(csv.DictReader(fh))

    @classmethod
    def _from_rows(cls, rows: object) -> NseCalendar:
        listed: dict[date, ListedDay] = {}
        for row in rows:  # type: ignore[attr-defined]
            day = date.fromisoformat(row["date"])
            listed[day] = ListedDay(day, row["type"], row["description"])
        years = sorted({d.year for d in listed})
        return cls(listed, date(years[0], 1, 1), date(years[-1], 12, 31))

    def _check(self, day: date) -> None:
        if not self.first <= day <= self.assumed_until:
            raise CalendarCoverageError(
                f"{day} is outside the NSE calendar's coverage ({self.first} .. {self.last}, "
                f"weekdays assumed until {self.assumed_until})"
            )

    def covers(self, day: date) -> bool:
        """The holiday list covers `day` (past it, weekdays are only assumed to trade)."""
        return self.first <= day <= self.last

    def kind(self, day: date) -> DayKind:
        self._check(day)
        if day > self.last:  # past the list: assumed
            return DayKind.WEEKEND if day.weekday() >= 5 else DayKind.TRADING
        entry = self._listed.get(day)
        if entry is not None:
            if entry.kind == "special_session":
                return DayKind.SPECIAL_SESSION
            if entry.kind == "muhurat":
                return DayKind.MUHURAT
            return DayKind.WEEKEND if day.weekday() >= 5 else DayKind.HOLIDAY
        return DayKind.WEEKEND if day.weekday() >= 5 else DayKind.TRADING

    def description(self, day: date) -> str | None:
        entry = self._listed.get(day)
        return entry.description if entry else None

    def is_trading_day(self, day: date) -> bool:
        """A regular 09:15-15:30 session is held (Muhurat-only days are not trading days)."""
        return self.kind(day) in (DayKind.TRADING, DayKind.SPECIAL_SESSION)

    def has_session(self, day: date) -> bool:
        """Any session at all is held, Muhurat included."""
        return self.kind(day) in (DayKind.TRADING, DayKind.SPECIAL_SESSION, DayKind.MUHURAT)

    def session(self, day: date) -> Session | None:
        try:
            return self._session_of[day]
        except KeyError:
            session = self._session_of[day] = self._make_session(day)
            return session

    def _make_session(self, day: date) -> Session | None:
        kind = self.kind(day)
        if kind in (DayKind.TRADING, DayKind.SPECIAL_SESSION):
            return Session(day, kind, _at(day, MARKET_OPEN), _at(day, MARKET_CLOSE))
        if kind is DayKind.MUHURAT:
            start, end = _MUHURAT_HOURS.get(day, _MUHURAT_DEFAULT)
            return Session(day, kind, _at(day, start), _at(day, end))
        return None

    def next_trading_day(self, day: date) -> date:
        """The first trading day strictly after `day`."""
        trading = self.trading_day_ordinals()
        ordinal = day.toordinal() + 1
        for _ in range(15):  # the longest NSE closure is a few days
            if ordinal in trading:
                return date.fromordinal(ordinal)
            ordinal += 1
        candidate = day + timedelta(days=1)
        while not self.is_trading_day(candidate):
            candidate += timedelta(days=1)
        return candidate

    def previous_trading_day(self, day: date) -> date:
        """The last trading day strictly before `day`."""
        candidate = day - timedelta(days=1)
        while not self.is_trading_day(candidate):
            candidate -= timedelta(days=1)
        return candidate

    def session_days(self, first: date, last: date) -> list[date]:
        """Days in [first, last] with any session (Muhurat included), from a table of the
        calendar's session days built once (a bisect per call, not a walk over the days)."""
        if last < first:
            return []
        self._check(first)
        self._check(last)
        table = self._session_table()
        return list(table[bisect_left(table, first) : bisect_right(table, last)])

    def _session_table(self) -> tuple[date, ...]:
        if self._sessions is None:
            days, day = [], self.first
            while day <= self.assumed_until:
                if self.has_session(day):
                    days.append(day)
                day += timedelta(days=1)
            self._sessions = tuple(days)
        return self._sessions

    def trading_day_ordinals(self) -> frozenset[int]:
        """`date.toordinal()` of every trading day (a regular 09:15-15:30 session) the calendar
        covers, for hot loops that test many days at once."""
        if self._trading_ordinals is None:
            self._trading_ordinals = frozenset(
                d.toordinal() for d in self._session_table() if self.is_trading_day(d)
            )
        return self._trading_ordinals

    def trading_days(self, start: date, end: date) -> list[date]:
        """Trading days in [start, end]."""
        out = []
        day = start
        while day <= end:
            if self.is_trading_day(day):
                out.append(day)
            day += timedelta(days=1)
        return out

    def session_or_regular(self, day: date) -> Session | None:
        """`session(day)`; for a day outside the calendar altogether a regular 09:15-15:30
        session on weekdays and none on weekends, so what must keep running (exits, bar
        times) does."""
        if self.first <= day <= self.assumed_until:
            return self.session(day)
        if day.weekday() >= 5:
            return None
        return Session(day, DayKind.TRADING, _at(day, MARKET_OPEN), _at(day, MARKET_CLOSE))

    def session_at(self, moment: datetime, *, assume_regular: bool = False) -> Session | None:
        """The session open at `moment` (aware), or None when the market is closed.
        `assume_regular`: past the holiday list, see `session_or_regular` (else it raises
        CalendarCoverageError)."""
        day = moment.astimezone(IST).date()
        session = self.session_or_regular(day) if assume_regular else self.session(day)
        if session is not None and session.open <= moment < session.close:
            return session
        return None


@lru_cache(maxsize=1)
def nse_calendar() -> NseCalendar:
    """The calendar built from the holiday list shipped with dalal_shared."""
    with io.StringIO(_holidays_text(), newline="") as fh:
        return NseCalendar._from_rows(csv.DictReader(fh))


def _holidays_text() -> str:
    """The holiday list's text: the file beside this module, as an installed package has it
    (`importlib.resources` and its imports cost a command that starts on it ~5 ms), else
    through the package's loader (a zipped install)."""
    try:
        return (Path(__file__).parent / "data" / "nse_holidays.csv").read_text(encoding="utf-8")
    except OSError:
        from importlib import resources

        source = resources.files("dalal_shared").joinpath("data/nse_holidays.csv")
        return source.read_text(encoding="utf-8")
