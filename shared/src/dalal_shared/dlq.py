"""Dead-letter queues: list, show, replay and delete the entries in `dlq.<stream>`.

A DLQ record (written by `dalal_shared.bus`) holds the original entry's fields as they were
(when they are valid UTF-8 of at most 64 KiB each; others escaped and base64-encoded in
`dlq_raw`) plus

`dlq_stream`, `dlq_entry_id`, `dlq_group` (the consumer group that gave up), `dlq_error`,
`dlq_reason` (undecodable | permanent | failed | crashes), `dlq_deliveries`, `dlq_failures`,
`dlq_lossless` ("1" when the original fields are kept exactly) and `dlq_at` (UTC).

Replay re-publishes the original fields, envelope id included, to the original stream (so
idempotent consumers that already applied it dedupe) and deletes the record. Several groups may
dead-letter the same entry (the broker and the portfolio both read `orders.commands`): a replay
publishes each original entry once and deletes all of its records. A record that is not
lossless cannot be replayed (its bytes were never a valid envelope anyway).

Synchronous (redis-py): the `dalal dlq` CLI and runbooks use it directly against Redis.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from dalal_shared.bus import DLQ_PREFIX, dlq_name, escape

META_PREFIX = "dlq_"


class DlqError(Exception):
    """A DLQ operation that cannot be done (the message says which value is wrong)."""


@dataclass(frozen=True)
class DeadEntry:
    """One record of `dlq.<stream>`."""

    dlq_id: str
    stream: str
    entry_id: str
    group: str
    error: str
    reason: str
    deliveries: int
    failures: int
    lossless: bool
    at: str
    fields: dict[str, str] = field(default_factory=dict)  # the original fields (kept ones)
    raw: str | None = None  # JSON of escaped fields, when some were not kept as they were

    @property
    def type(self) -> str | None:
        return self.fields.get("type")

    @property
    def envelope_id(self) -> str | None:
        return self.fields.get("id")

    def summary(self) -> dict[str, Any]:
        return {
            "dlq_id": self.dlq_id,
            "stream": self.stream,
            "entry_id": self.entry_id,
            "group": self.group,
            "type": self.type,
            "envelope_id": self.envelope_id,
            "reason": self.reason,
            "error": self.error,
            "deliveries": self.deliveries,
            "failures": self.failures,
            "lossless": self.lossless,
            "at": self.at,
        }

    def detail(self) -> dict[str, Any]:
        return {**self.summary(), "fields": self.fields, "raw": self.raw}


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _parse(dlq_stream: str, dlq_id: Any, raw: dict[Any, Any]) -> DeadEntry:
    fields = {escape(k, 200): escape(v) for k, v in raw.items()}
    meta = {k: v for k, v in fields.items() if k.startswith(META_PREFIX)}
    original = {k: v for k, v in fields.items() if not k.startswith(META_PREFIX)}
    return DeadEntry(
        dlq_id=escape(dlq_id),
        stream=meta.get("dlq_stream") or dlq_stream.removeprefix(DLQ_PREFIX),
        entry_id=meta.get("dlq_entry_id", ""),
        group=meta.get("dlq_group", ""),
        error=meta.get("dlq_error", ""),
        reason=meta.get("dlq_reason", ""),
        deliveries=_int(meta.get("dlq_deliveries")),
        failures=_int(meta.get("dlq_failures")),
        # records written before dlq_lossless existed held the fields as they were
        lossless=meta.get("dlq_lossless", "1") == "1" and "dlq_raw" not in meta,
        at=meta.get("dlq_at", ""),
        fields=original,
        raw=meta.get("dlq_raw"),
    )


class DeadLetters:
    """The DLQs of one Redis (synchronous client)."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def streams(self) -> dict[str, int]:
        """Every stream with a DLQ, and how many records wait in it."""
        out: dict[str, int] = {}
        for key in self.redis.scan_iter(match=f"{DLQ_PREFIX}*", count=500, _type="stream"):
            name = escape(key)
            out[name.removeprefix(DLQ_PREFIX)] = int(self.redis.xlen(key))
        return dict(sorted(out.items()))

    def list(self, stream: str, *, limit: int = 100) -> builtins.list[DeadEntry]:
        key = dlq_name(stream)
        rows: Any = self.redis.xrange(key, count=limit)
        return [_parse(key, i, f) for i, f in rows]

    def list_all(self, *, limit: int = 100) -> builtins.list[DeadEntry]:
        out: builtins.list[DeadEntry] = []
        for stream in self.streams():
            out.extend(self.list(stream, limit=limit))
        return out

    def find(self, dlq_id: str, stream: str | None = None) -> DeadEntry:
        """The record with this DLQ id (searched in every DLQ unless `stream` is given); its
        original entry id or envelope id are accepted too."""
        streams = [stream] if stream else list(self.streams())
        for s in streams:
            key = dlq_name(s)
            try:
                rows: Any = self.redis.xrange(key, min=dlq_id, max=dlq_id, count=1)
            except redis.ResponseError:
                rows = []  # not a stream id: maybe an envelope id
            if rows:
                return _parse(key, rows[0][0], rows[0][1])
            for entry in self.list(s, limit=10_000):
                if dlq_id in (entry.entry_id, entry.envelope_id):
                    return entry
        where = f"dlq.{stream}" if stream else "any DLQ"
        raise DlqError(f"no dead letter {dlq_id!r} in {where}")

    def replay(self, entries: Iterable[DeadEntry], *, maxlen: int = 100_000) -> builtins.list[str]:
        """Publish each original entry again (once per original entry id, even when several
        groups dead-lettered it) to its stream; delete its records. The new stream ids."""
        chosen = list(entries)
        bad = [e for e in chosen if not e.lossless or not e.fields]
        if bad:
            raise DlqError(
                f"dead letter {bad[0].dlq_id} of {bad[0].stream} ({bad[0].reason}) was stored "
                "lossy (bytes that are not UTF-8 or too large): it cannot be replayed; "
                "inspect it with `dalal dlq show` and purge it"
            )
        published: builtins.list[str] = []
        done: set[tuple[str, str]] = set()
        for entry in chosen:
            key = (entry.stream, entry.entry_id or entry.dlq_id)
            if key not in done:
                fields: dict[Any, Any] = dict(entry.fields)
                new_id = self.redis.xadd(entry.stream, fields, maxlen=maxlen, approximate=True)
                published.append(escape(new_id))
                done.add(key)
            self.redis.xdel(dlq_name(entry.stream), entry.dlq_id)
        # records of the same original entry written by other groups go too
        for stream, entry_id in done:
            for other in self.list(stream, limit=10_000):
                if other.entry_id == entry_id:
                    self.redis.xdel(dlq_name(stream), other.dlq_id)
        return published

    def delete(self, entries: Iterable[DeadEntry]) -> int:
        n = 0
        for entry in entries:
            n += int(self.redis.xdel(dlq_name(entry.stream), entry.dlq_id))
        return n

    def purge(self, stream: str) -> int:
        """Delete every record of `dlq.<stream>`; how many there were."""
        key = dlq_name(stream)
        n = int(self.redis.xlen(key))
        self.redis.delete(key)
        return n
