"""HTTP routes of the broker-gateway (thin: they call the order desk)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from dalal_shared.messages import PlaceOrder

router = APIRouter(tags=["orders"])


@router.post("/orders", summary="Place an order (idempotent on client_order_id)")
async def place_order(command: PlaceOrder, request: Request) -> dict[str, Any]:
    desk = request.app.state.desk
    decision = await desk.place(command)
    return {
        "client_order_id": decision.client_order_id,
        "status": "REJECTED",
        "reason": decision.reason,
        "message": decision.message,
    }


@router.get("/session", summary="The Kite session the broker holds")
async def get_session(request: Request) -> dict[str, Any]:
    session = request.app.state.session.current
    if session is None:
        return {"valid": False, "user_id": None, "expires_at": None}
    return {"valid": True, "user_id": session.user_id, "expires_at": session.expires_at}
