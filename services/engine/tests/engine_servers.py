"""Real kitesim and data-service apps served over HTTP (uvicorn in a thread) for engine tests."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from kiteconnect import KiteConnect

from dalal_shared.testing import free_port, wait_until

KITE_KEY = "kitesim_key"
KITE_SECRET = "kitesim_secret_0123456789"


class Served:
    """An ASGI app on a free port in a daemon thread."""

    def __init__(self, app: Any):
        self.app = app
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Served:
        self.thread.start()
        wait_until(
            lambda: httpx.get(f"{self.root}/healthz", timeout=1).status_code == 200,
            message=f"server on {self.port} up",
        )
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def kitesim(**overrides: Any) -> Served:
    from dalal_kitesim.app import build_app
    from dalal_kitesim.config import KitesimSettings

    settings = KitesimSettings(
        port=free_port(),
        kitesim_session_seconds=0,
        kitesim_rate_quote_per_second=0,
        kitesim_rate_historical_per_second=0,
        kitesim_rate_orders_per_second=0,
        kitesim_rate_orders_per_minute=0,
        kitesim_rate_other_per_second=0,
        kitesim_token_expiry=False,
        **overrides,
    )
    return Served(build_app(settings)).start()


def access_token(sim: Served) -> str:
    r = httpx.post(
        f"{sim.root}/connect/login",
        data={"api_key": KITE_KEY, "user_id": "KS0001", "password": "x"},
        follow_redirects=False,
    )
    request_token = httpx.URL(r.headers["location"]).params["request_token"]
    kite = KiteConnect(api_key=KITE_KEY, root=sim.root, timeout=10)
    return kite.generate_session(request_token, api_secret=KITE_SECRET)["access_token"]


def data_service(sim: Served, redis_url: str, cache_dir: Path) -> Served:
    from dalal_data.app import build_app
    from dalal_data.config import DataSettings

    settings = DataSettings(
        redis_url=redis_url,
        cache_dir=cache_dir,
        kite_root_url=sim.root,
        kite_api_key=KITE_KEY,
        kite_access_token=access_token(sim),
        read_key_required=False,
    )
    return Served(build_app(settings)).start()
