"""Bus handlers of the engine."""

from __future__ import annotations

from dalal_engine.intents import IntentBook
from dalal_engine.live import LiveEngine
from dalal_shared.bus import Handler, Publisher
from dalal_shared.dispatch import dispatcher
from dalal_shared.messages import (
    Bar,
    DataStale,
    Envelope,
    EquitySnapshot,
    KillSwitchEngaged,
    KillSwitchReleased,
    Message,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
    PositionClosed,
    PositionOpened,
    PositionReduced,
    ReconcileCompleted,
    RiskDecided,
    SessionClosed,
    SessionExpired,
    SessionValid,
    Tick,
)
from dalal_shared.streams import ENGINE_DECISIONS, ORDERS_COMMANDS


def order_events_handler(book: IntentBook, live: LiveEngine | None = None) -> Handler:
    async def on_event(event: Message, _envelope: Envelope) -> None:
        book.apply(event)
        if live is not None:
            live.on_order_event(event)

    return dispatcher(
        {
            OrderAccepted: on_event,
            OrderRejected: on_event,
            OrderUpdated: on_event,
            OrderFilled: on_event,
            OrderCancelled: on_event,
        }
    )


async def publish_new(live: LiveEngine, publisher: Publisher, *, corr: str | None = None) -> None:
    """Publish every stored intent not published yet (the outbox), then mark it; then the
    cancels of stale or superseded orders (stored as CANCELLING before)."""
    for command in live.store.unpublished():
        await publisher.publish(ORDERS_COMMANDS, command, corr=corr)
        live.store.mark_published(command.client_order_id)
    cancels, live.pending_cancels = live.pending_cancels, []
    for cancel in cancels:
        await publisher.publish(ORDERS_COMMANDS, cancel, corr=corr)


async def publish_decisions(
    live: LiveEngine, publisher: Publisher, *, corr: str | None = None
) -> None:
    """Every risk decision (taken or refused, with its reason) as a RiskDecided event."""
    decisions, live.pending_decisions = live.pending_decisions, []
    if decisions:
        await publisher.publish_many(
            ENGINE_DECISIONS,
            [
                RiskDecided(
                    strategy=d.strategy,
                    symbol=d.symbol,
                    action=d.action,
                    approved=d.approved,
                    reason=d.reason,
                    quantity=d.quantity,
                    detail=d.detail[:500],
                    decided_at=d.at,
                )
                for d in decisions
            ],
            corr=corr,
        )


def bars_handler(live: LiveEngine, publisher: Publisher) -> Handler:
    async def on_bar(bar: Bar, envelope: Envelope) -> None:
        live.data_fresh()
        if live.on_bar(bar) or live.pending_cancels:
            await publish_new(live, publisher, corr=envelope.corr)
        await publish_decisions(live, publisher, corr=envelope.corr)

    return dispatcher({Bar: on_bar})


def ticks_handler(live: LiveEngine, publisher: Publisher) -> Handler:
    """`market.ticks`: stops and targets between bars."""

    async def on_tick(tick: Tick, envelope: Envelope) -> None:
        live.data_fresh()
        if live.on_tick(tick) or live.pending_cancels:
            await publish_new(live, publisher, corr=envelope.corr)
        await publish_decisions(live, publisher, corr=envelope.corr)

    return dispatcher({Tick: on_tick})


def portfolio_events_handler(live: LiveEngine) -> Handler:
    async def on_equity(event: EquitySnapshot, _envelope: Envelope) -> None:
        live.on_equity(event)

    return dispatcher(
        {
            EquitySnapshot: on_equity,
            PositionOpened: None,
            PositionReduced: None,
            PositionClosed: None,
        }
    )


def system_events_handler(live: LiveEngine) -> Handler:
    async def on_event(event: Message, _envelope: Envelope) -> None:
        live.on_system_event(event)

    return dispatcher(
        {
            KillSwitchEngaged: on_event,
            KillSwitchReleased: on_event,
            SessionValid: on_event,
            SessionExpired: on_event,
            DataStale: on_event,
            SessionClosed: None,  # end-of-day work is the portfolio's; the risk day rolls itself
            ReconcileCompleted: None,  # for alerts and operators
        }
    )
