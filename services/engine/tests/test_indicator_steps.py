"""The live engine's indicators continued bar by bar with plain arithmetic (`indicator_steps`)
give the values the vectorised functions compute from the first bar, bit for bit, and fall
back to those functions whenever a step cannot be trusted (a NaN, a price off the paisa grid,
many bars at once, a view at another place)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from indicator_cases import everything

from dalal_engine import indicators as ta

N = 700


def series(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prices on the Rs 0.05 grid, with a few bars off it, a NaN close and equal averages."""
    rng = np.random.default_rng(seed)
    close = np.round((1000 + np.cumsum(rng.normal(0, 2, N))) * 20) / 20
    close[300:330] = close[299]  # flat: the averages meet and ties must not cross
    high = close + np.round(rng.uniform(0, 4, N) * 20) / 20
    low = close - np.round(rng.uniform(0, 4, N) * 20) / 20
    close[410] += 0.013  # off the grid: the averages fall back to float sums
    close[520] = np.nan  # a hole in the data
    high[521] = np.nan
    return high, low, close


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("seed", [1, 2])
def test_columns_growing_by_one_or_more_bars_give_the_first_bar_values(monkeypatch, seed) -> None:
    high, low, close = series(seed)
    columns = [np.empty(1024) for _ in range(3)]
    for column, source in zip(columns, (high, low, close), strict=True):
        column[:] = np.nan
        column[:N] = source
    stepped: list[bool] = []
    real = ta._step

    def spied(slot: Any, inputs: Any) -> Any:
        out = real(slot, inputs)
        stepped.append(out is not None)
        return out

    monkeypatch.setattr(ta, "_step", spied)
    memo: dict[Any, Any] = {}
    n, sizes = 0, [1, 1, 2, 1, 3, 1, 40, 1, 1]  # 40: more than a step takes
    clean = 0  # bars on the grid, after the first windows, a few new at once
    while n < N:
        grew = sizes[n % len(sizes)]
        n = min(N, n + grew)
        h, lo, c = (column[:n] for column in columns)
        stepped.clear()
        with ta.continuing(memo, tuple(columns)):
            got = everything(h, lo, c)
        calls = list(stepped)
        want = everything(high[:n].copy(), low[:n].copy(), close[:n].copy())
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), n
        for array in got:  # the caller's to change: the next bar is not spoiled
            array[:] = 0
        if 60 < n < 300 and grew <= 32:  # every call a step (none after a 40-bar jump)
            assert calls == [True] * 7, n
            clean += 1
        if grew > 32:
            assert not any(calls), n
    assert clean > 100


def test_a_step_is_only_taken_at_the_same_place() -> None:
    """The same call on a slice of the column (another place), then on the column again:
    each is right, the slice never stepped from the column's state."""
    high, low, close = series(3)
    buffers = [np.array(high[:600]), np.array(low[:600]), np.array(close[:600])]
    memo: dict[Any, Any] = {}
    for n in range(100, 130):
        h, lo, c = (b[:n] if n % 3 else b[2:n] for b in buffers)
        with ta.continuing(memo, tuple(buffers)):
            got = everything(h, lo, c)
        want = everything(np.array(h), np.array(lo), np.array(c))
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), n


def test_without_append_only_columns_no_step_is_kept() -> None:
    high, low, close = series(4)
    memo: dict[Any, Any] = {}
    for n in (200, 201, 202):
        with ta.continuing(memo):
            everything(high[:n], low[:n], close[:n])
    assert not [key for key in memo if key[0] == "step"]
