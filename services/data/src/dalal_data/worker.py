"""`python -m dalal_data.worker`: the Celery data-worker (solo pool by default: one task at a
time; run more processes to scale out, the Kite rate limit is shared through Redis anyway).

With `DALAL_METRICS_PORT` set it serves Prometheus /metrics there (task counts and times, Kite
calls and waits, backfill progress, the pre-market check). Metrics are per process: with
`DALAL_WORKER_POOL=prefork` the tasks run in children whose metrics are not served.
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis

from dalal_data.config import DataSettings
from dalal_data.premarket import restore
from dalal_data.tasks import QUEUE, make_celery
from dalal_shared.logging import get_logger
from dalal_shared.service import bootstrap_settings
from dalal_shared.workermetrics import install_task_metrics, serve_metrics

log = get_logger(__name__)


async def _restore_premarket(settings: DataSettings) -> None:
    redis = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    try:
        await restore(redis)
    except Exception as exc:  # Redis not up yet: the next check sets the gauges
        log.warning("worker.premarket_restore_failed", error=str(exc)[:200])
    finally:
        await redis.aclose()


def main() -> None:
    settings = bootstrap_settings("data-worker", DataSettings)
    install_task_metrics()
    serve_metrics(settings.metrics_port, settings.host)
    asyncio.run(_restore_premarket(settings))
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
            f"--hostname=data-worker-{os.getpid()}@%h",
        ]
    )


if __name__ == "__main__":
    main()
