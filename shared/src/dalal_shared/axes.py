"""Axis arithmetic for the charts people read: round tick values and rupees in Indian digit
grouping (10,50,000). Plain functions, shared by the backtest report and the equity-curve
page."""

from __future__ import annotations

import math
from collections.abc import Sequence

MINUS = "\N{MINUS SIGN}"


def format_inr(value: float, decimals: int = 0) -> str:
    """A number with Indian digit grouping: 1050000 -> "10,50,000", -1234.5 -> "-1,234.50" (with
    a typographic minus sign)."""
    text = f"{abs(value):.{decimals}f}"
    whole, dot, fraction = text.partition(".")
    if len(whole) > 3:
        head, tail = whole[:-3], whole[-3:]
        pairs = [head[max(0, i - 2) : i] for i in range(len(head), 0, -2)]
        whole = ",".join([*reversed(pairs), tail])
    negative = value < 0 and float(text) != 0
    return (MINUS if negative else "") + whole + dot + fraction


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values (steps of 1, 2, 2.5 or 5 x 10^n) from at or below `lo` to
    at or above `hi`; the first and last tick make a tidy axis domain."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("ticks need finite bounds")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def tick_decimals(ticks: Sequence[float]) -> int:
    """The fewest decimals (up to 4) that show every tick exactly."""
    for decimals in range(5):
        if all(abs(round(t, decimals) - t) < 1e-9 for t in ticks):
            return decimals
    return 4
