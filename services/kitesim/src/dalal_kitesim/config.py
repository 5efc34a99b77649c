"""kitesim settings: DALAL_KITESIM_* for its own fields, DALAL_* for the common ones."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from dalal_shared.money import INITIAL_CAPITAL_RUPEES
from dalal_shared.settings import DalalSettings


class KitesimSettings(DalalSettings):
    """Everything kitesim can be told. Kitesim needs no Redis: `redis_url` is unused."""

    port: int = Field(8010, ge=1, le=65535)

    # Kite app credentials the simulated exchange accepts.
    kitesim_api_key: str = Field("kitesim_key", description="the Kite api_key clients must send")
    kitesim_api_secret: SecretStr = Field(
        SecretStr("kitesim_secret_0123456789"), description="api_secret for the session checksum"
    )
    kitesim_user_id: str = Field("KS0001", description="the simulated account's user id")
    kitesim_redirect_url: str = Field(
        "http://127.0.0.1:8001/session/callback",
        description="where the login page sends the browser with ?request_token=...",
    )
    kitesim_postback_url: str | None = Field(None, description="order postbacks go here")
    kitesim_token_expiry: bool = Field(
        True, description="access tokens die at 06:00 IST of the next day (on the token clock)"
    )
    kitesim_expiry_clock: Literal["wall", "market"] = Field(
        "wall",
        description="the clock token expiry follows: the wall clock (as Kite: one login a real "
        "day, and Dalal computes the same expiry) or the simulated market clock (tokens die "
        "at simulated 06:00, a few real minutes at the default speed; for expiry tests)",
    )

    # Market data.
    kitesim_data_dir: Path | None = Field(
        None,
        description="extra bars, searched before the bundled data: CSV "
        "<dir>/<interval>/<SYMBOL>.csv (interval: day|daily|daily_adjusted|minute|15minute|...) "
        "and/or a Dalal candle cache <dir>/<EXCHANGE>/<interval>/<SYMBOL>.parquet "
        "(dalal_shared.candlestore layout; Parquet wins over CSV)",
    )
    kitesim_history_after_now: bool = Field(
        False,
        description="serve historical candles after the simulated now (off: as Kite, no "
        "candle starts after now and the one in progress is partial); for tests that read a "
        "fixed past through kitesim as if it were history",
    )
    kitesim_instruments_csv: Path | None = Field(
        None, description="instruments dump to serve instead of the bundled one"
    )

    kitesim_state_file: Path | None = Field(
        None,
        description="where kitesim keeps its state (clock, tokens, orders, trades, positions, "
        "holdings) across restarts, a JSON snapshot; `dalal run` uses var/kitesim/state.json; "
        "unset: nothing is kept",
    )

    # Market clock.
    kitesim_start_date: date = Field(date(2024, 1, 2), description="first simulated session")
    kitesim_session_seconds: float = Field(
        60.0,
        ge=0,
        description="real seconds one 09:15-15:30 session takes; 0 = manual clock "
        "(advanced only through the control API)",
    )
    kitesim_seed: int = Field(1, description="seed of the tick paths")
    kitesim_tick_interval_seconds: int = Field(
        60, ge=1, description="simulated seconds between ticks of an instrument"
    )
    kitesim_tick_noise_bps: Decimal = Field(
        Decimal(0),
        ge=0,
        le=1000,
        description="load tests: move the inner ticks of each bar's path by up to this many "
        "basis points, seeded (0: the plain path the backtester's fill model uses)",
    )

    # Fill model (dalal_shared.fills).
    kitesim_spread_bps: Decimal = Field(Decimal("2"), ge=0)
    kitesim_slippage_bps: Decimal = Field(Decimal("1"), ge=0)
    kitesim_max_participation: Decimal = Field(Decimal("0.1"), gt=0, le=1)
    kitesim_require_market_protection: bool = Field(
        True, description="MARKET orders need market_protection (SEBI retail-algo rules, 2026)"
    )
    kitesim_circuit_band_pct: Decimal = Field(
        Decimal("20"),
        ge=0,
        le=100,
        description="the daily price band around the previous close (NSE's circuit limits); "
        "orders priced outside it are rejected as on Kite; 0 = no limits",
    )
    kitesim_default_market_protection_pct: Decimal = Field(
        Decimal("3"), gt=0, le=100, description="what market_protection=-1 (automatic) means"
    )

    # Account.
    # compose and k8s set it from DALAL_INITIAL_CAPITAL_RUPEES, the capital every service assumes
    kitesim_opening_balance_rupees: Decimal = Field(INITIAL_CAPITAL_RUPEES, ge=0)
    kitesim_mis_margin_fraction: Decimal = Field(
        Decimal("0.2"), gt=0, le=1, description="MIS margin as a share of order value (5x)"
    )

    # Kite's rate limits, requests per second per class (0 = unlimited).
    kitesim_rate_quote_per_second: float = Field(1.0, ge=0)
    kitesim_rate_historical_per_second: float = Field(3.0, ge=0)
    kitesim_rate_orders_per_second: float = Field(10.0, ge=0)
    kitesim_rate_orders_per_minute: float = Field(200.0, ge=0)
    kitesim_rate_other_per_second: float = Field(10.0, ge=0)

    # Ticker.
    kitesim_ticker_max_instruments: int = Field(3000, ge=1)
    kitesim_heartbeat_seconds: float = Field(1.0, gt=0)


def bundled_data_dir() -> Path:
    return Path(__file__).parent / "data" / "nse"
