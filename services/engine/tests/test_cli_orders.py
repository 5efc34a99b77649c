"""`dalal buy` / `dalal sell`: orders by hand from the CLI take the engine's path (risk manager,
durable intent, outbox), as a user runs them: real `dalal` processes against kitesim, the
broker logged in to it, the portfolio and the engine, on a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from engine_stack import AUTH, KEY, Owners, common_env, start_owners

from dalal_shared.messages import Envelope, PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS
from dalal_shared.testing import ServiceProcess, ServiceProcesses, wait_until

pytestmark = pytest.mark.slow


def dalal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dalal_shared.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_env(owners: Owners, engine: ServiceProcess, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALAL_")}
    env["DALAL_VAR_DIR"] = str(tmp_path / "var")
    env["DALAL_API_KEY"] = KEY
    env["COLUMNS"] = "200"
    for name, proc in (("broker", owners.broker), ("portfolio", owners.portfolio)):
        env[f"DALAL_{name.upper()}_PORT"] = str(urlsplit(proc.base_url).port)
    env["DALAL_ENGINE_PORT"] = str(urlsplit(engine.base_url).port)
    return env


def placed(client: redis.Redis) -> list[PlaceOrder]:
    out = [Envelope.from_fields(f).message for _i, f in client.xrange(ORDERS_COMMANDS)]
    return [m for m in out if isinstance(m, PlaceOrder)]


def broker_order(owners: Owners, coid: str) -> dict[str, Any] | None:
    r = httpx.get(f"{owners.broker.base_url}/orders/{coid}", headers=AUTH, timeout=10)
    return r.json() if r.status_code == 200 else None


def test_buy_and_sell_from_the_cli_go_through_the_engines_checks_to_kitesim(
    redis_url: str, tmp_path: Path, service_processes: ServiceProcesses
) -> None:
    owners = start_owners(service_processes, redis_url, tmp_path)
    engine = service_processes.start(
        "dalal_engine",
        {
            **common_env(redis_url),
            **owners.engine_env(),
            "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/engine.sqlite3",
            "DALAL_CONSUMER_NAME": "engine-0",
        },
        name="engine",
    )
    wait_until(
        lambda: httpx.get(f"{engine.base_url}/engine/status", headers=AUTH).json()[
            "safety_state_known"
        ],
        message="the engine knows its safety state",
    )
    env = cli_env(owners, engine, tmp_path)
    client = redis.Redis.from_url(redis_url)
    sim = owners.kitesim.base_url
    assert httpx.post(f"{sim}/_sim/clock/advance", json={"seconds": 3600}, headers=AUTH)

    # bad values are named before anything is sent
    for args, named in (
        (("buy", "INFY", "0"), "quantity 0"),
        (("buy", "in fy!", "1"), "'in fy!'"),
        (("buy", "INFY", "1", "--price", "abc"), "'abc'"),
        (("buy", "INFY", "1", "--type", "LIMIT"), "--price"),
        (("sell", "INFY", "1", "--product", "NRML"), "'NRML'"),
    ):
        bad = dalal(env, *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert named in bad.stderr and "Traceback" not in bad.stderr
    # ten million shares at market: refused by the engine's risk manager, never sent
    huge = dalal(env, "buy", "INFY", "10000000", "--id", "cli-huge-1")
    assert huge.returncode == 1, huge.stderr
    assert "risk manager" in huge.stderr and "Traceback" not in huge.stderr
    intent = httpx.get(f"{engine.base_url}/engine/orders/cli-huge-1", headers=AUTH)
    assert intent.status_code == 404  # refused: no intent, no order
    assert broker_order(owners, "cli-huge-1") is None
    assert all(o.client_order_id != "cli-huge-1" for o in placed(client))

    # a small MIS buy goes to kitesim and fills; the same id again sends nothing new
    ok = dalal(env, "buy", "NSE:INFY", "2", "--product", "MIS", "--id", "cli-buy-1", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["client_order_id"] == "cli-buy-1"

    def filled(coid: str) -> bool:
        httpx.post(f"{sim}/_sim/clock/advance", json={"seconds": 60}, headers=AUTH)
        row = broker_order(owners, coid)
        return row is not None and row["status"] == "COMPLETE"

    wait_until(lambda: filled("cli-buy-1"), timeout=60, message="the CLI's buy filled")
    again = dalal(env, "buy", "NSE:INFY", "2", "--product", "MIS", "--id", "cli-buy-1")
    assert again.returncode == 0, again.stderr
    assert [o.client_order_id for o in placed(client)].count("cli-buy-1") == 1
    # and the sell closes it
    out = dalal(env, "sell", "INFY", "2", "--product", "MIS", "--id", "cli-sell-1")
    assert out.returncode == 0 and "cli-sell-1" in out.stdout, out.stderr
    wait_until(lambda: filled("cli-sell-1"), timeout=60, message="the CLI's sell filled")
    positions = httpx.get(f"{owners.broker.base_url}/positions", headers=AUTH).json()["net"]
    assert sum(p["quantity"] for p in positions if p["tradingsymbol"] == "INFY") == 0
