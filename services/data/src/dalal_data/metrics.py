"""Prometheus metrics of the processes without an HTTP API: the data-worker and the scheduler.

Each serves `/metrics` on `DALAL_METRICS_PORT` when it is set (`dalal run`, compose and k8s set
it). The worker counts its Celery tasks through Celery's signals (so every task is measured the
same way, whatever it does) and shows the current or last backfill as three plain gauges (no
job-id label: ids are unbounded). The Kite call and limiter-wait metrics the tasks produce live in
the same default registry and are served with them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from celery import signals
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dalal_shared.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")


def _shared(make: Callable[[], T], name: str) -> T:
    """The engine-worker registers the same `dalal_worker_*` metrics (each worker process has
    its own registry); a process importing both modules shares one instance."""
    try:
        return make()
    except ValueError:  # already registered by the other worker module
        return REGISTRY._names_to_collectors[name]  # type: ignore[return-value]


TASKS = _shared(
    lambda: Counter(
        "dalal_worker_tasks_total", "Celery tasks finished by a worker", ["task", "state"]
    ),
    "dalal_worker_tasks_total",
)
TASK_SECONDS = _shared(
    lambda: Histogram(
        "dalal_worker_task_seconds",
        "Run time of a worker task",
        ["task"],
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    ),
    "dalal_worker_task_seconds",
)


class ProcessGauges(Collector):
    """Label-less gauges exported only once this process has set them: the API process, which
    imports the same modules, does not show a worker's backfill or a scheduler's leadership as
    a misleading 0."""

    def __init__(self, helps: dict[str, str]):
        self.helps = helps
        self.values: dict[str, float] = {}

    def set(self, name: str, value: float) -> None:
        assert name in self.helps, name
        self.values[name] = value

    def get(self, name: str) -> float | None:
        return self.values.get(name)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, value in list(self.values.items()):
            yield GaugeMetricFamily(name, self.helps[name], value=value)

    def describe(self) -> list[Any]:
        return []


GAUGES = ProcessGauges(
    {
        "dalal_data_backfill_symbols_total": "Symbols of the current (or last) backfill job",
        "dalal_data_backfill_symbols_done": "Symbols of the current (or last) backfill finished",
        "dalal_data_backfill_eta_seconds": "Estimated seconds until the current backfill "
        "finishes (0 when finished, NaN while unknown)",
        "dalal_data_scheduler_leader": "1 while this scheduler holds the lease and sends the jobs",
    }
)
REGISTRY.register(GAUGES)
SCHEDULER_SENT = Counter(
    "dalal_data_scheduler_jobs_sent_total", "Job occurrences this scheduler sent or ran", ["job"]
)


def serve_metrics(port: int | None) -> bool:
    """Serve the default registry on `port` (all interfaces) in a daemon thread."""
    if port is None:
        return False
    start_http_server(port)
    log.info("metrics.serving", port=port)
    return True


def set_backfill_progress(status: dict[str, Any]) -> None:
    """The gauges from a job's status (`JobStore.status`)."""
    GAUGES.set("dalal_data_backfill_symbols_total", status["total"])
    GAUGES.set("dalal_data_backfill_symbols_done", status["done"])
    eta = status.get("eta_seconds")
    GAUGES.set("dalal_data_backfill_eta_seconds", float("nan") if eta is None else eta)


def set_scheduler_leader(holding: bool) -> None:
    GAUGES.set("dalal_data_scheduler_leader", 1.0 if holding else 0.0)


_started: dict[str, float] = {}
_lock = threading.Lock()
_installed = False


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


def _success(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_short(getattr(sender, "name", None)), "succeeded").inc()


def _failure(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_short(getattr(sender, "name", None)), "failed").inc()


def _retry(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_short(getattr(sender, "name", None)), "retried").inc()


def install_task_metrics() -> None:
    """Count and time every task of this process (Celery signals; idempotent)."""
    global _installed
    if _installed:
        return
    signals.task_prerun.connect(_prerun, weak=False)
    signals.task_postrun.connect(_postrun, weak=False)
    signals.task_success.connect(_success, weak=False)
    signals.task_failure.connect(_failure, weak=False)
    signals.task_retry.connect(_retry, weak=False)
    _installed = True
