"""Kite's candle intervals and the facts tied to them (Kite Connect v3)."""

from __future__ import annotations

from typing import Literal

# A candle interval as Kite names it (the message contracts' and strategy configs' type).
Interval = Literal[
    "minute", "3minute", "5minute", "10minute", "15minute", "30minute", "60minute", "day"
]

# Minutes in one candle; a day is one 09:15-15:30 NSE session (375 minutes).
INTERVAL_MINUTES: dict[str, int] = {
    "minute": 1,
    "3minute": 3,
    "5minute": 5,
    "10minute": 10,
    "15minute": 15,
    "30minute": 30,
    "60minute": 60,
    "day": 375,
}

# The longest span (days) one historical request may cover, per interval (Kite's limits).
SPAN_DAYS: dict[str, int] = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}
