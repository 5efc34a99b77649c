"""`indicators.continuing`: the live engine's recursive indicators (EMA, Wilder's ATR) pick up
where the same series stopped at the previous bar, and give the values computed from the first
bar, bit for bit, whatever happens to the history (grows, is cut back, has a bar corrected)."""

from __future__ import annotations

from typing import Any

import numpy as np
from indicator_cases import everything

from dalal_engine import indicators as ta


def prices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = np.round(1000 + np.cumsum(rng.normal(0, 3, n)), 2)
    high = close + np.round(rng.uniform(0, 4, n), 2)
    low = close - np.round(rng.uniform(0, 4, n), 2)
    return high, low, close


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def indicators(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> list[np.ndarray]:
    """What a strategy might compute: two ATRs, two EMAs (one of the same window twice)."""
    return [
        ta.atr(high, low, close, 14),
        ta.ema(close, 10),
        ta.atr(high, low, close, 5),
        ta.ema(close, 10),
        ta.ema(high, 30),
    ]


def test_a_growing_history_gives_the_values_from_the_first_bar_bit_for_bit(monkeypatch) -> None:
    high, low, close = prices(600, 1)
    memo: dict[Any, Any] = {}
    starts: list[int] = []
    resume = ta._resume

    def spied(*args: Any) -> tuple[int, float]:
        start, prev = resume(*args)
        starts.append(start)
        return start, prev

    monkeypatch.setattr(ta, "_resume", spied)
    for n in range(1, 601):
        starts.clear()
        with ta.continuing(memo):
            got = indicators(high[:n], low[:n], close[:n])
        if n > 31:  # every window filled the bar before: each call went on from there
            assert starts == [n - 1] * 5
        want = indicators(high[:n], low[:n], close[:n])  # no memo: from the first bar
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), n
    assert len(memo) == 5  # one slot per call


def test_a_history_cut_back_corrected_or_replaced_is_computed_again() -> None:
    high, low, close = prices(900, 2)
    memo: dict[Any, Any] = {}
    with ta.continuing(memo):
        indicators(high[:500], low[:500], close[:500])
    cases = {
        "one more bar": (high[:501], low[:501], close[:501]),
        "the same bars again": (high[:501], low[:501], close[:501]),
        "cut back (a later first bar)": (high[200:700], low[200:700], close[200:700]),
        "shorter than before": (high[200:400], low[200:400], close[200:400]),
    }
    corrected = close[:800].copy()
    corrected[350] += 0.05  # an earlier bar corrected
    cases["an earlier bar corrected"] = (high[:800], low[:800], corrected)
    other = prices(900, 3)
    cases["another symbol's bars"] = (other[0][:820], other[1][:820], other[2][:820])
    cases["too few bars for any value"] = (high[:3], low[:3], close[:3])
    for label, (h, lo, c) in cases.items():
        with ta.continuing(memo):
            got = indicators(h, lo, c)
        want = indicators(h, lo, c)
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), label


def test_outside_the_block_nothing_is_remembered_and_the_caller_cannot_spoil_the_memo() -> None:
    high, low, close = prices(300, 4)
    memo: dict[Any, Any] = {}
    with ta.continuing(memo):
        first = ta.atr(high[:200], low[:200], close[:200], 14)
    first[:] = 0.0  # a strategy that writes into what it got
    close_copy = close.copy()
    with ta.continuing(memo):
        again = ta.atr(high[:250], low[:250], close_copy[:250], 14)
    assert same(again, ta.atr(high[:250], low[:250], close[:250], 14))
    ta.atr(high, low, close, 14)  # no block: no memo touched
    assert len(memo) == 1


def test_the_closes_are_converted_to_paise_once_per_bar_and_the_averages_stay_exact(
    monkeypatch,
) -> None:
    """A strategy's SMAs and their crosses read the same closes: inside `continuing` they are
    converted to whole paise once per bar (views of one growing buffer, as the live engine's
    columns give), with the values computed outside bit for bit; closes off the paisa grid
    (None) too; the shared paise are read-only."""
    _high, _low, close = prices(400, 3)
    close[100::50] += 0.001  # from bar 100 on, off the paisa grid: those histories have no paise
    buffer = np.empty(1000)
    buffer[:400] = close
    conversions: list[int] = []
    real = np.rint

    def counted(*args: Any, **kwargs: Any) -> Any:
        conversions.append(1)
        return real(*args, **kwargs)

    memo: dict[Any, Any] = {}
    for n in range(2, 401):
        view = buffer[:n]  # a new view object every bar
        want = [ta.sma(view, 3), ta.sma(view, 8), *ta.sma_crosses(view, 3, 8)]
        monkeypatch.setattr(ta.np, "rint", counted)
        conversions.clear()
        with ta.continuing(memo):
            got = [ta.sma(view, 3), ta.sma(view, 8), *ta.sma_crosses(view, 3, 8)]
        monkeypatch.setattr(ta.np, "rint", real)
        assert len(conversions) == 1, n
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), n
    with ta.continuing(memo):
        whole = ta.paise(buffer[1:10])
    assert whole is not None and not whole.flags.writeable


def averages(close: np.ndarray) -> list[np.ndarray]:
    """What sma_cross computes (and one SMA twice): exact sums on the paisa grid."""
    return [ta.sma(close, 5), ta.sma(close, 20), *ta.sma_crosses(close, 5, 20), ta.sma(close, 5)]


def test_the_moving_averages_and_their_crosses_go_on_from_the_previous_bar_bit_for_bit(
    monkeypatch,
) -> None:
    """Bar by bar, views of one growing buffer (as the live engine's columns give): only the
    new bars are summed, and every value and cross equals the one computed from the first
    bar; ties (flat prices) included."""
    _high, _low, close = prices(700, 5)
    close[300:340] = close[300]  # flat: the averages meet and tie
    buffer = np.empty(1000)
    buffer[:700] = close
    summed: list[int] = []
    real = ta.rolling_sum

    def counted(values: np.ndarray, bars: int) -> np.ndarray:
        summed.append(len(values))
        return real(values, bars)

    memo: dict[Any, Any] = {}
    crosses = 0
    for n in range(1, 701):
        view = buffer[:n]
        want = averages(view)
        monkeypatch.setattr(ta, "rolling_sum", counted)
        summed.clear()
        with ta.continuing(memo):
            got = averages(view)
        monkeypatch.setattr(ta, "rolling_sum", real)
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), n
        if n > 30:  # every call went on from the bar before: one new window each
            assert max(summed) <= 20, (n, summed)
        crosses += int(got[2][-1]) + int(got[3][-1])
    assert crosses > 10  # the series crosses: the cross path is exercised


def test_averages_of_a_history_cut_back_corrected_or_off_the_grid_are_computed_again() -> None:
    _high, _low, close = prices(900, 6)
    memo: dict[Any, Any] = {}
    with ta.continuing(memo):
        averages(close[:500])
    corrected = close[:800].copy()
    corrected[350] += 0.05  # an earlier bar corrected
    off_grid = close[:820].copy()
    off_grid[810] += 0.001  # a derived price off the paisa grid: float sums from bar one
    cases = {
        "one more bar": close[:501],
        "the same bars again": close[:501],
        "cut back (a later first bar)": close[200:700],
        "shorter than before": close[200:400],
        "an earlier bar corrected": corrected,
        "off the grid": off_grid,
        "back on the grid": close[:830],
        "another symbol's bars": prices(900, 7)[2][:820],
        "too few bars for any value": close[:3],
        "just enough for one cross": close[:21],
    }
    for label, c in cases.items():
        with ta.continuing(memo):
            got = averages(c)
        assert all(same(g, w) for g, w in zip(got, averages(c), strict=True)), label


def test_views_of_append_only_columns_go_on_without_comparing_the_earlier_bars(
    monkeypatch,
) -> None:
    """As the live engine's columns give them (`BarSeries.append_only`): bar by bar, across the
    columns growing into new buffers, every value equals the one computed from the first bar,
    and the earlier bars are not compared once the same buffers come again."""
    high, low, close = prices(900, 8)
    size = 256
    columns = [np.empty(size) for _ in range(3)]
    compared: list[int] = []
    real = ta.np.array_equal

    def counted(*args: Any, **kwargs: Any) -> Any:
        compared.append(1)
        return real(*args, **kwargs)

    memo: dict[Any, Any] = {}
    same_buffers = 0
    for n in range(1, 901):
        grew = n > size
        if grew:  # full: new buffers with the values copied, as `BarColumns` grows
            size *= 2
            columns = [np.concatenate((c[: n - 1], np.empty(size - n + 1))) for c in columns]
        for column, source in zip(columns, (high, low, close), strict=True):
            column[n - 1] = source[n - 1]  # the new bar, after the last
        h, lo, c = (column[:n] for column in columns)
        h.flags.writeable = lo.flags.writeable = c.flags.writeable = False
        want = everything(high[:n], low[:n], close[:n])
        monkeypatch.setattr(ta.np, "array_equal", counted)
        compared.clear()
        with ta.continuing(memo, tuple(columns)):
            got = everything(h, lo, c)
        monkeypatch.setattr(ta.np, "array_equal", real)
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), n
        if n > 40 and not grew:
            assert compared == [], n
            same_buffers += 1
    assert same_buffers > 800


def test_a_view_of_a_column_at_another_place_or_a_column_not_named_is_computed_right() -> None:
    """A strategy's own slice of a column (from its second bar), the same column not declared
    append-only, and a buffer rewritten in place (not append-only, so not declared): each gives
    the values computed from the first bar."""
    high, low, close = prices(600, 9)
    buffers = [np.array(high), np.array(low), np.array(close)]
    memo: dict[Any, Any] = {}
    for n in (300, 301, 302):
        h, lo, c = (b[:n] for b in buffers)
        with ta.continuing(memo, tuple(buffers)):
            ta.sma(c, 5), ta.atr(h, lo, c, 14)  # the columns' own place, as the engine's
            shifted = [ta.sma(c[1:], 5), ta.atr(h[1:], lo[1:], c[1:], 14), ta.highest(h[1:], 9)]
        assert same(shifted[0], ta.sma(close[1:n], 5)), n
        assert same(shifted[1], ta.atr(high[1:n], low[1:n], close[1:n], 14)), n
        assert same(shifted[2], ta.highest(high[1:n], 9)), n
    alternating: dict[Any, Any] = {}
    for n in range(310, 320):  # the same call on the column, then on its slice, in turn
        h, lo, c = (b[:n] if n % 2 else b[1:n] for b in buffers)
        with ta.continuing(alternating, tuple(buffers)):
            got = [ta.sma(c, 5), ta.atr(h, lo, c, 14), ta.highest(h, 9)]
        want = [ta.sma(np.array(c), 5), ta.atr(np.array(h), np.array(lo), np.array(c), 14)]
        assert same(got[0], want[0]) and same(got[1], want[1]), n
        assert same(got[2], ta.highest(np.array(h), 9)), n
    rewritten = np.array(close)
    with ta.continuing(memo):
        ta.sma(rewritten[:400], 5)
    rewritten[100] += 0.05  # corrected in place: compared, so computed again
    with ta.continuing(memo):
        got = ta.sma(rewritten[:401], 5)
    assert same(got, ta.sma(rewritten[:401], 5))
