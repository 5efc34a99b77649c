"""Reconciliation that runs by itself, for the portfolio and the broker alike.

A service gives a `check` (one break kind per break found; it raises while it cannot run, e.g.
no Kite session yet or the broker unreachable) and asks for runs: once after every start (retried
until the check can run), on a new Kite session (`SessionValid`) and after the close
(`SessionClosed`). Each completed run is published as `ReconcileCompleted` on `system.events`
and exported as metrics (`dalal_reconcile_breaks{scope}`, `..._last_run_timestamp_seconds`,
`..._runs_total{scope,outcome}`), which the `ReconcileBreaks` alert watches.

A run that finds breaks looks again after `confirm_seconds` and reports the second look: fills
still in flight (a trade Kite reports a moment before its `OrderFilled` reaches the ledger) are
not breaks, and an alert should not fire on them. Requests while a run is pending are coalesced
into it (the latest trigger wins), so a burst of events costs one run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Literal

from prometheus_client import Counter, Gauge

from dalal_shared.aio import wait_event
from dalal_shared.audit import audit
from dalal_shared.bus import Publisher
from dalal_shared.logging import get_logger
from dalal_shared.messages import ReconcileCompleted
from dalal_shared.streams import SYSTEM_EVENTS
from dalal_shared.timeutil import utcnow

log = get_logger(__name__)

Scope = Literal["portfolio", "broker"]
Trigger = Literal["start", "session_valid", "session_closed", "manual"]
Check = Callable[[], Awaitable[Sequence[str]]]

BREAKS = Gauge(
    "dalal_reconcile_breaks", "Breaks found by the last completed reconciliation", ["scope"]
)
LAST_RUN = Gauge(
    "dalal_reconcile_last_run_timestamp_seconds",
    "Unix time of the last completed reconciliation",
    ["scope"],
)
RUNS = Counter(
    "dalal_reconcile_runs_total",
    "Reconciliation runs by outcome (clean, breaks, failed: could not run)",
    ["scope", "outcome"],
)


class ReconcileRunner:
    def __init__(
        self,
        scope: Scope,
        check: Check,
        publisher: Publisher,
        *,
        retry_seconds: float = 30.0,
        confirm_seconds: float = 20.0,
    ):
        self.scope = scope
        self.check = check
        self.publisher = publisher
        self.retry_seconds = retry_seconds
        self.confirm_seconds = confirm_seconds
        self.last: ReconcileCompleted | None = None
        self._pending: tuple[Trigger, date | None] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        for outcome in ("clean", "breaks", "failed"):
            RUNS.labels(scope, outcome)  # exported at 0 before the first run

    async def run_once(self, trigger: Trigger, day: date | None = None) -> ReconcileCompleted:
        """One reconciliation (with its confirming second look), published; raises when the
        check cannot run or the result cannot be published."""
        kinds = list(await self.check())
        if kinds and self.confirm_seconds > 0:
            await asyncio.sleep(self.confirm_seconds)
            kinds = list(await self.check())
        event = ReconcileCompleted(
            scope=self.scope,
            trigger=trigger,
            breaks=len(kinds),
            kinds=tuple(sorted(set(kinds))),
            day=day,
            completed_at=utcnow(),
        )
        await self.publisher.publish(SYSTEM_EVENTS, event)
        audit(log, event)
        BREAKS.labels(self.scope).set(event.breaks)
        LAST_RUN.labels(self.scope).set(event.completed_at.timestamp())
        RUNS.labels(self.scope, "breaks" if event.breaks else "clean").inc()
        self.last = event
        (log.warning if event.breaks else log.info)(
            "reconcile.completed",
            scope=self.scope,
            trigger=trigger,
            breaks=event.breaks,
            kinds=list(event.kinds),
        )
        return event

    def request(self, trigger: Trigger, day: date | None = None) -> None:
        """Ask for a run (from a bus handler: returns at once; coalesced with a pending one)."""
        self._pending = (trigger, day)
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending is None:
                continue
            trigger, day = self._pending
            self._pending = None
            try:
                await self.run_once(trigger, day)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # cannot run yet (no session, broker down, Redis down)
                RUNS.labels(self.scope, "failed").inc()
                log.info("reconcile.deferred", scope=self.scope, trigger=trigger, error=str(exc))
                if self._pending is None:  # a newer request replaces this one
                    self._pending = (trigger, day)
                await wait_event(self._wake, self.retry_seconds)
                self._wake.set()

    def start(self) -> None:
        """Run the loop in the background, starting with the after-start run."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())
        self.request("start")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
