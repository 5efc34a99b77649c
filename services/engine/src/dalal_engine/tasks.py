"""Celery tasks of the engine worker: a backtest run as a job (`POST /backtests`), and one
trial (grid point) of a parameter sweep (`POST /sweeps`, `sweeps.py`).

The broker is the stack's Redis, the queue `engine`. A task is acknowledged late, so a worker
killed mid-run leaves it to be run again (the run starts over: it writes only its own row and
report folder). Progress (bars done / total and an ETA) is written to the job's SQL row at most
twice a second; `GET /backtests/{id}` reads it.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from celery import Celery

from dalal_engine import sweeps
from dalal_engine.backtest_jobs import PROGRESS_EVERY_SECONDS, BacktestRequest, run
from dalal_engine.config import EngineSettings
from dalal_engine.report import write_report
from dalal_engine.store import EngineStore
from dalal_shared.clients import DataClient
from dalal_shared.logging import get_logger
from dalal_shared.timeutil import utcnow

log = get_logger(__name__)

QUEUE = "engine"
RUN_BACKTEST = "dalal_engine.run_backtest"
RUN_SWEEP_TRIAL = "dalal_engine.run_sweep_trial"


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

        data = _data_client(settings)
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


def _data_client(settings: EngineSettings) -> DataClient | None:
    """The owner of market history, over HTTP, when the worker knows its URL (and no CSV dir
    was given)."""
    if settings.data_url and not settings.backtest_data_dir:
        return DataClient(settings.data_url, api_key=settings.client_api_key(), timeout=300.0)
    return None


def _sources(settings: EngineSettings) -> dict[str, Any]:
    return {
        "cache_dir": None if settings.backtest_data_dir else settings.candle_cache_dir,
        "data_dir": settings.backtest_data_dir,
    }


_STORES: dict[str, EngineStore] = {}


def _sweep_store(url: str) -> EngineStore:
    """One store per worker process for sweep trials (connecting and checking the migrations
    costs more than a small trial)."""
    store = _STORES.get(url)
    if store is None:
        store = _STORES[url] = EngineStore.open(url)
    return store


def run_sweep_trial(settings: EngineSettings, sweep_id: str, n: int) -> str:
    """One grid point of a sweep: its backtest on this worker's cached bars, the metrics in
    its row; the worker that ends the sweep's last trial ranks them and writes the best
    point's report (`<backtests dir>/sweeps/<id>/`)."""
    store = _sweep_store(settings.shard_database_url)
    data = _data_client(settings)
    try:
        sweep = store.sweep(sweep_id)
        if sweep is None:
            log.warning("sweep.unknown", sweep=sweep_id)
            return "unknown"
        trial = store.start_trial(sweep_id, n, f"{socket.gethostname()}:{os.getpid()}", utcnow())
        if trial is None:
            return "ended"  # a redelivered task of a trial that has ended
        request = sweeps.SweepRequest.model_validate(sweep["request"])
        started = time.perf_counter()
        metrics: dict[str, Any] | None = None
        error: str | None = None
        try:
            result = sweeps.run_trial(
                request.trial(trial["params"]), data=data, scope=sweep_id, **_sources(settings)
            )
            metrics = sweeps.trial_metrics(result)
        except Exception as exc:  # a point that cannot run (no bars...) fails alone
            error = f"{type(exc).__name__}: {exc}"
            log.warning("sweep.trial_failed", sweep=sweep_id, n=n, error=error[:300])
        last = store.finish_trial(
            sweep_id,
            n,
            metrics=metrics,
            error=error,
            seconds=time.perf_counter() - started,
            at=utcnow(),
        )
        if last:
            _finish_sweep(settings, store, sweep_id, request, data)
        return "failed" if error else "done"
    finally:
        if data is not None:
            data.close()


def _finish_sweep(
    settings: EngineSettings,
    store: EngineStore,
    sweep_id: str,
    request: sweeps.SweepRequest,
    data: DataClient | None,
) -> None:
    sweep = store.sweep(sweep_id)
    assert sweep is not None
    order = sweeps.ranked(sweep["trials"], request.objective)
    if not order:
        store.finish_sweep(sweep_id, best=None, error="every trial failed", at=utcnow())
        return
    best = order[0]
    try:
        trial = request.trial(best["params"])
        result = sweeps.run_trial(trial, data=data, scope=sweep_id, **_sources(settings))
        bars = sweeps.load_bars(trial, data=data, scope=sweep_id, **_sources(settings))
        write_report(result, settings.backtests_dir / "sweeps" / sweep_id, bars=bars)
    except Exception as exc:
        store.finish_sweep(
            sweep_id, best=best, error=f"the best point's report: {exc}", at=utcnow()
        )
        raise
    store.finish_sweep(
        sweep_id,
        best={"n": best["n"], "params": best["params"], "metrics": best["metrics"]},
        error=None,
        at=utcnow(),
    )
    log.info("sweep.done", sweep=sweep_id, best=best["params"], objective=request.objective)


def register_tasks(app: Celery, settings: EngineSettings) -> None:
    @app.task(name=RUN_BACKTEST, acks_late=True)
    def _run_backtest(backtest_id: str) -> str:
        return run_backtest(settings, backtest_id)

    @app.task(name=RUN_SWEEP_TRIAL, acks_late=True)
    def _run_sweep_trial(sweep_id: str, n: int) -> str:
        return run_sweep_trial(settings, sweep_id, n)


def send(app: Celery, backtest_id: str) -> Any:
    return app.send_task(RUN_BACKTEST, args=[backtest_id], queue=QUEUE)


def send_sweep(app: Celery, sweep_id: str, trials: int) -> None:
    """One task per trial: any worker takes any of them."""
    for n in range(trials):
        app.send_task(RUN_SWEEP_TRIAL, args=[sweep_id, n], queue=QUEUE)
