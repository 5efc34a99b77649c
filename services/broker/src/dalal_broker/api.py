"""HTTP routes of the broker-gateway (thin: they call the desk, session and stores)."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from dalal_broker.adapter import BrokerOrder
from dalal_broker.desk import NotLeader
from dalal_broker.instrument_store import instrument_view
from dalal_broker.postback import verify_postback
from dalal_broker.reconciling import journal_breaks
from dalal_shared.charges import RatesNotKnownError, order_charges
from dalal_shared.errors import DalalError, NotFoundError
from dalal_shared.logging import get_logger
from dalal_shared.messages import (
    CancelProtection,
    KillSwitchEngaged,
    KillSwitchReleased,
    ModifyOrder,
    PlaceOrder,
    PositiveRupees,
    ProtectPosition,
    Quantity,
)
from dalal_shared.streams import ORDERS_COMMANDS, SYSTEM_EVENTS
from dalal_shared.timeutil import IST, ist_iso

log = get_logger(__name__)

router = APIRouter()


@router.get("/session", tags=["session"], summary="The Kite session the broker holds")
async def get_session(request: Request) -> dict[str, Any]:
    return request.app.state.session.view()


@router.get("/session/login", tags=["session"], summary="Redirect to Kite's login page")
async def login(request: Request) -> RedirectResponse:
    return RedirectResponse(request.app.state.session.login_url(), status_code=307)


@router.get(
    "/session/callback",
    tags=["session"],
    summary="Where Kite redirects after login: completes the session",
    response_class=HTMLResponse,
)
async def callback(
    request: Request,
    request_token: Annotated[str, Query(min_length=1, max_length=128)],
    status: str | None = None,
) -> HTMLResponse:
    record = await request.app.state.session.complete_login(request_token)
    await request.app.state.instruments.ensure_fresh(True)
    return HTMLResponse(
        f"<h1>Dalal: logged in as {record.user_id}</h1>"
        f"<p>The session is valid until {ist_iso(record.expires_at)}. "
        "You can close this tab.</p>"
    )


@router.post("/orders", tags=["orders"], summary="Place an order (idempotent on client_order_id)")
async def place_order(command: PlaceOrder, request: Request) -> dict[str, Any]:
    """The command goes on `orders.commands` too (the portfolio holds its funds as for any
    order), then through the same guards as every order; the answer is its journal row."""
    publisher = request.app.state.runtime.publisher

    async def announce(cmd: PlaceOrder) -> None:
        await publisher.publish(ORDERS_COMMANDS, cmd)

    row = await request.app.state.desk.place_announced(command, announce)
    return row.view()


@router.get("/orders", tags=["orders"], summary="Orders in the journal, newest first")
async def list_orders(
    request: Request,
    status: Annotated[str | None, Query(max_length=24)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    rows = await asyncio.to_thread(request.app.state.journal.list, status=status, limit=limit)
    return [r.view() for r in rows]


@router.get("/orders/{client_order_id}", tags=["orders"], summary="One order and its trades")
async def get_order(client_order_id: str, request: Request) -> dict[str, Any]:
    journal = request.app.state.journal
    row = await asyncio.to_thread(journal.get, client_order_id)
    if row is None:
        raise NotFoundError(f"no order with client_order_id {client_order_id}")
    trades = await asyncio.to_thread(journal.trades_of, client_order_id)
    charges = None
    if row.filled_quantity and row.average_price and row.command.exchange in ("NSE", "BSE"):
        terms = row.current
        try:  # the shared charges model: what this order's executed part costs (NSE equity)
            charges = order_charges(
                terms.side,
                terms.product,
                row.filled_quantity,
                row.average_price,
                _trade_day(trades) or row.updated_at.astimezone(IST).date(),
            )
        except (ValueError, RatesNotKnownError):
            charges = None
    return {
        **row.view(),
        "charges": str(charges.total) if charges is not None else None,
        "trades": [
            {
                "trade_id": t["trade_id"],
                "quantity": t["quantity"],
                "price": str(t["price"]),
                "filled_at": ist_iso(t["filled_at"]),
            }
            for t in trades
        ],
    }


def _trade_day(trades: list[dict[str, Any]]) -> date | None:
    return trades[-1]["filled_at"].astimezone(IST).date() if trades else None


class ModifyBody(BaseModel):
    """What to change (at least one field); the rest of the order stays as it is."""

    model_config = {"extra": "forbid"}
    quantity: Quantity | None = None
    price: PositiveRupees | None = None
    trigger_price: PositiveRupees | None = None
    order_type: Annotated[str, Field(pattern=r"^(MARKET|LIMIT|SL|SL-M)$")] | None = None


@router.patch(
    "/orders/{client_order_id}",
    tags=["orders"],
    summary="Modify an open order (price, quantity, trigger, order type); guards re-checked",
)
async def modify_order(client_order_id: str, body: ModifyBody, request: Request) -> dict[str, Any]:
    try:
        command = ModifyOrder(client_order_id=client_order_id, **body.model_dump())
    except ValueError:
        raise NotFoundError(f"no order with client_order_id {client_order_id}") from None
    return (await request.app.state.desk.modify(command)).view()


@router.delete("/orders/{client_order_id}", tags=["orders"], summary="Cancel an open order")
async def cancel_order(client_order_id: str, request: Request) -> dict[str, Any]:
    return (await request.app.state.desk.cancel(client_order_id)).view()


async def _protection(request: Request, client_order_id: str) -> dict[str, Any]:
    row = await asyncio.to_thread(request.app.state.journal.protection, client_order_id)
    if row is None:
        raise NotFoundError(f"no protection with client_order_id {client_order_id}")
    return row.view()


@router.post(
    "/protections",
    tags=["protections"],
    summary="Keep a stop (and target) for a CNC holding at the exchange, as a Kite GTT",
)
async def protect_position(command: ProtectPosition, request: Request) -> dict[str, Any]:
    """The same as a `ProtectPosition` on `orders.commands`: placed (or modified when the
    terms changed) and answered with its row; `client_order_id` is the id the order it places
    will carry. Status ACTIVE, or FAILED with Kite's reason."""
    if not request.app.state.desk.leader:
        raise NotLeader("this broker replica is not the active order placer; retry shortly")
    await request.app.state.protections.protect(command)
    return await _protection(request, command.client_order_id)


@router.get("/protections", tags=["protections"], summary="Protective GTTs, oldest first")
async def list_protections(
    request: Request, status: Annotated[str | None, Query(max_length=16)] = None
) -> list[dict[str, Any]]:
    statuses = [status.upper()] if status else None
    rows = await asyncio.to_thread(request.app.state.journal.protections, statuses)
    return [r.view() for r in rows]


@router.get("/protections/{client_order_id}", tags=["protections"], summary="One protection")
async def get_protection(client_order_id: str, request: Request) -> dict[str, Any]:
    return await _protection(request, client_order_id)


@router.delete(
    "/protections/{client_order_id}", tags=["protections"], summary="Remove a protection's GTT"
)
async def remove_protection(client_order_id: str, request: Request) -> dict[str, Any]:
    if not request.app.state.desk.leader:
        raise NotLeader("this broker replica is not the active order placer; retry shortly")
    await _protection(request, client_order_id)  # 404 for an unknown id
    try:
        command = CancelProtection(client_order_id=client_order_id, reason="by hand")
    except ValueError:
        raise NotFoundError(f"no protection with client_order_id {client_order_id}") from None
    await request.app.state.protections.cancel(command)
    return await _protection(request, client_order_id)


@router.post("/postbacks/kite", tags=["orders"], summary="Kite order postbacks (checksummed)")
async def postback(request: Request) -> dict[str, str]:
    try:
        payload = await request.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        from dalal_broker.postback import BadPostback

        raise BadPostback("postback body must be a JSON object")
    verify_postback(payload, request.app.state.api_secret)
    await request.app.state.desk.apply_order_update(BrokerOrder.from_kite(payload))
    await request.app.state.desk.flush_outbox()
    return {"status": "ok"}


class EngageBody(BaseModel):
    reason: str = Field(min_length=1, max_length=200)
    cancel_open_orders: bool = False


@router.get("/kill-switch", tags=["guards"], summary="Is the kill switch engaged?")
async def kill_switch_state(request: Request) -> dict[str, Any]:
    return (await request.app.state.kill_switch.state()).view()


@router.post("/kill-switch/engage", tags=["guards"], summary="Refuse every new order")
async def engage(body: EngageBody, request: Request) -> dict[str, Any]:
    state = await request.app.state.kill_switch.engage(body.reason, by="api")
    await request.app.state.runtime.publisher.publish(
        SYSTEM_EVENTS, KillSwitchEngaged(reason=body.reason, engaged_by="api")
    )
    cancelled: list[str] = []
    failed: dict[str, str] = {}
    if body.cancel_open_orders:
        desk = request.app.state.desk
        for row in await asyncio.to_thread(request.app.state.journal.live):
            if not row.broker_order_id:
                continue
            try:  # one order that cannot be cancelled must not keep the others open
                await desk.cancel(row.client_order_id)
                cancelled.append(row.client_order_id)
            except DalalError as exc:
                failed[row.client_order_id] = exc.code
                log.warning(
                    "kill_switch.cancel_failed", client_order_id=row.client_order_id, error=exc.code
                )
    return {**state.view(), "cancelled": cancelled, "cancel_failed": failed}


@router.post("/kill-switch/release", tags=["guards"], summary="Allow orders again")
async def release(request: Request) -> dict[str, Any]:
    await request.app.state.kill_switch.release()
    await request.app.state.runtime.publisher.publish(
        SYSTEM_EVENTS, KillSwitchReleased(released_by="api")
    )
    return (await request.app.state.kill_switch.state()).view()


@router.get("/instruments", tags=["instruments"], summary="Search instruments by symbol or name")
async def search_instruments(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=40)],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[dict[str, Any]]:
    master = request.app.state.instruments.require()
    return [instrument_view(i) for i in master.search(q, limit)]


@router.get("/instruments/{exchange}/{symbol}", tags=["instruments"], summary="One instrument")
async def get_instrument(exchange: str, symbol: str, request: Request) -> dict[str, Any]:
    master = request.app.state.instruments.require()
    return instrument_view(master.lookup(symbol, exchange.upper()))


@router.get("/reconcile", tags=["orders"], summary="Journal against Kite's orders and trades")
async def get_reconcile(request: Request) -> dict[str, Any]:
    state = request.app.state
    breaks, orders, trades = await journal_breaks(state.journal, state.adapter)
    return {
        "ok": not breaks,
        "breaks": [b.view() for b in breaks],
        "orders_checked": orders,
        "trades_checked": trades,
    }


@router.get(
    "/positions", tags=["views"], summary="Kite's positions ({net, day}), as Kite gives them"
)
async def get_positions(request: Request) -> dict[str, Any]:
    return await request.app.state.adapter.positions()


@router.get("/holdings", tags=["views"], summary="Kite's holdings, as Kite gives them")
async def get_holdings(request: Request) -> list[dict[str, Any]]:
    return await request.app.state.adapter.holdings()


@router.get("/trades", tags=["views"], summary="Trades in the journal, with their orders' terms")
async def get_trades(
    request: Request, limit: Annotated[int, Query(ge=1, le=5000)] = 5000
) -> dict[str, Any]:
    journal = request.app.state.journal

    def collect() -> list[dict[str, Any]]:
        out = []
        for row in journal.list(limit=limit):
            c = row.command
            for t in journal.trades_of(row.client_order_id):
                out.append(
                    {
                        "trade_id": t["trade_id"],
                        "client_order_id": row.client_order_id,
                        "broker_order_id": t["broker_order_id"],
                        "exchange": c.exchange,
                        "symbol": c.symbol,
                        "side": c.side,
                        "product": c.product,
                        "quantity": t["quantity"],
                        "price": str(t["price"]),
                        "filled_at": ist_iso(t["filled_at"]),
                    }
                )
        return sorted(out, key=lambda t: (t["filled_at"], t["trade_id"]))

    return {"trades": await asyncio.to_thread(collect)}


@router.get("/status", tags=["ops"], summary="Placer role, session and kill switch at a glance")
async def status(request: Request) -> dict[str, Any]:
    state = request.app.state
    s = state.desk.settings
    return {
        "leader": state.desk.leader,
        "mode": s.mode,
        "session": state.session.view(),
        "kill_switch": (await state.kill_switch.state()).view(),
        # the guards every order meets last (money as decimal strings)
        "guards": {
            "max_order_value_rupees": str(s.max_order_value_rupees),
            "live_capital_cap_rupees": str(s.live_capital_cap_rupees) if s.mode == "live" else None,
            "max_orders_per_second": s.max_orders_per_second,
            "market_hours_enforced": s.enforce_market_hours,
        },
    }
