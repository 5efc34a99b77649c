"""Settings of the engine (env prefix DALAL_)."""

from __future__ import annotations

from pydantic import Field

from dalal_shared.settings import DalalSettings


class EngineSettings(DalalSettings):
    port: int = Field(8004, ge=1, le=65535)
