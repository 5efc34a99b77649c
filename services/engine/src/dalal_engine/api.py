"""HTTP routes of the engine (thin)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from dalal_engine import sweeps
from dalal_engine.backtest_jobs import parse_request
from dalal_engine.handlers import publish_decisions, publish_new
from dalal_engine.live import RiskRefused
from dalal_engine.store import Intent
from dalal_engine.strategy import describe, registry
from dalal_engine.sweeps import MAX_POINTS
from dalal_engine.tasks import send, send_sweep
from dalal_shared.errors import ConflictError, DalalError, NotFoundError
from dalal_shared.ids import new_id
from dalal_shared.logging import get_logger
from dalal_shared.messages import PlaceOrder
from dalal_shared.timeutil import ist_iso, utcnow

log = get_logger(__name__)
router = APIRouter(prefix="/engine", tags=["orders"])


def _view(intent: Intent) -> dict[str, Any]:
    return {
        "client_order_id": intent.command.client_order_id,
        "strategy": intent.strategy,
        "symbol": intent.command.symbol,
        "side": intent.command.side,
        "quantity": intent.command.quantity,
        "status": intent.status,
        "reason": intent.reason or None,
        "filled_quantity": intent.filled_quantity,
        "created_at": ist_iso(intent.created_at) if intent.created_at else None,
    }


async def _reference_price(request: Request, command: PlaceOrder) -> float:
    """What a hand-sent order is valued at: its limit (or SL-M trigger) price, else the
    broker's quote (last tick, else Kite's LTP), else the symbol's last bar here; 0 when none
    is known (the risk manager then refuses it `no_reference_price`)."""
    if command.order_type in ("LIMIT", "SL") and command.price is not None:
        return float(command.price)
    if command.order_type == "SL-M" and command.trigger_price is not None:
        return float(command.trigger_price)
    try:
        body = await asyncio.to_thread(
            request.app.state.broker.quotes, [f"{command.exchange}:{command.symbol}"]
        )
        for q in body.get("quotes", []):
            if q.get("symbol") == command.symbol and q.get("exchange") == command.exchange:
                return float(q["last_price"])
    except (DalalError, KeyError, TypeError, ValueError) as exc:
        log.warning("engine.quote_failed", symbol=command.symbol, error=str(exc)[:200])
    store = request.app.state.live.store
    last = await asyncio.to_thread(store.last_close, command.exchange, command.symbol)
    return last or 0.0


@router.post(
    "/orders",
    summary="Send an order by hand through the engine's risk manager (idempotent on "
    "client_order_id)",
    status_code=202,
    responses={
        409: {"description": "the client_order_id was used for another order"},
        422: {"description": "refused by the risk manager: `reason` names the rule"},
        503: {"description": "the bus is unreachable: nothing was sent; send it again"},
    },
)
async def submit_order(command: PlaceOrder, request: Request) -> JSONResponse:
    """The order becomes a durable intent of strategy `manual` after the risk manager's
    check (kill switch, safety state, session, order rate, its value against the manual
    book's position cap and the cash), and goes out through the engine's outbox; the broker's
    guards stay the last line. 202 with the intent when new, 200 when the same order was sent
    before, 422 `risk_refused` with `reason`, 409 for another order under a used id."""
    live = request.app.state.live
    publisher = request.app.state.runtime.publisher
    gate = request.app.state.gate
    known = await asyncio.to_thread(live.store.intent, command.client_order_id)
    if known is not None and known.command == command:
        intent, created = await _step(request, live.revive, known), False
    else:
        price = await _reference_price(request, command) if known is None else 0.0
        try:
            intent, created = await _step(request, live.submit_manual, command, price)
        except RiskRefused:
            with contextlib.suppress(Exception):  # the refusal on the bus when it can be
                await publish_decisions(live, publisher)
            raise
    try:
        await publish_new(live, publisher, gate)
        await publish_decisions(live, publisher)
    except Exception:  # not sent (Redis down: a 503): never sent later by surprise
        if intent.status == "SUBMITTED":
            await _step(request, live.unsent, command.client_order_id)
        raise
    return JSONResponse(_view(intent), status_code=202 if created else 200)


@router.get("/orders/{client_order_id}", summary="What became of an order intent")
async def get_order(client_order_id: str, request: Request) -> dict[str, Any]:
    """Any intent of the engine: sent by hand (strategy `manual`) or by a strategy."""
    intent = await asyncio.to_thread(request.app.state.live.store.intent, client_order_id)
    if intent is None:
        raise NotFoundError(f"no order with client_order_id {client_order_id}")
    return _view(intent)


async def _step(request: Request, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """One step of the live loop through its gate (in a worker thread, never concurrent with
    a bus handler)."""
    return await request.app.state.gate.run(fn, *args, **kwargs)


async def _status(request: Request) -> dict[str, Any]:
    status: dict[str, Any] = await _step(request, request.app.state.live.status)
    status["schedules"] = [c.status() for c in request.app.state.cycles]
    return status


@router.post("/start", summary="Run the live loop: entries and exits (the mode persists)")
async def start_engine(request: Request) -> dict[str, Any]:
    await _step(request, request.app.state.live.start)
    return await _status(request)


@router.post("/resume", summary="Run again after a pause or a stop (same as start)")
async def resume_engine(request: Request) -> dict[str, Any]:
    await _step(request, request.app.state.live.resume)
    return await _status(request)


@router.post("/pause", summary="No new entries; exits, stop-losses and targets keep working")
async def pause_engine(request: Request) -> dict[str, Any]:
    await _step(request, request.app.state.live.pause)
    return await _status(request)


@router.post("/flatten", summary="Exit every open position at market, cancel entries, then pause")
async def flatten_engine(request: Request) -> dict[str, Any]:
    live = request.app.state.live
    outcome = await _step(request, live.flatten)
    outcome.pop("orders")
    await publish_new(live, request.app.state.runtime.publisher, request.app.state.gate)
    await publish_decisions(live, request.app.state.runtime.publisher)
    return {"flatten": outcome, **await _status(request)}


@router.post(
    "/stop",
    summary="Decide nothing more: only when flat (409 not_flat otherwise), unless "
    "abandon_exits=true leaves open positions without exits, stops and targets",
)
async def stop_engine(request: Request, abandon_exits: bool = False) -> dict[str, Any]:
    await _step(request, request.app.state.live.stop, abandon_exits=abandon_exits)
    return await _status(request)


@router.get("/status", summary="Mode, safety state, market clock, risk state, positions")
async def engine_status(request: Request) -> dict[str, Any]:
    return await _status(request)


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
    store = request.app.state.live.store
    rows = await asyncio.to_thread(store.decisions, max(1, min(limit, 1000)))
    return [{**row, "at": _ist(row["at"])} for row in rows]


def _ist(stored: str | None) -> str | None:
    """A time the store keeps as UTC ISO text, as the API shows times: IST (+05:30)."""
    return ist_iso(datetime.fromisoformat(stored)) if stored else None


backtests_router = APIRouter(prefix="/backtests", tags=["backtests"])


def _job_view(job: dict[str, Any]) -> dict[str, Any]:
    bid = job["id"]
    done, total = job["bars_done"], job["bars_total"]
    out: dict[str, Any] = {
        "id": bid,
        "status": job["status"],
        "request": job["request"],
        "progress": {
            "bars_done": done,
            "bars_total": total,
            "fraction": round(done / total, 4) if total else 0.0,
            "eta_seconds": None if job["eta_seconds"] is None else round(job["eta_seconds"], 1),
        },
        "created_at": _ist(job["created_at"]),
        "started_at": _ist(job["started_at"]),
        "finished_at": _ist(job["finished_at"]),
        "error": job["error"],
    }
    if job["status"] == "done":
        out["summary"] = job["summary"]
        out["links"] = {
            "json": f"/backtests/{bid}/report.json",
            "html": f"/backtests/{bid}/report.html",
        }
    return out


async def _job(request: Request, backtest_id: str) -> dict[str, Any]:
    job = await asyncio.to_thread(request.app.state.live.store.backtest, backtest_id)
    if job is None:
        raise NotFoundError(f"no backtest {backtest_id}")
    return job


@backtests_router.post(
    "",
    status_code=202,
    summary="Run a backtest on the engine worker (a Celery task); poll GET /backtests/{id}",
)
async def create_backtest(request: Request, body: Annotated[Any, Body()]) -> JSONResponse:
    parsed = parse_request(body)
    backtest_id = new_id()
    store = request.app.state.live.store
    await asyncio.to_thread(store.create_backtest, backtest_id, parsed.to_json(), utcnow())
    await asyncio.to_thread(send, request.app.state.celery, backtest_id)
    return JSONResponse(_job_view(await _job(request, backtest_id)), status_code=202)


@backtests_router.get("", summary="The latest backtests, newest first (status, progress, summary)")
async def list_backtests(
    request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    jobs = await asyncio.to_thread(request.app.state.live.store.backtests, limit)
    return [_job_view(job) for job in jobs]


@backtests_router.get("/{backtest_id}", summary="Status, progress and (when done) the summary")
async def get_backtest(request: Request, backtest_id: str) -> dict[str, Any]:
    return _job_view(await _job(request, backtest_id))


@backtests_router.get("/{backtest_id}/report.{fmt}", summary="The report (json or html)")
async def backtest_report(request: Request, backtest_id: str, fmt: str) -> FileResponse:
    job = await _job(request, backtest_id)
    folder = request.app.state.backtests_dir / backtest_id
    return _report_file(folder, fmt, job["status"], f"backtest {backtest_id}")


def _report_file(folder: Path, fmt: str, status: str, what: str) -> FileResponse:
    """A finished run's `result.json` or `report.html` (a backtest's, or a sweep's best)."""
    if fmt not in ("json", "html"):
        raise NotFoundError(f"no report format {fmt!r}; json or html")
    if status != "done":
        raise ConflictError(f"{what} is {status}, not done")
    path = folder / ("result.json" if fmt == "json" else "report.html")
    if not path.exists():
        raise NotFoundError(f"the report of {what} is not on this host's disk")
    return FileResponse(path, media_type="application/json" if fmt == "json" else "text/html")


sweeps_router = APIRouter(prefix="/sweeps", tags=["sweeps"])


def _sweep_view(sweep: dict[str, Any], top: int) -> dict[str, Any]:
    sid = sweep["id"]
    request = sweeps.SweepRequest.model_validate(sweep["request"])
    trials = sweep["trials"]
    ended = [t for t in trials if t["status"] in ("done", "failed")]
    seconds = [t["seconds"] for t in ended if t["seconds"] is not None]
    running = sum(1 for t in trials if t["status"] == "running")
    left = len(trials) - len(ended)
    # ETA: the mean trial time, spread over the trials running at once (the workers)
    eta = (
        round(sum(seconds) / len(seconds) * left / max(1, running), 1)
        if seconds and left
        else (0.0 if not left else None)
    )
    out: dict[str, Any] = {
        "id": sid,
        "status": sweep["status"],
        "objective": request.objective,
        "request": sweep["request"],
        "progress": {
            "trials_done": len(ended),
            "trials_total": len(trials),
            "running": running,
            "failed": sum(1 for t in trials if t["status"] == "failed"),
            "fraction": round(len(ended) / len(trials), 4) if trials else 1.0,
            "eta_seconds": eta,
        },
        "results": [
            {"n": t["n"], "params": t["params"], "metrics": t["metrics"], "seconds": t["seconds"]}
            for t in sweeps.ranked(trials, request.objective)[:top]
        ],
        "failures": [
            {"n": t["n"], "params": t["params"], "error": t["error"]}
            for t in trials
            if t["status"] == "failed"
        ][:top],
        "workers": sorted({t["worker"] for t in trials if t["worker"]}),
        "best": sweep["best"],
        "error": sweep["error"],
        "created_at": _ist(sweep["created_at"]),
        "finished_at": _ist(sweep["finished_at"]),
    }
    if sweep["status"] == "done":
        out["links"] = {"html": f"/sweeps/{sid}/report.html", "json": f"/sweeps/{sid}/report.json"}
    return out


async def _sweep(request: Request, sweep_id: str) -> dict[str, Any]:
    sweep = await asyncio.to_thread(request.app.state.live.store.sweep, sweep_id)
    if sweep is None:
        raise NotFoundError(f"no sweep {sweep_id}")
    return sweep


@sweeps_router.post(
    "",
    status_code=202,
    summary="Backtest every point of a parameter grid on the engine workers; poll GET /sweeps/{id}",
)
async def create_sweep(request: Request, body: Annotated[Any, Body()]) -> JSONResponse:
    parsed = sweeps.parse_sweep(body)
    sweep_id = new_id()
    store = request.app.state.live.store
    points = list(parsed.points())
    await asyncio.to_thread(store.create_sweep, sweep_id, parsed.to_json(), points, utcnow())
    await asyncio.to_thread(send_sweep, request.app.state.celery, sweep_id, len(points))
    return JSONResponse(_sweep_view(await _sweep(request, sweep_id), 20), status_code=202)


@sweeps_router.get("", summary="The latest sweeps, newest first (progress and the top results)")
async def list_sweeps(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    top: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 5,
) -> list[dict[str, Any]]:
    store = request.app.state.live.store

    def load() -> list[dict[str, Any]]:
        found = (store.sweep(i) for i in store.sweep_ids(limit))
        return [s for s in found if s is not None]

    return [_sweep_view(s, top) for s in await asyncio.to_thread(load)]


@sweeps_router.get("/{sweep_id}", summary="Progress, the ranked results and (when done) the best")
async def get_sweep(
    request: Request, sweep_id: str, top: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 20
) -> dict[str, Any]:
    return _sweep_view(await _sweep(request, sweep_id), top)


@sweeps_router.get("/{sweep_id}/report.{fmt}", summary="The best point's report (json or html)")
async def sweep_report(request: Request, sweep_id: str, fmt: str) -> FileResponse:
    sweep = await _sweep(request, sweep_id)
    folder = request.app.state.backtests_dir / "sweeps" / sweep_id
    return _report_file(folder, fmt, sweep["status"], f"sweep {sweep_id}")
