"""Settings of the broker-gateway (env prefix DALAL_)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from dalal_shared.settings import DalalSettings

DEV_SESSION_KEY = "dalal-dev-session-key-change-me"


class BrokerSettings(DalalSettings):
    port: int = Field(8001, ge=1, le=65535)
    mode: Literal["sim", "paper", "live"] = Field(
        "sim", description="sim: kitesim; live: real Kite with the capital cap"
    )
    kite_api_key: str | None = Field(None, description="Kite Connect app key")
    kite_api_secret: SecretStr | None = Field(None, description="Kite Connect app secret")
    kite_root_url: str = Field("https://api.kite.trade", description="Kite REST root")
    kite_login_url: str | None = Field(
        None,
        description="Kite's login page (default: kite.zerodha.com, or <root>/connect/login "
        "when the root is not api.kite.trade, as with kitesim)",
    )
    kite_timeout_seconds: float = Field(7.0, gt=0, le=60)
    session_key: SecretStr = Field(
        SecretStr(DEV_SESSION_KEY),
        description="secret that encrypts the stored Kite access token (>= 16 characters)",
    )
    database_url: str = Field("sqlite:///var/broker.sqlite3", description="order journal")
    algo_id: str | None = Field(None, description="exchange algo id sent with each order")

    # guards: the last line before Kite
    max_order_value_rupees: Decimal = Field(Decimal("500000"), gt=0)
    max_orders_per_second: int = Field(10, ge=1, le=10, description="SEBI: at most 10/s")
    market_protection_pct: Decimal = Field(
        Decimal("3"), gt=0, le=100, description="sent with MARKET and SL-M orders without one"
    )
    enforce_market_hours: bool = Field(
        True, description="refuse regular orders outside NSE hours and on holidays"
    )
    reference_price_max_age_seconds: float = Field(
        60.0,
        gt=0,
        description="a MARKET order is valued at the last tick seen this recently, else at "
        "Kite's LTP, else refused (no_reference_price)",
    )
    live_capital_cap_rupees: Decimal = Field(
        Decimal("100000"), gt=0, description="live mode: most capital all open orders may use"
    )

    # sending and tracking
    send_attempts: int = Field(3, ge=1, le=10)
    send_backoff_seconds: float = Field(0.5, ge=0)
    rate_limit_timeout_seconds: float = Field(10.0, gt=0)
    poll_interval_seconds: float = Field(2.0, gt=0)
    session_check_seconds: float = Field(
        30.0, gt=0, description="how often the held Kite session is checked (a profile call)"
    )
    lease_ttl_seconds: float = Field(10.0, gt=1)
    protection_check_seconds: float = Field(
        5.0, gt=0, description="how often protective GTTs are read back from Kite (fired?)"
    )
    trade_sweep_seconds: float = Field(
        60.0, gt=0, description="how often Kite's day trade book is swept for missing trades"
    )
    order_stream_enabled: bool = Field(
        True, description="take order updates from Kite's ticker WebSocket (the lease holder)"
    )
    kite_ticker_url: str | None = Field(
        None, description="ticker WebSocket (default: wss://ws.kite.trade, or the root as ws://)"
    )
    order_stream_silence_seconds: float = Field(
        15.0, gt=0, description="reconnect the order-update connection after this much silence"
    )

    # paper mode: the shared fill model (dalal_shared.fills) meeting live ticks
    paper_spread_bps: Decimal = Field(Decimal("2"), ge=0)
    paper_slippage_bps: Decimal = Field(Decimal("1"), ge=0)
    paper_max_participation: Decimal = Field(
        Decimal("0.1"), gt=0, le=1, description="share of a minute's volume one order may take"
    )

    # reconciliation by itself (the lease holder): after start, on a new session, after the close
    reconcile_enabled: bool = Field(True, description="reconcile the journal with Kite by itself")
    reconcile_retry_seconds: float = Field(
        30.0, ge=0.05, le=3600, description="pause before retrying a run that could not run"
    )
    reconcile_confirm_seconds: float = Field(
        20.0, ge=0, le=600, description="pause before the second look at breaks found"
    )

    def login_url(self) -> str:
        if self.kite_login_url:
            return self.kite_login_url
        if "api.kite.trade" in self.kite_root_url:
            return "https://kite.zerodha.com/connect/login"
        return self.kite_root_url.rstrip("/") + "/connect/login"

    @model_validator(mode="after")
    def _no_dev_secrets_in_live(self) -> BrokerSettings:
        if self.mode == "live" and self.session_key.get_secret_value() == DEV_SESSION_KEY:
            raise ValueError("DALAL_SESSION_KEY must be set to a secret of your own in live mode")
        if len(self.session_key.get_secret_value()) < 16:
            raise ValueError("DALAL_SESSION_KEY must be at least 16 characters")
        return self
