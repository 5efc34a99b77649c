"""Settings of the data-cache (env prefix DALAL_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from dalal_shared.settings import DalalSettings


class DataSettings(DalalSettings):
    port: int = Field(8002, ge=1, le=65535)
    cache_dir: Path = Field(Path("var/cache"), description="root of the Parquet candle cache")

    kite_root_url: str = Field("https://api.kite.trade", description="Kite REST root (kitesim)")
    kite_api_key: str = Field("", description="Kite Connect API key")
    kite_api_secret: SecretStr | None = Field(None, description="only kitesim autologin uses it")
    kite_access_token: SecretStr | None = Field(
        None, description="a fixed access token (else the broker's stored session is read)"
    )
    session_key: SecretStr | None = Field(
        None, description="secret the broker encrypts the stored Kite session with"
    )
    kite_timeout_seconds: float = Field(10.0, gt=0)
    kite_max_attempts: int = Field(6, ge=1, le=50, description="tries per Kite call (429/5xx)")
    kite_ratelimit_wait_seconds: float = Field(60.0, gt=0)
    cache_lock_seconds: float = Field(
        60.0, gt=0, description="TTL of a series' write lock (renewed while held)"
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="worker/scheduler: serve Prometheus /metrics here"
    )

    # live feed
    feed_enabled: bool = Field(False, description="hold the ticker connection (by Redis lease)")
    feed_ws_url: str | None = Field(None, description="ticker WebSocket (default from root URL)")
    feed_symbols: str = Field("", description="comma-separated EXCHANGE:SYMBOL to subscribe")
    feed_max_instruments_per_connection: int = Field(3000, ge=1, le=3000)
    feed_max_connections: int = Field(
        2,
        ge=1,
        le=3,
        description="ticker connections (Kite allows 3 per API key; the broker's order-update "
        "stream holds one, so 2 by default: 6,000 instruments)",
    )
    feed_stale_seconds: float = Field(10.0, gt=0, description="tick age that means silent")
    feed_watch_always: bool = Field(
        False, description="watch tick age outside NSE hours too (kitesim's clock is its own)"
    )
    feed_lease_seconds: float = Field(10.0, gt=0)
    feed_quote_fallback: bool = Field(True, description="poll REST quotes while ticks are stale")

    # jobs
    nightly_sync_at_ist: str = Field("16:00", pattern=r"^\d{2}:\d{2}$")
    instruments_refresh_at_ist: str = Field("08:30", pattern=r"^\d{2}:\d{2}$")
    premarket_check_at_ist: str = Field("08:30", pattern=r"^\d{2}:\d{2}$")
    session_closed_at_ist: str = Field("15:35", pattern=r"^\d{2}:\d{2}$")
    nightly_sync_interval: str = Field("day")
    scheduler_lease_seconds: float = Field(30.0, gt=1)
    feed_clock_redis_key: str | None = Field(
        None,
        description="simulation: the feed writes its exchange clock (ISO) to this Redis key "
        "every watchdog round, for a scheduler reading DALAL_SCHEDULER_CLOCK_REDIS_KEY",
    )
    scheduler_clock_redis_key: str | None = Field(
        None,
        description="simulation: the scheduler's `now` is the ISO time stored at this Redis key "
        "(the wall clock while the key is absent)",
    )
    worker_visibility_timeout_seconds: float = Field(
        3600.0, gt=0, description="an unacknowledged task is redelivered after this long"
    )
