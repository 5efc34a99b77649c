"""When the data jobs run: the instruments refresh each trading morning, the nightly sync after
each session's close (both in IST, on NSE's calendar: no job on a closed day)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from dalal_shared.calendar import CalendarCoverageError, NseCalendar
from dalal_shared.timeutil import IST


@dataclass(frozen=True, slots=True)
class Job:
    name: str  # a Celery task name
    at: time  # IST wall clock
    session_days_only: bool = True


@dataclass(frozen=True, slots=True)
class Due:
    job: Job
    day: date
    at: datetime  # aware

    @property
    def key(self) -> str:
        """Once per job and day, whoever schedules it."""
        return f"{self.job.name}:{self.day.isoformat()}"


def occurrence(job: Job, day: date, calendar: NseCalendar) -> Due | None:
    """The job's occurrence on `day`; None on a closed day, or on a day the holiday list does
    not cover yet (no job is sent on a guess; the scheduler logs it)."""
    try:
        if job.session_days_only and not calendar.has_session(day):
            return None
    except CalendarCoverageError:
        return None
    return Due(job, day, datetime.combine(day, job.at, tzinfo=IST))


def due_between(
    jobs: list[Job], calendar: NseCalendar, after: datetime, until: datetime
) -> list[Due]:
    """Occurrences with after < at <= until, oldest first."""
    out = []
    day = after.astimezone(IST).date()
    while day <= until.astimezone(IST).date():
        for job in jobs:
            due = occurrence(job, day, calendar)
            if due is not None and after < due.at <= until:
                out.append(due)
        day += timedelta(days=1)
    return sorted(out, key=lambda d: d.at)


def next_due(jobs: list[Job], calendar: NseCalendar, after: datetime) -> Due:
    day = after.astimezone(IST).date()
    for _ in range(30):
        found = [
            d for j in jobs if (d := occurrence(j, day, calendar)) is not None and d.at > after
        ]
        if found:
            return min(found, key=lambda d: d.at)
        day += timedelta(days=1)
    raise ValueError("no job due in the next 30 days")
