"""Bus handlers of the engine."""

from __future__ import annotations

from dalal_engine.intents import IntentBook
from dalal_shared.bus import Handler
from dalal_shared.dispatch import dispatcher
from dalal_shared.messages import (
    Envelope,
    Message,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
)


def order_events_handler(book: IntentBook) -> Handler:
    async def on_event(event: Message, _envelope: Envelope) -> None:
        book.apply(event)

    return dispatcher(
        {
            OrderAccepted: on_event,
            OrderRejected: on_event,
            OrderUpdated: on_event,
            OrderFilled: on_event,
            OrderCancelled: on_event,
        }
    )
