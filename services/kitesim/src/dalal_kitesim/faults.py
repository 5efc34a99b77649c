"""Kite's rate limits and injected faults, both deterministic within a test.

Rate limits are token buckets per endpoint class (quote, historical, orders, other) as Kite
documents them; a request over the limit gets HTTP 429 with a NetworkException. Faults are queued
through the control API and consumed by the next matching requests, in order: each has a count,
so a test knows exactly which request meets it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

RouteClass = Literal["quote", "historical", "orders", "other"]
FaultKind = Literal["status", "latency", "timeout_after_accept"]


def route_class(method: str, path: str) -> RouteClass:
    if path.startswith("/quote"):
        return "quote"
    if path.startswith("/instruments/historical"):
        return "historical"
    if path.startswith("/orders") and method in ("POST", "PUT", "DELETE"):
        return "orders"
    return "other"


class TokenBucket:
    def __init__(self, rate_per_second: float, capacity: float | None = None):
        self.rate = rate_per_second
        self.capacity = capacity if capacity is not None else max(1.0, rate_per_second)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class RateLimiter:
    """Kite's per-class limits (requests per second; orders also per minute). 0 = unlimited."""

    def __init__(
        self,
        *,
        quote: float,
        historical: float,
        orders: float,
        orders_per_minute: float,
        other: float,
    ):
        self.buckets: dict[RouteClass, list[TokenBucket]] = {
            "quote": [TokenBucket(quote)],
            "historical": [TokenBucket(historical)],
            "orders": [TokenBucket(orders)],
            "other": [TokenBucket(other)],
        }
        if orders_per_minute > 0:
            self.buckets["orders"].append(TokenBucket(orders_per_minute / 60, orders_per_minute))

    def allow(self, cls: RouteClass) -> bool:
        return all(bucket.take() for bucket in self.buckets[cls])

    def configure(self, cls: RouteClass, rate_per_second: float) -> None:
        self.buckets[cls] = [TokenBucket(rate_per_second)]


@dataclass
class Fault:
    kind: FaultKind
    count: int = 1
    status: int = 500
    seconds: float = 0.0
    route: RouteClass | None = None  # None: any Kite route
    html: bool = False  # answer with an HTML body (as a gateway would), not Kite's JSON


class FaultPlan:
    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.count < 1:
            raise ValueError("count must be at least 1")
        if fault.kind == "status" and not 400 <= fault.status <= 599:
            raise ValueError("status must be 4xx or 5xx")
        self.faults.append(fault)

    def clear(self) -> None:
        self.faults.clear()

    def take(self, cls: RouteClass) -> list[Fault]:
        """The faults this request meets (at most one of each kind), each used once."""
        met: list[Fault] = []
        kinds: set[str] = set()
        for fault in list(self.faults):
            if fault.kind in kinds or (fault.route is not None and fault.route != cls):
                continue
            kinds.add(fault.kind)
            met.append(fault)
            fault.count -= 1
            if fault.count <= 0:
                self.faults.remove(fault)
        return met
