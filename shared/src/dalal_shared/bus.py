"""Redis Streams bus: a publisher and a consumer-group runner with at-least-once delivery.

Delivery contract (DESIGN.md, "Messages"; docs/architecture.md, "Delivery"):

* `XREADGROUP` in batches -> handle each entry in order -> `XACK` the batch.
* A handler with a `batch` method (`BatchHandler`) is first offered the batch's entries read
  for the first time, decoded, all at once (the engine decides a minute's bars in one step);
  the ids it returns count as handled, the rest (or all of them, when `batch` raises) go
  through the handler one by one as usual. Redeliveries always go one by one. A batch handler
  with an `urgent` method (`urgent_first`) has a read's entries it names urgent (by their raw
  `data`) decoded and offered first, the others decoded and offered after.
* On start a consumer first re-reads its own pending entries (it may have died mid-batch).
* Entries that failed stay pending and are retried after `retry_idle_ms`; entries idle for
  `claim_idle_ms` on any consumer (a dead one) are taken over with `XAUTOCLAIM`.
* Handlers must be idempotent (dedupe on a business key); the bus never promises exactly once.

When an entry is dead-lettered (the DLQ rule)
--------------------------------------------
Redis counts *deliveries* of a pending entry, and a delivery may end in two ways that mean very
different things: the handler raised while the consumer lived (a **failure**), or the consumer
died (SIGKILL, OOM, a restart, a lost lease) before acknowledging it (a **crash delivery**). A
command whose consumer was killed ten times is not poison; dead-lettering it loses a valid order.
So failures are counted apart from deliveries:

* each handler failure is counted in a per-group Redis hash, `bus:failures:<stream>:<group>`
  (field = entry id, value = failures), written once per failed batch (`HINCRBY`);
* the hash is read only when an entry comes back (own pending on start, a retry, a take-over:
  the "redelivery" path), in the same round trip as its delivery count; entries read for the
  first time (`XREADGROUP >`, the hot path) have no failures by definition and cost nothing more;
* crash deliveries = deliveries - 1 - failures (every earlier delivery that did not end in a
  recorded failure ended without the handler finishing);
* the entry's fields are deleted from the hash when it is acknowledged or dead-lettered.

An entry goes to `dlq.<stream>` when

1. it cannot be decoded (not UTF-8, oversized, bad JSON, unknown type or newer version, missing
   fields): reason `undecodable`;
2. its handler raised a `PermanentError` (a retry cannot help): reason `permanent`;
3. its handler failed `max_deliveries` times with the handler alive: reason `failed`;
4. it was delivered `max_crash_deliveries` (default 50) times without the handler ever finishing:
   it keeps killing its consumer, so the safety bound stops the crash loop: reason `crashes`.

The DLQ record holds the original fields (each up to 64 KiB of valid UTF-8 kept as is; others
escaped and base64-encoded under `dlq_raw`, bounded), the error, the reason, the group and the
counts (see `dalal_shared.dlq` for the format, listing and replay). After the record is written
the consumer's `on_dead_letter` hook (if any) runs, and only when it returns is the entry
acknowledged: a hook that raises leaves the entry pending, and the next redelivery only runs the
hook again (a marker `<id>:dead` in the failure hash says the record exists). Every
dead-lettered entry is logged and counted (`dalal_bus_messages_dead_lettered_total`).

Self-supervision: `StreamConsumer.run` and its maintenance task survive any exception (logged,
counted in `dalal_bus_consumer_errors_total`, retried after a back-off); `run()` after `stop()`
starts a fresh run; each consumer reports its heartbeat, back-off and backlog to the process's
task registry (`dalal_shared.health`), which `/readyz` reads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast, runtime_checkable

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dalal_shared.aio import cancel_and_wait, wait_event
from dalal_shared.errors import PermanentError
from dalal_shared.health import TaskHealth, TaskRegistry, task_registry
from dalal_shared.ids import new_id
from dalal_shared.logging import get_logger
from dalal_shared.messages import MAX_FIELD_BYTES, Envelope, Message, MessageDecodeError
from dalal_shared.timeutil import utcnow

log = get_logger(__name__)

Handler = Callable[[Envelope], Awaitable[None]]


@runtime_checkable
class BatchHandler(Protocol):
    """A handler that may also take a batch at once. `batch` gets the decoded envelopes of the
    entries a read delivered for the first time (in stream order; a read of one entry too, so
    a first delivery is known as one) and returns the `id`s of
    those it handled; they are acknowledged with the batch. Anything it leaves out, or every
    entry when it raises, goes through `__call__` one by one, so `batch` must leave an entry
    either done or safe to handle again (handlers are idempotent anyway)."""

    async def __call__(self, envelope: Envelope) -> None: ...

    async def batch(self, envelopes: Sequence[Envelope]) -> set[str]: ...


Urgent = Callable[[bytes], bool]


def urgent_first(handler: object) -> Urgent | None:
    """A batch handler's say on which entries of a read are urgent, when it has one: its
    `urgent()` gives a test of an entry's raw `data` bytes (or None: no preference this
    read). Those entries are decoded and offered to `batch` first; the rest are decoded and
    offered once that step is done (the engine: the bars of the symbols it trades before the
    other 45 of a minute are even decoded). The test is only a hint for the order: an entry
    it misjudges is still decoded, offered and handled, in the second step; the entries of
    each step keep their stream order."""
    urgent = getattr(handler, "urgent", None)
    return urgent() if callable(urgent) else None


def _raw_data(fields: Any, flat: bool) -> Any:
    """An entry's `data` value as Redis sent it (None when it has none where expected)."""
    if flat:
        if len(fields) == 2 * _ENVELOPE_FIELDS and fields[12] == b"data":
            return fields[13]
        return None
    return fields.get(b"data") if isinstance(fields, Mapping) else None


DLQ_PREFIX = "dlq."
DLQ_MAXLEN = 10_000
DLQ_FIELD_BYTES = 64 * 1024  # one original field kept in a DLQ record, at most
DLQ_RAW_BYTES = 48 * 1024  # raw bytes of all escaped fields of a record (64 KiB in base64)
DLQ_MAX_FIELDS = 32
FAILURES_TTL_SECONDS = 7 * 86_400

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

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
DEAD_LETTER_REASONS = Counter(
    "dalal_bus_dead_letter_reasons_total",
    "Dead-lettered entries by reason (undecodable, permanent, failed, crashes)",
    ["stream", "group", "reason"],
)
DEAD_LETTER_HOOK_FAILED = Counter(
    "dalal_bus_dead_letter_hook_failures_total",
    "Times a consumer's dead-letter hook raised (the entry stays pending and is retried)",
    ["stream", "group"],
)
CONSUMER_ERRORS = Counter(
    "dalal_bus_consumer_errors_total",
    "Unexpected errors survived by a consumer loop (where: read, maintenance)",
    ["group", "where"],
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


def failures_key(stream: str, group: str) -> str:
    return f"bus:failures:{stream}:{group}"


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _b(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def escape(value: Any, limit: int = DLQ_FIELD_BYTES) -> str:
    """Readable text of arbitrary bytes: UTF-8 where it is, `\\xNN` escapes where it is not,
    cut at `limit` bytes with a note of the original size."""
    raw = _b(value)
    text = raw[:limit].decode("utf-8", "backslashreplace")
    if len(raw) > limit:
        text += f"...[{len(raw)} bytes]"
    return text


def dlq_fields(raw_fields: Mapping[Any, Any]) -> tuple[dict[Any, Any], bool]:
    """The original fields of an entry as stored in a DLQ record, and whether they are kept
    exactly (`lossless`: a replay re-publishes the very entry).

    A field is kept as is when its name and value are valid UTF-8, the value is at most
    `DLQ_FIELD_BYTES` and the name does not start with `dlq_`; any other field goes, escaped,
    base64-encoded and bounded (`DLQ_RAW_BYTES` for all of them), into the JSON list `dlq_raw`
    of `{"name", "bytes", "value_b64"}`; fields beyond `DLQ_MAX_FIELDS` are dropped."""
    kept: dict[str, str] = {}
    raw: list[dict[str, Any]] = []
    budget = DLQ_RAW_BYTES
    lossless = True
    for index, (k, v) in enumerate(raw_fields.items()):
        if index >= DLQ_MAX_FIELDS:
            lossless = False
            break
        kb, vb = _b(k), _b(v)
        try:
            name, value = kb.decode(), vb.decode()
            if len(vb) <= DLQ_FIELD_BYTES and not name.startswith("dlq_") and len(kb) <= 200:
                kept[name] = value
                continue
        except UnicodeDecodeError:
            pass
        lossless = False
        part = vb[: max(0, min(len(vb), budget))]
        budget -= len(part)
        raw.append(
            {
                "name": escape(kb, 200),
                "bytes": len(vb),
                "value_b64": base64.b64encode(part).decode(),
            }
        )
    if raw:
        kept["dlq_raw"] = json.dumps(raw)
    return kept, lossless


# (type, v) as raw bytes -> (message validator, type name, version) of envelopes already decoded
# in full by `Envelope.from_fields`: only those take the fast path below.
_KNOWN_TYPES: dict[tuple[bytes, bytes], tuple[Callable[[bytes], Message], str, int]] = {}
_ENVELOPE_FIELDS = 7
_ENVELOPE_NAMES = frozenset(Envelope.model_fields)
# What `Envelope.model_construct` does when given every field, without its generic loop over
# aliases and defaults (~10 us an entry); only while the model has no post-init, private
# attributes, aliases or extra fields, else `model_construct` itself.
_PLAIN_ENVELOPE = (
    not Envelope.__pydantic_post_init__
    and not Envelope.__private_attributes__
    and Envelope.model_config.get("extra") != "allow"
    and all(f.alias is None and f.validation_alias is None for f in Envelope.model_fields.values())
    and len(_ENVELOPE_NAMES) == _ENVELOPE_FIELDS
)
_new_object = object.__new__
_set_attr = object.__setattr__
# the slots a pydantic model keeps beside its `__dict__`, set through their descriptors (a
# third cheaper than `object.__setattr__` looking each one up by name)
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _construct(values: dict[str, Any]) -> Envelope:
    """An `Envelope` of trusted, already validated values (all seven fields)."""
    if not _PLAIN_ENVELOPE:
        return Envelope.model_construct(**values)
    envelope = _new_object(Envelope)
    _set_attr(envelope, "__dict__", values)
    _set_fields_set(envelope, set(_ENVELOPE_NAMES))
    _set_extra(envelope, None)
    _set_private(envelope, None)
    return envelope


_SOURCES: dict[bytes, str] = {}  # decoded `source` values (a handful of service names)
# the last `ts` parsed, as one (raw, parsed) tuple replaced whole (safe across threads): a
# batch of ticks shares one stamp
_last_stamp: list[tuple[bytes, Any]] = [(b"", None)]


def _decode_known(
    type_raw: Any, v_raw: Any, ident: Any, stamp: Any, source: Any, corr: Any, data: Any
) -> Envelope | None:
    """The envelope of an entry's seven raw values when its (type, version) was decoded in
    full before, else None (unknown type, a value that is not bytes, too large, a bad time or a
    message its model refuses: the full decode then gives the verdict and the error)."""
    try:
        known = _KNOWN_TYPES.get((type_raw, v_raw))
        if known is None:
            return None
        if len(data) + len(ident) + len(source) + len(corr) + len(stamp) > MAX_FIELD_BYTES:
            return None
        last = _last_stamp[0]
        if stamp == last[0]:
            ts = last[1]
        else:
            ts = datetime.fromisoformat(stamp.decode())
            if ts.tzinfo is None:  # (fromisoformat's zones all have an offset)
                return None
            _last_stamp[0] = (stamp, ts)
        source_text = _SOURCES.get(source)
        if source_text is None:
            source_text = source.decode()
            if len(_SOURCES) < 256:
                _SOURCES[source] = source_text
        ident_text = ident.decode()
        validate, type_name, version = known
        values = {
            "type": type_name,
            "v": version,
            "id": ident_text,
            "ts": ts,
            "source": source_text,
            "corr": ident_text if corr == ident else corr.decode(),
            "message": validate(data),
        }
    except Exception:  # the full decode gives the verdict and the error
        return None
    return _construct(values)


def decode_envelope(fields: Mapping[Any, Any]) -> Envelope:
    """`Envelope.from_fields`, with a fast path for the hot case: the seven fields of an
    envelope as raw bytes (what redis-py returns), of a (type, version) seen before.

    The message is still validated by its pydantic model (its validator's `validate_json`
    straight on the bytes: no decoded copy), the time must still be tz-aware and the fields
    within `MAX_FIELD_BYTES` (here: together); only the envelope's own constructor, whose checks
    those are, is skipped. Anything unusual (unknown type, extra or missing fields, str fields,
    a bad value) goes through `Envelope.from_fields`, which gives the same envelope or the same
    `MessageDecodeError` as before."""
    if len(fields) == _ENVELOPE_FIELDS and isinstance(fields, Mapping):
        get = fields.get
        envelope = _decode_known(
            get(b"type"),
            get(b"v"),
            get(b"id"),
            get(b"ts"),
            get(b"source"),
            get(b"corr"),
            get(b"data"),
        )
        if envelope is not None:
            return envelope
    envelope = Envelope.from_fields(fields)
    type_raw, v_raw = fields.get(b"type"), fields.get(b"v")
    if isinstance(type_raw, bytes) and isinstance(v_raw, bytes):
        validator = type(envelope.message).__pydantic_validator__
        _KNOWN_TYPES[(type_raw, v_raw)] = (validator.validate_json, envelope.type, envelope.v)
    return envelope


# the field names of an entry as the publishers write them (`wrap_fields`, the append script)
_FLAT_NAMES = [b"type", b"v", b"id", b"ts", b"source", b"corr", b"data"]


def fields_of(flat: Sequence[Any]) -> dict[Any, Any]:
    """An entry's fields as Redis sends them (name, value, name, value...) as a mapping (what
    redis-py's own parsing of a stream reply gives: a repeated name keeps its last value)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def decode_flat(flat: Sequence[Any]) -> Envelope:
    """`decode_envelope` of an entry's fields as Redis sends them: read by position when the
    names are the publishers' seven in their order (no mapping built), else through
    `decode_envelope(fields_of(flat))` (same envelope or the same `MessageDecodeError`)."""
    if len(flat) == 2 * _ENVELOPE_FIELDS and flat[::2] == _FLAT_NAMES:
        envelope = _decode_known(flat[1], flat[3], flat[5], flat[7], flat[9], flat[11], flat[13])
        if envelope is not None:
            return envelope
    try:
        fields = fields_of(flat)
    except Exception as exc:  # an odd-length list: not a stream entry
        raise MessageDecodeError(f"not a stream entry: {type(exc).__name__}") from None
    return decode_envelope(fields)


def wrap_fields(
    message: Message, *, source: str, corr: str | None = None
) -> tuple[Envelope, dict[str, str]]:
    """`Envelope.wrap` and `to_fields` in one step, the message serialised once: the same
    envelope and the same fields, without re-validating a message that is already a model."""
    msg_id = new_id()
    cls = type(message)
    envelope = _construct(
        {
            "type": cls.__name__,
            "v": cls.version,
            "id": msg_id,
            "ts": datetime.now(UTC),
            "source": source,
            "corr": corr or msg_id,
            "message": message,
        }
    )
    fields = {
        "type": envelope.type,
        "v": str(envelope.v),
        "id": msg_id,
        "ts": envelope.ts.isoformat(),
        "source": source,
        "corr": envelope.corr,
        "data": message.model_dump_json(),
    }
    return envelope, fields


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """`histogram.observe(v)` for each value, with one update per bucket touched and one of the
    sum (prometheus_client's observe takes a lock per bucket and per sum, for every value).
    Falls back to `observe` on a child without the expected internals."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    ordered = sorted(values)
    total.inc(sum(values))
    below = 0  # values counted in the buckets before
    for bound, bucket in zip(bounds, buckets, strict=True):
        # observe puts a value in the first bucket whose bound is >= it
        upto = bisect_right(ordered, bound, below)
        if upto > below:
            bucket.inc(upto - below)
            below = upto
        if below == len(ordered):
            break


@dataclass(frozen=True)
class DeadLetter:
    """What a consumer's `on_dead_letter` hook is told about an entry it dead-lettered."""

    stream: str
    entry_id: str
    group: str
    error: str
    deliveries: int
    envelope: Envelope | None  # None when the entry could not be decoded
    fields: dict[str, str]  # the entry's fields, escaped (`escape`) and bounded


DeadLetterHook = Callable[[DeadLetter], Awaitable[None]]


# `Publisher.publish_many`: one EVALSHA appends a batch, each entry one argument (its fields
# joined by the unit separator, which JSON, ids, ISO times and type names never hold raw), so
# the client packs one argument per entry instead of an XADD of 17 (redis-py packs those in
# Python: the cost of a pipelined publish). The entries are what XADD of `wrap_fields` writes:
# the same fields in the same order, the same approximate MAXLEN trim.
_SEP = "\x1f"
_PACKED = ("type", "v", "id", "ts", "corr")
_CHUNK = 1_000
_APPEND = r"""
local stream, maxlen, source = KEYS[1], ARGV[1], ARGV[2]
for i = 3, #ARGV do
  local p = ARGV[i]
  local a = string.find(p, '\31', 1, true)
  local b = string.find(p, '\31', a + 1, true)
  local c = string.find(p, '\31', b + 1, true)
  local d = string.find(p, '\31', c + 1, true)
  local e = string.find(p, '\31', d + 1, true)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
    'type', string.sub(p, 1, a - 1), 'v', string.sub(p, a + 1, b - 1),
    'id', string.sub(p, b + 1, c - 1), 'ts', string.sub(p, c + 1, d - 1), 'source', source,
    'corr', string.sub(p, d + 1, e - 1), 'data', string.sub(p, e + 1))
end
return #ARGV - 2
"""


def _mapping_of(fields: Any) -> Any:
    """A flat entry's fields as a mapping for the failure paths (an odd-length list, which
    Redis never sends, as one escaped field)."""
    try:
        return fields_of(fields)
    except ValueError:
        return {b"dlq_unreadable": repr(fields)[:1000].encode()}


class Publisher:
    """Appends envelopes to streams, trimmed with an approximate MAXLEN."""

    def __init__(self, redis: aioredis.Redis, *, source: str, maxlen: int = 100_000):
        self.redis = redis
        self.source = source
        self.maxlen = maxlen
        self._published: dict[tuple[str, str], Any] = {}  # cached PUBLISHED children
        self._script: Any = None  # the append script (`publish_many`), registered on first use

    def _count(self, stream: str, type_name: str, n: int = 1) -> None:
        child = self._published.get((stream, type_name))
        if child is None:
            child = self._published[(stream, type_name)] = PUBLISHED.labels(stream, type_name)
        child.inc(n)

    async def publish(self, stream: str, message: Message, *, corr: str | None = None) -> Envelope:
        envelope, fields = wrap_fields(message, source=self.source, corr=corr)
        await self.redis.xadd(stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        self._count(stream, envelope.type)
        return envelope

    async def publish_many(
        self,
        stream: str,
        messages: Sequence[Message],
        *,
        corr: str | None = None,
        corrs: Sequence[str | None] | None = None,
        atomic: bool = False,
    ) -> list[Envelope]:
        """`messages` in one round trip, in order (one EVALSHA of the append script per
        1,000); `corrs` (one per message) overrides `corr`. `atomic`: all of them at once, so
        a consumer blocked on the stream wakes once all are there and takes them in one read
        (up to 1,000 they always are; beyond, the calls go in one MULTI/EXEC)."""
        if corrs is not None and len(corrs) != len(messages):
            raise ValueError("one corr per message")
        if not messages:
            return []
        envelopes: list[Envelope] = []
        counts: dict[str, int] = {}
        entries: list[dict[str, str]] = []
        for n, message in enumerate(messages):
            env, fields = wrap_fields(
                message, source=self.source, corr=corr if corrs is None else corrs[n]
            )
            envelopes.append(env)
            entries.append(fields)
            counts[env.type] = counts.get(env.type, 0) + 1
        await self._write([(stream, entries)], atomic=atomic)
        for type_name, n in counts.items():
            self._count(stream, type_name, n)
        return envelopes

    async def _write(self, runs: list[tuple[str, list[dict[str, str]]]], *, atomic: bool) -> None:
        """Runs of (stream, entries' fields), in order, in one round trip: each run through
        the append script, up to `_CHUNK` entries per call (a call runs atomically on the
        server: a huge batch would stall it); one call alone needs no MULTI/EXEC. Fields the
        packing cannot carry (a unit separator in the source or a corr) go as plain XADDs."""
        if self._script is None:
            self._script = self.redis.register_script(_APPEND)
        script = self._script
        head = [self.maxlen, self.source]
        if _SEP in self.source or any(_SEP in f["corr"] for _s, run in runs for f in run):
            async with self.redis.pipeline(transaction=atomic) as pipe:
                for stream, run in runs:
                    for fields in run:
                        pipe.xadd(stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
                await pipe.execute()
            return
        calls = [
            (
                stream,
                [_SEP.join([*(f[k] for k in _PACKED), f["data"]]) for f in run[i : i + _CHUNK]],
            )
            for stream, run in runs
            for i in range(0, len(run), _CHUNK)
        ]
        if len(calls) == 1:
            stream, packed = calls[0]
            await script(keys=[stream], args=[*head, *packed])
            return
        async with self.redis.pipeline(transaction=atomic) as pipe:
            for stream, packed in calls:
                await script(keys=[stream], args=[*head, *packed], client=pipe)
            await pipe.execute()

    async def publish_entries(
        self, entries: Sequence[tuple[str, Message, str | None]]
    ) -> list[Envelope]:
        """(stream, message, corr) entries, to any streams, in one round trip, in order, at
        once (one call of the append script per run of one stream's entries; several calls
        in one MULTI/EXEC): a consumer blocked on a stream is woken once all are there and
        reads them in one batch (a plain pipeline woke it at the first entry, and it read the
        rest only after handling that one alone)."""
        envelopes: list[Envelope] = []
        counts: dict[tuple[str, str], int] = {}
        runs: list[tuple[str, list[dict[str, str]]]] = []  # consecutive entries of one stream
        for stream, message, corr in entries:
            env, fields = wrap_fields(message, source=self.source, corr=corr)
            envelopes.append(env)
            counts[(stream, env.type)] = counts.get((stream, env.type), 0) + 1
            if runs and runs[-1][0] == stream:
                runs[-1][1].append(fields)
            else:
                runs.append((stream, [fields]))
        if runs:
            await self._write(runs, atomic=True)
        for (stream, type_name), n in counts.items():
            self._count(stream, type_name, n)
        return envelopes


@dataclass(frozen=True)
class ConsumerConfig:
    group: str
    consumer: str = field(default_factory=default_consumer_name)
    batch_size: int = 100
    block_ms: int = 1000
    max_deliveries: int = 5  # handler failures (handler alive) before an entry is dead-lettered
    max_crash_deliveries: int = 50  # deliveries that killed their consumer, before the same
    retry_idle_ms: int = 500
    claim_idle_ms: int = 30_000
    maintenance_interval_s: float = 1.0
    start_id: str = "0"  # a new group reads the stream from its beginning: nothing is missed
    stale_after_s: float = 60.0  # no progress for this long: the consumer is wedged (/readyz)
    max_pending: int = 0  # pending entries of the group past this (0: no bound) ...
    max_lag: int = 0  # ... or lag past this (0: no bound) ...
    backlog_grace_s: float = 30.0  # ... for this long: /readyz is red


@dataclass
class _Dead:
    entry_id: str
    fields: Mapping[Any, Any]
    error: str
    reason: str
    deliveries: int
    failures: int
    envelope: Envelope | None
    written: bool = False  # the DLQ record exists already (an earlier hook failed)


_BACKOFF_START, _BACKOFF_MAX = 0.1, 5.0


class StreamConsumer:
    """Runs one consumer of one group over one or more streams until `stop()`.

    `run()` may be called again after `stop()` (a broker replica that lost and re-took its
    lease); runs never overlap. `on_dead_letter` is awaited for every dead-lettered entry after
    its DLQ record is written and before it is acknowledged (see the module docstring)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        config: ConsumerConfig,
        handlers: Mapping[str, Handler],
        *,
        on_dead_letter: DeadLetterHook | None = None,
        registry: TaskRegistry | None = None,
        task_name: str | None = None,
    ):
        if not handlers:
            raise ValueError("a consumer needs at least one stream handler")
        self.redis = redis
        self.config = config
        self.handlers = dict(handlers)
        self.on_dead_letter = on_dead_letter
        self.registry = registry or task_registry()
        self.task_name = task_name or f"bus:{config.group}"
        self.health: TaskHealth | None = None
        self._stop = asyncio.Event()
        self._runs = 0  # runs started so far
        self._stop_for = 0  # the run a stop() applies to
        self._running = False
        self._run_lock = asyncio.Lock()
        self._started = asyncio.Event()
        self._handling = asyncio.Lock()  # one batch handled at a time per consumer
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}  # cached metric children
        self._batch_handlers: dict[int, tuple[Handler, bool]] = {}  # is it a BatchHandler
        self._backlog_since: float | None = None

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Stop the current run at its next batch boundary (or the run about to start, when
        called between `create_task(run())` and its first step)."""
        self._stop_for = self._runs if self._running else self._runs + 1
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def run(self) -> None:
        async with self._run_lock:
            self._runs += 1
            if self._stop_for < self._runs:  # a stop() of an earlier run: start afresh
                self._stop = asyncio.Event()
            self._running = True
            health = self.health = self.registry.register(
                self.task_name, stale_after_seconds=self.config.stale_after_s
            )
            try:
                await self._run(health)
            finally:
                self._running = False
                health.close()
                log.info(
                    "bus.consumer_stopped", group=self.config.group, consumer=self.config.consumer
                )

    async def _run(self, health: TaskHealth) -> None:
        stop = self._stop
        backoff = _BACKOFF_START
        while not stop.is_set():
            maintenance: asyncio.Task[None] | None = None
            try:
                await self._ensure_groups()
                await self._drain_own_pending()
                self._started.set()
                health.beat()
                maintenance = asyncio.create_task(self._maintain_forever())
                while not stop.is_set():
                    await self._read_new()
                    health.beat()
                    backoff = _BACKOFF_START
                    if maintenance.done():  # it survives everything; if not, restart it
                        maintenance = asyncio.create_task(self._maintain_forever())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if stop.is_set():
                    break
                error = f"{type(exc).__name__}: {exc}"[:300]
                CONSUMER_ERRORS.labels(self.config.group, "read").inc()
                if isinstance(exc, REDIS_DOWN):
                    log.warning("bus.redis_unavailable", group=self.config.group, error=error)
                else:
                    log.error(
                        "bus.consumer_error", group=self.config.group, error=error, exc_info=exc
                    )
                health.backoff(error)
                await wait_event(stop, backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                if maintenance is not None:
                    await cancel_and_wait(maintenance)

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
                read = await self._read({stream: last}, block_ms=None)
                entries = read[0][1] if read else []
                if not entries:
                    break
                await self._process(stream, entries, redelivery=True, flat=True)
                last = _s(entries[-1][0])

    async def _read_new(self) -> None:
        """Read what the group was never given (the hot path)."""
        read = await self._read(dict.fromkeys(self.handlers, ">"), block_ms=self.config.block_ms)
        for stream, entries in read:
            await self._process(stream, entries, redelivery=False, flat=True)

    async def _read(
        self, streams: dict[str, str], *, block_ms: int | None
    ) -> list[tuple[str, list[Any]]]:
        """XREADGROUP, its reply taken as Redis sends it (a two-word command name has no reply
        parser in redis-py): entries keep their fields as the flat name/value list, decoded by
        position (`decode_flat`) without a mapping built per entry. Streams without entries
        are left out."""
        blocking = () if block_ms is None else ("BLOCK", block_ms)
        resp: Any = await self.redis.execute_command(  # type: ignore[no-untyped-call]
            "XREADGROUP GROUP",
            self.config.group,
            self.config.consumer,
            "COUNT",
            self.config.batch_size,
            *blocking,
            "STREAMS",
            *streams,
            *streams.values(),
        )
        if not resp:
            return []
        # RESP3 replies with a map of streams, RESP2 with a list of [stream, entries]
        pairs = resp.items() if isinstance(resp, dict) else resp
        return [(_s(stream), entries) for stream, entries in pairs if entries]

    async def _maintain_forever(self) -> None:
        """Retries, take-overs, gauges and the backlog verdict, beside the read loop so they
        never delay a batch. Handling still happens one batch at a time (the lock), in stream
        order per batch. Survives any exception (logged, counted, tried again next round)."""
        stop = self._stop
        while not stop.is_set():
            backlog: list[str] = []
            for stream in self.handlers:  # gauges first: they need no lock, never wait a batch
                problem = await self._survive(stream, self._update_gauges(stream))
                if problem:
                    backlog.append(problem)
            self._judge_backlog(backlog)
            for stream in self.handlers:
                await self._survive(stream, self._retry_own_failures(stream))
                await self._survive(stream, self._claim_from_dead(stream))
            await wait_event(stop, self.config.maintenance_interval_s)

    async def _survive(self, stream: str, step: Awaitable[Any]) -> Any:
        """One maintenance step; any error is logged and counted, never raised."""
        try:
            return await step
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            CONSUMER_ERRORS.labels(self.config.group, "maintenance").inc()
            if isinstance(exc, REDIS_DOWN):
                log.warning("bus.maintenance_failed", stream=stream, error=error)
            else:
                log.error("bus.maintenance_error", stream=stream, error=error, exc_info=exc)
            return None

    def _judge_backlog(self, problems: list[str]) -> None:
        if self.health is None:
            return
        if not problems:
            self._backlog_since = None
            self.health.problem(None)
            return
        now = time.monotonic()
        if self._backlog_since is None:
            self._backlog_since = now
        if now - self._backlog_since >= self.config.backlog_grace_s:
            self.health.problem("; ".join(problems))

    async def _retry_own_failures(self, stream: str) -> None:
        """Hand again this consumer's pending entries whose handler failed (a failure count)
        or whose dead-letter hook did (a `:dead` marker). An entry pending without either is
        one the read loop has read and not handled yet (its read waiting for the handling
        lock longer than `retry_idle_ms`): taking it here would handle it twice."""
        async with self._handling:  # never claims entries the read loop is handling
            rows = await self.redis.xpending_range(
                stream,
                self.config.group,
                min="-",
                max="+",
                count=self.config.batch_size,
                consumername=self.config.consumer,
                idle=self.config.retry_idle_ms,
            )
            pending = [_s(r["message_id"]) for r in rows]
            if not pending:
                return
            marks = await self.redis.hmget(
                failures_key(stream, self.config.group),
                [*pending, *(f"{i}:dead" for i in pending)],
            )
            n = len(pending)
            ids: list[Any] = [
                i for k, i in enumerate(pending) if marks[k] is not None or marks[n + k] is not None
            ]
            if not ids:
                return
            entries: Any = await self.redis.xclaim(
                stream, self.config.group, self.config.consumer, self.config.retry_idle_ms, ids
            )
            await self._process_locked(stream, entries, redelivery=True)

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

    async def _delivery_state(
        self, stream: str, ids: list[str]
    ) -> tuple[dict[str, int], dict[str, int], dict[str, dict[str, Any]]]:
        """Delivery counts, recorded handler failures and dead-letter markers of redelivered
        entries, in one round trip."""
        key = failures_key(stream, self.config.group)
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(stream, self.config.group, entry_id, entry_id, 1)
            pipe.hmget(key, [*ids, *(f"{i}:dead" for i in ids)])
            results = await pipe.execute()
        counts: dict[str, int] = {}
        for entry_id, rows in zip(ids, results[:-1], strict=True):
            counts[entry_id] = int(rows[0]["times_delivered"]) if rows else 1
        values = results[-1]
        failures: dict[str, int] = {}
        marks: dict[str, dict[str, Any]] = {}
        for entry_id, raw in zip(ids, values[: len(ids)], strict=True):
            if raw is not None:
                with contextlib.suppress(ValueError):
                    failures[entry_id] = int(raw)
        for entry_id, raw in zip(ids, values[len(ids) :], strict=True):
            if raw is not None:
                with contextlib.suppress(ValueError):
                    marks[entry_id] = json.loads(raw)
        return counts, failures, marks

    # ------------------------------------------------------------------ handling

    async def _process(
        self,
        stream: str,
        entries: Sequence[Sequence[Any]],
        *,
        redelivery: bool,
        flat: bool = False,
    ) -> None:
        async with self._handling:
            await self._process_locked(stream, entries, redelivery=redelivery, flat=flat)

    async def _process_locked(
        self,
        stream: str,
        entries: Sequence[Sequence[Any]],
        *,
        redelivery: bool,
        flat: bool = False,
    ) -> None:
        """Handle a read's entries and acknowledge what is done. `flat`: each entry's fields
        are the name/value list Redis sent (`_read_new`), else a mapping (redis-py's parsing)."""
        handler = self.handlers[stream]
        to_ack: list[Any] = []  # entry ids (raw bytes on a first delivery, str on a redelivery)
        clear: list[str] = []  # entries with failure records to delete on ack
        failed_now: list[str] = []
        dead: list[_Dead] = []
        handled: dict[str, int] = {}  # successes per type, counted once per batch
        timings: dict[str, list[float]] = {}  # handler seconds per type, observed per batch
        try:
            if redelivery or self.config.max_crash_deliveries < 1:
                if flat:
                    entries = [(e[0], fields_of(e[1]) if e[1] else e[1]) for e in entries]
                await self._handle_again(
                    stream, handler, entries, to_ack, clear, failed_now, dead, handled, timings
                )
            else:
                await self._handle_first(
                    stream, handler, entries, to_ack, failed_now, dead, handled, timings, flat
                )
        finally:
            self._flush_metrics(stream, handled, timings)
        if failed_now:
            await self._record_failures(stream, failed_now)
        if dead:
            acked_dead = await self._dead_letter(stream, dead)
            to_ack.extend(acked_dead)
            clear.extend(i for i in acked_dead if i not in clear)  # its `:dead` marker goes too
        if to_ack:
            group = self.config.group
            done = set(to_ack)
            clear = [i for i in clear if i in done]
            if clear:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.xack(stream, group, *to_ack)
                    pipe.hdel(failures_key(stream, group), *clear, *(f"{i}:dead" for i in clear))
                    await pipe.execute()
            elif len(to_ack) == len(entries):  # the whole batch: its raw ids, nothing to encode
                await self.redis.xack(stream, group, *[e[0] for e in entries])
            else:
                await self.redis.xack(stream, group, *to_ack)
        if self.health is not None:
            self.health.beat()

    def _is_batch_handler(self, handler: Handler) -> bool:
        known = self._batch_handlers.get(id(handler))
        if known is None or known[0] is not handler:
            known = self._batch_handlers[id(handler)] = (
                handler,
                isinstance(handler, BatchHandler),
            )
        return known[1]

    def _children_of(self, stream: str, type_name: str) -> tuple[Any, Any]:
        children = self._children.get((stream, type_name))
        if children is None:
            group = self.config.group
            children = self._children[(stream, type_name)] = (
                HANDLED.labels(stream, group, type_name),
                HANDLER_SECONDS.labels(stream, group, type_name),
            )
        return children

    async def _handle_first(
        self,
        stream: str,
        handler: Handler,
        entries: Sequence[Sequence[Any]],
        to_ack: list[Any],
        failed_now: list[str],
        dead: list[_Dead],
        handled: dict[str, int],
        timings: dict[str, list[float]],
        flat: bool = False,
    ) -> None:
        """A first delivery (the hot path): no delivery counts, failure records or marks to
        look up, so an entry is decoded, handled and acknowledged by its raw id. What happens
        to each entry is what `_handle_again` does with one delivery and no earlier failure.
        `flat`: fields as Redis sent them, made a mapping only for an entry that fails."""
        decoded: dict[int, Envelope] = {}
        batched: set[str] = set()  # envelope ids the handler's batch step handled
        share = 0.0  # its time, per entry
        decode = decode_flat if flat else decode_envelope
        if self._is_batch_handler(handler):
            decoded, batched, share = await self._batch(
                stream, cast(BatchHandler, handler), entries, decode
            )
        clock = time.perf_counter
        last_type = ""  # the type of the entry before and its timing list: a read is
        last_times: list[float] = []  # mostly of one type
        for n, (entry_id, fields) in enumerate(entries):
            if not fields:  # trimmed or deleted before it was read: nothing to handle
                to_ack.append(entry_id)
                continue
            envelope = decoded.get(n) if decoded else None
            if envelope is None:
                try:
                    envelope = decode(fields)
                except MessageDecodeError as exc:
                    error = f"undecodable: {exc}"
                    kept = _mapping_of(fields) if flat else fields
                    dead.append(_Dead(_s(entry_id), kept, error, "undecodable", 1, 0, None))
                    continue
            type_name = envelope.type
            if type_name != last_type:
                self._children_of(stream, type_name)
                last_type = type_name
                last_times = timings.setdefault(type_name, [])
            if batched and envelope.id in batched:
                last_times.append(share)
                handled[type_name] = handled.get(type_name, 0) + 1
                to_ack.append(entry_id)
                continue
            started = clock()
            try:
                await handler(envelope)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last_times.append(clock() - started)
                kept = _mapping_of(fields) if flat else fields
                self._handler_failed(
                    stream, _s(entry_id), kept, envelope, exc, 1, 0, failed_now, dead
                )
                continue
            last_times.append(clock() - started)
            handled[type_name] = handled.get(type_name, 0) + 1
            to_ack.append(entry_id)

    def _handler_failed(
        self,
        stream: str,
        entry_id: str,
        fields: Mapping[Any, Any],
        envelope: Envelope,
        exc: Exception,
        deliveries: int,
        earlier_failures: int,
        failed_now: list[str],
        dead: list[_Dead],
    ) -> None:
        """A handler raised: a `PermanentError` is dead-lettered at once (it cannot succeed on
        a retry); anything else stays pending for a retry until `max_deliveries` failures."""
        group = self.config.group
        FAILED.labels(stream, group, envelope.type).inc()
        if isinstance(exc, PermanentError):
            dead.append(
                _Dead(
                    entry_id,
                    fields,
                    f"{exc.code}: {exc}",
                    "permanent",
                    deliveries,
                    earlier_failures + 1,
                    envelope,
                )
            )
            return
        failed = earlier_failures + 1
        log.warning(
            "bus.handler_failed",
            stream=stream,
            group=group,
            entry=entry_id,
            type=envelope.type,
            deliveries=deliveries,
            failures=failed,
            error=repr(exc)[:500],
        )
        if failed >= self.config.max_deliveries:
            error = f"failed {failed} times: {exc!r}"
            dead.append(_Dead(entry_id, fields, error, "failed", deliveries, failed, envelope))
        else:
            failed_now.append(entry_id)  # stays pending; retried after retry_idle_ms

    async def _handle_again(
        self,
        stream: str,
        handler: Handler,
        entries: Sequence[Sequence[Any]],
        to_ack: list[Any],
        clear: list[str],
        failed_now: list[str],
        dead: list[_Dead],
        handled: dict[str, int],
        timings: dict[str, list[float]],
    ) -> None:
        """A redelivery: each entry's delivery count, earlier failures and dead-letter mark
        decide whether it is handled again or dead-lettered."""
        ids = [_s(e[0]) for e in entries]
        counts, failures, marks = await self._delivery_state(stream, ids)
        group = self.config.group
        for entry_id, (_, fields) in zip(ids, entries, strict=True):
            earlier_failures = failures.get(entry_id, 0)
            if earlier_failures or entry_id in marks:
                clear.append(entry_id)
            if not fields:  # trimmed or deleted while pending: nothing to handle
                to_ack.append(entry_id)
                continue
            deliveries = counts.get(entry_id, 1)
            if deliveries > 1:
                REDELIVERED.labels(stream, group).inc()
            mark = marks.get(entry_id)
            envelope: Envelope | None
            try:
                envelope = decode_envelope(fields)
            except MessageDecodeError as exc:
                if mark is None:
                    mark = {"error": f"undecodable: {exc}", "reason": "undecodable"}
                envelope = None
            if mark is not None:  # undecodable now, or dead-lettered before (its hook failed)
                dead.append(
                    _Dead(
                        entry_id,
                        fields,
                        str(mark.get("error", "")),
                        str(mark.get("reason", "")),
                        deliveries,
                        earlier_failures,
                        envelope,
                        written=entry_id in marks,
                    )
                )
                continue
            assert envelope is not None
            crashes = deliveries - 1 - earlier_failures
            if crashes >= self.config.max_crash_deliveries:
                error = (
                    f"delivered {deliveries} times, {crashes} of them ended without the "
                    "handler finishing (it keeps killing its consumer)"
                )
                dead.append(
                    _Dead(
                        entry_id, fields, error, "crashes", deliveries, earlier_failures, envelope
                    )
                )
                continue
            self._children_of(stream, envelope.type)
            started = time.perf_counter()
            try:
                await handler(envelope)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                timings.setdefault(envelope.type, []).append(time.perf_counter() - started)
                self._handler_failed(
                    stream,
                    entry_id,
                    fields,
                    envelope,
                    exc,
                    deliveries,
                    earlier_failures,
                    failed_now,
                    dead,
                )
                continue
            timings.setdefault(envelope.type, []).append(time.perf_counter() - started)
            handled[envelope.type] = handled.get(envelope.type, 0) + 1
            to_ack.append(entry_id)

    async def _batch(
        self,
        stream: str,
        handler: BatchHandler,
        entries: Sequence[Sequence[Any]],
        decode: Callable[[Any], Envelope] = decode_envelope,
    ) -> tuple[dict[int, Envelope], set[str], float]:
        """Offer a first delivery's decodable entries to the handler's batch step: the
        envelopes decoded (by position, reused one by one after), the ids it handled and its
        time per handled entry. A failure of the step is logged; its entries then go one by
        one (each failure counted there, as always)."""
        decoded: dict[int, Envelope] = {}
        urgent = urgent_first(handler)
        later: list[int] = []
        for n, (_, fields) in enumerate(entries):
            if not fields:
                continue
            if urgent is not None:
                data = _raw_data(fields, decode is decode_flat)
                if isinstance(data, bytes) and not urgent(data):
                    later.append(n)
                    continue
            with contextlib.suppress(MessageDecodeError):  # dead-lettered one by one
                decoded[n] = decode(fields)
        started = time.perf_counter()
        done: set[str] = set()
        if decoded:
            ok, done = await self._offer(stream, handler, list(decoded.values()))
            if not ok:  # the rest decoded for the one-by-one path, without a second step
                self._decode_into(decoded, entries, later, decode)
                return decoded, set(), 0.0
        if later:
            rest = self._decode_into(decoded, entries, later, decode)
            if rest:
                ok, done_later = await self._offer(stream, handler, rest)
                if ok:
                    done = done | done_later if done else done_later
        if not done:
            return decoded, done, 0.0
        return decoded, done, (time.perf_counter() - started) / len(done)

    @staticmethod
    def _decode_into(
        decoded: dict[int, Envelope],
        entries: Sequence[Sequence[Any]],
        positions: list[int],
        decode: Callable[[Any], Envelope],
    ) -> list[Envelope]:
        """Decode the entries at `positions` into `decoded`; the envelopes, in order."""
        out: list[Envelope] = []
        for n in positions:
            with contextlib.suppress(MessageDecodeError):  # dead-lettered one by one
                envelope = decoded[n] = decode(entries[n][1])
                out.append(envelope)
        return out

    async def _offer(
        self, stream: str, handler: BatchHandler, envelopes: list[Envelope]
    ) -> tuple[bool, set[str]]:
        """One batch step: whether it ran, and the ids it handled. A failure is logged; its
        entries then go one by one (each failure counted there, as always)."""
        try:
            return True, await handler.batch(envelopes)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "bus.batch_failed",
                stream=stream,
                group=self.config.group,
                entries=len(envelopes),
                error=repr(exc)[:500],
            )
            return False, set()

    def _flush_metrics(
        self, stream: str, handled: dict[str, int], timings: dict[str, list[float]]
    ) -> None:
        """Count a batch's successes and observe its handler times, once per type."""
        for type_name, n in handled.items():
            self._children[(stream, type_name)][0].inc(n)
        for type_name, seconds in timings.items():
            observe_many(self._children[(stream, type_name)][1], seconds)

    async def _record_failures(self, stream: str, ids: list[str]) -> None:
        key = failures_key(stream, self.config.group)
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.hincrby(key, entry_id, 1)
            pipe.expire(key, FAILURES_TTL_SECONDS)
            await pipe.execute()

    async def _dead_letter(self, stream: str, dead: list[_Dead]) -> list[str]:
        """Write the DLQ records (once), run the hook; the ids that may be acknowledged."""
        group = self.config.group
        new = [d for d in dead if not d.written]
        if new:
            key = failures_key(stream, group)
            now = utcnow().isoformat()
            async with self.redis.pipeline(transaction=False) as pipe:
                for d in new:
                    record, lossless = dlq_fields(d.fields)
                    record.update(
                        {
                            "dlq_stream": stream,
                            "dlq_entry_id": d.entry_id,
                            "dlq_group": group,
                            "dlq_error": escape(d.error, 2000),
                            "dlq_reason": d.reason,
                            "dlq_deliveries": str(d.deliveries),
                            "dlq_failures": str(d.failures),
                            "dlq_lossless": "1" if lossless else "0",
                            "dlq_at": now,
                        }
                    )
                    pipe.xadd(dlq_name(stream), record, maxlen=DLQ_MAXLEN, approximate=True)
                    mark = {"error": escape(d.error, 2000), "reason": d.reason}
                    pipe.hset(key, f"{d.entry_id}:dead", json.dumps(mark))
                pipe.expire(key, FAILURES_TTL_SECONDS)
                await pipe.execute()
            for d in new:
                DEAD_LETTERED.labels(stream, group).inc()
                DEAD_LETTER_REASONS.labels(stream, group, d.reason).inc()
                log.error(
                    "bus.dead_lettered",
                    stream=stream,
                    group=group,
                    entry=d.entry_id,
                    type=d.envelope.type if d.envelope is not None else None,
                    reason=d.reason,
                    deliveries=d.deliveries,
                    failures=d.failures,
                    error=escape(d.error, 300),
                )
        if self.on_dead_letter is None:
            return [d.entry_id for d in dead]
        ackable: list[str] = []
        for d in dead:
            letter = DeadLetter(
                stream=stream,
                entry_id=d.entry_id,
                group=group,
                error=escape(d.error, 2000),
                deliveries=d.deliveries,
                envelope=d.envelope,
                fields={
                    escape(k, 200): escape(v) for k, v in list(d.fields.items())[:DLQ_MAX_FIELDS]
                },
            )
            try:
                await self.on_dead_letter(letter)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                DEAD_LETTER_HOOK_FAILED.labels(stream, group).inc()
                log.error(
                    "bus.dead_letter_hook_failed",
                    stream=stream,
                    group=group,
                    entry=d.entry_id,
                    error=repr(exc)[:300],
                    exc_info=exc,
                )
                continue  # stays pending: the hook runs again on the next delivery
            ackable.append(d.entry_id)
        return ackable

    # ------------------------------------------------------------------ gauges

    async def _update_gauges(self, stream: str) -> str | None:
        """Export pending, lag and DLQ length; a backlog past its bound, described."""
        info = await group_info(self.redis, stream, self.config.group)
        problem = None
        if info is not None:
            PENDING.labels(stream, self.config.group).set(info.pending)
            LAG.labels(stream, self.config.group).set(info.lag)
            # error counters exported from the start (0) for each group, for the dashboards
            REDELIVERED.labels(stream, self.config.group)
            DEAD_LETTERED.labels(stream, self.config.group)
            DEAD_LETTER_HOOK_FAILED.labels(stream, self.config.group)
            if self.config.max_pending and info.pending > self.config.max_pending:
                problem = f"{stream}: {info.pending} pending > {self.config.max_pending}"
            elif self.config.max_lag and info.lag > self.config.max_lag:
                problem = f"{stream}: lag {info.lag} > {self.config.max_lag}"
        DLQ_LENGTH.labels(stream).set(await self.redis.xlen(dlq_name(stream)))
        return problem


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
            rest: Any = await redis.xrange(stream, min=f"({last}", max="+", count=LAG_COUNT_CAP)
            lag = len(rest)
        return GroupInfo(stream, group, int(g["pending"]), int(lag), last)
    return None
