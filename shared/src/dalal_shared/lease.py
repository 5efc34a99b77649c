"""A Redis lease: one holder of a single-writer role (the scheduler, the ticker connection).

`SET key owner NX PX ttl` takes it; the holder renews it well before it lapses (a Lua check that
it still owns it); a holder that dies lets it lapse, and a waiting replica takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import redis.asyncio as aioredis

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    def __init__(self, redis: aioredis.Redis, name: str, *, ttl_seconds: float, owner: str = ""):
        self.redis = redis
        self.key = f"lease:{name}"
        self.ttl_ms = int(ttl_seconds * 1000)
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self) -> bool:
        """Take or keep the lease; False when another process holds it."""
        if await self._renew(keys=[self.key], args=[self.owner, self.ttl_ms]):
            return True
        return bool(await self.redis.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    async def release(self) -> None:
        """Give the lease up at once (a shutdown). Bounded by the TTL: a release that cannot
        reach Redis in time changes nothing the TTL would not (the lease lapses anyway), and a
        stopping process must not hang on it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._release(keys=[self.key], args=[self.owner]), timeout=self.ttl_ms / 1000
            )

    async def holder(self) -> str | None:
        raw = await self.redis.get(self.key)
        return raw.decode() if raw else None
