"""Prometheus metrics of a Celery worker process (the data-worker, the engine-worker).

Every task is counted and timed the same way through Celery's signals, whatever it does:
`dalal_worker_tasks_total{task,state}` (succeeded / failed / retried) and
`dalal_worker_task_seconds{task}`. A worker serves them, with everything else of its default
registry, on `DALAL_METRICS_PORT` (`serve_metrics`). Workers run Celery's solo pool (one task at
a time per process; scale by processes), so each process has one registry and no
multiprocess mode is needed. Celery is imported only when the signals are installed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import Counter, Histogram, start_http_server

from dalal_shared.logging import get_logger

log = get_logger(__name__)

TASKS = Counter("dalal_worker_tasks_total", "Celery tasks finished by a worker", ["task", "state"])
TASK_SECONDS = Histogram(
    "dalal_worker_task_seconds",
    "Run time of a worker task",
    ["task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

_started: dict[str, float] = {}
_lock = threading.Lock()
_installed = False


def task_label(name: str | None) -> str:
    """A task's metric label: the last part of its dotted name."""
    return (name or "unknown").rsplit(".", 1)[-1]


def _prerun(task_id: str | None = None, **_: Any) -> None:
    with _lock:
        _started[task_id or ""] = time.monotonic()


def _postrun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    with _lock:
        began = _started.pop(task_id or "", None)
    if began is not None:
        TASK_SECONDS.labels(task_label(getattr(task, "name", None))).observe(
            time.monotonic() - began
        )


def _counter(state: str) -> Any:
    def count(sender: Any = None, **_: Any) -> None:
        TASKS.labels(task_label(getattr(sender, "name", None)), state).inc()

    return count


def install_task_metrics() -> None:
    """Count and time every task of this process (idempotent)."""
    global _installed
    if _installed:
        return
    from celery import signals

    signals.task_prerun.connect(_prerun, weak=False)
    signals.task_postrun.connect(_postrun, weak=False)
    signals.task_success.connect(_counter("succeeded"), weak=False)
    signals.task_failure.connect(_counter("failed"), weak=False)
    signals.task_retry.connect(_counter("retried"), weak=False)
    _installed = True


def serve_metrics(port: int | None, host: str = "127.0.0.1") -> bool:
    """Serve the default registry on `host:port` in a daemon thread: loopback unless the
    deployment says otherwise (DALAL_HOST, as for the HTTP APIs; compose and k8s set 0.0.0.0
    so Prometheus can reach the container)."""
    if port is None:
        return False
    start_http_server(port, addr=host)
    log.info("metrics.serving", host=host, port=port)
    return True
