"""Prometheus metrics of the processes without an HTTP API: the data-worker and the scheduler.

Each serves `/metrics` on `DALAL_METRICS_PORT` when it is set (`dalal run`, compose and k8s set
it). The worker counts its Celery tasks with `dalal_shared.workermetrics` (the engine-worker
does the same) and shows the current or last backfill as three plain gauges (no
job-id label: ids are unbounded). The Kite call and limiter-wait metrics the tasks produce live in
the same default registry and are served with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dalal_shared.logging import get_logger

log = get_logger(__name__)


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


def set_backfill_progress(status: dict[str, Any]) -> None:
    """The gauges from a job's status (`JobStore.status`)."""
    GAUGES.set("dalal_data_backfill_symbols_total", status["total"])
    GAUGES.set("dalal_data_backfill_symbols_done", status["done"])
    eta = status.get("eta_seconds")
    GAUGES.set("dalal_data_backfill_eta_seconds", float("nan") if eta is None else eta)


def set_scheduler_leader(holding: bool) -> None:
    GAUGES.set("dalal_data_scheduler_leader", 1.0 if holding else 0.0)
