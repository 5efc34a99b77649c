"""Settings of the portfolio service (env prefix DALAL_)."""

from __future__ import annotations

from pydantic import Field

from dalal_shared.settings import DalalSettings


class PortfolioSettings(DalalSettings):
    port: int = Field(8003, ge=1, le=65535)
