"""The scheduler as processes: two replicas on one Redis, exactly one schedules; SIGKILLed, the
other takes over. The end-of-day SessionClosed is published once per session day, whoever runs
it. The scheduler's clock is a simulated one (an ISO time in Redis) so jobs fall due at once."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from dalal_data.eod import publish_session_closed
from dalal_data.scheduler import session_closed
from dalal_shared.calendar import nse_calendar
from dalal_shared.messages import Envelope, SessionClosed
from dalal_shared.streams import SYSTEM_EVENTS
from dalal_shared.testing import ServiceProcess, free_port
from dalal_shared.timeutil import IST

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CLOCK = "test:scheduler:clock"


async def closed_events(redis: aioredis.Redis) -> list[Envelope]:
    out = [Envelope.from_fields(f) for _id, f in await redis.xrange(SYSTEM_EVENTS)]
    return [e for e in out if e.type == "SessionClosed"]


async def test_session_closed_is_published_once_per_day_whoever_runs_it(
    aredis: aioredis.Redis,
) -> None:
    day = date(2024, 1, 29)
    closed_at = datetime(2024, 1, 29, 15, 30, tzinfo=IST)
    entries = await asyncio.gather(
        *(publish_session_closed(aredis, day, closed_at, source=f"s{i}") for i in range(5))
    )
    assert sum(e is not None for e in entries) == 1
    (event,) = await closed_events(aredis)
    assert event.message == SessionClosed(day=day, closed_at=closed_at)
    # the scheduler's job: the calendar's close time; nothing on a holiday
    cal = nse_calendar()
    assert await session_closed(aredis, cal, date(2024, 1, 30), maxlen=1000)
    assert not await session_closed(aredis, cal, date(2024, 1, 30), maxlen=1000)
    assert not await session_closed(aredis, cal, date(2024, 1, 26), maxlen=1000)  # Republic Day
    events = await closed_events(aredis)
    assert [(e.message.day, e.message.closed_at) for e in events] == [
        (day, closed_at),
        (date(2024, 1, 30), datetime(2024, 1, 30, 15, 30, tzinfo=IST)),
    ]


def _leader(port: int) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "dalal_data_scheduler_leader":
                return s.value
    return None


async def test_two_schedulers_one_schedules_and_the_other_takes_over_after_sigkill(
    redis_url: str,
    aredis: aioredis.Redis,
    tmp_path: Path,
    poller: Callable[..., Awaitable[Any]],
) -> None:
    await aredis.set(CLOCK, "2024-01-29T12:00:00+05:30")  # a Monday session, before the close
    procs: dict[int, ServiceProcess] = {}
    ports: dict[int, int] = {}
    try:
        for i in range(2):
            port = free_port()
            proc = ServiceProcess(
                "dalal_data.scheduler",
                env={
                    "DALAL_REDIS_URL": redis_url,
                    "DALAL_CACHE_DIR": str(tmp_path / "cache"),
                    "DALAL_SCHEDULER_LEASE_SECONDS": "2",
                    "DALAL_SCHEDULER_CLOCK_REDIS_KEY": CLOCK,
                    "DALAL_METRICS_PORT": str(port),
                },
                log_path=tmp_path / f"scheduler-{i}.log",
            ).start()
            assert proc.process is not None
            procs[proc.process.pid] = proc
            ports[proc.process.pid] = port

        async def holder_pid() -> int | None:
            owner = await aredis.get("lease:data-scheduler")
            if owner is None:
                return None
            pid = int(owner.decode().removeprefix(f"{socket.gethostname()}-").split("-")[0])
            return pid if pid in procs else None

        async def one_leader() -> int | None:
            pid = await holder_pid()
            if pid is None:
                return None
            gauges = {p: await asyncio.to_thread(_leader, port) for p, port in ports.items()}
            return pid if gauges == {p: float(p == pid) for p in ports} else None

        leader = await poller(one_leader)
        (other,) = [p for p in procs if p != leader]

        # the close of Monday's session: exactly one SessionClosed, sent by the leader
        await aredis.set(CLOCK, "2024-01-29T15:35:30+05:30")
        first = await poller(lambda: closed_events(aredis))
        assert [e.message.day for e in first] == [date(2024, 1, 29)]

        procs[leader].kill()
        assert procs[other].process is not None and procs[other].process.poll() is None

        async def taken_over() -> bool:
            return await holder_pid() == other and _leader(ports[other]) == 1.0

        await poller(taken_over)
        # Tuesday's close: the survivor publishes it; Monday's is not repeated by its catch-up
        await aredis.set(CLOCK, "2024-01-30T15:35:30+05:30")

        async def tuesday() -> list[Envelope] | None:
            events = await closed_events(aredis)
            return events if len(events) >= 2 else None

        events = await poller(tuesday)
        assert [e.message.day for e in events] == [date(2024, 1, 29), date(2024, 1, 30)]
        assert {e.source for e in events} == {"data-scheduler"}
        # the Celery jobs between the two closes were sent once each to the worker's queue
        queued = [json.loads(raw) for raw in await aredis.lrange("data", 0, -1)]
        sent = sorted((m["headers"]["task"], m["headers"]["kwargsrepr"]) for m in queued)
        assert sent == [
            ("dalal_data.nightly_sync", "{'day': '2024-01-29'}"),
            ("dalal_data.premarket_check", "{'day': '2024-01-30'}"),
            ("dalal_data.refresh_instruments", "{'day': '2024-01-30'}"),
        ]
    finally:
        for proc in procs.values():
            proc.stop()
