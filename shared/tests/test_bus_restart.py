"""Consumers and lease holders that supervise themselves (issue 23), against real Redis servers:
`run()` after `stop()` consumes again, a lease loop survives a Redis SIGKILL and gives its role
back to its consumers when Redis returns, loops survive unexpected exceptions."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import REGISTRY

from dalal_shared.bus import ConsumerConfig, Publisher, StreamConsumer
from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.health import TaskRegistry
from dalal_shared.lease import Lease, LeaseLoop
from dalal_shared.messages import CancelOrder, Envelope

STREAM = "test.restart"


async def poll(predicate: Callable[[], Awaitable[object]], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met before the deadline")


async def true_(value: Callable[[], object]) -> object:
    return value()


def fast_config(group: str, consumer: str = "a") -> ConsumerConfig:
    return ConsumerConfig(
        group=group,
        consumer=consumer,
        block_ms=50,
        retry_idle_ms=30,
        maintenance_interval_s=0.03,
    )


async def test_run_after_stop_consumes_again(aredis: aioredis.Redis) -> None:
    pub = Publisher(aredis, source="t")
    seen: list[str] = []

    async def handle(env: Envelope) -> None:
        seen.append(env.message.client_order_id)

    consumer = StreamConsumer(aredis, fast_config("again"), {STREAM: handle})
    for round_ in range(3):  # a lease lost and taken again, three times
        task = asyncio.create_task(consumer.run())
        await pub.publish(STREAM, CancelOrder(client_order_id=f"r{round_}"))
        await poll(lambda r=round_: true_(lambda: f"r{r}" in seen))
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)
    assert seen == ["r0", "r1", "r2"]


async def test_a_stop_before_the_run_begins_still_stops_it(aredis: aioredis.Redis) -> None:
    async def handle(_env: Envelope) -> None:
        return None

    consumer = StreamConsumer(aredis, fast_config("early"), {STREAM: handle})
    task = asyncio.create_task(consumer.run())
    consumer.stop()  # before the task's first step
    await asyncio.wait_for(task, timeout=10)


async def test_the_consumer_survives_an_unexpected_exception_in_its_loop(
    aredis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug-shaped error (not a Redis error) in reading: logged, counted, retried."""
    seen: list[str] = []

    async def handle(env: Envelope) -> None:
        seen.append(env.message.client_order_id)

    registry = TaskRegistry()
    consumer = StreamConsumer(aredis, fast_config("boom"), {STREAM: handle}, registry=registry)
    real_read = consumer._read_new
    failures = {"n": 0}

    async def flaky_read() -> None:
        if failures["n"] < 3:
            failures["n"] += 1
            raise KeyError("a bug in the read path")
        await real_read()

    monkeypatch.setattr(consumer, "_read_new", flaky_read)
    task = asyncio.create_task(consumer.run())
    try:
        await Publisher(aredis, source="t").publish(STREAM, CancelOrder(client_order_id="after"))
        await poll(lambda: true_(lambda: "after" in seen), timeout=90)
        assert seen == ["after"], seen
        await registry.check()  # healthy again once it reads
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)
    errors = REGISTRY.get_sample_value(
        "dalal_bus_consumer_errors_total", {"group": "boom", "where": "read"}
    )
    assert errors is not None and errors >= 3


@pytest.mark.slow
async def test_a_lease_loop_survives_a_redis_kill_and_restarts_its_consumers(
    tmp_path: Path,
) -> None:
    """The broker's shape: a lease loop starts consumers while it holds the lease. Redis is
    SIGKILLed: the loop reports back-off, the role stops; Redis returns: the loop takes the
    lease again and the consumers consume new entries (issue 23's lost orders.commands)."""
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis", port, appendonly=True)
    server.start()
    client = aioredis.Redis.from_url(server.url, socket_connect_timeout=1, socket_timeout=2)
    registry = TaskRegistry()
    seen: list[str] = []

    async def handle(env: Envelope) -> None:
        seen.append(env.message.client_order_id)

    consumer = StreamConsumer(client, fast_config("leader"), {STREAM: handle}, registry=registry)
    running: list[asyncio.Task[None]] = []
    transitions: list[str] = []

    async def take() -> None:
        transitions.append("acquired")
        running[:] = [asyncio.create_task(consumer.run())]

    async def give_up() -> None:
        transitions.append("lost")
        consumer.stop()
        await asyncio.wait(running, timeout=5)
        for t in running:
            t.cancel()

    lease = Lease(client, "test-leader", ttl_seconds=1.5)
    loop = LeaseLoop(lease, on_acquired=take, on_lost=give_up, registry=registry)
    loop_task = asyncio.create_task(loop.run())
    pub = Publisher(client, source="t")
    try:
        await pub.publish(STREAM, CancelOrder(client_order_id="before"))
        await poll(lambda: true_(lambda: "before" in seen))
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)

        async def unhealthy() -> bool:
            try:
                await registry.check()
            except Exception:
                return True
            return False

        await poll(unhealthy)
        await poll(lambda: true_(lambda: "lost" in transitions))
        server.start()  # same port, same AOF
        await poll(lambda: true_(lambda: transitions.count("acquired") >= 2), timeout=60)

        async def published() -> bool:
            # a pooled connection from before the kill may still be handed out once: the
            # publish fails cleanly ("connection closed") and is sent again, as a relay does
            try:
                await pub.publish(STREAM, CancelOrder(client_order_id="after"))
            except redis.exceptions.ConnectionError:
                return False
            return True

        await poll(published, timeout=30)
        await poll(lambda: true_(lambda: "after" in seen), timeout=60)

        async def healthy() -> bool:
            try:
                await registry.check()
            except Exception:
                return False
            return True

        await poll(healthy, timeout=60)
    finally:
        loop_task.cancel()
        consumer.stop()
        await asyncio.gather(loop_task, *running, return_exceptions=True)
        await client.aclose()
        server.stop()
