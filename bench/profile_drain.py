"""Profile one StreamConsumer draining a pre-filled stream (cProfile, or wall time only).

    .venv/bin/python bench/profile_drain.py --messages 50000 --batch 500 [--bus-module PATH]

Prints the handled rate and, unless --no-profile, the top functions by own time, measured only
over the drain (the pre-fill is not profiled).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bus import OURS, REF, load_bus, make_client, measure_drain, prefill

from dalal_shared.embedded import EmbeddedRedis, free_port


async def run(args: argparse.Namespace, url: str) -> None:
    bus = load_bus(args.bus_module)
    client = make_client(url)
    impl = REF if args.reference else OURS
    await prefill(impl, bus, client, "prof", args.messages)
    profiler = cProfile.Profile()
    if not args.no_profile:
        profiler.enable()
    result = await measure_drain(impl, bus, client, "prof", args.messages, args.batch, 120.0)
    profiler.disable()
    print(
        f"{impl} batch {args.batch}: {result.handled} in {result.seconds:.2f} s "
        f"= {result.rate:,.0f} msg/s"
    )
    await client.aclose()
    if not args.no_profile:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--bus-module", default="dalal_shared.bus")
    parser.add_argument("--reference", action="store_true", help="profile the plain loop")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), free_port(), appendonly=False)
        server.start()
        try:
            asyncio.run(run(args, server.url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
