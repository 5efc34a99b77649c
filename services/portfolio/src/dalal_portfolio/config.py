"""Settings of the portfolio service (env prefix DALAL_)."""

from __future__ import annotations

from dalal_shared.settings import DalalSettings
from pydantic import Field


class PortfolioSettings(DalalSettings):
    port: int = Field(8003, ge=1, le=65535)
