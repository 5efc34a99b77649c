"""A symbol's bars as arrays (`BarSeries`) and their start times made when read (`BarStarts`):
what the CSV reader, the backtester and the strategies share. numpy only (no pydantic), so a
process can read bars before the strategies and their parameter models are imported."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import overload

import numpy as np
from numpy.typing import NDArray


class BarStarts(Sequence[datetime]):
    """Bar start times made from epoch seconds when read: a backtest over 60,000 bars reads a
    few thousand of them (the bars where something is decided), so building every datetime up
    front is wasted work. Indexing, slicing, `bisect` and comparison behave as on a tuple."""

    __slots__ = ("_cache", "_seconds")

    def __init__(self, seconds: NDArray[np.int64]):
        self._seconds = seconds
        self._cache: dict[int, datetime] = {}

    def __len__(self) -> int:
        return len(self._seconds)

    @overload
    def __getitem__(self, index: int) -> datetime: ...

    @overload
    def __getitem__(self, index: slice) -> BarStarts: ...

    def __getitem__(self, index: int | slice) -> datetime | BarStarts:
        if type(index) is int:  # a bar read before (the backtester reads each a few times)
            known = self._cache.get(index)
            if known is not None:
                return known
        if isinstance(index, slice):
            return BarStarts(self._seconds[index])
        n = len(self._seconds)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("bar index out of range")
        found = self._cache.get(index)
        if found is None:
            found = self._cache[index] = datetime.fromtimestamp(int(self._seconds[index]), UTC)
        return found

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class BarSeries:
    """One symbol's bars as arrays (bar start times UTC-aware, prices float64 rupees)."""

    symbol: str
    start: Sequence[datetime]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.int64]
    _seconds: NDArray[np.int64] | None = field(default=None, repr=False, compare=False)
    # the buffers the price arrays are views of when they only ever grow (the live engine's
    # `BarColumns`): indicators then continue from the previous bar without comparing the
    # earlier values (`indicators.continuing`)
    append_only: tuple[NDArray[np.float64], ...] = field(default=(), repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.close)

    @property
    def seconds(self) -> NDArray[np.int64]:
        """Bar starts as epoch seconds (computed once, for the backtester's vector work)."""
        if self._seconds is None:
            values = np.fromiter(
                (int(ts.timestamp()) for ts in self.start), dtype=np.int64, count=len(self.start)
            )
            object.__setattr__(self, "_seconds", values)
            return values
        return self._seconds
