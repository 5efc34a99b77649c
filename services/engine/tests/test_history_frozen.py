"""A history read at a symbol's first bar (up to 20,000 bars after weeks live) is moved out of
the cyclic garbage collector's walk once the step's orders are out (`freeze_histories`, called
by the bars handler): a full collection then no longer walks tens of thousands of stored bars,
which put 60-90 ms on whichever bar's step it landed in. A step that read no history freezes
nothing."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from dalal_engine.handlers import FREEZE_HISTORY_BARS, EngineGate, bars_handler
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore, StoredBar
from dalal_engine.strategyconfig import load_text
from dalal_shared.bus import Publisher
from dalal_shared.messages import Bar, Envelope

CONFIG = """
name: frozen
strategy: sma_cross
interval: minute
universe: [INFY, TCS]
params: {fast_bars: 1, slow_bars: 2, fixed_quantity: 1}
risk: {enforce_market_hours: false}
"""
FIRST = datetime(2026, 12, 1, 3, 45, tzinfo=UTC)
STORED = FREEZE_HISTORY_BARS + 500
PRICES = (1000.0, 1001.0, 999.0, 1000.0, 10)


def minute(at: datetime, close: str) -> list[Envelope]:
    return [
        Envelope.wrap(
            Bar(
                symbol=symbol,
                interval="minute",
                start=at,
                open=Decimal(close),
                high=Decimal(close) + 1,
                low=Decimal(close) - 1,
                close=Decimal(close),
                volume=10,
            ),
            source="data",
        )
        for symbol in ("INFY", "TCS")
    ]


async def test_a_history_read_at_a_bar_is_frozen_once_the_orders_are_out(
    tmp_path: Path, aredis
) -> None:
    store = EngineStore.open(f"sqlite:///{tmp_path / 'engine.sqlite3'}")
    store.store_bars(
        [
            ("NSE", "INFY", "minute", StoredBar(FIRST - timedelta(minutes=STORED - i), *PRICES))
            for i in range(STORED)
        ]
    )
    live = LiveEngine(load_text(CONFIG), store, initial_equity_rupees=Decimal("1000000"))
    live.start()
    handler = bars_handler(live, Publisher(aredis, source="engine"), EngineGate())
    gc.unfreeze()
    try:
        before = gc.get_freeze_count()
        await handler.batch(minute(FIRST, "1000"))
        history = live._history[("NSE", "INFY", "minute")]
        assert len(history) == STORED + 1
        assert gc.get_freeze_count() >= before + STORED
        walked = {id(o) for o in gc.get_objects()}  # what a full collection goes over
        assert not any(id(bar) in walked for bar in history[:STORED])
        frozen = gc.get_freeze_count()
        await handler.batch(minute(FIRST + timedelta(minutes=1), "1001"))  # no history read
        assert gc.get_freeze_count() <= frozen  # (frozen objects freed since: fewer)
        assert id(live._history[("NSE", "INFY", "minute")][-1]) in {
            id(o) for o in gc.get_objects()
        }  # the bar that came after (not frozen) is collected as ever
    finally:
        gc.unfreeze()
        store.close()
