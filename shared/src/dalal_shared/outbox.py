"""One durable outbox for every service (issue 14).

A service writes the events it must publish into an outbox table *inside the transaction
that changes its state* (`add`). The row holds the whole envelope, its id assigned when the
row is written, so a relay that publishes a row and dies before pruning it publishes the
same envelope (same id) again: consumers deduplicate on the envelope id. The `OutboxRelay`
publishes rows in write order, prunes them once Redis has them, reports to the task
registry (`dalal_shared.health`) and survives Redis outages (the rows wait in SQL).

Metrics (label `outbox` = the table name): rows pending, published total, publish failures,
age of the oldest pending row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.engine import Connection

from dalal_shared.bus import wrap_fields
from dalal_shared.health import TaskHealth, supervise
from dalal_shared.messages import Envelope, Message, MessageDecodeError

PENDING = Gauge("dalal_outbox_pending_rows", "Outbox rows not yet published", ["outbox"])
PUBLISHED_ROWS = Counter("dalal_outbox_published_total", "Outbox rows published", ["outbox"])
FAILURES = Counter("dalal_outbox_publish_failures_total", "Failed outbox publishes", ["outbox"])
OLDEST_AGE = Gauge(
    "dalal_outbox_oldest_pending_age_seconds", "Age of the oldest unpublished row", ["outbox"]
)


def outbox_table(metadata: MetaData, name: str = "outbox") -> Table:
    """The outbox table on `metadata` (create it with the service's alembic migration)."""
    return Table(
        name,
        metadata,
        Column(
            "seq",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("envelope_id", String(64), nullable=False, unique=True),
        Column("stream", String(200), nullable=False),
        Column("fields", Text, nullable=False),  # the stream entry's fields, as JSON
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


def row(stream: str, message: Message, *, source: str, corr: str | None = None) -> dict[str, Any]:
    """The values of one outbox row (insert them into `outbox_table` in the caller's
    transaction): the envelope, its id fixed now, as the stream entry's fields."""
    envelope, fields = wrap_fields(message, source=source, corr=corr)
    return {
        "envelope_id": envelope.id,
        "stream": stream,
        "fields": json.dumps(fields, separators=(",", ":")),
        "created_at": datetime.now(UTC),
    }


def add(
    conn: Connection,
    table: Table,
    stream: str,
    message: Message,
    *,
    source: str,
    corr: str | None = None,
) -> str:
    """Write one envelope to the outbox in the caller's transaction; its id (returned) is fixed
    now."""
    values = row(stream, message, source=source, corr=corr)
    conn.execute(table.insert(), values)  # values as parameters: the statement compiles once
    return str(values["envelope_id"])


class OutboxRelay:
    """Publishes an outbox table's rows in order and prunes them after publish."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        redis: aioredis.Redis,
        *,
        batch: int = 200,
        maxlen: int = 100_000,
        idle_seconds: float = 0.05,
        on_published: Callable[[list[Envelope]], None] | None = None,
        run: Callable[..., Awaitable[Any]] | None = None,
    ):
        self.engine, self.table, self.redis = engine, table, redis
        # where its database calls run: a `DbThread.run` shared with the writer of the table
        # (no lock waits between the two), else any worker thread
        self._run: Callable[..., Awaitable[Any]] = run or asyncio.to_thread
        self.batch, self.maxlen, self.idle_seconds = batch, maxlen, idle_seconds
        self.on_published = on_published  # e.g. the audit trail's lines, after Redis has them
        self.name = table.name
        self._wake = asyncio.Event()
        # one publish at a time in this process: two callers (a handler after its step, a
        # retry loop) never read and send the same rows twice
        self._publishing = asyncio.Lock()
        # drains asked (a ticket each) and the last ticket a finished drain covered: callers
        # that asked while a drain was waiting for the lock share the one that runs next
        self._asked = 0
        self._covered = 0

    def wake(self) -> None:
        """Something was written: publish without waiting for the idle poll."""
        self._wake.set()

    def _pending(self) -> list[tuple[int, str, Mapping[str, str]]]:
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.seq, t.c.stream, t.c.fields).order_by(t.c.seq).limit(self.batch)
            ).all()
        return [(r.seq, r.stream, json.loads(r.fields)) for r in rows]

    def _prune(self, seqs: list[int]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(self.table).where(self.table.c.seq.in_(seqs)))

    def _gauges(self) -> None:
        t = self.table
        with self.engine.connect() as conn:
            n, oldest = conn.execute(select(func.count(), func.min(t.c.created_at))).one()
        PENDING.labels(self.name).set(n)
        if oldest is None:
            OLDEST_AGE.labels(self.name).set(0)
        else:
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=UTC)
            OLDEST_AGE.labels(self.name).set(max(0.0, (datetime.now(UTC) - oldest).total_seconds()))

    async def _publish(self, rows: list[tuple[int, str, Mapping[str, str]]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, stream, fields in rows:
                pipe.xadd(stream, dict(fields), maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            await pipe.execute()

    async def publish_once(self) -> int:
        """Publish one batch (in order) and prune it; return how many rows were published.
        A failure to publish leaves the rows for the next call (then same envelope ids)."""
        async with self._publishing:
            return await self._publish_batch()

    def _prune_and_gauge(self, seqs: list[int]) -> None:
        self._prune(seqs)
        self._gauges()

    async def _publish_batch(self) -> int:
        rows = await self._run(self._pending)
        if rows:
            try:
                await self._publish(rows)
            except Exception:
                FAILURES.labels(self.name).inc()
                await self._run(self._gauges)
                raise
            # one trip to the thread: the rows dropped, then the gauges read
            await self._run(self._prune_and_gauge, [seq for seq, _, _ in rows])
            PUBLISHED_ROWS.labels(self.name).inc(len(rows))
            if self.on_published is not None:
                self.on_published(_decoded(rows))
        else:
            await self._run(self._gauges)
        return len(rows)

    async def drain(self) -> int:
        """Publish until the table is empty (a batch shorter than `batch` was the last);
        return how many rows this call published.

        Each caller has written its rows before asking, so any drain that starts after the
        ask sends them. Callers that ask while another drain runs wait for the lock; the first
        of them drains for all who asked before it started, and the others return at once
        (0): a minute's four accepted orders take two drains, not four."""
        self._asked += 1
        ticket = self._asked
        async with self._publishing:
            if self._covered >= ticket:
                return 0
            covers = self._asked  # every ask so far was written before this drain reads
            total = 0
            while True:
                n = await self._publish_batch()
                total += n
                if n < self.batch:
                    self._covered = covers
                    return total

    async def _loop(self, health: TaskHealth) -> None:
        while True:
            n = await self.publish_once()
            health.beat()
            if n < self.batch:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_seconds)

    async def run(self) -> None:
        """Relay for ever under `supervise` (a Redis outage is a back-off, not an exit)."""
        await supervise(
            f"outbox.{self.name}", self._loop, initial_backoff_seconds=0.1, max_backoff_seconds=5.0
        )


def _decoded(rows: list[tuple[int, str, Mapping[str, str]]]) -> list[Envelope]:
    """The envelopes of published rows (one this version cannot read is left out)."""
    out = []
    for _, _, fields in rows:
        with contextlib.suppress(MessageDecodeError):
            out.append(Envelope.from_fields(fields))
    return out


def stored_envelope(fields: Mapping[str, Any]) -> Envelope:
    """The envelope a stored row stands for."""
    return Envelope.from_fields(fields)
