"""Wiring of the portfolio process."""

from __future__ import annotations

from fastapi import FastAPI

from dalal_portfolio.config import PortfolioSettings
from dalal_portfolio.handlers import order_events_handler
from dalal_portfolio.open_orders import OpenOrders
from dalal_shared.httpapp import create_app
from dalal_shared.service import ServiceRuntime
from dalal_shared.streams import ORDERS_EVENTS

NAME = "portfolio"


def build_app(settings: PortfolioSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME, settings)
    open_orders = OpenOrders()
    runtime.consume({ORDERS_EVENTS: order_events_handler(open_orders)})
    app = create_app(
        NAME,
        api_key_digest=settings.api_key_digest(),
        readiness={"redis": runtime.check_redis},
        lifespan=runtime.lifespan,
        description="portfolio: ledger, positions, charges, performance, reconciliation",
    )
    app.state.runtime = runtime
    app.state.open_orders = open_orders
    return app
