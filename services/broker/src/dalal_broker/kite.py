"""The Kite adapter: the official `kiteconnect` client behind Dalal's error classes.

Every call waits for a token of its endpoint class from the shared rate limiter, runs the
(blocking) client in a thread, and turns Kite's exceptions into errors that say what to do:

* `KiteSessionError`  - TokenException: the session is dead; stop and ask for a login.
* `KiteRejected`      - Input/Order/Margin/Permission errors: the order is refused; never retry.
* `KiteUnavailable`   - network errors, timeouts, 429, 5xx, unparseable replies: the outcome is
  unknown; for an order, look it up by tag before any resend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex
from prometheus_client import Counter

from dalal_shared.errors import PermanentError, TemporaryError
from dalal_shared.messages import PlaceOrder
from dalal_shared.ratelimit import KITE_LIMITS, RateLimiter

T = TypeVar("T")

KITE_CALLS = Counter(
    "dalal_kite_calls_total",
    "Kite API calls by endpoint class and outcome",
    ["endpoint_class", "outcome"],
)
KITE_429 = Counter(
    "dalal_kite_429_total",
    "HTTP 429 answers still seen from Kite (the limiter should prevent)",
    ["endpoint_class"],
)
for _endpoint_class in KITE_LIMITS:  # exported from the start (0), so dashboards see each class
    KITE_429.labels(_endpoint_class)


class KiteSessionError(PermanentError):
    code = "session_expired"
    status_code = 403


class KiteRejected(PermanentError):
    code = "kite_rejected"
    status_code = 422


class KiteUnavailable(TemporaryError):
    code = "kite_unavailable"


def classify(exc: BaseException) -> Exception:
    """Map anything the official client raises to one of our three classes."""
    if isinstance(exc, kex.TokenException):
        return KiteSessionError(str(exc))
    if isinstance(exc, kex.InputException | kex.OrderException | kex.PermissionException):
        return KiteRejected(str(exc), code=_reject_code(exc))
    if isinstance(exc, kex.NetworkException | kex.DataException | kex.GeneralException):
        return KiteUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, requests.RequestException | OSError | TimeoutError):
        return KiteUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, kex.KiteException):
        return KiteUnavailable(f"{type(exc).__name__}: {exc}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


def rate_limited(exc: BaseException) -> bool:
    """Kite refused the call with a 429 before handling it (safe to send again later)."""
    cause = exc.__cause__ if isinstance(exc, KiteUnavailable) else exc
    return isinstance(cause, kex.NetworkException) and getattr(cause, "code", None) == 429


def _reject_code(exc: BaseException) -> str:
    text = str(exc).lower()
    if "margin" in text or "funds" in text:
        return "margin"
    if isinstance(exc, kex.InputException):
        return "input"
    return "order"


class KiteGateway:
    """Async facade over one KiteConnect client."""

    def __init__(
        self,
        *,
        api_key: str,
        root_url: str,
        limiter: RateLimiter,
        timeout_seconds: float = 7.0,
        rate_limit_timeout_seconds: float = 10.0,
    ):
        self.api_key = api_key
        self.root_url = root_url
        self.limiter = limiter
        self.rate_limit_timeout_seconds = rate_limit_timeout_seconds
        self._kite = KiteConnect(api_key, root=root_url, timeout=timeout_seconds)

    def set_access_token(self, token: str | None) -> None:
        self._kite.set_access_token(token)

    async def call(self, endpoint_class: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        await self.limiter.acquire(endpoint_class, timeout_seconds=self.rate_limit_timeout_seconds)
        try:
            result = await asyncio.to_thread(fn, *args, **kw)
        except BaseException as exc:
            if isinstance(exc, kex.NetworkException) and getattr(exc, "code", None) == 429:
                KITE_429.labels(endpoint_class).inc()
            mapped = classify(exc)
            KITE_CALLS.labels(endpoint_class, type(mapped).__name__).inc()
            if mapped is exc:
                raise
            raise mapped from exc
        KITE_CALLS.labels(endpoint_class, "ok").inc()
        return result

    # ------------------------------------------------------------------ session

    async def generate_session(self, request_token: str, api_secret: str) -> dict[str, Any]:
        return await self.call(
            "other", self._kite.generate_session, request_token, api_secret=api_secret
        )

    async def profile(self) -> dict[str, Any]:
        return await self.call("other", self._kite.profile)

    async def instruments(self, exchange: str = "NSE") -> list[dict[str, Any]]:
        return await self.call("other", self._kite.instruments, exchange)

    # ------------------------------------------------------------------ orders

    async def place_order(
        self, command: PlaceOrder, *, market_protection: Decimal | None, algo_id: str | None
    ) -> str:
        kw: dict[str, Any] = {
            "variety": command.variety,
            "exchange": command.exchange,
            "tradingsymbol": command.symbol,
            "transaction_type": command.side,
            "quantity": command.quantity,
            "product": command.product,
            "order_type": command.order_type,
            "validity": command.validity,
            "tag": command.client_order_id,
        }
        if command.price is not None:
            kw["price"] = float(command.price)
        if command.trigger_price is not None:
            kw["trigger_price"] = float(command.trigger_price)
        if market_protection is not None:
            kw["market_protection"] = float(market_protection)
        if algo_id:
            kw["algo_id"] = algo_id
        return str(await self.call("orders", self._kite.place_order, **kw))

    async def cancel_order(self, variety: str, order_id: str) -> str:
        return str(await self.call("orders", self._kite.cancel_order, variety, order_id))

    async def modify_order(self, variety: str, order_id: str, **changes: Any) -> str:
        return str(await self.call("orders", self._kite.modify_order, variety, order_id, **changes))

    async def orders(self) -> list[dict[str, Any]]:
        return await self.call("other", self._kite.orders)

    async def trades(self) -> list[dict[str, Any]]:
        return await self.call("other", self._kite.trades)

    async def order_trades(self, order_id: str) -> list[dict[str, Any]]:
        return await self.call("other", self._kite.order_trades, order_id)

    async def ltp(self, instruments: list[str]) -> dict[str, Any]:
        """Kite's last traded price of each `EXCHANGE:SYMBOL` it knows (a `quote`-class call)."""
        return await self.call("quote", self._kite.ltp, instruments)

    async def positions(self) -> dict[str, Any]:
        return await self.call("other", self._kite.positions)

    async def holdings(self) -> list[dict[str, Any]]:
        return await self.call("other", self._kite.holdings)

    # ------------------------------------------------------------------ GTT (protections)

    async def place_gtt(self, **request: Any) -> int:
        """A GTT trigger (`gtt_terms.gtt_request` gives the arguments); its id."""
        return int((await self.call("orders", self._kite.place_gtt, **request))["trigger_id"])

    async def modify_gtt(self, trigger_id: int, **request: Any) -> int:
        done = await self.call("orders", self._kite.modify_gtt, trigger_id, **request)
        return int(done["trigger_id"])

    async def delete_gtt(self, trigger_id: int) -> None:
        await self.call("orders", self._kite.delete_gtt, trigger_id)

    async def gtt(self, trigger_id: int) -> dict[str, Any]:
        return await self.call("other", self._kite.get_gtt, trigger_id)

    async def gtts(self) -> list[dict[str, Any]]:
        return await self.call("other", self._kite.get_gtts)

    async def find_by_tag(self, tag: str) -> dict[str, Any] | None:
        """The order Kite knows under `tag` (our client_order_id), if any: the check before any
        resend after an unknown outcome."""
        for order in await self.orders():
            if order.get("tag") == tag or tag in (order.get("tags") or []):
                return order
        return None
