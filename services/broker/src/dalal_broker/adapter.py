"""The one interface the desk places, changes and tracks orders through.

`kite.KiteGateway` (real Kite, or kitesim: only the root URL differs) and `paper.PaperBroker`
(local fills from live ticks) both answer it with Kite-shaped order and trade dicts, so the
desk's journal, events, idempotency and guards are the same in every mode.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

from dalal_shared.messages import PlaceOrder


class OrderAdapter(Protocol):
    async def place_order(
        self, command: PlaceOrder, *, market_protection: Decimal | None, algo_id: str | None
    ) -> str: ...

    async def modify_order(self, variety: str, order_id: str, **changes: Any) -> str: ...

    async def cancel_order(self, variety: str, order_id: str) -> str: ...

    async def orders(self) -> list[dict[str, Any]]: ...

    async def trades(self) -> list[dict[str, Any]]: ...

    async def order_trades(self, order_id: str) -> list[dict[str, Any]]: ...

    async def find_by_tag(self, tag: str) -> dict[str, Any] | None: ...

    async def positions(self) -> dict[str, Any]: ...

    async def holdings(self) -> list[dict[str, Any]]: ...
