"""The broker's reconciliation: the journal against Kite's order book and trades, on demand
(GET /reconcile) and by itself (`dalal_shared.reconciling`): after every start once the Kite
session is valid, on a new session (SessionValid) and after the close (the scheduler's
SessionClosed on system.events); run by the order-placer lease holder only."""

from __future__ import annotations

import asyncio

from dalal_broker.adapter import OrderAdapter
from dalal_broker.journal import Journal, OrderRow
from dalal_broker.reconcile import Break, reconcile
from dalal_broker.session import SessionManager
from dalal_shared.bus import Handler, Publisher
from dalal_shared.errors import TemporaryError
from dalal_shared.messages import Envelope, SessionClosed, SessionValid
from dalal_shared.reconciling import ReconcileRunner


async def journal_breaks(journal: Journal, adapter: OrderAdapter) -> tuple[list[Break], int, int]:
    """Every break between the journal and Kite now, with the counts of Kite's orders and
    trades compared."""
    orders = await adapter.orders()
    trades = await adapter.trades()

    def recorded() -> tuple[list[OrderRow], dict[str, int]]:
        rows = journal.list(limit=5000)
        filled: dict[str, int] = {}
        for row in rows:
            if row.broker_order_id:
                filled[row.broker_order_id] = sum(
                    int(str(t["quantity"])) for t in journal.trades_of(row.client_order_id)
                )
        return rows, filled

    rows, filled = await asyncio.to_thread(recorded)
    return reconcile(rows, filled, orders, trades), len(orders), len(trades)


def broker_runner(
    journal: Journal,
    adapter: OrderAdapter,
    session: SessionManager,
    publisher: Publisher,
    *,
    retry_seconds: float,
    confirm_seconds: float,
) -> ReconcileRunner:
    async def check() -> list[str]:
        if not session.valid:
            raise TemporaryError("no valid Kite session yet", code="no_session")
        breaks, _orders, _trades = await journal_breaks(journal, adapter)
        return [b.kind for b in breaks]

    return ReconcileRunner(
        "broker", check, publisher, retry_seconds=retry_seconds, confirm_seconds=confirm_seconds
    )


def system_events_handler(runner: ReconcileRunner) -> Handler:
    """`system.events` for the broker: a new session or the day's close asks for a run. Every
    other event on the stream is someone else's business (this consumer only triggers)."""

    async def handle(envelope: Envelope) -> None:
        message = envelope.message
        if isinstance(message, SessionValid):
            runner.request("session_valid")
        elif isinstance(message, SessionClosed):
            runner.request("session_closed", message.day)

    return handle
