"""CPU time per entry of the bus consumer's handling of a first delivery, apart from Redis.

    .venv/bin/python bench/bus_cpu.py [--bus-module PATH] [--batch 500] [--messages 50000]

`StreamConsumer._process_locked` (decode, validate, call the handler, count, time, acknowledge)
over pre-built `Tick` entries (raw bytes, as redis-py returns them), with a Redis stand-in whose
XACK does nothing; `time.process_time`, best of 7 passes. It leaves out what the reference in
`bus.py` pays too (XREADGROUP and its parsing, the XACK's packing and round trip) and what
another process on the machine does, so the same code gives the same figure within a few per
cent from run to run: the measure to compare two versions of the bus with (`--bus-module` a copy
of the old `bus.py`, one process each), where `bench/bus.py`'s ratios swing by +-0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bus import load_bus, make_tick


class NoRedis:
    """What the consumer's handling of a clean first delivery asks of Redis: one XACK."""

    async def xack(self, *args: Any) -> int:
        return len(args) - 2


async def run(args: argparse.Namespace) -> float:
    bus = load_bus(args.bus_module)
    entries = []
    for i in range(args.messages):
        _, fields = bus.wrap_fields(make_tick(), source="bench")
        raw = {k.encode(): v.encode() for k, v in fields.items()}
        entries.append((f"{1_700_000_000_000 + i}-0".encode(), raw))
    handled = 0

    async def handler(_envelope: Any) -> None:
        nonlocal handled
        handled += 1

    config = bus.ConsumerConfig(group="g", consumer="c")
    consumer = bus.StreamConsumer(NoRedis(), config, {"s": handler})  # type: ignore[arg-type]
    best = float("inf")
    for _ in range(7):
        started = time.process_time()
        for i in range(0, len(entries), args.batch):
            await consumer._process_locked("s", entries[i : i + args.batch], redelivery=False)
        best = min(best, time.process_time() - started)
    if handled != 7 * len(entries):
        raise SystemExit(f"handled {handled} of {7 * len(entries)}")
    return best / len(entries) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bus-module", default="dalal_shared.bus", help="module or .py path")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args()
    per_entry = asyncio.run(run(args))
    print(f"{args.bus_module}: {per_entry:.2f} us of CPU per entry (batch {args.batch}, best of 7)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
