"""The one interface the desk places, changes and tracks orders through, and the typed results
it answers with.

`kite.KiteGateway` (real Kite, or kitesim: only the root URL differs) and `paper.PaperBroker`
(local fills from live ticks) both answer it, so the desk's journal, events, idempotency and
guards are the same in every mode. Kite's order and trade dicts (from the REST API, a postback
or the ticker's order messages) become `BrokerOrder` / `BrokerTrade` at the edge
(`from_kite`): inside the desk an order is typed, its numbers parsed once, its times aware.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from dalal_shared.messages import PlaceOrder
from dalal_shared.timeutil import IST, utcnow


def kite_time(value: Any) -> datetime:
    """Kite sends naive IST timestamps (the client parses them without a zone)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=IST)
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=IST)
    return utcnow()


def _price(value: Any) -> Decimal | None:
    """A price Kite reports, None when it reports none (0, empty)."""
    if value in (None, "", 0, 0.0, "0"):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    return price if price > 0 else None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return int(float(value))


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """One order as the broker (Kite or the paper book) reports it."""

    order_id: str
    status: str  # upper case: OPEN, COMPLETE, CANCELLED, REJECTED, TRIGGER PENDING, ...
    tag: str | None
    tags: tuple[str, ...]
    exchange: str
    symbol: str
    side: str
    product: str
    order_type: str
    variety: str
    validity: str
    quantity: int
    filled_quantity: int
    pending_quantity: int
    price: Decimal | None
    trigger_price: Decimal | None
    average_price: Decimal | None
    status_message: str

    @classmethod
    def from_kite(cls, order: dict[str, Any]) -> BrokerOrder:
        tags = order.get("tags") or []
        tag = order.get("tag") or (tags[0] if tags else None)
        return cls(
            order_id=str(order.get("order_id") or ""),
            status=str(order.get("status") or "").upper(),
            tag=str(tag) if tag else None,
            tags=tuple(str(t) for t in tags),
            exchange=str(order.get("exchange") or "NSE"),
            symbol=str(order.get("tradingsymbol") or ""),
            side=str(order.get("transaction_type") or ""),
            product=str(order.get("product") or ""),
            order_type=str(order.get("order_type") or "MARKET"),
            variety=str(order.get("variety") or "regular"),
            validity=str(order.get("validity") or "DAY"),
            quantity=_int(order.get("quantity")),
            filled_quantity=_int(order.get("filled_quantity")),
            pending_quantity=_int(order.get("pending_quantity")),
            price=_price(order.get("price")),
            trigger_price=_price(order.get("trigger_price")),
            average_price=_price(order.get("average_price")),
            status_message=str(order.get("status_message") or ""),
        )

    def carries(self, tag: str) -> bool:
        """Whether the order was placed under `tag` (our client_order_id)."""
        return self.tag == tag or tag in self.tags


@dataclass(frozen=True, slots=True)
class BrokerTrade:
    """One fill of an order."""

    trade_id: str
    order_id: str
    quantity: int
    price: Decimal
    filled_at: datetime  # aware

    @classmethod
    def from_kite(cls, trade: dict[str, Any]) -> BrokerTrade:
        return cls(
            trade_id=str(trade["trade_id"]),
            order_id=str(trade["order_id"]),
            quantity=_int(trade["quantity"]),
            price=Decimal(str(trade["average_price"])),
            filled_at=kite_time(trade.get("fill_timestamp") or trade.get("exchange_timestamp")),
        )


class OrderAdapter(Protocol):
    def take_order_token(self) -> Awaitable[object] | None:
        """Start taking a rate-limit token for the next `place_order` (None: none needed)."""
        ...

    async def place_order(
        self,
        command: PlaceOrder,
        *,
        market_protection: Decimal | None,
        algo_id: str | None,
        token: Awaitable[object] | None = None,
    ) -> str: ...

    async def modify_order(self, variety: str, order_id: str, **changes: Any) -> str: ...

    async def cancel_order(self, variety: str, order_id: str) -> str: ...

    async def orders(self) -> list[BrokerOrder]: ...

    async def trades(self) -> list[BrokerTrade]: ...

    async def order_trades(self, order_id: str) -> list[BrokerTrade]: ...

    async def find_by_tag(self, tag: str) -> BrokerOrder | None: ...

    async def positions(self) -> dict[str, Any]: ...

    async def holdings(self) -> list[dict[str, Any]]: ...
