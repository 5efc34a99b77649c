"""The live feed over kitesim's ticker: ticks to market.ticks, 15-minute and day bars equal to
kitesim's own history, and a silenced ticker noticed, reported and reconnected in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from dalal_data.bars import OpenBar
from dalal_data.feed import Feed, market_open, parse_symbols, partition
from dalal_data.tickbus import TickWriter
from dalal_data.wiring import build_core
from dalal_shared.bus import Publisher
from dalal_shared.calendar import nse_calendar
from dalal_shared.ids import new_id
from dalal_shared.messages import Bar, Envelope, Tick
from dalal_shared.streams import MARKET_TICKS, SYSTEM_EVENTS, bars_stream
from dalal_shared.timeutil import IST

if TYPE_CHECKING:
    from conftest import Kitesim


async def entries(redis: aioredis.Redis, stream: str) -> list[Envelope]:
    return [Envelope.from_fields(f) for _id, f in await redis.xrange(stream)]


@pytest.fixture
async def make_feed(
    kitesim: Kitesim, aredis: aioredis.Redis, settings_for: Callable[..., Any]
) -> AsyncIterator[Callable[..., Awaitable[Feed]]]:
    feeds: list[Feed] = []

    async def make(stale_seconds: float) -> Feed:
        settings = settings_for(
            feed_enabled=True,
            feed_symbols="NSE:RELIANCE,NSE:TCS",
            feed_stale_seconds=stale_seconds,
            feed_watch_always=True,
            feed_lease_seconds=3,
        )
        core = build_core(settings, aredis)
        feed = Feed(
            settings,
            Publisher(aredis, source="data"),
            aredis,
            core,
            parse_symbols(settings.feed_symbols),
        )
        await feed.start()
        feeds.append(feed)
        return feed

    yield make
    for feed in feeds:
        await feed.stop()
    kitesim.control("/ticker/silence", {"silent": False})


async def test_ticks_flow_and_rebuilt_bars_equal_kites_history(
    make_feed: Callable[..., Awaitable[Feed]],
    kitesim: Kitesim,
    aredis: aioredis.Redis,
    poller: Callable[..., Awaitable[Any]],
) -> None:
    feed = await make_feed(stale_seconds=60)
    await poller(lambda: _true(feed.status()["connections"] == 1))
    state = kitesim.control("/state", method="GET")
    kitesim.control("/clock/advance", {"seconds": 6 * 3600 + 15 * 60})  # the whole session
    kitesim.control("/clock/advance", {"ticks": 3})  # the next day's first ticks close the day

    async def day_bars() -> list[Envelope]:
        return [
            e for e in await entries(aredis, bars_stream("day")) if e.message.symbol == "RELIANCE"
        ]

    (day_bar,) = await poller(day_bars)
    session_day = day_bar.message.start.astimezone(IST).date()
    ticks = await entries(aredis, MARKET_TICKS)
    assert {t.message.symbol for t in ticks} == {"RELIANCE", "TCS"}
    built = [
        e.message
        for e in await entries(aredis, bars_stream("15minute"))
        if e.message.symbol == "RELIANCE" and e.message.start.astimezone(IST).date() == session_day
    ]
    kite = kitesim.client()
    token = next(
        i["instrument_token"] for i in kite.instruments("NSE") if i["tradingsymbol"] == "RELIANCE"
    )
    source = kite.historical_data(
        token, f"{session_day} 09:15:00", f"{session_day} 15:29:59", "15minute"
    )
    assert len(built) == len(source) == 25, state
    for bar, src in zip(built, source, strict=True):
        assert bar.start == src["date"]
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
            Decimal(str(src["open"])),
            Decimal(str(src["high"])),
            Decimal(str(src["low"])),
            Decimal(str(src["close"])),
            src["volume"],
        )
    assert day_bar.message.volume == sum(s["volume"] for s in source)


async def test_a_silenced_ticker_is_reported_and_reconnected_without_restart(
    make_feed: Callable[..., Awaitable[Feed]],
    kitesim: Kitesim,
    aredis: aioredis.Redis,
    poller: Callable[..., Awaitable[Any]],
) -> None:
    feed = await make_feed(stale_seconds=0.5)
    await poller(lambda: _true(feed.status()["connections"] == 1))
    kitesim.control("/clock/advance", {"ticks": 5})
    await poller(lambda: _true(feed.watchdog.last_tick_at is not None))
    kitesim.control("/ticker/silence", {"silent": True})
    kitesim.control("/clock/advance", {"ticks": 5})  # ticks happen, none is sent

    async def stale_event() -> list[Envelope]:
        return [e for e in await entries(aredis, SYSTEM_EVENTS) if e.type == "DataStale"]

    (event,) = (await poller(stale_event))[:1]
    assert event.message.feed == "kite-ticker" and event.message.age_seconds >= 0.5
    await poller(lambda: _true(feed.status()["reconnects"] >= 1 and feed.status()["connections"]))
    # while stale, REST quotes stand in for ticks (at Kite's quote rate)
    await poller(lambda: _true(feed.status()["fallback_polls"] >= 1))
    kitesim.control("/ticker/silence", {"silent": False})
    before = len(await entries(aredis, MARKET_TICKS))
    kitesim.control("/clock/advance", {"ticks": 5})

    async def fresh() -> bool:
        return not feed.watchdog.stale and len(await entries(aredis, MARKET_TICKS)) > before

    await poller(fresh)


def test_instruments_are_split_over_at_most_three_connections_of_3000() -> None:
    groups = partition(list(range(7000)), 3000, 3)
    assert [len(g) for g in groups] == [3000, 3000, 1000]
    with pytest.raises(Exception, match="exceed"):
        partition(list(range(9001)), 3000, 3)


async def _true(value: Any) -> Any:
    return value


def test_market_open_follows_the_calendar() -> None:
    cal = nse_calendar()
    assert market_open(cal, datetime(2024, 1, 29, 9, 15, tzinfo=IST))
    assert not market_open(cal, datetime(2024, 1, 29, 15, 30, tzinfo=IST))  # the close
    assert not market_open(cal, datetime(2024, 1, 26, 11, 0, tzinfo=IST))  # Republic Day
    assert not market_open(cal, datetime(2024, 11, 1, 11, 0, tzinfo=IST))  # Muhurat day...
    assert market_open(cal, datetime(2024, 11, 1, 18, 30, tzinfo=IST))  # ...in its hour
    assert not market_open(cal, datetime(2014, 6, 2, 11, 0, tzinfo=IST))  # before the calendar


async def test_market_open_gauge_runs_on_the_feeds_exchange_clock(
    make_data: Callable[..., Any],
    kitesim: Kitesim,
    poller: Callable[..., Awaitable[Any]],
) -> None:
    data = make_data(
        feed_enabled=True,
        feed_symbols="NSE:RELIANCE",
        feed_stale_seconds=60,
        feed_watch_always=True,
        feed_lease_seconds=3,
        feed_clock_redis_key="test:exchange-clock",
    )
    feed = data.app.state.feed
    await feed.start()
    try:
        await poller(lambda: _true(feed.status()["connections"] == 1))
        state = kitesim.control("/state", method="GET")
        if not state["in_session"]:
            kitesim.control("/clock/advance", {"ticks": 1})  # on to the next open
        kitesim.control("/clock/advance", {"ticks": 3})
        await poller(lambda: _true(feed.watchdog.last_tick_at is not None))

        async def gauge() -> float | None:
            text = (await data.http.get("/metrics")).text
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if s.name == "dalal_data_market_open":
                        return s.value
            return None

        # kitesim's session is open on its own clock, whatever the wall clock says
        sim_now = datetime.fromisoformat(kitesim.control("/state", method="GET")["now"])
        assert market_open(nse_calendar(), sim_now)
        # (the subscription's snapshot may carry the previous close: wait for the new ticks)
        await poller(lambda: _true_async(gauge, 1.0))
        assert (await data.http.get("/feed")).json()["market_open"] is True
        # the scheduler of sim mode reads the same clock from Redis
        redis = data.app.state.runtime.redis

        async def shared_clock() -> datetime | None:
            raw = await redis.get("test:exchange-clock")
            return datetime.fromisoformat(raw.decode()) if raw else None

        shared = await poller(shared_clock)
        assert abs((shared - sim_now).total_seconds()) < 3600  # kitesim's day, not today's
        assert shared.date() != datetime.now(IST).date()
    finally:
        await feed.stop()


async def test_fast_tick_envelopes_read_like_the_bus_own(aredis: aioredis.Redis) -> None:
    writer = TickWriter(aredis, stream=MARKET_TICKS, source="data", maxlen=1000)
    ts = datetime(2024, 1, 2, 9, 20, 5, 250_000, tzinfo=IST).astimezone(UTC)  # as decoded
    rows = [
        (738561, "NSE", "RELIANCE", Decimal(250_050) / 100, 1_200, ts),
        (519937, "NSE", "M&M", Decimal(100_000) / 100, 0, ts),
        (256265, "NSE", "NIFTY 50", Decimal("21750.35"), 0, ts),
    ]
    assert await writer.publish(rows) == 3
    raw = await aredis.xrange(MARKET_TICKS)
    got = [Envelope.from_fields(fields) for _id, fields in raw]
    expected = [
        Tick(instrument_token=t, exchange=ex, symbol=s, last_price=p, volume=v, exchange_ts=at)
        for t, ex, s, p, v, at in rows
    ]
    assert [e.message for e in got] == expected
    reference = Envelope.wrap(expected[0], source="data").to_fields()
    for (_id, fields), tick in zip(raw, expected, strict=True):
        decoded = {k.decode(): v.decode() for k, v in fields.items()}
        assert list(decoded) == list(reference)  # same fields, same order
        assert decoded["data"] == tick.model_dump_json()
        assert decoded["corr"] == decoded["id"] and decoded["source"] == "data"
    assert len({e.id for e in got}) == 3
    with pytest.raises(ValidationError):  # a symbol no consumer would accept never goes out
        await writer.publish([(1, "NSE", "bad symbol!", Decimal(1), 0, ts)])


async def test_fast_bar_envelopes_read_like_the_bus_own_after_their_ticks(
    aredis: aioredis.Redis,
) -> None:
    """The bars a batch of ticks closes go out in the ticks' call, after them, each with the
    corr of its closing tick; their `data` is the Bar model's JSON, whatever the prices."""
    writer = TickWriter(aredis, stream=MARKET_TICKS, source="data", maxlen=1000)
    ts = datetime(2024, 1, 2, 9, 21, 0, 500_000, tzinfo=IST).astimezone(UTC)
    ids = [new_id(), new_id()]
    rows = [
        (738561, "NSE", "RELIANCE", Decimal("2500.55"), 1_300, ts),
        (519937, "NSE", "M&M", Decimal("1000.00"), 10, ts),
    ]
    start = datetime(2024, 1, 2, 9, 20, tzinfo=IST)
    prices = [  # as the ticker gives them, and forms only the model writes right
        (Decimal("2500.50"), Decimal("2501"), Decimal("2499.05"), Decimal("2500.55")),
        (Decimal("1E+3"), Decimal("1000.5000"), Decimal("999.95"), Decimal("0.05")),
        (Decimal("1000"), Decimal("1000.10"), Decimal("1000"), Decimal("1000.100")),
    ]
    bars = [
        ("NSE", OpenBar("RELIANCE", "minute", start, start, *prices[0], 4_200, ids[0])),
        ("NSE", OpenBar("M&M", "minute", start.astimezone(UTC), start, *prices[1], 0, ids[1])),
        ("BSE", OpenBar("M&M", "5minute", start, start, *prices[2], 7, None)),
    ]
    assert await writer.publish(rows, ids, bars) == 5
    ticks = [Envelope.from_fields(f) for _id, f in await aredis.xrange(MARKET_TICKS)]
    assert [t.id for t in ticks] == ids
    minute = await aredis.xrange(bars_stream("minute"))
    five = await aredis.xrange(bars_stream("5minute"))
    assert len(minute) == 2 and len(five) == 1
    for (_id, fields), (exchange, b) in zip([*minute, *five], bars, strict=True):
        expected = Bar(
            exchange=exchange, symbol=b.symbol, interval=b.interval, start=b.start,
            open=b.open, high=b.high, low=b.low, close=b.close, volume=b.volume,
        )  # fmt: skip
        decoded = {k.decode(): v.decode() for k, v in fields.items()}
        reference = Envelope.wrap(expected, source="data", corr=ids[0]).to_fields()
        assert list(decoded) == list(reference)  # same fields, same order
        assert decoded["data"] == expected.model_dump_json()
        env = Envelope.from_fields(fields)
        assert env.message == expected and env.type == "Bar" and env.source == "data"
        assert env.corr == (b.corr or env.id)
        assert env.ts >= ticks[0].ts  # stamped after the ticks
    # the model refuses what it always refused, and nothing of the call is written
    bad = OpenBar("TCS", "minute", start, start, Decimal(0), Decimal(1), Decimal(0), Decimal(1), 1)
    with pytest.raises(ValidationError):
        await writer.publish(rows, [new_id(), new_id()], [("NSE", bad)])
    assert len(await aredis.xrange(MARKET_TICKS)) == 2


async def _true_async(read: Callable[[], Awaitable[Any]], expected: Any) -> bool:
    return (await read()) == expected
