"""Celery tasks of the data-worker: backfill one symbol of a job, the nightly sync, the daily
instruments refresh. Every task is idempotent (the cache fetches only gaps) and acknowledged
late, so a worker killed mid-task leaves it to be run again.

`python -m dalal_data.worker` runs a worker; the broker is the stack's Redis.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from celery import Celery

from dalal_data.candles import parse_bound
from dalal_data.config import DataSettings
from dalal_data.jobs import BACKFILL_SYMBOLS, JobStore, record_run
from dalal_data.metrics import set_backfill_progress
from dalal_data.planning import last_closed_session
from dalal_data.wiring import build_core
from dalal_shared import candlestore as cs
from dalal_shared.calendar import nse_calendar
from dalal_shared.logging import get_logger
from dalal_shared.timeutil import IST, utcnow

log = get_logger(__name__)

QUEUE = "data"
BACKFILL = "dalal_data.backfill_symbol"
NIGHTLY = "dalal_data.nightly_sync"
INSTRUMENTS = "dalal_data.refresh_instruments"
PREMARKET = "dalal_data.premarket_check"


class SymbolFailed(Exception):
    """A backfilled symbol could not be fetched (recorded in its job; the task counts failed)."""


def make_celery(settings: DataSettings) -> Celery:
    app = Celery("dalal_data", broker=settings.redis_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # a task unacknowledged this long (its worker died) is handed out again; each
            # worker sweeps for such tasks at start and then periodically
            "visibility_timeout": settings.worker_visibility_timeout_seconds,
            "unacked_restore_interval": min(10.0, settings.worker_visibility_timeout_seconds),
            "unacked_restore_throttle": 1,
            # a worker killed inside a sweep holds its mutex until this expires
            "unacked_mutex_expire": max(
                5, min(300, int(settings.worker_visibility_timeout_seconds))
            ),
        },
        worker_hijack_root_logger=False,
    )
    register_tasks(app, settings)
    return app


def enqueue_with(app: Celery) -> Any:
    def enqueue(job_id: str, payload: dict[str, Any]) -> None:
        app.send_task(BACKFILL, args=[job_id, payload], queue=QUEUE)

    return enqueue


async def backfill_symbol(settings: DataSettings, job_id: str, payload: dict[str, Any]) -> str:
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        jobs = JobStore(redis)
        symbol = payload["symbol"]
        current = await jobs.symbol_state(job_id, symbol)
        if current and current.get("state") == "done":
            return "done"  # a redelivered task: nothing left to do
        core = build_core(settings, redis, source="data-worker")
        await jobs.update(job_id, symbol, state="running", started=time.time())
        await _progress(jobs, job_id)
        start = parse_bound(payload["from"], end=False)
        end = parse_bound(payload["to"], end=True) if payload.get("to") else utcnow()
        try:
            report = await core.candles.ensure(
                payload["exchange"], symbol, payload["interval"], start, end
            )
        except Exception as exc:
            await jobs.update(
                job_id,
                symbol,
                state="failed",
                finished=time.time(),
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            BACKFILL_SYMBOLS.labels("failed").inc()
            await _progress(jobs, job_id)
            log.warning("backfill.symbol_failed", job=job_id, symbol=symbol, error=str(exc))
            return "failed"
        await jobs.update(
            job_id,
            symbol,
            state="done",
            finished=time.time(),
            kite_requests=len(report.chunks),
            cache=report.result,
        )
        BACKFILL_SYMBOLS.labels("done").inc()
        await _progress(jobs, job_id)
        return "done"
    finally:
        await redis.aclose()


async def _progress(jobs: JobStore, job_id: str) -> None:
    status = await jobs.status(job_id)
    if status is not None:
        set_backfill_progress(status)


async def nightly_sync(settings: DataSettings) -> dict[str, int]:
    """Top every cached series up to the last closed session."""
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        core = build_core(settings, redis, source="data-worker")
        last = last_closed_session(nse_calendar(), utcnow())
        synced = failed = 0
        for exchange, interval, symbol in cs.cached_files(settings.cache_dir):
            ranges = cs.read_coverage(settings.cache_dir, exchange, interval, symbol)
            if not ranges:
                continue
            first = parse_bound(ranges[-1][1], end=False) + timedelta(days=1)
            first = min(first, parse_bound(last.isoformat(), end=False))
            try:
                await core.candles.ensure(
                    exchange, symbol, interval, first, parse_bound(last.isoformat(), end=True)
                )
                synced += 1
            except Exception as exc:
                failed += 1
                log.warning("sync.failed", symbol=symbol, interval=interval, error=str(exc))
        result = {"synced": synced, "failed": failed}
        await record_run(
            redis, "nightly_sync", {"state": "failed" if failed else "succeeded", **result}
        )
        return result
    finally:
        await redis.aclose()


async def refresh_instruments(settings: DataSettings, exchanges: list[str]) -> dict[str, int]:
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        core = build_core(settings, redis, source="data-worker")
        result = {ex: await core.instruments.refresh(ex) for ex in exchanges}
        await record_run(redis, "refresh_instruments", {"state": "succeeded", **result})
        return result
    finally:
        await redis.aclose()


def register_tasks(app: Celery, settings: DataSettings) -> None:
    @app.task(name=BACKFILL, acks_late=True)
    def _backfill(job_id: str, payload: dict[str, Any]) -> str:
        outcome = asyncio.run(backfill_symbol(settings, job_id, payload))
        if outcome == "failed":  # recorded in the job; counted as a failed task
            raise SymbolFailed(f"{payload.get('symbol')} of backfill {job_id} failed")
        return outcome

    @app.task(name=NIGHTLY, acks_late=True)
    def _nightly(day: str | None = None) -> dict[str, int]:
        return asyncio.run(nightly_sync(settings))

    @app.task(name=INSTRUMENTS, acks_late=True)
    def _instruments(exchanges: list[str] | None = None, day: str | None = None) -> dict[str, int]:
        return asyncio.run(refresh_instruments(settings, exchanges or ["NSE"]))

    @app.task(name=PREMARKET, acks_late=True)
    def _premarket(day: str | None = None) -> dict[str, Any]:
        from dalal_data.premarket import check_session

        return asyncio.run(check_session(settings, day))


def today_ist() -> str:
    return utcnow().astimezone(IST).date().isoformat()
