"""Vectorised indicators (numpy): computed once over a whole bar history, read per bar.

Every function takes float64 arrays and returns an array of the same length, NaN where the
indicator is not defined yet (too few bars), so `ind[i]` only ever uses bars 0..i.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]


def sma(values: Floats, bars: int) -> Floats:
    """Simple moving average of the last `bars` values."""
    out = np.full(len(values), np.nan)
    if bars <= 0 or len(values) < bars:
        return out
    csum = np.cumsum(np.insert(values.astype(np.float64), 0, 0.0))
    out[bars - 1 :] = (csum[bars:] - csum[:-bars]) / bars
    return out


def ema(values: Floats, bars: int) -> Floats:
    """Exponential moving average (alpha 2/(bars+1)) seeded with the SMA of the first bars."""
    out = np.full(len(values), np.nan)
    if bars <= 0 or len(values) < bars:
        return out
    alpha = 2.0 / (bars + 1)
    prev = float(np.mean(values[:bars]))
    smoothed = [prev]
    # recursive by nature: one pass over plain floats (numpy scalar access is slow one by one)
    for value in values[bars:].tolist():
        prev = prev + alpha * (value - prev)
        smoothed.append(prev)
    out[bars - 1 :] = smoothed
    return out


def true_range(high: Floats, low: Floats, close: Floats) -> Floats:
    prev_close = np.roll(close, 1)
    prev_close[0] = close[0] if len(close) else np.nan
    return np.maximum(high - low, np.maximum(np.abs(high - prev_close), np.abs(low - prev_close)))


def atr(high: Floats, low: Floats, close: Floats, bars: int) -> Floats:
    """Average true range with Wilder's smoothing, seeded with the mean of the first `bars`."""
    tr = true_range(high, low, close)
    out = np.full(len(tr), np.nan)
    if bars <= 0 or len(tr) < bars:
        return out
    prev = float(np.mean(tr[:bars]))
    smoothed = [prev]
    for value in tr[bars:].tolist():  # plain floats: the same IEEE arithmetic, no numpy scalars
        prev = (prev * (bars - 1) + value) / bars
        smoothed.append(prev)
    out[bars - 1 :] = smoothed
    return out


def highest(values: Floats, bars: int) -> Floats:
    """Highest of the last `bars` values, the current one included."""
    out = np.full(len(values), np.nan)
    if bars <= 0 or len(values) < bars:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(values, bars)
    out[bars - 1 :] = windows.max(axis=1)
    return out


def shift(values: Floats, bars: int = 1) -> Floats:
    """values[i - bars] at i (NaN for the first `bars`)."""
    out = np.full(len(values), np.nan)
    if bars < len(values):
        out[bars:] = values[: len(values) - bars]
    return out


def crossed_above(fast: Floats, slow: Floats) -> NDArray[np.bool_]:
    """True at i when fast > slow at i and fast <= slow at i - 1 (NaN never crosses)."""
    with np.errstate(invalid="ignore"):
        now = fast > slow
        before = shift(fast) <= shift(slow)
    return now & before


def crossed_below(fast: Floats, slow: Floats) -> NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        now = fast < slow
        before = shift(fast) >= shift(slow)
    return now & before
