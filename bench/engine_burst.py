"""The engine's minute burst in one process: what the bars handler's worker-thread step does
when a minute closes (`LiveEngine.on_bars` over 50 symbols' bars, 5 of them traded by
`sma_cross` 1 over 2, then the outbox's read of the orders to publish), on a SQLite file, with
every order accepted and filled before the next minute. Prints the step's time per burst that
ordered something (p50, p90, max) after a warm-up.

`--gap S`: the process sleeps S seconds before each minute, as the engine does between minutes
in the stack (3 s at 1,000 ticks/s, 60 s live). The same step takes about twice as long after
half a second idle as back to back on this VM (caches and a halted CPU gone cold): the in-stack
step is the gap figure, not the back-to-back one.

A script, not a test. Compare two versions of the code by running this file with the other
one's sources first on `PYTHONPATH` (a `git worktree`), taking turns:

    .venv/bin/python bench/engine_burst.py                 # 400 minutes
    .venv/bin/python bench/engine_burst.py --minutes 120   # make bench
    .venv/bin/python bench/engine_burst.py --gap 0.5 --history 20000   # as after weeks live
    .venv/bin/python bench/engine_burst.py --sqlite-checkpoints   # SQLite's own, inside commits

The store checkpoints its SQLite log after each minute, outside the step's time, as the
engine's bars handler does once the orders are out (ADR 0028); `--sqlite-checkpoints` leaves
that to SQLite, which does it inside whichever commit takes the log past 1,000 pages.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

from dalal_engine.handlers import freeze_histories
from dalal_engine.live import LiveEngine
from dalal_engine.store import EngineStore, StoredBar
from dalal_engine.strategyconfig import load_text
from dalal_shared.messages import Bar, OrderAccepted, OrderFilled

SAFETY_KNOWN = ("kill_switch", "session", "equity")
SYMBOLS = [f"S{i:02d}" for i in range(50)]
CONFIG = """
name: burst
strategy: sma_cross
interval: minute
universe: [{universe}]
params: {{fast_bars: 1, slow_bars: 2, fixed_quantity: 1}}
risk: {{enforce_market_hours: false, max_orders_per_minute: 200, max_open_positions: 50}}
"""
WARMUP_MINUTES = 50


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=int, default=400, help="minute bursts (default 400)")
    ap.add_argument("--traded", type=int, default=5, help="symbols the strategy trades")
    ap.add_argument(
        "--gap", type=float, default=0.0, help="seconds idle before each minute (default 0)"
    )
    ap.add_argument(
        "--history",
        type=int,
        default=0,
        help="minute bars stored for each traded symbol before the first (default 0; the "
        "engine keeps up to 20,000: a few weeks of minute bars)",
    )
    ap.add_argument(
        "--sqlite-checkpoints",
        action="store_true",
        help="leave the write-ahead log's checkpoints to SQLite (inside whichever commit takes "
        "the log past 1,000 pages), as before the engine checkpointed between minutes",
    )
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    live = LiveEngine(
        load_text(CONFIG.format(universe=", ".join(SYMBOLS[: args.traded]))),
        EngineStore.open(
            f"sqlite:///{folder / 'engine.sqlite3'}", own_checkpoints=not args.sqlite_checkpoints
        ),
        initial_equity_rupees=Decimal("10000000"),
        safety_known=SAFETY_KNOWN,
    )
    rng = np.random.default_rng(3)  # seeded: the same prices and orders every run
    price = dict.fromkeys(SYMBOLS, 1000.0)
    first = datetime(2026, 12, 1, 3, 45, tzinfo=UTC)
    if args.history:  # what a running engine holds after weeks: read with the first bar
        live.store.store_bars(
            [
                ("NSE", symbol, "minute", bar)
                for symbol in SYMBOLS[: args.traded]
                for bar in _past_bars(rng, first, args.history)
            ]
        )
    live.start()
    times: list[float] = []
    orders = 0
    for minute in range(args.minutes):
        start = first + timedelta(minutes=minute)
        bars = []
        for symbol in SYMBOLS:
            p = price[symbol] = round(price[symbol] * (1 + rng.normal(0, 0.002)) * 20) / 20
            close = Decimal(str(p))
            bar = Bar(
                symbol=symbol,
                interval="minute",
                start=start,
                open=close,
                high=close + 1,
                low=close - 1,
                close=close,
                volume=100,
            )
            bars.append((bar, f"tick-{minute}-{symbol}"))
        if args.gap:
            time.sleep(args.gap)
        began = time.perf_counter()
        out = live.on_bars(bars, defer_quiet=True)  # as the bars handler does
        commands = live.store.unpublished() if out.orders else []
        took = time.perf_counter() - began
        if commands:
            live.store.mark_published(*(c.client_order_id for c in commands))
        live.store.store_bars(live.settle_quiet(out))
        freeze_histories(live)  # as the bars handler does once the orders are out
        if not args.sqlite_checkpoints:
            live.store.checkpoint()  # as the bars handler starts once the orders are out
        if minute >= WARMUP_MINUTES and out.orders:
            times.append(took)
            orders += len(out.orders)
        for order in out.orders:  # accepted and filled at the close before the next minute
            coid = order.client_order_id
            live.on_order_event(OrderAccepted(client_order_id=coid, broker_order_id=f"K-{coid}"))
            live.on_order_event(
                OrderFilled(
                    client_order_id=coid,
                    broker_order_id=f"K-{coid}",
                    trade_id=f"T-{coid}",
                    symbol=order.symbol,
                    side=order.side,
                    product="CNC",
                    quantity=order.quantity,
                    price=Decimal(str(price[order.symbol])),
                    filled_at=start,
                )
            )
    if not times:
        print("no burst ordered anything: nothing to report")
        return 1
    times.sort()
    ms = [t * 1000 for t in times]
    print(
        f"{len(SYMBOLS)} bars a minute, {args.traded} traded: {len(times)} bursts with orders "
        f"({orders} orders) after {WARMUP_MINUTES} warm-up minutes, {args.gap:g} s idle before each"
    )
    print(
        f"step per burst (ms): p50 {ms[len(ms) // 2]:.2f}  p90 {ms[int(len(ms) * 0.9)]:.2f}  "
        f"p99 {ms[int(len(ms) * 0.99)]:.2f}  max {ms[-1]:.2f}"
    )
    return 0


def _past_bars(rng: np.random.Generator, before: datetime, n: int) -> list[StoredBar]:
    """`n` minute bars of a random walk on the Rs 0.05 grid ending at 1,000 the minute before
    `before`."""
    steps = np.round(np.cumsum(rng.normal(0, 0.002, n)[::-1]) * 1000 * 20) / 20
    return [
        StoredBar(before - timedelta(minutes=n - i), c, c + 1, c - 1, c, 100)
        for i, c in enumerate((1000.0 + steps[::-1]).tolist())
    ]


if __name__ == "__main__":
    raise SystemExit(main())
