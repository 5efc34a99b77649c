"""Bus handlers of the broker: `orders.commands` -> `orders.events`."""

from __future__ import annotations

from dalal_broker.decisions import DecisionStore
from dalal_broker.orders import admit
from dalal_broker.session import SessionHolder
from dalal_shared.bus import Handler, Publisher
from dalal_shared.dispatch import dispatcher
from dalal_shared.errors import TemporaryError
from dalal_shared.logging import get_logger
from dalal_shared.messages import Envelope, OrderRejected, PlaceOrder
from dalal_shared.streams import ORDERS_EVENTS

log = get_logger(__name__)


class OrderDesk:
    """Takes PlaceOrder commands (from the bus or HTTP) and answers with order events.

    Idempotent on `client_order_id`: a command seen before returns the decision made then.
    """

    def __init__(self, publisher: Publisher, session: SessionHolder, decisions: DecisionStore):
        self.publisher = publisher
        self.session = session
        self.decisions = decisions

    async def place(self, command: PlaceOrder, corr: str | None = None) -> OrderRejected:
        previous = await self.decisions.get(command.client_order_id)
        if previous is not None:
            return previous
        rejection = admit(command, self.session.current)
        if rejection is None:
            # Sending to Kite arrives with the broker issue; refusing here keeps the order
            # visible (OrderRejected) instead of dropping it.
            raise TemporaryError("order placement at Kite is not available in this build")
        # publish first, then remember: a crash in between re-publishes (consumers dedupe)
        await self.publisher.publish(ORDERS_EVENTS, rejection, corr=corr)
        await self.decisions.remember(rejection)
        log.info(
            "order.rejected",
            client_order_id=command.client_order_id,
            reason=rejection.reason,
        )
        return rejection

    def handler(self) -> Handler:
        async def on_place(command: PlaceOrder, envelope: Envelope) -> None:
            await self.place(command, corr=envelope.corr)

        return dispatcher({PlaceOrder: on_place})
