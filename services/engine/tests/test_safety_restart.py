"""The engine's safety state survives a SIGKILL: it comes from its owners (the broker's kill
switch and session, the portfolio's equity) before anything is approved.

Real processes on a real Redis: kitesim, the broker logged in to it, the portfolio, and the
engine. The kill switch is engaged at the broker; the engine hears it on the bus; it is
SIGKILLed (the event is consumed and acknowledged: the restarted engine will not hear it
again) and restarted; bars that would make entries are refused by the engine itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from engine_fixtures import CONFIG, infy_bars
from engine_stack import AUTH, common_env, start_owners

from dalal_shared.messages import Envelope, PlaceOrder, RiskDecided
from dalal_shared.streams import ENGINE_DECISIONS, ORDERS_COMMANDS
from dalal_shared.testing import ServiceProcesses, wait_until

pytestmark = pytest.mark.slow
STREAM = "market.bars.day"


def messages(client: redis.Redis, stream: str, kind: type) -> list[Any]:
    out = [Envelope.from_fields(f).message for _id, f in client.xrange(stream)]
    return [m for m in out if isinstance(m, kind)]


def consumed(client: redis.Redis, last_id: bytes) -> bool:
    for group in client.xinfo_groups(STREAM):
        if group["name"] == b"engine":
            return group["last-delivered-id"] == last_id and group["pending"] == 0
    return False


def test_a_restarted_engine_refuses_entries_while_the_kill_switch_is_engaged(
    redis_url: str, tmp_path: Path, service_processes: ServiceProcesses
) -> None:
    owners = start_owners(service_processes, redis_url, tmp_path)
    (tmp_path / "strategies.yaml").write_text(CONFIG)
    env = {
        **common_env(redis_url),
        **owners.engine_env(),
        "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/engine.sqlite3",
        "DALAL_STRATEGIES_FILE": str(tmp_path / "strategies.yaml"),
        "DALAL_MARKET_CLOCK": "exchange",  # replayed bars of 2021
        "DALAL_CONSUMER_NAME": "engine-0",
    }
    client = redis.Redis.from_url(redis_url)
    engine = service_processes.start("dalal_engine", env, name="engine")

    def status() -> dict[str, Any]:
        return httpx.get(f"{engine.base_url}/engine/status", headers=AUTH, timeout=10).json()

    # the state comes from its owners: the portfolio's equity, not the engine's own default
    wait_until(lambda: status()["safety_state_known"], message="safety state known", timeout=60)
    portfolio = httpx.get(f"{owners.portfolio.base_url}/portfolio", headers=AUTH).json()
    first = status()
    assert first["equity_rupees"] == f"{float(portfolio['equity']):.2f}" == "250000.00"
    assert first["session_valid"] is True and first["kill_switch"] is False
    assert httpx.post(f"{engine.base_url}/engine/start", headers=AUTH).json()["running"]

    r = httpx.post(
        f"{owners.broker.base_url}/kill-switch/engage", json={"reason": "drill"}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    wait_until(lambda: status()["kill_switch"], message="the engine heard the kill switch")
    engine.kill()  # SIGKILL: the KillSwitchEngaged entry was acknowledged, it comes no more

    engine = service_processes.start("dalal_engine", env, name="engine")
    restarted = status()
    assert restarted["running"] is True  # the mode survives; the safety state is asked for
    assert restarted["kill_switch"] is True or restarted["safety_state_known"] is False
    wait_until(lambda: status()["safety_state_known"], message="safety state known again")
    pipe = client.pipeline(transaction=False)
    for bar in infy_bars():  # bars on which sma_cross enters (test_live shows it does)
        pipe.xadd(STREAM, Envelope.wrap(bar, source="test").to_fields())
    last = pipe.execute()[-1]
    wait_until(lambda: consumed(client, last), message="every bar consumed", timeout=60)

    decisions = messages(client, ENGINE_DECISIONS, RiskDecided)
    entries = [d for d in decisions if d.action == "ENTER"]
    assert entries, "the bars gave entry signals"
    assert not any(d.approved for d in entries)
    assert {d.reason for d in entries} == {"kill_switch"}  # from the broker, after the restart
    assert messages(client, ORDERS_COMMANDS, PlaceOrder) == []
    after = status()
    assert after["kill_switch"] is True and after["kill_switch_reason"] == "drill"
    assert after["safety_state_known"] is True
