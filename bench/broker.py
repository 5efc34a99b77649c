"""Broker benchmark: instrument lookups and order submission, ours against the seed's approach,
in one run, through kitesim (the official kiteconnect client over real HTTP).

* Instrument lookup. The seed downloads the whole instruments dump on every symbol lookup and
  scans it; the broker downloads it once a day into an O(1) master
  (`dalal_broker.instruments.InstrumentMaster`). Measured: lookups per second for the same
  symbols, and Kite calls made.
* Order submission. The seed calls `kite.place_order` directly: no journal, no idempotency, no
  guards. The broker journals the intent in SQL, checks its guards, takes a token from the shared
  Redis rate limiter and tags the order before calling Kite. Measured: submit latency p50/p99 of
  each (the price of exactly-once). Orders go one at a time, `--pace-ms` apart (not timed), so
  the broker's limiter (SEBI: 10 orders/s) never has to make one wait: back to back, every
  order would wait ~100 ms for its token, which is the limit working, not the submit path.
  The limiter's own wait is read from the broker's /metrics and printed.

Usage: .venv/bin/python bench/broker.py [--lookups 200] [--orders 60] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx
from kiteconnect import KiteConnect

from dalal_broker.instrument_store import _from_kite
from dalal_broker.instruments import InstrumentMaster
from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.testing import ServiceProcess, wait_until

KITE_KEY, KITE_SECRET = "kitesim_key", "kitesim_secret_0123456789"
API_KEY = "bench-broker-key-0123456789"
SYMBOLS = [
    "RELIANCE",
    "TCS",
    "INFY",
    "HDFCBANK",
    "ICICIBANK",
    "SBIN",
    "ITC",
    "LT",
    "M&M",
    "BAJAJ-AUTO",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def seed_lookup(kite: KiteConnect, symbol: str) -> int:
    """The seed's get_instrument_token: the whole dump, every time."""
    for row in kite.instruments("NSE"):
        if row["tradingsymbol"] == symbol:
            return int(row["instrument_token"])
    raise KeyError(symbol)


def limiter_wait_seconds(metrics: str) -> tuple[float, int]:
    """(total seconds, calls) the broker's order calls waited for a rate-limit token."""
    total, count = 0.0, 0
    for line in metrics.splitlines():
        if 'endpoint_class="orders"' not in line:
            continue
        if line.startswith("dalal_kite_ratelimit_wait_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("dalal_kite_ratelimit_wait_seconds_count"):
            count = int(float(line.rsplit(" ", 1)[1]))
    return total, count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lookups", type=int, default=200, help="symbol lookups per approach")
    parser.add_argument(
        "--seed-lookups",
        type=int,
        default=20,
        help="lookups timed for the seed approach (each downloads the dump)",
    )
    parser.add_argument("--orders", type=int, default=60, help="orders per approach")
    parser.add_argument(
        "--pace-ms", type=float, default=150, help="gap between orders (below 10/s)"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    if args.quick:
        args.lookups, args.seed_lookups, args.orders = 50, 5, 10

    work = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    redis = EmbeddedRedis(work / "redis", free_port(), appendonly=False)
    redis.start()
    sim_port, broker_port = free_port(), free_port()
    rates = {
        f"DALAL_KITESIM_RATE_{c}_PER_SECOND": "0"
        for c in ("QUOTE", "HISTORICAL", "ORDERS", "OTHER")
    }
    kitesim = ServiceProcess(
        "dalal_kitesim",
        env={
            "DALAL_PORT": str(sim_port),
            "DALAL_KITESIM_SESSION_SECONDS": "0",
            "DALAL_KITESIM_RATE_ORDERS_PER_MINUTE": "0",
            "DALAL_KITESIM_TOKEN_EXPIRY": "false",
            # orders priced far from the market on purpose (rest forever / cross at once): no
            # circuit limits (kitesim rejects those like Kite by default)
            "DALAL_KITESIM_CIRCUIT_BAND_PCT": "0",
            "DALAL_LOG_FORMAT": "json",
            **rates,
        },
        log_path=work / "kitesim.log",
        port=sim_port,
    ).start()
    broker = ServiceProcess(
        "dalal_broker",
        env={
            "DALAL_PORT": str(broker_port),
            "DALAL_REDIS_URL": redis.url,
            "DALAL_API_KEY": API_KEY,
            "DALAL_KITE_ROOT_URL": f"http://127.0.0.1:{sim_port}",
            "DALAL_KITE_API_KEY": KITE_KEY,
            "DALAL_KITE_API_SECRET": KITE_SECRET,
            "DALAL_DATABASE_URL": f"sqlite:///{work / 'broker.sqlite3'}",
            "DALAL_ENFORCE_MARKET_HOURS": "false",
            "DALAL_LOG_FORMAT": "json",
            "DALAL_MAX_ORDER_VALUE_RUPEES": "100000000",
        },
        log_path=work / "broker.log",
        port=broker_port,
    )
    try:
        kitesim.wait_healthy(60)
        sim = f"http://127.0.0.1:{sim_port}"
        httpx.post(f"{sim}/_sim/clock/advance", json={"seconds": 60})
        broker.start().wait_healthy(60)
        reads = {"Authorization": f"Bearer {API_KEY}"}
        wait_until(
            lambda: httpx.get(f"{broker.base_url}/status", headers=reads).json()["leader"],
            timeout=30,
        )
        token = httpx.post(f"{sim}/_sim/login").json()["request_token"]
        httpx.get(f"{broker.base_url}/session/callback", params={"request_token": token})
        kite = KiteConnect(KITE_KEY, root=sim, timeout=30)
        kite.generate_session(
            httpx.post(f"{sim}/_sim/login").json()["request_token"], api_secret=KITE_SECRET
        )

        # ---- instrument lookups
        started = time.perf_counter()
        for i in range(args.seed_lookups):
            seed_lookup(kite, SYMBOLS[i % len(SYMBOLS)])
        seed_rate = args.seed_lookups / (time.perf_counter() - started)
        started = time.perf_counter()
        master = InstrumentMaster(
            [_from_kite(r) for r in kite.instruments("NSE")], as_of=date.today()
        )
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(args.lookups):
            master.lookup(SYMBOLS[i % len(SYMBOLS)])
        ours_rate = args.lookups / (time.perf_counter() - started)
        # ours including the one download, amortised over the run's lookups
        ours_amortised = args.lookups / (load_seconds + args.lookups / ours_rate)

        # ---- order submission
        def order(i: int) -> dict[str, object]:
            return {
                "variety": "regular",
                "exchange": "NSE",
                "tradingsymbol": "TCS",
                "transaction_type": "BUY",
                "quantity": 1,
                "product": "CNC",
                "order_type": "LIMIT",
                "price": 1.0,
            }

        seed_lat = []
        for i in range(args.orders):
            time.sleep(args.pace_ms / 1000)
            t = time.perf_counter()
            kite.place_order(**order(i), tag=f"seed-{i}")
            seed_lat.append((time.perf_counter() - t) * 1000)
        ours_lat = []
        auth = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=broker.base_url, headers=auth, timeout=30) as client:
            for i in range(args.orders):
                time.sleep(args.pace_ms / 1000)
                body = {
                    "client_order_id": f"bench-{i}",
                    "symbol": "TCS",
                    "side": "BUY",
                    "quantity": 1,
                    "order_type": "LIMIT",
                    "price": "1",
                }
                t = time.perf_counter()
                resp = client.post("/orders", json=body)
                ours_lat.append((time.perf_counter() - t) * 1000)
                if resp.json().get("status") != "OPEN":
                    print(f"order {i} not accepted: {resp.text}", file=sys.stderr)
                    return 1
            # the same ids again: answered from the journal, nothing sent
            t = time.perf_counter()
            for i in range(args.orders):
                client.post(
                    "/orders",
                    json={
                        "client_order_id": f"bench-{i}",
                        "symbol": "TCS",
                        "side": "BUY",
                        "quantity": 1,
                        "order_type": "LIMIT",
                        "price": "1",
                    },
                )
            replay_ms = (time.perf_counter() - t) * 1000 / args.orders
            limiter_wait = limiter_wait_seconds(client.get("/metrics").text)
        at_kite = sum(1 for o in kite.orders() if str(o.get("tag", "")).startswith("bench-"))
    finally:
        broker.stop()
        kitesim.stop()
        redis.stop()

    print(
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load {' '.join(f'{x:.2f}' for x in __import__('os').getloadavg())}"
    )
    print(f"{'figure':44} {'ours':>12} {'seed':>12} {'ours/seed':>10}")
    rows = [
        ("instrument lookups/s (lookup only)", ours_rate, seed_rate),
        (
            f"instrument lookups/s (incl. one download, {args.lookups} lookups)",
            ours_amortised,
            seed_rate,
        ),
        ("Kite calls for the lookups", 1, args.seed_lookups),
        ("order submit p50 (ms)", statistics.median(ours_lat), statistics.median(seed_lat)),
        ("order submit p99 (ms)", pct(ours_lat, 0.99), pct(seed_lat, 0.99)),
    ]
    for name, ours, seed in rows:
        print(f"{name:44} {ours:12,.2f} {seed:12,.2f} {ours / seed:9.2f}x")
    print(
        f"repeated client_order_id answered from the journal: {replay_ms:.2f} ms each; "
        f"orders at kitesim tagged bench-*: {at_kite} (expected {args.orders}); "
        f"orders {args.pace_ms:.0f} ms apart, limiter wait {limiter_wait[0] * 1000:.1f} ms "
        f"over {limiter_wait[1]} order calls"
    )
    return 0 if at_kite == args.orders else 1


if __name__ == "__main__":
    sys.exit(main())
