"""The trading-day CLI (`dalal orders`, `positions`, `pnl`, `kill-switch`, `engine`, `quote`)
as a user runs it: real `dalal` processes against the whole stack started as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from dalal_shared.bus import Publisher
from dalal_shared.messages import Tick
from dalal_shared.streams import MARKET_TICKS
from dalal_shared.testing import free_port, wait_until

from .conftest import API_KEY, Stack

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _env(stack: Stack | None, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALAL_")}
    env["DALAL_VAR_DIR"] = str(tmp_path / "var")
    env["DALAL_API_KEY"] = API_KEY
    env["COLUMNS"] = "200"
    for name in ("broker", "data", "portfolio", "engine"):
        port = urlsplit(stack.url(name)).port if stack else free_port()
        env[f"DALAL_{name.upper()}_PORT"] = str(port)
    return env


def dalal(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dalal_shared.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


async def _publish_tick(redis_url: str, symbol: str, price: Decimal) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    tick = Tick(instrument_token=1, symbol=symbol, last_price=price, exchange_ts=datetime.now(UTC))
    await Publisher(client, source="test").publish(MARKET_TICKS, tick)
    await client.aclose()


@pytest.mark.slow  # some 40 s: a dozen `dalal` processes, each about 2 s to start
@pytest.mark.timeout(400)  # more than 120 s where a `dalal` process takes 5 s to start
def test_trading_day_commands_against_a_running_stack(stack: Stack, tmp_path: Path) -> None:
    env = _env(stack, tmp_path)
    # an order the broker rejects (no Kite session): listed, shown, not open
    order = {"client_order_id": "cli-INFY-1", "symbol": "INFY", "side": "BUY", "quantity": 3}
    assert httpx.post(f"{stack.url('broker')}/orders", headers=AUTH, json=order).is_success
    wait_until(
        lambda: any(
            o["client_order_id"] == "cli-INFY-1"
            for o in json.loads(dalal(env, "orders", "--json").stdout)
        ),
        message="the order in `dalal orders`",
    )
    table = dalal(env, "orders")
    assert table.returncode == 0 and "cli-INFY-1" in table.stdout
    open_orders = json.loads(dalal(env, "orders", "--open", "--json").stdout)
    assert all(o["client_order_id"] != "cli-INFY-1" for o in open_orders)
    one = dalal(env, "order", "cli-INFY-1", "--json")
    assert one.returncode == 0 and json.loads(one.stdout)["symbol"] == "INFY"
    missing = dalal(env, "order", "no-such-order")
    assert missing.returncode == 2 and "no-such-order" in missing.stderr
    assert "Traceback" not in missing.stderr
    # a cancel the broker refuses (the order is not open) is a business failure
    refused = dalal(env, "cancel", "cli-INFY-1")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    bad = dalal(env, "modify", "cli-INFY-1", "--price", "abc")
    assert bad.returncode == 2 and "'abc'" in bad.stderr

    positions = dalal(env, "positions", "--json")
    assert positions.returncode == 0 and json.loads(positions.stdout) == []
    pnl = dalal(env, "pnl", "--json")
    assert pnl.returncode == 0 and json.loads(pnl.stdout)["realised_net"] is not None
    today = json.loads(dalal(env, "pnl", "--today", "--json").stdout)
    assert today["round_trips"] == 0 and today["realised_net"] == "0"
    bad_date = dalal(env, "pnl", "--from", "2026-13-01")
    assert bad_date.returncode == 2 and "2026-13-01" in bad_date.stderr

    # kill switch: on asks first (no answer: nothing changes), --yes engages, off releases
    declined = dalal(env, "kill-switch", "on", "--reason", "cli test", stdin="n\n")
    assert declined.returncode == 1
    assert json.loads(dalal(env, "kill-switch", "status", "--json").stdout)["engaged"] is False
    on = dalal(env, "kill-switch", "on", "--reason", "cli test", "--yes")
    assert on.returncode == 0 and "ENGAGED (cli test" in on.stdout
    state = httpx.get(f"{stack.url('broker')}/kill-switch", headers=AUTH).json()
    assert state["engaged"] is True and state["reason"] == "cli test"
    off = dalal(env, "kill-switch", "off", "--yes")
    assert off.returncode == 0 and "kill switch: off" in off.stdout

    # engine: pause and resume change the mode the engine reports
    paused = json.loads(dalal(env, "engine", "pause", "--json").stdout)
    assert (
        paused["mode"]
        == httpx.get(f"{stack.url('engine')}/engine/status", headers=AUTH).json()["mode"]
    )
    assert "paus" in paused["mode"].lower()
    resumed = dalal(env, "engine", "resume", "--json")
    assert resumed.returncode == 0 and "paus" not in json.loads(resumed.stdout)["mode"].lower()
    status = dalal(env, "engine", "status")
    assert status.returncode == 0 and "engine:" in status.stdout
    listed = dalal(env, "strategies", "list", "--json")
    assert listed.returncode == 0 and "registered" in json.loads(listed.stdout)
    unknown = dalal(env, "strategies", "disable", "no-such-strategy")
    assert unknown.returncode == 2 and "'no-such-strategy'" in unknown.stderr

    # quote: the last tick the broker saw; no tick and no Kite session -> missing, exit 1
    asyncio.run(_publish_tick(stack.redis_url, "TCS", Decimal("3512.45")))
    q = dalal(env, "quote", "TCS", "NSE:INFY", "--json")
    assert q.returncode == 1
    assert json.loads(q.stdout) == {
        "quotes": [{"exchange": "NSE", "symbol": "TCS", "last_price": "3512.45", "source": "tick"}],
        "missing": ["NSE:INFY"],
    }
    shown = dalal(env, "quote", "tcs")
    assert shown.returncode == 0 and "3512.45" in shown.stdout and "tick" in shown.stdout
    # the route names a malformed instrument and refuses too many at once
    bad = httpx.get(f"{stack.url('broker')}/quote", params={"symbols": "INFY,in fy!"}, headers=AUTH)
    assert bad.status_code == 422 and "'IN FY!'" in bad.json()["message"]
    many = ",".join(f"S{i}" for i in range(51))
    too_many = httpx.get(f"{stack.url('broker')}/quote", params={"symbols": many}, headers=AUTH)
    assert too_many.status_code == 422 and "at most 50" in too_many.json()["message"]
    bad_symbol = dalal(env, "quote", "in fy!")
    assert bad_symbol.returncode == 2 and "'IN FY!'" in bad_symbol.stderr


def test_unreachable_services_exit_3_with_one_line(tmp_path: Path) -> None:
    env = _env(None, tmp_path)
    for args in (
        ("orders",),
        ("positions",),
        ("pnl",),
        ("kill-switch", "status"),
        ("quote", "INFY"),
    ):
        done = dalal(env, *args)
        assert done.returncode == 3, (args, done.stderr)
        assert "not reachable at http://127.0.0.1:" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    engine = dalal(env, "engine", "status")
    assert engine.returncode == 3 and "engine is not reachable" in engine.stderr


def test_status_shows_the_trading_state_at_a_glance(stack: Stack, tmp_path: Path) -> None:
    env = _env(stack, tmp_path)
    engaged = httpx.post(
        f"{stack.url('broker')}/kill-switch/engage", headers=AUTH, json={"reason": "status test"}
    )
    assert engaged.is_success
    try:
        done = dalal(env, "status", "--json")
        state = json.loads(done.stdout)
        for name in ("broker", "data", "portfolio", "engine"):
            assert state["services"][name]["ready"] is True
        assert state["broker"]["session"]["valid"] is False
        assert state["broker"]["kill_switch"]["engaged"] is True
        assert state["engine"]["mode"]
        # no workers run beside this stack: shown as down, not hidden
        assert state["workers"]["engine-worker"]["up"] is False
        # no Kite session: neither book could be reconciled yet
        assert state["reconcile"]["broker"] == {"at": None, "breaks": None}
        shown = " ".join(dalal(env, "status").stdout.split())
        assert "session: not valid" in shown
        assert "kill switch: ENGAGED (status test)" in shown
        assert f"engine: {state['engine']['mode']}" in shown
        assert "engine-worker DOWN" in shown
        assert "last reconcile (broker): none yet" in shown
    finally:
        httpx.post(f"{stack.url('broker')}/kill-switch/release", headers=AUTH)
