"""A bus read's orders journaled by the broker: one transaction per order (as until issue 20's
seventeenth round) against one transaction for the read (`Journal.insert_many`, what
`OrderDesk.place_many` does now), on a SQLite file and, where one answers, on PostgreSQL
(`DALAL_TEST_POSTGRES_URL`, default `postgresql://postgres@127.0.0.1:5432/postgres`: a
throwaway database, dropped after). Prints the time to journal a read of N orders, p50 / p90,
and the ratio, measured in one run taking turns.

This is the journal alone, in one thread. In the broker the difference is larger than here:
one by one, each insert was its own turn on the journal's thread, waking it and handing the
row back to the event loop, between the Kite calls of the orders before it.

    .venv/bin/python bench/journal_batch.py                # reads of 2 and 5 orders, 200 each
    .venv/bin/python bench/journal_batch.py --quick
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from collections.abc import Callable

from dalal_broker.journal import PENDING, Journal, NewOrder
from dalal_shared import db
from dalal_shared.messages import PlaceOrder

ADMIN_URL = os.environ.get(
    "DALAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def order(n: int) -> PlaceOrder:
    return PlaceOrder(
        client_order_id=f"B{n:012d}",
        symbol="INFY",
        side="BUY",
        quantity=1,
        order_type="MARKET",
        product="CNC",
        strategy="bench",
    )


def measure(journal: Journal, size: int, reads: int) -> tuple[list[float], list[float]]:
    """Seconds per read of `size` orders: one by one, then in one transaction, taking turns."""
    serial: list[float] = []
    batched: list[float] = []
    n = 0
    for _ in range(reads):
        t = time.perf_counter()
        for k in range(size):
            journal.insert(order(n + k), corr="c", status=PENDING, send_attempts=1)
        serial.append(time.perf_counter() - t)
        n += size
        entries = [NewOrder(order(n + k), "c", PENDING, send_attempts=1) for k in range(size)]
        t = time.perf_counter()
        journal.insert_many(entries)
        batched.append(time.perf_counter() - t)
        n += size
    return serial, batched


def q(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def report(name: str, journal: Journal, sizes: list[int], reads: int) -> None:
    measure(journal, max(sizes), 10)  # warm-up: statements compiled, pages cached
    for size in sizes:
        serial, batched = measure(journal, size, reads)
        print(
            f"{name:<11} {size:>2} orders  one by one p50 {q(serial, 0.5):6.2f} p90 "
            f"{q(serial, 0.9):6.2f} ms | one transaction p50 {q(batched, 0.5):6.2f} p90 "
            f"{q(batched, 0.9):6.2f} ms | {q(serial, 0.5) / q(batched, 0.5):4.1f}x"
        )


def with_postgres(run: Callable[[str], None]) -> None:
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        admin = psycopg.connect(ADMIN_URL, connect_timeout=3, autocommit=True)
    except Exception as exc:  # no server here: the SQLite figures stand alone
        print(f"PostgreSQL      not reachable at {ADMIN_URL} ({type(exc).__name__}): skipped")
        return
    name = f"dalal_bench_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
            run(url.render_as_string(hide_password=False))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=200, help="reads per size (default 200)")
    ap.add_argument("--sizes", default="2,5", help="orders per read (default 2,5)")
    ap.add_argument("--quick", action="store_true", help="40 reads of 5 orders")
    args = ap.parse_args()
    sizes = [5] if args.quick else [int(s) for s in args.sizes.split(",")]
    reads = 40 if args.quick else args.reads

    def run(name: str, url: str) -> None:
        journal = Journal(db.make_engine(url))
        journal.migrate()
        try:
            report(name, journal, sizes, reads)
        finally:
            journal.engine.dispose()

    with tempfile.TemporaryDirectory(prefix="bench-journal-") as folder:
        run("SQLite", f"sqlite:///{folder}/journal.sqlite3")
    with_postgres(lambda url: run("PostgreSQL", url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
