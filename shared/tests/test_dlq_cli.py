"""`dalal dlq` against a real Redis: dead letters written by a real consumer are listed,
shown, replayed to their stream (same envelope id, handled once the cause is fixed) and
purged; lossy records refuse a replay with a one-line message."""

from __future__ import annotations

import asyncio
import json
import time

import redis as sync_redis
import redis.asyncio as aioredis
from typer.testing import CliRunner

from dalal_shared.bus import ConsumerConfig, Publisher, StreamConsumer, dlq_name, group_info
from dalal_shared.cli import app
from dalal_shared.errors import PermanentError
from dalal_shared.messages import CancelOrder, Envelope

STREAM = "test.dlqcli"
runner = CliRunner()


async def run_until_settled(consumer: StreamConsumer, redis: aioredis.Redis) -> None:
    task = asyncio.create_task(consumer.run())
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            info = await group_info(redis, STREAM, consumer.config.group)
            if info is not None and info.pending == 0 and info.lag == 0:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the consumer did not settle")
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)


def config(group: str) -> ConsumerConfig:
    return ConsumerConfig(
        group=group, consumer="a", block_ms=50, retry_idle_ms=30, maintenance_interval_s=0.03
    )


def dalal(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["dlq", *args])
    return result.exit_code, result.output


async def test_list_show_replay_and_purge(redis_url: str, aredis: aioredis.Redis) -> None:
    pub = Publisher(aredis, source="t")
    missing = await pub.publish(STREAM, CancelOrder(client_order_id="later"))
    await aredis.xadd(STREAM, {b"type": b"\xff", b"v": b"1", b"data": b"\xc3\x28"})
    known: set[str] = set()

    async def strict(env: Envelope) -> None:  # the order is not known yet: a permanent error
        if env.message.client_order_id not in known:
            raise PermanentError("unknown order", code="unknown_order")

    await run_until_settled(StreamConsumer(aredis, config("svc"), {STREAM: strict}), aredis)
    assert await aredis.xlen(dlq_name(STREAM)) == 2

    code, out = dalal("list", "--json", "--redis-url", redis_url)
    assert code == 0, out
    listed = json.loads(out)
    assert listed["streams"] == {STREAM: 2}
    by_reason = {e["reason"]: e for e in listed["entries"]}
    assert set(by_reason) == {"permanent", "undecodable"}
    permanent = by_reason["permanent"]
    assert permanent["envelope_id"] == missing.id and permanent["group"] == "svc"
    assert permanent["lossless"] is True and by_reason["undecodable"]["lossless"] is False

    code, out = dalal("show", permanent["dlq_id"], "--json", "--redis-url", redis_url)
    assert code == 0, out
    shown = json.loads(out)
    assert shown["fields"]["type"] == "CancelOrder" and "unknown_order" in shown["error"]
    lossy = by_reason["undecodable"]["dlq_id"]
    code, out = dalal("show", lossy, "--json", "--redis-url", redis_url)
    assert code == 0, out
    assert json.loads(out)["raw"]  # the bad bytes, escaped and base64-encoded

    # a lossy record cannot be replayed: a one-line error naming it, nothing published
    length = await aredis.xlen(STREAM)
    code, out = dalal("replay", by_reason["undecodable"]["dlq_id"], "--redis-url", redis_url)
    assert code == 1 and "cannot be replayed" in out and "Traceback" not in out
    assert await aredis.xlen(STREAM) == length

    # the cause is fixed: replay by envelope id; the consumer handles it; the DLQ shrinks
    known.add("later")
    code, out = dalal("replay", missing.id, "--redis-url", redis_url)
    assert code == 0, out
    handled: list[str] = []

    async def fixed(env: Envelope) -> None:
        handled.append(env.id)

    await run_until_settled(StreamConsumer(aredis, config("svc"), {STREAM: fixed}), aredis)
    assert handled == [missing.id]  # the same envelope id: idempotent consumers dedupe
    assert await aredis.xlen(dlq_name(STREAM)) == 1

    code, out = dalal("show", "0-1", "--redis-url", redis_url)
    assert code == 1 and "no dead letter '0-1'" in out
    code, out = dalal("purge", STREAM, "--yes", "--redis-url", redis_url)
    assert code == 0 and "deleted 1" in out
    assert await aredis.xlen(dlq_name(STREAM)) == 0


def test_replay_all_publishes_each_entry_once_across_groups(redis_url: str) -> None:
    client = sync_redis.Redis.from_url(redis_url)
    env = Envelope.wrap(CancelOrder(client_order_id="x"), source="t")
    fields = env.to_fields()
    for group in ("broker", "portfolio"):  # both groups of orders.commands gave up on it
        client.xadd(
            dlq_name(STREAM),
            {**fields, "dlq_stream": STREAM, "dlq_entry_id": "5-0", "dlq_group": group,
             "dlq_error": "e", "dlq_reason": "failed", "dlq_lossless": "1"},
        )  # fmt: skip
    code, out = dalal("replay", "--all", "--stream", STREAM, "--redis-url", redis_url)
    assert code == 0, out
    [(_, again)] = client.xrange(STREAM)
    assert again[b"id"] == env.id.encode()
    assert client.xlen(dlq_name(STREAM)) == 0
    code, out = dalal("replay", "--all", "--redis-url", redis_url)
    assert code == 2 and "--all needs --stream" in out
    code, out = dalal("list", "--redis-url", "redis://127.0.0.1:1/0")
    assert code == 1 and "cannot reach Redis" in out
    client.close()
