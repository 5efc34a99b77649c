"""HTTP routes of the portfolio: thin; every answer comes from `PortfolioService`."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from dalal_portfolio.reconcile import BrokerView, BrokerViewSource, reconcile
from dalal_portfolio.seed import SeedState
from dalal_portfolio.service import PortfolioService
from dalal_shared import performance
from dalal_shared.messages import Symbol
from dalal_shared.money import paise

router = APIRouter()

SymbolPath = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Z0-9&\-_. ]+$")]


def _service(request: Request) -> PortfolioService:
    return request.app.state.portfolio


def _money(value: Decimal) -> str:
    """Money at the API's edge: to the paisa (the ledger keeps 4 decimals inside)."""
    return str(paise(value))


class CashIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(
        min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-:.]+$",
        description="idempotency key: the same key is recorded once",
    )  # fmt: skip
    amount_rupees: Decimal = Field(gt=0, max_digits=20, decimal_places=2)
    note: str = Field("", max_length=500)


async def _read_model(service: PortfolioService, key: str, build: Any) -> Response:
    """A read model's JSON, rendered once per ledger state (a cache hit stays on the loop)."""
    body = service.rendered(key)
    if body is None:
        body = await asyncio.to_thread(service.render, key, build)
    return Response(body, media_type="application/json")


def portfolio_json(service: PortfolioService) -> dict[str, Any]:
    v = service.valuation()
    return {
        **{k: (_money(x) if isinstance(x, Decimal) else x) for k, x in asdict(v).items()},
        "fills_applied": len(service.book.fills()),
        **service.blocked_orders(),
    }


@router.get("/portfolio", summary="Cash, equity, P&L and capital at a glance")
async def get_portfolio(request: Request) -> Response:
    service = _service(request)
    return await _read_model(service, "portfolio", lambda: portfolio_json(service))


@router.get("/positions", summary="Open positions (add include_closed=true for flat ones)")
async def get_positions(request: Request, include_closed: bool = False) -> Response:
    service = _service(request)
    return await _read_model(
        service,
        f"positions:{include_closed}",
        lambda: {"positions": service.positions(include_closed=include_closed)},
    )


@router.get("/positions/{symbol}", summary="Positions in one symbol (every product); 404 if none")
def get_position(request: Request, symbol: SymbolPath) -> dict[str, Any]:
    return {"symbol": symbol, "positions": _service(request).position(symbol)}


@router.get("/trades", summary="Closed round trips with their exits, newest last")
def get_trades(
    request: Request,
    symbol: Annotated[str | None, Query(max_length=40, pattern=r"^[A-Z0-9&\-_. ]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    trades = _service(request).trades()
    if symbol is not None:
        trades = [t for t in trades if t["symbol"] == symbol]
    return {"trades": trades[-limit:]}


@router.get("/performance", summary="Trade and return statistics, and the seed's metrics")
def get_performance(request: Request) -> dict[str, Any]:
    return _service(request).performance()


@router.get("/equity-curve", summary="Equity snapshots as JSON, or as an HTML page with a plot")
def get_equity_curve(
    request: Request,
    format: Literal["json", "html"] = "json",
    daily: bool = Query(False, description="only the end-of-day snapshots, one per session"),
) -> Any:
    service = _service(request)
    points = service.equity_points(end_of_day_only=daily)
    initial = service.book.initial_capital  # the first peak of the drawdown column
    if format == "html":
        page = performance.curve_html(points, title="Dalal equity curve", initial_equity=initial)
        return HTMLResponse(page)
    return {"points": performance.curve_json(points, initial)}


def _reconcile(service: PortfolioService, view: BrokerView) -> dict[str, Any]:
    result = reconcile(service.book.positions(), service.book.fills(), view)
    return {
        "clean": result.clean,
        "positions_compared": result.positions_compared,
        "trades_compared": result.trades_compared,
        "breaks": [asdict(b) for b in result.breaks],
    }


@router.get("/reconcile", summary="Compare the ledger with the broker's live view")
def get_reconcile(request: Request) -> dict[str, Any]:
    source: BrokerViewSource = request.app.state.broker_view
    return _reconcile(_service(request), source.fetch())


@router.post("/reconcile", summary="Compare the ledger with a broker view given in the body")
def post_reconcile(request: Request, view: BrokerView) -> dict[str, Any]:
    return _reconcile(_service(request), view)


@router.post("/cash/deposits", summary="Record a deposit (idempotent on key)")
def post_deposit(request: Request, body: CashIn) -> dict[str, Any]:
    new = _service(request).move_cash(body.key, body.amount_rupees, body.note)
    return {"recorded": new, "portfolio": portfolio_json(_service(request))}


@router.post("/cash/withdrawals", summary="Record a withdrawal (idempotent on key)")
def post_withdrawal(request: Request, body: CashIn) -> dict[str, Any]:
    new = _service(request).move_cash(body.key, -body.amount_rupees, body.note)
    return {"recorded": new, "portfolio": portfolio_json(_service(request))}


@router.post("/seed/import", summary="Import the seed's data/portfolio_state.json (once)")
def post_seed_import(request: Request, state: SeedState) -> dict[str, Any]:
    return _service(request).import_seed(state)


@router.get("/seed/export", summary="The ledger in the seed's portfolio_state.json shape")
def get_seed_export(request: Request) -> dict[str, Any]:
    return _service(request).export_seed_state()


__all__ = ["Symbol", "router"]
