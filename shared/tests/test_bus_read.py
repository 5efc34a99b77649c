"""The consumer's read (issue 20): Redis's reply taken as sent, fields read by position.

A service must not be able to tell this read from redis-py's parsed one: entries written in
another field order, with an extra field or undecodable reach the handler or the DLQ exactly as
before, every read size is acknowledged in full, and a refused entry in a big read is the only
one dead-lettered. Against a real Redis, on the default client protocol and RESP2 and RESP3.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from dalal_shared.bus import (
    ConsumerConfig,
    Publisher,
    StreamConsumer,
    dlq_name,
    failures_key,
    group_info,
    wrap_fields,
)
from dalal_shared.errors import PermanentError
from dalal_shared.messages import Envelope, PlaceOrder

STREAM = "test.read"


async def poll(predicate: Callable[[], Awaitable[object]], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met before the deadline")


def order(coid: str) -> PlaceOrder:
    return PlaceOrder(client_order_id=coid, symbol="INFY", side="BUY", quantity=1)


def config(group: str, **overrides: object) -> ConsumerConfig:
    values: dict[str, object] = {
        "group": group,
        "consumer": "c1",
        "block_ms": 50,
        "retry_idle_ms": 30,
        "claim_idle_ms": 5_000,
        "maintenance_interval_s": 0.03,
    }
    values.update(overrides)
    return ConsumerConfig(**values)  # type: ignore[arg-type]


async def settled(redis: aioredis.Redis, group: str) -> bool:
    info = await group_info(redis, STREAM, group)
    return info is not None and info.pending == 0 and info.lag == 0


async def run_until_settled(redis: aioredis.Redis, consumer: StreamConsumer, group: str) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        await poll(lambda: settled(redis, group))
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=15)


@pytest.fixture(params=[None, 2, 3], ids=["default", "resp2", "resp3"])
async def client(request: pytest.FixtureRequest, redis_url: str) -> aioredis.Redis:
    kwargs = {} if request.param is None else {"protocol": request.param}
    redis = aioredis.Redis.from_url(redis_url, **kwargs)
    yield redis  # type: ignore[misc]
    await redis.aclose()


async def test_entries_written_by_hand_reach_the_handler_or_the_dlq_as_before(
    client: aioredis.Redis,
) -> None:
    published = await Publisher(client, source="t").publish(STREAM, order("plain"))
    _, fields = wrap_fields(order("reordered"), source="hand", corr="chain-1")
    await client.xadd(STREAM, dict(reversed(list(fields.items()))))  # type: ignore[arg-type]
    _, fields = wrap_fields(order("extra"), source="hand")
    await client.xadd(STREAM, {**fields, "note": "written by a script"})  # type: ignore[arg-type]
    _, fields = wrap_fields(order("broken"), source="hand")
    broken = {**fields, "data": '{"client_order_id": '}
    await client.xadd(STREAM, broken)  # type: ignore[arg-type]
    seen: list[Envelope] = []

    async def handle(env: Envelope) -> None:
        seen.append(env)

    await run_until_settled(client, StreamConsumer(client, config("g"), {STREAM: handle}), "g")
    assert [e.message.client_order_id for e in seen] == ["plain", "reordered", "extra"]
    assert seen[0] == published
    assert seen[1].corr == "chain-1" and seen[1].source == "hand"
    assert all(e.ts.tzinfo is not None and e.ts <= datetime.now(UTC) for e in seen)
    [(_, record)] = await client.xrange(dlq_name(STREAM))
    text = {_str(k): _str(v) for k, v in record.items()}
    assert text["dlq_reason"] == "undecodable"
    assert text["data"] == broken["data"] and text["id"] == broken["id"]


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize("n", [1, 15, 16, 2_500])
async def test_every_read_size_is_handled_once_and_acknowledged(
    client: aioredis.Redis, n: int
) -> None:
    await Publisher(client, source="t").publish_many(
        STREAM, [order(f"o-{i}") for i in range(n)], atomic=True
    )
    seen: list[str] = []

    async def handle(env: Envelope) -> None:
        seen.append(env.message.client_order_id)

    consumer = StreamConsumer(client, config("g", batch_size=n), {STREAM: handle})
    await run_until_settled(client, consumer, "g")
    assert seen == [f"o-{i}" for i in range(n)]
    info = await group_info(client, STREAM, "g")
    assert info is not None and info.pending == 0
    assert await client.xlen(dlq_name(STREAM)) == 0


async def test_a_refused_entry_in_a_big_read_is_the_only_one_dead_lettered(
    client: aioredis.Redis,
) -> None:
    envelopes = await Publisher(client, source="t").publish_many(
        STREAM, [order(f"o-{i}") for i in range(40)], atomic=True
    )
    seen: list[str] = []

    async def handle(env: Envelope) -> None:
        if env.message.client_order_id == "o-17":
            raise PermanentError("refused", code="bad_order")
        seen.append(env.message.client_order_id)

    consumer = StreamConsumer(client, config("g", batch_size=40), {STREAM: handle})
    await run_until_settled(client, consumer, "g")
    assert seen == [f"o-{i}" for i in range(40) if i != 17]
    [(_, record)] = await client.xrange(dlq_name(STREAM))
    text = {_str(k): _str(v) for k, v in record.items()}
    assert text["id"] == envelopes[17].id and text["dlq_reason"] == "permanent"
    assert text["dlq_lossless"] == "1"


async def test_the_retry_step_leaves_a_read_the_read_loop_has_not_handled_yet(
    aredis: aioredis.Redis,
) -> None:
    """Entries read by this consumer and still waiting for the handling lock past
    `retry_idle_ms` are not taken by the retry step (that handled them twice); an entry whose
    handler failed is."""
    await Publisher(aredis, source="t").publish_many(
        STREAM, [order(f"o-{i}") for i in range(3)], atomic=True
    )
    seen: list[str] = []

    async def handle(env: Envelope) -> None:
        seen.append(env.message.client_order_id)

    consumer = StreamConsumer(aredis, config("g", retry_idle_ms=30), {STREAM: handle})
    await aredis.xgroup_create(STREAM, "g", id="0")
    # what the read loop's XREADGROUP did, its batch not handled yet
    [(_, entries)] = await aredis.xreadgroup("g", "c1", {STREAM: ">"}, count=10)

    async def idle() -> bool:
        rows = await aredis.xpending_range(STREAM, "g", "-", "+", 10, "c1", idle=30)
        return len(rows) == 3

    await poll(idle)
    await consumer._retry_own_failures(STREAM)
    assert seen == []
    assert (await aredis.xpending(STREAM, "g"))["pending"] == 3
    # the handler failed on the second one before: it is handed again, and only it
    await aredis.hincrby(failures_key(STREAM, "g"), entries[1][0].decode(), 1)
    await consumer._retry_own_failures(STREAM)
    assert seen == ["o-1"]
    assert (await aredis.xpending(STREAM, "g"))["pending"] == 2
