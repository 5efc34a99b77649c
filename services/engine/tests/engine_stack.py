"""Real processes around an engine under test: kitesim, the broker logged in to it, and the
portfolio (each `python -m ...` on a free port, on the test's Redis)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from dalal_shared.testing import ServiceProcess, ServiceProcesses, wait_until

KEY = "engine-stack-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
KITE_KEY, KITE_SECRET = "kitesim_key", "kitesim_secret_0123456789"
PORTFOLIO_CAPITAL = "250000"


@dataclass
class Owners:
    kitesim: ServiceProcess
    broker: ServiceProcess
    portfolio: ServiceProcess

    def engine_env(self) -> dict[str, str]:
        """Where an engine asks for the kill switch, the session and the equity."""
        return {
            "DALAL_BROKER_URL": self.broker.base_url,
            "DALAL_PORTFOLIO_URL": self.portfolio.base_url,
        }


def common_env(redis_url: str) -> dict[str, str]:
    return {
        "DALAL_REDIS_URL": redis_url,
        "DALAL_API_KEY": KEY,
        "DALAL_LOG_FORMAT": "json",
        "DALAL_BUS_BLOCK_MS": "50",
    }


def start_owners(processes: ServiceProcesses, redis_url: str, tmp_path: Path) -> Owners:
    """kitesim, a broker logged in to it (session valid) and a portfolio."""
    env = common_env(redis_url)
    sim = processes.start(
        "dalal_kitesim",
        {**env, "DALAL_KITESIM_SESSION_SECONDS": "0", "DALAL_KITESIM_TOKEN_EXPIRY": "false"},
    )
    broker = processes.start(
        "dalal_broker",
        {
            **env,
            "DALAL_KITE_ROOT_URL": sim.base_url,
            "DALAL_KITE_API_KEY": KITE_KEY,
            "DALAL_KITE_API_SECRET": KITE_SECRET,
            "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/broker.sqlite3",
            "DALAL_ENFORCE_MARKET_HOURS": "false",
        },
    )
    portfolio = processes.start(
        "dalal_portfolio",
        {
            **env,
            "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/portfolio.sqlite3",
            "DALAL_BROKER_URL": broker.base_url,
            "DALAL_INITIAL_CAPITAL_RUPEES": PORTFOLIO_CAPITAL,  # not the engine's default
        },
    )
    r = httpx.post(f"{sim.base_url}/_sim/login", json={}, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    token = r.json()["request_token"]
    r = httpx.get(f"{broker.base_url}/session/callback", params={"request_token": token})
    assert r.status_code == 200, r.text
    wait_until(
        lambda: httpx.get(f"{broker.base_url}/session", headers=AUTH).json()["valid"],
        message="session valid",
    )
    return Owners(sim, broker, portfolio)
