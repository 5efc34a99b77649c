"""Redis Streams bus: a publisher and a consumer-group runner with at-least-once delivery.

Delivery contract (DESIGN.md, "Messages"):

* `XREADGROUP` in batches -> handle each entry in order -> `XACK` the batch.
* On start a consumer first re-reads its own pending entries (it may have died mid-batch).
* Entries that failed stay pending and are retried after `retry_idle_ms`; entries idle for
  `claim_idle_ms` on any consumer (a dead one) are taken over with `XAUTOCLAIM`.
* An entry whose handler raised a `PermanentError` (it cannot succeed on a retry), or whose
  handling failed on its `max_deliveries`-th delivery, or that was delivered more
  than `max_deliveries` times without an ack (it keeps killing its consumer), or that cannot be
  decoded at all, is copied to `dlq.<stream>` with the error and acked: the stream keeps flowing.
* Handlers must be idempotent (dedupe on a business key); the bus never promises exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge, Histogram
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dalal_shared.errors import PermanentError
from dalal_shared.logging import get_logger
from dalal_shared.messages import Envelope, Message, MessageDecodeError

log = get_logger(__name__)

Handler = Callable[[Envelope], Awaitable[None]]

DLQ_PREFIX = "dlq."
DLQ_MAXLEN = 10_000

HANDLED = Counter(
    "dalal_bus_messages_handled_total",
    "Bus entries handled successfully",
    ["stream", "group", "type"],
)
FAILED = Counter(
    "dalal_bus_messages_failed_total",
    "Bus entries whose handler raised",
    ["stream", "group", "type"],
)
REDELIVERED = Counter(
    "dalal_bus_messages_redelivered_total",
    "Bus entries delivered more than once (own pending, retries, claims)",
    ["stream", "group"],
)
DEAD_LETTERED = Counter(
    "dalal_bus_messages_dead_lettered_total",
    "Bus entries moved to the dead-letter stream",
    ["stream", "group"],
)
HANDLER_SECONDS = Histogram(
    "dalal_bus_handler_seconds",
    "Time spent in a bus handler per entry",
    ["stream", "group", "type"],
    buckets=(0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
PENDING = Gauge(
    "dalal_bus_pending_messages",
    "Entries delivered to the group and not yet acknowledged",
    ["stream", "group"],
)
LAG = Gauge(
    "dalal_bus_lag_messages",
    "Entries in the stream not yet delivered to the group",
    ["stream", "group"],
)
DLQ_LENGTH = Gauge(
    "dalal_bus_dlq_messages",
    "Entries waiting in the dead-letter stream of a stream",
    ["stream"],
)
PUBLISHED = Counter("dalal_bus_messages_published_total", "Entries published", ["stream", "type"])


def dlq_name(stream: str) -> str:
    return DLQ_PREFIX + stream


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Publisher:
    """Appends envelopes to streams, trimmed with an approximate MAXLEN."""

    def __init__(self, redis: aioredis.Redis, *, source: str, maxlen: int = 100_000):
        self.redis = redis
        self.source = source
        self.maxlen = maxlen

    async def publish(self, stream: str, message: Message, *, corr: str | None = None) -> Envelope:
        envelope = Envelope.wrap(message, source=self.source, corr=corr)
        await self.redis.xadd(stream, envelope.to_fields(), maxlen=self.maxlen, approximate=True)
        PUBLISHED.labels(stream, envelope.type).inc()
        return envelope

    async def publish_many(
        self, stream: str, messages: Sequence[Message], *, corr: str | None = None
    ) -> list[Envelope]:
        envelopes = [Envelope.wrap(m, source=self.source, corr=corr) for m in messages]
        async with self.redis.pipeline(transaction=False) as pipe:
            for env in envelopes:
                pipe.xadd(stream, env.to_fields(), maxlen=self.maxlen, approximate=True)
            await pipe.execute()
        for env in envelopes:
            PUBLISHED.labels(stream, env.type).inc()
        return envelopes


@dataclass(frozen=True)
class ConsumerConfig:
    group: str
    consumer: str = field(default_factory=default_consumer_name)
    batch_size: int = 100
    block_ms: int = 1000
    max_deliveries: int = 5
    retry_idle_ms: int = 500
    claim_idle_ms: int = 30_000
    maintenance_interval_s: float = 1.0
    start_id: str = "0"  # a new group reads the stream from its beginning: nothing is missed


@dataclass
class _Outcome:
    ack: list[str] = field(default_factory=list)


class StreamConsumer:
    """Runs one consumer of one group over one or more streams until `stop()`."""

    def __init__(
        self,
        redis: aioredis.Redis,
        config: ConsumerConfig,
        handlers: Mapping[str, Handler],
    ):
        if not handlers:
            raise ValueError("a consumer needs at least one stream handler")
        self.redis = redis
        self.config = config
        self.handlers = dict(handlers)
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._handling = asyncio.Lock()  # one batch handled at a time per consumer
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}  # cached metric children

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                await self._ensure_groups()
                await self._drain_own_pending()
                self._started.set()
                maintenance = asyncio.create_task(self._maintain_forever())
                try:
                    while not self._stop.is_set():
                        await self._read_new()
                        backoff = 0.1
                finally:
                    maintenance.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await maintenance
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if self._stop.is_set():
                    break
                log.warning("bus.redis_unavailable", group=self.config.group, error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)
        log.info("bus.consumer_stopped", group=self.config.group, consumer=self.config.consumer)

    # ------------------------------------------------------------------ reading

    async def _ensure_groups(self) -> None:
        for stream in self.handlers:
            try:
                await self.redis.xgroup_create(
                    stream, self.config.group, id=self.config.start_id, mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _drain_own_pending(self) -> None:
        """Re-read what this consumer name was given before and never acknowledged."""
        for stream in self.handlers:
            last = "0"
            while not self._stop.is_set():
                resp = await self.redis.xreadgroup(
                    self.config.group,
                    self.config.consumer,
                    {stream: last},
                    count=self.config.batch_size,
                )
                entries = resp[0][1] if resp else []
                if not entries:
                    break
                await self._process(stream, entries, redelivery=True)
                last = _s(entries[-1][0])

    async def _read_new(self) -> None:
        resp = await self.redis.xreadgroup(
            self.config.group,
            self.config.consumer,
            {stream: ">" for stream in self.handlers},
            count=self.config.batch_size,
            block=self.config.block_ms,
        )
        for stream, entries in resp or []:
            await self._process(_s(stream), entries, redelivery=False)

    async def _maintain_forever(self) -> None:
        """Retries, take-overs and gauges, beside the read loop so they never delay a batch.
        Handling still happens one batch at a time (the lock), in stream order per batch."""
        while not self._stop.is_set():
            for stream in self.handlers:
                try:
                    await self._retry_own_failures(stream)
                    await self._claim_from_dead(stream)
                    await self._update_gauges(stream)
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    log.warning("bus.maintenance_failed", stream=stream, error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stop.wait(), timeout=self.config.maintenance_interval_s
                )

    async def _retry_own_failures(self, stream: str) -> None:
        rows = await self.redis.xpending_range(
            stream,
            self.config.group,
            min="-",
            max="+",
            count=self.config.batch_size,
            consumername=self.config.consumer,
            idle=self.config.retry_idle_ms,
        )
        ids = [_s(r["message_id"]) for r in rows]
        if not ids:
            return
        entries = await self.redis.xclaim(
            stream, self.config.group, self.config.consumer, self.config.retry_idle_ms, ids
        )
        await self._process(stream, entries, redelivery=True)

    async def _claim_from_dead(self, stream: str) -> None:
        start = "0-0"
        while not self._stop.is_set():
            resp = await self.redis.xautoclaim(
                stream,
                self.config.group,
                self.config.consumer,
                self.config.claim_idle_ms,
                start_id=start,
                count=self.config.batch_size,
            )
            start, entries = _s(resp[0]), resp[1]
            if entries:
                log.info("bus.claimed", stream=stream, group=self.config.group, n=len(entries))
                await self._process(stream, entries, redelivery=True)
            if start == "0-0" or not entries:
                break

    async def _delivery_counts(self, stream: str, ids: list[str]) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(stream, self.config.group, entry_id, entry_id, 1)
            results = await pipe.execute()
        counts: dict[str, int] = {}
        for entry_id, rows in zip(ids, results, strict=True):
            counts[entry_id] = int(rows[0]["times_delivered"]) if rows else 1
        return counts

    # ------------------------------------------------------------------ handling

    async def _process(
        self, stream: str, entries: list[tuple[Any, Any]], *, redelivery: bool
    ) -> None:
        async with self._handling:
            await self._process_locked(stream, entries, redelivery=redelivery)

    async def _process_locked(
        self, stream: str, entries: list[tuple[Any, Any]], *, redelivery: bool
    ) -> None:
        group = self.config.group
        handler = self.handlers[stream]
        ids = [_s(e[0]) for e in entries]
        counts = await self._delivery_counts(stream, ids) if redelivery else {}
        to_ack: list[str] = []
        dead: list[tuple[str, dict[Any, Any], str, int]] = []
        for entry_id, (_, raw_fields) in zip(ids, entries, strict=True):
            if not raw_fields:  # trimmed or deleted while pending: nothing to handle
                to_ack.append(entry_id)
                continue
            fields = raw_fields  # bytes as read: decoded once, by from_fields (or the DLQ)
            deliveries = counts.get(entry_id, 1)
            if deliveries > 1:
                REDELIVERED.labels(stream, group).inc()
            if deliveries > self.config.max_deliveries:
                dead.append(
                    (entry_id, fields, f"delivered {deliveries} times without an ack", deliveries)
                )
                continue
            try:
                envelope = Envelope.from_fields(fields)
            except MessageDecodeError as exc:
                dead.append((entry_id, fields, f"undecodable: {exc}", deliveries))
                continue
            children = self._children.get((stream, envelope.type))
            if children is None:
                children = self._children[(stream, envelope.type)] = (
                    HANDLED.labels(stream, group, envelope.type),
                    HANDLER_SECONDS.labels(stream, group, envelope.type),
                )
            started = time.perf_counter()
            try:
                await handler(envelope)
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                FAILED.labels(stream, group, envelope.type).inc()
                dead.append((entry_id, fields, f"{exc.code}: {exc}", deliveries))
                continue  # cannot succeed on a retry
            except Exception as exc:
                FAILED.labels(stream, group, envelope.type).inc()
                log.warning(
                    "bus.handler_failed",
                    stream=stream,
                    group=group,
                    entry=entry_id,
                    type=envelope.type,
                    deliveries=deliveries,
                    error=repr(exc),
                )
                if deliveries >= self.config.max_deliveries:
                    dead.append((entry_id, fields, repr(exc), deliveries))
                continue  # stays pending; retried after retry_idle_ms
            finally:
                children[1].observe(time.perf_counter() - started)
            children[0].inc()
            to_ack.append(entry_id)
        if dead:
            await self._dead_letter(stream, dead)
            to_ack.extend(d[0] for d in dead)
        if to_ack:
            await self.redis.xack(stream, group, *to_ack)

    async def _dead_letter(
        self, stream: str, dead: list[tuple[str, dict[Any, Any], str, int]]
    ) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, fields, error, deliveries in dead:
                record = {_s(k): _s(v) for k, v in fields.items()}
                record.update(
                    {
                        "dlq_stream": stream,
                        "dlq_entry_id": entry_id,
                        "dlq_group": self.config.group,
                        "dlq_error": error[:2000],
                        "dlq_deliveries": str(deliveries),
                    }
                )
                pipe.xadd(dlq_name(stream), record, maxlen=DLQ_MAXLEN, approximate=True)
            await pipe.execute()
        for entry_id, _, error, deliveries in dead:
            DEAD_LETTERED.labels(stream, self.config.group).inc()
            log.error(
                "bus.dead_lettered",
                stream=stream,
                group=self.config.group,
                entry=entry_id,
                deliveries=deliveries,
                error=error[:300],
            )

    # ------------------------------------------------------------------ gauges

    async def _update_gauges(self, stream: str) -> None:
        info = await group_info(self.redis, stream, self.config.group)
        if info is not None:
            PENDING.labels(stream, self.config.group).set(info.pending)
            LAG.labels(stream, self.config.group).set(info.lag)
            # error counters exported from the start (0) for each group, for the dashboards
            REDELIVERED.labels(stream, self.config.group)
            DEAD_LETTERED.labels(stream, self.config.group)
        DLQ_LENGTH.labels(stream).set(await self.redis.xlen(dlq_name(stream)))


LAG_COUNT_CAP = 1_000  # on Redis < 7 the lag gauge reads "at least 1,000" beyond this


@dataclass(frozen=True)
class GroupInfo:
    stream: str
    group: str
    pending: int
    lag: int
    last_delivered_id: str


async def group_info(redis: aioredis.Redis, stream: str, group: str) -> GroupInfo | None:
    """Pending and lag of one group (lag computed by hand on Redis < 7, which lacks it)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    for g in groups:
        if _s(g["name"]) != group:
            continue
        last = _s(g["last-delivered-id"])
        lag = g.get("lag")
        if lag is None:
            # Redis < 7 has no lag field: count the entries after last-delivered-id, capped
            # (every counted entry comes back over the wire; 100k cost seconds when behind)
            rest = await redis.xrange(stream, min=f"({last}", max="+", count=LAG_COUNT_CAP)
            lag = len(rest)
        return GroupInfo(stream, group, int(g["pending"]), int(lag), last)
    return None
