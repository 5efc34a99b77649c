"""Tick-to-order latency under load: kitesim's ticker at 100, 1,000 and 5,000 ticks/s across 50
symbols, through the whole stack of real processes, with p50 / p99 / p99.9 per hop.

The path: kitesim's market clock replays NSE bars as ticks (one tick per instrument per
simulated second, the session speed setting the rate; each bar's path jittered by up to 20 bp,
seeded, so prices turn often and every symbol trades) -> its Kite ticker WebSocket -> the data
service's feed (binary packets parsed, `Tick`s on `market.ticks`, minute bars built from them
on `market.bars.minute`) -> the engine (`sma_cross`, 1 over 2 minute bars, trading 5 of the 50
symbols by default: decides on each bar, publishes `PlaceOrder`) -> the broker (journal, guards,
the MARKET order valued at the last tick, placed at kitesim over REST with the official
`kiteconnect` client's wire format) -> `OrderAccepted` -> `OrderFilled`.

Every hop is stamped on the bus and traced by its correlation id: a bar carries the envelope id
of the tick that closed it, the engine's `PlaceOrder` the bar's, the broker's `OrderAccepted` the
command's. Measured per order (wall clock, one machine):

* feed:   closing tick on `market.ticks` -> its bar on `market.bars.minute` (for every bar of
  the run, and for the bars that led to an order)
* engine: bar -> `PlaceOrder` on `orders.commands`
* broker: `PlaceOrder` -> `OrderAccepted` (includes kitesim's REST answer)
* end to end: closing tick -> `PlaceOrder`, -> `OrderAccepted`, -> `OrderFilled` (the fill
  comes at kitesim's next tick of the symbol, so that hop includes waiting for it)
* kitesim's own REST latency (`place_order` of a far LIMIT, then cancelled), measured apart.

The rate achieved is the ticks that reached `market.ticks` per second of the run (kitesim,
four services, Redis and this script share the machine's cores).

`--floor raw|bus` puts `floor_probe.py` in the engine's place (an order for every bar of the
traded symbols at once, no decision and no SQL): the hop's floor on this machine under this load.

`--history N` stores N minute bars of each traded symbol in the engine's database before it
starts (a random walk on the Rs 0.05 grid, ending a year before the replay): the engine then
decides over a history as long as after weeks live (it keeps up to 20,000 bars), not the few
hundred a fresh stack has.

Usage: .venv/bin/python bench/latency_rates.py [--rates 100,1000,5000] [--seconds 20] [--quick]
       [--floor raw|bus] [--history N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from kiteconnect import KiteConnect

from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.settings import DalalSettings
from dalal_shared.streams import MARKET_TICKS, ORDERS_COMMANDS, ORDERS_EVENTS, bars_stream
from dalal_shared.testing import ServiceProcess, wait_until

ROOT = Path(__file__).resolve().parents[1]
FLOOR_STREAM = "bench.floor"  # floor_probe.py's orders
DAILY = ROOT / "services/kitesim/src/dalal_kitesim/data/nse/day"
KITE_KEY, KITE_SECRET = "kitesim_key", "kitesim_secret_0123456789"
SESSION_MINUTES = 375  # 09:15-15:30 IST
KITE_ORDERS_PER_MINUTE = 200  # Kite's order limit per minute (10 a second, 200 a minute)
API_KEY = "bench-latency-rates-key-0123456789"
READS = {"Authorization": f"Bearer {API_KEY}"}
SESSION_SIM_SECONDS = 22_500  # 09:15-15:30
DEFAULT_STREAM_MAXLEN: int = DalalSettings.model_fields["bus_stream_maxlen"].default
STRATEGIES = """
strategies:
  - name: rates
    strategy: sma_cross
    interval: minute
    universe: [{universe}]
    params: {{fast_bars: 1, slow_bars: 2, fixed_quantity: 1}}
    risk: {{enforce_market_hours: false, max_orders_per_minute: 200, max_open_positions: 50}}
"""


def symbols_available(n: int) -> list[str]:
    names = sorted(p.name.split(".")[0] for p in DAILY.glob("*.csv*"))
    return [s for s in names if not s.startswith("NIFTY")][:n]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stamp(text: bytes) -> float:
    return datetime.fromisoformat(text.decode()).timestamp()


def run_rate(
    rate: int,
    symbols: list[str],
    seconds: float,
    work: Path,
    trading: int,
    warmup: float,
    kite_latency_ms: float = 0.0,
    floor: str | None = None,
    history: int = 0,
) -> dict[str, Any]:
    """One stack at one tick rate: the per-hop latencies of every order it placed. Every
    symbol ticks and makes bars; the strategy trades the first `trading` of them. `floor`
    (raw, bus): `floor_probe.py` in the engine's place, ordering every bar of those symbols
    at once with no decision and no SQL."""
    session_seconds = SESSION_SIM_SECONDS * len(symbols) / rate
    store = EmbeddedRedis(work / "redis", free_port(), appendonly=False)
    store.start()
    (work / "strategies.yaml").write_text(STRATEGIES.format(universe=", ".join(symbols[:trading])))
    common = {
        "DALAL_REDIS_URL": store.url,
        "DALAL_API_KEY": API_KEY,
        "DALAL_LOG_FORMAT": "json",
        "DALAL_SESSION_KEY": "bench-session-key-0123456789abcdef",
    }
    kept = stream_length(rate, warmup + seconds)
    if kept > DEFAULT_STREAM_MAXLEN:  # every tick of the run kept, to trace every order by it
        common["DALAL_BUS_STREAM_MAXLEN"] = str(kept)
    kitesim_port, broker_port, data_port, engine_port = (free_port() for _ in range(4))
    kitesim = ServiceProcess(
        "dalal_kitesim",
        env={
            "DALAL_PORT": str(kitesim_port),
            "DALAL_KITESIM_SESSION_SECONDS": "0",  # manual until every service is up
            "DALAL_KITESIM_TICK_INTERVAL_SECONDS": "1",
            # prices that turn often (seeded, inside each bar): an SMA 1/2 cross every few
            # minutes on every symbol, so every rate has orders to trace
            "DALAL_KITESIM_TICK_NOISE_BPS": "5",
            "DALAL_KITESIM_TOKEN_EXPIRY": "false",
            "DALAL_KITESIM_HISTORY_AFTER_NOW": "true",
            "DALAL_KITESIM_RATE_ORDERS_PER_MINUTE": "0",
            "DALAL_LOG_FORMAT": "json",
            **{
                f"DALAL_KITESIM_RATE_{c}_PER_SECOND": "0"
                for c in ("QUOTE", "HISTORICAL", "ORDERS", "OTHER")
            },
        },
        log_path=work / "kitesim.log",
        port=kitesim_port,
    ).start()
    procs = [kitesim]
    try:
        kitesim.wait_healthy(60)
        sim = kitesim.base_url
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
            },
            log_path=work / "broker.log",
            port=broker_port,
        ).start()
        procs.append(broker)
        broker.wait_healthy(60)
        wait_until(
            lambda: httpx.get(f"{broker.base_url}/status", headers=READS).json()["leader"],
            timeout=30,
            message="the broker leads",
        )
        token = httpx.post(f"{sim}/_sim/login").json()["request_token"]
        httpx.get(f"{broker.base_url}/session/callback", params={"request_token": token})
        data = ServiceProcess(
            "dalal_data",
            env={
                **common,
                "DALAL_PORT": str(data_port),
                "DALAL_KITE_ROOT_URL": sim,
                "DALAL_KITE_API_KEY": KITE_KEY,
                "DALAL_CACHE_DIR": str(work / "cache"),
                "DALAL_FEED_ENABLED": "true",
                "DALAL_FEED_SYMBOLS": ",".join(f"NSE:{s}" for s in symbols),
                "DALAL_FEED_WATCH_ALWAYS": "true",
                "DALAL_FEED_STALE_SECONDS": "600",
            },
            log_path=work / "data.log",
            port=data_port,
        ).start()
        procs.append(data)
        client = redis.Redis.from_url(store.url)
        if floor:
            probe = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("floor_probe.py")), floor,
                 store.url, ",".join(symbols[:trading])],
                stdout=(work / "probe.log").open("wb"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            procs.append(_Popen(probe))
            data.wait_healthy(60)
            wait_until(
                lambda: any(g["name"] == b"floor" for g in _groups(client, bars_stream("minute"))),
                timeout=60,
                message="the floor probe reads the bars",
            )
        else:
            if history:
                seed_history(work / "engine.sqlite3", symbols[:trading], history)
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
                    "DALAL_BROKER_URL": broker.base_url,
                },
                log_path=work / "engine.log",
                port=engine_port,
            ).start()
            procs.append(engine)
            data.wait_healthy(60)
            engine.wait_healthy(60)
            wait_until(
                lambda: httpx.get(f"{engine.base_url}/engine/status", headers=READS).json()[
                    "safety_state_known"
                ],
                timeout=60,
                message="the engine knows kill switch and session",
            )
        if kite_latency_ms:  # Kite's order calls as slow as from a home line to Zerodha
            fault = {"kind": "latency", "route": "orders", "count": 10_000}
            httpx.post(
                f"{sim}/_sim/faults", json={**fault, "seconds": kite_latency_ms / 1000}
            ).raise_for_status()
        # the clock runs: `session_seconds` real seconds per session
        r = httpx.post(f"{sim}/_sim/clock/speed", json={"session_seconds": session_seconds})
        if r.status_code != 200:
            raise SystemExit(f"kitesim refused the clock speed: {r.text}")
        # warm-up: the first minute bar of each symbol pays once for what a running engine
        # has done long before (its history loaded, SQL statements compiled); not measured
        time.sleep(warmup)
        t0, ticks0 = time.time(), ticks_published(data.base_url)
        time.sleep(seconds)
        httpx.post(f"{sim}/_sim/clock/speed", json={"session_seconds": 0})
        t1, ticks1 = time.time(), ticks_published(data.base_url)
        time.sleep(2)  # what is in flight lands
        rest = rest_latency(sim, symbols[0])
        answer = httpx.get(f"{sim}/_sim/orders/received")  # (a kitesim before it: no such hop)
        received = {
            o["order_id"]: datetime.fromisoformat(o["received_at"]).timestamp()
            for o in (answer.json() if answer.status_code == 200 else [])
            if o["received_at"]
        }
        result = measure(
            client, t0, t1, rest, received, orders_stream=FLOOR_STREAM if floor else ORDERS_COMMANDS
        )
        result["broker_metrics"] = broker_metrics(broker.base_url)
        if ticks0 is not None and ticks1 is not None:  # else the stream's count (measure)
            result["ticks_per_second"] = (ticks1 - ticks0) / (t1 - t0)
        return result
    finally:
        for proc in reversed(procs):
            proc.stop()
        store.stop()


class _Popen:
    """A probe process stopped as the services are."""

    def __init__(self, proc: subprocess.Popen[bytes]):
        self.proc = proc

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _groups(client: redis.Redis, stream: str) -> list[dict[Any, Any]]:
    try:
        return list(client.xinfo_groups(stream))
    except redis.ResponseError:  # no stream yet
        return []


def stream_length(rate: int, seconds: float) -> int:
    """Entries each stream keeps (`DALAL_BUS_STREAM_MAXLEN`): the default, or every tick of a
    run longer than it holds (5,000 ticks/s fills the default 100,000 in 20 s: a run's first
    ticks were trimmed before they were traced, and the ticks counted in the stream at the
    end were only those it still held)."""
    return max(DEFAULT_STREAM_MAXLEN, int(rate * (seconds + 15) * 1.2))


def ticks_published(base_url: str) -> float | None:
    """The feed's count of ticks appended to `market.ticks` (its bus counter): the rate
    reached, whatever the stream has trimmed since. None when the feed has no such counter."""
    text = httpx.get(f"{base_url}/metrics", headers=READS).text
    for line in text.splitlines():
        if line.startswith("dalal_bus_messages_published_total{") and (
            f'stream="{MARKET_TICKS}"' in line and 'type="Tick"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return None


def broker_metrics(base_url: str) -> dict[str, float]:
    """What the broker's guards priced MARKET orders with (the last tick, else Kite's LTP
    through the 1/s quote budget) and how its Kite calls went."""
    text = httpx.get(f"{base_url}/metrics", headers=READS).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("dalal_broker_reference_prices_total", "dalal_kite_calls_total")):
            name, value = line.rsplit(" ", 1)
            if float(value):
                out[name] = float(value)
    return out


def rest_latency(sim: str, symbol: str, n: int = 50) -> list[float]:
    """kitesim's own REST answer to `place_order` (a LIMIT far under the market), in ms."""
    kite = KiteConnect(KITE_KEY, root=sim, timeout=30)
    kite.generate_session(
        httpx.post(f"{sim}/_sim/login").json()["request_token"], api_secret=KITE_SECRET
    )
    ltp = kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["last_price"]
    price = round(ltp * 0.95 / 0.05) * 0.05
    out = []
    for _ in range(n):
        t = time.perf_counter()
        order_id = kite.place_order(
            variety="regular", exchange="NSE", tradingsymbol=symbol, transaction_type="BUY",
            quantity=1, product="CNC", order_type="LIMIT", price=round(price, 2),
        )  # fmt: skip
        out.append((time.perf_counter() - t) * 1000)
        kite.cancel_order("regular", order_id)
    return out


def measure(
    client: redis.Redis,
    t0: float,
    t1: float,
    rest: list[float],
    received: dict[str, float] | None = None,
    orders_stream: str = ORDERS_COMMANDS,
) -> dict[str, Any]:
    """Per-hop latencies (ms) of the orders of bar-closing ticks inside [t0, t1]; `received`:
    kitesim's wall-clock arrival of each order in its book, by Kite order id."""
    received = received or {}
    ticks: dict[bytes, float] = {}
    n_ticks = 0
    for _id, f in client.xrange(MARKET_TICKS):
        at = stamp(f[b"ts"])
        ticks[f[b"id"]] = at
        n_ticks += t0 <= at <= t1
    bars = {f[b"corr"]: stamp(f[b"ts"]) for _i, f in client.xrange(bars_stream("minute"))}
    commands: dict[bytes, float] = {}
    for _id, f in client.xrange(orders_stream):
        if f.get(b"type", b"PlaceOrder") == b"PlaceOrder":  # the raw floor's have no type
            commands.setdefault(f[b"corr"], stamp(f[b"ts"]))
    accepted: dict[bytes, float] = {}
    in_book: dict[bytes, float] = {}  # by corr: when kitesim's book had the order
    filled: dict[bytes, float] = {}
    for _id, f in client.xrange(ORDERS_EVENTS):
        if f[b"type"] == b"OrderAccepted":
            accepted.setdefault(f[b"corr"], stamp(f[b"ts"]))
            at_book = received.get(json.loads(f[b"data"])["broker_order_id"])
            if at_book is not None:
                in_book.setdefault(f[b"corr"], at_book)
        elif f[b"type"] == b"OrderFilled":
            filled.setdefault(f[b"corr"], stamp(f[b"ts"]))
    hops: dict[str, list[float]] = {k: [] for k in HOPS}
    for corr, at_bar in bars.items():  # every bar, not only those that led to an order
        at_tick = ticks.get(corr)
        if at_tick is not None and t0 <= at_tick <= t1:
            hops["feed: tick -> bar (every bar)"].append(at_bar - at_tick)
    for corr, at_cmd in commands.items():
        at_tick, at_bar, at_acc = ticks.get(corr), bars.get(corr), accepted.get(corr)
        if at_tick is None or at_bar is None or not t0 <= at_tick <= t1:
            continue  # not a bar-closing tick's order (or trimmed, or in the warm-up)
        hops["feed: tick -> bar"].append(at_bar - at_tick)
        hops["engine: bar -> PlaceOrder"].append(at_cmd - at_bar)
        hops["tick -> PlaceOrder"].append(at_cmd - at_tick)
        at_book = in_book.get(corr)
        if at_book is not None:
            hops["broker: PlaceOrder -> in kitesim's book"].append(at_book - at_cmd)
            hops["tick -> in kitesim's book"].append(at_book - at_tick)
        if at_acc is not None:
            hops["broker: PlaceOrder -> OrderAccepted"].append(at_acc - at_cmd)
            hops["tick -> OrderAccepted"].append(at_acc - at_tick)
        at_fill = filled.get(corr)
        if at_fill is not None:  # the fill, at kitesim's next tick, carries the same corr
            hops["tick -> OrderFilled"].append(at_fill - at_tick)
    return {
        "ticks_per_second": n_ticks / (t1 - t0),
        "orders": len(hops["tick -> PlaceOrder"]),
        "hops": {k: [v * 1000 for v in values] for k, values in hops.items()},
        "rest": rest,
    }


HOPS = (
    "feed: tick -> bar (every bar)",
    "feed: tick -> bar",
    "engine: bar -> PlaceOrder",
    "broker: PlaceOrder -> in kitesim's book",
    "broker: PlaceOrder -> OrderAccepted",
    "tick -> PlaceOrder",
    "tick -> in kitesim's book",
    "tick -> OrderAccepted",
    "tick -> OrderFilled",
)


def report(rate: int, result: dict[str, Any]) -> None:
    print(
        f"\n{rate:,} ticks/s asked, {result['ticks_per_second']:,.0f} reached market.ticks; "
        f"{result['orders']} orders traced (ms)"
    )
    print(f"{'':42}{'n':>6}{'p50':>9}{'p99':>9}{'p99.9':>9}{'max':>9}")
    rows = [*result["hops"].items(), ("kitesim REST place_order", result["rest"])]
    for name, values in rows:
        if not values:
            print(f"{name:42}{0:>6}")
            continue
        print(
            f"{name:42}{len(values):>6}{statistics.median(values):>9.1f}"
            f"{pct(values, 0.99):>9.1f}{pct(values, 0.999):>9.1f}{max(values):>9.1f}"
        )
    for name, value in sorted(result.get("broker_metrics", {}).items()):
        print(f"  broker {name} {value:g}")


def seed_history(path: Path, symbols: list[str], n: int) -> None:
    """`n` minute bars per symbol in the engine's database (migrated here first), ending a year
    before the replay's days: what the engine reads as its history at its first bar."""
    import numpy as np

    from dalal_engine.store import EngineStore, StoredBar

    rng = np.random.default_rng(11)
    last = datetime(2019, 1, 1, 9, 59, tzinfo=UTC)
    store = EngineStore.open(f"sqlite:///{path}")
    try:
        for symbol in symbols:
            closes = (1000 + np.round(np.cumsum(rng.normal(0, 2, n)) * 20) / 20).tolist()
            store.store_bars(
                [
                    (
                        "NSE",
                        symbol,
                        "minute",
                        StoredBar(last - timedelta(minutes=n - i), c, c + 1, c - 1, c, 100),
                    )
                    for i, c in enumerate(closes)
                ]
            )
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates", default="100,1000,5000", help="ticks per second, comma-separated"
    )
    parser.add_argument("--symbols", type=int, default=50, help="symbols that tick")
    parser.add_argument(
        "--trading",
        type=int,
        default=5,
        help="symbols the strategy trades (5: its orders stay under Kite's 10 orders/s; with "
        "all 50 trading the broker hop measures that budget's queue)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="run time per rate (default: 4 simulated minutes, at least 30 s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds the clock runs before the measured window (default: one minute bar)",
    )
    parser.add_argument(
        "--kite-latency-ms",
        type=float,
        default=0.0,
        help="kitesim answers each order call this much later (a real Kite call from home "
        "takes tens of ms; kitesim answers in ~2)",
    )
    parser.add_argument(
        "--floor",
        choices=("raw", "bus"),
        default=None,
        help="the engine replaced by floor_probe.py, ordering every bar of the traded symbols "
        "at once (raw: plain redis-py; bus: Dalal's consumer and publisher): the hop with no "
        "decision and no SQL, under the same load",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="minute bars of each traded symbol stored for the engine before it starts "
        "(default 0: a fresh engine's few hundred; 19000: as after weeks live)",
    )
    parser.add_argument("--quick", action="store_true", help="1,000 ticks/s for 15 s (make bench)")
    args = parser.parse_args()
    rates = [1000] if args.quick else [int(r) for r in args.rates.split(",")]
    symbols = symbols_available(args.symbols)
    print(f"latency under load: {len(symbols)} symbols, minute bars")
    for rate in rates:
        # a minute bar of every symbol closes every 60 x symbols / rate real seconds
        seconds = args.seconds or (15.0 if args.quick else max(30.0, 240 * len(symbols) / rate))
        work = Path(tempfile.mkdtemp(prefix=f"bench-rates-{rate}-"))
        trading = min(args.trading, len(symbols))
        # one minute bar of every symbol (and a little more) before the measured window
        warmup = args.warmup if args.warmup is not None else 1.2 * 60 * len(symbols) / rate
        kept = stream_length(rate, warmup + seconds)
        print(
            f"(running {seconds:g} s at {rate:,} ticks/s after a {warmup:.1f} s warm-up, "
            f"{trading} symbols trading"
            + (f"; streams keep {kept:,} entries" if kept > DEFAULT_STREAM_MAXLEN else "")
            + ")"
        )
        # one tick per symbol per simulated second: the simulated minutes the run spans
        simulated = (warmup + seconds) * rate / len(symbols) / 60
        if simulated > SESSION_MINUTES:
            print(
                f"note: that is {simulated:,.0f} simulated minutes, past the NSE session's "
                f"{SESSION_MINUTES}: the run crosses the close (orders after it are AMOs or "
                "refused, and kitesim's book starts a new day)"
            )
        result = run_rate(
            rate,
            symbols,
            seconds,
            work,
            trading,
            warmup,
            args.kite_latency_ms,
            args.floor,
            args.history,
        )
        if args.floor:  # no engine, no broker order: the probe's orders on `bench.floor`
            kept = ("feed: tick -> bar (every bar)", "feed: tick -> bar")
            kept += ("engine: bar -> PlaceOrder", "tick -> PlaceOrder")
            result["hops"] = {
                k.replace("engine", f"floor ({args.floor})").replace("PlaceOrder", "order"): v
                for k, v in result["hops"].items()
                if k in kept
            }
        report(rate, result)
        per_minute = result["orders"] * 60 / seconds
        if per_minute > 0.9 * KITE_ORDERS_PER_MINUTE:
            print(
                f"note: ~{per_minute:,.0f} orders a minute; Kite allows "
                f"{KITE_ORDERS_PER_MINUTE} (the broker's limiter makes the rest wait: in a run "
                "longer than a minute the hops past the engine measure that wait)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
