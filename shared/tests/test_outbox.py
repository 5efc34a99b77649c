"""The shared durable outbox: rows written in the caller's transaction, published in order
with stable envelope ids, pruned after publish, metrics (real SQLite, real Redis)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from prometheus_client import REGISTRY
from redis.exceptions import RedisError

from dalal_shared import db, outbox
from dalal_shared.messages import Envelope, KillSwitchEngaged

STREAM = "system.events"


@pytest.fixture
def store(tmp_path: Path) -> tuple[sa.Engine, sa.Table]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    metadata = sa.MetaData()
    table = outbox.outbox_table(metadata, "test_outbox")
    metadata.create_all(engine)
    return engine, table


def _write(engine: sa.Engine, table: sa.Table, reasons: list[str]) -> list[str]:
    """The envelope ids written."""
    with engine.begin() as conn:
        return [
            outbox.add(conn, table, STREAM, KillSwitchEngaged(reason=r, engaged_by="t"), source="t")
            for r in reasons
        ]


async def _stream(redis: aioredis.Redis) -> list[Envelope]:
    return [Envelope.from_fields(f) for _, f in await redis.xrange(STREAM)]


def _rows(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _metric(name: str, **labels: Any) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_rows_publish_in_order_with_their_ids_and_are_pruned(store, aredis) -> None:
    engine, table = store
    written = _write(engine, table, ["a", "b", "c"])
    before = _metric("dalal_outbox_published_total", outbox="test_outbox")
    relay = outbox.OutboxRelay(engine, table, aredis)
    assert await relay.drain() == 3
    got = await _stream(aredis)
    assert [e.id for e in got] == written
    assert [e.message.reason for e in got] == ["a", "b", "c"]  # type: ignore[attr-defined]
    assert _rows(engine, table) == 0
    assert _metric("dalal_outbox_published_total", outbox="test_outbox") == before + 3
    assert _metric("dalal_outbox_pending_rows", outbox="test_outbox") == 0


async def test_a_rolled_back_transaction_publishes_nothing(store, aredis) -> None:
    engine, table = store

    def failing_change() -> None:
        with engine.begin() as conn:
            outbox.add(
                conn, table, STREAM, KillSwitchEngaged(reason="x", engaged_by="t"), source="t"
            )
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert await outbox.OutboxRelay(engine, table, aredis).drain() == 0
    assert await _stream(aredis) == []


async def test_relay_killed_between_publish_and_prune_republishes_the_same_id(
    store, aredis
) -> None:
    engine, table = store
    [env_id] = _write(engine, table, ["once"])
    relay = outbox.OutboxRelay(engine, table, aredis)

    def die(_seqs: list[int]) -> None:
        raise SystemExit("killed after publish")

    relay._prune = die  # type: ignore[method-assign]  # the process dies before the prune
    with pytest.raises(SystemExit):
        await relay.publish_once()
    assert _rows(engine, table) == 1
    # a new relay (the restarted process) publishes the row again: same envelope id
    assert await outbox.OutboxRelay(engine, table, aredis).drain() == 1
    got = await _stream(aredis)
    assert [e.id for e in got] == [env_id, env_id]
    assert _rows(engine, table) == 0


async def test_redis_outage_keeps_rows_and_counts_failures(store, redis_url) -> None:
    engine, table = store
    _write(engine, table, ["kept"])
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    failures = _metric("dalal_outbox_publish_failures_total", outbox="test_outbox")
    with pytest.raises(RedisError):
        await outbox.OutboxRelay(engine, table, dead).publish_once()
    await dead.aclose()
    assert _rows(engine, table) == 1
    assert _metric("dalal_outbox_publish_failures_total", outbox="test_outbox") == failures + 1
    assert _metric("dalal_outbox_pending_rows", outbox="test_outbox") == 1
    assert _metric("dalal_outbox_oldest_pending_age_seconds", outbox="test_outbox") >= 0
    live = aioredis.Redis.from_url(redis_url)
    try:
        assert await outbox.OutboxRelay(engine, table, live).drain() == 1
    finally:
        await live.aclose()


async def test_running_relay_publishes_what_is_written(store, aredis) -> None:
    engine, table = store
    relay = outbox.OutboxRelay(engine, table, aredis)
    task = asyncio.create_task(relay.run())
    try:
        [env_id] = _write(engine, table, ["live"])
        relay.wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not await aredis.xlen(STREAM):
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        assert [e.id for e in await _stream(aredis)] == [env_id]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_concurrent_drains_send_each_row_once(store, aredis) -> None:
    """A handler's drain after its step and a retry loop's drain at the same moment: one
    process never reads and sends the same rows twice."""
    engine, table = store
    written = _write(engine, table, [f"r{i}" for i in range(25)])
    relay = outbox.OutboxRelay(engine, table, aredis, batch=10)
    counts = await asyncio.gather(relay.drain(), relay.drain(), relay.drain())
    assert sum(counts) == 25
    assert [e.id for e in await _stream(aredis)] == written


async def test_drains_asked_together_share_one_pass_and_a_later_ask_gets_its_own(
    store, aredis
) -> None:
    """Four orders accepted at once each ask for a drain after writing their row: the first
    drain runs, the asks made meanwhile share the next one (the table read twice, not five
    times); a row written after that is still sent by the drain asked after it."""
    engine, table = store
    written = _write(engine, table, ["a", "b"])
    reads = 0

    async def run(fn: Any, *args: Any) -> Any:
        nonlocal reads
        if getattr(fn, "__name__", "") == "_pending":
            reads += 1
        return await asyncio.to_thread(fn, *args)

    relay = outbox.OutboxRelay(engine, table, aredis, run=run)
    counts = await asyncio.gather(*(relay.drain() for _ in range(5)))
    assert sum(counts) == 2
    assert reads == 2
    later = _write(engine, table, ["c"])
    assert await relay.drain() == 1
    assert [e.id for e in await _stream(aredis)] == [*written, *later]
    assert _rows(engine, table) == 0
