"""kitesim started for real (uvicorn on a free port, in a thread) and the data app over it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dalal_data.app import build_app
from dalal_data.config import DataSettings
from dalal_kitesim.testing import API_KEY, Kitesim
from dalal_shared.testing import bearer


@pytest.fixture(scope="module")
def kitesim() -> Iterator[Kitesim]:
    server = Kitesim(kitesim_token_expiry=False).start()  # tests move the clock across days
    yield server
    server.stop()


DATA_KEY = "data-test-key-0123456789"


def data_settings(kitesim: Kitesim, redis_url: str, cache_dir: Path, **extra: Any) -> DataSettings:
    extra.setdefault("api_key", DATA_KEY)
    extra.setdefault("kite_access_token", kitesim.access_token())
    return DataSettings(
        redis_url=redis_url,
        cache_dir=cache_dir,
        kite_root_url=kitesim.root,
        kite_api_key=API_KEY,
        **extra,
    )


class DataApp:
    def __init__(self, settings: DataSettings):
        self.settings = settings
        self.app = build_app(settings)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://data",
            timeout=60,
            headers=bearer(settings),  # reads need the key too
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
