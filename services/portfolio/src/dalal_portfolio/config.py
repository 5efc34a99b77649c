"""Settings of the portfolio service (env prefix DALAL_)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from dalal_shared.money import INITIAL_CAPITAL_RUPEES
from dalal_shared.settings import DalalSettings


class PortfolioSettings(DalalSettings):
    port: int = Field(8003, ge=1, le=65535)
    database_url: str = Field(
        "sqlite:///var/portfolio.sqlite3",
        description="SQLAlchemy URL of the ledger (sqlite:///... or postgresql+psycopg://...)",
    )
    initial_capital_rupees: Decimal = Field(
        INITIAL_CAPITAL_RUPEES, gt=0, max_digits=20, decimal_places=2,
        description="capital the account starts with (a seed import overrides it)",
    )  # fmt: skip
    equity_snapshot_interval_seconds: float = Field(
        60.0, ge=0.05, le=86_400, description="how often an EquitySnapshot is stored and published"
    )
    broker_url: str = Field(
        "http://127.0.0.1:8001",
        description="base URL of the broker-gateway (GET /reconcile reads its view from there)",
    )
    broker_timeout_seconds: float = Field(10.0, gt=0, le=120)
    lease_ttl_seconds: float = Field(
        10.0,
        gt=1,
        description="the ledger writer's lease: a second replica takes over this long after "
        "the writer died",
    )
    outbox_interval_seconds: float = Field(
        1.0, ge=0.01, le=60, description="how often unpublished portfolio events are retried"
    )
    reconcile_enabled: bool = Field(
        True,
        description="reconcile by itself after start, on a new session and after the close",
    )
    reconcile_retry_seconds: float = Field(
        30.0, ge=0.05, le=3600, description="pause before retrying a run that could not run"
    )
    reconcile_confirm_seconds: float = Field(
        20.0, ge=0, le=600, description="pause before the second look at breaks found"
    )
