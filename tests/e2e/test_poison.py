"""Poison on every consumed stream of the broker, portfolio and engine (issue 23), with the
services as real processes: entries of every bad kind (bytes that are not UTF-8, bad JSON, a
message that does not validate, a huge payload, an unknown type, a newer version, missing
fields), each stream's poison followed by a valid message. Every valid message is handled, every
poison entry is dead-lettered once per consuming group with the reason, nothing stays pending,
and every service stays ready."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from dalal_shared.bus import dlq_name, group_info
from dalal_shared.ids import new_id
from dalal_shared.messages import (
    Bar,
    Envelope,
    EquitySnapshot,
    KillSwitchReleased,
    Message,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    Tick,
)
from dalal_shared.streams import (
    MARKET_TICKS,
    ORDERS_COMMANDS,
    ORDERS_EVENTS,
    PORTFOLIO_EVENTS,
    SYSTEM_EVENTS,
    bars_stream,
)
from dalal_shared.testing import ServiceProcess, ServiceProcesses, wait_until

pytestmark = pytest.mark.slow

KEY = "poison-e2e-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
BARS = bars_stream("minute")
NOW = datetime(2026, 3, 3, 5, 0, tzinfo=UTC)
STRATEGY = """
strategies:
  - name: swing-poison
    strategy: swing
    interval: minute
    universe: [INFY]
"""

# which groups read which stream (the engine reads bars and ticks because its strategy does)
CONSUMERS = {
    ORDERS_COMMANDS: ("broker", "portfolio"),
    ORDERS_EVENTS: ("portfolio", "engine"),
    PORTFOLIO_EVENTS: ("engine",),
    SYSTEM_EVENTS: ("portfolio", "engine"),
    MARKET_TICKS: ("portfolio", "engine"),
    BARS: ("engine",),
}


def valid(stream: str) -> Message:
    return {
        ORDERS_COMMANDS: PlaceOrder(
            client_order_id="poison-after", symbol="INFY", side="BUY", quantity=1
        ),
        ORDERS_EVENTS: OrderFilled(
            client_order_id="poison-fill",
            broker_order_id="B1",
            trade_id="T-poison",
            symbol="INFY",
            side="BUY",
            product="CNC",
            quantity=3,
            price=Decimal("1500"),
            filled_at=NOW,
        ),
        PORTFOLIO_EVENTS: EquitySnapshot(
            equity=Decimal("100000"),
            cash=Decimal("100000"),
            realised_pnl=Decimal(0),
            unrealised_pnl=Decimal(0),
            open_positions=0,
            at=NOW,
        ),
        SYSTEM_EVENTS: KillSwitchReleased(released_by="poison-test"),
        MARKET_TICKS: Tick(
            instrument_token=408065, symbol="INFY", last_price=Decimal("1501"), exchange_ts=NOW
        ),
        BARS: Bar(
            symbol="INFY",
            interval="minute",
            start=NOW,
            open=Decimal("1500"),
            high=Decimal("1502"),
            low=Decimal("1499"),
            close=Decimal("1501"),
            volume=10,
        ),
    }[stream]


def poisons(stream: str) -> dict[str, dict[bytes, bytes]]:
    """Every kind of entry that is not a valid envelope, shaped like the stream's own."""
    good = {k.encode(): v.encode() for k, v in
            Envelope.wrap(valid(stream), source="poison").to_fields().items()}  # fmt: skip
    kind = good[b"type"]
    return {
        "non_utf8": {b"type": b"\xff\xfe", b"v": b"1", b"data": b"\xc3\x28"},
        "non_utf8_name": {**good, b"\xc3\x28": b"x"},
        "non_utf8_data": {**good, b"id": new_id().encode(), b"data": b'{"a": "\xff"}'},
        "bad_json": {**good, b"id": new_id().encode(), b"data": b"{not json"},
        "invalid_message": {**good, b"id": new_id().encode(), b"data": b'{"quantity": -1}'},
        "huge": {**good, b"id": new_id().encode(), b"data": b'"' + b"x" * 2_000_000 + b'"'},
        "unknown_type": {**good, b"type": b"NoSuchMessage"},
        "newer_version": {**good, b"v": b"99"},
        "missing_fields": {b"type": kind},
    }


BROKER_ENV = {"DALAL_KITE_API_KEY": "simkey", "DALAL_KITE_API_SECRET": "kite-secret-poison-987"}


@pytest.fixture
def services(
    redis_url: str, tmp_path: Path, service_processes: ServiceProcesses
) -> dict[str, ServiceProcess]:
    (tmp_path / "strategies.yaml").write_text(STRATEGY)
    common = {
        "DALAL_REDIS_URL": redis_url,
        "DALAL_API_KEY": KEY,
        "DALAL_LOG_FORMAT": "json",
        "DALAL_BUS_BLOCK_MS": "100",
    }
    return {
        name: service_processes.start(
            f"dalal_{name}",
            {**common, "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/{name}.sqlite3", **extra},
            name=name,
        )
        for name, extra in (
            ("broker", BROKER_ENV),
            ("portfolio", {}),
            ("engine", {"DALAL_STRATEGIES_FILE": str(tmp_path / "strategies.yaml")}),
        )
    }


def handled(proc: ServiceProcess, stream: str, group: str, kind: str) -> float:
    text = httpx.get(f"{proc.base_url}/metrics", headers=AUTH, timeout=10).text
    for line in text.splitlines():
        if (
            line.startswith("dalal_bus_messages_handled_total{")
            and f'stream="{stream}"' in line
            and f'group="{group}"' in line
            and f'type="{kind}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _newer_or_equal(a: str, b: str) -> bool:
    return tuple(map(int, a.split("-"))) >= tuple(map(int, b.split("-")))


def test_poison_of_every_kind_on_every_stream_is_dead_lettered_and_the_next_entry_handled(
    redis_url: str, services: dict[str, ServiceProcess]
) -> None:
    client = redis.Redis.from_url(redis_url)
    poison_ids: dict[str, dict[str, str]] = {}
    valid_ids: dict[str, str] = {}
    for stream in CONSUMERS:
        poison_ids[stream] = {
            name: client.xadd(stream, fields).decode() for name, fields in poisons(stream).items()
        }
        env = Envelope.wrap(valid(stream), source="poison-test")
        valid_ids[stream] = client.xadd(stream, env.to_fields()).decode()

    async def consumed(stream: str, group: str) -> bool:
        r = aioredis.Redis.from_url(redis_url)
        try:
            info = await group_info(r, stream, group)
        finally:
            await r.aclose()
        return (
            info is not None
            and info.pending == 0
            and _newer_or_equal(info.last_delivered_id, valid_ids[stream])
        )

    for stream, groups in CONSUMERS.items():
        kind = type(valid(stream)).__name__
        for group in groups:
            proc = services[group]
            wait_until(lambda s=stream, g=group: asyncio.run(consumed(s, g)), timeout=60,
                       message=f"{group} past the poison on {stream}")  # fmt: skip
            assert handled(proc, stream, group, kind) >= 1, (stream, group)
            records = [
                {k.decode(errors="replace"): v.decode(errors="replace") for k, v in f.items()}
                for _, f in client.xrange(dlq_name(stream))
            ]
            mine = {r["dlq_entry_id"]: r for r in records if r["dlq_group"] == group}
            for name, entry_id in poison_ids[stream].items():
                assert entry_id in mine, (stream, group, name)
                assert mine[entry_id]["dlq_reason"] == "undecodable", (stream, group, name)
            assert valid_ids[stream] not in mine
            # every record stays small: a huge payload is not copied whole
            assert all(len(v) <= 70_000 for r in records for v in r.values())

    # what a user sees: the command after the poison was answered by the broker ...
    def rejected() -> bool:
        for _, fields in client.xrange(ORDERS_EVENTS):
            try:
                env = Envelope.from_fields(fields)
            except Exception:
                continue
            if isinstance(env.message, OrderRejected) and env.message.client_order_id == (
                "poison-after"
            ):
                return True
        return False

    wait_until(rejected, timeout=60, message="the broker's answer to the valid command")
    # ... and the fill after the poison is in the ledger
    positions = httpx.get(f"{services['portfolio'].base_url}/positions", headers=AUTH).json()
    assert any(p["symbol"] == "INFY" and p["quantity"] == 3 for p in _rows(positions)), positions
    for name, proc in services.items():
        ready = httpx.get(f"{proc.base_url}/readyz", headers=AUTH, timeout=10)
        assert ready.status_code == 200, (name, ready.text)
    client.close()


def _rows(body: object) -> list[dict[str, object]]:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("positions", "items", "data"):
            if isinstance(body.get(key), list):
                return body[key]
    return []
