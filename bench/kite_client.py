"""Reading a busy day's order and trade books, and a backfill's candles: the official
`kiteconnect` client's `_format_response` and `_format_historical` against `DalalKite`'s
(`dalal_shared.kitehttp`), on the same lists, in one run. The broker reads both books whole
every 2 s while an order is live (`OrderDesk.sync`) and the trade book at each sweep; Kite
allows 3,000 orders a day. The data service's backfill asks for up to 60 days of minute candles
a call (~22,500). The rows are Kite's recorded ones (`shared/tests/fixtures/kite`), repeated to
size; the results are checked equal.

    .venv/bin/python bench/kite_client.py                  # 300 and 3,000 orders (and trades)
    .venv/bin/python bench/kite_client.py --quick          # 300
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

from kiteconnect import KiteConnect

from dalal_shared.kitehttp import DalalKite

FIXTURES = Path(__file__).resolve().parents[1] / "shared/tests/fixtures/kite"


def book(name: str, size: int) -> list[dict[str, Any]]:
    recorded = json.loads((FIXTURES / name).read_text())["data"]
    return [copy.deepcopy(recorded[i % len(recorded)]) for i in range(size)]


def timed(client: Any, rows: Any, method: str = "_format_response") -> tuple[float, Any]:
    data = copy.deepcopy(rows)  # the client writes the parsed times into the rows
    t = time.perf_counter()
    out = getattr(client, method)(data)
    return time.perf_counter() - t, out


def candles(size: int) -> dict[str, Any]:
    recorded = json.loads((FIXTURES / "historical_minute.json").read_text())["data"]["candles"]
    return {"candles": [list(recorded[i % len(recorded)]) for i in range(size)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="300,3000", help="orders in the day (default 300,3000)")
    ap.add_argument("--quick", action="store_true", help="300 only")
    args = ap.parse_args()
    sizes = [300] if args.quick else [int(s) for s in args.sizes.split(",")]
    official, ours = KiteConnect("bench"), DalalKite("bench")
    for size in sizes:
        for name in ("orders.json", "trades.json"):
            rows = book(name, size)
            best_theirs = best_ours = float("inf")
            for _ in range(3):  # taking turns, best of three
                t_theirs, theirs = timed(official, rows)
                t_ours, mine = timed(ours, rows)
                assert mine == theirs, "DalalKite parsed a book differently"
                best_theirs, best_ours = min(best_theirs, t_theirs), min(best_ours, t_ours)
            print(
                f"{size:>5} {name.split('.')[0]:<6}  official {best_theirs * 1000:7.1f} ms  "
                f"DalalKite {best_ours * 1000:6.2f} ms  {best_theirs / best_ours:5.1f}x"
            )
    rows = candles(22_500 if not args.quick else 2_000)
    best_theirs = best_ours = float("inf")
    for _ in range(3):
        t_theirs, theirs = timed(official, rows, "_format_historical")
        t_ours, mine = timed(ours, rows, "_format_historical")
        assert mine == theirs and repr(mine) == repr(theirs), "DalalKite read candles differently"
        best_theirs, best_ours = min(best_theirs, t_theirs), min(best_ours, t_ours)
    print(
        f"{len(rows['candles']):>5} candles official {best_theirs * 1000:7.1f} ms  "
        f"DalalKite {best_ours * 1000:6.2f} ms  {best_theirs / best_ours:5.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
