"""Stale signals never trade: an engine restarted on a stream holding thousands of old bars
warms its indicators up on them and sends no order.

Real process on a real Redis, the market clock live (the wall clock). The bars are real
15-minute INFY bars of 2023-2024 (kitesim's data): the same bars replayed on the exchange
clock (as if they were now) make orders, so the strategy does signal on them."""

from __future__ import annotations

import csv
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis
from engine_fixtures import KNOWN, announce_safe, nowhere

from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import Bar, Envelope, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS
from dalal_shared.testing import ServiceProcesses, wait_until

pytestmark = pytest.mark.slow
KEY = "engine-stale-test-key-0123456789"
STREAM = "market.bars.15minute"
BARS = 3_000
INFY_15M = Path(__file__).parents[2] / "kitesim/src/dalal_kitesim/data/nse/15minute/INFY.csv"
CONFIG = """
name: quarter
strategy: sma_cross
interval: 15minute
universe: [INFY]
params: {fast_bars: 5, slow_bars: 20}
risk: {enforce_market_hours: false, max_orders_per_minute: 200}
"""


def old_bars() -> list[Bar]:
    with INFY_15M.open() as fh:
        rows = list(csv.DictReader(fh))[:BARS]
    return [
        Bar(
            symbol="INFY",
            interval="15minute",
            start=datetime.fromisoformat(r["date"]),
            open=Decimal(r["open"]),
            high=Decimal(r["high"]),
            low=Decimal(r["low"]),
            close=Decimal(r["close"]),
            volume=int(r["volume"]),
        )
        for r in rows
    ]


def test_a_restarted_engine_trades_nothing_on_a_backlog_of_old_bars(
    redis_url: str, tmp_path: Path, service_processes: ServiceProcesses
) -> None:
    bars = old_bars()
    # on the exchange clock (each bar "now" when it comes) these bars do make orders
    probe = LiveEngine(
        load_text(CONFIG),
        EngineStore.open(f"sqlite:///{tmp_path}/probe.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
        safety_known=KNOWN,
    )
    probe.start()
    assert sum(len(probe.on_bar(b)) for b in bars[:600]) > 0

    client = redis.Redis.from_url(redis_url)
    announce_safe(client)
    (tmp_path / "strategies.yaml").write_text(CONFIG)
    env = {
        "DALAL_REDIS_URL": redis_url,
        "DALAL_API_KEY": KEY,
        "DALAL_READ_KEY_REQUIRED": "false",
        "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/engine.sqlite3",
        "DALAL_STRATEGIES_FILE": str(tmp_path / "strategies.yaml"),
        "DALAL_LOG_FORMAT": "json",
        "DALAL_BUS_BLOCK_MS": "50",
        "DALAL_CONSUMER_NAME": "engine-0",
        "DALAL_BROKER_URL": nowhere(),
        "DALAL_EQUITY_SOURCE": "initial_capital",
        # the market clock is the wall clock (live), the default
    }
    engine = service_processes.start("dalal_engine", env, name="engine")
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.post(f"{engine.base_url}/engine/start", headers=auth).json()["running"]
    wait_until(
        lambda: httpx.get(f"{engine.base_url}/engine/status", headers=auth).json()[
            "safety_state_known"
        ],
        message="safety state known",
    )
    engine.kill()
    pipe = client.pipeline(transaction=False)
    for bar in bars:  # the backlog that piled up while the engine was down
        pipe.xadd(STREAM, Envelope.wrap(bar, source="data").to_fields())
    last = pipe.execute()[-1]

    engine = service_processes.start("dalal_engine", env, name="engine")

    def consumed() -> bool:
        for group in client.xinfo_groups(STREAM):
            if group["name"] == b"engine":
                return group["last-delivered-id"] == last and group["pending"] == 0
        return False

    wait_until(consumed, message="the backlog consumed", timeout=120)
    orders = [Envelope.from_fields(f).message for _id, f in client.xrange(ORDERS_COMMANDS)]
    assert [o for o in orders if isinstance(o, PlaceOrder)] == []
    status = httpx.get(f"{engine.base_url}/engine/status", headers=auth).json()
    assert status["running"] is True and status["open_intents"] == 0
    metrics = httpx.get(f"{engine.base_url}/metrics").text.splitlines()
    assert "dalal_engine_running 1.0" in metrics  # the restarted engine says it runs
    stale = [
        line
        for line in metrics
        if line.startswith('dalal_engine_stale_bars_total{strategy="quarter"}')
    ]
    assert stale and float(stale[0].rsplit(" ", 1)[1]) == BARS  # each one seen, none traded
