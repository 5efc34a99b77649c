"""Kite's limits held by Redis token buckets that every replica shares."""

from __future__ import annotations

import itertools

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dalal_shared.ratelimit import (
    Bucket,
    DailyCapReached,
    EndpointClass,
    RateLimiter,
    RateLimitTimeout,
)

_EXAMPLES = itertools.count()
T0 = 1_750_000_000_000  # a fixed millisecond clock for deterministic tests


async def test_historical_allows_three_per_second_then_asks_to_wait(aredis: aioredis.Redis):
    limiter = RateLimiter(aredis)
    for _ in range(3):
        assert (await limiter.try_acquire("historical", now_ms=T0))[0]
    granted, wait = await limiter.try_acquire("historical", now_ms=T0)
    assert not granted
    assert wait == pytest.approx(1 / 3, abs=0.002)
    assert (await limiter.try_acquire("historical", now_ms=T0 + 334))[0]
    assert not (await limiter.try_acquire("historical", now_ms=T0 + 334))[0]


async def test_orders_obey_both_the_second_and_the_minute_bucket(aredis: aioredis.Redis):
    limiter = RateLimiter(aredis)
    granted = 0
    # one attempt every 50 ms for a minute: the 10/s bucket alone would allow 600
    for step in range(1200):
        ok, _ = await limiter.try_acquire("orders", now_ms=T0 + step * 50)
        granted += ok
    assert granted <= 200 + 60 * 200 / 60  # capacity + refill over the minute
    assert granted >= 200


async def test_daily_order_cap_is_refused_permanently(aredis: aioredis.Redis):
    limits = {"orders": EndpointClass("orders", (Bucket(1000, 1.0),), daily_cap=5)}
    limiter = RateLimiter(aredis, limits=limits)
    for i in range(5):
        assert (await limiter.try_acquire("orders", now_ms=T0 + i))[0]
    with pytest.raises(DailyCapReached) as exc:
        await limiter.try_acquire("orders", now_ms=T0 + 10)
    assert exc.value.code == "daily_order_cap"


async def test_limit_is_shared_between_independent_clients(redis_url: str):
    """Two limiter instances on two connections (two replicas) share one budget."""
    a = aioredis.Redis.from_url(redis_url)
    b = aioredis.Redis.from_url(redis_url)
    try:
        la, lb = RateLimiter(a), RateLimiter(b)
        results = [
            (await la.try_acquire("quote", now_ms=T0))[0],
            (await lb.try_acquire("quote", now_ms=T0))[0],
        ]
        assert results == [True, False]
    finally:
        await a.aclose()
        await b.aclose()


class FakeTime:
    """An epoch clock that moves only when the limiter sleeps on it."""

    def __init__(self, start_ms: int = T0) -> None:
        self.now = start_ms / 1000
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_acquire_waits_instead_of_failing(aredis: aioredis.Redis):
    t = FakeTime()
    limiter = RateLimiter(aredis, clock=t.clock, sleep=t.sleep)
    waits = [await limiter.acquire("historical") for _ in range(6)]
    # six tokens at 3/s from a full bucket of 3: the first three at once, each later one a
    # third of a second after the one before
    assert waits[:3] == [0, 0, 0]
    for w in waits[3:]:
        assert w == pytest.approx(1 / 3, abs=0.01)
    assert t.now - T0 / 1000 == pytest.approx(1.0, abs=0.02)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(gaps=st.lists(st.integers(min_value=0, max_value=2_000), min_size=1, max_size=60))
async def test_never_more_than_capacity_plus_refill(aredis: aioredis.Redis, gaps: list[int]):
    """Whatever the request times, the orders class grants at most its burst plus what its
    buckets refill over the span, and never refuses a request that finds a full bucket."""
    limits = {"orders": EndpointClass("orders", (Bucket(5, 2.0),), daily_cap=None)}
    limiter = RateLimiter(aredis, namespace=f"prop-{next(_EXAMPLES)}", limits=limits)
    now, granted = T0, 0
    for gap in gaps:
        now += gap
        ok, wait = await limiter.try_acquire("orders", now_ms=now)
        granted += ok
        assert ok or wait > 0
    span_seconds = (now - T0) / 1000
    assert 1 <= granted <= 5 + 2.5 * span_seconds + 1e-9  # 5 tokens per 2 s


async def test_acquire_gives_up_after_its_timeout(aredis: aioredis.Redis):
    limiter = RateLimiter(aredis)
    await limiter.acquire("quote")
    with pytest.raises(RateLimitTimeout) as exc:
        await limiter.acquire("quote", timeout_seconds=0.1)
    assert exc.value.status_code == 429


async def test_unknown_endpoint_class_is_named(aredis: aioredis.Redis):
    with pytest.raises(Exception, match="'bogus'"):
        await RateLimiter(aredis).try_acquire("bogus")
