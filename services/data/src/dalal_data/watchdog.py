"""Is the feed silent? Tick age against a limit, in market hours (plain Python).

Kite's ticker never pings, and a connection can go quiet without closing; only the age of the
last tick says so. `check` reports the moment the feed turns stale (once per episode) so the
caller publishes DataStale and reconnects; a tick turns it fresh again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass
class Watchdog:
    stale_seconds: float
    market_open: Callable[[datetime], bool]
    last_tick_at: datetime | None = None
    started_at: datetime | None = None
    stale: bool = False
    episodes: int = 0

    def start(self, now: datetime) -> None:
        self.started_at = now

    def on_tick(self, now: datetime) -> bool:
        """Record a tick; True when it ends a stale episode."""
        self.last_tick_at = now
        was = self.stale
        self.stale = False
        return was

    def age_seconds(self, now: datetime) -> float:
        ref = self.last_tick_at or self.started_at or now
        return max(0.0, (now - ref).total_seconds())

    def check(self, now: datetime) -> bool:
        """True exactly when the feed has just turned stale (reconnect and tell everyone)."""
        if not self.market_open(now):
            return False
        if self.age_seconds(now) < self.stale_seconds:
            return False
        if self.stale:
            return False
        self.stale = True
        self.episodes += 1
        return True

    def due_again(self, now: datetime) -> bool:
        """While stale: a reconnect is due again every `stale_seconds` without ticks."""
        return self.stale and self.market_open(now) and self.age_seconds(now) >= self.stale_seconds
