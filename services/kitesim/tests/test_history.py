"""No look-ahead: the historical API answers as Kite would at the simulated now. No candle starts
after now, for any interval, and the candle in progress (today's day candle included) is the
partial candle up to now, built from the replay itself. Through the official client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from kiteconnect import KiteConnect

from dalal_shared.intervals import INTERVAL_MINUTES
from dalal_shared.timeutil import IST

from .conftest import Kitesim

NIFTY, HDFCBANK, RELIANCE = 256265, 341249, 738561  # minute, day-only, 15-minute replays
NOW = datetime(2024, 1, 3, 10, 7, 30, tzinfo=IST)  # the second simulated day, mid-morning


@pytest.fixture(scope="module")
def sim() -> Iterator[Kitesim]:
    server = Kitesim(kitesim_history_after_now=False).start()
    server.advance(until=NOW.isoformat())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kite(sim: Kitesim) -> KiteConnect:
    return sim.client()


def bucket_start(moment: datetime, minutes: int) -> datetime:
    """The start of the `minutes` candle holding `moment` (candles align to 09:15 IST)."""
    session_open = moment.replace(hour=9, minute=15, second=0, microsecond=0)
    offset = int((moment - session_open).total_seconds() // 60)
    return session_open + timedelta(minutes=offset // minutes * minutes)


@pytest.mark.parametrize("interval", [i for i in INTERVAL_MINUTES if i != "day"])
def test_intraday_candles_stop_at_now_and_the_last_one_is_partial(
    kite: KiteConnect, interval: str
) -> None:
    minutes = INTERVAL_MINUTES[interval]
    candles = kite.historical_data(NIFTY, "2024-01-02 09:15:00", "2024-01-04 15:29:00", interval)
    starts = [c["date"] for c in candles]
    assert starts and max(starts) <= NOW
    yesterday = [c for c in candles if c["date"].date() == NOW.date() - timedelta(days=1)]
    assert len(yesterday) == -(-375 // minutes)  # the whole of 2 January
    last = candles[-1]
    assert last["date"] == bucket_start(NOW, minutes)
    ltp = kite.ltp("NSE:NIFTY 50")["NSE:NIFTY 50"]["last_price"]
    assert last["close"] == ltp  # the candle in progress ends at the last traded price
    assert last["low"] <= last["close"] <= last["high"]
    # it is the candles of the finest interval so far, no more
    minute = kite.historical_data(NIFTY, last["date"], NOW, "minute")
    assert last["high"] == max(c["high"] for c in minute)
    assert last["low"] == min(c["low"] for c in minute)
    assert last["open"] == minute[0]["open"]


@pytest.mark.parametrize("interval", list(INTERVAL_MINUTES))
def test_nothing_after_now_is_served(kite: KiteConnect, interval: str) -> None:
    assert kite.historical_data(NIFTY, "2024-01-04 09:15:00", "2024-01-04 15:29:00", interval) == []
    if interval in ("15minute", "30minute", "60minute"):  # a 15-minute replay: the same
        rows = kite.historical_data(RELIANCE, NOW - timedelta(hours=3), NOW + timedelta(hours=3),
                                    interval)  # fmt: skip
        assert rows and max(c["date"] for c in rows) <= NOW


@pytest.mark.parametrize(("token", "key"), [(NIFTY, "NSE:NIFTY 50"), (HDFCBANK, "NSE:HDFCBANK")])
def test_todays_day_candle_is_the_day_so_far(kite: KiteConnect, token: int, key: str) -> None:
    days = kite.historical_data(token, "2023-12-01", "2024-03-31", "day")
    assert days[-1]["date"].date() == NOW.date()  # no day after today
    assert days[-2]["date"].date() == NOW.date() - timedelta(days=1)
    quote = kite.ohlc(key)[key]
    today = days[-1]
    assert today["close"] == quote["last_price"]
    assert (today["open"], today["high"], today["low"]) == (
        quote["ohlc"]["open"],
        quote["ohlc"]["high"],
        quote["ohlc"]["low"],
    )
    if token == HDFCBANK:  # replayed from its day bars: yesterday's close is the one it had
        assert quote["ohlc"]["close"] == days[-2]["close"]


def test_after_the_close_the_day_is_whole_and_the_next_day_begins_empty(sim: Kitesim) -> None:
    other = Kitesim(kitesim_history_after_now=False).start()
    try:
        kite = other.client()
        other.advance(until="2024-01-02T15:45:00+05:30")
        (jan2,) = kite.historical_data(HDFCBANK, "2024-01-02", "2024-01-02", "day")
        minute = kite.historical_data(NIFTY, "2024-01-02 09:15:00", "2024-01-02 15:29:00", "minute")
        assert len(minute) == 375
        assert kite.historical_data(NIFTY, "2024-01-03", "2024-01-05", "day") == []
        other.advance(ticks=1)  # the next open: the first tick of 3 January
        (jan3,) = kite.historical_data(HDFCBANK, "2024-01-03", "2024-01-03", "day")
        assert jan3["open"] == jan3["close"]  # one tick so far
        assert jan2["close"] != 0
    finally:
        other.stop()
