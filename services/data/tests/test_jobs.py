"""Backfill jobs on a real data-worker process (Celery over the test Redis) against kitesim;
the scheduler's lease and calendar."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis

from dalal_data.config import DataSettings
from dalal_data.schedule import due_between
from dalal_data.scheduler import SESSION_CLOSED, jobs_of
from dalal_data.tasks import INSTRUMENTS, NIGHTLY, PREMARKET
from dalal_shared.calendar import nse_calendar
from dalal_shared.lease import Lease
from dalal_shared.testing import ServiceProcess
from dalal_shared.timeutil import IST

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from conftest import DataApp, Kitesim

KEY = "k" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def worker(kitesim: Kitesim, redis_url: str, tmp_path: Path):
    proc = ServiceProcess(
        "dalal_data.worker",
        env={
            "DALAL_REDIS_URL": redis_url,
            "DALAL_CACHE_DIR": str(tmp_path / "cache"),
            "DALAL_KITE_ROOT_URL": kitesim.root,
            "DALAL_KITE_API_KEY": "kitesim_key",
            "DALAL_KITE_ACCESS_TOKEN": kitesim.access_token(),
        },
        log_path=tmp_path / "worker.log",
    ).start()
    yield proc
    proc.stop()


async def test_backfill_of_a_universe_reports_progress_and_is_idempotent(
    make_data: Callable[..., DataApp],
    poller: Callable[..., Awaitable[Any]],
    worker: ServiceProcess,
) -> None:
    data = make_data(api_key=KEY)
    body = {
        "symbols": ["RELIANCE", "TCS", "INFY", "NOSUCHSYM"],
        "interval": "day",
        "from": "2020-10-01",
        "to": "2025-09-30",
    }
    unauth = await data.http.post("/backfill", json=body, headers={"Authorization": ""})
    assert unauth.status_code == 401
    resp = await data.http.post("/backfill", json=body, headers=AUTH)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]

    async def finished() -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            assert worker.process is not None and worker.process.poll() is None, worker.output()[
                -2000:
            ]
            status = (await data.http.get(f"/backfill/{job_id}")).json()
            return status if status["state"] == "finished" else None

        return await poller(done)

    status = await finished()
    assert status["done"] == 4 and status["failed"] == 1 and status["eta_seconds"] == 0
    assert (
        "unknown_symbol" in status["symbols"]["NOSUCHSYM"]["error"]
        or "NOSUCHSYM" in (status["symbols"]["NOSUCHSYM"]["error"])
    )
    assert {status["symbols"][s]["kite_requests"] for s in ("RELIANCE", "TCS", "INFY")} == {1}
    # the API now serves those from the cache without a Kite call
    got = await data.http.get(
        "/candles/NSE/TCS", params={"interval": "day", "from": "2021-01-01", "to": "2021-12-31"}
    )
    assert got.json()["cache"] == "hit" and data.historical_calls == 0

    again = await data.http.post("/backfill", json=body, headers=AUTH)
    job_id = again.json()["job_id"]
    status = await finished()
    assert {status["symbols"][s]["kite_requests"] for s in ("RELIANCE", "TCS", "INFY")} == {0}
    listed = (await data.http.get("/backfill")).json()["jobs"]
    assert [j["job_id"] for j in listed][:1] == [job_id]


def test_jobs_run_on_session_days_only() -> None:
    cal = nse_calendar()
    jobs = jobs_of(DataSettings())
    # Friday 2024-01-26 (Republic Day) to Monday 2024-01-29: only Monday's jobs
    due = due_between(
        jobs,
        cal,
        datetime(2024, 1, 25, 23, 0, tzinfo=IST),
        datetime(2024, 1, 29, 23, 0, tzinfo=IST),
    )
    assert [(d.job.name, d.day, d.at.strftime("%H:%M")) for d in due] == [
        (INSTRUMENTS, date(2024, 1, 29), "08:30"),
        (PREMARKET, date(2024, 1, 29), "08:30"),
        (SESSION_CLOSED, date(2024, 1, 29), "15:35"),
        (NIGHTLY, date(2024, 1, 29), "16:00"),
    ]


async def test_one_lease_holder_at_a_time_and_a_successor_after_release_or_lapse(
    aredis: aioredis.Redis, poller: Callable[..., Awaitable[Any]]
) -> None:
    a = Lease(aredis, "data-scheduler", ttl_seconds=0.3, owner="a")
    b = Lease(aredis, "data-scheduler", ttl_seconds=0.3, owner="b")
    assert await a.acquire() and not await b.acquire()
    assert await a.acquire()  # renewing
    await b.release()  # not b's to release
    assert await a.holder() == "a"
    await a.release()
    assert await b.acquire() and await a.holder() == "b"
    # b dies without releasing: once the lease lapses, a takes it
    assert await poller(a.acquire, timeout=5)
    assert await a.holder() == "a"


def test_past_the_holiday_list_jobs_run_on_assumed_weekdays_and_not_beyond() -> None:
    """NSE publishes its list a year at a time: for a year past its end the weekdays are
    assumed to trade (backfills and the end-of-day event go on), weekends are not, and nothing
    is guessed past that year."""
    cal = nse_calendar()
    after = datetime.combine(cal.last, datetime.min.time(), tzinfo=IST)
    due = due_between(jobs_of(DataSettings()), cal, after, after + timedelta(days=5))
    days = {d.day for d in due}
    assumed = {d for d in days if not cal.covers(d)}
    assert assumed and all(d.weekday() < 5 for d in assumed)
    assert {d for d in days if d.weekday() >= 5} <= {cal.last}
    end = datetime.combine(cal.assumed_until, datetime.min.time(), tzinfo=IST)
    beyond = due_between(jobs_of(DataSettings()), cal, end, end + timedelta(days=5))
    assert {d.day for d in beyond} <= {cal.assumed_until}
