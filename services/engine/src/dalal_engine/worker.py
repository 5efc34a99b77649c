"""`python -m dalal_engine.worker`: the engine's Celery worker (backtests on the `engine`
queue; solo pool by default: one backtest at a time, run more processes to scale out).

Serves Prometheus `/metrics` on `DALAL_METRICS_PORT` when set, with
`dalal_worker_tasks_total{task,state}` and `dalal_worker_task_seconds{task}`
(`dalal_shared.workermetrics`, as the data-worker)."""

from __future__ import annotations

import os

from dalal_engine.config import EngineSettings
from dalal_engine.tasks import QUEUE, make_celery
from dalal_shared.logging import get_logger
from dalal_shared.service import bootstrap_settings
from dalal_shared.workermetrics import install_task_metrics, serve_metrics

log = get_logger(__name__)


def main() -> None:
    settings = bootstrap_settings("engine-worker", EngineSettings)
    install_task_metrics()
    serve_metrics(settings.metrics_port, settings.host)
    app = make_celery(settings)
    pool = os.environ.get("DALAL_WORKER_POOL", "solo")
    # --quiet: no ASCII banner on stdout, so every line is a log line (JSON in containers)
    app.start(
        argv=[
            "--quiet",
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
