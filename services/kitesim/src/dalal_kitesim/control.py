"""The simulator's own control API under /_sim (not part of Kite's surface).

It moves the clock, injects faults, silences the ticker, expires tokens and rejects orders.
When DALAL_API_KEY (or DALAL_API_KEY_SHA256) is set, every /_sim call needs it as a bearer token;
without one the control API is open (kitesim binds to 127.0.0.1 by default).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from dalal_kitesim.errors import InputException, PermissionException
from dalal_kitesim.exchange import kite_time
from dalal_kitesim.faults import Fault

if TYPE_CHECKING:
    from dalal_kitesim.app import Simulator


def _sim(request: Request) -> Simulator:
    return request.app.state.sim


def require_key(request: Request) -> None:
    digest = _sim(request).settings.api_key_digest()
    if digest is None:
        return
    header = request.headers.get("authorization", "")
    presented = header[7:].strip() if header.lower().startswith("bearer ") else ""
    candidate = hashlib.sha256(presented.encode()).hexdigest()
    if not hmac.compare_digest(candidate, digest):
        raise PermissionException("the kitesim control API needs the bearer key (DALAL_API_KEY)")


router = APIRouter(prefix="/_sim", tags=["control"], dependencies=[Depends(require_key)])


def state(sim: Simulator) -> dict[str, Any]:
    clock = sim.clock
    return {
        "now": clock.now.isoformat(),
        "now_ist": kite_time(clock.now),
        "day": clock.day.isoformat(),
        "in_session": clock.in_session,
        "after_square_off": clock.after_square_off,
        "speed": sim.speed,
        "paused": sim.paused,
        "instruments_replayed": len(clock.states),
        "replay_last_day": clock.last_data_day.isoformat() if clock.last_data_day else None,
        "replay_exhausted": clock.replay_exhausted,
        "ticker_connections": len(sim.hub.connections),
        "ticker_silenced": sim.hub.silenced,
        "faults_pending": len(sim.faults.faults),
        "expiry_clock": sim.settings.kitesim_expiry_clock,
        "sessions": [
            {
                "user_id": s.user_id,
                "login_time": s.login_time.isoformat(),
                "expires_at": s.expires_at.isoformat() if s.expires_at else None,
            }
            for s in sim.sessions.live()
        ],
    }


@router.get("/state")
async def get_state(request: Request) -> dict[str, Any]:
    return state(_sim(request))


class Advance(BaseModel):
    seconds: float | None = Field(None, gt=0, description="session seconds (nights are skipped)")
    ticks: int | None = Field(None, gt=0, le=100_000, description="this many tick timestamps")
    until: datetime | None = Field(None, description="an aware time to run to")


@router.post("/clock/advance")
async def advance(request: Request, body: Advance) -> dict[str, Any]:
    sim = _sim(request)
    if body.until is not None:
        if body.until.tzinfo is None:
            raise InputException("`until` must carry a UTC offset")
        if body.until <= sim.clock.now:
            raise InputException("`until` must be later than the simulated now")
        delivered = sim.clock.run_until(body.until)
    elif body.ticks is not None:
        delivered = sim.clock.advance_ticks(body.ticks)
    elif body.seconds is not None:
        delivered = sim.clock.advance(body.seconds)
    else:
        raise InputException("give one of `seconds`, `ticks`, `until`")
    return {"ticks": delivered, **state(sim)}


class Speed(BaseModel):
    session_seconds: float = Field(..., ge=0, description="real seconds per session; 0 pauses")


@router.post("/clock/speed")
async def speed(request: Request, body: Speed) -> dict[str, Any]:
    from dalal_kitesim.app import SESSION_SECONDS

    sim = _sim(request)
    sim.speed = SESSION_SECONDS / body.session_seconds if body.session_seconds else 0.0
    sim.paused = sim.speed == 0
    return state(sim)


class FaultIn(BaseModel):
    kind: Literal["status", "latency", "timeout_after_accept"]
    count: int = Field(1, ge=1, le=10_000)
    status: int = Field(500, ge=400, le=599)
    seconds: float = Field(0.0, ge=0, le=600)
    route: Literal["quote", "historical", "orders", "other"] | None = None
    html: bool = False


@router.post("/faults")
async def add_fault(request: Request, body: FaultIn) -> dict[str, Any]:
    sim = _sim(request)
    sim.faults.add(Fault(**body.model_dump()))
    return {"faults_pending": len(sim.faults.faults)}


@router.delete("/faults")
async def clear_faults(request: Request) -> dict[str, Any]:
    sim = _sim(request)
    sim.faults.clear()
    sim.hub.silenced = False
    sim.exchange.reject_next = 0
    return {"faults_pending": 0}


class RateLimit(BaseModel):
    route: Literal["quote", "historical", "orders", "other"]
    per_second: float = Field(..., ge=0)


@router.post("/rate-limits")
async def rate_limits(request: Request, body: RateLimit) -> dict[str, str]:
    _sim(request).limiter.configure(body.route, body.per_second)
    return {"status": "ok"}


class Silence(BaseModel):
    silent: bool = True


@router.post("/ticker/silence")
async def silence(request: Request, body: Silence) -> dict[str, Any]:
    sim = _sim(request)
    sim.hub.silenced = body.silent
    return state(sim)


@router.post("/session/expire")
async def expire(request: Request) -> dict[str, int]:
    return {"expired": _sim(request).sessions.expire_all()}


class Reject(BaseModel):
    count: int = Field(1, ge=1, le=10_000)
    message: str = "RMS: rejected by kitesim fault injection"


@router.post("/orders/reject")
async def reject(request: Request, body: Reject) -> dict[str, int]:
    ex = _sim(request).exchange
    ex.reject_next = body.count
    ex.reject_message = body.message
    return {"reject_next": ex.reject_next}


@router.get("/orders/received")
async def orders_received(request: Request) -> list[dict[str, Any]]:
    """When each order reached the book, by the machine's wall clock (UTC, microseconds): what
    a latency measurement of the path to Kite compares with its own stamps. Kite's own times
    (`order_timestamp`) are the simulated market's, to the second."""
    return [
        {
            "order_id": order.order_id,
            "tag": order.tag,
            "received_at": order.received_at.isoformat() if order.received_at else None,
        }
        for order in _sim(request).exchange.orders.values()
    ]


@router.post("/login")
async def login(request: Request) -> JSONResponse:
    """A request token without the browser step (what the login page would redirect with)."""
    sim = _sim(request)
    return JSONResponse(
        {"request_token": sim.sessions.issue_request_token(sim.settings.kitesim_user_id)}
    )
