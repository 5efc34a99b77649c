"""`dalal backtest` wall time against a backtrader script's, on the same files, with the same
trades: the whole command as a user runs it (interpreter start, imports, reading the CSVs,
the backtest, the summary, `result.json` and `report.html`), not just the loop.

    .venv/bin/python bench/backtest_cli.py --peers-python /tmp/benchvenv/bin/python
    .venv/bin/python bench/backtest_cli.py --quick   # daily set only, 1 run each (make bench)

Both run `sma_cross(10, 30)`, long only, 10 shares, orders at the next bar's open, every symbol
in one run (one backtrader `Cerebro` with every feed; its `prenext` acts as `next`, so a feed
that starts later still trades). Sets: the 50 NIFTY stocks kitesim ships (daily, Kite-adjusted,
2020-10..2025-09) and a multi-symbol intraday set (15-minute bars of the stocks under
`../shared/data/nse/15minute` when that folder is there, else kitesim's three). Each command
runs `--runs` times, taking turns; the best of each is compared. The trades (entry and exit day
per symbol) must be the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAILY = ROOT / "services/kitesim/src/dalal_kitesim/data/nse/day"
SHARED_15M = ROOT.parent / "shared/data/nse/15minute"
KITESIM_15M = ROOT / "services/kitesim/src/dalal_kitesim/data/nse/15minute"
DALAL = Path(sys.executable).with_name("dalal")

BACKTRADER = r"""
import json, sys
import pandas as pd
import backtrader as bt
data_dir, symbols, intraday = sys.argv[1], sys.argv[2].split(","), sys.argv[3] == "1"
LOG = {}
class Cross(bt.Strategy):
    def __init__(self):
        self.x = {d._name: bt.ind.CrossOver(bt.ind.SMA(d.close, period=10), bt.ind.SMA(d.close, period=30)) for d in self.datas}
    def prenext(self):
        self.next()
    def next(self):
        for d in self.datas:
            if len(d) < 30: continue
            pos = self.getposition(d).size
            x = self.x[d._name][0]
            if not pos and x > 0: self.buy(data=d, size=10)
            elif pos and x < 0: self.close(data=d)
    def notify_trade(self, t):
        if t.isclosed:
            LOG.setdefault(t.data._name, []).append([str(bt.num2date(t.dtopen).date()), str(bt.num2date(t.dtclose).date())])
c = bt.Cerebro(stdstats=False); c.broker.setcash(1e12)
for s in symbols:
    path = f"{data_dir}/{s}.csv"
    df = pd.read_csv(path if __import__("os").path.exists(path) else path + ".gz", parse_dates=["date"], index_col="date")
    if intraday:
        df.index = df.index.tz_localize(None)
    c.adddata(bt.feeds.PandasData(dataname=df, timeframe=bt.TimeFrame.Minutes if intraday else bt.TimeFrame.Days, compression=15 if intraday else 1), name=s)
c.addstrategy(Cross)
c.run()
print(json.dumps(LOG))
"""  # noqa: E501  (the peer script, run by the peers' python)

CONFIG = """
name: bench
strategy: sma_cross
interval: {interval}
universe: [{universe}]
params: {{fast_bars: 10, slow_bars: 30, fixed_quantity: 10}}
risk:
  max_open_positions: {n}
  max_orders_per_minute: 200
  max_daily_loss_rupees: 1000000000000
  max_position_pct_of_equity: 100
  enforce_market_hours: false
"""


def symbols_in(folder: Path) -> list[str]:
    return sorted(
        p.name.split(".")[0] for p in folder.glob("*.csv*") if not p.name.startswith("NIFTY")
    )


def run_dalal(folder: Path, symbols: list[str], interval: str, work: Path) -> tuple[float, Any]:
    config = work / f"{interval}.yaml"
    config.write_text(CONFIG.format(interval=interval, universe=", ".join(symbols), n=len(symbols)))
    out = work / f"out-{interval}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cmd = [
        str(DALAL),
        "backtest",
        "--config",
        str(config),
        "--data-dir",
        str(folder),
        "--from",
        "2020-10-01",
        "--to",
        "2025-09-30",
        "--capital",
        "1000000000000",
        "--interval",
        interval,
        "--out",
        str(out),
        "--market-protection",
        "0",
    ]  # fmt: skip  (backtrader has no market protection)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - t0
    result = json.loads((out / "result.json").read_text())
    return seconds, result


def dalal_trades(result: dict[str, Any]) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for t in result["trades"]:
        out.setdefault(t["symbol"], []).append([t["opened_at"][:10], t["closed_at"][:10]])
    return out


def run_backtrader(
    python: str, folder: Path, symbols: list[str], intraday: bool
) -> tuple[float, Any]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [python, "-c", BACKTRADER, str(folder), ",".join(symbols), "1" if intraday else "0"],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - t0, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers-python", default="/tmp/benchvenv/bin/python")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if not Path(args.peers_python).exists():
        print(f"no backtrader python at {args.peers_python}: see bench/README.md (backtest)")
        return 0 if args.quick else 2
    intraday_dir = SHARED_15M if SHARED_15M.is_dir() else KITESIM_15M
    sets = [("50 NIFTY stocks, daily", DAILY, "day", False)]
    if not args.quick:
        sets.append(
            (f"{len(symbols_in(intraday_dir))} stocks, 15-minute", intraday_dir, "15minute", True)
        )
    runs = 1 if args.quick else args.runs
    ok = True
    print("| set | bars | dalal backtest (s) | backtrader script (s) | ratio | same trades |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-btcli-") as tmp:
        work = Path(tmp)
        for label, folder, interval, intraday in sets:
            symbols = symbols_in(folder)
            ours, theirs = [], []
            result: Any = None
            peer: Any = None
            for _ in range(runs):
                seconds, result = run_dalal(folder, symbols, interval, work)
                ours.append(seconds)
                seconds, peer = run_backtrader(args.peers_python, folder, symbols, intraday)
                theirs.append(seconds)
            mine = dalal_trades(result)
            same = sum(1 for s in symbols if mine.get(s, []) == peer.get(s, []))
            ok = ok and same == len(symbols)
            print(
                f"| {label} | {result['bars']:,} | {min(ours):.2f} | {min(theirs):.2f} | "
                f"**{min(theirs) / min(ours):.1f}x** | {same}/{len(symbols)} symbols |"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
