"""The portfolio's reconciliation run by itself: the ledger against the broker's live view,
after every start (once the broker can answer: it has a Kite session), on a new session and
after the close (`dalal_shared.reconciling` publishes and exports each result)."""

from __future__ import annotations

import asyncio

from dalal_portfolio.reconcile import BrokerViewSource, Reconciliation, reconcile
from dalal_portfolio.service import PortfolioService
from dalal_shared.bus import Publisher
from dalal_shared.reconciling import ReconcileRunner


def reconcile_now(service: PortfolioService, source: BrokerViewSource) -> Reconciliation:
    """The ledger against the broker's view as it is now (raises when the view cannot be had)."""
    view = source.fetch()
    return reconcile(service.book.positions(), service.book.fills(), view)


def portfolio_runner(
    service: PortfolioService,
    source: BrokerViewSource,
    publisher: Publisher,
    *,
    retry_seconds: float,
    confirm_seconds: float,
) -> ReconcileRunner:
    async def check() -> list[str]:
        result = await asyncio.to_thread(reconcile_now, service, source)
        return [b.kind for b in result.breaks]

    return ReconcileRunner(
        "portfolio",
        check,
        publisher,
        retry_seconds=retry_seconds,
        confirm_seconds=confirm_seconds,
    )
