"""Kite's candle intervals and the facts tied to them (Kite Connect v3)."""

from __future__ import annotations

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
