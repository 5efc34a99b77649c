"""The Kite edge of the data service: the official `kiteconnect` client through the shared
Kite adapter (`dalal_shared.kite`: the broker's error classification and metric family, with
`service="data"`), behind the shared Redis rate limiter.

Every call here is a read, so Kite's temporary failures (a 429, a 5xx, the network) are retried,
each attempt taking a fresh limiter token (retries never exceed the shared rate); a
TokenException means the daily login is missing and is not retried (the broker, which owns the
session, is told at once); a refusal (an InputException, any other 4xx) is the caller's fault.
The service's HTTP answers keep their own codes: `no_session` (503) and `kite_rejected` (502).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from kiteconnect import KiteConnect

from dalal_shared import kite as shared_kite
from dalal_shared.errors import PermanentError, TemporaryError
from dalal_shared.kitehttp import kite_client
from dalal_shared.logging import get_logger
from dalal_shared.ratelimit import RateLimiter
from dalal_shared.timeutil import IST

log = get_logger(__name__)
T = TypeVar("T")


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
        self._caller = shared_kite.KiteCaller(
            "data",
            limiter,
            rate_limit_timeout_seconds=ratelimit_wait_seconds,
            max_attempts=max_attempts,
            on_attempt=self.log.record,
        )
        self._client: KiteConnect | None = None
        self._token: str | None = None

    async def _kite(self) -> KiteConnect:
        token = await self.token_source()
        if self._client is None or token != self._token:
            client = kite_client(self.api_key, root=self.root_url, timeout=self.timeout_seconds)
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
        kite = await self._kite()
        try:
            return await self._caller.call(endpoint_class, fn, kite, retry=True)
        except shared_kite.KiteSessionError as exc:
            await self._report_token_refused(f"TokenException: {str(exc)[:200]}")
            raise NoKiteSession(f"Kite refused the session: {exc}; log in again") from None
        except shared_kite.KiteRejected as exc:
            raise KiteRejected(f"Kite refused the request: {exc}") from None
        except shared_kite.KiteUnavailable as exc:
            raise KiteUnavailable(
                f"Kite {endpoint_class} failed {self.max_attempts} times; last: {exc}"
            ) from None

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
