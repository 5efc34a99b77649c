"""Settings of the engine (env prefix DALAL_)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

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
    initial_capital_rupees: Decimal = Field(
        INITIAL_CAPITAL_RUPEES,
        gt=0,
        description="equity assumed until the portfolio's first snapshot",
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
