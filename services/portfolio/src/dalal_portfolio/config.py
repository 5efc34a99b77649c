"""Settings of the portfolio service (env prefix DALAL_)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, SecretStr, field_validator

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
    telegram_bot_token: SecretStr | None = Field(
        None, description="notifications: the Telegram bot's token (from @BotFather)"
    )
    telegram_chat_id: str | None = Field(
        None, max_length=64, description="notifications: the chat the bot writes to"
    )
    telegram_api_url: str = Field(
        "https://api.telegram.org", description="Telegram's Bot API root (a test server in tests)"
    )
    notify_webhook_url: str | None = Field(
        None, description="notifications: also POST each batch as JSON to this URL"
    )
    notify_min_interval_seconds: float = Field(
        1.1, gt=0, le=3600, description="at most one notification request per sink this often"
    )
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

    @field_validator("telegram_bot_token", "telegram_chat_id", "notify_webhook_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An empty value (compose passes `${VAR:-}` through) means not configured."""
        return None if value == "" else value
