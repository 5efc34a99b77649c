"""What the indicator tests compute: every indicator that continues from the previous bar."""

from __future__ import annotations

import numpy as np

from dalal_engine import indicators as ta


def everything(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> list[np.ndarray]:
    """Every indicator that goes on from the previous bar, the way the strategies call them."""
    return [
        ta.sma(close, 5),
        ta.sma(close, 20),
        *ta.sma_crosses(close, 5, 20),
        ta.ema(close, 10),
        ta.atr(high, low, close, 14),
        ta.highest(high, 20),
        ta.atr(high, low, close, 5),
    ]
