"""The broker's Kite gateway: the official `kiteconnect` client through the shared Kite
adapter (`dalal_shared.kite`: one error classification, one metric family with
`service="broker"`). Nothing here retries: an order whose outcome is unknown
(`KiteUnavailable`) is looked up by its tag before any resend (the desk does it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

from dalal_broker.adapter import BrokerOrder, BrokerTrade
from dalal_shared.kite import (
    KiteCaller,
    KiteRejected,
    KiteSessionError,
    KiteUnavailable,
    classify,
    rate_limited,
)
from dalal_shared.kitehttp import kite_client
from dalal_shared.messages import PlaceOrder
from dalal_shared.ratelimit import RateLimiter

__all__ = [
    "KiteGateway",
    "KiteRejected",
    "KiteSessionError",
    "KiteUnavailable",
    "classify",
    "rate_limited",
]

T = TypeVar("T")


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
        self._kite = kite_client(api_key, root=root_url, timeout=timeout_seconds)
        self._caller = KiteCaller(
            "broker", limiter, rate_limit_timeout_seconds=rate_limit_timeout_seconds
        )

    def set_access_token(self, token: str | None) -> None:
        self._kite.set_access_token(token)

    async def call(self, endpoint_class: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """One call, never retried (see the module docstring)."""
        return await self._caller.call(endpoint_class, fn, *args, **kw)

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

    def take_order_token(self) -> asyncio.Task[float]:
        """An order token of the rate limiter, being taken from now on (`place_order(token=)`)."""
        return self._caller.take_token("orders")

    async def place_order(
        self,
        command: PlaceOrder,
        *,
        market_protection: Decimal | None,
        algo_id: str | None,
        token: Awaitable[object] | None = None,
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
        return str(await self._caller.call("orders", self._kite.place_order, token=token, **kw))

    async def cancel_order(self, variety: str, order_id: str) -> str:
        return str(await self.call("orders", self._kite.cancel_order, variety, order_id))

    async def modify_order(self, variety: str, order_id: str, **changes: Any) -> str:
        return str(await self.call("orders", self._kite.modify_order, variety, order_id, **changes))

    # The books are typed in the call's thread, not on the event loop: late in a busy day
    # (3,000 orders, Kite's daily cap) that is ~20 ms of orders and ~10 of trades per poll,
    # which the loop would otherwise spend in one go while orders wait for their turn.
    async def orders(self) -> list[BrokerOrder]:
        return await self.call("other", _typed, self._kite.orders, BrokerOrder.from_kite)

    async def trades(self) -> list[BrokerTrade]:
        return await self.call("other", _typed, self._kite.trades, BrokerTrade.from_kite)

    async def order_trades(self, order_id: str) -> list[BrokerTrade]:
        return await self.call(
            "other", _typed, self._kite.order_trades, BrokerTrade.from_kite, order_id
        )

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

    async def find_by_tag(self, tag: str) -> BrokerOrder | None:
        """The order Kite knows under `tag` (our client_order_id), if any: the check before any
        resend after an unknown outcome."""
        return next((o for o in await self.orders() if o.carries(tag)), None)


def _typed(
    fetch: Callable[..., list[dict[str, Any]]], type_: Callable[[dict[str, Any]], T], *args: Any
) -> list[T]:
    """`fetch(*args)`'s rows, each made a `type_` (in the caller's thread)."""
    return [type_(row) for row in fetch(*args)]
