"""Live updates for the pages: the bus's event streams as server-sent events.

Each open page holds one `GET /api/events` stream. The console reads the event streams with
plain XREAD from the newest entry on (no consumer group: it takes nothing from the services'
groups and acknowledges nothing) and passes each entry on as `{stream, type, id, ts, data}`.
Commands (`orders.commands`) and ticks are not passed on: pages show what happened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from dalal_shared.streams import ENGINE_DECISIONS, ORDERS_EVENTS, PORTFOLIO_EVENTS, SYSTEM_EVENTS

EVENT_STREAMS = (ORDERS_EVENTS, PORTFOLIO_EVENTS, SYSTEM_EVENTS, ENGINE_DECISIONS)
HEARTBEAT_MS = 10_000
# the client reading the streams waits this long for an answer: longer than a blocked XREAD
# (redis-py's own default, 5 s, would end every quiet read in a timeout: "bus down")
READ_TIMEOUT_SECONDS = HEARTBEAT_MS / 1000 + 10


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def event_of(stream: str, fields: dict[Any, Any]) -> dict[str, Any] | None:
    """The page's view of one stream entry (None for an entry that is not an envelope)."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    if "type" not in f or "data" not in f:
        return None
    try:
        data = json.loads(f["data"])
    except ValueError:
        return None
    return {"stream": stream, "type": f["type"], "id": f.get("id"), "ts": f.get("ts"), "data": data}


def sse(event: str, payload: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def event_stream(
    client: aioredis.Redis, disconnected: Callable[[], Awaitable[bool]]
) -> AsyncIterator[bytes]:
    """SSE bytes until the page goes away; a Redis outage is reported and retried. `hello`
    comes once the stream's starting point is fixed: every entry added after it is sent."""
    last: dict[Any, Any] = {}
    yield b"retry: 2000\n\n"
    greeted = False
    while not await disconnected():
        try:
            if not last:  # start after the newest entry of each stream
                for name in EVENT_STREAMS:
                    newest = await client.xrevrange(name, count=1)
                    last[name] = newest[0][0] if newest else "0-0"
                if not greeted:
                    greeted = True
                    yield sse("hello", {"streams": list(EVENT_STREAMS)})
            batches: Any = await client.xread(last, count=200, block=HEARTBEAT_MS)
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            yield sse("bus", {"connected": False})
            last = {}
            await asyncio.sleep(1.0)  # a pause before asking a Redis that is down again
            continue
        if not batches:
            yield b": keep-alive\n\n"
            continue
        for name, entries in batches:
            stream = _text(name)
            for entry_id, fields in entries:
                last[stream] = entry_id
                view = event_of(stream, fields)
                if view is not None:
                    yield sse("bus", view)
