"""HTTP routes of the engine (thin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from dalal_engine.intents import OrderIntent
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
