"""Settings of the data-cache (env prefix DALAL_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dalal_shared.settings import DalalSettings


class DataSettings(DalalSettings):
    port: int = Field(8002, ge=1, le=65535)
    cache_dir: Path = Field(Path("var/cache"), description="root of the Parquet candle cache")
