"""Pause, flatten and stop through the engine's HTTP routes, on a real Redis bus: a paused
engine still fires a stop-loss; flatten exits every position and pauses; stop is refused while
a position is open unless the exits are abandoned on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from engine_fixtures import KNOWN, announce_safe, infy_bars, replay_settings
from fastapi.testclient import TestClient

from dalal_engine.app import build_app
from dalal_engine.config import EngineSettings
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import Envelope, Message, OrderFilled, PlaceOrder, Tick
from dalal_shared.streams import MARKET_TICKS, ORDERS_COMMANDS, ORDERS_EVENTS
from dalal_shared.testing import bearer, wait_until

KEY = "engine-modes-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
SWING = """
name: sw
strategy: swing
universe: [INFY]
params: {trend_sma_bars: 20, breakout_bars: 10, time_stop_bars: 200}
risk: {enforce_market_hours: false}
"""


@dataclass
class Held:
    client: TestClient
    bus: redis.Redis
    entry: PlaceOrder
    stop: float
    day_after: Any  # a time on the session after the entry bar

    def commands(self) -> list[PlaceOrder]:
        out = [Envelope.from_fields(f).message for _id, f in self.bus.xrange(ORDERS_COMMANDS)]
        return [m for m in out if isinstance(m, PlaceOrder)]

    def publish(self, stream: str, message: Message) -> None:
        self.bus.xadd(stream, Envelope.wrap(message, source="test").to_fields())

    def fill(self, order: PlaceOrder, price: Decimal, trade: str) -> None:
        self.publish(
            ORDERS_EVENTS,
            OrderFilled(
                client_order_id=order.client_order_id,
                broker_order_id=f"b-{trade}",
                trade_id=trade,
                symbol="INFY",
                side=order.side,
                product="CNC",
                quantity=order.quantity,
                price=price,
                filled_at=self.day_after,
            ),
        )

    def tick(self, price: float, minutes: int) -> None:
        self.publish(
            MARKET_TICKS,
            Tick(
                instrument_token=408065,
                symbol="INFY",
                last_price=Decimal(f"{price:.2f}"),
                exchange_ts=self.day_after + timedelta(minutes=minutes),
            ),
        )

    def status(self) -> dict[str, Any]:
        return self.client.get("/engine/status").json()


@pytest.fixture
def held(redis_url: str, tmp_path: Path) -> Iterator[Held]:
    """A running engine holding the INFY position swing entered on real bars."""
    (tmp_path / "swing.yaml").write_text(SWING)
    settings = EngineSettings(
        redis_url=redis_url,
        api_key=KEY,
        database_url=f"sqlite:///{tmp_path}/engine.sqlite3",
        strategies_file=tmp_path / "swing.yaml",
        bus_block_ms=50,
        **replay_settings(),
    )
    bus = redis.Redis.from_url(redis_url)
    announce_safe(bus)
    # the bar swing enters on (the same strategy in process, on the same bars)
    probe = LiveEngine(
        load_text(SWING),
        EngineStore.open(f"sqlite:///{tmp_path}/probe.sqlite3"),
        initial_equity_rupees=settings.initial_capital_rupees,
        safety_known=KNOWN,
    )
    probe.start()
    bars = infy_bars()
    n = next(k for k, b in enumerate(bars) if probe.on_bar(b))
    with TestClient(build_app(settings), headers=bearer(settings)) as client:
        assert client.post("/engine/start", headers=AUTH).json()["mode"] == "running"
        wait_until(lambda: client.get("/engine/status").json()["safety_state_known"])
        h = Held(client, bus, None, 0.0, bars[n + 1].start + timedelta(hours=10))  # type: ignore[arg-type]
        for bar in bars[: n + 1]:
            h.publish("market.bars.day", bar)
        (h.entry,) = wait_until(h.commands, message="the entry on orders.commands")
        h.fill(h.entry, Decimal(str(bars[n].close)), "t-entry")
        live = client.app.state.live
        wait_until(lambda: h.status()["open_positions"], message="the entry filled")
        h.stop = live.states[("sw", "INFY")].state["stop"]
        yield h


def test_a_paused_engine_still_fires_its_stop_loss(held: Held) -> None:
    client = held.client
    r = client.post("/engine/stop", headers=AUTH)
    assert r.status_code == 409 and r.json()["error"] == "not_flat"  # it would strand it
    assert held.status()["mode"] == "running"
    paused = client.post("/engine/pause", headers=AUTH).json()
    assert paused["mode"] == "paused" and paused["running"] is False
    held.tick(held.stop - 1, 5)  # a trade through the stop-loss while paused
    wait_until(lambda: len(held.commands()) == 2, message="the stop exit on orders.commands")
    exit_ = held.commands()[1]
    assert exit_.client_order_id.startswith("S-")
    assert (exit_.side, exit_.quantity) == ("SELL", held.entry.quantity)
    held.fill(exit_, Decimal(f"{held.stop - 1:.2f}"), "t-exit")
    wait_until(lambda: not held.status()["open_positions"], message="flat after the stop")
    stopped = client.post("/engine/stop", headers=AUTH)
    assert stopped.status_code == 200 and stopped.json()["mode"] == "stopped"
    metrics = client.get("/metrics").text
    assert "dalal_engine_running 0.0" in metrics and "dalal_engine_paused 0.0" in metrics


def test_flatten_exits_every_position_once_then_pauses(held: Held) -> None:
    client = held.client
    body = client.post("/engine/flatten", headers=AUTH).json()
    assert body["mode"] == "paused"
    (coid,) = body["flatten"]["exits"]
    wait_until(lambda: len(held.commands()) == 2, message="the flatten exit on orders.commands")
    exit_ = held.commands()[1]
    assert exit_.client_order_id == coid and coid.startswith("F-")
    assert (exit_.side, exit_.quantity) == ("SELL", held.entry.quantity)
    again = client.post("/engine/flatten", headers=AUTH).json()["flatten"]
    assert again["exits"] == [] and again["already_exiting"] == ["sw:INFY"]
    held.tick(held.stop - 1, 5)  # the stop is reached too: the position is already exiting
    held.fill(exit_, Decimal(f"{held.stop:.2f}"), "t-flat")
    wait_until(lambda: not held.status()["open_positions"], message="flat")
    assert len(held.commands()) == 2
    assert client.post("/engine/stop", headers=AUTH).json()["mode"] == "stopped"


def test_stop_with_abandoned_exits_leaves_the_position_unguarded(held: Held) -> None:
    client = held.client
    r = client.post("/engine/stop", params={"abandon_exits": "true"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["mode"] == "stopped"
    held.tick(held.stop - 1, 5)
    last = held.bus.xrevrange(MARKET_TICKS, count=1)[0][0]
    wait_until(
        lambda: any(
            g["name"] == b"engine" and g["last-delivered-id"] == last and g["pending"] == 0
            for g in held.bus.xinfo_groups(MARKET_TICKS)
        ),
        message="the tick consumed",
    )
    assert len(held.commands()) == 1  # stopped: no exit, as asked
    assert held.status()["open_positions"]
