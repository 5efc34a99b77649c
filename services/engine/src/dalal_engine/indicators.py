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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dalal_engine import indicator_steps as steps

Floats = NDArray[np.float64]


Ints = NDArray[np.int64]


def paise(values: Floats) -> Ints | None:
    """`values` (rupees) as whole paise when every one is on the paisa grid, else None.
    Inside `continuing`, the same array asked again (a strategy's SMAs and their crosses all
    read the closes) is converted once; a view of an append-only column (`continuing`'s
    `append_only`) only has its values after those of the previous bar converted."""
    current = _MEMO.get()
    if current is None:
        return _to_paise(values)
    kept = current[0].get("paise")
    if kept is not None and kept[0] is values:  # the very object (kept alive with it)
        return kept[1]  # type: ignore[no-any-return]
    place = _place(values)
    grown = current[0].get("paise/grown")
    if place is not None and grown is not None and place.same(grown[0]) and grown[1] <= len(values):
        out = _grow_paise(current[0], grown, values)
    else:
        out = _to_paise(values)
        if place is not None and out is not None:
            current[0]["paise/grown"] = (place, len(values), out)
        else:
            current[0].pop("paise/grown", None)
    current[0]["paise"] = (values, out)
    return out


def _to_paise(values: Floats) -> Ints | None:
    scaled = np.asarray(values, dtype=np.float64) * 100
    whole = np.rint(scaled)
    if len(scaled) and not np.all(np.abs(scaled - whole) < 1e-6):
        return None
    out = whole.astype(np.int64)
    out.flags.writeable = False  # shared by the callers: none may change it
    return out


def _grow_paise(memo: dict[Any, Any], grown: tuple[Any, int, Ints], values: Floats) -> Ints | None:
    """The paise of `values`, a longer view at the same place as the one converted before:
    its new values converted and appended (the earlier ones never change there)."""
    place, n, before = grown
    tail = _to_paise(values[n:])
    if tail is None:  # a value off the grid: no paise for this series from here on
        memo.pop("paise/grown", None)
        return None
    buffer = before.base  # ours, writable; None: the first conversion's own (read-only) array
    if buffer is None or len(values) > len(buffer):  # room for twice as many
        bigger = np.empty(max(64, 2 * len(values)), dtype=np.int64)
        bigger[:n] = before
        buffer = bigger
    buffer[n : len(values)] = tail
    out = buffer[: len(values)]
    out.flags.writeable = False
    memo["paise/grown"] = (place, len(values), out)
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
    stepped = _step(slot, (values,))
    if stepped is not None:
        return stepped  # type: ignore[no-any-return]
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
    grid = whole
    _start_step(slot, (values,), lambda: steps.SmaStep(bars, grid, out))
    return out


def sma_crosses(
    values: Floats, fast_bars: int, slow_bars: int
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(crossed above, crossed below) of the `fast_bars` SMA against the `slow_bars` SMA,
    decided exactly (integer paise; see the module docstring for the tie rule). Off the
    paisa grid, the float SMAs' `crossed_above` / `crossed_below`."""
    slot = _slot(f"crosses/{slow_bars}", fast_bars)  # first, as in `sma`
    stepped = _step(slot, (values,))
    if stepped is not None:
        return stepped  # type: ignore[no-any-return]
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
        memo[key] = (_seen(values), above.copy(), below.copy(), diff[-1])
        sign, grid = int(diff[-1]), whole
        _start_step(
            slot,
            (values,),
            lambda: steps.CrossStep(fast_bars, slow_bars, grid, above, below, sign),
        )
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
            seen, old_above, old_below, last_sign = kept
            n = len(old_above)
            if first + 1 < n <= len(values) and _same_start(seen, n, values):
                above[:n], below[:n] = old_above, old_below
                return n, last_sign
    return first, None


def ema(values: Floats, bars: int) -> Floats:
    """Exponential moving average (alpha 2/(bars+1)) seeded with the SMA of the first bars."""
    slot = _slot("ema", bars)  # first: a call too early for values still has its place
    stepped = _step(slot, (values,))
    if stepped is not None:
        return stepped  # type: ignore[no-any-return]
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
    _start_step(slot, (values,), lambda: steps.EmaStep(bars, out))
    return out


# ------------------------------------------------------------------ continuing a recursion
# The live engine's history grows one bar at a time from the same first bar, and a strategy's
# indicators are computed over all of it at every bar (so they match the backtest's). For the
# moving averages that costs numpy passes; for the recursive ones (EMA, Wilder's ATR) a Python
# loop over every bar, ~3 ms at 20,000 bars, per symbol and bar. Inside `continuing(memo)` they
# pick the recursion up where the same series stopped at the previous bar instead.

# the block's memo, the calls so far, its append-only buffers, and the places found in it by
# id of the array (the array kept beside its place, alive)
_Block = tuple[
    dict[Any, Any],
    list[int],
    tuple[NDArray[Any], ...],
    dict[int, tuple[NDArray[Any], "_Place | None"]],
]
_MEMO: contextvars.ContextVar[_Block | None] = contextvars.ContextVar(
    "indicator_memo", default=None
)


@contextmanager
def continuing(memo: dict[Any, Any], append_only: Sequence[NDArray[Any]] = ()) -> Iterator[None]:
    """Inside: `ema` and `atr` continue from what they computed, in `memo`, over the earlier
    bars of the same series (the live engine keeps one memo per strategy instance and symbol).
    The values are the same bit for bit: the same arithmetic in the same order from the same
    start; when any earlier input differs in any bit (the history was cut back or reloaded, a
    bar was corrected, other parameters), the recursion runs from the first bar again. Each
    call of a recursive indicator has its own slot, by kind, window and place in the call
    order.

    `append_only`: buffers whose values, once written, never change (the live engine's
    columns, `BarColumns`: new bars are written after the last, a changed history gets new
    buffers). An input that is a view of one, at the same place as at the previous bar, holds
    the same earlier values without comparing them or keeping a copy: the work of a bar is
    then the new bars' only, however long the history (at 20,000 bars the comparisons, copies
    and conversions of the whole series were most of a bar's indicators)."""
    token = _MEMO.set((memo, [0], tuple(append_only), {}))
    try:
        yield
    finally:
        _MEMO.reset(token)


class _Place:
    """Where a view of an append-only buffer starts: the buffer (kept alive here, so it is
    never another one at the same address) and the view's first byte. A later view at the same
    place holds, over the earlier view's length, the very values the earlier one held."""

    __slots__ = ("address", "buffer")

    def __init__(self, buffer: NDArray[Any], address: int) -> None:
        self.buffer, self.address = buffer, address

    def same(self, other: _Place | None) -> bool:
        return other is not None and other.buffer is self.buffer and other.address == self.address


def _place(values: NDArray[Any]) -> _Place | None:
    """The place of `values` when it is a contiguous float64 view of one of the block's
    append-only buffers; else None (then it is compared value by value)."""
    current = _MEMO.get()
    if current is None or not current[2]:
        return None
    found = current[3].get(id(values))
    if found is not None and found[0] is values:  # asked before in this block (the closes, say)
        return found[1]
    place = None
    buffer = values.base
    if buffer is not None and values.dtype == np.float64 and values.strides == (8,):
        for trusted in (*current[2], *current[0].get("own", ())):
            if buffer is trusted:
                place = _Place(buffer, values.__array_interface__["data"][0])
                break
    current[3][id(values)] = (values, place)
    return place


# what an indicator keeps of its input to know, at the next bar, that the earlier values are
# the same: its place (a view of an append-only buffer) or a copy of them
_Seen = tuple[_Place] | Floats


def _seen(values: Floats) -> _Seen:
    """Its place when `values` has one, else a copy of it."""
    place = _place(values)
    return (place,) if place is not None else np.array(values, dtype=np.float64)


def _same_start(kept: _Seen, n: int, values: Floats) -> bool:
    """Whether `values` starts with the `n` values `kept` was taken of: at the same place, or
    equal bit for bit (as integers: -0.0 is not 0.0, a NaN equals itself) to the copy."""
    if isinstance(kept, tuple):
        return kept[0].same(_place(values))
    return len(kept) == n and bool(
        np.array_equal(np.asarray(values[:n], dtype=np.float64).view(np.int64), kept.view(np.int64))
    )


def _slot(kind: str, bars: int) -> tuple[dict[Any, Any], tuple[str, int, int]] | None:
    current = _MEMO.get()
    if current is None:
        return None
    memo, calls = current[0], current[1]
    calls[0] += 1
    return memo, (kind, bars, calls[0])


def _resume(
    slot: tuple[dict[Any, Any], tuple[str, int, int]] | None,
    values: Floats,
    out: Floats,
    bars: int,
) -> tuple[int, float]:
    """(index to continue from, the recursion's value before it), the outputs before that
    index already copied into `out`; (0, nan) when there is nothing to continue from."""
    if slot is None:
        return 0, float("nan")
    memo, key = slot
    kept = memo.get(key)
    if kept is None:
        return 0, float("nan")
    seen, old_out = kept
    n = len(old_out)
    if n < bars or n > len(values):
        return 0, float("nan")
    if not _same_start(seen, n, values):
        return 0, float("nan")
    out[:n] = old_out
    return n, float(old_out[-1])


def _keep(
    slot: tuple[dict[Any, Any], tuple[str, int, int]] | None,
    values: Floats,
    out: Floats,
) -> None:
    if slot is not None:
        memo, key = slot
        memo[key] = (_seen(values), out.copy())


def _step(
    slot: tuple[dict[Any, Any], tuple[str, int, int]] | None, inputs: tuple[Floats, ...]
) -> Any:
    """The call's outputs continued by its step state (`indicator_steps`) when every input is
    a view of an append-only column at the place the state was built on, a few bars longer;
    else None, and the vectorised pass runs (building the state again). A step that cannot
    go on (a NaN, a price off the grid) leaves no state behind."""
    if slot is None:
        return None
    memo, key = slot
    kept = memo.pop(("step", key), None)
    if kept is None:
        return None
    places, n, state = kept
    size = len(inputs[0])
    if not n < size <= n + steps.MAX_STEP:
        return None
    for value, place in zip(inputs, places, strict=True):
        if not place.same(_place(value)):
            return None
    out = state.step(*(value[n:size].tolist() for value in inputs))
    if out is not None:
        memo[("step", key)] = (places, size, state)
    return out


def _start_step(
    slot: tuple[dict[Any, Any], tuple[str, int, int]] | None,
    inputs: tuple[Floats, ...],
    build: Callable[[], Any],
) -> None:
    """After a vectorised pass over views of append-only columns: the state that continues
    the call at the next bars (`_step`)."""
    if slot is None:
        return
    places = [_place(value) for value in inputs]
    if None in places:
        return
    memo, key = slot
    memo[("step", key)] = (places, len(inputs[0]), build())


def true_range(high: Floats, low: Floats, close: Floats) -> Floats:
    prev_close = np.roll(close, 1)
    prev_close[0] = close[0] if len(close) else np.nan
    return np.maximum(high - low, np.maximum(np.abs(high - prev_close), np.abs(low - prev_close)))


def atr(high: Floats, low: Floats, close: Floats, bars: int) -> Floats:
    """Average true range with Wilder's smoothing, seeded with the mean of the first `bars`."""
    slot = _slot("atr", bars)  # first: a call too early for values still has its place
    stepped = _step(slot, (high, low, close))
    if stepped is not None:
        return stepped  # type: ignore[no-any-return]
    tr = _true_ranges(high, low, close)
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
    if np.isfinite(out[-1]) and np.isfinite(close[-1]):
        last = float(close[-1])
        _start_step(slot, (high, low, close), lambda: steps.AtrStep(bars, last, out))
    return out


def _true_ranges(high: Floats, low: Floats, close: Floats) -> Floats:
    """`true_range`. Inside `continuing`, for views of append-only columns at the places they
    had at the previous bar, only the new bars' ranges are computed, into an append-only
    buffer of the memo's own (the ATR then finds its input at the same place too)."""
    current = _MEMO.get()
    places = [_place(v) for v in (high, low, close)] if current is not None else []
    if current is None or None in places:
        return true_range(high, low, close)
    memo = current[0]
    kept = memo.get("tr")
    n, size = (kept[1], len(close)) if kept is not None else (0, len(close))
    if (
        kept is None
        or not all(k.same(p) for k, p in zip(kept[0], places, strict=True))
        or not 0 < n <= size
    ):
        return _own_ranges(memo, places, true_range(high, low, close))
    buffer: Floats = kept[2]
    if size > len(buffer):  # full: a new buffer (the old one's values stay as they were)
        return _own_ranges(memo, places, true_range(high, low, close))
    # the range of bar i needs the close of bar i - 1: from the last bar computed before
    buffer[n:size] = true_range(high[n - 1 : size], low[n - 1 : size], close[n - 1 : size])[1:]
    memo["tr"] = (places, size, buffer)
    out = buffer[:size]
    out.flags.writeable = False
    return out


def _own_ranges(memo: dict[Any, Any], places: list[Any], ranges: Floats) -> Floats:
    """`ranges` in a new buffer of the memo's own, with room to grow (append-only: written
    after its last value only, replaced when full or when the inputs change)."""
    size = len(ranges)
    buffer = np.empty(max(64, 2 * size), dtype=np.float64)
    buffer[:size] = ranges
    memo["tr"] = (places, size, buffer)
    memo["own"] = (buffer,)
    out = buffer[:size]
    out.flags.writeable = False
    return out


def highest(values: Floats, bars: int) -> Floats:
    """Highest of the last `bars` values, the current one included. Inside `continuing`, only
    the windows after those of the previous call are taken (the same values: a maximum does
    not depend on where the series starts)."""
    slot = _slot("highest", bars)  # first: a call too early for values still has its place
    stepped = _step(slot, (values,))
    if stepped is not None:
        return stepped  # type: ignore[no-any-return]
    out = np.full(len(values), np.nan)
    if bars <= 0 or len(values) < bars:
        return out
    start = max(_resume(slot, values, out, bars)[0], bars - 1)
    windows = np.lib.stride_tricks.sliding_window_view(values[start - bars + 1 :], bars)
    out[start:] = windows.max(axis=1)
    _keep(slot, values, out)
    if not np.isnan(values[len(values) - bars :]).any():
        _start_step(slot, (values,), lambda: steps.HighestStep(bars, values, out))
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
