"""The end-of-day signal: `SessionClosed(day, closed_at)` on `system.events`, once per session
day whoever runs it (the portfolio takes its end-of-day EquitySnapshot on it).

The marker `data:session_closed:<day>` and the stream entry are written by one Lua script, so
two schedulers (a failover, a restart that catches up) never publish it twice, and a crash can
never leave the marker without the event.
"""

from __future__ import annotations

from datetime import date, datetime

import redis.asyncio as aioredis

from dalal_shared.bus import PUBLISHED
from dalal_shared.messages import Envelope, SessionClosed
from dalal_shared.streams import SYSTEM_EVENTS

MARKER_TTL_SECONDS = 30 * 86400

_ONCE = """
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
end
return false
"""


def marker_key(day: date) -> str:
    return f"data:session_closed:{day.isoformat()}"


async def publish_session_closed(
    redis: aioredis.Redis,
    day: date,
    closed_at: datetime,
    *,
    source: str,
    maxlen: int = 100_000,
) -> str | None:
    """Publish SessionClosed for `day`; the stream entry id, or None when already published."""
    envelope = Envelope.wrap(SessionClosed(day=day, closed_at=closed_at), source=source)
    flat: list[str] = []
    for key, value in envelope.to_fields().items():
        flat += [key, value]
    script = redis.register_script(_ONCE)
    entry = await script(
        keys=[SYSTEM_EVENTS, marker_key(day)],
        args=[envelope.id, MARKER_TTL_SECONDS, maxlen, *flat],
    )
    if entry is None:
        return None
    PUBLISHED.labels(SYSTEM_EVENTS, envelope.type).inc()
    return entry.decode() if isinstance(entry, bytes) else str(entry)
