"""`GET /quote?symbols=`: the last price of instruments, for people and scripts.

The broker's reference-price source answers: the last tick seen on `market.ticks` while it is
fresh (source "tick"), else Kite's LTP through the shared rate limiter (source "ltp"); an
instrument neither knows is listed under `missing`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request

from dalal_broker.prices import ReferencePrices
from dalal_shared.errors import PermanentError

router = APIRouter(tags=["views"])

MAX_SYMBOLS = 50
_INSTRUMENT = re.compile(r"^(?:(NSE|BSE|NFO|BFO|MCX|CDS):)?([A-Z0-9&\-_.]{1,40})$")


def _bad(message: str) -> PermanentError:
    return PermanentError(message, code="validation_error", status_code=422)


def parse_instruments(text: str) -> list[tuple[str, str]]:
    """ "NSE:INFY,TCS" -> [("NSE", "INFY"), ("NSE", "TCS")] (NSE when no exchange is given)."""
    items = [t.strip().upper() for t in text.split(",") if t.strip()]
    if not items:
        raise _bad("symbols: give at least one, e.g. symbols=INFY,NSE:TCS")
    if len(items) > MAX_SYMBOLS:
        raise _bad(f"symbols: at most {MAX_SYMBOLS} at a time, got {len(items)}")
    out: list[tuple[str, str]] = []
    for item in items:
        match = _INSTRUMENT.match(item)
        if match is None:
            raise _bad(f"symbols: {item!r} is not EXCHANGE:SYMBOL or SYMBOL")
        out.append((match.group(1) or "NSE", match.group(2)))
    return list(dict.fromkeys(out))


@router.get("/quote", summary="Last price of instruments: last tick, else Kite's LTP")
async def get_quote(
    request: Request, symbols: Annotated[str, Query(min_length=1, max_length=2000)]
) -> dict[str, Any]:
    keys = parse_instruments(symbols)
    prices: ReferencePrices = request.app.state.reference_prices
    age = prices.max_age_seconds
    if prices.catch_up is not None and any(prices.last.get(k, age) is None for k in keys):
        await prices.catch_up()  # a tick published a moment ago counts as a tick
    from_ticks = {k: p for k in keys if (p := prices.last.get(k, age))}
    looked_up = await prices.lookup([k for k in keys if k not in from_ticks])
    quotes = []
    for key in keys:
        price = from_ticks.get(key) or looked_up.get(key)
        if price is not None:
            quotes.append(
                {
                    "exchange": key[0],
                    "symbol": key[1],
                    "last_price": str(price),
                    "source": "tick" if key in from_ticks else "ltp",
                }
            )
    missing = [f"{e}:{s}" for e, s in keys if (e, s) not in from_ticks and (e, s) not in looked_up]
    return {"quotes": quotes, "missing": missing}


def install(app: FastAPI, prices: ReferencePrices) -> None:
    """Serve `/quote` from `prices` (one line in the app factory)."""
    app.state.reference_prices = prices
    app.include_router(router)
