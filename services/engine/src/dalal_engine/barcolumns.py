"""A live symbol's bar history as the arrays a strategy reads (`BarSeries`), kept up to date as
bars arrive instead of rebuilt from the whole history at every bar.

The live loop keeps each symbol's history (up to 20,000 bars, the warm-up included, so that
indicators with memory, such as an EMA, see what the backtester sees) and hands the strategy a
`BarSeries` of all of it at every decided bar. Building those six arrays from the list of bars
was O(history) in Python per bar: ~1 ms per symbol with a few days of minute bars, which at a
minute's close, with every traded symbol deciding at once, was most of the engine's time
between the bar and its order. `BarColumns` appends the new bars to preallocated arrays
(doubling when full) and gives read-only views of them, so a bar costs O(new bars). The arrays
are append-only (a value once written never changes; a history changed otherwise gets new
arrays): the series says so (`BarSeries.append_only`), and the indicators then continue from
the previous bar without comparing or copying the earlier values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

from dalal_engine.strategy import BarSeries

if TYPE_CHECKING:
    from dalal_engine.store import StoredBar

_FLOATS = ("open", "high", "low", "close")


class BarColumns:
    """The columns of one history list. `series(history)` follows the list: new bars at its
    end are appended; a list that changed otherwise (trimmed at the front, replaced) is read
    again from the start."""

    def __init__(self) -> None:
        self._first: StoredBar | None = None
        self._last: StoredBar | None = None
        self._n = 0
        self._start: list[datetime] = []
        self._floats: dict[str, NDArray[np.float64]] = _empty_floats()
        self._volume: NDArray[np.int64] = np.empty(0, dtype=np.int64)

    def series(self, symbol: str, history: Sequence[StoredBar]) -> BarSeries:
        n = self._n
        if not (
            n <= len(history)
            and (n == 0 or (history[0] is self._first and history[n - 1] is self._last))
        ):
            n = self._reset()
        if len(history) > n:
            self._append(history, n)
        n = self._n
        floats = self._floats
        return BarSeries(
            symbol=symbol,
            start=_Starts(self._start, n),
            open=_view(floats["open"], n),
            high=_view(floats["high"], n),
            low=_view(floats["low"], n),
            close=_view(floats["close"], n),
            volume=_view(self._volume, n),
            append_only=tuple(floats[name] for name in _FLOATS),
        )

    def _reset(self) -> int:
        self._first = self._last = None
        self._n = 0
        self._start = []
        self._floats = _empty_floats()
        self._volume = np.empty(0, dtype=np.int64)
        return 0

    def _append(self, history: Sequence[StoredBar], n: int) -> None:
        new = history[n:]
        size = n + len(new)
        if size > len(self._volume):
            capacity = max(64, 2 * size)
            for name in _FLOATS:
                grown = np.empty(capacity, dtype=np.float64)
                grown[:n] = self._floats[name][:n]
                self._floats[name] = grown
            volume = np.empty(capacity, dtype=np.int64)
            volume[:n] = self._volume[:n]
            self._volume = volume
        floats = self._floats
        floats["open"][n:size] = [b.open for b in new]
        floats["high"][n:size] = [b.high for b in new]
        floats["low"][n:size] = [b.low for b in new]
        floats["close"][n:size] = [b.close for b in new]
        self._volume[n:size] = [b.volume for b in new]
        self._start.extend(b.start for b in new)
        self._first = history[0]
        self._last = history[size - 1]
        self._n = size


class _Starts(Sequence[datetime]):
    """The first `n` start times of the columns' list, read-only, without a copy (a tuple of
    20,000 of them was built at every bar): later bars are appended after them, and a history
    changed otherwise gets a new list. Indexing, slicing and comparison behave as on a tuple."""

    __slots__ = ("_items", "_n")

    def __init__(self, items: list[datetime], n: int) -> None:
        self._items, self._n = items, n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> datetime: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[datetime, ...]: ...

    def __getitem__(self, index: int | slice) -> datetime | tuple[datetime, ...]:
        if isinstance(index, slice):
            return tuple(self._items[: self._n][index])
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError("bar index out of range")
        return self._items[index]

    def __iter__(self) -> Iterator[datetime]:
        return islice(self._items, self._n)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]


def _empty_floats() -> dict[str, NDArray[np.float64]]:
    return {name: np.empty(0, dtype=np.float64) for name in _FLOATS}


_T = TypeVar("_T", bound=np.generic)


def _view(values: NDArray[_T], n: int) -> NDArray[_T]:
    """The first `n` values, read-only (later appends write past them, never into them)."""
    out = values[:n]
    out.flags.writeable = False
    return out
