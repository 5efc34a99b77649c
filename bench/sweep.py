"""Sweep throughput: grid points per second of one parameter sweep run three ways on the same
bars, in one run: in one process, one point after another (`dalal sweep --local`, what a
single-process optimiser such as freqtrade's hyperopt without workers does), and through the
engine API on 1 and on 2 engine workers (`POST /sweeps`: real processes, an embedded Redis,
SQLite). Every way must give the same best point and the same metrics per point.

    .venv/bin/python bench/sweep.py          # swing, 36 points, the 50 NIFTY stocks, daily 2021-25
    .venv/bin/python bench/sweep.py --quick  # sma_cross, 9 points, 6 stocks (make bench)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from dalal_engine import sweeps
from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.testing import ServiceProcess, wait_until

DATA = Path(__file__).resolve().parents[1] / "services/kitesim/src/dalal_kitesim/data/nse/day"
# the NIFTY 50 stocks kitesim ships (daily, 2020-10..2025-09), not the index
SYMBOLS = sorted(
    p.name.split(".")[0] for p in DATA.glob("*.csv*") if not p.name.startswith("NIFTY")
)
QUICK = ["RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN"]
KEY = "bench-sweep-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def body(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "strategy": "sma_cross",
            "symbols": QUICK,
            "from": "2021-01-01",
            "to": "2025-09-30",
            "grid": {"fast_bars": [5, 10, 20], "slow_bars": [30, 50, 70]},
            "objective": "sharpe",
        }
    return {  # swing over the whole index: a research-sized point (~0.5 s each)
        "strategy": "swing",
        "symbols": SYMBOLS,
        "from": "2021-01-01",
        "to": "2025-09-30",
        "grid": {
            "stop_atr_multiple": [1.5, 2.0, 2.5, 3.0],
            "trail_atr_multiple": [2.0, 3.0, 4.0],
            "time_stop_bars": [10, 20, 40],
        },
        "objective": "sharpe",
    }


def by_point(trials: list[dict[str, Any]]) -> dict[str, Any]:
    return {json.dumps(t["params"], sort_keys=True): t["metrics"] for t in trials}


def run_local(request: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    sweeps.BARS = sweeps.BarCache()  # loading the bars counts, as on a fresh worker
    t0 = time.perf_counter()
    trials = sweeps.run_local(sweeps.parse_sweep(request), cache_dir=None, data_dir=DATA)
    return time.perf_counter() - t0, trials


def run_workers(
    request: dict[str, Any], n_workers: int, work: Path
) -> tuple[float, dict[str, Any]]:
    redis = EmbeddedRedis(work / f"redis-{n_workers}", free_port(), appendonly=False)
    redis.start()
    env = {
        "DALAL_REDIS_URL": redis.url,
        "DALAL_DATABASE_URL": f"sqlite:///{work}/engine-{n_workers}.sqlite3",
        "DALAL_BACKTEST_DATA_DIR": str(DATA),
        "DALAL_BACKTESTS_DIR": str(work / "backtests"),
        "DALAL_API_KEY": KEY,
        "DALAL_LOG_FORMAT": "json",
    }
    procs: list[ServiceProcess] = []
    try:
        engine_port = free_port()
        engine = ServiceProcess(
            "dalal_engine",
            env={**env, "DALAL_PORT": str(engine_port)},
            log_path=work / f"engine-{n_workers}.log",
            port=engine_port,
        ).start()
        procs.append(engine)
        for i in range(n_workers):
            port = free_port()
            procs.append(
                ServiceProcess(
                    "dalal_engine.worker",
                    env={**env, "DALAL_METRICS_PORT": str(port)},
                    log_path=work / f"worker-{n_workers}-{i}.log",
                    port=port,
                ).start()
            )
        for p in procs:
            p.wait_healthy(timeout=60)
        url = engine.base_url
        t0 = time.perf_counter()
        sid = httpx.post(f"{url}/sweeps", json=request, headers=AUTH).json()["id"]

        def finished() -> dict[str, Any] | None:
            got = httpx.get(f"{url}/sweeps/{sid}", params={"top": 5000}, headers=AUTH).json()
            return got if got["status"] in ("done", "failed") else None

        done = wait_until(finished, timeout=900, interval=0.05, message="the sweep done")
        return time.perf_counter() - t0, done
    finally:
        for p in procs:
            p.stop()
        redis.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="sma_cross, 9 points on 6 stocks")
    args = ap.parse_args()
    request = body(args.quick)
    points = sweeps.parse_sweep(request).points_count()
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        local_s, local = run_local(request)
        expected = by_point(local)
        best = sweeps.ranked(local, "sharpe")[0]["params"]
        rows = [("one process (--local)", local_s, 1, True)]
        for n in (1, 2):
            seconds, done = run_workers(request, n, work)
            same = (
                done["status"] == "done"
                and by_point(done["results"]) == expected
                and done["best"]["params"] == best
            )
            rows.append(
                (f"{n} engine worker(s), POST /sweeps", seconds, len(done["workers"]), same)
            )
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    n_symbols = len(request["symbols"])
    print(f"sweep: {request['strategy']}, {points} points, {n_symbols} symbols, daily 2021-2025")
    print(f"best point: {best}")
    print("| way | seconds | points/s | workers used | same results as one process |")
    print("|---|---|---|---|---|")
    for name, seconds, used, same in rows:
        rate = points / seconds
        print(f"| {name} | {seconds:.2f} | {rate:.1f} | {used} | {'yes' if same else 'NO'} |")
    one, two = rows[1][1], rows[2][1]
    print(f"2 workers / 1 worker: {one / two:.2f}x; 2 workers / one process: {local_s / two:.2f}x")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
