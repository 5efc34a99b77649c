"""Control before data: a kill switch acts while 50,000 ticks wait in the engine's backlog.

The engine process starts on a bus that already holds 50,000 ticks (of a symbol a strategy
watches) and, after them, a KillSwitchEngaged. Its state flips long before the tick backlog
is drained: system events have their own consumer and do not queue behind market data."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis
from engine_fixtures import announce_safe, replay_env

from dalal_shared.messages import Envelope, KillSwitchEngaged, Tick
from dalal_shared.streams import MARKET_TICKS, SYSTEM_EVENTS
from dalal_shared.testing import ServiceProcesses, bearer, wait_until
from dalal_shared.timeutil import IST

pytestmark = pytest.mark.slow
KEY = "engine-control-test-key-0123456789"
TICKS = 50_000
SWING = """
name: sw
strategy: swing
universe: [INFY]
params: {trend_sma_bars: 20, breakout_bars: 10, time_stop_bars: 200}
risk: {enforce_market_hours: false}
"""


def undelivered(client: redis.Redis) -> int | None:
    """Ticks the engine's group has not been given yet (None: no group yet)."""
    for group in client.xinfo_groups(MARKET_TICKS):
        if group["name"] == b"engine":
            last = group["last-delivered-id"].decode()
            return len(client.xrange(MARKET_TICKS, min=f"({last}", count=TICKS + 1))
    return None


def test_the_kill_switch_flips_while_50000_ticks_are_queued(
    redis_url: str, tmp_path: Path, service_processes: ServiceProcesses
) -> None:
    client = redis.Redis.from_url(redis_url)
    announce_safe(client)
    start = datetime(2025, 3, 3, 9, 15, tzinfo=IST)
    pipe = client.pipeline(transaction=False)
    for k in range(TICKS):
        tick = Tick(
            instrument_token=408065,
            symbol="INFY",
            last_price=Decimal("1500.00") + Decimal(k % 200) / 100,
            exchange_ts=start + timedelta(milliseconds=250 * k),
        )
        pipe.xadd(MARKET_TICKS, Envelope.wrap(tick, source="data").to_fields())
        if k % 5_000 == 4_999:
            pipe.execute()
    pipe.execute()
    engaged = KillSwitchEngaged(reason="drill under load", engaged_by="test")
    client.xadd(SYSTEM_EVENTS, Envelope.wrap(engaged, source="broker").to_fields())

    (tmp_path / "swing.yaml").write_text(SWING)
    engine = service_processes.start(
        "dalal_engine",
        {
            "DALAL_REDIS_URL": redis_url,
            "DALAL_API_KEY": KEY,
            "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/engine.sqlite3",
            "DALAL_STRATEGIES_FILE": str(tmp_path / "swing.yaml"),
            "DALAL_LOG_FORMAT": "json",
            "DALAL_BUS_BLOCK_MS": "50",
            **replay_env(),
        },
        name="engine",
    )
    backlog: list[int] = []

    def flipped() -> bool:
        status = httpx.get(
            f"{engine.base_url}/engine/status", headers=bearer(KEY), timeout=10
        ).json()
        if status["kill_switch"]:
            backlog.append(undelivered(client) or 0)
            return True
        return False

    wait_until(flipped, message="the engine's kill switch engaged", timeout=60)
    assert backlog[0] > TICKS // 2  # flipped with most of the ticks still queued
    # and the ticks are consumed all the same
    wait_until(lambda: undelivered(client) == 0, message="the backlog drained", timeout=120)
    status = httpx.get(f"{engine.base_url}/engine/status", headers=bearer(KEY), timeout=10).json()
    assert status["kill_switch"] is True and status["kill_switch_reason"] == "drill under load"
