"""Kite's rate limits as Redis token buckets, shared by every replica and every service.

Kite limits are per API key, not per process (DESIGN.md, "Kite facts"): quote 1 req/s,
historical 3 req/s, orders 10 req/s and 200/min with a daily cap of 3,000, everything else
10 req/s. Each endpoint class is one or more buckets checked and taken atomically by a Lua
script, with Redis' own clock, so any number of callers on any number of machines stay under
the limit together. Callers wait (up to a timeout) instead of meeting HTTP 429.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram

from dalal_shared.errors import PermanentError, TemporaryError
from dalal_shared.timeutil import IST

WAIT_SECONDS = Histogram(
    "dalal_kite_ratelimit_wait_seconds",
    "Time a Kite call waited for its rate-limit token",
    ["endpoint_class"],
    buckets=(0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
TIMEOUTS = Counter(
    "dalal_kite_ratelimit_timeouts_total",
    "Kite calls that gave up waiting for a rate-limit token",
    ["endpoint_class"],
)
DAILY_CAP_HITS = Counter(
    "dalal_kite_ratelimit_daily_cap_total",
    "Kite calls refused because the daily cap of their class was reached",
    ["endpoint_class"],
)


@dataclass(frozen=True)
class Bucket:
    """`capacity` tokens, refilled continuously at `capacity / period_seconds`."""

    capacity: int
    period_seconds: float

    @property
    def refill_per_ms(self) -> float:
        return self.capacity / (self.period_seconds * 1000.0)


@dataclass(frozen=True)
class EndpointClass:
    name: str
    buckets: tuple[Bucket, ...]
    daily_cap: int | None = None


# Kite Connect v3 limits (kite.trade/docs/connect/v3/exceptions, "API rate limit"), as of 2025.
KITE_LIMITS: dict[str, EndpointClass] = {
    "quote": EndpointClass("quote", (Bucket(1, 1.0),)),
    "historical": EndpointClass("historical", (Bucket(3, 1.0),)),
    "orders": EndpointClass("orders", (Bucket(10, 1.0), Bucket(200, 60.0)), daily_cap=3000),
    "other": EndpointClass("other", (Bucket(10, 1.0),)),
}
for _name in KITE_LIMITS:  # exported from the start (0), so dashboards and alerts see each class
    TIMEOUTS.labels(_name)
    DAILY_CAP_HITS.labels(_name)


class RateLimitTimeout(TemporaryError):
    code = "rate_limited"
    status_code = 429


class DailyCapReached(PermanentError):
    code = "daily_order_cap"
    status_code = 429


# KEYS: bucket keys..., daily counter key (or "" for none)
# ARGV: now_ms (or -1 to use Redis TIME), daily_cap (or -1), then per bucket: capacity, refill/ms
# Returns {granted (1/0), wait_ms, daily_count}
_LUA = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local cap = tonumber(ARGV[2])
local nb = #KEYS - 1
local daily_key = KEYS[#KEYS]
if cap >= 0 then
  local used = tonumber(redis.call('GET', daily_key) or '0')
  if used >= cap then return {0, -1, used} end
end
local wait = 0
local levels = {}
for i = 1, nb do
  local capacity = tonumber(ARGV[1 + 2 * i])
  local rate = tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil then tokens = capacity; ts = now end
  if now > ts then tokens = math.min(capacity, tokens + (now - ts) * rate); ts = now end
  levels[i] = {tokens, ts, capacity, rate}
  if tokens < 1 then
    local need = math.ceil((1 - tokens) / rate)
    if need > wait then wait = need end
  end
end
if wait > 0 then return {0, wait, 0} end
for i = 1, nb do
  local l = levels[i]
  redis.call('HSET', KEYS[i], 'tokens', tostring(l[1] - 1), 'ts', tostring(l[2]))
  redis.call('PEXPIRE', KEYS[i], math.ceil(l[3] / l[4]) + 1000)
end
local used = 0
if cap >= 0 then
  used = redis.call('INCR', daily_key)
  redis.call('EXPIRE', daily_key, 172800)
end
return {1, 0, used}
"""


class RateLimiter:
    """Shared token buckets per Kite endpoint class, namespaced by API key."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        namespace: str = "default",
        limits: dict[str, EndpointClass] | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        """`clock` (epoch seconds) replaces Redis' TIME and the monotonic clock of `acquire`,
        and `sleep` its waits: tests drive the buckets through time without waiting."""
        self.redis = redis
        self.namespace = namespace
        self.limits = limits or KITE_LIMITS
        self._clock = clock
        self._sleep = sleep
        self._script = redis.register_script(_LUA)

    def _keys(self, cls: EndpointClass, day: str) -> list[str]:
        base = f"ratelimit:{self.namespace}:{cls.name}"
        keys = [f"{base}:b{i}" for i in range(len(cls.buckets))]
        keys.append(f"{base}:day:{day}" if cls.daily_cap is not None else f"{base}:noday")
        return keys

    async def try_acquire(
        self, endpoint_class: str, *, now_ms: int | None = None
    ) -> tuple[bool, float]:
        """Take a token now if every bucket has one: (granted, seconds to wait otherwise)."""
        cls = self._class(endpoint_class)
        when = datetime.now(IST) if now_ms is None else datetime.fromtimestamp(now_ms / 1000, IST)
        args: list[float | int] = [
            -1 if now_ms is None else now_ms,
            -1 if cls.daily_cap is None else cls.daily_cap,
        ]
        for bucket in cls.buckets:
            args += [bucket.capacity, bucket.refill_per_ms]
        granted, wait_ms, used = await self._script(
            keys=self._keys(cls, when.date().isoformat()), args=args
        )
        if int(wait_ms) == -1:
            DAILY_CAP_HITS.labels(cls.name).inc()
            raise DailyCapReached(
                f"the daily cap of {cls.daily_cap} {cls.name} requests is reached ({used} used); "
                f"it resets at midnight IST"
            )
        return bool(granted), int(wait_ms) / 1000.0

    async def acquire(self, endpoint_class: str, *, timeout_seconds: float = 10.0) -> float:
        """Wait for a token (at most `timeout_seconds`); return the seconds waited."""
        now = self._clock or time.monotonic
        started = now()
        deadline = started + timeout_seconds
        while True:
            now_ms = round(self._clock() * 1000) if self._clock else None
            granted, wait = await self.try_acquire(endpoint_class, now_ms=now_ms)
            if granted:
                waited = now() - started
                WAIT_SECONDS.labels(endpoint_class).observe(waited)
                return waited
            if now() + wait > deadline:
                TIMEOUTS.labels(endpoint_class).inc()
                raise RateLimitTimeout(
                    f"no {endpoint_class} rate-limit token within {timeout_seconds:.1f}s"
                )
            await self._sleep(wait)

    def _class(self, name: str) -> EndpointClass:
        try:
            return self.limits[name]
        except KeyError:
            raise PermanentError(
                f"unknown endpoint class {name!r}; one of {', '.join(self.limits)}"
            ) from None
