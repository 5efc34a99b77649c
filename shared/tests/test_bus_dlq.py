"""The DLQ rule and the dead-letter hook against a real Redis.

Redeliveries caused by a dying consumer are not failures (issue 14): only handler failures with
the handler alive count toward `max_deliveries`; an entry that keeps killing its consumer meets
the much higher `max_crash_deliveries` bound. The hook runs after the DLQ write and before the
ack; when it raises, the entry stays pending and only the hook runs again.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from dalal_shared.bus import (
    ConsumerConfig,
    DeadLetter,
    Publisher,
    StreamConsumer,
    dlq_name,
    failures_key,
    group_info,
)
from dalal_shared.errors import PermanentError
from dalal_shared.messages import CancelOrder, Envelope, PlaceOrder

STREAM = "test.dlq"


async def poll(predicate: Callable[[], Awaitable[object]], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met before the deadline")


async def settled(redis: aioredis.Redis, group: str) -> bool:
    info = await group_info(redis, STREAM, group)
    return info is not None and info.pending == 0 and info.lag == 0


class Running:
    def __init__(self, consumer: StreamConsumer):
        self.consumer = consumer
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StreamConsumer:
        self.task = asyncio.create_task(self.consumer.run())
        return self.consumer

    async def __aexit__(self, *_exc: object) -> None:
        self.consumer.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=15)


def fast_config(group: str, consumer: str, **overrides: object) -> ConsumerConfig:
    values: dict[str, object] = {
        "group": group,
        "consumer": consumer,
        "block_ms": 50,
        "retry_idle_ms": 30,
        "claim_idle_ms": 50,
        "maintenance_interval_s": 0.03,
    }
    values.update(overrides)
    return ConsumerConfig(**values)  # type: ignore[arg-type]


def order(coid: str) -> PlaceOrder:
    return PlaceOrder(client_order_id=coid, symbol="INFY", side="BUY", quantity=1)


async def dlq_records(redis: aioredis.Redis) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in await redis.xrange(dlq_name(STREAM))
    ]


async def test_an_entry_redelivered_20_times_by_dying_consumers_is_still_handled(
    aredis: aioredis.Redis,
) -> None:
    await Publisher(aredis, source="t").publish(STREAM, order("survivor"))
    await aredis.xgroup_create(STREAM, "crash", id="0")
    # 20 lives of consumers that read the order and died before acknowledging it
    await aredis.xreadgroup("crash", "dead-0", {STREAM: ">"}, count=1)
    entry_id = await _only_id(aredis)
    for i in range(1, 20):
        await aredis.xclaim(STREAM, "crash", f"dead-{i}", 0, [entry_id])
    [row] = await aredis.xpending_range(STREAM, "crash", "-", "+", 1)
    assert row["times_delivered"] == 20
    handled: list[str] = []

    async def handle(env: Envelope) -> None:
        handled.append(env.message.client_order_id)

    config = fast_config("crash", "alive", max_deliveries=3)
    async with Running(StreamConsumer(aredis, config, {STREAM: handle})):
        await poll(lambda: settled(aredis, "crash"))
    assert handled == ["survivor"]
    assert await aredis.xlen(dlq_name(STREAM)) == 0


async def _only_id(redis: aioredis.Redis) -> str:
    [(entry_id, _)] = await redis.xrange(STREAM)
    return entry_id.decode()


async def test_a_handler_that_keeps_raising_is_dead_lettered_after_max_deliveries(
    aredis: aioredis.Redis,
) -> None:
    pub = Publisher(aredis, source="t")
    bad = await pub.publish(STREAM, order("bad"))
    await pub.publish(STREAM, order("good"))
    calls: dict[str, int] = {}

    async def handle(env: Envelope) -> None:
        coid = env.message.client_order_id
        calls[coid] = calls.get(coid, 0) + 1
        if coid == "bad":
            raise RuntimeError("the handler is alive and this keeps failing")

    config = fast_config("fail", "alive", max_deliveries=4)
    async with Running(StreamConsumer(aredis, config, {STREAM: handle})):
        await poll(lambda: aredis.xlen(dlq_name(STREAM)))
        await poll(lambda: settled(aredis, "fail"))
    assert calls == {"bad": 4, "good": 1}
    [record] = await dlq_records(aredis)
    assert record["id"] == bad.id
    assert record["dlq_reason"] == "failed"
    assert record["dlq_failures"] == "4"
    assert record["dlq_lossless"] == "1"
    assert "keeps failing" in record["dlq_error"]
    # the failure counts are cleared with the dead letter
    assert not await aredis.hgetall(failures_key(STREAM, "fail"))


async def test_a_first_delivery_dead_letter_leaves_no_failure_records(
    aredis: aioredis.Redis,
) -> None:
    await Publisher(aredis, source="t").publish(STREAM, order("perm"))
    await aredis.xadd(STREAM, {b"type": b"\xff"})

    async def handle(_env: Envelope) -> None:
        raise PermanentError("never", code="nope")

    async with Running(StreamConsumer(aredis, fast_config("once", "a"), {STREAM: handle})):
        await poll(lambda: settled(aredis, "once"))
    assert await aredis.xlen(dlq_name(STREAM)) == 2
    assert not await aredis.hgetall(failures_key(STREAM, "once"))


async def test_crash_deliveries_and_failures_are_counted_apart(aredis: aioredis.Redis) -> None:
    """Crashes do not use up the failure budget: 10 crash deliveries then 2 failures (of 3
    allowed) and a success leave the entry handled, not dead-lettered."""
    await Publisher(aredis, source="t").publish(STREAM, order("mixed"))
    await aredis.xgroup_create(STREAM, "mix", id="0")
    await aredis.xreadgroup("mix", "dead-0", {STREAM: ">"}, count=1)
    entry_id = await _only_id(aredis)
    for i in range(1, 10):
        await aredis.xclaim(STREAM, "mix", f"dead-{i}", 0, [entry_id])
    calls: list[int] = []

    async def handle(_env: Envelope) -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise ConnectionError("transient")

    config = fast_config("mix", "alive", max_deliveries=3)
    async with Running(StreamConsumer(aredis, config, {STREAM: handle})):
        await poll(lambda: settled(aredis, "mix"))
    assert len(calls) == 3
    assert await aredis.xlen(dlq_name(STREAM)) == 0
    assert not await aredis.hgetall(failures_key(STREAM, "mix"))


async def test_an_entry_that_keeps_killing_its_consumer_meets_the_crash_bound(
    aredis: aioredis.Redis,
) -> None:
    await Publisher(aredis, source="t").publish(STREAM, order("killer"))
    await aredis.xgroup_create(STREAM, "bound", id="0")
    await aredis.xreadgroup("bound", "dead-0", {STREAM: ">"}, count=1)
    entry_id = await _only_id(aredis)
    for i in range(1, 8):
        await aredis.xclaim(STREAM, "bound", f"dead-{i}", 0, [entry_id])
    handled: list[str] = []

    async def handle(env: Envelope) -> None:
        handled.append(env.message.client_order_id)

    config = fast_config("bound", "alive", max_crash_deliveries=8)
    async with Running(StreamConsumer(aredis, config, {STREAM: handle})):
        await poll(lambda: aredis.xlen(dlq_name(STREAM)))
        await poll(lambda: settled(aredis, "bound"))
    assert handled == []
    [record] = await dlq_records(aredis)
    assert record["dlq_reason"] == "crashes"
    assert record["dlq_deliveries"] == "9"


async def test_the_hook_sees_each_dead_letter_and_a_failing_hook_keeps_the_entry(
    aredis: aioredis.Redis,
) -> None:
    pub = Publisher(aredis, source="t")
    permanent = await pub.publish(STREAM, CancelOrder(client_order_id="perm"))
    await aredis.xadd(STREAM, {b"type": b"\xff\xfe", b"v": b"1", b"data": b"\xc3\x28"})
    await pub.publish(STREAM, CancelOrder(client_order_id="fine"))
    letters: list[DeadLetter] = []
    hook_calls = {"n": 0}

    async def hook(letter: DeadLetter) -> None:
        hook_calls["n"] += 1
        if hook_calls["n"] <= 2:  # the journal is down for a moment
            raise ConnectionError("journal unavailable")
        letters.append(letter)

    handled: list[str] = []

    async def handle(env: Envelope) -> None:
        if env.message.client_order_id == "perm":
            raise PermanentError("no such order", code="unknown_order")
        handled.append(env.message.client_order_id)

    consumer = StreamConsumer(
        aredis, fast_config("hook", "alive"), {STREAM: handle}, on_dead_letter=hook
    )
    async with Running(consumer):
        await poll(lambda: asyncio.sleep(0, len(letters) == 2))
        await poll(lambda: settled(aredis, "hook"))
    assert handled == ["fine"]
    # each entry has exactly one DLQ record although its hook failed and ran again
    records = await dlq_records(aredis)
    assert sorted(r["dlq_reason"] for r in records) == ["permanent", "undecodable"]
    by_reason = {r["dlq_reason"]: r for r in records}
    assert by_reason["permanent"]["id"] == permanent.id
    assert by_reason["undecodable"]["dlq_lossless"] == "0"
    perm = next(letter for letter in letters if letter.envelope is not None)
    assert perm.envelope is not None and perm.envelope.id == permanent.id
    assert perm.stream == STREAM and perm.group == "hook"
    assert "unknown_order" in perm.error
    poison = next(letter for letter in letters if letter.envelope is None)
    assert poison.fields["type"] == "\\xff\\xfe"
    assert "undecodable" in poison.error
    failed_hooks = REGISTRY.get_sample_value(
        "dalal_bus_dead_letter_hook_failures_total", {"stream": STREAM, "group": "hook"}
    )
    assert failed_hooks == 2
    assert not await aredis.hgetall(failures_key(STREAM, "hook"))


WORKER = Path(__file__).with_name("bus_worker.py")


@pytest.mark.slow
async def test_a_command_whose_consumers_are_sigkilled_six_times_is_still_handled(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """Real consumer processes, each SIGKILLed while it holds the order (max_deliveries=2):
    the seventh consumer handles it; nothing reaches the DLQ (issue 14's lost orders)."""
    await Publisher(aredis, source="t").publish(STREAM, order("killed"), corr="killed")

    def worker(name: str, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(WORKER), "--redis", redis_url, "--stream", STREAM,
             "--group", "procs", "--consumer", name, "--claim-idle-ms", "100",
             "--max-deliveries", "2", *extra],
            stdout=(tmp_path / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    for i in range(6):
        proc = worker(f"w{i}", "--hang-on", "killed")
        try:
            await poll(lambda n=f"w{i}": _equals(aredis.get("hanging"), n.encode()), timeout=60)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
    last = worker("survivor")
    try:
        await poll(lambda: settled(aredis, "procs"), timeout=60)
    finally:
        last.send_signal(signal.SIGTERM)
        assert last.wait(15) == 0
    deliveries = [d.decode() for d in await aredis.lrange("deliveries", 0, -1)]
    assert deliveries == [f"w{i}:killed" for i in range(6)] + ["survivor:killed"]
    assert await aredis.xlen(dlq_name(STREAM)) == 0
    assert await aredis.get("effects:killed") == b"1"  # applied once (idempotent handler)


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected
