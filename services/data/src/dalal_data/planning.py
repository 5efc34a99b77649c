"""Which historical requests to make: the gaps between the cache and the NSE calendar, cut into
chunks no longer than Kite's span limit of the interval.

Plain Python: no Kite, Redis or HTTP here. The unit of coverage is the session day (IST): a day
is either covered (fetched after its session closed) or missing. Days the exchange was closed
are never missing, so they are never requested.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from dalal_shared.calendar import NseCalendar
from dalal_shared.intervals import SPAN_DAYS
from dalal_shared.timeutil import IST


@dataclass(frozen=True, slots=True)
class Chunk:
    """One historical request: every session day in [first, last] (IST dates)."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0, 0), tzinfo=IST)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last, time(23, 59, 59), tzinfo=IST)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


class DateRanges:
    """A set of days kept as sorted, merged, inclusive [first, last] ranges."""

    def __init__(self, ranges: Iterable[tuple[date, date]] = ()):
        self._ranges: list[tuple[date, date]] = []
        for first, last in ranges:
            self.add(first, last)

    @property
    def ranges(self) -> list[tuple[date, date]]:
        return list(self._ranges)

    def add(self, first: date, last: date) -> None:
        if last < first:
            return
        merged: list[tuple[date, date]] = []
        for a, b in self._ranges:
            if b < first - timedelta(days=1) or a > last + timedelta(days=1):
                merged.append((a, b))
            else:
                first, last = min(a, first), max(b, last)
        merged.append((first, last))
        self._ranges = sorted(merged)

    def __contains__(self, day: date) -> bool:
        return any(a <= day <= b for a, b in self._ranges)

    def to_json(self) -> list[list[str]]:
        return [[a.isoformat(), b.isoformat()] for a, b in self._ranges]

    @classmethod
    def from_json(cls, rows: Iterable[Sequence[str]]) -> DateRanges:
        return cls((date.fromisoformat(a), date.fromisoformat(b)) for a, b in rows)


def session_days(calendar: NseCalendar, first: date, last: date) -> list[date]:
    """Days in [first, last] with any session (Muhurat included: Kite has bars for it)."""
    return calendar.session_days(first, last)


def missing_days(
    calendar: NseCalendar, first: date, last: date, covered: DateRanges
) -> tuple[list[date], list[date]]:
    """(session days in [first, last], those of them not covered): the gaps between the
    covered ranges, found by bisection."""
    days = session_days(calendar, first, last)
    missing: list[date] = []
    pos = 0
    for a, b in covered.ranges:
        lo = bisect_left(days, a, pos)
        missing.extend(days[pos:lo])
        pos = max(pos, bisect_right(days, b, lo))
    missing.extend(days[pos:])
    return days, missing


def plan_chunks(days: Sequence[date], missing: Sequence[date], interval: str) -> list[Chunk]:
    """Requests for the missing days: runs of consecutive missing session days (no covered
    session day in between), each cut into chunks of at most the interval's span limit."""
    span = SPAN_DAYS[interval]
    missing_set = set(missing)
    runs: list[list[date]] = []
    current: list[date] = []
    for day in days:
        if day in missing_set:
            current.append(day)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    chunks: list[Chunk] = []
    for run in runs:
        start = run[0]
        prev = run[0]
        for day in run[1:]:
            if (day - start).days + 1 > span:
                chunks.append(Chunk(start, prev))
                start = day
            prev = day
        chunks.append(Chunk(start, prev))
    return chunks


def last_closed_session(calendar: NseCalendar, now: datetime) -> date:
    """The latest session day whose session has closed at `now` (complete data exists)."""
    day = now.astimezone(IST).date()
    while True:
        session = calendar.session(day)
        if session is not None and session.close <= now:
            return day
        day -= timedelta(days=1)
