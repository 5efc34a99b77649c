"""Candles served from the Parquet cache; only the missing session days are fetched from Kite.

`CandleService.get` is the whole read path: validate, look at the coverage index, plan the gaps
against the NSE calendar, fetch each chunk (rate limited by the gateway), merge into the cache,
record the newly covered days, and read the requested range back from Parquet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
from prometheus_client import Counter

from dalal_data.instruments import InstrumentMaster
from dalal_data.planning import (
    SPAN_DAYS,
    Chunk,
    DateRanges,
    last_closed_session,
    missing_days,
    plan_chunks,
)
from dalal_shared import candlestore as cs
from dalal_shared.calendar import CalendarCoverageError, NseCalendar
from dalal_shared.errors import PermanentError
from dalal_shared.logging import get_logger
from dalal_shared.timeutil import IST, ensure_aware, utcnow

log = get_logger(__name__)

CACHE_REQUESTS = Counter(
    "dalal_data_cache_requests_total",
    "Candle requests by how much the cache held: hit, partial or miss",
    ["result"],
)
for _result in ("hit", "partial", "miss"):  # exported from the start (0), for the hit ratio
    CACHE_REQUESTS.labels(_result)
CHUNKS_FETCHED = Counter(
    "dalal_data_chunks_fetched_total", "Historical chunks fetched from Kite", ["interval"]
)


class BadInterval(PermanentError):
    code = "bad_interval"


class BadRange(PermanentError):
    code = "bad_range"


class RangeInFuture(PermanentError):
    code = "range_in_future"


class Historical(Protocol):
    async def historical(
        self, token: int, interval: str, start: datetime, end: datetime
    ) -> list[dict[str, Any]]: ...


class KeyLock(Protocol):
    def __call__(self, key: str) -> contextlib.AbstractAsyncContextManager[Any]: ...


@dataclass(frozen=True)
class FetchReport:
    result: str  # hit | partial | miss
    session_days: int
    missing_days: int
    chunks: list[Chunk]


def candles_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Kite's candle dicts as a candle-store table."""
    return pa.table(
        {
            "ts": pa.array([ensure_aware(r["date"]) for r in rows], pa.timestamp("us", tz="UTC")),
            "open": pa.array([float(r["open"]) for r in rows], pa.float64()),
            "high": pa.array([float(r["high"]) for r in rows], pa.float64()),
            "low": pa.array([float(r["low"]) for r in rows], pa.float64()),
            "close": pa.array([float(r["close"]) for r in rows], pa.float64()),
            "volume": pa.array([int(r["volume"]) for r in rows], pa.int64()),
            "oi": pa.array([int(r.get("oi", 0) or 0) for r in rows], pa.int64()),
        }
    )


def parse_bound(raw: str, *, end: bool) -> datetime:
    """`yyyy-mm-dd` (the whole day, IST) or an ISO datetime (IST when it has no zone)."""
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime.combine(day, time.max if end else time.min, tzinfo=IST)
        value = datetime.fromisoformat(raw.replace(" ", "T", 1))
    except ValueError:
        raise BadRange(f"not a date or datetime: {raw!r}; use yyyy-mm-dd[Thh:mm:ss]") from None
    return value.replace(tzinfo=IST) if value.tzinfo is None else value


@contextlib.asynccontextmanager
async def _no_lock(_key: str) -> AsyncIterator[None]:
    yield


class CandleService:
    def __init__(
        self,
        *,
        root: Path,
        calendar: NseCalendar,
        instruments: InstrumentMaster,
        kite: Historical,
        lock: KeyLock | None = None,
        now: Callable[[], datetime] = utcnow,
    ):
        self.root = Path(root)
        self.calendar = calendar
        self.instruments = instruments
        self.kite = kite
        self.lock = lock or _no_lock
        self.now = now
        self._local: dict[str, asyncio.Lock] = {}

    def validate(self, exchange: str, interval: str, start: datetime, end: datetime) -> None:
        if interval not in SPAN_DAYS:
            raise BadInterval(f"unknown interval {interval!r}; one of {', '.join(SPAN_DAYS)}")
        if start > end:
            raise BadRange(f"`from` ({start.isoformat()}) is after `to` ({end.isoformat()})")
        today = self.now().astimezone(IST).date()
        if end.astimezone(IST).date() > today:
            raise RangeInFuture(f"`to` ({end.date()}) is after today ({today}) in IST")
        try:
            self.calendar.kind(start.astimezone(IST).date())
            self.calendar.kind(end.astimezone(IST).date())
        except CalendarCoverageError as exc:
            raise BadRange(str(exc)) from None

    async def ensure(
        self, exchange: str, symbol: str, interval: str, start: datetime, end: datetime
    ) -> FetchReport:
        """Fetch into the cache whatever session days of [start, end] it does not cover."""
        exchange = exchange.upper()
        self.validate(exchange, interval, start, end)
        inst = await self.instruments.lookup(exchange, symbol)
        first, last = start.astimezone(IST).date(), end.astimezone(IST).date()
        key = f"{exchange}:{interval}:{symbol}"
        local = self._local.setdefault(key, asyncio.Lock())
        async with local, self.lock(key):
            covered = DateRanges.from_json(cs.read_coverage(self.root, exchange, interval, symbol))
            days, missing = missing_days(self.calendar, first, last, covered)
            chunks = plan_chunks(days, missing, interval)
            closed = last_closed_session(self.calendar, self.now())
            for chunk in chunks:
                rows = await self.kite.historical(
                    inst.instrument_token, interval, chunk.start, chunk.end
                )
                CHUNKS_FETCHED.labels(interval).inc()
                table = candles_table(rows)
                if table.num_rows:
                    await asyncio.to_thread(cs.upsert, self.root, exchange, interval, symbol, table)
                # a day is covered only once its session has closed: today's bars keep coming
                covered.add(chunk.first, min(chunk.last, closed))
                cs.write_coverage(self.root, exchange, interval, symbol, covered.to_json())
        if not missing:
            result = "hit"
        elif len(missing) == len(days):
            result = "miss"
        else:
            result = "partial"
        CACHE_REQUESTS.labels(result).inc()
        if chunks:  # Kite was asked: say what came in (a cache hit is only a metric)
            log.info(
                "candles.fetched",
                exchange=exchange,
                symbol=symbol,
                interval=interval,
                days_missing=len(missing),
                kite_requests=len(chunks),
                result=result,
            )
        return FetchReport(result, len(days), len(missing), chunks)

    async def get(
        self, exchange: str, symbol: str, interval: str, start: datetime, end: datetime
    ) -> tuple[pa.Table, FetchReport]:
        report = await self.ensure(exchange, symbol, interval, start, end)
        lo, hi = start, end
        if interval == "day":  # Kite stamps daily bars 00:00 IST: select by session date
            lo = datetime.combine(start.astimezone(IST).date(), time.min, tzinfo=IST)
            hi = datetime.combine(end.astimezone(IST).date(), time.max, tzinfo=IST)
        table = await asyncio.to_thread(
            cs.read,
            self.root,
            exchange.upper(),
            interval,
            symbol,
            lo,
            hi + timedelta(microseconds=1),
        )
        return table, report

    def coverage(
        self, exchange: str, interval: str, symbol: str, first: date, last: date
    ) -> dict[str, Any]:
        """Covered and missing session days of one cached series in [first, last]."""
        covered = DateRanges.from_json(cs.read_coverage(self.root, exchange, interval, symbol))
        days, missing = missing_days(self.calendar, first, last, covered)
        return {
            "exchange": exchange,
            "interval": interval,
            "symbol": symbol,
            "covered": covered.to_json(),
            "session_days": len(days),
            "missing_sessions": [d.isoformat() for d in missing],
        }
