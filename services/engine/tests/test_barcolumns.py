"""The live loop's bar arrays kept up to date bar by bar (`BarColumns`) are always what building
them from the whole history gives: after appends one at a time and in bursts, past the point
where the arrays grow, after the history is trimmed at the front or replaced; a series handed
to a strategy earlier never changes under it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from dalal_engine.barcolumns import BarColumns
from dalal_engine.store import StoredBar
from dalal_engine.strategy import BarSeries

T0 = datetime(2025, 1, 1, 3, 45, tzinfo=UTC)


def bars(n: int, first: int = 0, seed: int = 1) -> list[StoredBar]:
    rng = random.Random(seed + first)
    out = []
    for k in range(first, first + n):
        close = 100 + rng.random() * 10
        out.append(
            StoredBar(T0 + timedelta(minutes=k), close - 1, close + 1, close - 2, close, k * 10)
        )
    return out


def rebuilt(history: list[StoredBar]) -> BarSeries:
    return BarSeries(
        symbol="X",
        start=tuple(b.start for b in history),
        open=np.array([b.open for b in history], dtype=np.float64),
        high=np.array([b.high for b in history], dtype=np.float64),
        low=np.array([b.low for b in history], dtype=np.float64),
        close=np.array([b.close for b in history], dtype=np.float64),
        volume=np.array([b.volume for b in history], dtype=np.int64),
    )


def same(a: BarSeries, b: BarSeries) -> None:
    assert a.symbol == b.symbol
    assert tuple(a.start) == tuple(b.start)
    for name in ("open", "high", "low", "close", "volume"):
        got, want = getattr(a, name), getattr(b, name)
        assert got.dtype == want.dtype
        assert np.array_equal(got, want), name


def test_the_arrays_follow_the_history_through_appends_trims_and_replacements() -> None:
    columns = BarColumns()
    history = bars(300)
    same(columns.series("X", history), rebuilt(history))
    earlier = columns.series("X", history)
    for k in range(300, 700):  # one at a time, past the first growth of the arrays
        history.extend(bars(1, k))
        same(columns.series("X", history), rebuilt(history))
    history.extend(bars(250, 700))  # a burst at once
    same(columns.series("X", history), rebuilt(history))
    del history[:-300]  # trimmed at the front
    same(columns.series("X", history), rebuilt(history))
    history.extend(bars(5, 950))
    same(columns.series("X", history), rebuilt(history))
    history = bars(40, 5_000, seed=7)  # replaced (a restart's reload)
    same(columns.series("X", history), rebuilt(history))
    same(columns.series("X", []), rebuilt([]))
    # the series handed out first is what it was
    same(earlier, rebuilt(bars(300)))


def test_a_strategy_cannot_write_into_the_shared_arrays() -> None:
    series = BarColumns().series("X", bars(10))
    with pytest.raises(ValueError, match="read-only"):
        series.close[0] = 0.0


def test_the_start_times_read_as_a_tuple_and_an_earlier_series_keeps_its_own() -> None:
    """The starts are a view of the columns' list (no copy per bar): indexing from either end,
    slices, iteration and equality as on a tuple; bars appended later are not in an earlier
    series' starts; a replaced history leaves them as they were."""
    columns = BarColumns()
    history = bars(30)
    earlier = columns.series("X", history).start
    history.extend(bars(5, 30))
    later = columns.series("X", history).start
    want = tuple(b.start for b in history)
    assert len(earlier) == 30 and len(later) == 35
    assert earlier[-1] == want[29] and later[-1] == want[34] and later[0] == want[0]
    assert later[2:6] == want[2:6] and earlier[-3:] == want[27:30]
    assert list(earlier) == list(want[:30]) and later == want and earlier != want
    with pytest.raises(IndexError):
        earlier[30]
    columns.series("X", bars(10, 500, seed=3))  # a reload: new columns
    assert tuple(earlier) == want[:30]
