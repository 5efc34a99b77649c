"""A handler that takes a read's entries at once (`BatchHandler`), against a real Redis: what its
batch step handles is acknowledged with the batch, the rest (or everything, when the step
raises) goes one by one, and entries that come back (own pending after a crash, retries) never
go through the batch step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from dalal_shared.bus import (
    BatchHandler,
    ConsumerConfig,
    Publisher,
    StreamConsumer,
    decode_envelope,
    dlq_name,
    group_info,
)
from dalal_shared.messages import CancelOrder, Envelope

STREAM = "test.batch"


def cancel(n: int) -> CancelOrder:
    return CancelOrder(client_order_id=f"c{n}")


def config(**overrides: int) -> ConsumerConfig:
    return ConsumerConfig(
        group="g", consumer="c1", block_ms=50, retry_idle_ms=30, maintenance_interval_s=0.03,
        **overrides,
    )  # fmt: skip


async def handle_until_acked(aredis: aioredis.Redis, consumer: StreamConsumer, n: int) -> None:
    """Run the consumer until the group has acknowledged all `n` entries of the stream."""
    task = asyncio.create_task(consumer.run())
    try:
        deadline = time.monotonic() + 20
        while not await _acked(aredis, n):
            assert time.monotonic() < deadline, "entries not acknowledged before the deadline"
            await asyncio.sleep(0.02)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)


class Recorder:
    """Takes the even-numbered entries in its batch step; `fail_batch` makes the step raise
    after it has seen the entries."""

    def __init__(self, *, fail_batch: bool = False) -> None:
        self.fail_batch = fail_batch
        self.batches: list[list[str]] = []
        self.one_by_one: list[str] = []

    async def __call__(self, envelope: Envelope) -> None:
        assert isinstance(envelope.message, CancelOrder)
        self.one_by_one.append(envelope.message.client_order_id)

    async def batch(self, envelopes: Sequence[Envelope]) -> set[str]:
        coids = [e.message.client_order_id for e in envelopes]  # type: ignore[attr-defined]
        self.batches.append(coids)
        if self.fail_batch:
            raise RuntimeError("the batch step failed")
        return {e.id for e, c in zip(envelopes, coids, strict=True) if int(c[1:]) % 2 == 0}

    def handled(self) -> list[str]:
        return [c for b in self.batches for c in b if int(c[1:]) % 2 == 0] + self.one_by_one


async def test_batch_step_takes_what_it_returns_and_the_rest_goes_one_by_one(
    aredis: aioredis.Redis,
) -> None:
    recorder = Recorder()
    assert isinstance(recorder, BatchHandler)
    pub = Publisher(aredis, source="test")
    await pub.publish_many(STREAM, [cancel(i) for i in range(40)])
    consumer = StreamConsumer(aredis, config(batch_size=100), {STREAM: recorder})
    await handle_until_acked(aredis, consumer, 40)
    assert recorder.batches and all(len(b) > 1 for b in recorder.batches)
    assert sorted(recorder.handled(), key=lambda c: int(c[1:])) == [f"c{i}" for i in range(40)]
    assert all(int(c[1:]) % 2 == 1 for c in recorder.one_by_one)  # each entry exactly once
    assert len(recorder.one_by_one) == 20


async def test_a_read_of_one_first_delivered_entry_goes_to_the_batch_step_too(
    aredis: aioredis.Redis,
) -> None:
    """The batch step is how a handler knows a first delivery (the broker's order then skips
    the journal's pre-read), alone in its read or not."""
    recorder = Recorder()
    pub = Publisher(aredis, source="test")
    await pub.publish_many(STREAM, [cancel(i) for i in range(3)])
    consumer = StreamConsumer(aredis, config(batch_size=1), {STREAM: recorder})
    await handle_until_acked(aredis, consumer, 3)
    assert recorder.batches == [["c0"], ["c1"], ["c2"]]
    assert recorder.one_by_one == ["c1"]  # what the step left


async def test_a_failed_batch_step_leaves_every_entry_to_the_one_by_one_path(
    aredis: aioredis.Redis,
) -> None:
    recorder = Recorder(fail_batch=True)
    pub = Publisher(aredis, source="test")
    await pub.publish_many(STREAM, [cancel(i) for i in range(10)])
    consumer = StreamConsumer(aredis, config(), {STREAM: recorder})
    await handle_until_acked(aredis, consumer, 10)
    assert recorder.batches == [[f"c{i}" for i in range(10)]]
    assert recorder.one_by_one == [f"c{i}" for i in range(10)]


async def test_redelivered_entries_skip_the_batch_step(aredis: aioredis.Redis) -> None:
    pub = Publisher(aredis, source="test")
    await pub.publish_many(STREAM, [cancel(i) for i in range(6)])
    # a consumer that read the entries and died before acknowledging them
    await aredis.xgroup_create(STREAM, "g", id="0")
    await aredis.xreadgroup("g", "c1", {STREAM: ">"}, count=100)
    recorder = Recorder()
    consumer = StreamConsumer(aredis, config(), {STREAM: recorder})
    await handle_until_acked(aredis, consumer, 6)
    assert recorder.batches == []
    assert recorder.one_by_one == [f"c{i}" for i in range(6)]


async def _acked(aredis: aioredis.Redis, n: int) -> bool:
    info = await group_info(aredis, STREAM, "g")
    length = await aredis.xlen(STREAM)
    return info is not None and info.pending == 0 and length == n and info.lag == 0


FIELD_ORDER = [b"type", b"v", b"id", b"ts", b"source", b"corr", b"data"]


async def test_publish_many_writes_the_entries_xadd_of_wrap_fields_writes(
    aredis: aioredis.Redis,
) -> None:
    """The append script (one argument per entry) writes the same entries as XADD of the
    envelope's fields: the same fields in the same order, decoded to the envelopes returned;
    a corr the packing cannot carry goes through plain XADDs; more than one script call's
    worth (1,000) stays in order, atomic or not."""
    pub = Publisher(aredis, source="engine")
    odd = "corr\x1fwith a unit separator"
    for n, (count, atomic) in enumerate([(3, False), (2_500, True), (1_200, False)]):
        stream = f"test.append.{n}"
        messages = [cancel(i) for i in range(count)]
        corrs = [f"c-{i}" if i % 3 else None for i in range(count)]
        if n == 0:
            corrs[1] = odd
        sent = await pub.publish_many(stream, messages, corrs=corrs, atomic=atomic)
        stored = await aredis.xrange(stream)
        assert len(stored) == count
        for (_id, fields), env, message, corr in zip(stored, sent, messages, corrs, strict=True):
            assert list(fields) == FIELD_ORDER
            assert decode_envelope(fields) == env
            assert env.message == message and env.corr == (corr or env.id)
            assert fields[b"source"] == b"engine"
    assert (await aredis.xrange("test.append.0"))[1][1][b"corr"] == odd.encode()
    assert await pub.publish_many("test.append.empty", []) == []


async def test_publish_entries_writes_each_stream_what_xadd_of_wrap_fields_writes(
    aredis: aioredis.Redis,
) -> None:
    """Entries to several streams, interleaved (runs of one stream, a stream coming back):
    each stream holds its entries in the order given, with the envelope's fields in their
    order, decoded to the envelopes returned; with a corr the packing cannot carry, the same
    through plain XADDs."""
    pub = Publisher(aredis, source="data")
    odd = "corr\x1fwith a unit separator"
    for case, corr_of in (("packed", lambda i: f"c-{i}"), ("plain", lambda i: odd)):
        a, b = f"test.entries.{case}.a", f"test.entries.{case}.b"
        plan = [a, a, b, a, b, b, b, a]
        messages = [cancel(i) for i in range(len(plan))]
        entries = [(s, m, corr_of(i)) for i, (s, m) in enumerate(zip(plan, messages, strict=True))]
        sent = await pub.publish_entries(entries)
        assert [e.message for e in sent] == messages
        for stream in (a, b):
            stored = await aredis.xrange(stream)
            want = [
                (env, i) for i, (s, env) in enumerate(zip(plan, sent, strict=True)) if s == stream
            ]
            assert len(stored) == len(want)
            for (_id, fields), (env, i) in zip(stored, want, strict=True):
                assert list(fields) == FIELD_ORDER
                assert decode_envelope(fields) == env
                assert env.corr == corr_of(i) and fields[b"source"] == b"data"
    assert await pub.publish_entries([]) == []


async def test_publish_many_trims_like_xadd(aredis: aioredis.Redis) -> None:
    pub = Publisher(aredis, source="engine", maxlen=100)
    for _ in range(5):
        await pub.publish_many(STREAM, [cancel(i) for i in range(500)])
    # approximate trimming: whole radix-tree nodes go, never below maxlen
    assert 100 <= await aredis.xlen(STREAM) < 2_500


class UrgentFirst(Recorder):
    """A batch handler that names some entries urgent by their raw data (`urgent`); it takes
    every entry of its batch steps (but the ones `fail_on` names: that step raises), and
    records how many entries the bus had decoded when each step began."""

    def __init__(self, urgent: set[str], *, fail_on: int | None = None) -> None:
        super().__init__()
        self.names = {f'"{c}"'.encode() for c in urgent}
        self.fail_on = fail_on
        self.decoded_at_step: list[int] = []
        self.decodes = 0

    def urgent(self):  # type: ignore[no-untyped-def]
        return lambda data: any(u in data for u in self.names)

    async def batch(self, envelopes: Sequence[Envelope]) -> set[str]:
        self.decoded_at_step.append(self.decodes)
        coids = [e.message.client_order_id for e in envelopes]  # type: ignore[attr-defined]
        self.batches.append(coids)
        if self.fail_on == len(self.batches):
            raise RuntimeError("the batch step failed")
        return {e.id for e in envelopes}


def counting_decodes(monkeypatch, recorder: UrgentFirst) -> None:  # type: ignore[no-untyped-def]
    import dalal_shared.bus as bus

    real = bus.decode_flat

    def decode(flat):  # type: ignore[no-untyped-def]
        recorder.decodes += 1
        return real(flat)

    monkeypatch.setattr(bus, "decode_flat", decode)


async def test_urgent_entries_are_decoded_and_handled_before_the_rest_is_decoded(
    aredis: aioredis.Redis, monkeypatch
) -> None:
    recorder = UrgentFirst({"c2", "c5", "c7"})
    counting_decodes(monkeypatch, recorder)
    pub = Publisher(aredis, source="test")
    await pub.publish_many(STREAM, [cancel(i) for i in range(10)])
    consumer = StreamConsumer(aredis, config(batch_size=100), {STREAM: recorder})
    await handle_until_acked(aredis, consumer, 10)
    assert recorder.batches == [["c2", "c5", "c7"], ["c0", "c1", "c3", "c4", "c6", "c8", "c9"]]
    assert recorder.decoded_at_step == [3, 10]  # the other seven decoded after the first step
    assert recorder.one_by_one == []


async def test_urgent_first_still_dead_letters_what_cannot_be_decoded(
    aredis: aioredis.Redis,
) -> None:
    recorder = UrgentFirst({"c1", "bad-urgent"})
    pub = Publisher(aredis, source="test")
    await pub.publish_many(STREAM, [cancel(0), cancel(1)])
    fields = Envelope.wrap(cancel(9), source="test").to_fields()
    for name in ("bad-urgent", "bad-later"):  # a message its model refuses
        await aredis.xadd(STREAM, {**fields, "data": f'{{"client_order_id":"{name}",' + "x"})
    await pub.publish_many(STREAM, [cancel(2)])
    consumer = StreamConsumer(aredis, config(batch_size=100), {STREAM: recorder})
    await handle_until_acked(aredis, consumer, 5)
    assert recorder.batches == [["c1"], ["c0", "c2"]]
    dead = await aredis.xrange(dlq_name(STREAM))
    assert len(dead) == 2


async def test_a_failed_urgent_step_leaves_every_entry_to_the_one_by_one_path(
    aredis: aioredis.Redis,
) -> None:
    recorder = UrgentFirst({"c3"}, fail_on=1)
    pub = Publisher(aredis, source="test")
    await pub.publish_many(STREAM, [cancel(i) for i in range(6)])
    consumer = StreamConsumer(aredis, config(batch_size=100), {STREAM: recorder})
    await handle_until_acked(aredis, consumer, 6)
    assert recorder.batches == [["c3"]]  # no second step
    assert recorder.one_by_one == [f"c{i}" for i in range(6)]


async def test_a_failed_second_step_leaves_only_its_entries_to_the_one_by_one_path(
    aredis: aioredis.Redis,
) -> None:
    recorder = UrgentFirst({"c3"}, fail_on=2)
    pub = Publisher(aredis, source="test")
    await pub.publish_many(STREAM, [cancel(i) for i in range(6)])
    consumer = StreamConsumer(aredis, config(batch_size=100), {STREAM: recorder})
    await handle_until_acked(aredis, consumer, 6)
    assert recorder.batches == [["c3"], ["c0", "c1", "c2", "c4", "c5"]]
    assert recorder.one_by_one == ["c0", "c1", "c2", "c4", "c5"]
