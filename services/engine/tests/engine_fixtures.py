"""Shared helpers of the engine tests: real INFY daily bars as Bar messages."""

from __future__ import annotations

import csv
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

from dalal_shared.messages import Bar
from dalal_shared.timeutil import IST

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
