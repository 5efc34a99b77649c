"""Settings of the console (env prefix DALAL_).

The console is the operator's tool, like the `dalal` CLI: it holds the API key (DALAL_API_KEY)
and presents it to the services on the operator's behalf. A person logs in by presenting the
same key once; the console then keeps a signed session cookie (no key in the page, ever).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from dalal_shared.settings import DalalSettings


class ConsoleSettings(DalalSettings):
    port: int = Field(8005, ge=1, le=65535)
    broker_url: str = Field("http://127.0.0.1:8001", description="the broker-gateway's API")
    data_url: str = Field("http://127.0.0.1:8002", description="the data service's API")
    portfolio_url: str = Field("http://127.0.0.1:8003", description="the portfolio's API")
    engine_url: str = Field("http://127.0.0.1:8004", description="the engine's API")
    broker_public_url: str | None = Field(
        None,
        description="the broker as the operator's browser reaches it (the Kite login link "
        "goes there); default: broker_url",
    )
    grafana_url: str | None = Field(None, description="linked from every page when set")
    prometheus_url: str | None = Field(
        None, description="alerts firing are read from its /api/v1/alerts when set"
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 7, description="a console login lasts this long"
    )
    secure_cookies: bool = Field(
        False, description="mark the session cookie Secure (set when served over HTTPS)"
    )
    upstream_timeout_seconds: float = Field(15.0, gt=0, le=120)

    @model_validator(mode="after")
    def _needs_the_key(self) -> ConsoleSettings:
        if self.api_key is None:
            raise ValueError(
                "DALAL_API_KEY: the console needs the API key in plain (it presents it to "
                "the services; people log in with the same key)"
            )
        return self

    def url_of(self, service: str) -> str:
        return str(getattr(self, f"{service}_url")).rstrip("/")

    def key(self) -> str:
        assert self.api_key is not None
        return self.api_key.get_secret_value()
