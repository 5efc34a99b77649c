"""A consumer process for the bus fault tests (run as a script, killed with real signals).

Its handler is idempotent the way Dalal's handlers are: the business key (`corr` here) goes into a
Redis set, and the side effect (INCR) happens only when the key is new. Every delivery is also
recorded, so a test can tell a redelivery from a lost entry.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import redis.asyncio as aioredis

from dalal_shared.bus import ConsumerConfig, StreamConsumer
from dalal_shared.messages import Envelope


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--claim-idle-ms", type=int, default=30_000)
    parser.add_argument("--hang-on", default=None, help="corr of an entry to hang on before ack")
    parser.add_argument("--max-deliveries", type=int, default=5)
    args = parser.parse_args()

    redis = aioredis.Redis.from_url(args.redis)
    hang = asyncio.Event()

    async def handle(envelope: Envelope) -> None:
        key = envelope.corr
        await redis.rpush("deliveries", f"{args.consumer}:{key}")
        if await redis.sadd("applied", key):
            await redis.incr(f"effects:{key}")
        if key == args.hang_on:
            await redis.set("hanging", args.consumer)
            await hang.wait()  # never set: the test kills us here, before the ack

    consumer = StreamConsumer(
        redis,
        ConsumerConfig(
            group=args.group,
            consumer=args.consumer,
            block_ms=100,
            claim_idle_ms=args.claim_idle_ms,
            max_deliveries=args.max_deliveries,
            maintenance_interval_s=0.05,
        ),
        {args.stream: handle},
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, consumer.stop)
    await consumer.run()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
