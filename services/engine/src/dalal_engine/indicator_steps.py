"""Indicators continued by a few bars' plain arithmetic: the live engine's step.

At a minute's close the live engine asks each traded symbol's indicators over its whole
history, one bar longer than at the previous minute (`indicators.continuing`). The vectorised
functions, continued from the previous bar, still made ~15 numpy calls each (allocate the
output, copy the earlier values into it, a window's cumulative sum, a copy kept for the next
bar): ~0.2 ms per symbol for `sma_cross`, most of the engine's step before the order. Here
each call keeps what the next bar needs (a window of paise and its sums, the last average, the
last close) and its outputs in buffers of its own; a bar is then a few Python operations on
floats and integers, and the result is a copy of the buffer's first n values.

The values are the same bit for bit as the vectorised functions': the same IEEE operations in
the same order (an int64 window sum is a Python int, the division is the same correctly
rounded one, Wilder's and the EMA's recursions are the loops `indicators` runs, a true range
is the same maximum of the same differences). A step is only taken on inputs that are views
of append-only columns at the same place as before (`indicators._Place`), so the earlier
values are the ones the state was built from; anything else (a NaN, a price off the paisa
grid, more than `MAX_STEP` new bars) answers None and the vectorised function runs instead,
building the state again from its result.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]

# more new bars than this at once (an engine catching up): the vectorised pass is as quick
MAX_STEP = 32


class _Buffer:
    """An output column with room to grow; `take(n)` is a copy of its first n values (the
    caller's to keep or change: the buffer itself is never handed out)."""

    __slots__ = ("data", "n")

    def __init__(self, values: NDArray[Any]) -> None:
        n = len(values)
        self.data = np.empty(max(64, 2 * n), dtype=values.dtype)
        self.data[:n] = values
        self.n = n

    def extend(self, values: list[Any]) -> None:
        n, k = self.n, len(values)
        if n + k > len(self.data):
            bigger = np.empty(2 * (n + k), dtype=self.data.dtype)
            bigger[:n] = self.data[:n]
            self.data = bigger
        self.data[n : n + k] = values
        self.n = n + k

    def take(self) -> NDArray[Any]:
        return self.data[: self.n].copy()


def _paise(value: float) -> int | None:
    """`value` rupees in whole paise, as `indicators._to_paise` converts (x100, rounded half
    to even, within 1e-6 of the grid); None off the grid or not a number."""
    scaled = value * 100
    if not math.isfinite(scaled):
        return None
    whole = round(scaled)
    return whole if abs(scaled - whole) < 1e-6 else None


class SmaStep:
    """`indicators.sma` on the paisa grid: the last `bars` closes in paise and their sum."""

    __slots__ = ("bars", "out", "total", "window")

    def __init__(self, bars: int, whole: NDArray[np.int64], out: Floats) -> None:
        self.bars = bars
        self.window: deque[int] = deque(whole[len(whole) - bars :].tolist(), maxlen=bars)
        self.total = sum(self.window)
        self.out = _Buffer(out)

    def step(self, new: list[float]) -> Floats | None:
        window, total, divisor = self.window, self.total, float(self.bars * 100)
        averages = []
        for value in new:
            p = _paise(value)
            if p is None:
                return None
            total += p - window[0]  # the value leaving the window
            window.append(p)
            averages.append(total / divisor)
        self.total = total
        self.out.extend(averages)
        return self.out.take()


class CrossStep:
    """`indicators.sma_crosses` on the paisa grid: both windows' sums and the last sign of
    fast - slow (decided on the integers, as there)."""

    __slots__ = (
        "above",
        "below",
        "fast_bars",
        "fast_sum",
        "sign",
        "slow_bars",
        "slow_sum",
        "window",
    )

    def __init__(
        self,
        fast_bars: int,
        slow_bars: int,
        whole: NDArray[np.int64],
        above: Bools,
        below: Bools,
        sign: int,
    ) -> None:
        self.fast_bars, self.slow_bars = fast_bars, slow_bars
        longest = max(fast_bars, slow_bars)
        self.window: deque[int] = deque(whole[len(whole) - longest :].tolist(), maxlen=longest)
        tail = list(self.window)
        self.fast_sum = sum(tail[len(tail) - fast_bars :])
        self.slow_sum = sum(tail[len(tail) - slow_bars :])
        self.sign = sign
        self.above, self.below = _Buffer(above), _Buffer(below)

    def step(self, new: list[float]) -> tuple[Bools, Bools] | None:
        window, fast, slow, sign = self.window, self.fast_sum, self.slow_sum, self.sign
        fb, sb = self.fast_bars, self.slow_bars
        longest = len(window)
        above, below = [], []
        for value in new:
            p = _paise(value)
            if p is None:
                return None
            # the values leaving each window (the deque holds the longest window)
            fast += p - window[longest - fb]
            slow += p - window[longest - sb]
            window.append(p)
            diff = fast * sb - slow * fb
            now = (diff > 0) - (diff < 0)
            above.append(now > 0 and sign <= 0)
            below.append(now < 0 and sign >= 0)
            sign = now
        self.fast_sum, self.slow_sum, self.sign = fast, slow, sign
        self.above.extend(above)
        self.below.extend(below)
        return self.above.take(), self.below.take()


class AtrStep:
    """`indicators.atr`: the last close and the last average (Wilder's recursion)."""

    __slots__ = ("bars", "close", "out", "prev")

    def __init__(self, bars: int, close: float, out: Floats) -> None:
        self.bars, self.close, self.prev = bars, close, float(out[-1])
        self.out = _Buffer(out)

    def step(self, high: list[float], low: list[float], close: list[float]) -> Floats | None:
        prev_close, prev, bars = self.close, self.prev, self.bars
        weight = bars - 1
        averages = []
        for h, lo, c in zip(high, low, close, strict=True):
            if not (math.isfinite(h) and math.isfinite(lo) and math.isfinite(c)):
                return None  # numpy's maximum propagates a NaN; Python's max need not
            tr = max(h - lo, max(abs(h - prev_close), abs(lo - prev_close)))
            prev = (prev * weight + tr) / bars
            averages.append(prev)
            prev_close = c
        self.close, self.prev = prev_close, prev
        self.out.extend(averages)
        return self.out.take()


class EmaStep:
    """`indicators.ema`: the last average."""

    __slots__ = ("alpha", "out", "prev")

    def __init__(self, bars: int, out: Floats) -> None:
        self.alpha, self.prev = 2.0 / (bars + 1), float(out[-1])
        self.out = _Buffer(out)

    def step(self, new: list[float]) -> Floats | None:
        prev, alpha = self.prev, self.alpha
        averages = []
        for value in new:
            prev = prev + alpha * (value - prev)
            averages.append(prev)
        self.prev = prev
        self.out.extend(averages)
        return self.out.take()


class HighestStep:
    """`indicators.highest`: the last `bars` values."""

    __slots__ = ("out", "window")

    def __init__(self, bars: int, values: Floats, out: Floats) -> None:
        """`values`' last `bars` must be numbers (`indicators.highest` checks)."""
        self.window: deque[float] = deque(values[len(values) - bars :].tolist(), maxlen=bars)
        self.out = _Buffer(out)

    def step(self, new: list[float]) -> Floats | None:
        window = self.window
        highs = []
        for value in new:
            if value != value:  # NaN: numpy's max propagates it, Python's need not
                return None
            window.append(value)
            high = max(window)
            if high == 0:  # 0.0 or -0.0: which of equal zeros numpy keeps is its own
                return None
            highs.append(high)
        self.out.extend(highs)
        return self.out.take()
