"""Where the live loop's indicator warm-up comes from: the data service's candles API
(`DALAL_DATA_URL`), the owner of market history, which fetches what its cache lacks from Kite
first. So a fresh engine (a new Kubernetes pod, a compose stack before any backfill) decides on
its first live bar with the same history the backtester would use, instead of waiting weeks
of live bars. A failed read is logged and the engine warms up from live bars instead.

The older way, reading the data service's Parquet files (`DALAL_CANDLE_CACHE_DIR`), is kept
only for an engine started without a data URL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from dalal_engine.store import StoredBar
from dalal_engine.timing import bar_duration, session_bounds, warmup_days
from dalal_shared.calendar import NseCalendar, nse_calendar
from dalal_shared.clients import DataClient
from dalal_shared.errors import DalalError
from dalal_shared.logging import get_logger
from dalal_shared.timeutil import to_ist

log = get_logger(__name__)

Warmup = Callable[[str, str, str], list[StoredBar]]


def _complete(interval: str, start: datetime, now: datetime, calendar: NseCalendar) -> bool:
    if interval == "day":
        bounds = session_bounds(calendar, to_ist(start).date())
        return bounds is not None and bounds[1] <= now
    return start + bar_duration(interval) <= now


def from_data_service(
    client: DataClient,
    now: Callable[[], datetime],
    *,
    bars: int,
    calendar: NseCalendar | None = None,
) -> Warmup:
    """A warm-up reading `bars` completed bars (and a margin) before the market clock's now
    from the candles API (blocking HTTP: the live loop calls it once per series, in its
    worker thread)."""
    cal = calendar or nse_calendar()

    def warmup(exchange: str, symbol: str, interval: str) -> list[StoredBar]:
        at = now()
        start = to_ist(at - timedelta(days=warmup_days(interval, bars)))
        try:
            body = client.candles(
                exchange, symbol, interval, f"{start:%Y-%m-%d}", f"{to_ist(at):%Y-%m-%dT%H:%M:%S}"
            )
        except DalalError as exc:
            log.warning(
                "engine.warmup_failed", symbol=symbol, interval=interval, error=str(exc)[:300]
            )
            return []
        out = []
        for ts, o, h, lo, c, v, _oi in body.get("candles", []):
            begin = datetime.fromisoformat(ts)
            if _complete(interval, begin, at, cal):  # never the candle still forming
                out.append(StoredBar(begin, float(o), float(h), float(lo), float(c), int(v or 0)))
        log.info("engine.warmed_up", symbol=symbol, interval=interval, bars=len(out))
        return out

    return warmup
