"""The engine process SIGKILLed right after it emitted a PlaceOrder, then restarted with the
same bars delivered again: no second order for the same signal (real process, real Redis)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis
from engine_fixtures import CONFIG, announce_safe, infy_bars, replay_env

from dalal_shared.messages import Envelope, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS
from dalal_shared.testing import ServiceProcesses, wait_until

pytestmark = pytest.mark.slow
STREAM = "market.bars.day"
KEY = "engine-process-test-key-0123"


def publish_bars(client: redis.Redis) -> list[bytes]:
    pipe = client.pipeline(transaction=False)
    for bar in infy_bars():
        pipe.xadd(STREAM, Envelope.wrap(bar, source="test").to_fields())
    return pipe.execute()


def place_orders(client: redis.Redis) -> list[PlaceOrder]:
    out = []
    for _id, fields in client.xrange(ORDERS_COMMANDS):
        env = Envelope.from_fields(fields)
        if isinstance(env.message, PlaceOrder):  # (the unfilled entry is cancelled later)
            out.append(env.message)
    return out


def consumed_all(client: redis.Redis, last_id: bytes) -> bool:
    for group in client.xinfo_groups(STREAM):
        if group["name"] == b"engine":
            return group["last-delivered-id"] == last_id and group["pending"] == 0
    return False


def test_sigkill_after_place_order_then_restart_orders_once(
    redis_url: str, tmp_path: Path, service_processes: ServiceProcesses
) -> None:
    (tmp_path / "strategies.yaml").write_text(CONFIG)
    env = {
        "DALAL_REDIS_URL": redis_url,
        "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/engine.sqlite3",
        "DALAL_STRATEGIES_FILE": str(tmp_path / "strategies.yaml"),
        "DALAL_API_KEY": KEY,
        "DALAL_CONSUMER_NAME": "engine-0",
        "DALAL_BUS_BLOCK_MS": "50",
        "DALAL_BUS_BATCH_SIZE": "5",
        "DALAL_LOG_FORMAT": "json",
        **replay_env(),
    }
    client = redis.Redis.from_url(redis_url)
    announce_safe(client)
    proc = service_processes.start("dalal_engine", env)
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.post(f"{proc.base_url}/engine/start", headers=auth).json()["running"] is True
    publish_bars(client)
    first = wait_until(lambda: place_orders(client), message="a PlaceOrder on orders.commands")
    proc.kill()  # SIGKILL right after the order went out
    ids = publish_bars(client)  # every bar delivered again while the engine is down
    proc = service_processes.start("dalal_engine", env)
    wait_until(lambda: consumed_all(client, ids[-1]), message="every bar consumed")

    orders = place_orders(client)
    signal = first[0].client_order_id
    assert {o.client_order_id for o in orders} == {signal}  # one signal, one order id
    assert all(o == first[0] for o in orders)  # re-emitted (if at all) identically
    status = httpx.get(f"{proc.base_url}/engine/status", headers=auth).json()
    assert status["running"] is True and status["open_intents"] == 1
    signals = httpx.get(f"{proc.base_url}/signals", headers=auth).json()
    assert [s["client_order_id"] for s in signals if s["approved"]] == [signal]
    assert "sma_cross" in {
        s["name"]
        for s in httpx.get(f"{proc.base_url}/strategies", headers=auth).json()["registered"]
    }
