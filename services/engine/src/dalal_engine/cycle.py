"""The seed's fixed cycle as a scheduling option: `execute_cycle(symbols)` every N seconds.

A strategy instance with `schedule: {every_seconds: N}` does not consume bar events: every N
seconds the cycle reads each symbol's latest candles from the data service's candles API
(`dalal_shared.clients.DataClient`), and hands every completed bar it has not seen to the live
loop (`LiveEngine.on_bar`, for that instance only). The live loop's guarantees hold unchanged:
a bar seen before makes no new decision, and order ids are the same as with bar events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal

from dalal_engine.handlers import EngineGate
from dalal_engine.live import LiveEngine
from dalal_engine.strategyconfig import StrategyConfig
from dalal_engine.timing import bar_duration, session_bounds, warmup_days
from dalal_shared.calendar import NseCalendar, nse_calendar
from dalal_shared.clients import DataClient
from dalal_shared.logging import get_logger
from dalal_shared.messages import Bar, PlaceOrder
from dalal_shared.timeutil import to_ist

log = get_logger(__name__)


class FixedCycle:
    def __init__(
        self,
        live: LiveEngine,
        config: StrategyConfig,
        data: DataClient,
        gate: EngineGate | None = None,
        *,
        calendar: NseCalendar | None = None,
    ):
        assert config.schedule is not None
        self.live = live
        self.config = config
        self.data = data
        self.gate = gate or EngineGate()
        self.calendar = calendar or nse_calendar()
        self.every_seconds = config.schedule.every_seconds
        self.cycles = 0  # completed cycles
        self.last_error: str | None = None

    def status(self) -> dict[str, object]:
        return {
            "strategy": self.config.name,
            "every_seconds": self.every_seconds,
            "cycles": self.cycles,
            "last_error": self.last_error,
        }

    def _from(self, now: datetime) -> str:
        """Far enough back for the indicators' warm-up (the data service caches it)."""
        inst = self.live.instances[self.config.name]
        need = max(50, 3 * inst.strategy.warmup_bars)
        days = warmup_days(self.config.interval, need)
        return f"{to_ist(now - timedelta(days=days)):%Y-%m-%d}"

    def completed(self, bar_start: datetime, now: datetime) -> bool:
        duration = bar_duration(self.config.interval)
        if self.config.interval == "day":
            bounds = session_bounds(self.calendar, to_ist(bar_start).date())
            return bounds is not None and bounds[1] <= now
        return bar_start + duration <= now

    def fetch(self, symbol: str, now: datetime) -> list[Bar]:
        cfg = self.config
        body = self.data.candles(
            cfg.exchange, symbol, cfg.interval, self._from(now), f"{to_ist(now):%Y-%m-%dT%H:%M:%S}"
        )
        out = []
        for ts, o, h, lo, c, v, _oi in body["candles"]:
            start = datetime.fromisoformat(ts)
            if not self.completed(start, now):
                continue  # still forming
            out.append(
                Bar(
                    exchange=cfg.exchange,
                    symbol=symbol,
                    interval=cfg.interval,
                    start=start,
                    open=Decimal(str(o)),
                    high=Decimal(str(h)),
                    low=Decimal(str(lo)),
                    close=Decimal(str(c)),
                    volume=int(v or 0),
                )
            )
        return out

    def fetch_all(self, symbols: list[str], now: datetime) -> dict[str, list[Bar]]:
        """The completed bars of each symbol from the data service (blocking HTTP)."""
        return {symbol: self.fetch(symbol, now) for symbol in symbols}

    def decide(self, fetched: dict[str, list[Bar]]) -> list[PlaceOrder]:
        """The latest completed bar of each symbol, when not seen yet, goes to the live loop
        to decide on (the bars before it only extend the indicator history, as in the seed's
        cycle); returns the new orders (stored, to publish)."""
        orders: list[PlaceOrder] = []
        name = self.config.name
        for symbol, bars in fetched.items():
            if not bars:
                continue
            seen = self.live.last_bar(name, symbol)
            for bar in bars[:-1]:  # history only
                if seen is None or bar.start > seen:
                    self.live.on_bar(bar, only=name, decide=False)
            if seen is None or bars[-1].start > seen:
                orders.extend(self.live.on_bar(bars[-1], only=name))
        self.cycles += 1
        return orders

    def execute_cycle(self, symbols: list[str]) -> list[PlaceOrder]:
        """The seed's cycle over `symbols`: fetch the latest bars, decide; the new orders."""
        return self.decide(self.fetch_all(symbols, self.live.clock.now()))

    async def run_forever(self, publish: Callable[[], Awaitable[None]]) -> None:
        """Every `every_seconds`: fetch (in a thread: the data client is blocking), decide
        through the engine's gate (one step of the live loop at a time, in a worker thread),
        then `publish()` (the outbox and the decisions)."""
        symbols = list(self.config.universe)
        while True:
            try:
                fetched = await asyncio.to_thread(self.fetch_all, symbols, self.live.clock.now())
                orders = await self.gate.run(self.decide, fetched)
                await publish()
                self.last_error = None
                log.info(
                    "cycle.completed",
                    strategy=self.config.name,
                    symbols=len(symbols),
                    bars=sum(len(b) for b in fetched.values()),
                    orders=len(orders),
                    cycle=self.cycles,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a data-service outage must not end the schedule
                self.last_error = type(exc).__name__
                log.warning("cycle.failed", strategy=self.config.name, error=type(exc).__name__)
            await asyncio.sleep(self.every_seconds)
