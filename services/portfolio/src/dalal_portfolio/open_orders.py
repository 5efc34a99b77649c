"""Orders the broker has in flight, as the portfolio sees them from order events.

The ledger (portfolio issue) uses this for funds blocked by open orders; terminal orders
(rejected, cancelled, complete) leave the set.
"""

from __future__ import annotations

from dalal_shared.messages import (
    Message,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderUpdated,
)

TERMINAL = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})


class OpenOrders:
    def __init__(self) -> None:
        self._open: dict[str, str] = {}
        self._closed: set[str] = set()

    def apply(self, event: Message) -> None:
        coid = event.client_order_id  # type: ignore[attr-defined]
        if coid in self._closed:
            return
        if isinstance(event, OrderRejected | OrderCancelled):
            self._open.pop(coid, None)
            self._closed.add(coid)
        elif isinstance(event, OrderAccepted):
            self._open.setdefault(coid, event.status)
        elif isinstance(event, OrderUpdated):
            if event.status in TERMINAL:
                self._open.pop(coid, None)
                self._closed.add(coid)
            else:
                self._open[coid] = event.status

    def is_open(self, client_order_id: str) -> bool:
        return client_order_id in self._open

    def count(self) -> int:
        return len(self._open)
