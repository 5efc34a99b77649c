"""`python -m dalal_data.scheduler`: the single scheduler of the data jobs.

Every replica may run; only the holder of the Redis lease `lease:data-scheduler` sends jobs, and
each occurrence is sent once (a `SET NX` marker per job and day), so a failover never doubles a
sync. NSE's calendar decides the days (session days only). Jobs, IST:

* 08:30 `refresh_instruments` and `premarket_check` (Celery tasks for the data-worker);
* 15:35 `SessionClosed` on `system.events` (published here, once per day: `eod.py`);
* 16:00 `nightly_sync` (Celery task).

A new lease holder looks back `CATCH_UP` for occurrences its predecessor may have missed (the
markers keep them single). `DALAL_METRICS_PORT` serves /metrics; `DALAL_SCHEDULER_CLOCK_REDIS_KEY`
makes a simulated clock (an ISO time in Redis) its `now`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import Any

import redis.asyncio as aioredis

from dalal_data.config import DataSettings
from dalal_data.eod import publish_session_closed
from dalal_data.jobs import record_run
from dalal_data.metrics import SCHEDULER_SENT, set_scheduler_leader
from dalal_data.schedule import Due, Job, due_between, next_due
from dalal_data.tasks import INSTRUMENTS, NIGHTLY, PREMARKET, QUEUE, make_celery
from dalal_shared.aio import wait_event
from dalal_shared.calendar import NseCalendar, nse_calendar
from dalal_shared.lease import Lease
from dalal_shared.logging import get_logger
from dalal_shared.service import bootstrap_settings
from dalal_shared.timeutil import ensure_aware, utcnow
from dalal_shared.workermetrics import serve_metrics

log = get_logger(__name__)

SESSION_CLOSED = "dalal_data.session_closed"  # run by the scheduler itself, not a Celery task
CATCH_UP = timedelta(minutes=5)
SOURCE = "data-scheduler"

Clock = Callable[[], Awaitable[datetime]]


def jobs_of(settings: DataSettings) -> list[Job]:
    return [
        Job(INSTRUMENTS, time.fromisoformat(settings.instruments_refresh_at_ist)),
        Job(PREMARKET, time.fromisoformat(settings.premarket_check_at_ist)),
        Job(SESSION_CLOSED, time.fromisoformat(settings.session_closed_at_ist)),
        Job(NIGHTLY, time.fromisoformat(settings.nightly_sync_at_ist)),
    ]


def clock_of(settings: DataSettings, redis: aioredis.Redis) -> Clock:
    key = settings.scheduler_clock_redis_key

    async def now() -> datetime:
        if key is not None:
            raw: Any = await redis.get(key)
            if raw:
                return ensure_aware(datetime.fromisoformat(raw.decode()))
        return utcnow()

    return now


async def session_closed(
    redis: aioredis.Redis, calendar: NseCalendar, day: date, *, maxlen: int
) -> bool:
    session = calendar.session(day)
    if session is None:
        return False
    entry = await publish_session_closed(redis, day, session.close, source=SOURCE, maxlen=maxlen)
    if entry is not None:
        await record_run(
            redis, "session_closed", {"state": "succeeded", "day": day.isoformat(), "entry": entry}
        )
    return entry is not None


async def run(settings: DataSettings, stop: asyncio.Event) -> None:
    redis = aioredis.Redis.from_url(settings.redis_url)
    celery = make_celery(settings)
    lease = Lease(redis, "data-scheduler", ttl_seconds=settings.scheduler_lease_seconds)
    jobs = jobs_of(settings)
    calendar = nse_calendar()
    clock = clock_of(settings, redis)

    async def dispatch(due: Due) -> bool:
        if due.job.name == SESSION_CLOSED:
            return await session_closed(redis, calendar, due.day, maxlen=settings.bus_stream_maxlen)
        if await redis.set(f"data:sched:{due.key}", "1", nx=True, ex=7 * 86400):
            celery.send_task(due.job.name, kwargs={"day": due.day.isoformat()}, queue=QUEUE)
            return True
        return False

    last = await clock() - CATCH_UP  # a restart just after a due time still sends it
    holding = False
    backoff = 1.0
    try:
        while not stop.is_set():
            try:
                now = await clock()
                if await lease.acquire():
                    if not holding:
                        log.info("scheduler.lease_taken", owner=lease.owner)
                        last = min(last, now - CATCH_UP)
                    holding = True
                    set_scheduler_leader(True)
                    for due in due_between(jobs, calendar, last, now):
                        if await dispatch(due):
                            SCHEDULER_SENT.labels(due.job.name.rsplit(".", 1)[-1]).inc()
                            log.info("scheduler.sent", job=due.job.name, day=str(due.day))
                    last = now
                    wait = settings.scheduler_lease_seconds / 3
                    try:
                        until_next = (next_due(jobs, calendar, now).at - now).total_seconds()
                        wait = min(wait, max(0.5, until_next))
                    except ValueError:
                        log.error(
                            "scheduler.calendar_not_covered",
                            day=str(now.date()),
                            hint="update dalal_shared's NSE holiday list",
                        )
                else:
                    if holding:
                        log.warning("scheduler.lease_lost")
                    holding = False
                    set_scheduler_leader(False)
                    last = now
                    wait = settings.scheduler_lease_seconds / 3
            except Exception as exc:  # Redis down, a timeout: not the holder until it answers
                if holding:
                    log.warning("scheduler.lease_lost", error=repr(exc)[:300])
                else:
                    log.warning("scheduler.error", error=repr(exc)[:300])
                holding = False
                set_scheduler_leader(False)
                wait = min(backoff, settings.scheduler_lease_seconds / 3)
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = 1.0
            await wait_event(stop, wait)
    finally:
        if holding:
            await lease.release()
        set_scheduler_leader(False)
        await redis.aclose()


def main() -> None:
    settings = bootstrap_settings("data-scheduler", DataSettings)
    serve_metrics(settings.metrics_port, settings.host)

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    asyncio.run(amain())


if __name__ == "__main__":
    main()
