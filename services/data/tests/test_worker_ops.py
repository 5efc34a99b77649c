"""The data-worker as an operated process: its /metrics during and after a backfill, the
pre-market session check (both outcomes, real Redis and kitesim), and a worker SIGKILLed in the
middle of a backfill task (redelivered to a new worker, no duplicate candles)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pyarrow.compute as pc
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from dalal_data.config import DataSettings
from dalal_data.tasks import PREMARKET, make_celery
from dalal_shared import candlestore as cs
from dalal_shared.kitesession import KiteSessionRecord, SessionStore, token_expiry
from dalal_shared.testing import ServiceProcess, free_port, wait_until
from dalal_shared.timeutil import utcnow

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from conftest import DataApp, Kitesim

KEY = "k" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}
SESSION_SECRET = "session-secret-for-tests-0123456789"


class Worker:
    def __init__(self, proc: ServiceProcess, metrics_port: int):
        self.proc = proc
        self.metrics_port = metrics_port

    def alive(self) -> bool:
        return self.proc.process is not None and self.proc.process.poll() is None

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """name + sorted labels -> value, from the worker's /metrics."""
        assert self.alive(), self.proc.output()[-3000:]
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@pytest.fixture
def start_worker(
    kitesim: Kitesim, redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    started: list[ServiceProcess] = []

    def start(**env: str) -> Worker:
        port = free_port()
        proc = ServiceProcess(
            "dalal_data.worker",
            env={
                "DALAL_REDIS_URL": redis_url,
                "DALAL_CACHE_DIR": str(tmp_path / "cache"),
                "DALAL_KITE_ROOT_URL": kitesim.root,
                "DALAL_KITE_API_KEY": "kitesim_key",
                "DALAL_KITE_ACCESS_TOKEN": kitesim.access_token(),
                "DALAL_SESSION_KEY": SESSION_SECRET,
                "DALAL_METRICS_PORT": str(port),
                "PYTHONUNBUFFERED": "1",  # its log complete up to a kill
                **env,
            },
            log_path=tmp_path / f"worker-{len(started)}.log",
        ).start()
        started.append(proc)
        return Worker(proc, port)

    yield start
    for proc in started:
        proc.stop()
    kitesim.control("/faults", method="DELETE")


async def scrape(worker: Worker, poller: Callable[..., Awaitable[Any]], check: Any) -> Any:
    """Poll the worker's /metrics until `check(samples)` holds; the samples."""

    async def ready() -> Any:
        try:
            samples = await asyncio.to_thread(worker.samples)
        except httpx.HTTPError:
            return None
        return samples if check(samples) else None

    return await poller(ready)


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_worker_metrics_backfill_progress_and_the_premarket_session_check(
    make_data: Callable[..., DataApp],
    poller: Callable[..., Awaitable[Any]],
    start_worker: Callable[..., Worker],
    settings_for: Callable[..., DataSettings],
    aredis: aioredis.Redis,
    kitesim: Kitesim,
) -> None:
    worker = start_worker()
    # before any backfill or check: served, but no progress and no pre-market verdict yet
    idle = await scrape(worker, poller, lambda s: True)
    assert value(idle, "dalal_kite_premarket_check_ok") is None
    data = make_data(api_key=KEY)
    body = {
        "symbols": ["RELIANCE", "TCS", "NOSUCHSYM"],
        "interval": "day",
        "from": "2021-01-01",
        "to": "2025-06-30",
    }
    job = (await data.http.post("/backfill", json=body, headers=AUTH)).json()

    def finished(s: dict) -> bool:  # progress is set inside a task, its count once it ends
        ended = sum(
            value(s, "dalal_worker_tasks_total", task="backfill_symbol", state=state) or 0
            for state in ("succeeded", "failed")
        )
        # a task is counted (celery's task_success / task_failure) a moment before it is timed
        # (task_postrun): a scrape in between saw 3 counted and 2 timed
        timed = value(s, "dalal_worker_task_seconds_count", task="backfill_symbol")
        return value(s, "dalal_data_backfill_symbols_done") == 3 and ended == 3 and timed == 3

    samples = await scrape(worker, poller, finished)
    status = (await data.http.get(f"/backfill/{job['job_id']}")).json()
    assert status["state"] == "finished" and status["failed"] == 1
    assert value(samples, "dalal_data_backfill_symbols_total") == 3
    assert value(samples, "dalal_data_backfill_eta_seconds") == 0
    task = "backfill_symbol"
    assert value(samples, "dalal_worker_tasks_total", task=task, state="succeeded") == 2
    assert value(samples, "dalal_worker_tasks_total", task=task, state="failed") == 1
    assert value(samples, "dalal_worker_task_seconds_count", task=task) == 3
    ok_calls = value(
        samples, "dalal_kite_calls_total", service="data", endpoint_class="historical", outcome="ok"
    )
    assert ok_calls == 2  # one 5-year request per known symbol
    assert value(samples, "dalal_kite_ratelimit_wait_seconds_count", endpoint_class="historical")

    # the pre-market session check, run by the worker as the scheduler sends it at 08:30
    celery = make_celery(settings_for())
    store = SessionStore(aredis, SESSION_SECRET)
    await store.clear()

    async def check(day: str) -> tuple[dict, dict]:
        before = value(
            await scrape(worker, poller, lambda s: True),
            "dalal_kite_premarket_check_timestamp_seconds",
        )
        celery.send_task(PREMARKET, kwargs={"day": day}, queue="data")

        def newer(s: dict) -> bool:
            stamp = value(s, "dalal_kite_premarket_check_timestamp_seconds")
            return stamp is not None and stamp != before

        samples = await scrape(worker, poller, newer)
        jobs = (await data.http.get("/jobs")).json()["jobs"]
        (premarket,) = [j for j in jobs if j["job"] == "premarket_check"]
        return samples, premarket

    # no session stored: the check fails and says why
    samples, job = await check("2026-11-26")
    assert value(samples, "dalal_kite_premarket_check_ok") == 0
    assert job["last_run"]["reason"] == "no_session" and job["at_ist"] == "08:30"

    # a stored token Kite does not know: refused at the profile call
    now = utcnow()
    record = KiteSessionRecord("KS0001", "not-a-real-token", now, token_expiry(now))
    await store.save(record)
    samples, job = await check("2026-11-27")
    assert value(samples, "dalal_kite_premarket_check_ok") == 0
    assert job["last_run"]["reason"] == "token_rejected"

    # the broker stored a valid session: the check passes
    record = KiteSessionRecord("KS0001", kitesim.access_token(), now, token_expiry(now))
    await store.save(record)
    samples, job = await check("2026-11-28")
    assert value(samples, "dalal_kite_premarket_check_ok") == 1
    assert job["last_run"]["ok"] is True and job["last_run"]["day"] == "2026-11-28"
    assert "not-a-real-token" not in worker.proc.output()

    # a restarted worker reports the last verdict before the next check
    worker.proc.stop()
    again = start_worker()
    restored = await scrape(
        again, poller, lambda s: value(s, "dalal_kite_premarket_check_ok") is not None
    )
    assert value(restored, "dalal_kite_premarket_check_ok") == 1


async def test_a_worker_killed_mid_backfill_leaves_the_task_to_a_new_worker(
    make_data: Callable[..., DataApp],
    poller: Callable[..., Awaitable[Any]],
    start_worker: Callable[..., Worker],
    kitesim: Kitesim,
    tmp_path: Path,
) -> None:
    fast_redelivery = {
        "DALAL_WORKER_VISIBILITY_TIMEOUT_SECONDS": "2",
        "DALAL_CACHE_LOCK_SECONDS": "2",
    }
    first = start_worker(**fast_redelivery)
    await scrape(first, poller, lambda s: True)  # up and consuming
    # the first chunk's answer takes 1.5 s, the second's 8 s (under the worker's 10 s Kite
    # timeout): the kill lands inside the second call even on a loaded machine, and the new
    # worker's call meets no fault
    for seconds in (1.5, 8.0):
        kitesim.control(
            "/faults", {"kind": "latency", "route": "historical", "seconds": seconds, "count": 1}
        )
    data = make_data(api_key=KEY)
    # 2015-01-01 .. 2025-09-30 daily: two chunks of at most 2,000 days
    body = {"symbols": ["RELIANCE"], "interval": "day", "from": "2015-01-01", "to": "2025-09-30"}
    job_id = (await data.http.post("/backfill", json=body, headers=AUTH)).json()["job_id"]
    cache = tmp_path / "cache"

    async def first_chunk_stored() -> bool:
        state = (await data.http.get(f"/backfill/{job_id}")).json()["symbols"]["RELIANCE"]
        return state["state"] == "running" and bool(
            cs.read_coverage(cache, "NSE", "day", "RELIANCE")
        )

    await poller(first_chunk_stored)
    first.proc.kill()
    assert (await data.http.get(f"/backfill/{job_id}")).json()["state"] == "running"

    second = start_worker(**fast_redelivery)

    async def done() -> dict[str, Any] | None:
        assert second.alive(), second.proc.output()[-3000:]
        status = (await data.http.get(f"/backfill/{job_id}")).json()
        return status if status["state"] == "finished" else None

    try:
        status = await poller(done)
    except AssertionError as exc:  # say where it stuck (SIGUSR1: Celery logs every stack)
        status = (await data.http.get(f"/backfill/{job_id}")).json()
        second.proc.signal(signal.SIGUSR1)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: "Thread" in second.proc.output(), timeout=5)
        raise AssertionError(
            f"{exc}; job {status}; new worker log: {second.proc.output()[-6000:]}"
        ) from None
    symbol = status["symbols"]["RELIANCE"]
    assert symbol["state"] == "done"
    assert symbol["kite_requests"] == 1  # only the chunk the dead worker had not stored
    table = cs.read(cache, "NSE", "day", "RELIANCE")
    stamps = table.column("ts")
    assert len(pc.unique(stamps)) == table.num_rows  # no duplicate candles
    kite = kitesim.client()
    token = next(
        i["instrument_token"] for i in kite.instruments("NSE") if i["tradingsymbol"] == "RELIANCE"
    )
    source = kite.historical_data(token, "2020-09-01", "2025-09-30", "day")
    assert table.num_rows == len(source)
    assert stamps[0].as_py() - source[0]["date"] == timedelta(0)
