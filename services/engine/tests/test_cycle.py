"""The seed's fixed cycle: `execute_cycle(symbols)` reads the latest bars from a real data
service (over a real kitesim) and decides exactly as the bar-event loop does on the same bars."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from engine_fixtures import KNOWN, replay_settings
from engine_servers import Served, data_service, kitesim

from dalal_engine.cycle import FixedCycle
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.clients import DataClient
from dalal_shared.messages import Bar, OrderFilled, PlaceOrder
from dalal_shared.timeutil import IST

SCHEDULED = """
name: cyc
strategy: sma_cross
universe: [INFY]
params: {fast_bars: 3, slow_bars: 10}
risk: {enforce_market_hours: false}
schedule: {every_seconds: 60}
"""
FIRST, LAST = date(2024, 3, 1), date(2024, 5, 31)
KITESIM_INFY = (
    Path(__file__).parents[2] / "kitesim" / "src" / "dalal_kitesim" / "data" / "nse" / "day"
) / "INFY.csv"


@pytest.fixture(scope="module")
def data_url(redis_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sim = kitesim(kitesim_history_after_now=True)  # the replay reads months past its clock
    data: Served | None = None
    try:
        data = data_service(sim, redis_server_url, tmp_path_factory.mktemp("cache"))
        yield data.root
    finally:
        if data is not None:
            data.stop()
        sim.stop()


class Clock:
    """The test's market clock (a replay stepping through days at 15:35 IST)."""

    name = "test"

    def __init__(self) -> None:
        self.at = datetime.combine(FIRST, time(15, 35), tzinfo=IST)

    def now(self) -> datetime:
        return self.at

    def observe(self, at: datetime) -> None:
        return None

    known = True


def fill(live: LiveEngine, order: PlaceOrder, price: Decimal, at: datetime) -> None:
    live.on_order_event(
        OrderFilled(
            client_order_id=order.client_order_id,
            broker_order_id="b",
            trade_id=f"t-{order.client_order_id}",
            symbol=order.symbol,
            side=order.side,
            product="CNC",
            quantity=order.quantity,
            price=price,
            filled_at=at,
        )
    )


def infy_days() -> list[Bar]:
    with KITESIM_INFY.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["date"] <= LAST.isoformat()]
    return [
        Bar(
            symbol="INFY",
            interval="day",
            start=datetime.combine(date.fromisoformat(r["date"]), time(0), tzinfo=IST),
            open=Decimal(r["open"]),
            high=Decimal(r["high"]),
            low=Decimal(r["low"]),
            close=Decimal(r["close"]),
            volume=int(r["volume"]),
        )
        for r in rows
    ]


def test_fixed_cycle_orders_match_the_bar_event_loop(data_url: str, tmp_path: Path) -> None:
    clock = Clock()
    live = LiveEngine(
        load_text(SCHEDULED),
        EngineStore.open(f"sqlite:///{tmp_path}/cycle.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        clock=clock,
        safety_known=KNOWN,
    )
    live.start()
    assert live.intervals() == set()  # a scheduled instance consumes no bar events
    closes = {b.start: b.close for b in infy_days()}
    with DataClient(data_url) as client:
        client.candles("NSE", "INFY", "day", "2023-06-01", f"{LAST}T23:59")  # one Kite fetch
        cycle = FixedCycle(live, live.instances["cyc"].config, client)
        by_cycle: list[PlaceOrder] = []
        day = FIRST
        while day <= LAST:
            clock.at = datetime.combine(day, time(15, 35), tzinfo=IST)
            for order in cycle.execute_cycle(["INFY"]):
                by_cycle.append(order)
                fill(live, order, closes[live.last_bar("cyc", "INFY")], clock.at)
            if day == FIRST:
                assert cycle.execute_cycle(["INFY"]) == []  # again the same day: nothing new
            day = date.fromordinal(day.toordinal() + 1)
    assert len(by_cycle) >= 4 and by_cycle[0].side == "BUY"

    # the same instance driven by bar events over the same bars: the same orders
    events = LiveEngine(
        load_text(SCHEDULED.replace("schedule: {every_seconds: 60}", "")),
        EngineStore.open(f"sqlite:///{tmp_path}/events.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        clock=clock,
        safety_known=KNOWN,
    )
    events.start()
    by_events = []
    for bar in infy_days():
        clock.at = datetime.combine(bar.start.date(), time(15, 35), tzinfo=IST)
        if bar.start.date() < FIRST:  # history before the first cycle
            events.on_bar(bar, decide=False)
            continue
        for order in events.on_bar(bar):
            by_events.append(order)
            fill(events, order, bar.close, clock.at)
    assert [(o.client_order_id, o.side, o.quantity) for o in by_cycle] == [
        (o.client_order_id, o.side, o.quantity) for o in by_events
    ]


def test_the_engine_process_runs_the_schedule(
    data_url: str, tmp_path: Path, redis_url: str
) -> None:
    from fastapi.testclient import TestClient

    from dalal_engine.app import build_app
    from dalal_engine.config import EngineSettings
    from dalal_shared.testing import bearer, wait_until

    (tmp_path / "s.yaml").write_text(SCHEDULED.replace("every_seconds: 60", "every_seconds: 1"))
    settings = EngineSettings(
        redis_url=redis_url,
        api_key="engine-cycle-test-key-0123456789",
        database_url=f"sqlite:///{tmp_path}/e.sqlite3",
        strategies_file=tmp_path / "s.yaml",
        data_url=data_url,
        bus_block_ms=50,
        **replay_settings(),
    )
    with TestClient(build_app(settings), headers=bearer(settings)) as client:

        def cycles() -> int:
            (schedule,) = client.get("/engine/status").json()["schedules"]
            assert schedule["last_error"] is None  # the data service answered
            return schedule["cycles"]

        wait_until(lambda: cycles() >= 2, message="two fixed cycles against the data service")
        assert client.app.state.live.intervals() == set()  # no bar stream consumed
