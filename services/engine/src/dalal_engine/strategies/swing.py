"""`swing`: the seed's swing-trading style, long only, decided on completed bars.

Entry (flat, trend up: close above the `trend_sma_bars` SMA):
* breakout: the close clears the highest high of the previous `breakout_bars` bars, or
* pullback: the bar dipped to the `pullback_ema_bars` EMA (low <= EMA) and closed above it,
  up on the day (close > open);
`entry_mode` picks breakout, pullback or both.

Risk unit R = entry price - initial stop, the stop `stop_atr_multiple` ATRs under the signal
close. Exits, checked on each completed bar in this order:
1. stop: the close at or under the stop (the initial stop, later the trailing stop) -> exit all;
2. time stop: `time_stop_bars` bars held without reaching target 1 -> exit all;
3. target 1: close >= entry + `target1_r` R -> sell `target1_fraction` of the initial quantity;
4. target 2: close >= entry + `target2_r` R -> sell `target2_fraction` of the initial quantity;
   from then on the stop trails `trail_atr_multiple` ATRs under the highest close since entry
   (never lower than it was).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from dalal_engine import indicators as ta
from dalal_engine.strategy import (
    Action,
    BarContext,
    BarSeries,
    Level,
    PositionView,
    Signal,
    Strategy,
    StrategyParams,
    register,
)


class SwingParams(StrategyParams):
    trend_sma_bars: int = Field(50, gt=1, le=1000)
    entry_mode: Literal["breakout", "pullback", "both"] = "both"
    breakout_bars: int = Field(20, gt=1, le=500)
    pullback_ema_bars: int = Field(20, gt=1, le=500)
    atr_bars: int = Field(14, gt=1, le=500)
    stop_atr_multiple: float = Field(2.0, gt=0, le=20)
    target1_r: float = Field(1.0, gt=0, le=50)
    target1_fraction: float = Field(1 / 3, gt=0, lt=1)
    target2_r: float = Field(2.0, gt=0, le=100)
    target2_fraction: float = Field(1 / 3, gt=0, lt=1)
    trail_atr_multiple: float = Field(3.0, gt=0, le=50)
    time_stop_bars: int = Field(20, gt=0, le=10_000)

    @model_validator(mode="after")
    def _consistent(self) -> SwingParams:
        if self.target2_r <= self.target1_r:
            raise ValueError("target2_r must be larger than target1_r")
        if self.target1_fraction + self.target2_fraction >= 1:
            raise ValueError("target1_fraction + target2_fraction must leave a remainder (< 1)")
        return self


@register
class Swing(Strategy):
    name: ClassVar[str] = "swing"
    code: ClassVar[str] = "sw"
    Params: ClassVar[type[StrategyParams]] = SwingParams
    description: ClassVar[str] = (
        "trend filter + breakout/pullback entry, ATR stop, partial exits at 1R and 2R, "
        "trailing stop, time stop"
    )
    params: SwingParams

    @property
    def warmup_bars(self) -> int:
        p = self.params
        return max(p.trend_sma_bars, p.breakout_bars + 1, p.pullback_ema_bars, p.atr_bars) + 1

    def indicators(self, bars: BarSeries) -> dict[str, NDArray[Any]]:
        p = self.params
        trend = ta.sma(bars.close, p.trend_sma_bars)
        prior_high = ta.shift(ta.highest(bars.high, p.breakout_bars), 1)
        ema = ta.ema(bars.close, p.pullback_ema_bars)
        atr = ta.atr(bars.high, bars.low, bars.close, p.atr_bars)
        with np.errstate(invalid="ignore"):
            up = (bars.close > trend) & ~np.isnan(atr)
            breakout = up & (bars.close > prior_high)
            pullback = up & (bars.low <= ema) & (bars.close > ema) & (bars.close > bars.open)
        if p.entry_mode == "breakout":
            entry = breakout
        elif p.entry_mode == "pullback":
            entry = pullback
        else:
            entry = breakout | pullback
        return {
            "trend": trend,
            "prior_high": prior_high,
            "ema": ema,
            "atr": atr,
            "breakout": breakout,
            "pullback": pullback,
            "entry": entry,
        }

    def candidates(self, ind: Mapping[str, NDArray[Any]]) -> NDArray[np.bool_] | None:
        return ind["entry"]

    def on_bar(self, ctx: BarContext) -> list[Signal]:
        if ctx.position.quantity > 0:
            return self._manage(ctx)
        if "entry_price" in ctx.state:  # the position was closed: forget it
            ctx.state.clear()
        return self._enter(ctx)

    def _enter(self, ctx: BarContext) -> list[Signal]:
        i, ind, p = ctx.index, ctx.ind, self.params
        if not ind["entry"][i]:
            return []
        close = ctx.close
        stop = close - p.stop_atr_multiple * float(ind["atr"][i])
        if stop <= 0 or stop >= close:
            return []
        risk = close - stop
        ctx.state["plan_stop"] = stop
        reason = "breakout" if ind["breakout"][i] else "pullback"
        return [
            Signal(
                Action.ENTER,
                "E",
                reason,
                reference_price=close,
                stop=stop,
                targets=(close + p.target1_r * risk, close + p.target2_r * risk),
            )
        ]

    @staticmethod
    def _plan(st: dict[str, Any], entry: float, quantity: int, fallback_stop: float) -> None:
        stop = float(st.pop("plan_stop", fallback_stop))
        st.update(
            entry_price=entry,
            initial_stop=stop,
            stop=stop,
            risk_per_share=max(entry - stop, 1e-9),
            initial_quantity=quantity,
            bars_held=0,
            t1_done=False,
            t2_done=False,
        )

    def on_entry_filled(self, position: PositionView, state: dict[str, Any]) -> None:
        if "entry_price" not in state:
            if "plan_stop" in state:
                self._plan(state, position.average_price, position.quantity, 0.0)
        elif not state["t1_done"] and state["bars_held"] == 0:  # a later part of the entry
            state.update(
                entry_price=position.average_price,
                initial_quantity=position.quantity,
                risk_per_share=max(position.average_price - state["initial_stop"], 1e-9),
            )

    def levels(self, position: PositionView, state: dict[str, Any]) -> list[Level]:
        if position.quantity <= 0 or "entry_price" not in state:
            return []
        p = self.params
        out = [Level("S", "stop", float(state["stop"]))]
        entry, risk = state["entry_price"], state["risk_per_share"]
        for leg, r_multiple, fraction, done in (
            ("T1", p.target1_r, p.target1_fraction, state["t1_done"]),
            ("T2", p.target2_r, p.target2_fraction, state["t2_done"]),
        ):
            quantity = math.floor(state["initial_quantity"] * fraction)
            if not done and quantity > 0:
                out.append(Level(leg, "target", entry + r_multiple * risk, quantity))
        return out

    def on_level(self, level: Level, state: dict[str, Any]) -> None:
        if level.leg == "T1":
            state["t1_done"] = True
        elif level.leg == "T2":
            state["t2_done"] = True

    def _manage(self, ctx: BarContext) -> list[Signal]:
        i, ind, p, st = ctx.index, ctx.ind, self.params, ctx.state
        close = ctx.close
        atr = float(ind["atr"][i])
        if "entry_price" not in st:  # first bar with the position: fix its numbers
            entry = ctx.position.average_price
            self._plan(st, entry, ctx.position.quantity, entry - p.stop_atr_multiple * atr)
        if "highest_close" not in st:
            st["highest_close"] = close
        st["bars_held"] += 1
        st["highest_close"] = max(st["highest_close"], close)
        if st["t2_done"] and not math.isnan(atr):
            st["stop"] = max(st["stop"], st["highest_close"] - p.trail_atr_multiple * atr)
        held = ctx.position.quantity
        if close <= st["stop"]:
            reason = "trail" if st["stop"] > st["initial_stop"] else "stop"
            return [Signal(Action.EXIT, "X", reason, reference_price=close)]
        if st["bars_held"] >= p.time_stop_bars and not st["t1_done"]:
            return [Signal(Action.EXIT, "X", "time", reference_price=close)]
        out: list[Signal] = []
        entry, risk = st["entry_price"], st["risk_per_share"]
        for leg, r_multiple, fraction in (
            ("T1", p.target1_r, p.target1_fraction),
            ("T2", p.target2_r, p.target2_fraction),
        ):
            done_key = "t1_done" if leg == "T1" else "t2_done"
            if st[done_key] or close < entry + r_multiple * risk:
                continue
            st[done_key] = True
            quantity = math.floor(st["initial_quantity"] * fraction)
            if quantity <= 0:
                continue
            if quantity >= held:
                out.append(Signal(Action.EXIT, "X", f"target{leg[1]}", reference_price=close))
                break
            held -= quantity
            out.append(
                Signal(
                    Action.REDUCE, leg, f"target{leg[1]}", quantity=quantity, reference_price=close
                )
            )
        return out
