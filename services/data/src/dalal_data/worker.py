"""`python -m dalal_data.worker`: the Celery data-worker (solo pool by default: one task at a
time; run more processes to scale out, the Kite rate limit is shared through Redis anyway)."""

from __future__ import annotations

import os

from dalal_data.config import DataSettings
from dalal_data.tasks import QUEUE, make_celery
from dalal_shared.service import bootstrap_settings


def main() -> None:
    settings = bootstrap_settings("data-worker", DataSettings)
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
            f"--hostname=data-worker-{os.getpid()}@%h",
        ]
    )


if __name__ == "__main__":
    main()
