"""Shared helpers of the engine tests: real INFY daily bars as Bar messages; the safety state
(kill switch released, session valid) as its owners announce it on the bus."""

from __future__ import annotations

import csv
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import redis

from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import Bar, Envelope, KillSwitchReleased, SessionValid
from dalal_shared.streams import SYSTEM_EVENTS
from dalal_shared.testing import free_port
from dalal_shared.timeutil import IST, utcnow

FIXTURES = Path(__file__).parent / "fixtures"
CONFIG = """
name: ref
strategy: sma_cross
universe: [INFY]
params: {fast_bars: 5, slow_bars: 20}
risk: {enforce_market_hours: false}
"""


def infy_bars() -> list[Bar]:
    with (FIXTURES / "INFY.csv").open() as fh:
        return [
            Bar(
                symbol="INFY",
                interval="day",
                start=datetime.combine(date.fromisoformat(r["date"]), time(0), tzinfo=IST),
                open=Decimal(r["open"]),
                high=Decimal(r["high"]),
                low=Decimal(r["low"]),
                close=Decimal(r["close"]),
                volume=int(r["volume"]),
            )
            for r in csv.DictReader(fh)
        ]


# a LiveEngine built in a unit test knows its world (kill switch off, session valid, equity)
KNOWN = ("kill_switch", "session", "equity")


def nowhere() -> str:
    """A URL nothing listens at (an owner that does not answer)."""
    return f"http://127.0.0.1:{free_port()}"


def replay_settings() -> dict[str, object]:
    """Engine settings of an in-process replay: the exchange clock, no broker or portfolio to
    ask (the safety state comes from the bus, `announce_safe`), the configured capital."""
    return {
        "market_clock": "exchange",
        "broker_url": nowhere(),
        "equity_source": "initial_capital",
        "read_key_required": False,
    }


def replay_env() -> dict[str, str]:
    return {
        "DALAL_MARKET_CLOCK": "exchange",
        "DALAL_BROKER_URL": nowhere(),
        "DALAL_EQUITY_SOURCE": "initial_capital",
        "DALAL_READ_KEY_REQUIRED": "false",
    }


def announce_safe(client: redis.Redis) -> None:
    """What the broker publishes when the kill switch is released and a session is valid."""
    for msg in (
        KillSwitchReleased(released_by="test"),
        SessionValid(user_id="TEST01", expires_at=utcnow() + timedelta(days=1)),
    ):
        client.xadd(SYSTEM_EVENTS, Envelope.wrap(msg, source="broker").to_fields())


def started_engine(config: str, url: str) -> LiveEngine:
    """A started live engine for a strategy config's text, on the database at `url`, with
    Rs 1 crore of equity and its safety state known."""
    live = LiveEngine(
        load_text(config),
        EngineStore.open(url),
        initial_equity_rupees=Decimal("10000000"),
        safety_known=KNOWN,
    )
    live.start()
    return live
