"""Prometheus metrics of the engine (low-cardinality labels only: no symbols, no order ids)."""

from __future__ import annotations

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
RUNNING = Gauge("dalal_engine_running", "1 while the live loop trades")
