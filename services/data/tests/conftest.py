"""kitesim started for real (uvicorn on a free port, in a thread) and the data app over it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from kiteconnect import KiteConnect

from dalal_data.app import build_app
from dalal_data.config import DataSettings
from dalal_kitesim.app import build_app as build_kitesim
from dalal_kitesim.config import KitesimSettings
from dalal_shared.testing import free_port, wait_until

API_KEY = "kitesim_key"
API_SECRET = "kitesim_secret_0123456789"


class Kitesim:
    def __init__(self, **overrides: Any):
        self.port = free_port()
        settings = KitesimSettings(
            port=self.port,
            kitesim_session_seconds=0,
            kitesim_rate_quote_per_second=0,
            kitesim_rate_historical_per_second=0,
            kitesim_rate_orders_per_second=0,
            kitesim_rate_orders_per_minute=0,
            kitesim_rate_other_per_second=0,
            kitesim_token_expiry=False,  # tests move the clock across days
            **overrides,
        )
        self.app = build_kitesim(settings)
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

    def access_token(self) -> str:
        r = httpx.post(
            f"{self.root}/connect/login",
            data={"api_key": API_KEY, "user_id": "KS0001", "password": "x"},
            follow_redirects=False,
        )
        request_token = httpx.URL(r.headers["location"]).params["request_token"]
        kite = KiteConnect(api_key=API_KEY, root=self.root, timeout=10)
        return kite.generate_session(request_token, api_secret=API_SECRET)["access_token"]

    def client(self) -> KiteConnect:
        kite = KiteConnect(api_key=API_KEY, root=self.root, timeout=10)
        kite.set_access_token(self.access_token())
        return kite


@pytest.fixture(scope="module")
def kitesim() -> Iterator[Kitesim]:
    server = Kitesim().start()
    yield server
    server.stop()


def data_settings(kitesim: Kitesim, redis_url: str, cache_dir: Path, **extra: Any) -> DataSettings:
    return DataSettings(
        redis_url=redis_url,
        cache_dir=cache_dir,
        kite_root_url=kitesim.root,
        kite_api_key=API_KEY,
        kite_access_token=kitesim.access_token(),
        **extra,
    )


class DataApp:
    def __init__(self, settings: DataSettings):
        self.settings = settings
        self.app = build_app(settings)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://data", timeout=60
        )

    @property
    def historical_calls(self) -> int:
        return self.app.state.gateway.log.count("historical")

    @property
    def call_times(self) -> list[float]:
        return self.app.state.gateway.log.calls.get("historical", [])

    async def close(self) -> None:
        await self.http.aclose()
        await self.app.state.runtime.redis.aclose()


@pytest.fixture
async def data(kitesim: Kitesim, redis_url: str, tmp_path: Path) -> AsyncIterator[DataApp]:
    app = DataApp(data_settings(kitesim, redis_url, tmp_path / "cache"))
    yield app
    await app.close()


@pytest.fixture
async def make_data(
    kitesim: Kitesim, redis_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., DataApp]]:
    """A factory of data apps over the module's kitesim, closed after the test."""
    made: list[DataApp] = []

    def make(**extra: Any) -> DataApp:
        app = DataApp(data_settings(kitesim, redis_url, tmp_path / "cache", **extra))
        made.append(app)
        return app

    yield make
    for app in made:
        await app.close()


async def poll(predicate: Callable[[], Awaitable[Any]], *, timeout: float = 60.0) -> Any:
    """Await `predicate` until it returns something truthy (async twin of wait_until)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s; last value {last!r}")


@pytest.fixture
def poller() -> Callable[..., Awaitable[Any]]:
    return poll


@pytest.fixture
def settings_for(kitesim: Kitesim, redis_url: str, tmp_path: Path) -> Callable[..., DataSettings]:
    """DataSettings over the module's kitesim and the test Redis, with overrides."""
    return lambda **extra: data_settings(kitesim, redis_url, tmp_path / "cache", **extra)
