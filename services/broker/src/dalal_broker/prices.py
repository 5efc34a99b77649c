"""Reference prices for the guards: what a MARKET order (no price of its own) is valued at.

`LastPrices` keeps the last traded price the broker saw for each instrument on `market.ticks`
(fed by the tick reader, `paper.TickFollower`, in every mode), with the monotonic time it was
seen; `ReferencePrices` answers from it while the price is fresh, else asks Kite's LTP (one
`quote`-class call for all the instruments asked, through the shared rate limiter), else has no
price: the guards then refuse the order (`no_reference_price`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from prometheus_client import Counter

from dalal_shared.errors import DalalError, TemporaryError
from dalal_shared.logging import get_logger
from dalal_shared.messages import Tick

log = get_logger(__name__)

REFERENCE = Counter(
    "dalal_broker_reference_prices_total",
    "Reference prices looked up for guards, by source (tick, ltp, none)",
    ["source"],
)
for _source in ("tick", "ltp", "none"):
    REFERENCE.labels(_source)

Key = tuple[str, str]  # (exchange, symbol)
LtpCall = Callable[[list[str]], Awaitable[dict[str, Any]]]


class LastPrices:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._prices: dict[Key, tuple[Decimal, float]] = {}

    def on_tick(self, tick: Tick) -> None:
        self.set((tick.exchange, tick.symbol), tick.last_price)

    def set(self, key: Key, price: Decimal) -> None:
        self._prices[key] = (price, self._clock())

    def get(self, key: Key, max_age_seconds: float) -> Decimal | None:
        seen = self._prices.get(key)
        if seen is None or self._clock() - seen[1] > max_age_seconds:
            return None
        return seen[0]


class ReferencePrices:
    def __init__(
        self,
        last: LastPrices,
        ltp: LtpCall | None,
        *,
        max_age_seconds: float,
        catch_up: Callable[[], Awaitable[None]] | None = None,
        retry_seconds: float = 1.1,  # past Kite's 1/s quote budget
    ):
        self.last = last
        self.ltp = ltp
        self.max_age_seconds = max_age_seconds
        self.catch_up = catch_up  # reads the ticks published up to now (the tick reader's)
        self.retry_seconds = retry_seconds
        self._ltp_lock = asyncio.Lock()

    async def lookup(self, keys: Iterable[Key]) -> dict[Key, Decimal]:
        """The reference price of each instrument that has one (absent: none known)."""
        out: dict[Key, Decimal] = {}
        ask: list[Key] = []
        wanted = list(dict.fromkeys(keys))
        if self.catch_up is not None and any(
            self.last.get(k, self.max_age_seconds) is None for k in wanted
        ):
            await self.catch_up()  # a tick published a moment ago counts
        for key in wanted:
            price = self.last.get(key, self.max_age_seconds)
            if price is not None:
                out[key] = price
                REFERENCE.labels("tick").inc()
            else:
                ask.append(key)
        if ask and self.ltp is not None:
            # one LTP call at a time (Kite allows 1/s): orders waiting behind it for the same
            # instrument take the price it brought
            async with self._ltp_lock:
                for key in ask:
                    price = self.last.get(key, self.max_age_seconds)
                    if price is not None:
                        out[key] = price
                        REFERENCE.labels("ltp").inc()
                still = [k for k in ask if k not in out]
                quotes = await self._ltp([f"{e}:{s}" for e, s in still]) if still else {}
            for key in still:
                quote = quotes.get(f"{key[0]}:{key[1]}") or {}
                price = quote.get("last_price")
                if price not in (None, 0, 0.0):
                    out[key] = Decimal(str(price))
                    self.last.set(key, out[key])  # as fresh as a tick: the next order uses it
                    REFERENCE.labels("ltp").inc()
        for key in ask:
            if key not in out:
                REFERENCE.labels("none").inc()
        return out

    async def _ltp(self, instruments: list[str]) -> dict[str, Any]:
        """Kite's LTPs; once more after a temporary failure (a 429 from a quote call made
        elsewhere with the same key, a 5xx); {} when Kite cannot say."""
        for attempt in range(2):
            try:
                assert self.ltp is not None
                return await self.ltp(instruments)
            except TemporaryError as exc:
                log.warning("guards.ltp_failed", error=str(exc)[:200], attempt=attempt + 1)
                if attempt == 0:
                    await asyncio.sleep(self.retry_seconds)
            except DalalError as exc:  # no session, refused: no LTP
                log.warning("guards.ltp_failed", error=str(exc)[:200])
                break
        return {}

    async def price(self, exchange: str, symbol: str) -> Decimal | None:
        return (await self.lookup([(exchange, symbol)])).get((exchange, symbol))
