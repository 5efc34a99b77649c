"""The market clock's sources and the safety state's precedence (domain logic; the shared
clock read from a real Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from engine_fixtures import CONFIG, infy_bars

from dalal_engine.clock import ExchangeClock
from dalal_engine.live import LiveEngine
from dalal_engine.restore import follow_shared_clock
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import KillSwitchEngaged
from dalal_shared.timeutil import IST


async def test_the_exchange_clock_follows_kitesims_shared_clock(aredis) -> None:  # type: ignore[no-untyped-def]
    clock = ExchangeClock()
    bar_close = datetime(2024, 3, 4, 15, 30, tzinfo=IST)
    clock.observe(bar_close)
    task = asyncio.create_task(
        follow_shared_clock(clock, aredis, "test:exchange-clock", every_seconds=0.02)
    )
    try:
        shared = datetime(2024, 3, 5, 10, 0, tzinfo=IST)
        await aredis.set("test:exchange-clock", shared.isoformat())
        for _ in range(500):
            if clock.now() == shared:
                break
            await asyncio.sleep(0.01)
        assert clock.now() == shared  # kitesim is ahead of the last bar seen
        clock.observe(bar_close - timedelta(days=3))  # an old bar does not wind it back
        assert clock.now() == shared
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_restarted_engine_starts_its_clock_at_the_latest_stored_bar(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/engine.sqlite3"
    live = LiveEngine(load_text(CONFIG), EngineStore.open(url), initial_equity_rupees=Decimal(1))
    for bar in infy_bars()[:30]:
        live.on_bar(bar)
    again = LiveEngine(load_text(CONFIG), EngineStore.open(url), initial_equity_rupees=Decimal(1))
    last = infy_bars()[29].start
    assert again.clock.now() == datetime(
        last.year, last.month, last.day, 15, 30, tzinfo=IST
    )  # the close of the last bar it stored
    assert again.stale("day", infy_bars()[10].start + timedelta(hours=9, minutes=15))


def test_an_event_heard_while_the_broker_answered_wins_over_the_answer(tmp_path: Path) -> None:
    live = LiveEngine(
        load_text(CONFIG),
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
    )
    assert live.status()["safety_state_missing"] == ["kill_switch", "session", "equity"]
    ticket = live.safety.ticket()  # the engine asks the broker and the portfolio...
    live.on_system_event(KillSwitchEngaged(reason="drill", engaged_by="ops"))  # ...meanwhile
    live.restore(
        ticket,
        kill_switch=(False, ""),  # the answer predates the event
        session_valid=True,
        funds=(Decimal("250000"), Decimal("200000")),
    )
    status = live.status()
    assert status["kill_switch"] is True and status["safety_state_known"] is True
    assert (status["equity_rupees"], status["cash_rupees"]) == ("250000.00", "200000.00")
