"""Indicator arithmetic: SMA crosses on a Rs 0.05 price grid are decided exactly. Property
tests (hypothesis) against a `fractions.Fraction` reference, on series drawn from a few grid
prices so that the two averages are often exactly equal (the case float sums get wrong)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dalal_engine import indicators as ta


def reference_crosses(ticks: list[int], fast: int, slow: int) -> tuple[list[bool], list[bool]]:
    """Crosses of exact averages (prices are `ticks` x Rs 0.05): above at i when fast > slow
    at i and fast <= slow at i - 1; below mirrored; equal now is never a cross."""
    prices = [Fraction(t, 20) for t in ticks]

    def avg(i: int, n: int) -> Fraction | None:
        return sum(prices[i - n + 1 : i + 1], Fraction(0)) / n if i >= n - 1 else None

    above, below = [False] * len(prices), [False] * len(prices)
    for i in range(1, len(prices)):
        f0, s0, f1, s1 = avg(i - 1, fast), avg(i - 1, slow), avg(i, fast), avg(i, slow)
        if None in (f0, s0, f1, s1):
            continue
        above[i] = f1 > s1 and f0 <= s0
        below[i] = f1 < s1 and f0 >= s0
    return above, below


grid_series = st.tuples(
    st.integers(min_value=2_000, max_value=200_000),  # base price in ticks: Rs 100 .. 10,000
    st.lists(st.integers(min_value=-2, max_value=2), min_size=2, max_size=120),
).map(lambda t: [t[0] + x for x in t[1]])


@settings(max_examples=300, deadline=None)
@given(ticks=grid_series, fast=st.integers(1, 8), extra=st.integers(1, 25))
def test_sma_cross_equals_the_fraction_reference(ticks: list[int], fast: int, extra: int):
    slow = fast + extra
    close = np.array([t * 0.05 for t in ticks])  # the float prices the engine holds
    up, down = ta.sma_crosses(close, fast, slow)
    ref_up, ref_down = reference_crosses(ticks, fast, slow)
    assert up.tolist() == ref_up
    assert down.tolist() == ref_down
    # the float SMAs themselves are correctly rounded: equal exact averages are equal floats
    f, s = ta.sma(close, fast), ta.sma(close, slow)
    assert ta.crossed_above(f, s).tolist() == ref_up
    assert ta.crossed_below(f, s).tolist() == ref_down


@settings(max_examples=100, deadline=None)
@given(ticks=grid_series, bars=st.integers(1, 30))
def test_sma_does_not_depend_on_where_the_series_starts(ticks: list[int], bars: int):
    """The live engine holds a different stretch of history than the backtester: the same
    bar's SMA is the same float either way."""
    close = np.array([t * 0.05 for t in ticks])
    whole = ta.sma(close, bars)
    for start in range(0, len(close), 7):
        part = ta.sma(close[start:], bars)
        tail = whole[start:]
        defined = ~np.isnan(part)
        assert np.array_equal(part[defined], tail[defined])


def test_a_tie_is_no_cross_and_touching_then_rising_is_one():
    # fast(1) vs slow(2): prices 10, 10 (equal), 10.05 (above), 10.05 (equal), 10 (below)
    close = np.array([10.0, 10.0, 10.05, 10.05, 10.0])
    up, down = ta.sma_crosses(close, 1, 2)
    assert up.tolist() == [False, False, True, False, False]
    assert down.tolist() == [False, False, False, False, True]


def test_a_float_running_sum_would_have_signalled_on_a_tie():
    """The case of issue 17: a tie the float cumulative sum breaks. Prices on the grid where
    the exact 3- and 6-bar averages are equal at the last bar."""
    close = np.array([100.1, 100.2, 100.3, 100.3, 100.2, 100.1, 100.2, 100.2, 100.2])
    f, s = ta.sma(close, 3), ta.sma(close, 6)
    assert f[-1] == s[-1]  # exactly 100.2 both
    up, down = ta.sma_crosses(close, 3, 6)
    assert not up[-1] and not down[-1]


def test_off_grid_values_fall_back_to_floats():
    values = np.array([0.123, 0.456, 0.789, 1.0111])
    assert ta.paise(values) is None
    assert np.allclose(
        ta.sma(values, 2)[1:], [(0.123 + 0.456) / 2, (0.456 + 0.789) / 2, (0.789 + 1.0111) / 2]
    )
