"""One indicator definition for live and backtest: the live engine, fed real 15-minute
AXISBANK bars one at a time, holds a history from which every indicator of `sma_cross` and
`swing` (EMA and Wilder's ATR are path dependent) equals, bit for bit, what the backtester
computes over the whole series at the same bar; so every decision a flat symbol would get
(the strategy's signals on that bar) is the same. 1,004 bars: past the 300-bar floor where the
live engine used to slide its window (re-seeding the EMA/ATR every bar), and across a
restart (which used to reload only the last 300 bars). The engine's own indicator call is
used (`indicators_of`): its EMA and ATR continue from the previous bar instead of running from
the first, and must still equal the whole series' values."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import numpy as np

from dalal_engine import history
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore
from dalal_engine.strategy import BarContext, BarSeries, PositionView
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import Bar

FIXTURES = Path(__file__).parent / "fixtures"
CONFIG = """
strategies:
  - name: cross
    strategy: sma_cross
    interval: 15minute
    universe: [AXISBANK]
    params: {fast_bars: 3, slow_bars: 8}
  - name: swing
    strategy: swing
    interval: 15minute
    universe: [AXISBANK]
"""


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def bar_of(series: BarSeries, i: int) -> Bar:
    return Bar(
        symbol="AXISBANK",
        interval="15minute",
        start=series.start[i],
        open=Decimal(f"{series.open[i]:.2f}"),
        high=Decimal(f"{series.high[i]:.2f}"),
        low=Decimal(f"{series.low[i]:.2f}"),
        close=Decimal(f"{series.close[i]:.2f}"),
        volume=int(series.volume[i]),
    )


def engine(tmp_path: Path) -> LiveEngine:
    return LiveEngine(
        load_text(CONFIG),
        EngineStore.open(f"sqlite:///{tmp_path}/engine.sqlite3"),
        initial_equity_rupees=Decimal("1000000"),
    )


def test_live_history_gives_the_backtesters_indicators_and_decisions(tmp_path: Path) -> None:
    """Fed bar by bar, restarted two thirds of the way (a new engine on the same database):
    the same indicators and signals as the backtester at every bar, before and after."""
    series = history.load("AXISBANK", "15minute", data_dir=FIXTURES)
    strategies = {c.name: c.build() for c in load_text(CONFIG)}
    whole = {name: s.indicators(series) for name, s in strategies.items()}
    flat = PositionView()
    compared = 0
    live = engine(tmp_path)
    restart_at = 2 * len(series) // 3
    for i in range(len(series)):
        if i == restart_at:
            live = engine(tmp_path)  # the history comes back from the store
        live.on_bar(bar_of(series, i), decide=False)  # the history the live engine decides on
        key = ("NSE", "AXISBANK", "15minute")
        held = live._series_of(*key, live._history[key])  # what the live loop hands a strategy
        assert held.start[-1] == series.start[i]
        j = len(held) - 1
        for name, strategy in strategies.items():
            # what the engine computes at this bar (EMA and ATR go on from the previous bar)
            mine = live.indicators_of(live.instances[name], "AXISBANK", held)
            for key, values in whole[name].items():
                assert same(mine[key][j].item(), values[i].item()), (name, key, i)
            ctx = dict(symbol="AXISBANK", position=flat, equity=1e6, cash=1e6)
            live_signals = strategy.on_bar(
                BarContext(index=j, bars=held, ind=mine, state={}, **ctx)
            )
            test_signals = strategy.on_bar(
                BarContext(index=i, bars=series, ind=whole[name], state={}, **ctx)
            )
            assert live_signals == test_signals, (name, i)
            compared += 1
    assert compared == 2 * len(series) > 2000
    assert np.count_nonzero(whole["cross"]["up"]) > 10  # crosses were decided along the way
