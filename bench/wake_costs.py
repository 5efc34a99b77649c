"""What a pause costs the first work after it, on this host: small operations of the engine's
step (a Python loop, dict lookups, `json.dumps`, a syscall, a SQLite insert and commit, a
SQLAlchemy transaction, a pydantic model) timed back to back and again, each after the process
slept `--gap` seconds. Prints both medians and their ratio, measured in one run.

Why: the live engine sleeps between minute bars (60 s live, ~3 s in `bench/latency_rates.py` at
1,000 ticks/s), and on some virtual machines (a vCPU that halts when idle, its caches used by
others meanwhile) every piece of code and data touched first after a pause costs many times its
warm cost. The engine's minute step then takes about twice its back-to-back time
(`bench/engine_burst.py --gap 0.5`), and the way to a shorter tick -> order on such a host is to
touch fewer distinct things before the order is out, not to run the same things faster.

    .venv/bin/python bench/wake_costs.py               # 0.2 s pauses, 40 of each
    .venv/bin/python bench/wake_costs.py --gap 1 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from dalal_shared import db
from dalal_shared.messages import PlaceOrder


def operations(folder: Path) -> list[tuple[str, Callable[[], object]]]:
    table = {f"k{i}": i for i in range(2000)}
    null = os.open(os.devnull, os.O_WRONLY)
    lite = sqlite3.connect(folder / "driver.sqlite3")
    lite.execute("PRAGMA journal_mode=WAL")
    lite.execute("PRAGMA synchronous=NORMAL")
    lite.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    lite.commit()
    engine = db.make_engine(f"sqlite:///{folder / 'alchemy.sqlite3'}")
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (a INTEGER, b TEXT)")
    state = {"fast": [1.5, 2.5, 3.5], "side": "BUY", "at": "2026-12-06T09:15:00+05:30"}

    def python_loop() -> int:
        return sum(i * i for i in range(300))

    def dict_lookups() -> int:
        return sum(table[f"k{i}"] for i in range(0, 2000, 7))

    def syscalls() -> None:
        for _ in range(10):
            os.write(null, b"x")

    def json_dumps() -> str:
        return json.dumps(state)

    def sqlite_commit() -> None:
        lite.execute("INSERT INTO t VALUES (1, 'x')")
        lite.commit()

    def sqlalchemy_transaction() -> None:
        with engine.begin() as c:
            c.exec_driver_sql("INSERT INTO t VALUES (1, 'x')")

    def pydantic_order() -> str:
        return PlaceOrder(
            client_order_id="E-1a2b3c4d5e6f",
            exchange="NSE",
            symbol="INFY",
            side="BUY",
            quantity=1,
            product="CNC",
            strategy="sma",
        ).model_dump_json()

    def decimal_and_time() -> str:
        return f"{Decimal('1512.35') * 3:.2f} {datetime.now(UTC).isoformat()}"

    return [
        ("python loop (300 steps)", python_loop),
        ("dict lookups (286)", dict_lookups),
        ("10 write syscalls", syscalls),
        ("json.dumps of a state", json_dumps),
        ("Decimal and isoformat", decimal_and_time),
        ("pydantic PlaceOrder to JSON", pydantic_order),
        ("SQLite insert + commit", sqlite_commit),
        ("SQLAlchemy begin/insert/commit", sqlalchemy_transaction),
    ]


def median_us(fn: Callable[[], object], repeats: int, gap: float) -> float:
    took = []
    for _ in range(repeats + 5):
        if gap:
            time.sleep(gap)
        began = time.perf_counter()
        fn()
        took.append(time.perf_counter() - began)
    return statistics.median(took[5:]) * 1e6  # the first few: imports and first compiles


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gap", type=float, default=0.2, help="seconds asleep before each (0.2)")
    ap.add_argument("--repeats", type=int, default=40, help="timings of each (40)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-wake-") as folder:
        ops = operations(Path(folder))
        print(f"{'operation':34s} {'back to back':>14s} {f'after {args.gap} s':>14s} {'ratio':>7s}")
        ratios = []
        for name, fn in ops:
            warm = median_us(fn, args.repeats, 0)
            cold = median_us(fn, args.repeats, args.gap)
            ratios.append(cold / warm)
            print(f"{name:34s} {warm:11.1f} us {cold:11.1f} us {cold / warm:6.1f}x")
        print(f"median ratio {statistics.median(ratios):.1f}x (1x: a pause costs nothing here)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
