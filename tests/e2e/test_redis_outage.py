"""A Redis SIGKILL and restart with every service running (issue 23): `/readyz` is red during
the outage and green after it, and without any service restart the broker answers a new
command, the data feed publishes new ticks from kitesim's ticker (portfolio and engine handle
them) and the portfolio books a new fill. Real processes, a real redis-server with AOF (as
`dalal run` runs it) killed with SIGKILL and started again on its port, kitesim over HTTP and
WebSocket."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis

from dalal_kitesim.testing import API_KEY as KITE_KEY
from dalal_kitesim.testing import Kitesim
from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.messages import Envelope, OrderFilled, OrderRejected, PlaceOrder
from dalal_shared.streams import MARKET_TICKS, ORDERS_COMMANDS, ORDERS_EVENTS
from dalal_shared.testing import ServiceProcess, ServiceProcesses, wait_until

pytestmark = pytest.mark.slow

KEY = "outage-e2e-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
STRATEGY = """
strategies:
  - name: swing-outage
    strategy: swing
    interval: minute
    universe: [INFY]
"""

BROKER_ENV = {
    "DALAL_KITE_API_KEY": "simkey",
    "DALAL_KITE_API_SECRET": "kite-secret-outage-987",
    "DALAL_LEASE_TTL_SECONDS": "3",
}
FEED_ENV = {
    "DALAL_KITE_API_KEY": KITE_KEY,
    "DALAL_FEED_ENABLED": "true",
    "DALAL_FEED_SYMBOLS": "NSE:INFY",
    "DALAL_FEED_WATCH_ALWAYS": "true",
    "DALAL_FEED_STALE_SECONDS": "600",
    "DALAL_FEED_LEASE_SECONDS": "3",
}


@pytest.fixture
def kitesim() -> Iterator[Kitesim]:
    server = Kitesim(kitesim_token_expiry=False).start()
    yield server
    server.stop()


def status(proc: ServiceProcess, path: str) -> int:
    try:
        return httpx.get(f"{proc.base_url}{path}", headers=AUTH, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def handled(proc: ServiceProcess, stream: str, kind: str) -> float:
    text = httpx.get(f"{proc.base_url}/metrics", headers=AUTH, timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("dalal_bus_messages_handled_total{")
            and f'stream="{stream}"' in line
            and f'type="{kind}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rejected(client: redis.Redis, client_order_id: str) -> bool:
    for _, fields in client.xrange(ORDERS_EVENTS):
        env = Envelope.from_fields(fields)
        if isinstance(env.message, OrderRejected) and env.message.client_order_id == (
            client_order_id
        ):
            return True
    return False


def test_every_service_recovers_from_a_redis_kill_without_a_restart(
    tmp_path: Path, kitesim: Kitesim, service_processes: ServiceProcesses
) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis", port, appendonly=True)
    server.start()
    url = server.url
    (tmp_path / "strategies.yaml").write_text(STRATEGY)
    common = {
        "DALAL_REDIS_URL": url,
        "DALAL_API_KEY": KEY,
        "DALAL_LOG_FORMAT": "json",
        "DALAL_BUS_BLOCK_MS": "100",
    }

    def db(name: str) -> dict[str, str]:
        return {"DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/{name}.sqlite3"}

    procs = {
        "broker": service_processes.start(
            "dalal_broker", {**common, **db("broker"), **BROKER_ENV}, name="broker"
        ),
        "portfolio": service_processes.start(
            "dalal_portfolio", {**common, **db("portfolio")}, name="portfolio"
        ),
        "engine": service_processes.start(
            "dalal_engine",
            {**common, **db("engine"), "DALAL_STRATEGIES_FILE": str(tmp_path / "strategies.yaml")},
            name="engine",
        ),
        "data": service_processes.start(
            "dalal_data",
            {
                **common,
                **FEED_ENV,
                "DALAL_CACHE_DIR": str(tmp_path / "cache"),
                "DALAL_KITE_ROOT_URL": kitesim.root,
                "DALAL_KITE_ACCESS_TOKEN": kitesim.access_token(),
            },
            name="data",
        ),
    }
    pids = {name: p.process.pid for name, p in procs.items() if p.process is not None}
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        for name, proc in procs.items():
            wait_until(lambda p=proc: status(p, "/readyz") == 200, timeout=90,
                       message=f"{name} ready before the outage")  # fmt: skip

        def feed() -> dict[str, object]:
            return httpx.get(f"{procs['data'].base_url}/feed", headers=AUTH, timeout=5).json()

        wait_until(lambda: feed().get("connections") == 1, timeout=60, message="feed connected")
        if not kitesim.control("/state", method="GET")["in_session"]:
            kitesim.advance(ticks=1)  # on to the next open
        kitesim.advance(ticks=2)
        wait_until(lambda: client.xlen(MARKET_TICKS) > 0, timeout=60, message="first ticks")

        # ---------------------------------------------------------------- the outage
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        for name, proc in procs.items():
            wait_until(lambda p=proc: status(p, "/readyz") == 503, timeout=60,
                       message=f"{name} not ready during the outage")  # fmt: skip
        server.start()  # same port, same AOF

        for name, proc in procs.items():
            wait_until(lambda p=proc: status(p, "/readyz") == 200, timeout=120,
                       message=f"{name} ready again after the outage")  # fmt: skip

        # ---------------------------------------------------------------- a new command
        command = PlaceOrder(client_order_id="after-outage", symbol="INFY", side="BUY", quantity=1)
        client.xadd(ORDERS_COMMANDS, Envelope.wrap(command, source="test").to_fields())
        wait_until(lambda: rejected(client, "after-outage"), timeout=90,
                   message="the broker answers a command sent after the outage")  # fmt: skip

        # ---------------------------------------------------------------- a new tick
        wait_until(lambda: feed().get("connections") == 1 and feed().get("holder"), timeout=90,
                   message="the feed holds its lease and ticker again")  # fmt: skip
        ticks_before = client.xlen(MARKET_TICKS)
        seen = {n: handled(procs[n], MARKET_TICKS, "Tick") for n in ("portfolio", "engine")}

        def new_ticks() -> bool:
            kitesim.advance(ticks=1)
            return client.xlen(MARKET_TICKS) > ticks_before

        wait_until(new_ticks, timeout=90, interval=0.5, message="ticks after the outage")
        for n in ("portfolio", "engine"):
            wait_until(lambda n=n: handled(procs[n], MARKET_TICKS, "Tick") > seen[n], timeout=90,
                       message=f"{n} handles ticks after the outage")  # fmt: skip
        assert feed()["stale"] is False

        # ---------------------------------------------------------------- a new fill
        fill = OrderFilled(
            client_order_id="fill-after", broker_order_id="B9", trade_id="T-after-outage",
            symbol="INFY", side="BUY", product="CNC", quantity=4, price=Decimal("1500"),
            filled_at=datetime.now(UTC),
        )  # fmt: skip
        client.xadd(ORDERS_EVENTS, Envelope.wrap(fill, source="test").to_fields())

        def booked() -> bool:
            body = httpx.get(f"{procs['portfolio'].base_url}/positions", headers=AUTH).json()
            rows = body if isinstance(body, list) else body.get("positions", [])
            return any(r["symbol"] == "INFY" and r["quantity"] == 4 for r in rows)

        wait_until(booked, timeout=90, message="the portfolio books a fill after the outage")

        # nothing was restarted: the same processes did all of it
        for name, proc in procs.items():
            assert proc.process is not None and proc.process.poll() is None, name
            assert proc.process.pid == pids[name], name
    finally:
        client.close()
        service_processes.stop_all()
        server.stop()
