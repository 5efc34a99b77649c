"""Vectorised indicators (numpy): computed once over a whole bar history, read per bar.

Every function takes float64 arrays and returns an array of the same length, NaN where the
indicator is not defined yet (too few bars), so `ind[i]` only ever uses bars 0..i.

Exact where ties matter. NSE prices sit on a Rs 0.05 grid, so two moving averages are often
exactly equal; a float running sum makes them differ by 1e-12 either way and moves a cross a
bar. `sma` therefore sums whole paise (int64, exact) and divides once: the result is the
correctly rounded value of the exact average, so equal averages give equal floats whatever
the window or the series' start. `sma_crosses` decides crosses on the integers themselves
(fast_sum * slow_bars against slow_sum * fast_bars). Tie rule, everywhere: a cross above at
bar i needs fast > slow at i and fast <= slow at i - 1 (so equal now is no cross; touching and
then rising above is one); a cross below mirrors it. Series off the paisa grid (derived values)
fall back to float sums.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]


Ints = NDArray[np.int64]


def paise(values: Floats) -> Ints | None:
    """`values` (rupees) as whole paise when every one is on the paisa grid, else None.
    Inside `continuing`, the same array asked again (a strategy's SMAs and their crosses all
    read the closes) is converted once."""
    current = _MEMO.get()
    if current is not None:
        kept = current[0].get("paise")
        if kept is not None and kept[0] is values:  # the very object (kept alive with it)
            return kept[1]  # type: ignore[no-any-return]
    scaled = np.asarray(values, dtype=np.float64) * 100
    whole = np.rint(scaled)
    if len(scaled) and not np.all(np.abs(scaled - whole) < 1e-6):
        out = None
    else:
        out = whole.astype(np.int64)
        out.flags.writeable = False  # shared by the callers: none may change it
    if current is not None:
        current[0]["paise"] = (values, out)
    return out


def rolling_sum(values: Ints, bars: int) -> Ints:
    """Sums of each `bars` consecutive integers (len(values) - bars + 1 of them), exact."""
    csum = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
    return csum[bars:] - csum[:-bars]


def sma(values: Floats, bars: int) -> Floats:
    """Simple moving average of the last `bars` values (exact sums on the paisa grid).
    Inside `continuing`, on the paisa grid, only the bars after those of the previous call
    are summed (each window's sum is exact, so the values are the same bit for bit)."""
    slot = _slot("sma", bars)  # first: a call too early for values still has its place
    out = np.full(len(values), np.nan)
    if bars <= 0 or len(values) < bars:
        return out
    whole = paise(values)
    if whole is None:  # float sums depend on where they start: always from the first bar
        csum = np.cumsum(np.insert(values.astype(np.float64), 0, 0.0))
        out[bars - 1 :] = (csum[bars:] - csum[:-bars]) / bars
        return out
    start = max(_resume(slot, values, out, bars)[0], bars - 1)
    # one division of two exact integers (both < 2**53): the correctly rounded average
    out[start:] = rolling_sum(whole[start - bars + 1 :], bars) / float(bars * 100)
    _keep(slot, values, out)
    return out


def sma_crosses(
    values: Floats, fast_bars: int, slow_bars: int
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(crossed above, crossed below) of the `fast_bars` SMA against the `slow_bars` SMA,
    decided exactly (integer paise; see the module docstring for the tie rule). Off the
    paisa grid, the float SMAs' `crossed_above` / `crossed_below`."""
    slot = _slot(f"crosses/{slow_bars}", fast_bars)  # first, as in `sma`
    n = len(values)
    whole = paise(values)
    if whole is None or fast_bars <= 0 or slow_bars <= 0:
        fast, slow = sma(values, fast_bars), sma(values, slow_bars)
        return crossed_above(fast, slow), crossed_below(fast, slow)
    above = np.zeros(n, dtype=bool)
    below = np.zeros(n, dtype=bool)
    first = max(fast_bars, slow_bars) - 1  # first bar where both are defined
    if n <= first + 1:
        return above, below
    # the sign of fast - slow is known up to the previous call's last bar (inside
    # `continuing`): only the bars after it are decided; else from the first bar
    start, before = _resume_crosses(slot, values, above, below, first)
    fast_sum = rolling_sum(whole[start - fast_bars + 1 :], fast_bars)
    slow_sum = rolling_sum(whole[start - slow_bars + 1 :], slow_bars)
    # sign of fast - slow = sign of fast_sum * slow_bars - slow_sum * fast_bars (int64 exact)
    diff = np.sign(fast_sum * slow_bars - slow_sum * fast_bars)
    if before is not None:  # the sign at start - 1
        diff = np.concatenate(([before], diff))
        start -= 1
    above[start + 1 :] = (diff[1:] > 0) & (diff[:-1] <= 0)
    below[start + 1 :] = (diff[1:] < 0) & (diff[:-1] >= 0)
    if slot is not None:
        memo, key = slot
        memo[key] = (np.array(values, dtype=np.float64), above.copy(), below.copy(), diff[-1])
    return above, below


def _resume_crosses(
    slot: tuple[dict[Any, Any], tuple[str, int, int]] | None,
    values: Floats,
    above: NDArray[np.bool_],
    below: NDArray[np.bool_],
    first: int,
) -> tuple[int, Any]:
    """(first bar to decide, the sign of fast - slow at the bar before it or None); the
    crosses before it copied from the previous call on the same earlier bars (bit for bit)."""
    if slot is not None:
        memo, key = slot
        kept = memo.get(key)
        if kept is not None:
            old_in, old_above, old_below, last_sign = kept
            n = len(old_in)
            if first + 1 < n <= len(values) and np.array_equal(
                np.asarray(values[:n], dtype=np.float64).view(np.int64), old_in.view(np.int64)
            ):
                above[:n], below[:n] = old_above, old_below
                return n, last_sign
    return first, None


def ema(values: Floats, bars: int) -> Floats:
    """Exponential moving average (alpha 2/(bars+1)) seeded with the SMA of the first bars."""
    slot = _slot("ema", bars)  # first: a call too early for values still has its place
    out = np.full(len(values), np.nan)
    if bars <= 0 or len(values) < bars:
        return out
    alpha = 2.0 / (bars + 1)
    start, prev = _resume(slot, values, out, bars)
    smoothed = [] if start else [prev := float(np.mean(values[:bars]))]
    # recursive by nature: one pass over plain floats (numpy scalar access is slow one by one)
    for value in values[max(start, bars) :].tolist():
        prev = prev + alpha * (value - prev)
        smoothed.append(prev)
    out[max(start, bars - 1) :] = smoothed
    _keep(slot, values, out)
    return out


# ------------------------------------------------------------------ continuing a recursion
# The live engine's history grows one bar at a time from the same first bar, and a strategy's
# indicators are computed over all of it at every bar (so they match the backtest's). For the
# moving averages that costs numpy passes; for the recursive ones (EMA, Wilder's ATR) a Python
# loop over every bar, ~3 ms at 20,000 bars, per symbol and bar. Inside `continuing(memo)` they
# pick the recursion up where the same series stopped at the previous bar instead.

_MEMO: contextvars.ContextVar[tuple[dict[Any, Any], list[int]] | None] = contextvars.ContextVar(
    "indicator_memo", default=None
)


@contextmanager
def continuing(memo: dict[Any, Any]) -> Iterator[None]:
    """Inside: `ema` and `atr` continue from what they computed, in `memo`, over the earlier
    bars of the same series (the live engine keeps one memo per strategy instance and symbol).
    The values are the same bit for bit: the same arithmetic in the same order from the same
    start; when any earlier input differs in any bit (the history was cut back or reloaded, a
    bar was corrected, other parameters), the recursion runs from the first bar again. Each
    call of a recursive indicator has its own slot, by kind, window and place in the call
    order."""
    token = _MEMO.set((memo, [0]))
    try:
        yield
    finally:
        _MEMO.reset(token)


def _slot(kind: str, bars: int) -> tuple[dict[Any, Any], tuple[str, int, int]] | None:
    current = _MEMO.get()
    if current is None:
        return None
    memo, calls = current
    calls[0] += 1
    return memo, (kind, bars, calls[0])


def _resume(
    slot: tuple[dict[Any, Any], tuple[str, int, int]] | None, values: Floats, out: Floats, bars: int
) -> tuple[int, float]:
    """(index to continue from, the recursion's value before it), the outputs before that
    index already copied into `out`; (0, nan) when there is nothing to continue from."""
    if slot is None:
        return 0, float("nan")
    memo, key = slot
    kept = memo.get(key)
    if kept is None:
        return 0, float("nan")
    old_in, old_out = kept
    n = len(old_in)
    if n < bars or n > len(values):
        return 0, float("nan")
    # bit for bit (as integers: -0.0 is not 0.0, a NaN equals itself), without copies
    if not np.array_equal(
        np.asarray(values[:n], dtype=np.float64).view(np.int64), old_in.view(np.int64)
    ):
        return 0, float("nan")
    out[:n] = old_out
    return n, float(old_out[-1])


def _keep(
    slot: tuple[dict[Any, Any], tuple[str, int, int]] | None, values: Floats, out: Floats
) -> None:
    if slot is not None:
        memo, key = slot
        memo[key] = (np.array(values, dtype=np.float64), out.copy())


def true_range(high: Floats, low: Floats, close: Floats) -> Floats:
    prev_close = np.roll(close, 1)
    prev_close[0] = close[0] if len(close) else np.nan
    return np.maximum(high - low, np.maximum(np.abs(high - prev_close), np.abs(low - prev_close)))


def atr(high: Floats, low: Floats, close: Floats, bars: int) -> Floats:
    """Average true range with Wilder's smoothing, seeded with the mean of the first `bars`."""
    slot = _slot("atr", bars)  # first: a call too early for values still has its place
    tr = true_range(high, low, close)
    out = np.full(len(tr), np.nan)
    if bars <= 0 or len(tr) < bars:
        return out
    start, prev = _resume(slot, tr, out, bars)
    smoothed = [] if start else [prev := float(np.mean(tr[:bars]))]
    keep, weight = smoothed.append, bars - 1  # hoisted: this loop runs once per bar
    # plain floats: the same IEEE arithmetic, no numpy scalars
    for value in tr[max(start, bars) :].tolist():
        prev = (prev * weight + value) / bars
        keep(prev)
    out[max(start, bars - 1) :] = smoothed
    _keep(slot, tr, out)
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
