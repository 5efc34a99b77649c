"""The shared Kite adapter: one classification of what the official client raises, one retry
policy (reads only), counted in one metric family per service. The rate limiter is the real
one on the test Redis; the Kite calls are functions that raise what kiteconnect raises."""

from __future__ import annotations

import pytest
import requests
from kiteconnect import exceptions as kex
from prometheus_client import REGISTRY

from dalal_shared.kite import (
    KiteCaller,
    KiteRejected,
    KiteSessionError,
    KiteUnavailable,
    classify,
    rate_limited,
)
from dalal_shared.ratelimit import RateLimiter


@pytest.mark.parametrize(
    ("raised", "kind", "code"),
    [
        (kex.TokenException("Incorrect `access_token`.", code=403), KiteSessionError, None),
        (kex.InputException("Invalid `quantity`.", code=400), KiteRejected, "input"),
        (kex.OrderException("Insufficient funds: margin 95000", code=400), KiteRejected, "margin"),
        (kex.GeneralException("Route not found", code=404), KiteRejected, "order"),
        (kex.NetworkException("Too many requests", code=429), KiteUnavailable, None),
        (kex.GeneralException("Internal error", code=500), KiteUnavailable, None),
        (kex.DataException("Unparsable response"), KiteUnavailable, None),
        (requests.ConnectTimeout("timed out"), KiteUnavailable, None),
    ],
)  # fmt: skip
def test_one_classification(raised: Exception, kind: type, code: str | None) -> None:
    mapped = classify(raised)
    assert isinstance(mapped, kind)
    if code is not None:
        assert mapped.code == code  # type: ignore[attr-defined]


def test_a_foreign_error_is_left_alone() -> None:
    error = ValueError("a bug, not Kite")
    assert classify(error) is error


def counted(service: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "dalal_kite_calls_total",
        {"service": service, "endpoint_class": "other", "outcome": outcome},
    )
    return value or 0.0


async def test_reads_are_retried_orders_are_not(aredis) -> None:
    caller = KiteCaller("test-retry", RateLimiter(aredis), max_attempts=4)
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise kex.NetworkException("Too many requests", code=429)
        return "ok"

    assert await caller.call("other", flaky, retry=True) == "ok"
    assert len(attempts) == 3
    assert (counted("test-retry", "unavailable"), counted("test-retry", "ok")) == (2, 1)
    assert (
        REGISTRY.get_sample_value(
            "dalal_kite_429_total", {"service": "test-retry", "endpoint_class": "other"}
        )
        == 2
    )

    attempts.clear()
    with pytest.raises(KiteUnavailable) as once:  # an order: one attempt, the outcome unknown
        await caller.call("other", flaky)
    assert len(attempts) == 1 and rate_limited(once.value)

    def refused() -> None:
        attempts.append(1)
        raise kex.InputException("Invalid `tradingsymbol`.", code=400)

    attempts.clear()
    with pytest.raises(KiteRejected):  # a refusal is never retried, even for a read
        await caller.call("other", refused, retry=True)
    assert len(attempts) == 1
