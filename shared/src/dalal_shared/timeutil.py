"""Time: UTC inside, IST (Asia/Kolkata, +05:30) at the edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

IST = timezone(timedelta(hours=5, minutes=30), "IST")


def utcnow() -> datetime:
    return datetime.now(UTC)


def ensure_aware(value: datetime) -> datetime:
    """Reject naive datetimes: a time without a zone is a bug waiting for 05:30 of drift."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return value


def to_ist(value: datetime) -> datetime:
    return ensure_aware(value).astimezone(IST)


def to_utc(value: datetime) -> datetime:
    return ensure_aware(value).astimezone(UTC)


def ist_iso(value: datetime) -> str:
    """A time at an API edge: ISO 8601 in IST (+05:30), whatever zone it was kept in."""
    return to_ist(value).isoformat()


def isoformat(value: datetime) -> str:
    """`value.isoformat()`, remembered: a report writes the same few thousand times again and
    again (a fill, its decision and its trade share one), and formatting one costs more than
    looking it up. Keyed by the instant, its UTC offset and its type, which fix the text."""
    return _isoformat(value, value.utcoffset())


@lru_cache(maxsize=16384, typed=True)
def _isoformat(value: datetime, _offset: timedelta | None) -> str:
    return value.isoformat()
