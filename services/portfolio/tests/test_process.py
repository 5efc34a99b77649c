"""The portfolio process SIGKILLed mid-stream and restarted: nothing counted twice or missed."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest
import redis

from dalal_portfolio.ledger import Book, Fill
from dalal_shared.messages import Envelope, OrderFilled
from dalal_shared.streams import ORDERS_EVENTS, PORTFOLIO_EVENTS
from dalal_shared.testing import ServiceProcess, ServiceProcesses, bearer, wait_until
from dalal_shared.timeutil import IST

pytestmark = pytest.mark.slow
START = datetime(2025, 3, 3, 9, 20, tzinfo=IST)
SYMBOLS = ("INFY", "TCS", "SBIN", "ITC")


def recorded_fills(n: int) -> list[OrderFilled]:
    """Scale-ins and partial exits over four symbols; every order fills in two trades."""
    out = []
    held = dict.fromkeys(SYMBOLS, 0)
    for i in range(n):
        symbol = SYMBOLS[i % 4]
        side = "BUY" if held[symbol] < 20 or (i // 4) % 3 == 0 else "SELL"
        qty = 10
        held[symbol] += qty if side == "BUY" else -qty
        for leg in (0, 1):
            out.append(
                OrderFilled(
                    client_order_id=f"c{i}",
                    broker_order_id=f"b{i}",
                    trade_id=f"T{i:05d}{leg}",
                    symbol=symbol,
                    side=side,
                    product="CNC",
                    quantity=qty // 2,
                    price=D(100 + (i * 7) % 23) + D(leg) / 4,
                    filled_at=START + timedelta(minutes=5 * i, seconds=leg),
                )
            )
    return out


def as_fill(m: OrderFilled) -> Fill:
    return Fill(m.trade_id, m.client_order_id, m.broker_order_id, m.exchange, m.symbol, m.side,
                m.product, m.quantity, m.price, m.filled_at)  # fmt: skip


def publish(client: redis.Redis, messages: list[OrderFilled]) -> None:
    pipe = client.pipeline(transaction=False)
    for m in messages:
        pipe.xadd(ORDERS_EVENTS, Envelope.wrap(m, source="test").to_fields())
    pipe.execute()


KEY = "process-test-key-0123456789"


@pytest.fixture
def proc_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DALAL_REDIS_URL": redis_url,
        "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3",
        "DALAL_INITIAL_CAPITAL_RUPEES": "500000",
        "DALAL_API_KEY": KEY,
        "DALAL_CONSUMER_NAME": "portfolio-0",
        "DALAL_BUS_BLOCK_MS": "50",
        "DALAL_BUS_BATCH_SIZE": "10",
        "DALAL_OUTBOX_INTERVAL_SECONDS": "0.05",
        "DALAL_EQUITY_SNAPSHOT_INTERVAL_SECONDS": "3600",
        "DALAL_LOG_FORMAT": "json",
    }


def fills_applied(proc: ServiceProcess) -> int:
    return httpx.get(f"{proc.base_url}/portfolio", headers=bearer(KEY), timeout=2).json()[
        "fills_applied"
    ]


def test_sigkill_mid_stream_then_restart(
    redis_url: str, proc_env: dict[str, str], tmp_path: Path, service_processes: ServiceProcesses
) -> None:
    client = redis.Redis.from_url(redis_url)
    messages = recorded_fills(100)
    first, second = messages[:120], messages[120:]
    proc = service_processes.start("dalal_portfolio", proc_env)
    publish(client, first)
    wait_until(lambda: fills_applied(proc) >= 10, message="first fills applied")
    proc.kill()  # SIGKILL, in the middle of the stream
    publish(client, second + first[::7])  # more fills and redeliveries while it is down
    proc = service_processes.start("dalal_portfolio", proc_env)
    wait_until(lambda: fills_applied(proc) == len(messages), message="every fill applied")

    expected = Book(D("500000"))
    for m in messages:
        expected.apply(as_fill(m))
    got = httpx.get(
        f"{proc.base_url}/positions", params={"include_closed": "true"}, headers=bearer(KEY)
    ).json()
    assert [
        (p["symbol"], p["quantity"], D(p["realised_pnl_net"]), D(p["charges"]))
        for p in got["positions"]
    ] == [(p.symbol, p.quantity, p.realised_net, p.charges) for p in expected.positions()]
    summary = httpx.get(f"{proc.base_url}/portfolio", headers=bearer(KEY)).json()
    assert D(summary["cash"]) == expected.cash()
    assert client.xlen(f"dlq.{ORDERS_EVENTS}") == 0
    # every closed round trip was announced at least once on portfolio.events
    wait_until(
        lambda: sum(
            1 for _, f in client.xrange(PORTFOLIO_EVENTS) if f[b"type"] == b"PositionClosed"
        ) >= len(expected.round_trips()),
        message="PositionClosed events published",
    )  # fmt: skip
    equity = float(expected.valuation({}).equity)

    def gauge(name: str) -> float | None:
        for line in httpx.get(f"{proc.base_url}/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    wait_until(lambda: gauge("dalal_portfolio_equity_rupees") == equity, message="equity gauge")
    assert gauge("dalal_portfolio_open_positions") == len(expected.positions(open_only=True))
    client.close()
