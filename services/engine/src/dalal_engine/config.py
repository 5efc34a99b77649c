"""Settings of the engine (env prefix DALAL_)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from dalal_shared.money import INITIAL_CAPITAL_RUPEES
from dalal_shared.settings import DalalSettings


class EngineSettings(DalalSettings):
    port: int = Field(8004, ge=1, le=65535)
    database_url: str = Field(
        "sqlite:///var/engine.sqlite3",
        description="SQLAlchemy URL of the engine's state (sqlite:///... or postgresql+psycopg://...)",
    )
    strategies_file: Path | None = Field(
        None, description="YAML of the strategy instances the live loop runs (none: no strategies)"
    )
    start_mode: Literal["stopped", "running"] = Field(
        "stopped",
        description="the mode of an engine with none stored yet (its first start); later "
        "starts keep the stored one. Sim's `dalal run` starts it running",
    )
    initial_capital_rupees: Decimal = Field(
        INITIAL_CAPITAL_RUPEES,
        gt=0,
        description="the equity when DALAL_EQUITY_SOURCE=initial_capital (no portfolio)",
    )
    broker_url: str = Field(
        "http://127.0.0.1:8001",
        description="broker-gateway root: the kill switch and the Kite session are read there "
        "at start (entries are refused until they are known)",
    )
    portfolio_url: str = Field(
        "http://127.0.0.1:8003",
        description="portfolio root: equity and cash are read there at start",
    )
    equity_source: Literal["portfolio", "initial_capital"] = Field(
        "portfolio",
        description="where equity and cash come from: the portfolio (its snapshots and "
        "GET /portfolio), or DALAL_INITIAL_CAPITAL_RUPEES when no portfolio runs (replays)",
    )
    safety_refresh_seconds: float = Field(
        60.0, gt=0, le=3600, description="how often kill switch, session and equity are re-read"
    )
    market_clock: Literal["wall", "exchange"] = Field(
        "wall",
        description="the market clock: wall (live, paper) or exchange (sim, replays: the "
        "exchange times of the market data, and kitesim's clock at DALAL_MARKET_CLOCK_REDIS_KEY)",
    )
    market_clock_redis_key: str | None = Field(
        None, description="sim: the Redis key where the data feed shares kitesim's clock"
    )
    max_signal_delay_seconds: float | None = Field(
        None,
        gt=0,
        le=31 * 86400,
        description="a bar whose order would reach the market later than this after its time "
        "is used for indicators only (default: one bar intraday, the session for daily bars)",
    )
    data_url: str | None = Field(
        None, description="data service root (the fixed-cycle schedule reads candles there)"
    )
    candle_cache_dir: Path | None = Field(
        None,
        description="Parquet candle cache: indicator warm-up at start, and backtest jobs' bars",
    )
    backtest_data_dir: Path | None = Field(
        None, description="CSV bars for backtest jobs instead of the Parquet cache"
    )
    backtests_dir: Path = Field(
        Path("var/backtests"), description="backtest jobs' reports (<dir>/<id>/report.html)"
    )
    shard_count: int = Field(
        1, ge=1, le=64, description="engines splitting the symbols between them (by hash)"
    )
    shard_index: int = Field(0, ge=0, description="this engine's shard (0 .. shard_count - 1)")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="worker: serve Prometheus /metrics here"
    )

    @field_validator("market_clock_redis_key")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("shard_index")
    @classmethod
    def _shard_in_range(cls, value: int, info: ValidationInfo) -> int:
        count = info.data.get("shard_count", 1)
        if value >= count:
            raise ValueError(f"must be below DALAL_SHARD_COUNT ({count})")
        return value

    @property
    def shard_database_url(self) -> str:
        """The database URL with `{shard}` replaced by this engine's shard index."""
        return self.database_url.replace("{shard}", str(self.shard_index))
