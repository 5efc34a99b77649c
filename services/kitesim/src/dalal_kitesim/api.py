"""Kite Connect v3 routes (and the ticker WebSocket at the root). Thin: they call the domain.

Kite takes form-encoded bodies on POST/PUT and query parameters on GET/DELETE; answers are
`{"status": "success", "data": ...}` or Kite's error envelope (see errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from dalal_kitesim import margins as calculators
from dalal_kitesim.errors import InputException, KiteError, TokenException
from dalal_kitesim.exchange import kite_time
from dalal_kitesim.history import candles_until_now
from dalal_kitesim.marketdata import candle
from dalal_kitesim.ticker import HEARTBEAT, synthetic_depth
from dalal_shared.intervals import INTERVAL_MINUTES, SPAN_DAYS
from dalal_shared.timeutil import IST

if TYPE_CHECKING:
    from dalal_kitesim.app import Simulator
    from dalal_kitesim.session import AccessSession

router = APIRouter()


def ok(data: Any) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data})


def sim_of(request: Request | WebSocket) -> Simulator:
    return request.app.state.sim


def auth(request: Request) -> AccessSession:
    sim = sim_of(request)
    return sim.sessions.check(request.headers.get("authorization"))


async def form(request: Request) -> dict[str, str]:
    """Form body (POST/PUT) merged over the query string; last value wins."""
    out = {k: v for k, v in request.query_params.items()}
    if request.method in ("POST", "PUT"):
        body = (await request.body()).decode("utf-8", errors="replace")
        if body:
            for key, values in parse_qs(body, keep_blank_values=True).items():
                out[key] = values[-1]
    return out


# -- session ----------------------------------------------------------------------------------
LOGIN_PAGE = """<!doctype html><html><head><title>kitesim login</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;background:#f4f5f7;display:flex;justify-content:center;
padding:40px 12px}}main{{background:#fff;border:1px solid #ddd;border-radius:8px;padding:24px;
max-width:380px;width:100%}}h1{{font-size:20px;margin:0 0 8px}}p{{color:#444;font-size:14px}}
label{{display:block;margin:12px 0 4px;font-size:13px}}input{{width:100%;padding:8px;
box-sizing:border-box}}button{{margin-top:16px;width:100%;padding:10px;background:#e8590c;
color:#fff;border:0;border-radius:4px;font-size:15px}}.sim{{background:#fff3bf;padding:8px;
border-radius:4px}}</style></head><body><main>
<h1>Kite Connect (kitesim)</h1>
<p class="sim">This is <b>kitesim</b>, Dalal's exchange simulator, not Zerodha: no real
account, no real money. Any password works; press Login to go back to Dalal logged in.</p>
<form method="post" action="/connect/login">
<input type="hidden" name="api_key" value="{api_key}">
<label>User ID <input name="user_id" value="{user_id}"></label>
<label>Password <input name="password" type="password" value=""></label>
<button type="submit">Login</button></form></main></body></html>"""


@router.get("/connect/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request) -> HTMLResponse:
    sim = sim_of(request)
    api_key = request.query_params.get("api_key", "")
    if api_key != sim.settings.kitesim_api_key:
        raise InputException("Invalid `api_key`.")
    return HTMLResponse(
        LOGIN_PAGE.format(
            api_key=html.escape(api_key), user_id=html.escape(sim.settings.kitesim_user_id)
        )
    )


@router.post("/connect/login", include_in_schema=False)
async def login_submit(request: Request) -> Response:
    sim = sim_of(request)
    params = await form(request)
    if params.get("api_key") != sim.settings.kitesim_api_key:
        raise InputException("Invalid `api_key`.")
    token = sim.sessions.issue_request_token(params.get("user_id") or sim.settings.kitesim_user_id)
    query = urlencode(
        {"request_token": token, "action": "login", "type": "login", "status": "success"}
    )
    sep = "&" if "?" in sim.settings.kitesim_redirect_url else "?"
    return RedirectResponse(f"{sim.settings.kitesim_redirect_url}{sep}{query}", status_code=302)


def _profile(sim: Simulator, user_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "user_type": "individual",
        "email": f"{user_id.lower()}@kitesim.invalid",
        "user_name": "Kitesim User",
        "user_shortname": "Kitesim",
        "broker": "ZERODHA",
        "exchanges": sorted(sim.instruments.exchanges()),
        "products": ["CNC", "MIS"],
        "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
        "avatar_url": None,
        "meta": {"demat_consent": "physical"},
    }


@router.post("/session/token")
async def session_token(request: Request) -> JSONResponse:
    sim = sim_of(request)
    p = await form(request)
    session = sim.sessions.exchange(
        p.get("api_key", ""), p.get("request_token", ""), p.get("checksum", "")
    )
    data = _profile(sim, session.user_id)
    data.update(
        {
            "api_key": sim.settings.kitesim_api_key,
            "access_token": session.access_token,
            "public_token": session.public_token,
            "enctoken": session.public_token,
            "refresh_token": "",
            "silo": "",
            "login_time": kite_time(session.login_time),
        }
    )
    return ok(data)


@router.delete("/session/token")
async def session_logout(request: Request) -> JSONResponse:
    sim = sim_of(request)
    p = await form(request)
    if p.get("api_key") != sim.settings.kitesim_api_key:
        raise InputException("Invalid `api_key`.")
    token = p.get("access_token") or ""
    sim.sessions.check_pair(p.get("api_key", ""), token)
    sim.sessions.invalidate(token)
    return ok(True)


@router.get("/user/profile")
async def profile(request: Request) -> JSONResponse:
    session = auth(request)
    return ok(_profile(sim_of(request), session.user_id))


@router.get("/user/margins")
async def margins(request: Request) -> JSONResponse:
    auth(request)
    return ok(sim_of(request).exchange.margins_kite())


@router.get("/user/margins/{segment}")
async def margins_segment(request: Request, segment: str) -> JSONResponse:
    auth(request)
    all_margins = sim_of(request).exchange.margins_kite()
    if segment not in all_margins:
        raise InputException(f"Invalid segment {segment!r}: equity or commodity.")
    return ok(all_margins[segment])


# -- instruments and history ------------------------------------------------------------------
@router.get("/instruments")
async def instruments_all(request: Request) -> Response:
    auth(request)
    return Response(sim_of(request).instruments.csv_text(), media_type="text/csv")


@router.get("/instruments/{exchange}")
async def instruments_exchange(request: Request, exchange: str) -> Response:
    auth(request)
    sim = sim_of(request)
    if exchange not in sim.instruments.exchanges():
        raise InputException(f"Invalid exchange {exchange!r}.")
    return Response(sim.instruments.csv_text(exchange), media_type="text/csv")


def _parse_when(name: str, raw: str | None) -> datetime:
    if not raw:
        raise InputException(f"Missing `{name}`.")
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=IST)
        value = datetime.fromisoformat(raw.replace(" ", "T", 1))
    except ValueError:
        raise InputException(f"Invalid `{name}`: use yyyy-mm-dd or yyyy-mm-dd hh:mm:ss.") from None
    return value.replace(tzinfo=IST) if value.tzinfo is None else value


@router.get("/instruments/historical/{token}/{interval}")
async def historical(request: Request, token: str, interval: str) -> JSONResponse:
    auth(request)
    sim = sim_of(request)
    if not token.isdigit():
        raise InputException(f"Invalid instrument token {token!r}.")
    inst = sim.instruments.get(int(token))
    if inst is None:
        raise InputException(f"Invalid instrument token {token}.")
    if interval not in INTERVAL_MINUTES:
        raise InputException(f"Invalid interval {interval!r}: one of {list(INTERVAL_MINUTES)}.")
    p = request.query_params
    start = _parse_when("from", p.get("from"))
    end = _parse_when("to", p.get("to"))
    if start > end:
        raise InputException("Invalid range: `from` is after `to`.")
    limit = SPAN_DAYS[interval]
    if end - start > timedelta(days=limit):
        raise InputException(f"interval exceeds max limit: {limit} days")
    for flag in ("continuous", "oi"):
        if p.get(flag, "0") not in ("0", "1", "true", "false"):
            raise InputException(f"Invalid `{flag}`: 0 or 1.")
    if p.get("continuous") in ("1", "true") and inst.instrument_type not in ("FUT",):
        raise InputException("`continuous` is only for futures contracts.")
    with_oi = p.get("oi") in ("1", "true")
    if sim.settings.kitesim_history_after_now:
        bars = sim.bars.between(inst.tradingsymbol, interval, start, end, inst.exchange)
    else:
        bars = candles_until_now(sim.bars, sim.clock, inst, interval, start, end)
    daily = interval == "day"
    return ok({"candles": [candle(b, oi=with_oi, daily=daily) for b in bars]})


# -- quotes -----------------------------------------------------------------------------------
QUOTE_MAX_INSTRUMENTS = 500  # Kite: /quote takes 500 instruments, /quote/ltp and /ohlc 1000
LTP_MAX_INSTRUMENTS = 1000


def _instrument_keys(request: Request, limit: int) -> list[str]:
    keys = request.query_params.getlist("i")
    if not keys:
        raise InputException("Missing `i`: pass one or more EXCHANGE:SYMBOL instruments.")
    if len(keys) > limit:
        raise InputException(f"At most {limit} instruments per request.")
    return keys


def _states(request: Request, limit: int = LTP_MAX_INSTRUMENTS) -> list[tuple[str, Any]]:
    sim = sim_of(request)
    out = []
    for key in _instrument_keys(request, limit):
        inst = sim.instruments.lookup(key)
        state = sim.clock.state(inst.instrument_token) if inst else None
        if state is not None and state.last_price > 0:
            out.append((key, state))
    return out


@router.get("/quote/ltp")
async def quote_ltp(request: Request) -> JSONResponse:
    auth(request)
    return ok(
        {
            key: {
                "instrument_token": s.instrument.instrument_token,
                "last_price": float(s.last_price),
            }
            for key, s in _states(request)
        }
    )


def _ohlc(s: Any) -> dict[str, float]:
    day_open = s.open or s.last_price
    return {
        "open": float(day_open),
        "high": float(s.high or s.last_price),
        "low": float(s.low or s.last_price),
        "close": float(s.prev_close),
    }


@router.get("/quote/ohlc")
async def quote_ohlc(request: Request) -> JSONResponse:
    auth(request)
    return ok(
        {
            key: {
                "instrument_token": s.instrument.instrument_token,
                "last_price": float(s.last_price),
                "ohlc": _ohlc(s),
            }
            for key, s in _states(request)
        }
    )


@router.get("/quote")
async def quote(request: Request) -> JSONResponse:
    auth(request)
    sim = sim_of(request)
    out = {}
    for key, s in _states(request, QUOTE_MAX_INSTRUMENTS):
        bids, asks = synthetic_depth(s, sim.fill_config.spread_bps)
        close = s.prev_close
        limits = sim.exchange.circuit_limits(s.instrument.instrument_token) or (0, 0)
        out[key] = {
            "instrument_token": s.instrument.instrument_token,
            "timestamp": kite_time(s.timestamp or sim.clock.now),
            "last_trade_time": kite_time(s.last_trade_time or sim.clock.now),
            "last_price": float(s.last_price),
            "last_quantity": s.last_quantity,
            "buy_quantity": sum(b.quantity for b in bids),
            "sell_quantity": sum(a.quantity for a in asks),
            "volume": s.volume,
            "average_price": float(s.average_price),
            "oi": 0,
            "oi_day_high": 0,
            "oi_day_low": 0,
            "net_change": float(s.last_price - close) if close else 0,
            "lower_circuit_limit": float(limits[0]),
            "upper_circuit_limit": float(limits[1]),
            "ohlc": _ohlc(s),
            "depth": {
                "buy": [
                    {"price": float(b.price), "quantity": b.quantity, "orders": b.orders}
                    for b in bids
                ],
                "sell": [
                    {"price": float(a.price), "quantity": a.quantity, "orders": a.orders}
                    for a in asks
                ],
            },
        }
    return ok(out)


# -- margin and charges calculators ----------------------------------------------------------
async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise InputException("The body must be JSON: a list of orders.") from None


@router.post("/margins/orders")
async def margins_orders(request: Request) -> JSONResponse:
    auth(request)
    return ok(calculators.order_margins(sim_of(request).exchange, await _json_body(request)))


@router.post("/margins/basket")
async def margins_basket(request: Request) -> JSONResponse:
    auth(request)
    compact = request.query_params.get("mode") == "compact"
    body = await _json_body(request)
    return ok(calculators.basket_margins(sim_of(request).exchange, body, compact=compact))


@router.post("/charges/orders")
async def charges_orders(request: Request) -> JSONResponse:
    auth(request)
    return ok(calculators.contract_note(sim_of(request).exchange, await _json_body(request)))


# -- orders -----------------------------------------------------------------------------------
@router.post("/orders/{variety}")
async def place_order(request: Request, variety: str) -> JSONResponse:
    auth(request)
    order = sim_of(request).exchange.place(variety, await form(request))
    return ok({"order_id": order.order_id})


@router.put("/orders/{variety}/{order_id}")
async def modify_order(request: Request, variety: str, order_id: str) -> JSONResponse:
    auth(request)
    order = sim_of(request).exchange.modify(variety, order_id, await form(request))
    return ok({"order_id": order.order_id})


@router.delete("/orders/{variety}/{order_id}")
async def cancel_order(request: Request, variety: str, order_id: str) -> JSONResponse:
    auth(request)
    order = sim_of(request).exchange.cancel(variety, order_id)
    return ok({"order_id": order.order_id})


@router.get("/orders")
async def orders(request: Request) -> JSONResponse:
    auth(request)
    return ok([o.to_kite() for o in sim_of(request).exchange.orders.values()])


@router.get("/orders/{order_id}")
async def order_history(request: Request, order_id: str) -> JSONResponse:
    auth(request)
    return ok(sim_of(request).exchange.get_order(order_id).history)


@router.get("/orders/{order_id}/trades")
async def order_trades(request: Request, order_id: str) -> JSONResponse:
    auth(request)
    ex = sim_of(request).exchange
    ex.get_order(order_id)
    return ok([t.to_kite() for t in ex.trades if t.order.order_id == order_id])


# -- GTT (gtt.py) -------------------------------------------------------------------------------
def _trigger_id(raw: str) -> int:
    if not raw.isdigit():
        raise InputException(f"Invalid trigger id {raw!r}.")
    return int(raw)


@router.post("/gtt/triggers")
async def gtt_place(request: Request) -> JSONResponse:
    auth(request)
    gtt = sim_of(request).gtts.place(await form(request))
    return ok({"trigger_id": gtt.id})


@router.get("/gtt/triggers")
async def gtt_list(request: Request) -> JSONResponse:
    auth(request)
    return ok([g.to_kite() for g in sim_of(request).gtts.triggers.values()])


@router.get("/gtt/triggers/{trigger_id}")
async def gtt_get(request: Request, trigger_id: str) -> JSONResponse:
    auth(request)
    return ok(sim_of(request).gtts.get(_trigger_id(trigger_id)).to_kite())


@router.put("/gtt/triggers/{trigger_id}")
async def gtt_modify(request: Request, trigger_id: str) -> JSONResponse:
    auth(request)
    gtt = sim_of(request).gtts.modify(_trigger_id(trigger_id), await form(request))
    return ok({"trigger_id": gtt.id})


@router.delete("/gtt/triggers/{trigger_id}")
async def gtt_delete(request: Request, trigger_id: str) -> JSONResponse:
    auth(request)
    gtt = sim_of(request).gtts.delete(_trigger_id(trigger_id))
    return ok({"trigger_id": gtt.id})


@router.get("/trades")
async def trades(request: Request) -> JSONResponse:
    auth(request)
    return ok([t.to_kite() for t in sim_of(request).exchange.trades])


@router.get("/portfolio/positions")
async def positions(request: Request) -> JSONResponse:
    auth(request)
    return ok(sim_of(request).exchange.positions_kite())


@router.get("/portfolio/holdings")
async def holdings(request: Request) -> JSONResponse:
    auth(request)
    return ok(sim_of(request).exchange.holdings_kite())


# -- ticker -----------------------------------------------------------------------------------
@router.websocket("/")
async def ticker(websocket: WebSocket) -> None:
    sim = sim_of(websocket)
    try:
        session = sim.sessions.check_pair(
            websocket.query_params.get("api_key", ""),
            websocket.query_params.get("access_token", ""),
        )
    except TokenException:
        await websocket.close(code=1008)  # before accept: the client sees HTTP 403
        return
    await websocket.accept()
    conn = sim.hub.open(session.user_id)
    heartbeat = sim.settings.kitesim_heartbeat_seconds

    async def sender() -> None:
        while True:
            try:
                message = await asyncio.wait_for(conn.queue.get(), timeout=heartbeat)
            except TimeoutError:
                if sim.hub.silenced:
                    continue
                message = HEARTBEAT
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)

    send_task = asyncio.create_task(sender())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", errors="replace")
            if text:
                sim.hub.handle_text(conn, text)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sim.hub.close(conn)
        send_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await send_task


__all__ = ["KiteError", "router"]
