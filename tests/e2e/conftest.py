"""Whole-stack fixtures: the services started as real processes against a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dalal_shared.testing import ServiceProcess, free_port

SERVICES = ("broker", "data", "portfolio", "engine")
API_KEY = "e2e-api-key-0123456789abcdef"
KITE_SECRET = "kite-secret-e2e-zyxwvut987"


@dataclass
class Stack:
    services: dict[str, ServiceProcess]
    redis_url: str
    api_key: str
    log_dir: Path

    def url(self, name: str) -> str:
        return self.services[name].base_url

    def logs(self) -> str:
        return "".join(p.output() for p in self.services.values())


@pytest.fixture(scope="module")
def stack(redis_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import redis

    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    log_dir = tmp_path_factory.mktemp("stack-logs")
    services: dict[str, ServiceProcess] = {}
    for name in SERVICES:
        port = free_port()
        env = {
            "DALAL_REDIS_URL": redis_server_url,
            "DALAL_PORT": str(port),
            "DALAL_API_KEY": API_KEY,
            "DALAL_LOG_FORMAT": "json",
            "DALAL_BUS_BLOCK_MS": "100",
            "DALAL_CACHE_DIR": str(log_dir / "cache"),
            "DALAL_DATABASE_URL": f"sqlite:///{log_dir / f'{name}.sqlite3'}",
        }
        if name == "broker":
            env |= {"DALAL_KITE_API_KEY": "simkey", "DALAL_KITE_API_SECRET": KITE_SECRET}
        if name == "engine":  # the owners of its safety state (kill switch, session; equity)
            env |= {
                "DALAL_BROKER_URL": services["broker"].base_url,
                "DALAL_PORTFOLIO_URL": services["portfolio"].base_url,
            }
        services[name] = ServiceProcess(
            f"dalal_{name}", env=env, log_path=log_dir / f"{name}.log", port=port
        ).start()
    try:
        for proc in services.values():
            proc.wait_healthy(timeout=60)
        yield Stack(services, redis_server_url, API_KEY, log_dir)
    finally:
        for proc in services.values():
            proc.stop()
