"""The bus against a real Redis: at-least-once delivery, takeover, dead letters, trimming."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import redis as sync_redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from dalal_shared.bus import (
    ConsumerConfig,
    Publisher,
    StreamConsumer,
    dlq_name,
    group_info,
)
from dalal_shared.messages import CancelOrder, Envelope
from dalal_shared.testing import wait_until

WORKER = Path(__file__).with_name("bus_worker.py")
STREAM = "test.orders"


def cancel(n: int | str) -> CancelOrder:
    return CancelOrder(client_order_id=f"c{n}")


async def poll(predicate: Callable[[], Awaitable[object]], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met before the deadline")


class Running:
    """A StreamConsumer running as a task for the duration of a test."""

    def __init__(self, consumer: StreamConsumer):
        self.consumer = consumer
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StreamConsumer:
        self.task = asyncio.create_task(self.consumer.run())
        return self.consumer

    async def __aexit__(self, *_exc: object) -> None:
        self.consumer.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=10)


def fast_config(group: str, consumer: str, **overrides: object) -> ConsumerConfig:
    values: dict[str, object] = {
        "group": group,
        "consumer": consumer,
        "block_ms": 50,
        "retry_idle_ms": 30,
        "maintenance_interval_s": 0.03,
    }
    values.update(overrides)
    return ConsumerConfig(**values)  # type: ignore[arg-type]


async def test_published_entries_are_handled_in_order_and_acked(aredis: aioredis.Redis) -> None:
    pub = Publisher(aredis, source="test")
    for i in range(250):
        await pub.publish(STREAM, cancel(i))
    seen: list[str] = []

    async def handle(env: Envelope) -> None:
        seen.append(env.message.client_order_id)

    async with Running(StreamConsumer(aredis, fast_config("g1", "a"), {STREAM: handle})):
        await poll(lambda: asyncio.sleep(0, len(seen) == 250))
        info = await poll(lambda: group_info(aredis, STREAM, "g1"))
    assert seen == [f"c{i}" for i in range(250)]
    assert info.pending == 0
    assert info.lag == 0
    handled = REGISTRY.get_sample_value(
        "dalal_bus_messages_handled_total",
        {"stream": STREAM, "group": "g1", "type": "CancelOrder"},
    )
    assert handled == 250


async def test_consumer_killed_before_ack_is_taken_over_and_applied_once(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    pub = Publisher(aredis, source="test")
    for key in ("k1", "k2", "k3", "k4", "k5"):
        await pub.publish(STREAM, cancel(key), corr=key)

    def worker(name: str, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "--redis",
                redis_url,
                "--stream",
                STREAM,
                "--group",
                "g2",
                "--consumer",
                name,
                *extra,
            ],
            stdout=(tmp_path / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

    first = worker("first", "--hang-on", "k3")
    try:
        await poll(lambda: aredis.get("hanging"))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # k3 was read and applied by the dead consumer but never acknowledged
        rows = await aredis.xpending_range(STREAM, "g2", "-", "+", 10, consumername="first")
        assert rows, "the killed consumer left its entries pending"
        second = worker("second", "--claim-idle-ms", "200")
        try:

            async def all_done() -> bool:
                info = await group_info(aredis, STREAM, "g2")
                return info is not None and info.pending == 0 and info.lag == 0

            await poll(all_done)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(15) == 0
    finally:
        if first.poll() is None:
            first.kill()
    deliveries = [d.decode() for d in await aredis.lrange("deliveries", 0, -1)]
    assert "first:k3" in deliveries and "second:k3" in deliveries  # really redelivered
    for key in ("k1", "k2", "k3", "k4", "k5"):
        assert await aredis.get(f"effects:{key}") == b"1", key


async def test_poison_entry_goes_to_the_dlq_and_the_stream_keeps_flowing(
    aredis: aioredis.Redis,
) -> None:
    pub = Publisher(aredis, source="test")
    await pub.publish(STREAM, cancel("before"))
    poison = await pub.publish(STREAM, cancel("poison"))
    for i in range(3):
        await pub.publish(STREAM, cancel(f"after{i}"))
    handled: list[str] = []
    attempts = {"poison": 0}

    async def handle(env: Envelope) -> None:
        coid = env.message.client_order_id
        if coid == "cpoison":
            attempts["poison"] += 1
            raise ValueError("cannot apply this one")
        handled.append(coid)

    config = fast_config("g3", "a", max_deliveries=3)
    async with Running(StreamConsumer(aredis, config, {STREAM: handle})):
        await poll(lambda: aredis.xlen(dlq_name(STREAM)))

        async def acked() -> object:
            # the dead letter is written before the entry is acknowledged: wait for both
            got = await group_info(aredis, STREAM, "g3")
            return got if got is not None and got.pending == 0 else None

        info = await poll(acked)
    assert handled == ["cbefore", "cafter0", "cafter1", "cafter2"]
    assert attempts["poison"] == 3
    [(_, dead)] = await aredis.xrange(dlq_name(STREAM))
    dead = {k.decode(): v.decode() for k, v in dead.items()}
    assert dead["id"] == poison.id
    assert dead["type"] == "CancelOrder"
    assert "cannot apply this one" in dead["dlq_error"]
    assert dead["dlq_deliveries"] == "3"
    assert dead["dlq_group"] == "g3"
    assert info.pending == 0
    # the dead-lettered entry is still a valid envelope: it can be replayed
    assert Envelope.from_fields(dead).message == cancel("poison")


async def test_undecodable_entry_is_dead_lettered_at_once(aredis: aioredis.Redis) -> None:
    await aredis.xadd(STREAM, {"type": "NoSuchMessage", "v": "1", "data": "{}"})
    await Publisher(aredis, source="t").publish(STREAM, cancel("ok"))
    handled: list[str] = []

    async def handle(env: Envelope) -> None:
        handled.append(env.message.client_order_id)

    async with Running(StreamConsumer(aredis, fast_config("g4", "a"), {STREAM: handle})):
        await poll(lambda: asyncio.sleep(0, handled == ["cok"]))
        await poll(lambda: aredis.xlen(dlq_name(STREAM)))
    [(_, dead)] = await aredis.xrange(dlq_name(STREAM))
    assert b"undecodable" in dead[b"dlq_error"]


async def test_own_pending_entries_are_reread_on_start(aredis: aioredis.Redis) -> None:
    pub = Publisher(aredis, source="t")
    for i in range(3):
        await pub.publish(STREAM, cancel(i))
    await aredis.xgroup_create(STREAM, "g5", id="0")
    # a previous life of consumer "same" read them and died before acking
    await aredis.xreadgroup("g5", "same", {STREAM: ">"}, count=10)
    handled: list[str] = []

    async def handle(env: Envelope) -> None:
        handled.append(env.message.client_order_id)

    # claim_idle_ms is long: only the start-up re-read can find these entries
    config = fast_config("g5", "same", claim_idle_ms=600_000, retry_idle_ms=600_000)
    async with Running(StreamConsumer(aredis, config, {STREAM: handle})):
        await poll(lambda: asyncio.sleep(0, len(handled) == 3))
    assert handled == ["c0", "c1", "c2"]
    assert (
        REGISTRY.get_sample_value(
            "dalal_bus_messages_redelivered_total", {"stream": STREAM, "group": "g5"}
        )
        == 3
    )


async def test_failed_entry_is_retried_and_then_succeeds(aredis: aioredis.Redis) -> None:
    await Publisher(aredis, source="t").publish(STREAM, cancel("flaky"))
    calls = []

    async def handle(env: Envelope) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("transient")

    async with Running(StreamConsumer(aredis, fast_config("g6", "a"), {STREAM: handle})):
        info = await poll(
            lambda: group_info(aredis, STREAM, "g6"),
        )
        await poll(lambda: asyncio.sleep(0, len(calls) >= 3))

        async def settled() -> bool:
            i = await group_info(aredis, STREAM, "g6")
            return i is not None and i.pending == 0

        await poll(settled)
    assert len(calls) == 3
    assert info is not None
    assert await aredis.xlen(dlq_name(STREAM)) == 0


async def test_a_slow_batch_is_not_claimed_from_its_own_consumer_mid_handling(
    aredis: aioredis.Redis,
) -> None:
    """A short claim idle (a lease holder's is its TTL) and a batch handled for longer than
    that: the take-over of idle entries must not take the batch being handled (it would be
    handled twice, and counted as a delivery that killed its consumer). The maintenance round
    waits for the batch (its retry step takes the handling lock) before it claims."""
    await Publisher(aredis, source="t").publish(STREAM, cancel("slow"))
    release = asyncio.Event()
    calls: list[str] = []

    async def handle(env: Envelope) -> None:
        calls.append(env.message.client_order_id)  # type: ignore[attr-defined]
        await release.wait()

    config = fast_config("g6s", "holder", claim_idle_ms=100)
    async with Running(StreamConsumer(aredis, config, {STREAM: handle})):
        await poll(lambda: asyncio.sleep(0, calls))

        async def idle_past_the_claim_idle() -> bool:
            rows = await aredis.xpending_range(STREAM, "g6s", "-", "+", 1)
            return bool(rows) and rows[0]["time_since_delivered"] > 500

        await poll(idle_past_the_claim_idle)  # several maintenance rounds went by meanwhile
        release.set()

        async def settled() -> bool:
            i = await group_info(aredis, STREAM, "g6s")
            return i is not None and i.pending == 0

        await poll(settled)
    assert calls == ["cslow"]  # handled once


async def test_pending_and_lag_gauges_follow_the_group(aredis: aioredis.Redis) -> None:
    pub = Publisher(aredis, source="t")
    for i in range(7):
        await pub.publish(STREAM, cancel(i))
    await aredis.xgroup_create(STREAM, "g7", id="0")
    await aredis.xreadgroup("g7", "x", {STREAM: ">"}, count=2)
    info = await group_info(aredis, STREAM, "g7")
    assert info is not None
    assert (info.pending, info.lag) == (2, 5)


async def test_streams_are_trimmed_approximately(aredis: aioredis.Redis) -> None:
    pub = Publisher(aredis, source="t", maxlen=100)
    await pub.publish_many(STREAM, [cancel(i) for i in range(2000)])
    length = await aredis.xlen(STREAM)
    assert 100 <= length < 2000


def test_sigterm_stops_a_consumer_cleanly(redis_url: str, tmp_path: Path) -> None:
    client = sync_redis.Redis.from_url(redis_url)
    env = Envelope.wrap(cancel("x"), source="t", corr="x")
    client.xadd(STREAM, env.to_fields())
    proc = subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            "--redis",
            redis_url,
            "--stream",
            STREAM,
            "--group",
            "g8",
            "--consumer",
            "a",
        ],
        stdout=(tmp_path / "w.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: client.get("effects:x") == b"1", message="entry handled")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    groups = client.xinfo_groups(STREAM)
    assert groups[0]["pending"] == 0
    client.close()


def test_decimal_survives_the_bus_unchanged() -> None:
    from dalal_shared.messages import OrderUpdated

    msg = OrderUpdated(
        client_order_id="c", broker_order_id="b", status="OPEN", average_price=Decimal("0.0001")
    )
    assert Envelope.from_fields(Envelope.wrap(msg, source="t").to_fields()).message == msg
