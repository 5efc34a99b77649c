"""A live bar's indicators as the history grows: computed from the first bar (as the engine did)
against continued from the previous bar (`indicators.continuing`, what the engine does now).

The live engine computes a strategy's indicators over the whole history at every bar (so they
match the backtest's, which starts from the same first bar). The history grows from its
warm-up (300 bars) by a bar per minute, up to 20,000 before it is cut back. The recursive
indicators (EMA, Wilder's ATR) ran a Python loop over every bar each time; the moving averages
are numpy passes. Both ways give the same values bit for bit (checked here).

Continued two ways: on arrays the indicators must compare with what they saw at the previous
bar (each earlier value, bit for bit, and a copy kept), and on the engine's own columns
(`BarColumns`: append-only buffers the series names in `BarSeries.append_only`), where a view
at the same place needs no comparison and a bar's work is the new bar's only.

    .venv/bin/python bench/indicators_live.py            # sma_cross and swing, 300..20,000 bars
    .venv/bin/python bench/indicators_live.py --quick    # fewer repeats (make bench)
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from dalal_engine import indicators as ta
from dalal_engine.strategies.sma_cross import SmaCross, SmaCrossParams
from dalal_engine.strategies.swing import Swing, SwingParams
from dalal_engine.strategy import BarSeries, BarStarts


def series(n: int, seed: int = 7) -> BarSeries:
    rng = np.random.default_rng(seed)
    close = np.round(1000 + np.cumsum(rng.normal(0, 2, n)) * 20) / 20  # on the Rs 0.05 grid
    high = close + np.round(rng.uniform(0, 3, n) * 20) / 20
    low = close - np.round(rng.uniform(0, 3, n) * 20) / 20
    first = int(datetime(2026, 1, 1, 3, 45, tzinfo=UTC).timestamp())
    starts = BarStarts(first + 60 * np.arange(n, dtype=np.int64))
    return BarSeries("BENCH", starts, close, high, low, close, np.full(n, 1000, dtype=np.int64))


def cut(s: BarSeries, n: int) -> BarSeries:
    return BarSeries(
        s.symbol, BarStarts(s.seconds[:n]), s.open[:n], s.high[:n], s.low[:n], s.close[:n],
        s.volume[:n],
    )  # fmt: skip


def columns(full: BarSeries) -> tuple[Any, ...]:
    """`full`'s price arrays: the buffers every cut of it is a view of (as `BarColumns`')."""
    return (full.open, full.high, full.low, full.close)


def per_bar_ms(strategy: Any, full: BarSeries, n: int, bars: int, memo: str) -> float:
    """Mean ms of the indicators at bars n+1 .. n+bars (each over the whole history so far);
    `memo`: "" (from the first bar), "compared" or "columns" (continued)."""
    views = [cut(full, k) for k in range(n, n + bars + 1)]
    kept: dict[Any, Any] = {}
    grown = columns(full) if memo == "columns" else ()
    if memo:
        with ta.continuing(kept, grown):
            strategy.indicators(views[0])  # the bar before: what the engine computed last
    started = time.perf_counter()
    for view in views[1:]:
        if memo:
            with ta.continuing(kept, grown):
                strategy.indicators(view)
        else:
            strategy.indicators(view)
    return (time.perf_counter() - started) / bars * 1000


def same_values(strategy: Any, full: BarSeries, n: int, grown: tuple[Any, ...] = ()) -> bool:
    kept: dict[Any, Any] = {}
    for k in (n - 1, n):
        with ta.continuing(kept, grown):
            got = strategy.indicators(cut(full, k))
    want = strategy.indicators(cut(full, n))
    return all(np.asarray(got[key]).tobytes() == np.asarray(want[key]).tobytes() for key in want)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    bars = 20 if args.quick else 100
    sizes = [300, 2_000, 20_000]
    full = series(sizes[-1] + bars + 1)
    strategies = {
        "sma_cross (SMA 10/30, ATR 14)": SmaCross(SmaCrossParams(fast_bars=10, slow_bars=30)),
        "swing (EMA, ATR)": Swing(SwingParams()),
    }
    print(
        "| strategy | history (bars) | from the first bar (ms) | continued, compared (ms) | "
        "continued, engine's columns (ms) | ratio (first bar / columns) | same |"
    )
    print("|---|---|---|---|---|---|---|")
    ok = True
    for label, strategy in strategies.items():
        for n in sizes:
            fresh = per_bar_ms(strategy, full, n, bars, memo="")
            compared = per_bar_ms(strategy, full, n, bars, memo="compared")
            grown = per_bar_ms(strategy, full, n, bars, memo="columns")
            same = same_values(strategy, full, n) and same_values(strategy, full, n, columns(full))
            ok = ok and same
            print(
                f"| {label} | {n:,} | {fresh:.3f} | {compared:.3f} | {grown:.3f} | "
                f"**{fresh / grown:.1f}x** | {'yes' if same else 'NO'} |"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
