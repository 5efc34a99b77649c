"""Bars from ticks, anchored at the 09:15 IST open: 1, 5 and 15 minutes and the day.

A bar is emitted when it closes: on the first tick at or after its end, or when `close_due` is
called at (or after) the boundary. Volume comes from Kite's cumulative day volume: each tick
adds what was traded since the previous tick of that symbol. Plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from dalal_shared.timeutil import IST

LIVE_INTERVALS: dict[str, int] = {"minute": 1, "5minute": 5, "15minute": 15, "day": 0}
OPEN = time(9, 15)


@dataclass(slots=True)
class OpenBar:
    symbol: str
    interval: str
    start: datetime
    end: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    corr: str | None = None  # the id of the tick that closed it: its bar's envelope `corr`


def bar_window(
    ts: datetime, interval: str, day_close: time = time(15, 30)
) -> tuple[datetime, datetime]:
    """[start, end) of the bar of `interval` holding `ts` (aware)."""
    local = ts.astimezone(IST)
    anchor = datetime.combine(local.date(), OPEN, tzinfo=IST)
    minutes = LIVE_INTERVALS[interval]
    if minutes == 0:
        return anchor, datetime.combine(local.date(), day_close, tzinfo=IST)
    step = timedelta(minutes=minutes)
    k = (local - anchor) // step
    start = anchor + k * step
    return start, start + step


class BarBuilder:
    def __init__(self, intervals: tuple[str, ...] = tuple(LIVE_INTERVALS)):
        self.intervals = intervals
        self._open: dict[str, dict[str, OpenBar]] = {}  # symbol -> interval -> bar
        self._cum: dict[str, tuple[date, int]] = {}

    def on_tick(
        self,
        symbol: str,
        price: Decimal,
        cum_volume: int,
        ts: datetime,
        corr: str | None = None,
    ) -> list[OpenBar]:
        """Feed one tick; returns the bars it closed (oldest first), each carrying `corr` (the
        closing tick's envelope id) so the bar, the decision and the order trace back to it."""
        bars = self._open.setdefault(symbol, {})
        closed = [b for b in bars.values() if b.end <= ts]
        for b in closed:
            del bars[b.interval]
            b.corr = corr
        day = ts.astimezone(IST).date()
        prev_day, prev_cum = self._cum.get(symbol, (day, 0))
        if prev_day != day:
            prev_cum = 0
        traded = max(0, cum_volume - prev_cum) if cum_volume else 0
        if cum_volume:
            self._cum[symbol] = (day, cum_volume)
        for interval in self.intervals:
            bar = bars.get(interval)
            if bar is None:
                start, end = bar_window(ts, interval)
                bars[interval] = OpenBar(
                    symbol, interval, start, end, price, price, price, price, traded
                )
            elif ts < bar.start:
                continue  # late: its bar has been emitted already
            else:
                if price > bar.high:
                    bar.high = price
                elif price < bar.low:
                    bar.low = price
                bar.close = price
                bar.volume += traded
        return sorted(closed, key=lambda b: (b.end, b.interval)) if len(closed) > 1 else closed

    def close_due(self, now: datetime) -> list[OpenBar]:
        """Close and return every open bar whose end <= now (the boundary timer)."""
        out = []
        for bars in self._open.values():
            for interval in [i for i, b in bars.items() if b.end <= now]:
                out.append(bars.pop(interval))
        return sorted(out, key=lambda b: (b.end, b.interval))
