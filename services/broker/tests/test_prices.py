"""Reference prices for the guards (domain logic with an injected clock and LTP call)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from dalal_broker.kite import KiteUnavailable
from dalal_broker.prices import LastPrices, ReferencePrices
from dalal_shared.messages import Tick

NOW = datetime(2024, 1, 2, 5, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Ltp:
    def __init__(self, prices: dict[str, float], fail: int = 0) -> None:
        self.prices = prices
        self.fail = fail
        self.calls: list[list[str]] = []

    async def __call__(self, instruments: list[str]) -> dict[str, Any]:
        self.calls.append(instruments)
        await asyncio.sleep(0)
        if self.fail:
            self.fail -= 1
            raise KiteUnavailable("NetworkException: Too many requests")
        return {k: {"last_price": self.prices[k]} for k in instruments if k in self.prices}


def tick(symbol: str, price: str) -> Tick:
    return Tick(instrument_token=1, symbol=symbol, last_price=Decimal(price), exchange_ts=NOW)


async def test_a_fresh_tick_answers_a_stale_one_asks_kite() -> None:
    clock = Clock()
    last = LastPrices(clock)
    ltp = Ltp({"NSE:INFY": 1510.0})
    prices = ReferencePrices(last, ltp, max_age_seconds=60, retry_seconds=0)
    last.on_tick(tick("INFY", "1500"))
    assert await prices.price("NSE", "INFY") == Decimal("1500")
    assert ltp.calls == []
    clock.t += 61
    assert await prices.price("NSE", "INFY") == Decimal("1510")
    assert ltp.calls == [["NSE:INFY"]]
    assert await prices.price("NSE", "INFY") == Decimal("1510")  # the LTP is kept as fresh
    assert len(ltp.calls) == 1


async def test_no_price_when_kite_has_none_or_keeps_failing() -> None:
    last = LastPrices(Clock())
    assert await ReferencePrices(last, Ltp({}), max_age_seconds=60).price("NSE", "ITC") is None
    failing = Ltp({"NSE:ITC": 450.0}, fail=2)
    prices = ReferencePrices(last, failing, max_age_seconds=60, retry_seconds=0)
    assert await prices.price("NSE", "ITC") is None
    assert len(failing.calls) == 2  # once more after a temporary failure, then none
    once = Ltp({"NSE:ITC": 450.0}, fail=1)
    assert await ReferencePrices(last, once, max_age_seconds=60, retry_seconds=0).price(
        "NSE", "ITC"
    ) == Decimal("450")
    assert await ReferencePrices(LastPrices(), None, max_age_seconds=60).price("NSE", "X") is None


async def test_orders_waiting_on_one_ltp_call_share_its_price() -> None:
    ltp = Ltp({"NSE:TCS": 3500.0})
    prices = ReferencePrices(LastPrices(Clock()), ltp, max_age_seconds=60, retry_seconds=0)
    got = await asyncio.gather(*(prices.price("NSE", "TCS") for _ in range(5)))
    assert got == [Decimal("3500")] * 5
    assert ltp.calls == [["NSE:TCS"]]
