"""Wiring of the broker process: settings -> runtime -> consumers -> HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from dalal_broker.api import router
from dalal_broker.config import BrokerSettings
from dalal_broker.decisions import DecisionStore
from dalal_broker.handlers import OrderDesk
from dalal_broker.session import SessionHolder
from dalal_shared.httpapp import create_app
from dalal_shared.service import ServiceRuntime
from dalal_shared.streams import ORDERS_COMMANDS

NAME = "broker"


def build_app(settings: BrokerSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME, settings)
    session = SessionHolder()
    desk = OrderDesk(runtime.publisher, session, DecisionStore(runtime.redis))
    runtime.consume({ORDERS_COMMANDS: desk.handler()})
    app = create_app(
        NAME,
        api_key_digest=settings.api_key_digest(),
        readiness={"redis": runtime.check_redis},
        lifespan=runtime.lifespan,
        description="broker-gateway: Kite session, instruments, exactly-once orders",
    )
    app.state.runtime = runtime
    app.state.session = session
    app.state.desk = desk
    app.include_router(router)
    return app
