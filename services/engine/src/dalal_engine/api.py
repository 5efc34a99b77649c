"""HTTP routes of the engine (thin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from dalal_engine import metrics
from dalal_engine.intents import OrderIntent
from dalal_engine.strategy import describe, registry
from dalal_shared.messages import PlaceOrder
from dalal_shared.streams import ORDERS_COMMANDS

router = APIRouter(prefix="/engine", tags=["orders"])


def _view(intent: OrderIntent) -> dict[str, Any]:
    return {
        "client_order_id": intent.command.client_order_id,
        "symbol": intent.command.symbol,
        "side": intent.command.side,
        "quantity": intent.command.quantity,
        "status": intent.status,
        "reason": intent.reason,
        "filled_quantity": intent.filled_quantity,
        "updated_at": intent.updated_at.isoformat(),
    }


@router.post(
    "/orders",
    summary="Send a manual order intent to the broker (idempotent on client_order_id)",
    status_code=202,
)
async def submit_order(command: PlaceOrder, request: Request) -> JSONResponse:
    book = request.app.state.book
    intent, created = book.submit(command)
    if created:
        await request.app.state.runtime.publisher.publish(ORDERS_COMMANDS, command)
    return JSONResponse(_view(intent), status_code=202 if created else 200)


@router.get("/orders/{client_order_id}", summary="What became of an order intent")
async def get_order(client_order_id: str, request: Request) -> dict[str, Any]:
    return _view(request.app.state.book.get(client_order_id))


@router.post("/start", summary="Start the live loop (state persists across restarts)")
async def start_engine(request: Request) -> dict[str, Any]:
    live = request.app.state.live
    live.start()
    metrics.RUNNING.set(1)
    return live.status()


@router.post("/stop", summary="Stop deciding on bars (history keeps being recorded)")
async def stop_engine(request: Request) -> dict[str, Any]:
    live = request.app.state.live
    live.stop()
    metrics.RUNNING.set(0)
    return live.status()


@router.get("/status", summary="Running or not, risk state, system flags, positions")
async def engine_status(request: Request) -> dict[str, Any]:
    return request.app.state.live.status()


strategies_router = APIRouter(tags=["strategies"])


@strategies_router.get("/strategies", summary="Registered strategies and configured instances")
async def list_strategies(request: Request) -> dict[str, Any]:
    live = request.app.state.live
    return {
        "registered": [
            {"name": info.name, "description": info.description, "parameters": info.parameters}
            for info in (describe(cls) for cls in registry().values())
        ],
        "instances": [i.config.model_dump(mode="json") for i in live.instances.values()],
    }


@strategies_router.get("/signals", summary="Latest risk decisions on strategy signals")
async def list_signals(request: Request, limit: int = 200) -> list[dict[str, Any]]:
    return request.app.state.live.store.decisions(max(1, min(limit, 1000)))
