"""One Kite adapter for every service that talks to Kite (the broker's orders and session, the
data service's history, instruments and quotes): the official `kiteconnect` client behind one
error classification, one retry policy and one metric family.

* `KiteSessionError`  - TokenException: the session is dead; stop and ask for a login.
* `KiteRejected`      - Input/Order/Permission errors, and any other 4xx but 429: the request
  itself is refused; never retry it.
* `KiteUnavailable`   - network errors, timeouts, 429, 5xx, unparseable replies: the outcome is
  unknown. A read may be retried (`KiteCaller.call(..., retry=True)`: each attempt takes a fresh
  token from the shared rate limiter, so retries never exceed Kite's rate); an order is never
  retried here: the broker looks it up by its tag before any resend.

Metrics: `dalal_kite_calls_total{service,endpoint_class,outcome}` (outcome `ok`, `session`,
`rejected`, `unavailable`) and `dalal_kite_429_total{service,endpoint_class}` (429s the shared
limiter should have prevented).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import requests
from kiteconnect import exceptions as kex
from prometheus_client import Counter

from dalal_shared.errors import PermanentError, TemporaryError
from dalal_shared.logging import get_logger
from dalal_shared.ratelimit import KITE_LIMITS, RateLimiter

log = get_logger(__name__)
T = TypeVar("T")

KITE_CALLS = Counter(
    "dalal_kite_calls_total",
    "Kite API calls by service, endpoint class and outcome",
    ["service", "endpoint_class", "outcome"],
)
KITE_429 = Counter(
    "dalal_kite_429_total",
    "HTTP 429 answers still seen from Kite (the shared limiter should prevent them)",
    ["service", "endpoint_class"],
)


class KiteSessionError(PermanentError):
    code = "session_expired"
    status_code = 403


class KiteRejected(PermanentError):
    code = "kite_rejected"
    status_code = 422


class KiteUnavailable(TemporaryError):
    code = "kite_unavailable"


def classify(exc: BaseException) -> Exception:
    """Map anything the official client (or the network under it) raises to one of the three
    classes; anything else is returned unchanged."""
    if isinstance(exc, kex.TokenException):
        return KiteSessionError(str(exc))
    if isinstance(exc, kex.InputException | kex.OrderException | kex.PermissionException):
        return KiteRejected(str(exc), code=reject_code(exc))
    status = getattr(exc, "code", None)
    if isinstance(exc, kex.KiteException):
        if isinstance(status, int) and 400 <= status < 500 and status != 429:
            return KiteRejected(str(exc), code=reject_code(exc))
        return KiteUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, requests.RequestException | OSError | TimeoutError):
        return KiteUnavailable(f"{type(exc).__name__}: {exc}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


def reject_code(exc: BaseException) -> str:
    """What kind of refusal: `margin` (funds), `input` (a bad argument) or `order`."""
    text = str(exc).lower()
    if "margin" in text or "funds" in text:
        return "margin"
    if isinstance(exc, kex.InputException):
        return "input"
    return "order"


def rate_limited(exc: BaseException) -> bool:
    """Kite refused the call with a 429 before handling it (safe to send again later)."""
    cause = exc.__cause__ if isinstance(exc, KiteUnavailable) else exc
    return isinstance(cause, kex.KiteException) and getattr(cause, "code", None) == 429


_OUTCOME: dict[type[Exception], str] = {
    KiteSessionError: "session",
    KiteRejected: "rejected",
    KiteUnavailable: "unavailable",
}


class KiteCaller:
    """Runs one blocking kiteconnect call: a token of its endpoint class from the shared rate
    limiter, the call in a thread, its failure classified and counted; with `retry=True` an
    unavailable outcome is tried again (back-off 0.2 s doubling to 5 s, `max_attempts` in all).
    """

    def __init__(
        self,
        service: str,
        limiter: RateLimiter,
        *,
        rate_limit_timeout_seconds: float = 10.0,
        max_attempts: int = 6,
        on_attempt: Callable[[str], None] | None = None,
    ):
        self.service = service
        self.limiter = limiter
        self.rate_limit_timeout_seconds = rate_limit_timeout_seconds
        self.max_attempts = max_attempts
        self.on_attempt = on_attempt  # e.g. a log of request times (tests, benchmarks)
        for endpoint_class in KITE_LIMITS:  # exported from the start (0), for the dashboards
            KITE_429.labels(service, endpoint_class)

    def take_token(self, endpoint_class: str) -> asyncio.Task[float]:
        """Start waiting for a token of `endpoint_class` now (for a `call` about to come, while
        its caller still writes something first); hand the task to that call as `token`."""
        return asyncio.ensure_future(
            self.limiter.acquire(endpoint_class, timeout_seconds=self.rate_limit_timeout_seconds)
        )

    async def call(
        self,
        endpoint_class: str,
        fn: Callable[..., T],
        *args: Any,
        retry: bool = False,
        token: Awaitable[object] | None = None,
        **kw: Any,
    ) -> T:
        """`token`: the first attempt's token, being taken already (`take_token`); its
        failure (a rate-limit timeout, the daily cap) is the call's, as when waited for here."""
        attempts = self.max_attempts if retry else 1
        delay = 0.2
        for attempt in range(1, attempts + 1):
            if token is not None and attempt == 1:
                await token
            else:
                await self.limiter.acquire(
                    endpoint_class, timeout_seconds=self.rate_limit_timeout_seconds
                )
            if self.on_attempt is not None:
                self.on_attempt(endpoint_class)
            try:
                result = await asyncio.to_thread(fn, *args, **kw)
            except BaseException as exc:
                if isinstance(exc, kex.KiteException) and getattr(exc, "code", None) == 429:
                    KITE_429.labels(self.service, endpoint_class).inc()
                mapped = classify(exc)
                outcome = _OUTCOME.get(type(mapped), type(mapped).__name__)
                KITE_CALLS.labels(self.service, endpoint_class, outcome).inc()
                if isinstance(mapped, KiteUnavailable) and attempt < attempts:
                    log.warning(
                        "kite.retry",
                        endpoint_class=endpoint_class,
                        attempt=attempt,
                        error=str(mapped)[:200],
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if mapped is exc:
                    raise
                raise mapped from exc
            KITE_CALLS.labels(self.service, endpoint_class, "ok").inc()
            return result
        raise AssertionError("unreachable")
