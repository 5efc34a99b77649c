"""Bars rebuilt from a replayed day's ticks equal the source bars exactly (OHLCV)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from importlib import resources

from dalal_data.bars import BarBuilder, bar_window
from dalal_kitesim.marketdata import read_bars, resample
from dalal_shared.fills import tick_path
from dalal_shared.timeutil import IST

DAY = date(2024, 1, 2)


def source_minute_bars():
    path = resources.files("dalal_kitesim").joinpath("data/nse/minute/NIFTY50.csv")
    bars = [b for b in read_bars(path) if b.start.astimezone(IST).date() == DAY]
    # the index has no volume: give every minute its own, so volume is checked too
    return [replace(b, volume=1000 + 7 * i) for i, b in enumerate(bars)]


def replay(bars):
    builder = BarBuilder()
    out = []
    cum = 0
    for bar in bars:
        for tick in tick_path(bar, timedelta(minutes=1), seed=7, key="NIFTY 50", ticks_per_bar=8):
            cum += tick.volume
            out += builder.on_tick("NIFTY 50", tick.price, cum, tick.ts)
    # the boundary timer closes the last bars at 15:30
    out += builder.close_due(bars[-1].start + timedelta(minutes=1))
    return out


def ohlcv(b):
    return (b.start, Decimal(b.open), Decimal(b.high), Decimal(b.low), Decimal(b.close), b.volume)


def test_minute_5_15_and_day_bars_equal_the_source() -> None:
    source = source_minute_bars()
    assert len(source) == 375
    built = replay(source)
    for interval, minutes in (("minute", 1), ("5minute", 5), ("15minute", 15)):
        mine = [ohlcv(b) for b in built if b.interval == interval]
        expected = [ohlcv(b) for b in (source if minutes == 1 else resample(source, minutes))]
        assert mine == expected, interval
    (day,) = [b for b in built if b.interval == "day"]
    assert (day.open, day.close) == (source[0].open, source[-1].close)
    assert day.high == max(b.high for b in source) and day.low == min(b.low for b in source)
    assert day.volume == sum(b.volume for b in source)
    assert day.start.astimezone(IST).time().isoformat() == "09:15:00"


def test_a_bar_closes_on_the_first_later_tick_not_before() -> None:
    builder = BarBuilder(("minute",))
    t0 = source_minute_bars()[0].start
    assert builder.on_tick("X", Decimal(10), 5, t0 + timedelta(seconds=5)) == []
    assert builder.on_tick("X", Decimal(11), 9, t0 + timedelta(seconds=59)) == []
    (bar,) = builder.on_tick("X", Decimal(12), 12, t0 + timedelta(seconds=61))
    assert (bar.open, bar.high, bar.close, bar.volume) == (10, 11, 11, 9)


def test_windows_are_anchored_at_the_open() -> None:
    t = source_minute_bars()[0].start.replace(minute=31)  # 09:31 IST
    start, end = bar_window(t, "15minute")
    assert (start.astimezone(IST).strftime("%H:%M"), end.astimezone(IST).strftime("%H:%M")) == (
        "09:30",
        "09:45",
    )
