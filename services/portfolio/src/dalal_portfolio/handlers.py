"""Bus handlers of the portfolio.

OrderFilled has no handler until the ledger lands (portfolio issue): the dispatcher refuses it,
so a fill goes to `dlq.orders.events` (group portfolio) to be replayed, never acked unseen.
"""

from __future__ import annotations

from dalal_portfolio.open_orders import OpenOrders
from dalal_shared.bus import Handler
from dalal_shared.dispatch import dispatcher
from dalal_shared.messages import (
    Envelope,
    Message,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderUpdated,
)


def order_events_handler(open_orders: OpenOrders) -> Handler:
    async def on_event(event: Message, _envelope: Envelope) -> None:
        open_orders.apply(event)

    return dispatcher(
        {
            OrderAccepted: on_event,
            OrderRejected: on_event,
            OrderUpdated: on_event,
            OrderCancelled: on_event,
        }
    )
