"""Settings of the engine (env prefix DALAL_)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field

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
        Decimal("1000000"), gt=0, description="equity assumed until the portfolio's first snapshot"
    )
    candle_cache_dir: Path | None = Field(
        None, description="Parquet candle cache to warm indicator history from at start"
    )
