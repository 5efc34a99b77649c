"""Stream names of the bus (DESIGN.md, "Messages")."""

from __future__ import annotations

from typing import get_args

from dalal_shared.messages import Interval

MARKET_TICKS = "market.ticks"
ORDERS_COMMANDS = "orders.commands"
ORDERS_EVENTS = "orders.events"
PORTFOLIO_EVENTS = "portfolio.events"
SYSTEM_EVENTS = "system.events"
ENGINE_DECISIONS = "engine.decisions"  # RiskDecided: every signal taken or refused

BAR_INTERVALS: tuple[str, ...] = get_args(Interval)


def bars_stream(interval: str) -> str:
    if interval not in BAR_INTERVALS:
        raise ValueError(f"unknown bar interval {interval!r}; one of {', '.join(BAR_INTERVALS)}")
    return f"market.bars.{interval}"
