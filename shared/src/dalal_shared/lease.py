"""A Redis lease: one holder of a single-writer role (the order placer, the ticker connection,
the scheduler).

`SET key owner NX PX ttl` takes it; the holder renews it well before it lapses (a Lua check that
it still owns it); a holder that dies lets it lapse, and a waiting replica takes over.

`LeaseLoop` is the loop every holder runs: it renews every `ttl/3`, calls `on_acquired` when it
becomes the holder and `on_lost` when it stops being one, and survives anything. A Redis
timeout or outage counts as "not held" (the role stops here: another replica may take it once
the TTL lapses), and each acquire is bounded so a wedged socket cannot keep a process believing
it holds a lease that has lapsed. An `on_acquired` that raises is undone (`on_lost`) and tried
again after a back-off. The loop reports to the task registry (`lease:<name>`), so `/readyz`
is red while it is in back-off or wedged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from dalal_shared.health import TaskRegistry, task_registry
from dalal_shared.logging import get_logger

log = get_logger(__name__)

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
        self.name = name
        self.key = f"lease:{name}"
        self.ttl_ms = int(ttl_seconds * 1000)
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def ttl_seconds(self) -> float:
        return self.ttl_ms / 1000

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
        raw: Any = await self.redis.get(self.key)
        return raw.decode() if raw else None


Transition = Callable[[], Awaitable[None]]


class LeaseLoop:
    """Hold `lease` for as long as the process lives (see the module docstring)."""

    def __init__(
        self,
        lease: Lease,
        *,
        on_acquired: Transition,
        on_lost: Transition,
        renew_every_seconds: float | None = None,
        max_backoff_seconds: float = 30.0,
        registry: TaskRegistry | None = None,
        task_name: str | None = None,
    ):
        self.lease = lease
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.renew_every = renew_every_seconds or lease.ttl_seconds / 3
        self.max_backoff = max_backoff_seconds
        self.registry = registry or task_registry()
        self.task_name = task_name or f"lease:{lease.name}"
        self.held = False

    async def _acquire(self) -> bool:
        # bounded: past the TTL an answer means nothing (the lease may have lapsed meanwhile).
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that lands
        # as the call completes, and the loop would then outlive its process's shutdown
        async with asyncio.timeout(self.renew_every):
            return await self.lease.acquire()

    async def run(self) -> None:
        health = self.registry.register(
            self.task_name, stale_after_seconds=max(10 * self.renew_every, 30.0)
        )
        backoff = self.renew_every
        try:
            while True:
                error: str | None = None
                try:
                    held = await self._acquire()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    held, error = False, f"{type(exc).__name__}: {exc}"[:300]
                    log.warning("lease.error", lease=self.lease.name, error=error)
                if held and not self.held:
                    try:
                        await self.on_acquired()
                        self.held = True
                        log.info("lease.acquired", lease=self.lease.name, holder=self.lease.owner)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        error = f"taking up the role failed: {type(exc).__name__}: {exc}"[:300]
                        log.error("lease.start_failed", lease=self.lease.name, exc_info=exc)
                        await self._undo()
                        with contextlib.suppress(Exception):
                            await self.lease.release()  # let a healthier replica take it
                elif not held and self.held:
                    log.warning("lease.lost", lease=self.lease.name, holder=self.lease.owner)
                    await self._undo()
                if error is None:
                    health.beat()
                    backoff = self.renew_every
                    wait = self.renew_every
                else:
                    health.backoff(error)
                    wait = backoff
                    backoff = min(backoff * 2, self.max_backoff)
                await asyncio.sleep(wait)
        finally:
            health.close()

    async def _undo(self) -> None:
        self.held = False
        try:
            await self.on_lost()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("lease.stop_failed", lease=self.lease.name, exc_info=exc)
