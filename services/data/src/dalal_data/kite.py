"""The Kite edge of the data service: the official `kiteconnect` client (run in a thread),
behind the shared Redis rate limiter, with retries of Kite's temporary failures only.

A 429 or a 5xx is retried, each attempt taking a fresh limiter token (so retries never exceed
the shared rate); a TokenException means the daily login is missing and is not retried; an
InputException is the caller's fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import kiteconnect.exceptions as kex
import requests
from kiteconnect import KiteConnect
from prometheus_client import Counter

from dalal_shared.errors import PermanentError, TemporaryError
from dalal_shared.logging import get_logger
from dalal_shared.ratelimit import KITE_LIMITS, RateLimiter
from dalal_shared.timeutil import IST

log = get_logger(__name__)
T = TypeVar("T")

KITE_CALLS = Counter(
    "dalal_data_kite_calls_total",
    "Kite REST calls made by the data service, by endpoint class and outcome",
    ["endpoint_class", "outcome"],
)
for _endpoint_class in KITE_LIMITS:  # 429s exported from the start (0), for the dashboards
    KITE_CALLS.labels(_endpoint_class, "429")


class KiteUnavailable(TemporaryError):
    code = "kite_unavailable"
    status_code = 503


class NoKiteSession(PermanentError):
    code = "no_session"
    status_code = 503


class KiteRejected(PermanentError):
    code = "kite_rejected"
    status_code = 502


@dataclass
class CallLog:
    """Monotonic times of every Kite request sent, per endpoint class (tests, benchmarks)."""

    calls: dict[str, list[float]] = field(default_factory=dict)

    def record(self, endpoint_class: str) -> None:
        self.calls.setdefault(endpoint_class, []).append(time.monotonic())

    def count(self, endpoint_class: str) -> int:
        return len(self.calls.get(endpoint_class, []))


TokenSource = Callable[[], Awaitable[str]]


class KiteGateway:
    """Historical candles, instruments and quotes from Kite, rate limited and retried."""

    def __init__(
        self,
        *,
        api_key: str,
        root_url: str,
        token_source: TokenSource,
        limiter: RateLimiter,
        timeout_seconds: float = 10.0,
        max_attempts: int = 6,
        ratelimit_wait_seconds: float = 60.0,
        on_token_refused: Callable[[str], Awaitable[None]] | None = None,
    ):
        """`on_token_refused(reason)` is awaited when Kite answers TokenException (the data
        service tells the broker, which owns the session, to check it at once)."""
        self.api_key = api_key
        self.on_token_refused = on_token_refused
        self.root_url = root_url
        self.token_source = token_source
        self.limiter = limiter
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.ratelimit_wait_seconds = ratelimit_wait_seconds
        self.log = CallLog()
        self._client: KiteConnect | None = None
        self._token: str | None = None

    async def _kite(self) -> KiteConnect:
        token = await self.token_source()
        if self._client is None or token != self._token:
            client = KiteConnect(
                api_key=self.api_key, root=self.root_url, timeout=self.timeout_seconds
            )
            client.set_access_token(token)
            self._client, self._token = client, token
        return self._client

    async def _report_token_refused(self, reason: str) -> None:
        if self.on_token_refused is None:
            return
        try:
            await self.on_token_refused(reason)
        except Exception as exc:  # the caller still gets NoKiteSession; the watchdog catches up
            log.warning("kite.token_report_failed", error=type(exc).__name__)

    async def _call(self, endpoint_class: str, fn: Callable[[KiteConnect], T]) -> T:
        delay = 0.2
        for attempt in range(1, self.max_attempts + 1):
            kite = await self._kite()
            await self.limiter.acquire(endpoint_class, timeout_seconds=self.ratelimit_wait_seconds)
            self.log.record(endpoint_class)
            try:
                result = await asyncio.to_thread(fn, kite)
            except kex.TokenException as exc:
                KITE_CALLS.labels(endpoint_class, "token_error").inc()
                await self._report_token_refused(f"TokenException: {str(exc)[:200]}")
                raise NoKiteSession(f"Kite refused the session: {exc}; log in again") from None
            except kex.InputException as exc:
                KITE_CALLS.labels(endpoint_class, "input_error").inc()
                raise KiteRejected(f"Kite refused the request: {exc}") from None
            except (kex.KiteException, requests.RequestException) as exc:
                status = getattr(exc, "code", None)
                outcome = "429" if status == 429 else "error"
                KITE_CALLS.labels(endpoint_class, outcome).inc()
                if isinstance(exc, kex.KiteException) and status is not None and status < 429:
                    raise KiteRejected(f"Kite refused the request: {exc}") from None
                if attempt == self.max_attempts:
                    raise KiteUnavailable(
                        f"Kite {endpoint_class} failed {attempt} times; last: {exc}"
                    ) from None
                log.warning(
                    "kite.retry",
                    endpoint_class=endpoint_class,
                    attempt=attempt,
                    status=status,
                    error=str(exc)[:200],
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            KITE_CALLS.labels(endpoint_class, "ok").inc()
            return result
        raise AssertionError("unreachable")

    async def historical(
        self, token: int, interval: str, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Candles with start in [start, end] as Kite returns them (aware `date`, floats)."""
        s = start.astimezone(IST).replace(tzinfo=None)
        e = end.astimezone(IST).replace(tzinfo=None)
        return await self._call("historical", lambda k: k.historical_data(token, s, e, interval))

    async def instruments(self, exchange: str) -> list[dict[str, Any]]:
        return await self._call("other", lambda k: k.instruments(exchange))

    async def quote(self, keys: list[str]) -> dict[str, Any]:
        return await self._call("quote", lambda k: k.quote(keys))

    async def profile(self) -> dict[str, Any]:
        """The user's profile: the cheapest call that proves the access token works."""
        return await self._call("other", lambda k: k.profile())
