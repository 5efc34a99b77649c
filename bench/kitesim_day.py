"""kitesim late in a busy day: what a tick and an order admission cost once thousands of the
day's orders are finished, against the same on an empty book, in one run.

A script, not a test. Two in-process simulators (no HTTP: the exchange's own work) replay the
same market. One first places `--finished` MIS MARKET orders and lets them fill; the other
places none. Both then get three resting LIMIT buys, replay `--seconds` of the session and
admit `--orders` more resting orders. Printed: microseconds per replayed tick and per order
admitted in each, and busy/empty (1.0x: the finished orders cost nothing).

    .venv/bin/python bench/kitesim_day.py                       # 8,000 finished orders
    .venv/bin/python bench/kitesim_day.py --finished 2000       # make bench
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal

from dalal_kitesim.app import Simulator
from dalal_kitesim.config import KitesimSettings

SYMBOLS = ("RELIANCE", "TCS", "INFY")


def order(symbol: str, side: str = "BUY", price: str | None = None) -> dict[str, str]:
    params = {
        "exchange": "NSE",
        "tradingsymbol": symbol,
        "transaction_type": side,
        "quantity": "1",
        "product": "MIS",
        "order_type": "MARKET",
        "market_protection": "5",
    }
    if price is not None:
        params.update(order_type="LIMIT", price=price)
        del params["market_protection"]
    return params


def measure(finished: int, seconds: float, orders: int) -> tuple[float, float, int]:
    """(us per tick, us per admitted order, orders in the day's book)."""
    sim = Simulator(
        KitesimSettings(
            kitesim_opening_balance_rupees=Decimal(10**12), kitesim_circuit_band_pct=Decimal(0)
        )
    )
    ex = sim.exchange
    sim.clock.advance(60)
    for k in range(finished):
        ex.place("regular", order(SYMBOLS[k % 3], "BUY" if k % 2 == 0 else "SELL"))
    sim.clock.advance(900)  # they fill at the next ticks
    still_open = sum(1 for o in ex.orders.values() if o.is_open)
    if still_open:
        raise SystemExit(f"{still_open} of the first orders did not fill: nothing to compare")
    for symbol in SYMBOLS:
        ex.place("regular", order(symbol, price="1"))  # rest all along
    began = time.perf_counter()
    ticks = sim.clock.advance(seconds)
    per_tick = (time.perf_counter() - began) / max(1, ticks) * 1e6
    began = time.perf_counter()
    for k in range(orders):
        ex.place("regular", order(SYMBOLS[k % 3], price="1"))
    per_order = (time.perf_counter() - began) / orders * 1e6
    return per_tick, per_order, len(ex.orders)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--finished", type=int, default=8_000, help="orders finished first")
    ap.add_argument("--seconds", type=float, default=1_800, help="session seconds replayed")
    ap.add_argument("--orders", type=int, default=300, help="orders admitted and timed")
    args = ap.parse_args()
    empty = measure(0, args.seconds, args.orders)
    busy = measure(args.finished, args.seconds, args.orders)
    print(f"kitesim, {args.finished:,} finished orders against none (in-process exchange)")
    print(f"{'':26}{'empty book':>12}{'busy book':>12}{'busy/empty':>12}")
    print(f"{'orders in the book':26}{empty[2]:>12,}{busy[2]:>12,}")
    print(
        f"{'us per replayed tick':26}{empty[0]:>12.1f}{busy[0]:>12.1f}{busy[0] / empty[0]:>11.2f}x"
    )
    print(
        f"{'us per order admitted':26}{empty[1]:>12.1f}{busy[1]:>12.1f}{busy[1] / empty[1]:>11.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
