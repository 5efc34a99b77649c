"""The market clock: what time it is at the exchange, for every decision of the live loop.

One interface (`MarketClock`), a source per mode:

* live and paper: `WallClock`, the machine's clock (UTC inside; IST is only how it is shown);
* sim and replays: `ExchangeClock`, the exchange's own time as the engine learns it: the
  latest exchange time of the market data it consumed (a tick's exchange time, a bar's close)
  and, when configured, kitesim's clock as the data feed shares it at a Redis key (the later of
  the two). A restarted engine starts from the close of the latest bar it stored, so a backlog
  of older bars cannot wind the clock back;
* backtests: the bar time (the backtester passes each decision its order time).

Decisions on a bar are stamped with the time their order reaches the market
(`timing.order_time`: the bar's end, or the next session's open for a daily bar), the same
instant the backtester uses; the clock says whether that is still now (the stale-signal guard)
and dates what has no bar of its own (an equity snapshot, a flatten).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from dalal_shared.timeutil import ensure_aware, utcnow


class MarketClock(Protocol):
    name: str

    def now(self) -> datetime:
        """The exchange's time now (aware)."""
        ...

    def observe(self, at: datetime) -> None:
        """An exchange time seen in the market data (ignored by the wall clock)."""
        ...

    @property
    def known(self) -> bool:
        """Whether `now` is the exchange's time (False: a stand-in, the machine's clock)."""
        ...


class WallClock:
    """Live and paper trading: the wall clock is the exchange's."""

    name = "wall"

    def now(self) -> datetime:
        return utcnow()

    def observe(self, at: datetime) -> None:
        return None

    @property
    def known(self) -> bool:
        return True


class ExchangeClock:
    """Sim and replays: the latest exchange time seen (market data, or kitesim's clock shared
    by the feed); the wall clock only until the first of them is known."""

    name = "exchange"

    def __init__(self, start: datetime | None = None):
        self._seen = ensure_aware(start) if start is not None else None
        self._shared: datetime | None = None

    def observe(self, at: datetime) -> None:
        if self._seen is None or at > self._seen:
            self._seen = at  # one reference swap: safe to read from another thread

    def share(self, at: datetime) -> None:
        """kitesim's clock as the data feed shares it (read from Redis in the background)."""
        self._shared = ensure_aware(at)

    @property
    def known(self) -> bool:
        return self._seen is not None or self._shared is not None

    def now(self) -> datetime:
        seen, shared = self._seen, self._shared
        if seen is None and shared is None:
            return utcnow()
        if seen is None:
            assert shared is not None
            return shared
        return seen if shared is None or seen >= shared else shared
