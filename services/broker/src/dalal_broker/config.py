"""Settings of the broker-gateway (env prefix DALAL_)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from dalal_shared.settings import DalalSettings


class BrokerSettings(DalalSettings):
    port: int = Field(8001, ge=1, le=65535)
    kite_api_key: str | None = Field(None, description="Kite Connect app key")
    kite_api_secret: SecretStr | None = Field(None, description="Kite Connect app secret")
    kite_root_url: str = Field("https://api.kite.trade", description="Kite REST root")
