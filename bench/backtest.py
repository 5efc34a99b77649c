"""Backtest speed: bars/second of `sma_cross` on Dalal's backtester vs backtrader and
backtesting.py, on the same data, with the same trades (entry and exit days compared).

    .venv/bin/python bench/backtest.py --peers-python /tmp/benchvenv/bin/python

Peers are not dependencies of the project: install them into a throwaway venv
(`uv venv /tmp/benchvenv && VIRTUAL_ENV=/tmp/benchvenv uv pip install backtrader backtesting
vectorbt pandas numpy`); this script runs them there as a child process in the same run. Data:
the daily bars kitesim ships (6 NSE stocks, 2020-10..2025-09). Each engine runs sma_cross(10,
30), long only, 10 shares, orders at the next bar's open; Dalal also applies its fill model and
charges. vectorbt is the vectorised bound (signals as arrays, no event loop; its numba compile
is a warm-up outside the timing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "services/kitesim/src/dalal_kitesim/data/nse/day"
SYMBOLS = ["RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN"]
FAST, SLOW, QTY = 10, 30, 10


def _config(symbols: list[str]):  # type: ignore[no-untyped-def]
    from dalal_engine.strategyconfig import validate_document

    return validate_document(
        {
            "name": "bench",
            "strategy": "sma_cross",
            "universe": symbols,
            "params": {"fast_bars": FAST, "slow_bars": SLOW, "fixed_quantity": QTY},
            # one book for all six: never refuse an entry for lack of a slot
            "risk": {"max_open_positions": len(symbols)},
        }
    )[0]


def run_dalal(repeat: int, *, portfolio: bool = False) -> dict[str, Any]:
    """One backtest per symbol (as the peers run), or one over all six symbols (`portfolio`:
    the per-run costs, e.g. the performance report, are paid once for the six)."""
    from dalal_engine import history
    from dalal_engine.backtest import Backtester, BacktestSettings
    from dalal_shared.timeutil import to_ist

    data = {s: history.load(s, "day", data_dir=DATA) for s in SYMBOLS}
    trades: dict[str, list[list[str]]] = {}
    n_bars, t0 = 0, time.perf_counter()
    for _ in range(repeat):
        groups = [SYMBOLS] if portfolio else [[s] for s in SYMBOLS]
        for group in groups:
            r = Backtester(_config(group), {s: data[s] for s in group}, BacktestSettings()).run()
            n_bars += r.bars
            for s in group:
                trades[s] = [
                    [str(to_ist(t.opened_at).date()), str(to_ist(t.closed_at).date())]
                    for t in r.trades
                    if t.symbol == s
                ]
    seconds = time.perf_counter() - t0
    return {"bars": n_bars, "seconds": seconds, "trades": trades}


PEER = r"""
import json, sys, time
import pandas as pd
which, data_dir, symbols, fast, slow, qty, repeat = sys.argv[1], sys.argv[2], sys.argv[3].split(","), *map(int, sys.argv[4:8])
frames = {s: pd.read_csv(f"{data_dir}/{s}.csv", parse_dates=["date"], index_col="date") for s in symbols}
trades, n_bars = {}, 0
if which == "backtrader":
    import backtrader as bt
elif which == "vectorbt":
    import numpy as np
    import vectorbt as vbt
    def signals(df):  # dalal's crossed_above/below, acted on at the next bar's open
        c = df["close"]; f = c.rolling(fast).mean(); s_ = c.rolling(slow).mean()
        up = (f > s_) & (f.shift(1) <= s_.shift(1)); down = (f < s_) & (f.shift(1) >= s_.shift(1))
        return up.shift(1, fill_value=False), down.shift(1, fill_value=False)
    def vbt_run(df):
        entries, exits = signals(df)
        return vbt.Portfolio.from_signals(df["close"], entries, exits, price=df["open"], size=qty, init_cash=1e9)
    vbt_run(next(iter(frames.values())))  # numba compiles on the first call: a warm-up, as for dalal
else:
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
t0 = time.perf_counter()  # after the imports, as for dalal
if which == "backtrader":
    class Cross(bt.Strategy):
        def __init__(self):
            self.x = bt.ind.CrossOver(bt.ind.SMA(period=fast), bt.ind.SMA(period=slow))
            self.log = []
        def next(self):
            if not self.position and self.x[0] > 0: self.buy(size=qty)
            elif self.position and self.x[0] < 0: self.close()
        def notify_trade(self, t):
            if t.isclosed:
                self.log.append([str(bt.num2date(t.dtopen).date()), str(bt.num2date(t.dtclose).date())])
    for _ in range(repeat):
        for s, df in frames.items():
            c = bt.Cerebro(stdstats=False); c.broker.setcash(1e9)
            c.adddata(bt.feeds.PandasData(dataname=df.rename(columns=str.lower)))
            c.addstrategy(Cross); st = c.run()[0]
            trades[s] = st.log; n_bars += len(df)
elif which == "vectorbt":
    for _ in range(repeat):
        for s, df in frames.items():
            t = vbt_run(df).trades.records_readable
            t = t[t["Status"] == "Closed"]
            trades[s] = [[str(a.date()), str(b.date())] for a, b in zip(t["Entry Timestamp"], t["Exit Timestamp"])]
            n_bars += len(df)
else:
    def SMA(v, n): return pd.Series(v).rolling(n).mean()
    class Cross(Strategy):
        def init(self):
            self.f = self.I(SMA, self.data.Close, fast); self.s = self.I(SMA, self.data.Close, slow)
        def next(self):
            if not self.position and crossover(self.f, self.s): self.buy(size=qty)
            elif self.position and crossover(self.s, self.f): self.position.close()
    for _ in range(repeat):
        for s, df in frames.items():
            d = df.rename(columns=str.capitalize)
            res = Backtest(d, Cross, cash=1e9, commission=0, finalize_trades=False).run()
            trades[s] = [[str(a.date()), str(b.date())] for a, b in zip(res._trades.EntryTime, res._trades.ExitTime)]
            n_bars += len(df)
print(json.dumps({"bars": n_bars, "seconds": time.perf_counter() - t0, "trades": trades}))
"""  # noqa: E501  (the peer script, run by the peers' python)


def run_peer(python: str, which: str, repeat: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            python,
            "-c",
            PEER,
            which,
            str(DATA),
            ",".join(SYMBOLS),
            str(FAST),
            str(SLOW),
            str(QTY),
            str(repeat),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers-python", help="python of a venv with backtrader and backtesting")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="turns per engine; best one kept")
    args = ap.parse_args()
    run_dalal(1)  # warm-up: imports, the NSE calendar, pydantic schemas (not timed)
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "dalal": lambda: run_dalal(args.repeat),
        "dalal (6 in one)": lambda: run_dalal(args.repeat, portfolio=True),
    }
    if args.peers_python:
        for peer in ("backtrader", "backtesting.py", "vectorbt"):
            runs[peer] = lambda peer=peer: run_peer(  # type: ignore[misc]
                args.peers_python, peer.split(".")[0], args.repeat
            )
    # the engines take turns, `--rounds` times; each keeps its fastest round (the machine is
    # shared: the minimum is the least disturbed measurement, as timeit reports)
    results: dict[str, dict[str, Any]] = {}
    for _ in range(args.rounds):
        for name, run in runs.items():
            try:
                r = run()
            except subprocess.CalledProcessError as exc:
                print(f"{name}: failed: {exc.stderr[-500:]}", file=sys.stderr)
                continue
            if name not in results or r["seconds"] < results[name]["seconds"]:
                results[name] = r
    ours = results["dalal"]
    print(f"{'engine':16} {'bars':>8} {'seconds':>8} {'bars/s':>10}  trades  same trades as dalal")
    for name, r in results.items():
        same = sum(r["trades"][s] == ours["trades"][s] for s in SYMBOLS)  # type: ignore[index]
        n = sum(len(v) for v in r["trades"].values())  # type: ignore[union-attr]
        print(
            f"{name:16} {r['bars']:>8} {r['seconds']:>8.2f} {r['bars'] / r['seconds']:>10,.0f}"
            f"  {n:>6}  {same}/{len(SYMBOLS)} symbols"
        )
    if "backtrader" in results:
        ratio = (ours["bars"] / ours["seconds"]) / (
            results["backtrader"]["bars"] / results["backtrader"]["seconds"]
        )
        print(f"dalal / backtrader speed: {ratio:.1f}x (target >= 10x)")
        one = results["dalal (6 in one)"]
        ratio = (one["bars"] / one["seconds"]) / (
            results["backtrader"]["bars"] / results["backtrader"]["seconds"]
        )
        print(f"dalal (6 in one) / backtrader speed: {ratio:.1f}x")
    if "vectorbt" in results:  # the vectorised bound: no event loop at all
        ratio = (results["vectorbt"]["bars"] / results["vectorbt"]["seconds"]) / (
            ours["bars"] / ours["seconds"]
        )
        print(f"vectorbt / dalal speed: {ratio:.1f}x (the vectorised bound)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
