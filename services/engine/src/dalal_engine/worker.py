"""`python -m dalal_engine.worker`: the engine's Celery worker (backtests on the `engine`
queue; solo pool by default: one backtest at a time, run more processes to scale out).

Serves Prometheus `/metrics` on `DALAL_METRICS_PORT` when set, with
`dalal_worker_tasks_total{task,state}` and `dalal_worker_task_seconds{task}` (the same names
as the data-worker's: each process has its own registry)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from celery import signals
from prometheus_client import Counter, Histogram, start_http_server

from dalal_engine.config import EngineSettings
from dalal_engine.tasks import QUEUE, make_celery
from dalal_shared.logging import get_logger
from dalal_shared.service import bootstrap_settings

log = get_logger(__name__)

TASKS = Counter(
    "dalal_worker_tasks_total", "Celery tasks finished by the engine worker", ["task", "state"]
)
TASK_SECONDS = Histogram(
    "dalal_worker_task_seconds",
    "Run time of an engine-worker task",
    ["task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

_started: dict[str, float] = {}
_lock = threading.Lock()


def _short(name: str | None) -> str:
    return (name or "unknown").rsplit(".", 1)[-1]


def _prerun(task_id: str | None = None, **_: Any) -> None:
    with _lock:
        _started[task_id or ""] = time.monotonic()


def _postrun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    with _lock:
        began = _started.pop(task_id or "", None)
    if began is not None:
        TASK_SECONDS.labels(_short(getattr(task, "name", None))).observe(time.monotonic() - began)


def _outcome(state: str) -> Any:
    def count(sender: Any = None, **_: Any) -> None:
        TASKS.labels(_short(getattr(sender, "name", None)), state).inc()

    return count


def install_task_metrics() -> None:
    signals.task_prerun.connect(_prerun, weak=False)
    signals.task_postrun.connect(_postrun, weak=False)
    signals.task_success.connect(_outcome("succeeded"), weak=False)
    signals.task_failure.connect(_outcome("failed"), weak=False)
    signals.task_retry.connect(_outcome("retried"), weak=False)


def main() -> None:
    settings = bootstrap_settings("engine-worker", EngineSettings)
    install_task_metrics()
    if settings.metrics_port is not None:
        start_http_server(settings.metrics_port)
        log.info("metrics.serving", port=settings.metrics_port)
    app = make_celery(settings)
    pool = os.environ.get("DALAL_WORKER_POOL", "solo")
    app.worker_main(
        [
            "worker",
            f"--pool={pool}",
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
            f"--hostname=engine-worker-{os.getpid()}@%h",
        ]
    )


if __name__ == "__main__":
    main()
