"""Latency of the path the engine exists for: from the tick that closes a bar (a `Tick` on
`market.ticks`, then the `Bar` on `market.bars.15minute` the data service builds from it) to
the order accepted at the broker, ours against the seed's approach, in one run, through kitesim
(the official kiteconnect client over real HTTP).

* Ours: real processes on an embedded Redis: the engine (an SMA cross, 1 over 2 bars, on N
  symbols, exchange clock) decides on the bar, stores the intent and publishes `PlaceOrder`;
  the broker journals it, checks its guards (a MARKET order is valued at Kite's LTP), places
  it at kitesim and publishes `OrderAccepted`. Measured per symbol: bar published ->
  `PlaceOrder` on `orders.commands` (the engine), and -> `OrderAccepted` on `orders.events`
  (the whole path).
* The seed's approach, the same decision for the same symbols: its cycle fetches a year of
  daily bars over `historical_data` (its `get_historical_data(symbol, "day", days=365)`),
  computes the averages with pandas and calls `kite.place_order` directly (no journal, no
  guards, no bus). Measured: fetch -> order id.

kitesim's rate limits are off (the path, not Kite's budget, is measured); the clock is manual.

Usage: .venv/bin/python bench/latency.py [--symbols 10] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pandas as pd
import redis.asyncio as aioredis
from kiteconnect import KiteConnect

from dalal_shared.bus import Publisher
from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.messages import (
    Bar,
    Envelope,
    OrderAccepted,
    OrderRejected,
    PlaceOrder,
    Tick,
)
from dalal_shared.streams import MARKET_TICKS, ORDERS_COMMANDS, ORDERS_EVENTS, bars_stream
from dalal_shared.testing import ServiceProcess, wait_until
from dalal_shared.timeutil import IST

KITE_KEY, KITE_SECRET = "kitesim_key", "kitesim_secret_0123456789"
API_KEY = "bench-latency-key-0123456789"
SYMBOLS = ["RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN", "ITC", "LT", "AXISBANK",
           "KOTAKBANK", "HINDUNILVR", "BHARTIARTL"]  # fmt: skip
INTERVAL = "15minute"
STRATEGIES = """
strategies:
  - name: lat
    strategy: sma_cross
    interval: 15minute
    universe: [{universe}]
    params: {{fast_bars: 1, slow_bars: 2}}
    risk: {{enforce_market_hours: false, max_orders_per_minute: 200, max_open_positions: 50}}
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bar(symbol: str, start: datetime, close: str) -> Bar:
    price = Decimal(close)
    return Bar(symbol=symbol, interval=INTERVAL, start=start, open=price, high=price,
               low=price, close=price, volume=1000)  # fmt: skip


async def ours(redis_url: str, symbols: list[str]) -> tuple[list[float], list[float]]:
    """Per symbol: ms from the closing bar's publish to PlaceOrder, and to OrderAccepted."""
    client = aioredis.Redis.from_url(redis_url)
    publisher = Publisher(client, source="bench")
    stream = bars_stream(INTERVAL)
    day = datetime(2024, 1, 2, 9, 15, tzinfo=IST)
    to_engine, to_broker = [], []
    for i, symbol in enumerate(symbols):
        start = day + timedelta(minutes=45 * i)
        # two bars of history (no cross), then the bar whose close crosses the average up
        for k, close in enumerate(("100", "99")):
            await publisher.publish(stream, bar(symbol, start + timedelta(minutes=15 * k), close))
        last_cmd = (await client.xrevrange(ORDERS_COMMANDS, count=1) or [(b"0-0", {})])[0][0]
        last_evt = (await client.xrevrange(ORDERS_EVENTS, count=1) or [(b"0-0", {})])[0][0]
        t0 = time.perf_counter()
        # the tick that closes the bar (the broker values the MARKET order at it, as it would
        # at the live feed's last tick), then the bar the data service would build from it
        await publisher.publish(
            MARKET_TICKS,
            Tick(instrument_token=1000 + i, symbol=symbol, last_price=Decimal("101"),
                 exchange_ts=datetime.now(UTC)),
        )  # fmt: skip
        await publisher.publish(stream, bar(symbol, start + timedelta(minutes=30), "101"))
        coid, t_cmd = None, None
        deadline = time.monotonic() + 60
        while coid is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"no order for {symbol} within 60 s (see the engine's log)")
            for _s, entries in await client.xread({ORDERS_COMMANDS: last_cmd}, block=500):
                for entry_id, fields in entries:
                    last_cmd = entry_id
                    message = Envelope.from_fields(fields).message
                    if isinstance(message, PlaceOrder) and message.symbol == symbol:
                        coid, t_cmd = message.client_order_id, time.perf_counter()
        t_acc = None
        while t_acc is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"{coid} not accepted within 60 s (see the broker's log)")
            for _s, entries in await client.xread({ORDERS_EVENTS: last_evt}, block=500):
                for entry_id, fields in entries:
                    last_evt = entry_id
                    message = Envelope.from_fields(fields).message
                    if getattr(message, "client_order_id", None) != coid:
                        continue
                    if isinstance(message, OrderRejected):
                        raise SystemExit(f"{coid} rejected: {message.reason} {message.message}")
                    if isinstance(message, OrderAccepted):
                        t_acc = time.perf_counter()
        assert t_cmd is not None
        to_engine.append((t_cmd - t0) * 1000)
        to_broker.append((t_acc - t0) * 1000)
    await client.aclose()
    return to_engine, to_broker


def seed(kite: KiteConnect, symbols: list[str], today: date) -> list[float]:
    """The seed's cycle per symbol: fetch the bars, average them with pandas, place_order."""
    tokens = {r["tradingsymbol"]: r["instrument_token"] for r in kite.instruments("NSE")}
    since = datetime.combine(today - timedelta(days=365), datetime.min.time())  # the seed's
    # get_historical_data(symbol, "day", days=365): daily bars, every kitesim symbol has them
    until = datetime.combine(today, datetime.min.time()) + timedelta(hours=15, minutes=30)
    out = []
    for symbol in symbols:
        t0 = time.perf_counter()
        candles = kite.historical_data(tokens[symbol], since, until, "day")
        df = pd.DataFrame(candles)
        fast, slow = df["close"].rolling(1).mean(), df["close"].rolling(2).mean()
        _crossed = bool(fast.iloc[-1] > slow.iloc[-1])  # decided either way: the order goes
        kite.place_order(
            variety="regular", exchange="NSE", tradingsymbol=symbol, transaction_type="BUY",
            quantity=1, product="CNC", order_type="MARKET", market_protection=-1,
            tag=f"seed-{symbol}"[:20],
        )  # fmt: skip
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--symbols", type=int, default=10, help=f"at most {len(SYMBOLS)}")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (4 symbols)")
    args = parser.parse_args()
    symbols = SYMBOLS[: 4 if args.quick else min(args.symbols, len(SYMBOLS))]

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    (work / "strategies.yaml").write_text(STRATEGIES.format(universe=", ".join(symbols)))
    redis = EmbeddedRedis(work / "redis", free_port(), appendonly=False)
    redis.start()
    sim_port, broker_port, engine_port = free_port(), free_port(), free_port()
    rates = {
        f"DALAL_KITESIM_RATE_{c}_PER_SECOND": "0"
        for c in ("QUOTE", "HISTORICAL", "ORDERS", "OTHER")
    }
    common = {"DALAL_REDIS_URL": redis.url, "DALAL_API_KEY": API_KEY, "DALAL_LOG_FORMAT": "json"}
    kitesim = ServiceProcess(
        "dalal_kitesim",
        env={
            "DALAL_PORT": str(sim_port),
            "DALAL_KITESIM_SESSION_SECONDS": "0",
            "DALAL_KITESIM_RATE_ORDERS_PER_MINUTE": "0",
            "DALAL_KITESIM_TOKEN_EXPIRY": "false",
            "DALAL_KITESIM_HISTORY_AFTER_NOW": "true",
            "DALAL_LOG_FORMAT": "json",
            **rates,
        },
        log_path=work / "kitesim.log",
        port=sim_port,
    ).start()
    sim = f"http://127.0.0.1:{sim_port}"
    broker = ServiceProcess(
        "dalal_broker",
        env={
            **common,
            "DALAL_PORT": str(broker_port),
            "DALAL_KITE_ROOT_URL": sim,
            "DALAL_KITE_API_KEY": KITE_KEY,
            "DALAL_KITE_API_SECRET": KITE_SECRET,
            "DALAL_DATABASE_URL": f"sqlite:///{work / 'broker.sqlite3'}",
            "DALAL_ENFORCE_MARKET_HOURS": "false",
            "DALAL_MAX_ORDER_VALUE_RUPEES": "100000000",  # the strategy sizes on Rs 10 lakh
        },
        log_path=work / "broker.log",
        port=broker_port,
    )
    engine = ServiceProcess(
        "dalal_engine",
        env={
            **common,
            "DALAL_PORT": str(engine_port),
            "DALAL_DATABASE_URL": f"sqlite:///{work / 'engine.sqlite3'}",
            "DALAL_STRATEGIES_FILE": str(work / "strategies.yaml"),
            "DALAL_START_MODE": "running",
            "DALAL_MARKET_CLOCK": "exchange",
            "DALAL_EQUITY_SOURCE": "initial_capital",
            "DALAL_BROKER_URL": f"http://127.0.0.1:{broker_port}",
            "DALAL_BUS_BLOCK_MS": "100",
        },
        log_path=work / "engine.log",
        port=engine_port,
    )
    try:
        kitesim.wait_healthy(60)
        httpx.post(f"{sim}/_sim/clock/advance", json={"seconds": 60})
        broker.start().wait_healthy(60)
        reads = {"Authorization": f"Bearer {API_KEY}"}
        wait_until(
            lambda: httpx.get(f"{broker.base_url}/status", headers=reads).json()["leader"],
            timeout=30,
        )
        token = httpx.post(f"{sim}/_sim/login").json()["request_token"]
        httpx.get(f"{broker.base_url}/session/callback", params={"request_token": token})
        engine.start().wait_healthy(60)
        wait_until(
            lambda: httpx.get(f"{engine.base_url}/engine/status", headers=reads).json()[
                "safety_state_known"
            ],
            timeout=60,
            message="the engine knows kill switch and session",
        )
        to_engine, to_broker = asyncio.run(ours(redis.url, symbols))
        kite = KiteConnect(KITE_KEY, root=sim, timeout=30)
        kite.generate_session(
            httpx.post(f"{sim}/_sim/login").json()["request_token"], api_secret=KITE_SECRET
        )
        today = date.fromisoformat(httpx.get(f"{sim}/_sim/state").json()["day"])
        seed_ms = seed(kite, symbols, today)
    finally:
        for proc in (engine, broker, kitesim):
            proc.stop()
        redis.stop()

    def line(name: str, values: list[float]) -> str:
        return (
            f"{name:44}{statistics.median(values):>9.1f}{pct(values, 0.9):>9.1f}{max(values):>9.1f}"
        )

    print(f"latency bench: {len(symbols)} symbols, one closing bar each (ms)")
    print(f"{'':44}{'p50':>9}{'p90':>9}{'max':>9}")
    print(line("ours: closing tick -> PlaceOrder (engine)", to_engine))
    print(line("ours: closing tick -> OrderAccepted", to_broker))
    print(line("seed: fetch + decide -> order id", seed_ms))
    ratio = statistics.median(to_broker) / statistics.median(seed_ms)
    print(f"ours / seed (p50, whole path): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
