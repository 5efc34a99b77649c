"""kitesim throughput: ticker fan-out to one official KiteTicker, REST quotes and orders.

A script, not a test. It starts `python -m dalal_kitesim` on a free port (a real process,
every Kite rate limit off), drives it, prints a table and stops it.

1. Ticker fan-out. `--instruments` NSE equities get real 15-minute bars (the bundled RELIANCE,
   TCS and INFY series, round-robin) written as a Dalal Parquet cache
   (`<dir>/NSE/15minute/<SYMBOL>.parquet`) that kitesim is pointed at, so each replayed tick
   timestamp carries one full packet per instrument. The market clock runs fast
   (`--session-seconds` real seconds per 09:15-15:30 session). One official `KiteTicker`
   subscribes to every replayed instrument in full mode; the ticks handed to `on_ticks` are
   counted over `--window` seconds after a warm-up.
   Reference ("ceiling"): the same client's own parser (`KiteTicker._parse_binary`) decoding the
   recorded `ticker_full.packet` fixture in a tight loop, in frames of as many packets as the live
   frames carried on average. ours/ceiling is the share of the client's parse ceiling delivered.
2. REST quotes: `kite.quote(["NSE:RELIANCE"])` in a loop (one client, sequential).
   Reference ("floor"): the same client's HTTP session asking kitesim's `/healthz` (no auth,
   no work): what uvicorn + requests cost per round trip on this machine.
3. Orders: `kite.place_order` LIMIT buys well below the market (they rest), sequential; the clock
   is paused and the opening balance large so no order is rejected.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
from kiteconnect import KiteConnect, KiteTicker

from dalal_kitesim.config import bundled_data_dir
from dalal_kitesim.marketdata import InstrumentStore, read_bars
from dalal_kitesim.ticker import frame
from dalal_shared import candlestore
from dalal_shared.embedded import free_port
from dalal_shared.timeutil import UTC

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "services/kitesim/tests/fixtures/kite/ticker_full.packet"
API_KEY, API_SECRET = "kitesim_key", "kitesim_secret_0123456789"
SOURCES = ("RELIANCE", "TCS", "INFY")  # the bundled 15-minute series
START = date(2024, 1, 2)
DAYS = 14  # calendar days of bars per instrument (about 10 sessions; --days)


# ---------------------------------------------------------------- data
def write_cache(root: Path, count: int) -> list[str]:
    """`count` NSE equities with real 15-minute bars, as a candlestore Parquet cache."""
    bundled = bundled_data_dir()
    end = START + timedelta(days=DAYS)
    tables = {}
    for name in SOURCES:
        bars = [
            b
            for b in read_bars(bundled / "15minute" / f"{name}.csv")
            if START <= b.start.date() < end
        ]
        tables[name] = pa.table(
            {
                "ts": [b.start.astimezone(UTC) for b in bars],
                "open": [float(b.open) for b in bars],
                "high": [float(b.high) for b in bars],
                "low": [float(b.low) for b in bars],
                "close": [float(b.close) for b in bars],
                "volume": [b.volume for b in bars],
            }
        )
    store = InstrumentStore.from_csv(bundled / "instruments.csv")
    have = {p.stem for p in bundled.glob("*/*.csv")}
    symbols = sorted(
        i.tradingsymbol
        for i in store.by_token.values()
        if i.instrument_type == "EQ"
        and i.segment == "NSE"
        and i.tradingsymbol not in have
        and candlestore._SAFE_SYMBOL.match(i.tradingsymbol)
    )[:count]
    for n, symbol in enumerate(symbols):
        candlestore.write(root, "NSE", "15minute", symbol, tables[SOURCES[n % len(SOURCES)]])
    return symbols


# ---------------------------------------------------------------- the kitesim process
class KitesimProcess:
    def __init__(self, data_dir: Path, log_path: Path):
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            {
                "DALAL_PORT": str(self.port),
                "DALAL_LOG_LEVEL": "WARNING",
                "DALAL_KITESIM_DATA_DIR": str(data_dir),
                "DALAL_KITESIM_START_DATE": START.isoformat(),
                "DALAL_KITESIM_SESSION_SECONDS": "0",  # paused until the ticker subscribed
                "DALAL_KITESIM_TOKEN_EXPIRY": "false",  # many simulated days pass
                "DALAL_KITESIM_OPENING_BALANCE_RUPEES": "1000000000000",
                "DALAL_KITESIM_TICKER_MAX_INSTRUMENTS": "3000",
            }
        )
        for cls in ("QUOTE", "HISTORICAL", "ORDERS", "OTHER"):
            env[f"DALAL_KITESIM_RATE_{cls}_PER_SECOND"] = "0"
        env["DALAL_KITESIM_RATE_ORDERS_PER_MINUTE"] = "0"
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dalal_kitesim"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"kitesim exited with {self.proc.returncode}; see {log_path}")
            try:
                if httpx.get(f"{self.root}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"kitesim did not come up in 120 s; see {log_path}")
            time.sleep(0.1)

    def control(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        r = httpx.request(method, f"{self.root}/_sim{path}", json=body, timeout=60)
        r.raise_for_status()
        return r.json()

    def client(self) -> KiteConnect:
        token = self.control("/login")["request_token"]
        kite = KiteConnect(api_key=API_KEY, root=self.root, timeout=30)
        kite.generate_session(token, api_secret=API_SECRET)
        return kite

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------- measurements
class TickCounter:
    def __init__(self) -> None:
        self.ticks = 0
        self.frames = 0
        self.full = 0
        self.connected = threading.Event()

    def on_ticks(self, _ws: Any, ticks: list[dict[str, Any]]) -> None:
        self.ticks += len(ticks)
        self.frames += 1
        self.full += sum(1 for t in ticks if t.get("mode") == "full")


def ticker_fanout(
    sim: KitesimProcess,
    kite: KiteConnect,
    tokens: list[int],
    session_seconds: float,
    warmup: float,
    window: float,
) -> dict[str, float]:
    counter = TickCounter()
    kws = KiteTicker(API_KEY, kite.access_token, root=f"ws://127.0.0.1:{sim.port}")

    def on_connect(ws: Any, _response: Any) -> None:
        ws.subscribe(tokens)
        ws.set_mode(ws.MODE_FULL, tokens)
        counter.connected.set()

    kws.on_ticks = counter.on_ticks
    kws.on_connect = on_connect
    kws.connect(threaded=True)
    if not counter.connected.wait(60):
        raise SystemExit("KiteTicker did not connect")
    deadline = time.monotonic() + 30
    while sim.control("/state", method="GET")["ticker_connections"] < 1:
        if time.monotonic() > deadline:
            raise SystemExit("kitesim sees no ticker connection")
        time.sleep(0.1)
    time.sleep(0.5)  # the subscribe and mode messages reach the paused simulator
    sim.control("/clock/speed", {"session_seconds": session_seconds})
    time.sleep(warmup)
    t0, n0, f0, full0 = time.monotonic(), counter.ticks, counter.frames, counter.full
    time.sleep(window)
    t1, n1, f1, full1 = time.monotonic(), counter.ticks, counter.frames, counter.full
    kws.close()
    elapsed = t1 - t0
    frames = max(f1 - f0, 1)
    return {
        "ticks_per_s": (n1 - n0) / elapsed,
        "frames_per_s": (f1 - f0) / elapsed,
        "packets_per_frame": (n1 - n0) / frames,
        "full_share": min(1.0, (full1 - full0) / max(n1 - n0, 1)),
        "ticks": n1 - n0,
    }


def parse_ceiling(packets_per_frame: int, seconds: float) -> float:
    """Ticks/s the official client's parser decodes from the recorded full packet."""
    packet = base64.b64decode(FIXTURE.read_text())
    assert len(packet) == 184
    data = frame([packet] * max(1, packets_per_frame))
    ticker = KiteTicker(API_KEY, "x")
    parse = ticker._parse_binary
    decoded = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        for _ in range(10):
            decoded += len(parse(data))
    return decoded / (time.monotonic() - t0)


def loop_rate(call: Callable[[], Any], seconds: float) -> tuple[float, int]:
    for _ in range(20):  # warm-up: connection pool, code paths
        call()
    n = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        call()
        n += 1
    return n / (time.monotonic() - t0), n


# ---------------------------------------------------------------- main
def phase(started: float, what: str) -> None:
    print(f"[{time.monotonic() - started:6.1f} s] {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smoke run, under 20 s")
    parser.add_argument(
        "--instruments", type=int, default=None, help="Parquet instruments (150; quick 30)"
    )
    parser.add_argument(
        "--session-seconds", type=float, default=None, help="real seconds per session (4; quick 1)"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="ticker warm-up, s (3; quick 0.5)"
    )
    parser.add_argument(
        "--window", type=float, default=None, help="ticker window, s (10; quick 1.5)"
    )
    parser.add_argument(
        "--rest-seconds", type=float, default=None, help="each REST loop, s (5; quick 0.7)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    instruments = args.instruments or (30 if quick else 150)
    session_seconds = args.session_seconds or (1.0 if quick else 4.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if quick else 3.0)
    window = args.window or (1.5 if quick else 10.0)
    rest_seconds = args.rest_seconds or (0.7 if quick else 5.0)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-kitesim-") as tmp:
        data_dir = Path(tmp) / "cache"
        symbols = write_cache(data_dir, instruments)
        phase(started, f"wrote {len(symbols)} Parquet files")
        sim = KitesimProcess(data_dir, Path(tmp) / "kitesim.log")
        try:
            phase(started, "kitesim up")
            kite = sim.client()
            state = sim.control("/state", method="GET")
            store = InstrumentStore.from_csv(bundled_data_dir() / "instruments.csv")
            tokens = [store.by_key[f"NSE:{s}"].instrument_token for s in symbols]
            fan = ticker_fanout(sim, kite, tokens, session_seconds, warmup, window)
            phase(started, "ticker measured")
            sim.control("/clock/speed", {"session_seconds": 0})  # paused for the REST loops
            ceiling = parse_ceiling(round(fan["packets_per_frame"]), 1.0 if quick else 3.0)
            quote_rate, _ = loop_rate(lambda: kite.quote(["NSE:RELIANCE"]), rest_seconds)
            health = f"{sim.root}/healthz"
            floor_rate, _ = loop_rate(lambda: kite.reqsession.get(health, timeout=10), rest_seconds)
            price = 100.0  # far below every replayed price: the orders rest

            def place() -> Any:
                return kite.place_order(
                    variety=kite.VARIETY_REGULAR,
                    exchange="NSE",
                    tradingsymbol="RELIANCE",
                    transaction_type="BUY",
                    quantity=1,
                    product="CNC",
                    order_type="LIMIT",
                    price=price,
                )

            order_rate, placed = loop_rate(place, rest_seconds)
            open_orders = sum(1 for o in kite.orders() if o["status"] == "OPEN")
            final = sim.control("/state", method="GET")
        finally:
            sim.stop()

    ok = fan["ticks_per_s"] >= 10_000
    print(
        f"\nkitesim bench ({'quick' if quick else 'full'}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(
        f"  {instruments} Parquet instruments + bundled ones ({state['instruments_replayed']} "
        f"replayed), session in {session_seconds:g} s, tick every 60 simulated s"
    )
    rows = [
        ("ticker full, ticks/s to 1 KiteTicker", fan["ticks_per_s"], ceiling, "parse ceiling"),
        ("  frames/s", fan["frames_per_s"], None, ""),
        ("  packets/frame", fan["packets_per_frame"], None, ""),
        ("REST quote, req/s (1 client)", quote_rate, floor_rate, "GET /healthz"),
        ("orders placed/s (1 client)", order_rate, floor_rate, "GET /healthz"),
    ]
    offered = state["instruments_replayed"] * 375 / session_seconds
    print(
        f"  offered by the clock: about {offered:,.0f} "
        "ticks/s (15-minute bars, 375 ticks per instrument and session)"
    )
    print(f"  {'measure':<40}{'ours':>12}{'reference':>12}  {'ours/ref':>8}  reference is")
    for name, ours, ref, what in rows:
        ratio = f"{ours / ref:8.2f}" if ref else " " * 8
        ref_text = f"{ref:12,.0f}" if ref else " " * 12
        print(f"  {name:<40}{ours:12,.1f}{ref_text}  {ratio}  {what}")
    print(
        f"  full-mode share of ticks {fan['full_share']:.3f}; {placed} orders placed in the "
        f"window ({open_orders} open in all); simulated now {final['now_ist']} IST"
    )
    print(f"  target ticker >= 10,000 ticks/s: {'met' if ok else 'NOT met'}")
    print(f"  wall time {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
