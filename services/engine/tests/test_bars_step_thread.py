"""Where the bars handler runs a step: a minute's traded bars whose histories are in memory, on
a SQLite store, are decided on the event loop (no hand-off to a worker thread and back before
the orders go out); a step that reads a history (the first bar of a symbol: the store, maybe
Kite's candles) or talks to a database server runs in a worker thread, so the loop never waits
on I/O. Through a real consumer, on SQLite and PostgreSQL; the orders are the same either way
(`test_bars_burst.py` checks them against the bars one by one)."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest
from engine_fixtures import infy_bars, started_engine

from dalal_engine.handlers import EngineGate, bars_handler
from dalal_engine.live import LiveEngine
from dalal_shared.bus import ConsumerConfig, Publisher, StreamConsumer, group_info
from dalal_shared.messages import Bar
from dalal_shared.streams import bars_stream

CONFIG = """
name: where
strategy: sma_cross
universe: [INFY, TCS]
params: {fast_bars: 2, slow_bars: 5}
risk: {enforce_market_hours: false}
"""


def days(n: int) -> list[list[Bar]]:
    """INFY's real daily bars, TCS a scaled copy and WIPRO (traded by nobody) another."""
    out = []
    for bar in infy_bars()[:n]:
        day = []
        for k, symbol in enumerate(("INFY", "TCS", "WIPRO")):
            scale = Decimal(1 + k)
            fields = {
                "symbol": symbol,
                "open": bar.open * scale,
                "high": bar.high * scale,
                "low": bar.low * scale,
                "close": bar.close * scale,
            }
            day.append(Bar.model_validate({**bar.model_dump(), **fields}))
        out.append(day)
    return out


async def steps_and_threads(live: LiveEngine, aredis, n_days: int) -> list[tuple[int, bool]]:  # type: ignore[no-untyped-def]
    """Publishes `n_days` days as the feed does (a day's bars at once) and consumes them
    through the bars handler; for each step of the engine that decided traded bars: (its
    day, whether it ran on the event loop's thread)."""
    loop_thread = threading.get_ident()
    seen: list[tuple[int, bool]] = []
    on_bars = live.on_bars
    day_of = {}

    def recording(bars, **kwargs):  # type: ignore[no-untyped-def]
        traded = [b for b, _ in bars if b.symbol != "WIPRO"]
        if traded:
            seen.append((day_of[traded[0].start], threading.get_ident() == loop_thread))
        return on_bars(bars, **kwargs)

    on_bar = live.on_bar

    def recording_one(bar, **kwargs):  # type: ignore[no-untyped-def]
        if bar.symbol != "WIPRO":  # a read's one traded bar: the handler's one-bar path
            seen.append((day_of[bar.start], threading.get_ident() == loop_thread))
        return on_bar(bar, **kwargs)

    live.on_bars = recording  # type: ignore[method-assign]
    live.on_bar = recording_one  # type: ignore[method-assign]
    stream = bars_stream("day")
    handler = bars_handler(live, Publisher(aredis, source="engine"), EngineGate())
    consumer = StreamConsumer(
        aredis, ConsumerConfig(group="engine", block_ms=50), {stream: handler}
    )
    task = asyncio.create_task(consumer.run())
    feed = Publisher(aredis, source="data")
    try:
        for n, day in enumerate(days(n_days)):
            day_of[day[0].start] = n
            await feed.publish_entries([(stream, b, f"tick-{n}-{b.symbol}") for b in day])
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                info = await group_info(aredis, stream, "engine")
                done = info is not None and info.pending == 0 and info.lag == 0
                if done and await aredis.xlen(stream) == (n + 1) * len(day):
                    break
                assert asyncio.get_running_loop().time() < deadline, "bars not consumed"
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return seen


def engine(url: str, universe: str = "[INFY, TCS]") -> LiveEngine:
    return started_engine(CONFIG.replace("[INFY, TCS]", universe), url)


@pytest.mark.parametrize("universe", ["[INFY, TCS]", "[INFY]"], ids=["two-traded", "one-traded"])
async def test_on_sqlite_a_step_with_histories_in_memory_runs_on_the_loop(
    tmp_path, aredis, universe: str
) -> None:  # type: ignore[no-untyped-def]
    live = engine(f"sqlite:///{tmp_path / 'engine.sqlite3'}", universe)
    seen = await steps_and_threads(live, aredis, 30)
    assert seen[0] == (0, False), "the first day reads the histories: in a worker thread"
    later = [on_loop for day, on_loop in seen if day > 0]
    assert later and all(later), "later days, histories in memory: on the event loop"
    assert live.store.unpublished() == []  # every order went out


async def test_on_postgresql_every_step_runs_in_a_worker_thread(postgres_url: str, aredis) -> None:  # type: ignore[no-untyped-def]
    live = engine(postgres_url)
    seen = await steps_and_threads(live, aredis, 12)
    assert len(seen) >= 12
    assert not any(on_loop for _day, on_loop in seen), "a database server: never on the loop"


async def test_a_symbol_whose_history_is_not_read_yet_sends_the_step_to_a_thread(
    tmp_path, aredis
) -> None:  # type: ignore[no-untyped-def]
    live = engine(f"sqlite:///{tmp_path / 'engine.sqlite3'}")
    await steps_and_threads(live, aredis, 3)
    bars = days(4)[3]
    items = [(b, None) for b in bars]
    assert live.local_step(items)
    live._history.pop(("NSE", "TCS", "day"))  # as a symbol seen for the first time
    assert not live.local_step(items)
    assert live.local_step([(b, None) for b in bars if b.symbol != "TCS"])
