"""data-cache benchmark: Dalal's incremental Parquet cache vs the seed's DataManager, through
kitesim (official `kiteconnect` client for both), in one run.

The seed's approach (seed document, "Step 2: Data Manager"): one CSV per symbol and interval;
a file older than a day is ignored and the whole range fetched again; every fetch first
downloads the whole instruments dump to find the token. Written here from that description.

Measured, for a universe of N symbols x Y years of daily bars:
  cold fill   : empty caches, fetch everything
  warm read   : everything cached (target: 50 symbols x 5 years in < 200 ms)
  daily top-up: one more session appeared (seed: file a day old -> refetch all)
  tick ingest : Kite ticker frames decoded, Tick messages published to market.ticks
                (target: >= 10,000 ticks/s on one core)

kitesim serves N symbols: the bundled daily files of 6 stocks, copied under synthetic names.
Kite's per-endpoint rate limits are on in kitesim; Dalal goes through the shared limiter, the
seed (which has none) retries a 429 after a second, as a careful user of it would.

    .venv/bin/python bench/data_cache.py [--symbols 50] [--years 5] [--ticks 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import redis.asyncio as aioredis
import uvicorn
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from dalal_data.candles import parse_bound
from dalal_data.config import DataSettings
from dalal_data.feed import Feed
from dalal_data.tickerproto import decode_frame
from dalal_data.wiring import build_core
from dalal_kitesim.app import build_app as build_kitesim
from dalal_kitesim.config import KitesimSettings, bundled_data_dir
from dalal_shared import candlestore as cs
from dalal_shared.bus import Publisher
from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.streams import MARKET_TICKS
from dalal_shared.timeutil import IST

API_KEY, API_SECRET = "kitesim_key", "kitesim_secret_0123456789"
STOCKS = ["RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN"]
LAST_DAY = date(2025, 9, 30)  # the bundled data's end


# ---------------------------------------------------------------- the seed's approach
class SeedBroker:
    """The seed's ZerodhaBroker.get_historical_data: instruments dump per lookup."""

    def __init__(self, kite: KiteConnect):
        self.kite = kite
        self.calls = 0

    def _kite(self, fn, *args, **kwargs):  # a 429 is retried after a second
        while True:
            self.calls += 1
            try:
                return fn(*args, **kwargs)
            except kex.NetworkException:
                time.sleep(1.0)

    def get_historical_data(self, symbol: str, interval: str, from_date, to_date):
        token = None
        for inst in self._kite(self.kite.instruments, "NSE"):
            if inst["tradingsymbol"] == symbol:
                token = inst["instrument_token"]
        return self._kite(self.kite.historical_data, token, from_date, to_date, interval)


class SeedDataManager:
    """The seed's DataManager: CSV cache, refetch everything when the file is a day old."""

    def __init__(self, broker: SeedBroker, cache_dir: Path, now):
        self.broker = broker
        self.cache_dir = cache_dir
        self.now = now
        cache_dir.mkdir(parents=True, exist_ok=True)

    def get_historical_data(self, symbol: str, interval: str, days: int):
        cached = self._load_from_cache(symbol, interval)
        if cached is not None:
            return cached
        to_date = self.now()
        data = self.broker.get_historical_data(
            symbol, interval, to_date - timedelta(days=days), to_date
        )
        df = pd.DataFrame(data)
        df["date"] = pd.to_datetime(df["date"])
        df = df.set_index("date")
        df.to_csv(self.cache_dir / f"{symbol}_{interval}.csv")
        return df

    def _load_from_cache(self, symbol: str, interval: str):
        path = self.cache_dir / f"{symbol}_{interval}.csv"
        if not path.exists():
            return None
        if time.time() - path.stat().st_mtime > 86400:
            return None
        return pd.read_csv(path, index_col=0, parse_dates=True)


# ---------------------------------------------------------------- kitesim with N symbols
def universe_data(root: Path, n: int) -> tuple[Path, Path, list[str]]:
    bundled = bundled_data_dir()
    (root / "day").mkdir(parents=True)
    names = []
    with (bundled / "instruments.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    fields = list(rows[0])
    base = {r["tradingsymbol"]: r for r in rows}
    extra = []
    for i in range(n):
        src = STOCKS[i % len(STOCKS)]
        name = src if i < len(STOCKS) else f"{src[:8]}X{i:02d}"
        names.append(name)
        if name != src:
            shutil.copy(bundled / "day" / f"{src}.csv", root / "day" / f"{name}.csv")
            row = dict(base[src])
            row.update(
                tradingsymbol=name,
                name=name,
                instrument_token=str(9_000_000 + i * 256 + 1),
                exchange_token=str(90_000 + i),
            )
            extra.append(row)
    inst = root / "instruments.csv"
    with inst.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fields)
        w.writeheader()
        w.writerows(rows + extra)
    return root, inst, names


def start_kitesim(
    data_dir: Path, instruments: Path
) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    settings = KitesimSettings(
        port=port,
        kitesim_session_seconds=0,
        kitesim_token_expiry=False,
        kitesim_data_dir=data_dir,
        kitesim_instruments_csv=instruments,
        # a fixed past is read (up to the bundled data's end), not a replay at its clock
        kitesim_history_after_now=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            build_kitesim(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{root}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    return server, thread, root


def login(root: str) -> str:
    r = httpx.post(
        f"{root}/connect/login",
        data={"api_key": API_KEY, "user_id": "KS0001", "password": "x"},
        follow_redirects=False,
    )
    token = httpx.URL(r.headers["location"]).params["request_token"]
    kite = KiteConnect(api_key=API_KEY, root=root)
    return kite.generate_session(token, api_secret=API_SECRET)["access_token"]


# ---------------------------------------------------------------- runs
async def dalal_runs(settings: DataSettings, names: list[str], years: int) -> dict[str, float]:
    redis = aioredis.Redis.from_url(settings.redis_url)
    core = build_core(settings, redis)
    start = parse_bound((LAST_DAY - timedelta(days=int(365.25 * years))).isoformat(), end=False)
    out: dict[str, float] = {}

    async def fill(to: date) -> None:
        end = parse_bound(to.isoformat(), end=True)
        await asyncio.gather(*(core.candles.ensure("NSE", s, "day", start, end) for s in names))

    calls0 = sum(len(v) for v in core.gateway.log.calls.values())
    t = time.perf_counter()
    await fill(LAST_DAY - timedelta(days=1))
    out["cold_s"] = time.perf_counter() - t
    out["cold_calls"] = sum(len(v) for v in core.gateway.log.calls.values()) - calls0

    end = parse_bound(LAST_DAY.isoformat(), end=True)
    t = time.perf_counter()
    rows = 0
    for s in names:
        rows += cs.read(settings.cache_dir, "NSE", "day", s, start, end).num_rows
    out["warm_parquet_s"] = time.perf_counter() - t
    out["warm_rows"] = rows
    calls0 = core.gateway.log.count("historical")
    t = time.perf_counter()
    for s in names:  # the whole read path: coverage check + Parquet read
        await core.candles.get("NSE", s, "day", start, end - timedelta(days=1))
    out["warm_service_s"] = time.perf_counter() - t
    out["warm_calls"] = core.gateway.log.count("historical") - calls0

    calls0 = core.gateway.log.count("historical")
    t = time.perf_counter()
    await fill(LAST_DAY)
    out["topup_s"] = time.perf_counter() - t
    out["topup_calls"] = core.gateway.log.count("historical") - calls0
    await redis.aclose()
    return out


def seed_runs(root: str, token: str, names: list[str], years: int, cache: Path) -> dict[str, float]:
    kite = KiteConnect(api_key=API_KEY, root=root)
    kite.set_access_token(token)
    broker = SeedBroker(kite)
    day = [datetime.combine(LAST_DAY - timedelta(days=1), datetime.min.time())]
    dm = SeedDataManager(broker, cache, lambda: day[0] + timedelta(hours=23, minutes=59))
    days = int(365.25 * years)
    out: dict[str, float] = {}
    t = time.perf_counter()
    for s in names:
        dm.get_historical_data(s, "day", days)
    out["cold_s"], out["cold_calls"] = time.perf_counter() - t, broker.calls
    t = time.perf_counter()
    rows = sum(len(dm.get_historical_data(s, "day", days)) for s in names)
    out["warm_s"], out["warm_rows"], out["warm_calls"] = (
        time.perf_counter() - t,
        rows,
        broker.calls - out["cold_calls"],
    )
    # a day later: every file is a day old, so everything is fetched again
    old = time.time() - 86400 - 60
    for f in cache.glob("*.csv"):
        os.utime(f, (old, old))
    day[0] = datetime.combine(LAST_DAY, datetime.min.time())
    calls0 = broker.calls
    t = time.perf_counter()
    for s in names:
        dm.get_historical_data(s, "day", days)
    out["topup_s"], out["topup_calls"] = time.perf_counter() - t, broker.calls - calls0
    return out


async def tick_ingest(redis_url: str, n: int) -> float:
    redis = aioredis.Redis.from_url(redis_url)
    settings = DataSettings(redis_url=redis_url)
    feed = Feed(settings, Publisher(redis, source="bench"), redis, None, [])  # type: ignore[arg-type]
    tokens = list(range(1000, 1000 + 256 * 200, 256))
    feed.names = {t: ("NSE", f"SYM{i}") for i, t in enumerate(tokens)}
    epoch = int(datetime(2024, 1, 2, 9, 20, tzinfo=IST).timestamp())
    frames = []
    per_frame = 200
    for f in range(n // per_frame):
        packets = []
        for j, tok in enumerate(tokens[:per_frame]):
            body = struct.pack(
                ">IIIIIIIIIII",
                tok,
                100_000 + f + j,
                1,
                100_000,
                1000 * f + j,
                0,
                0,
                100_000,
                100_100,
                99_900,
                100_000,
            )
            body += struct.pack(">IIIII", epoch + f, 0, 0, 0, epoch + f) + b"\0" * 120
            packets.append(struct.pack(">H", len(body)) + body)
        frames.append(struct.pack(">H", len(packets)) + b"".join(packets))
    await redis.delete(MARKET_TICKS)
    t = time.perf_counter()
    for frame in frames:
        await feed.on_raw_ticks(decode_frame(frame))
    elapsed = time.perf_counter() - t
    assert await redis.xlen(MARKET_TICKS) > 0
    await redis.aclose()
    return len(frames) * per_frame / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--years", type=int, default=5)
    ap.add_argument("--ticks", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dalal-bench-data-") as tmp_:
        tmp = Path(tmp_)
        data_dir, instruments, names = universe_data(tmp / "kitesim", args.symbols)
        redis = EmbeddedRedis(tmp / "redis", free_port(), appendonly=False)
        redis.start()
        server, thread, root = start_kitesim(data_dir, instruments)
        try:
            token = login(root)
            settings = DataSettings(
                redis_url=redis.url,
                cache_dir=tmp / "cache",
                kite_root_url=root,
                kite_api_key=API_KEY,
                kite_access_token=token,
            )
            dalal = asyncio.run(dalal_runs(settings, names, args.years))
            seed = seed_runs(root, token, names, args.years, tmp / "seedcache")
            tps = asyncio.run(tick_ingest(redis.url, args.ticks))
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            redis.stop()
    n, y = args.symbols, args.years
    print(f"data-cache bench: {n} symbols x {y} years daily, through kitesim (Kite rate limits on)")
    print(f"{'':14}{'Dalal calls':>12}{'Dalal time':>12}{'seed calls':>12}{'seed time':>12}")
    print(
        f"{'cold fill':14}{dalal['cold_calls']:>12.0f}{dalal['cold_s']:>11.2f}s"
        f"{seed['cold_calls']:>12.0f}{seed['cold_s']:>11.2f}s"
    )
    print(
        f"{'warm read':14}{dalal['warm_calls']:>12.0f}{dalal['warm_service_s'] * 1000:>10.1f}ms"
        f"{seed['warm_calls']:>12.0f}{seed['warm_s'] * 1000:>10.1f}ms"
    )
    print(
        f"{'daily top-up':14}{dalal['topup_calls']:>12.0f}{dalal['topup_s']:>11.2f}s"
        f"{seed['topup_calls']:>12.0f}{seed['topup_s']:>11.2f}s"
    )
    print(
        f"warm read, Parquet only: {dalal['warm_parquet_s'] * 1000:.1f} ms for "
        f"{dalal['warm_rows']:.0f} rows (target < 200 ms)"
    )
    print(f"tick ingest to market.ticks: {tps:,.0f} ticks/s (target >= 10,000)")
    ok = dalal["warm_parquet_s"] < 0.2 and tps >= 10_000
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
