"""HTTP routes of the data-cache: thin, they call the candle service and the job store."""

from __future__ import annotations

import io
from datetime import date
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from dalal_data.candles import BadRange, CandleService, parse_bound
from dalal_data.planning import last_closed_session
from dalal_shared import candlestore as cs
from dalal_shared.calendar import CalendarCoverageError
from dalal_shared.errors import NotFoundError
from dalal_shared.timeutil import IST, utcnow

router = APIRouter()

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def _candles(request: Request) -> CandleService:
    return request.app.state.candles


def _json_rows(table: pa.Table) -> list[list[Any]]:
    cols = table.to_pydict()
    return [
        [ts.astimezone(IST).isoformat(), o, h, lo, c, v, oi]
        for ts, o, h, lo, c, v, oi in zip(
            cols["ts"],
            cols["open"],
            cols["high"],
            cols["low"],
            cols["close"],
            cols["volume"],
            cols["oi"],
            strict=True,
        )
    ]


@router.get("/candles/{exchange}/{symbol}", tags=["candles"])
async def candles(
    request: Request,
    exchange: str,
    symbol: str,
    from_: Annotated[str, Query(alias="from", description="yyyy-mm-dd[Thh:mm[:ss]] IST")],
    interval: Annotated[str, Query(description="minute ... day")] = "day",
    to: Annotated[str, Query(description="yyyy-mm-dd[Thh:mm[:ss]] IST; default today")] = "",
    format: Annotated[Literal["json", "csv", "arrow"] | None, Query()] = None,
) -> Response:
    """Candles of one symbol, from the cache; gaps are fetched from Kite first."""
    service = _candles(request)
    start = parse_bound(from_, end=False)
    end = parse_bound(to, end=True) if to else utcnow().astimezone(IST)
    table, report = await service.get(exchange, symbol, interval, start, end)
    accept = request.headers.get("accept", "")
    fmt = format or (
        "arrow" if ARROW_STREAM in accept else "csv" if "text/csv" in accept else "json"
    )
    headers = {"X-Dalal-Cache": report.result, "X-Dalal-Kite-Requests": str(len(report.chunks))}
    if fmt == "arrow":
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Response(sink.getvalue(), media_type=ARROW_STREAM, headers=headers)
    if fmt == "csv":
        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        return Response(sink.getvalue(), media_type="text/csv", headers=headers)
    return JSONResponse(
        {
            "exchange": exchange.upper(),
            "symbol": symbol,
            "interval": interval,
            "cache": report.result,
            "kite_requests": len(report.chunks),
            "columns": ["ts", "open", "high", "low", "close", "volume", "oi"],
            "candles": _json_rows(table),
        },
        headers=headers,
    )


@router.get("/coverage", tags=["candles"])
async def coverage(
    request: Request,
    exchange: str | None = None,
    interval: str | None = None,
    symbol: str | None = None,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> dict[str, Any]:
    """Per cached series: covered day ranges and the session days missing in [from, to]
    (default: its first covered day to the last closed session)."""
    service = _candles(request)
    for day in (from_, to):  # days the calendar cannot tell about are a 400, as on /candles
        if day is not None:
            try:
                service.calendar.kind(day)
            except CalendarCoverageError as exc:
                raise BadRange(str(exc)) from None
    if from_ is not None and to is not None and from_ > to:
        raise BadRange(f"`from` ({from_}) is after `to` ({to})")
    last_closed = last_closed_session(service.calendar, utcnow())
    series = []
    for ex, iv, sym in cs.cached_files(service.root):
        if (
            (exchange and ex != exchange.upper())
            or (interval and iv != interval)
            or (symbol and sym != symbol)
        ):
            continue
        ranges = cs.read_coverage(service.root, ex, iv, sym)
        first = from_ or (date.fromisoformat(ranges[0][0]) if ranges else last_closed)
        series.append(service.coverage(ex, iv, sym, first, to or last_closed))
    return {"series": series}


@router.post("/backfill", tags=["jobs"], status_code=202)
async def start_backfill(
    request: Request,
    body: Annotated[
        dict[str, Any],
        Body(
            examples=[
                {
                    "symbols": ["RELIANCE"],
                    "interval": "day",
                    "from": "2020-10-01",
                    "to": "2025-09-30",
                }
            ]
        ),
    ],
) -> JSONResponse:
    """Queue a backfill of a universe on the data-worker; answers the job id."""
    jobs = request.app.state.jobs
    job = await jobs.submit(body)
    return JSONResponse(job, status_code=202)


@router.get("/backfill/{job_id}", tags=["jobs"])
async def backfill_status(request: Request, job_id: str) -> dict[str, Any]:
    job = await request.app.state.jobs.status(job_id)
    if job is None:
        raise NotFoundError(f"no backfill job {job_id}")
    return job


@router.get("/backfill", tags=["jobs"])
async def backfill_list(request: Request) -> dict[str, Any]:
    return {"jobs": await request.app.state.jobs.recent()}


@router.post("/instruments/refresh", tags=["jobs"])
async def instruments_refresh(
    request: Request,
    exchange: Annotated[
        str, Query(pattern="^[A-Za-z]{2,8}$", description="Kite exchange: NSE, BSE, NFO, ...")
    ] = "NSE",
) -> dict[str, Any]:
    n = await request.app.state.instruments.refresh(exchange.upper())
    return {"exchange": exchange.upper(), "instruments": n}


@router.get("/jobs", tags=["jobs"])
async def scheduled_jobs(request: Request) -> dict[str, Any]:
    """The scheduler's daily jobs (IST, session days only), when each is next due, and the
    outcome of its last run (the pre-market session check among them)."""
    from dalal_data.jobs import last_runs
    from dalal_data.schedule import next_due

    calendar = request.app.state.candles.calendar
    now = utcnow()
    runs = await last_runs(request.app.state.runtime.redis)
    out = []
    for job in request.app.state.schedule:
        short = job.name.rsplit(".", 1)[-1]
        try:
            due: str | None = next_due([job], calendar, now).at.isoformat()
        except ValueError:  # the holiday list does not reach that far
            due = None
        out.append(
            {
                "job": short,
                "at_ist": job.at.strftime("%H:%M"),
                "next_due": due,
                "last_run": runs.get(short),
            }
        )
    return {"jobs": out}


@router.get("/feed", tags=["feed"])
async def feed_status(request: Request) -> dict[str, Any]:
    feed = getattr(request.app.state, "feed", None)
    if feed is None:
        return {"enabled": False}
    return {"enabled": True, **feed.status()}
