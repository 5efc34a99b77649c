"""`python -m dalal_data.scheduler`: the single scheduler of the data jobs.

Every replica may run; only the holder of the Redis lease `lease:data-scheduler` sends jobs, and
each occurrence is sent once (a `SET NX` marker per job and day), so a failover never doubles a
sync. It sends to the Celery queue the data-worker reads; NSE's calendar decides the days.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import time, timedelta

import redis.asyncio as aioredis

from dalal_data.config import DataSettings
from dalal_data.schedule import Job, due_between, next_due
from dalal_data.tasks import INSTRUMENTS, NIGHTLY, QUEUE, make_celery
from dalal_shared.calendar import nse_calendar
from dalal_shared.lease import Lease
from dalal_shared.logging import get_logger
from dalal_shared.service import bootstrap_settings
from dalal_shared.timeutil import utcnow

log = get_logger(__name__)


def jobs_of(settings: DataSettings) -> list[Job]:
    return [
        Job(INSTRUMENTS, time.fromisoformat(settings.instruments_refresh_at_ist)),
        Job(NIGHTLY, time.fromisoformat(settings.nightly_sync_at_ist)),
    ]


async def run(settings: DataSettings, stop: asyncio.Event) -> None:
    redis = aioredis.Redis.from_url(settings.redis_url)
    celery = make_celery(settings)
    lease = Lease(redis, "data-scheduler", ttl_seconds=settings.scheduler_lease_seconds)
    jobs = jobs_of(settings)
    calendar = nse_calendar()
    last = utcnow() - timedelta(minutes=5)  # a restart just after a due time still sends it
    holding = False
    try:
        while not stop.is_set():
            now = utcnow()
            if await lease.acquire():
                if not holding:
                    log.info("scheduler.lease_taken", owner=lease.owner)
                holding = True
                for due in due_between(jobs, calendar, last, now):
                    if await redis.set(f"data:sched:{due.key}", "1", nx=True, ex=7 * 86400):
                        celery.send_task(due.job.name, queue=QUEUE)
                        log.info("scheduler.sent", job=due.job.name, day=str(due.day))
                last = now
                wait = min(
                    settings.scheduler_lease_seconds / 3,
                    max(0.5, (next_due(jobs, calendar, now).at - utcnow()).total_seconds()),
                )
            else:
                if holding:
                    log.warning("scheduler.lease_lost")
                holding = False
                last = now
                wait = settings.scheduler_lease_seconds / 3
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
    finally:
        if holding:
            await lease.release()
        await redis.aclose()


def main() -> None:
    settings = bootstrap_settings("data-scheduler", DataSettings)

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    asyncio.run(amain())


if __name__ == "__main__":
    main()
