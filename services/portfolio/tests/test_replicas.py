"""Two portfolio replicas on one ledger database (as the Kubernetes overlays may run them):
exactly one writes (the lease holder consumes, keeps the book, is ready); the other is a
standby that is not ready and applies nothing. SIGKILL the writer mid-stream: the standby
takes over, reloads the book from the database and ends exact to the paisa (cash, positions,
round trips) against one book fed every fill, where two writers once disagreed by lakhs."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest
import redis

from dalal_portfolio.ledger import Book
from dalal_shared.streams import ORDERS_EVENTS
from dalal_shared.testing import ServiceProcess, ServiceProcesses, bearer, wait_until

from .test_process import KEY, as_fill, fills_applied, proc_env, publish, recorded_fills

__all__ = ["proc_env"]  # the fixture, shared with test_process

pytestmark = pytest.mark.slow


def ready(proc: ServiceProcess) -> int:
    return httpx.get(f"{proc.base_url}/readyz", timeout=5).status_code


def writer_gauge(proc: ServiceProcess) -> float:
    for line in httpx.get(f"{proc.base_url}/metrics", timeout=5).text.splitlines():
        if line.startswith("dalal_portfolio_ledger_writer "):
            return float(line.split()[1])
    return -1.0


def test_one_writer_and_a_standby_that_takes_over_exactly(
    redis_url: str,
    proc_env: dict[str, str],
    database_url: str,
    tmp_path: Path,
    service_processes: ServiceProcesses,
) -> None:
    """On a SQLite file (one box) and on PostgreSQL (the replicas' shared database)."""
    env = {**proc_env, "DALAL_DATABASE_URL": database_url, "DALAL_LEASE_TTL_SECONDS": "2"}
    client = redis.Redis.from_url(redis_url)
    messages = recorded_fills(80)
    first, second = messages[:100], messages[100:]
    a = service_processes.start("dalal_portfolio", {**env, "DALAL_CONSUMER_NAME": "portfolio-a"})
    wait_until(lambda: ready(a) == 200, message="the first replica writes")
    b = service_processes.start("dalal_portfolio", {**env, "DALAL_CONSUMER_NAME": "portfolio-b"})
    wait_until(lambda: httpx.get(f"{b.base_url}/healthz").status_code == 200, message="b up")
    assert ready(b) == 503 and writer_gauge(b) == 0.0  # a standby: the Service sends it nothing
    body = httpx.get(f"{b.base_url}/readyz").json()
    assert "standby" in str(body)

    publish(client, first)
    wait_until(lambda: fills_applied(a) == len(first), message="the writer applied them all")
    assert fills_applied(b) == 0  # the standby consumed nothing
    a.kill()  # SIGKILL the writer
    publish(client, second + first[::9])  # more fills and redeliveries while it is gone
    # what a dead writer read and never acknowledged (a kill between its commit and its ack):
    # pending on its name; the successor takes them over once the lease lapsed (2 s here),
    # not after the bus's 30 s claim idle, so the wait below (20 s) fails if it waits for that
    unacked = client.xreadgroup("portfolio", "portfolio-a", {ORDERS_EVENTS: ">"}, count=30)
    assert len(unacked[0][1]) == 30
    wait_until(lambda: ready(b) == 200, timeout=30, message="the standby takes over")
    wait_until(lambda: fills_applied(b) == len(messages), message="every fill in b's book")
    # the book is written before the read is acknowledged: the last entries (the repeated
    # fills, applied as no-ops) may still be in flight when the count is reached
    wait_until(
        lambda: client.xpending(ORDERS_EVENTS, "portfolio")["pending"] == 0,
        message="every entry acknowledged",
    )

    expected = Book(D("500000"))
    for m in messages:
        expected.apply(as_fill(m))
    summary = httpx.get(f"{b.base_url}/portfolio", headers=bearer(KEY)).json()
    assert D(summary["cash"]) == expected.cash()
    got = httpx.get(
        f"{b.base_url}/positions", params={"include_closed": "true"}, headers=bearer(KEY)
    ).json()["positions"]
    assert [(p["symbol"], p["quantity"], D(p["realised_pnl_net"])) for p in got] == [
        (p.symbol, p.quantity, p.realised_net) for p in expected.positions()
    ]
    trips = httpx.get(f"{b.base_url}/trades", headers=bearer(KEY)).json()["trades"]
    assert len(trips) == len(expected.round_trips())
    client.close()
