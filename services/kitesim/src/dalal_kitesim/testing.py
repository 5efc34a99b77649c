"""kitesim in the test process: uvicorn on a free port in a thread, its state reachable
(`.sim`), driven over real HTTP with the control API and the official `kiteconnect` client.

Used by kitesim's own tests and by the tests of services that talk to Kite (data). Every Kite
rate limit is off, the clock is manual and historical candles after the simulated now are served
(`kitesim_history_after_now`: tests of the data service read a fixed past through it) unless
overridden; the process defaults (what `dalal run` uses) are Kite's: no candle after now.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import uvicorn
from kiteconnect import KiteConnect

from dalal_kitesim.app import build_app
from dalal_kitesim.config import KitesimSettings
from dalal_shared.testing import free_port, wait_until

# kitesim's default credentials (its settings' defaults, the ones `make run` uses)
API_KEY: str = KitesimSettings.model_fields["kitesim_api_key"].default
API_SECRET: str = KitesimSettings.model_fields["kitesim_api_secret"].default.get_secret_value()


class Kitesim:
    def __init__(self, **overrides: Any):
        self.port = free_port()
        settings = KitesimSettings(
            **{
                "port": self.port,
                "kitesim_session_seconds": 0,  # manual clock: tests move time explicitly
                "kitesim_rate_quote_per_second": 0,
                "kitesim_rate_historical_per_second": 0,
                "kitesim_rate_orders_per_second": 0,
                "kitesim_rate_orders_per_minute": 0,
                "kitesim_rate_other_per_second": 0,
                "kitesim_history_after_now": True,
                **overrides,
            }
        )
        self.app = build_app(settings)
        self.sim = self.app.state.sim
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_root(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Kitesim:
        self.thread.start()
        wait_until(
            lambda: httpx.get(f"{self.root}/healthz", timeout=1).status_code == 200,
            message="kitesim up",
        )
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def control(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        r = httpx.request(method, f"{self.root}/_sim{path}", json=body, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def advance(self, **body: Any) -> Any:
        return self.control("/clock/advance", body)

    def request_token(self) -> str:
        """A request token through the login page, as a user's browser gets it."""
        r = httpx.post(
            f"{self.root}/connect/login",
            data={"api_key": API_KEY, "user_id": "KS0001", "password": "x"},
            follow_redirects=False,
        )
        assert r.status_code == 302, r.text
        return httpx.URL(r.headers["location"]).params["request_token"]

    def access_token(self) -> str:
        kite = KiteConnect(api_key=API_KEY, root=self.root, timeout=10)
        return str(
            kite.generate_session(self.request_token(), api_secret=API_SECRET)["access_token"]
        )

    def client(self) -> KiteConnect:
        """The official client with a fresh session."""
        kite = KiteConnect(api_key=API_KEY, root=self.root, timeout=10)
        kite.set_access_token(self.access_token())
        return kite
