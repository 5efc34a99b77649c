"""Celery tasks of the engine worker: a backtest run as a job (`POST /backtests`).

The broker is the stack's Redis, the queue `engine`. A task is acknowledged late, so a worker
killed mid-run leaves it to be run again (the run starts over: it writes only its own row and
report folder). Progress (bars done / total and an ETA) is written to the job's SQL row at most
twice a second; `GET /backtests/{id}` reads it.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery

from dalal_engine.backtest_jobs import PROGRESS_EVERY_SECONDS, BacktestRequest, run
from dalal_engine.config import EngineSettings
from dalal_engine.store import EngineStore
from dalal_shared.clients import DataClient
from dalal_shared.logging import get_logger
from dalal_shared.timeutil import utcnow

log = get_logger(__name__)

QUEUE = "engine"
RUN_BACKTEST = "dalal_engine.run_backtest"


def make_celery(settings: EngineSettings) -> Celery:
    app = Celery("dalal_engine", broker=settings.redis_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
    )
    register_tasks(app, settings)
    return app


def run_backtest(settings: EngineSettings, backtest_id: str) -> str:
    store = EngineStore.open(settings.shard_database_url)  # shard 0 unless DALAL_SHARD_INDEX
    try:
        job = store.backtest(backtest_id)
        if job is None:
            log.warning("backtest.unknown", backtest=backtest_id)
            return "unknown"
        if job["status"] == "done":
            return "done"  # a redelivered task
        request = BacktestRequest.model_validate(job["request"])
        started = time.monotonic()
        store.update_backtest(backtest_id, status="running", started_at=utcnow(), error=None)
        last = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < PROGRESS_EVERY_SECONDS and done < total:
                return
            last = now
            elapsed = now - started
            eta = elapsed / done * (total - done) if done else None
            store.update_backtest(backtest_id, bars_done=done, bars_total=total, eta_seconds=eta)

        data = (  # the owner of market history, over HTTP, when the worker knows its URL
            DataClient(settings.data_url, api_key=settings.client_api_key(), timeout=300.0)
            if settings.data_url and not settings.backtest_data_dir
            else None
        )
        try:
            _result, summary = run(
                request,
                out_dir=settings.backtests_dir / backtest_id,
                cache_dir=None if settings.backtest_data_dir else settings.candle_cache_dir,
                data_dir=settings.backtest_data_dir,
                progress=progress,
                data=data,
            )
        except Exception as exc:
            store.update_backtest(
                backtest_id,
                status="failed",
                finished_at=utcnow(),
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
            log.warning("backtest.failed", backtest=backtest_id, error=type(exc).__name__)
            raise
        finally:
            if data is not None:
                data.close()
        store.update_backtest(
            backtest_id, status="done", finished_at=utcnow(), eta_seconds=0.0, summary=summary
        )
        return "done"
    finally:
        store.close()


def register_tasks(app: Celery, settings: EngineSettings) -> None:
    @app.task(name=RUN_BACKTEST, acks_late=True)
    def _run_backtest(backtest_id: str) -> str:
        return run_backtest(settings, backtest_id)


def send(app: Celery, backtest_id: str) -> Any:
    return app.send_task(RUN_BACKTEST, args=[backtest_id], queue=QUEUE)
