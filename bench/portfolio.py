"""Benchmark of the portfolio ledger and its HTTP API (issue 7).

Measures, in one run:

1. fills applied per second: the ledger alone (`Book.apply`, in memory), the ledger + its
   SQLite store (`PortfolioService.apply_fill`: one transaction per fill with its position's
   derived rows and outbox events), the same on PostgreSQL when 127.0.0.1:5432 answers, and,
   as the reference, the seed's approach (a `PortfolioManager` keeping a dict and rewriting
   `portfolio_state.json` on every fill), with the ratios;
2. `/positions` and `/portfolio` p50 / p99 / max latency under an open-loop load at a fixed
   rate (default 500 req/s, half to each route) against the portfolio service started as a
   process (one uvicorn worker) on the ledger written in step 1. Latency is measured from each
   request's scheduled time, so a stalled server cannot hide its queue (no coordinated
   omission). Target: p99 < 50 ms at 500 req/s.

Not a test: run it by hand. See bench/README.md (## portfolio) for a recorded run.

    .venv/bin/python bench/portfolio.py
    .venv/bin/python bench/portfolio.py --fills 5000 --rate 500 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from dalal_portfolio.ledger import Book, Fill
from dalal_portfolio.service import PortfolioService
from dalal_portfolio.store import LedgerStore
from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.testing import ServiceProcess

TARGET_P99_MS = 50.0
TARGET_RATE = 500.0  # req/s at which the p99 target applies
START = datetime(2025, 3, 3, 3, 50, tzinfo=UTC)
SYMBOLS = [
    "RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN", "ITC", "LT", "AXISBANK",
    "KOTAKBANK", "HINDUNILVR", "BHARTIARTL", "MARUTI", "TITAN", "WIPRO", "SUNPHARMA",
    "ULTRACEMCO", "NESTLEIND", "ASIANPAINT", "BAJFINANCE",
]  # fmt: skip


# ------------------------------------------------------------------ the recorded fills


def make_fills(n: int, symbols: int) -> list[Fill]:
    """Scale-ins and partial exits, CNC and MIS, each order filled in one or two trades."""
    names = SYMBOLS[:symbols]
    held = dict.fromkeys(names, 0)
    out: list[Fill] = []
    order = 0
    while len(out) < n:
        symbol = names[order % len(names)]
        side = "BUY" if held[symbol] < 20 or (order // len(names)) % 3 == 0 else "SELL"
        qty = 10
        held[symbol] += qty if side == "BUY" else -qty
        legs = 1 + order % 2
        for leg in range(legs):
            out.append(
                Fill(
                    trade_id=f"T{order:07d}{leg}",
                    client_order_id=f"c{order}",
                    broker_order_id=f"b{order}",
                    exchange="NSE",
                    symbol=symbol,
                    side=side,  # type: ignore[arg-type]
                    product="CNC",
                    quantity=qty // legs,
                    price=Decimal(1000 + (order * 7) % 53) + Decimal(leg) / 4,
                    filled_at=START + timedelta(seconds=30 * order + leg),
                )
            )
        order += 1
    return out[:n]


# ------------------------------------------------------------------ the seed's approach


class SeedPortfolioManager:
    """The seed's PortfolioManager, reduced to what a fill does: update the dict of positions
    (average price, partial exits, closed positions with P&L) and rewrite the whole
    `portfolio_state.json` (json.dump, indent=2) on every fill."""

    def __init__(self, path: Path, initial_capital: float):
        self.path = path
        self.initial_capital = initial_capital
        self.current_capital = initial_capital
        self.positions: dict[str, dict[str, Any]] = {}
        self.closed_positions: list[dict[str, Any]] = []

    def on_fill(self, fill: Fill) -> None:
        price = float(fill.price)
        pos = self.positions.get(fill.symbol)
        if fill.side == "BUY":
            if pos is None:
                self.positions[fill.symbol] = {
                    "symbol": fill.symbol, "entry_price": price, "qty": fill.quantity,
                    "entry_time": fill.filled_at.isoformat(), "partial_exit_1": False,
                    "partial_exit_2": False,
                }  # fmt: skip
            else:
                qty = pos["qty"] + fill.quantity
                pos["entry_price"] = (pos["entry_price"] * pos["qty"] + price * fill.quantity) / qty
                pos["qty"] = qty
            self.current_capital -= price * fill.quantity
        elif pos is not None:
            qty = min(fill.quantity, pos["qty"])
            pnl = (price - pos["entry_price"]) * qty
            self.current_capital += price * qty
            pos["qty"] -= qty
            if pos["qty"] == 0:
                self.closed_positions.append(
                    {**pos, "qty": qty, "exit_price": price,
                     "exit_time": fill.filled_at.isoformat(), "exit_reason": "signal",
                     "pnl": pnl, "pnl_pct": (price - pos["entry_price"]) / pos["entry_price"]}
                )  # fmt: skip
                del self.positions[fill.symbol]
            elif not pos["partial_exit_1"]:
                pos["partial_exit_1"] = True
            else:
                pos["partial_exit_2"] = True
        self.save_state()

    def save_state(self) -> None:
        state = {
            "initial_capital": self.initial_capital,
            "current_capital": self.current_capital,
            "positions": self.positions,
            "closed_positions": self.closed_positions,
            "last_updated": datetime.now(UTC).isoformat(),
        }
        with self.path.open("w") as f:
            json.dump(state, f, indent=2)


# ------------------------------------------------------------------ fills per second


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_book(fills: list[Fill]) -> float:
    book = Book(Decimal("10000000"))
    t0 = time.perf_counter()
    for f in fills:
        book.apply(f)
    return rate(len(fills), time.perf_counter() - t0)


def bench_store(url: str, fills: list[Fill]) -> float:
    service = PortfolioService(LedgerStore.open(url), initial_capital=Decimal("10000000"))
    service.load()
    t0 = time.perf_counter()
    for f in fills:
        service.apply_fill(f)
    elapsed = time.perf_counter() - t0
    service.store.close()
    return rate(len(fills), elapsed)


def bench_seed(path: Path, fills: list[Fill]) -> float:
    manager = SeedPortfolioManager(path, 10_000_000.0)
    t0 = time.perf_counter()
    for f in fills:
        manager.on_fill(f)
    return rate(len(fills), time.perf_counter() - t0)


def postgres_url() -> str | None:
    """A fresh database on 127.0.0.1:5432 when it answers (trust auth), else None."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        import psycopg

        admin = os.environ.get(
            "DALAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        )
        name = f"dalal_bench_{os.getpid()}"
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{base}/{name}"
    except Exception as exc:
        print(f"# PostgreSQL: not measured ({type(exc).__name__}: {exc})"[:200])
        return None


def drop_postgres(url: str) -> None:
    import psycopg

    admin = os.environ.get(
        "DALAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


# ------------------------------------------------------------------ HTTP under load


@dataclass
class Latencies:
    samples: dict[str, list[float]]
    errors: int
    achieved_rate: float

    def pct(self, route: str, p: float) -> float:
        xs = sorted(self.samples[route])
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, int(p * len(xs)))]


async def load(base_url: str, rate_per_s: float, seconds: float, warmup: float) -> Latencies:
    routes = ["/positions", "/portfolio"]
    samples: dict[str, list[float]] = {r: [] for r in routes}
    errors = 0
    # a request not answered within 2 s counts as an error, so an overloaded server ends the
    # run in bounded time instead of queueing without end
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=2, headers=BENCH_AUTH
    ) as client:
        for r in routes:  # warm the connection pool and the service
            await client.get(r)

        async def one(route: str, scheduled: float, record: bool) -> None:
            nonlocal errors
            try:
                resp = await client.get(route)
                ok = resp.status_code == 200
            except httpx.HTTPError:
                ok = False
            if not record:
                return
            if ok:
                samples[route].append((time.perf_counter() - scheduled) * 1000)
            else:
                errors += 1

        tasks: list[asyncio.Task[None]] = []
        total = int(rate_per_s * (seconds + warmup))
        start = time.perf_counter() + 0.05
        for i in range(total):
            scheduled = start + i / rate_per_s
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            record = i >= rate_per_s * warmup
            tasks.append(asyncio.create_task(one(routes[i % 2], scheduled, record)))
        sent_for = time.perf_counter() - start
        await asyncio.gather(*tasks)
    return Latencies(samples, errors, total / sent_for)


WRK_SCRIPT = r"""
local i = 0
request = function()
  i = i + 1
  if i % 2 == 0 then return wrk.format("GET", "/positions") end
  return wrk.format("GET", "/portfolio")
end
delay = function() return DELAY_MS end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_load(
    base_url: str, rate_per_s: float, seconds: float, connections: int, latency_ms: float = 0.0
) -> dict[str, float]:
    """`wrk` (C, one thread) paced to `rate_per_s` in all: each of `connections` connections
    waits connections/rate seconds (less `latency_ms`, the typical answer time measured in a
    warm-up) before each request, half to each route. When the server cannot keep up the
    achieved rate falls below the offered one (reported, and the target is then missed);
    latency is from each request's send."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        delay_ms = max(0.0, 1000.0 * connections / rate_per_s - latency_ms)
        script.write(WRK_SCRIPT.replace("DELAY_MS", f"{delay_ms:.3f}"))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "2s",
             "-H", f"Authorization: Bearer {BENCH_KEY}", "-s", script.name, base_url],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    data = json.loads(line[4:])
    return {
        "sent_per_s": data["requests"] / (data["duration_us"] / 1e6),
        "ok": data["requests"] - data["errors"],
        "errors": data["errors"],
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "max_ms": data["max_us"] / 1000,
    }


BENCH_KEY = "bench-key-0123456789abcdef"
BENCH_AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}  # reads need the key too


def start_service(db_url: str, redis_url: str, log: Path) -> ServiceProcess:
    port = free_port()
    proc = ServiceProcess(
        "dalal_portfolio",
        env={
            "DALAL_PORT": str(port),
            "DALAL_REDIS_URL": redis_url,
            "DALAL_DATABASE_URL": db_url,
            "DALAL_API_KEY": BENCH_KEY,
            "DALAL_LOG_FORMAT": "json",
            "DALAL_LOG_LEVEL": "WARNING",
            "DALAL_EQUITY_SNAPSHOT_INTERVAL_SECONDS": "3600",
            "DALAL_BROKER_URL": f"http://127.0.0.1:{free_port()}",
        },
        log_path=log,
        port=port,
    ).start()
    proc.wait_healthy(timeout=60)
    return proc


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fills", type=int, default=3000, help="fills per fills/s run")
    p.add_argument("--symbols", type=int, default=20, choices=range(1, len(SYMBOLS) + 1),
                   metavar="1..20")  # fmt: skip
    p.add_argument("--rates", default="500,200", help="requests/s offered, one run each")
    p.add_argument("--seconds", type=float, default=20.0, help="measured load duration")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured load before")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--connections", type=int, default=16, help="wrk connections")
    p.add_argument("--python-load", action="store_true",
                   help="use the Python load generator even when wrk is installed")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a SIGTERM (timeout, Ctrl-C from a supervisor) still stops the service and Redis
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    fills = make_fills(args.fills, args.symbols)
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
          f"{os.cpu_count()} cores, {args.fills} fills over {args.symbols} symbols")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dalal-bench-portfolio-") as tmp_name:
        tmp = Path(tmp_name)
        results: dict[str, float] = {}
        results["ledger (in memory)"] = bench_book(fills)
        sqlite_url = f"sqlite:///{tmp}/ledger.sqlite3"
        results["ledger + SQLite store"] = bench_store(sqlite_url, fills)
        pg = None if args.no_postgres else postgres_url()
        if pg is not None:
            try:
                results["ledger + PostgreSQL store"] = bench_store(pg, fills)
            finally:
                drop_postgres(pg)
        results["seed: JSON rewritten per fill"] = bench_seed(tmp / "portfolio_state.json", fills)
        seed = results["seed: JSON rewritten per fill"]
        print("\n| fills applied | fills/s | vs seed JSON |\n|---|---:|---:|")
        for name, value in results.items():
            print(f"| {name} | {value:,.0f} | {value / seed:.2f}x |")

        redis = EmbeddedRedis(tmp / "redis", free_port(), appendonly=False)
        redis.start()
        proc = None
        try:
            proc = start_service(sqlite_url, redis.url, tmp / "portfolio.log")
            n_pos = len(
                httpx.get(f"{proc.base_url}/positions", headers=BENCH_AUTH, timeout=10).json()[
                    "positions"
                ]
            )
            rates = [float(x) for x in args.rates.split(",")]
            use_wrk = shutil.which("wrk") is not None and not args.python_load
            if use_wrk:
                wrk_runs = []
                for r in rates:  # a warm-up (not recorded) measures the answer time to pace by
                    warm = wrk_load(proc.base_url, r, max(2.0, args.warmup), args.connections)
                    wrk_runs.append(
                        (r, wrk_load(proc.base_url, r, args.seconds, args.connections,
                                     latency_ms=warm["p50_ms"]))
                    )  # fmt: skip
            else:
                runs = [
                    (r, asyncio.run(load(proc.base_url, r, args.seconds, args.warmup)))
                    for r in rates
                ]
        finally:
            if proc is not None:
                proc.stop()
            redis.stop()
    print(f"\none worker, {n_pos} open positions, {args.fills} fills in the ledger, "
          f"{args.seconds:.0f} s measured per rate (2 s timeout = error)")  # fmt: skip
    if use_wrk:
        print(f"load generator: wrk, {args.connections} connections paced to the offered rate, "
              "/positions and /portfolio alternating")  # fmt: skip
        print("\n| offered req/s | sent/s | ok | errors | p50 ms | p99 ms | max ms |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        ok = True
        for offered, w in wrk_runs:
            if offered == TARGET_RATE:
                ok = ok and w["errors"] == 0 and w["p99_ms"] < TARGET_P99_MS
                ok = ok and w["sent_per_s"] >= 0.95 * offered
            print(f"| {offered:.0f} | {w['sent_per_s']:.0f} | {w['ok']:.0f} | {w['errors']:.0f} | "
                  f"{w['p50_ms']:.1f} | {w['p99_ms']:.1f} | {w['max_ms']:.1f} |")  # fmt: skip
        print(f"\ntarget p99 < {TARGET_P99_MS:.0f} ms at 500 req/s: {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    print("load generator: Python (httpx, asyncio; install `wrk` for a faster one)")
    print("\n| offered req/s | sent/s | route | ok | errors | p50 ms | p99 ms | max ms |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    ok = True
    for offered, lat in runs:
        for route, xs in lat.samples.items():
            p50 = statistics.median(xs) if xs else float("nan")
            top = max(xs) if xs else float("nan")
            p99 = lat.pct(route, 0.99)
            if offered == TARGET_RATE:
                ok = ok and lat.errors == 0 and p99 < TARGET_P99_MS
            print(f"| {offered:.0f} | {lat.achieved_rate:.0f} | {route} | {len(xs)} | "
                  f"{lat.errors} | {p50:.1f} | {p99:.1f} | {top:.1f} |")  # fmt: skip
    print(f"\ntarget p99 < {TARGET_P99_MS:.0f} ms at 500 req/s: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
