"""The strategy interface and its registry.

A strategy is plain Python: it computes its indicators once, vectorised, over a symbol's bar
history (`indicators`), then is asked bar by bar what to do (`on_bar`) with a `BarContext`
giving the bar index, the indicator arrays, its position, its own per-symbol state (a JSON-able
dict the runner persists), equity, cash and its parameters. It returns `Signal`s: enter, reduce
or exit, with the stop and targets that go with them. The same object runs in the backtester
and in the live loop; neither the strategy nor this module knows which.

Signals are decided on a completed bar; the orders they become reach the market after it (the
next bar's first tick in a backtest, at once in the live loop).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from dalal_engine.bars import BarSeries as BarSeries
from dalal_engine.bars import BarStarts as BarStarts
from dalal_shared.slots import slot_init


class Action(enum.StrEnum):
    ENTER = "ENTER"  # open a long position (size from the risk manager)
    REDUCE = "REDUCE"  # sell part of the position (a partial exit)
    EXIT = "EXIT"  # sell all of it


@slot_init
@dataclass(frozen=True, slots=True)
class Signal:
    """What a strategy wants on a bar: enter, reduce or exit, with the leg and the reason."""

    action: Action
    leg: str  # short name of the order leg: E (entry), T1, T2 (targets), X (exit)
    reason: str  # why, in a word or two: breakout, pullback, target1, stop, trail, time
    quantity: int | None = None  # REDUCE: shares to sell; ENTER: a fixed size (else risk sizes)
    reference_price: float | None = None  # the close the decision was made on
    stop: float | None = None  # ENTER: protective stop, for sizing and for the position
    targets: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Level:
    """A price at which an open position acts between bars (the live loop watches ticks).

    kind "stop": a trade at or under `price` exits; kind "target": a trade at or over `price`
    sells `quantity` (None: all). `leg` names the order (one order per leg and position)."""

    leg: str
    kind: str  # "stop" or "target"
    price: float
    quantity: int | None = None

    def hit(self, last_price: float) -> bool:
        return last_price <= self.price if self.kind == "stop" else last_price >= self.price


@slot_init
@dataclass(frozen=True, slots=True)
class PositionView:
    """The strategy's position in a symbol, as its decisions see it."""

    quantity: int = 0
    average_price: float = 0.0
    opened_at: datetime | None = None


@dataclass(slots=True)
class BarContext:
    """What a strategy's `on_bar` reads: the bars, their indicators, position, state, money."""

    symbol: str
    index: int
    bars: BarSeries
    ind: Mapping[str, NDArray[Any]]
    position: PositionView
    state: dict[str, Any]
    equity: float
    cash: float

    @property
    def close(self) -> float:
        return float(self.bars.close[self.index])

    @property
    def at(self) -> datetime:
        return self.bars.start[self.index]


class StrategyParams(BaseModel):
    """Base of every strategy's parameters: typed, validated, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Strategy(ABC):
    """Base class; subclasses set `name`, `Params` and implement the two methods."""

    name: ClassVar[str]
    code: ClassVar[str]  # 2 characters, used in client order ids
    Params: ClassVar[type[StrategyParams]]
    description: ClassVar[str] = ""

    def __init__(self, params: StrategyParams):
        self.params = params

    @property
    def warmup_bars(self) -> int:
        """Bars of history its indicators need before the first signal."""
        return 0

    @abstractmethod
    def indicators(self, bars: BarSeries) -> dict[str, NDArray[Any]]:
        """Every indicator the strategy reads, computed once over the whole series."""

    def candidates(self, ind: Mapping[str, NDArray[Any]]) -> NDArray[np.bool_] | None:
        """Bars where a flat symbol may get an entry (None: every bar). The backtester skips
        `on_bar` for flat symbols elsewhere; positions are always asked."""
        return None

    def exit_candidates(self, ind: Mapping[str, NDArray[Any]]) -> NDArray[np.bool_] | None:
        """Bars where an open position may get a signal (None: every bar, e.g. a strategy that
        counts bars held or trails a stop). The backtester skips `on_bar` for open positions
        elsewhere."""
        return None

    @abstractmethod
    def on_bar(self, ctx: BarContext) -> list[Signal]:
        """The signals of one closed bar."""

    def on_entry_filled(self, position: PositionView, state: dict[str, Any]) -> None:
        """An entry (or part of it) filled: the position is `position` now. Lets a strategy fix
        its stop and targets before the next bar so `levels` can be watched at once."""
        return None

    def levels(self, position: PositionView, state: dict[str, Any]) -> list[Level]:
        """The stop and targets of an open position, watched tick by tick (none by default)."""
        return []

    def on_level(self, level: Level, state: dict[str, Any]) -> None:
        """A level was hit between bars and its order sent: update the state so the bar logic
        does not act on it again."""
        return None


_REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"strategy {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Strategy]]:
    import dalal_engine.strategies  # noqa: F401  (registers the built-ins)

    return dict(_REGISTRY)


def strategy_class(name: str) -> type[Strategy]:
    known = registry()
    try:
        return known[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(sorted(known))}") from None


@dataclass(frozen=True, slots=True)
class StrategyInfo:
    """A registered strategy as the API lists it: name, description, parameters' JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)


def describe(cls: type[Strategy]) -> StrategyInfo:
    return StrategyInfo(cls.name, cls.description, cls.Params.model_json_schema())


Factory = Callable[[StrategyParams], Strategy]
