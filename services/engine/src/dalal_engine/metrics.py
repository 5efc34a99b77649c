"""Prometheus metrics of the engine (low-cardinality labels only: no symbols, no order ids)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge

DECISIONS = Counter(
    "dalal_engine_risk_decisions_total",
    "Risk decisions on strategy signals, by outcome ('ok' or the refusal reason)",
    ["strategy", "action", "reason"],
)
ORDERS = Counter(
    "dalal_engine_orders_emitted_total",
    "PlaceOrder commands the live loop emitted",
    ["strategy", "side"],
)
KILL_SWITCH = Gauge("dalal_engine_kill_switch", "1 while the kill switch is engaged")
RUNNING = Gauge("dalal_engine_running", "1 while the live loop runs (entries and exits)")
PAUSED = Gauge(
    "dalal_engine_paused", "1 while the live loop is paused (no entries; exits, stops, targets)"
)
SAFETY_KNOWN = Gauge(
    "dalal_engine_safety_state_known",
    "1 once kill switch, session and equity came from their owners (0: entries refused)",
)
STALE_BARS = Counter(
    "dalal_engine_stale_bars_total",
    "Bars too old on the market clock to trade on: used for the indicators only",
    ["strategy"],
)
DEFERRED = Counter(
    "dalal_engine_deferred_decisions_total",
    "Bar decisions deferred until the symbol's order in flight settles",
    ["strategy"],
)
DAILY_PNL = Gauge(
    "dalal_engine_daily_pnl_rupees",
    "Equity change since the IST day's first mark, as the risk manager sees it",
    ["strategy"],
)
DAILY_LOSS_LIMIT = Gauge(
    "dalal_engine_daily_loss_limit_rupees",
    "The configured maximum daily loss (positive rupees); entries halt once reached",
    ["strategy"],
)
HALTED = Gauge(
    "dalal_engine_halted",
    "1 while entries are halted for the rest of the IST day by the daily-loss limit",
    ["strategy"],
)


def observe_risk(strategy: str, daily_pnl: float, limit: float, halted: bool) -> None:
    pnl, loss_limit, halt = _risk_gauges(strategy)
    pnl.set(daily_pnl)
    loss_limit.set(limit)
    halt.set(1 if halted else 0)


@lru_cache(maxsize=1024)
def _risk_gauges(strategy: str) -> tuple[Any, Any, Any]:
    """A strategy's three risk gauges (found once: the live loop sets them twice a decided
    bar, and finding a labelled child costs more than setting it)."""
    return (
        DAILY_PNL.labels(strategy),
        DAILY_LOSS_LIMIT.labels(strategy),
        HALTED.labels(strategy),
    )


CANCELS = Counter(
    "dalal_engine_cancels_emitted_total",
    "CancelOrder commands the live loop emitted, by why (stale, superseded)",
    ["reason"],
)
