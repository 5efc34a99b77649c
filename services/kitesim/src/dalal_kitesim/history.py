"""Historical candles as Kite serves them at the simulated now: nothing from the future.

Kite's historical API knows only what has traded: a candle that starts after now does not exist,
and the candle in progress (today's day candle, the current minute's or hour's) is the partial
candle up to now. kitesim builds that partial candle from the replay itself: the replayed bars
of the candle that have finished, plus the replayed bar in progress as far as its ticks have
gone (`MarketState.bar_*`); today's day candle is the day's quote (open, high, low, last price,
volume so far). So a strategy reading history during a simulation sees what a live one would.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from dalal_kitesim.clock import MarketClock, MarketState
from dalal_kitesim.marketdata import BarStore, Instrument, OiBar, bar_oi
from dalal_shared.fills import Bar
from dalal_shared.intervals import INTERVAL_MINUTES
from dalal_shared.timeutil import IST


def candles_until_now(
    store: BarStore,
    clock: MarketClock,
    inst: Instrument,
    interval: str,
    start: datetime,
    end: datetime,
) -> list[Bar]:
    """Bars of [start, end] as known at `clock.now`: finished ones whole, the one in progress
    partial, later ones not at all."""
    now = clock.now
    end = min(end, now)
    if start > end:
        return []
    bars = store.between(inst.tradingsymbol, interval, start, end, inst.exchange)
    if not bars:
        return []
    out: list[Bar] = []
    for bar in bars:
        finish = _finish(clock, bar, interval)
        if finish <= now:
            out.append(bar)
        elif bar.start <= now:
            partial = _partial(store, clock, inst, interval, bar, finish)
            if partial is not None:
                out.append(partial)
    return out


def _finish(clock: MarketClock, bar: Bar, interval: str) -> datetime:
    if interval != "day":
        return bar.start + timedelta(minutes=INTERVAL_MINUTES[interval])
    session = clock.calendar.session(bar.start.astimezone(IST).date())
    return session.close if session is not None else bar.start + timedelta(hours=6, minutes=15)


def _partial(
    store: BarStore,
    clock: MarketClock,
    inst: Instrument,
    interval: str,
    bar: Bar,
    finish: datetime,
) -> Bar | None:
    state = clock.state(inst.instrument_token)
    if state is None or state.ticks_today == 0 or clock.day != bar.start.astimezone(IST).date():
        return None  # nothing has traded yet in this candle
    if interval == "day":
        return _bar(bar.start, state.open, state.high, state.low, state.last_price, state.volume)
    found = store.replay_day(inst.tradingsymbol, clock.day, inst.exchange)
    if found is None or found[0] == "day":
        return None
    step = timedelta(minutes=INTERVAL_MINUTES[found[0]])
    now = clock.now
    today = found[1]
    parts = [b for b in today if bar.start <= b.start < finish and b.start + step <= now]
    running = _running(state, bar.start, finish, now, step)
    if running is not None:
        parts.append(running)
    if not parts:
        return None
    return OiBar(
        start=bar.start,
        open=parts[0].open,
        high=max(p.high for p in parts),
        low=min(p.low for p in parts),
        close=parts[-1].close,
        volume=sum(p.volume for p in parts),
        oi=bar_oi(bar),
    )


def _running(
    state: MarketState, start: datetime, finish: datetime, now: datetime, step: timedelta
) -> Bar | None:
    """The replayed bar in progress, as far as its ticks have gone."""
    begun = state.bar_start
    if begun is None or not (start <= begun < finish) or begun + step <= now:
        return None
    return _bar(begun, state.bar_open, state.bar_high, state.bar_low, state.last_price,
                state.bar_traded)  # fmt: skip


def _bar(start: datetime, o: Decimal, h: Decimal, lo: Decimal, c: Decimal, v: int) -> Bar:
    return Bar(start, o, h, lo, c, v)
