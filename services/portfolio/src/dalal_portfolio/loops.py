"""Background work of the portfolio process: the outbox publisher and equity snapshots."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis

from dalal_portfolio import metrics
from dalal_portfolio.service import PortfolioService
from dalal_portfolio.store import outbox_t
from dalal_shared.aio import wait_event
from dalal_shared.audit import audit_envelopes
from dalal_shared.health import task_registry
from dalal_shared.logging import get_logger
from dalal_shared.outbox import OutboxRelay

log = get_logger(__name__)


class OutboxPublisher:
    """Publishes the portfolio's outbox (`dalal_shared.outbox`): after each commit (`flush`),
    on start and every round, in write order, each row with the envelope id it was written
    with; an audit line per event once Redis has it."""

    def __init__(self, service: PortfolioService, redis: aioredis.Redis):
        self.relay = OutboxRelay(
            service.store.engine, outbox_t, redis, on_published=audit_envelopes(log)
        )

    async def flush(self) -> int:
        return await self.relay.drain()  # the relay sends one batch at a time, in order


class PeriodicTasks:
    def __init__(
        self,
        service: PortfolioService,
        outbox: OutboxPublisher,
        *,
        snapshot_interval_seconds: float,
        outbox_interval_seconds: float,
    ):
        self.service = service
        self.outbox = outbox
        self.snapshot_interval = snapshot_interval_seconds
        self.outbox_interval = outbox_interval_seconds
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def update_metrics(self) -> None:
        metrics.update(self.service.valuation(), self.service.peak_equity())

    async def _every(self, seconds: float, job: str) -> None:
        # the outbox relay reports to /readyz: red while a round fails (Redis unreachable) or
        # stalls; the snapshot job only logs (a failed snapshot waits for its next round)
        relay = job == "outbox"
        health = task_registry().register(
            f"portfolio:{job}", stale_after_seconds=max(120.0, 3 * seconds)
        )
        try:
            while not self._stop.is_set():
                try:
                    if job == "snapshot":
                        await asyncio.to_thread(self.service.snapshot)
                        metrics.SNAPSHOTS.inc()
                    await self.outbox.flush()
                    await asyncio.to_thread(self.update_metrics)
                    health.beat()
                except Exception as exc:  # keep the loop alive; the next round retries
                    log.warning("portfolio.task_failed", job=job, error=repr(exc))
                    if relay:
                        health.backoff(repr(exc))
                    else:
                        health.beat()
                await wait_event(self._stop, seconds)
        finally:
            health.close()

    async def start(self) -> None:
        self._stop.clear()  # started again after a stop (the writer's lease came back)
        try:
            await self.outbox.flush()  # events committed before a crash go out first
        except Exception as exc:  # e.g. Redis down at start: the outbox task retries;
            log.warning("portfolio.outbox_flush_failed", error=repr(exc))  # /readyz says why
        self._tasks = [
            asyncio.create_task(self._every(self.outbox_interval, "outbox")),
            asyncio.create_task(self._every(self.snapshot_interval, "snapshot")),
        ]

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
