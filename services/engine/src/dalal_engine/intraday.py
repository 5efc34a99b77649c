"""Intraday (MIS) positions end with their session: Kite squares MIS positions off from 15:20
IST (and charges for it), so an MIS instance on intraday bars exits by itself at its
`mis_exit_at` (15:15 IST by default) and opens nothing new after it. The live loop and the
backtester apply the same rule to a bar's signals, at the instant the bar's orders reach the
market, so they decide the same. Plain domain code."""

from __future__ import annotations

from datetime import datetime, time

import numpy as np
from numpy.typing import NDArray

from dalal_engine.strategy import Action, Signal
from dalal_shared.timeutil import to_ist

SQUARE_OFF_LEG = "Q"  # the engine's own exit of an MIS position before the broker's cut-off
KITE_MIS_CUTOFF = time(15, 20)
IST_OFFSET_SECONDS = 5 * 3600 + 30 * 60


def session_end(
    *,
    product: str,
    interval: str,
    exit_at: time,
    order_at: datetime,
    held: int,
    signals: list[Signal],
) -> list[Signal]:
    """The bar's signals with the rule applied: unchanged for CNC and daily bars; from
    `exit_at` (IST) on the day the orders reach the market, no entry, and a held position
    exits whole (leg `Q`) unless the strategy exits it itself."""
    if product != "MIS" or interval == "day":
        return signals
    ist = to_ist(order_at)
    if ist.time() < exit_at:
        return signals
    kept = [s for s in signals if s.action is not Action.ENTER]
    if held <= 0 or any(s.action is Action.EXIT for s in kept):
        return kept
    return [
        Signal(
            Action.EXIT,
            SQUARE_OFF_LEG,
            f"square-off at {exit_at:%H:%M} IST (MIS)",
            reference_price=next((s.reference_price for s in signals), None),
        )
    ]


def late_bars(starts: NDArray[np.int64], bar_seconds: int, exit_at: time) -> NDArray[np.bool_]:
    """Which intraday bars (epoch-second starts) send their orders at or after `exit_at` IST
    (an order reaches the market at its bar's end): the bars where `session_end` acts, for
    the backtester, which visits only the bars where something may happen."""
    ist_seconds = (starts + bar_seconds + IST_OFFSET_SECONDS) % 86_400
    return ist_seconds >= exit_at.hour * 3600 + exit_at.minute * 60 + exit_at.second
