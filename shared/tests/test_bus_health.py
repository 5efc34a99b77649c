"""`/readyz` tells the truth about a service's long-lived tasks (issue 23): a wedged consumer
turns it red (and `/healthz` too, so the process gets restarted), a consumer whose group is too
far behind turns it red, both turn green again once the cause is gone; `dalal_task_up` says
which task. Real Redis, the real app factory over HTTP (ASGI)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from dalal_shared.bus import ConsumerConfig, Publisher, StreamConsumer
from dalal_shared.httpapp import create_app
from dalal_shared.messages import CancelOrder, Envelope

STREAM = "test.health"


async def poll(predicate: Callable[[], Awaitable[object]], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met before the deadline")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app("healthtest", api_key_digest=None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://svc"
    ) as client:
        yield client


def task_up(metrics: str, task: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(f'dalal_task_up{{task="{task}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_a_wedged_consumer_turns_readyz_and_healthz_red(
    aredis: aioredis.Redis, http: httpx.AsyncClient
) -> None:
    release = asyncio.Event()

    async def handle(env: Envelope) -> None:
        if env.message.client_order_id == "stuck":
            await release.wait()  # a handler stuck on a socket that never answers

    config = ConsumerConfig(
        group="wedge", consumer="a", block_ms=50, maintenance_interval_s=0.05, stale_after_s=1.0
    )
    consumer = StreamConsumer(aredis, config, {STREAM: handle})
    task = asyncio.create_task(consumer.run())
    try:
        await poll(lambda: _status(http, "/readyz", 200))
        await Publisher(aredis, source="t").publish(STREAM, CancelOrder(client_order_id="stuck"))
        body = await poll(lambda: _status(http, "/readyz", 503))
        assert "bus:wedge wedged" in body["checks"]["tasks"]
        assert (await http.get("/healthz")).status_code == 503
        assert task_up((await http.get("/metrics")).text, "bus:wedge") == 0
        release.set()
        await poll(lambda: _status(http, "/readyz", 200))
        assert (await http.get("/healthz")).status_code == 200
        assert task_up((await http.get("/metrics")).text, "bus:wedge") == 1
    finally:
        release.set()
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)
    # a consumer stopped on purpose is not a problem
    assert (await http.get("/readyz")).status_code == 200


async def test_a_backlog_past_its_bound_turns_readyz_red(
    aredis: aioredis.Redis, http: httpx.AsyncClient
) -> None:
    pub = Publisher(aredis, source="t")
    await pub.publish_many(STREAM, [CancelOrder(client_order_id=f"c{i}") for i in range(30)])
    gate = asyncio.Event()

    async def handle(_env: Envelope) -> None:  # slow until the gate opens, never stuck
        if not gate.is_set():
            await asyncio.sleep(0.5)

    config = ConsumerConfig(
        group="behind", consumer="a", block_ms=50, batch_size=5, maintenance_interval_s=0.05,
        max_lag=10, backlog_grace_s=0.2, stale_after_s=600,
    )  # fmt: skip
    consumer = StreamConsumer(aredis, config, {STREAM: handle})
    task = asyncio.create_task(consumer.run())
    try:
        body = await poll(lambda: _status(http, "/readyz", 503))
        assert "lag" in body["checks"]["tasks"] and "bus:behind" in body["checks"]["tasks"]
        gate.set()  # it speeds up and catches up
        await poll(lambda: _status(http, "/readyz", 200))
    finally:
        gate.set()
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)


async def _status(http: httpx.AsyncClient, path: str, code: int) -> dict[str, object] | None:
    resp = await http.get(path)
    return resp.json() if resp.status_code == code else None
