"""`sma_cross`: long when the fast SMA crosses above the slow one, flat when it crosses below.

The simple reference strategy of tests and benchmarks. Its stop (for sizing only) is
`stop_atr_multiple` ATRs under the close; `fixed_quantity`, when set, sizes every entry instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from dalal_engine import indicators as ta
from dalal_engine.strategy import (
    Action,
    BarContext,
    BarSeries,
    Signal,
    Strategy,
    StrategyParams,
    register,
)


class SmaCrossParams(StrategyParams):
    fast_bars: int = Field(gt=0, le=1000)
    slow_bars: int = Field(gt=1, le=5000)
    atr_bars: int = Field(14, gt=0, le=500)
    stop_atr_multiple: float = Field(2.0, gt=0, le=50)
    fixed_quantity: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCrossParams:
        if self.fast_bars >= self.slow_bars:
            raise ValueError("fast_bars must be smaller than slow_bars")
        return self


@register
class SmaCross(Strategy):
    name: ClassVar[str] = "sma_cross"
    code: ClassVar[str] = "sc"
    Params: ClassVar[type[StrategyParams]] = SmaCrossParams
    description: ClassVar[str] = "fast/slow simple moving average crossover, long only"
    params: SmaCrossParams

    @property
    def warmup_bars(self) -> int:
        return max(self.params.slow_bars, self.params.atr_bars) + 1

    def indicators(self, bars: BarSeries) -> dict[str, NDArray[Any]]:
        p = self.params
        up, down = ta.sma_crosses(bars.close, p.fast_bars, p.slow_bars)  # exact: ties are no cross
        return {
            "fast": ta.sma(bars.close, p.fast_bars),
            "slow": ta.sma(bars.close, p.slow_bars),
            "atr": ta.atr(bars.high, bars.low, bars.close, p.atr_bars),
            "up": up,
            "down": down,
        }

    def candidates(self, ind: Mapping[str, NDArray[Any]]) -> NDArray[np.bool_] | None:
        return ind["up"]

    def exit_candidates(self, ind: Mapping[str, NDArray[Any]]) -> NDArray[np.bool_] | None:
        return ind["down"]

    def on_bar(self, ctx: BarContext) -> list[Signal]:
        i, ind = ctx.index, ctx.ind
        close = ctx.close
        if ctx.position.quantity > 0:
            if ind["down"][i]:
                return [Signal(Action.EXIT, "X", "cross_down", reference_price=close)]
            return []
        if ind["up"][i]:
            atr = float(ind["atr"][i])
            stop = close - self.params.stop_atr_multiple * atr if atr == atr else close * 0.95
            return [
                Signal(
                    Action.ENTER,
                    "E",
                    "cross_up",
                    quantity=self.params.fixed_quantity,
                    reference_price=close,
                    stop=stop,
                )
            ]
        return []
