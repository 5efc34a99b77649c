"""Bus handlers of the portfolio: fills into the ledger, orders into blocked funds, ticks
into marks.

Every handler is idempotent: a fill is keyed on Kite's trade_id (the ledger ignores a second
delivery), order states converge, a tick older than the mark held is ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from dalal_portfolio import metrics
from dalal_portfolio.open_orders import OpenOrders
from dalal_portfolio.service import PortfolioService, fill_from_message
from dalal_shared.bus import Handler
from dalal_shared.dispatch import dispatcher
from dalal_shared.messages import (
    CancelOrder,
    CancelProtection,
    DataStale,
    Envelope,
    KillSwitchEngaged,
    KillSwitchReleased,
    KiteSessionRefused,
    Message,
    ModifyOrder,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
    PlaceOrder,
    ProtectionPlaced,
    ProtectionRemoved,
    ProtectPosition,
    ReconcileCompleted,
    SessionClosed,
    SessionExpired,
    SessionValid,
    Tick,
)
from dalal_shared.reconciling import ReconcileRunner

Flush = Callable[[], Awaitable[int]]


def order_events_handler(
    open_orders: OpenOrders, service: PortfolioService | None = None, flush: Flush | None = None
) -> Handler:
    async def on_event(event: Message, _envelope: Envelope) -> None:
        open_orders.apply(event)
        if service is not None:
            await asyncio.to_thread(service.order_event, event)

    async def on_fill(event: OrderFilled, envelope: Envelope) -> None:
        assert service is not None
        new = await asyncio.to_thread(
            service.apply_fill, fill_from_message(event), corr=envelope.corr
        )
        if new:
            metrics.FILLS.inc()
        else:
            metrics.DUPLICATES.inc()
        if flush is not None:
            await flush()

    table: dict[type[Message], Callable[..., Awaitable[None]] | None] = {
        OrderAccepted: on_event,
        OrderRejected: on_event,
        OrderUpdated: on_event,
        OrderCancelled: on_event,
        ProtectionPlaced: None,  # a GTT at Kite: no order yet, nothing held
        ProtectionRemoved: None,  # a triggered one's order and fills come as usual
    }
    if service is not None:
        table[OrderFilled] = on_fill
    return dispatcher(table)


def commands_handler(service: PortfolioService) -> Handler:
    """`orders.commands`: each PlaceOrder holds its value until its events release it.

    A ModifyOrder re-prices the hold at once (the broker's OrderUpdated confirms the terms);
    a cancel releases the hold only when the broker's OrderCancelled arrives.
    """

    async def on_place(command: PlaceOrder, _envelope: Envelope) -> None:
        await asyncio.to_thread(service.order_placed, command)

    async def on_modify(command: ModifyOrder, _envelope: Envelope) -> None:
        await asyncio.to_thread(service.order_modified, command)

    return dispatcher(
        {
            PlaceOrder: on_place,
            CancelOrder: None,
            ModifyOrder: on_modify,
            ProtectPosition: None,  # a GTT sells what is held: no funds to hold
            CancelProtection: None,
        }
    )


def system_events_handler(
    service: PortfolioService,
    flush: Flush | None = None,
    reconciler: ReconcileRunner | None = None,
) -> Handler:
    """`system.events`: the scheduler's SessionClosed takes the end-of-day EquitySnapshot
    (once per day, however often the signal is delivered) and asks for a reconciliation, as a
    new Kite session (SessionValid) does; the other events are not ours."""

    async def on_closed(event: SessionClosed, _envelope: Envelope) -> None:
        taken = await asyncio.to_thread(service.end_of_day, event.day)
        if taken is not None:
            metrics.SNAPSHOTS.inc()
            if flush is not None:
                await flush()
        if reconciler is not None:
            reconciler.request("session_closed", event.day)

    async def on_valid(_event: SessionValid, _envelope: Envelope) -> None:
        if reconciler is not None:
            reconciler.request("session_valid")

    return dispatcher(
        {
            SessionClosed: on_closed,
            SessionValid: on_valid,
            ReconcileCompleted: None,
            SessionExpired: None,
            DataStale: None,
            KillSwitchEngaged: None,
            KillSwitchReleased: None,
            KiteSessionRefused: None,
        }
    )


def ticks_handler(service: PortfolioService) -> Handler:
    async def on_tick(tick: Tick, _envelope: Envelope) -> None:
        service.mark(tick.symbol, tick.last_price, tick.exchange_ts)

    return dispatcher({Tick: on_tick})
