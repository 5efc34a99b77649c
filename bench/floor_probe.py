"""The floor under the engine's hop (`bench/latency_rates.py --floor raw|bus`): a process in the
engine's place that reads the minute bars and, for each bar of a traded symbol, publishes an
order at once, with no decision, no risk check and no SQL. What it measures is what the engine's
hop would be if its step cost nothing, on the same machine under the same load (kitesim's
ticker, the feed, Redis).

* `raw`: plain redis-py, the least a Python consumer can do: `XREADGROUP` (blocking), the bar's
  symbol read from its JSON, one `XADD` per traded bar in one pipeline.
* `bus`: Dalal's own bus (`StreamConsumer` with a batch handler, as the engine's bars handler:
  the traded symbols' bars named urgent by `urgent`, decoded and validated, and offered before
  the others are decoded; `PlaceOrder` messages published with `Publisher.publish_many`), on
  uvloop as the engine runs under uvicorn.

Both write to `bench.floor` with the bar's corr, stamped as the engine stamps its `PlaceOrder`.

Usage (the bench starts it): python bench/floor_probe.py MODE REDIS_URL SYMBOL[,SYMBOL...]
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

FLOOR_STREAM = "bench.floor"
BARS = "market.bars.minute"


def run_raw(url: str, traded: set[str]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    with contextlib.suppress(redis.ResponseError):  # the group is there already
        client.xgroup_create(BARS, "floor", id="$", mkstream=True)
    while True:
        answer = client.xreadgroup("floor", "probe", {BARS: ">"}, count=500, block=1000)
        for _stream, entries in answer or []:
            pipe = client.pipeline(transaction=False)
            ids = []
            for entry_id, fields in entries:
                ids.append(entry_id)
                if json.loads(fields[b"data"])["symbol"] in traded:
                    pipe.xadd(
                        FLOOR_STREAM,
                        {"corr": fields[b"corr"], "ts": datetime.now(UTC).isoformat()},
                    )
            pipe.xack(BARS, "floor", *ids)
            pipe.execute()


async def run_bus(url: str, traded: set[str]) -> None:
    from redis import asyncio as aioredis

    from dalal_shared.bus import ConsumerConfig, Envelope, Publisher, StreamConsumer
    from dalal_shared.messages import Bar, PlaceOrder

    redis = aioredis.Redis.from_url(url)
    publisher = Publisher(redis, source="floor-probe")
    sent = 0

    class Probe:
        async def __call__(self, envelope: Envelope) -> None:
            await self.batch([envelope])

        def urgent(self) -> Callable[[bytes], bool]:
            wanted = {f'"symbol":"{s}"'.encode() for s in traded}
            return lambda data: any(w in data for w in wanted)

        async def batch(self, envelopes: Sequence[Envelope]) -> set[str]:
            nonlocal sent
            orders, corrs = [], []
            for e in envelopes:
                bar = e.message
                if isinstance(bar, Bar) and bar.symbol in traded:
                    sent += 1
                    orders.append(
                        PlaceOrder(
                            client_order_id=f"F-{sent}",
                            symbol=bar.symbol,
                            side="BUY",
                            quantity=1,
                        )
                    )
                    corrs.append(e.corr)
            if orders:
                await publisher.publish_many(FLOOR_STREAM, orders, corrs=corrs, atomic=True)
            return {e.id for e in envelopes}

    config = ConsumerConfig(group="floor", consumer="probe", start_id="$")
    await StreamConsumer(redis, config, {BARS: Probe()}).run()


def main(argv: list[str]) -> int:
    mode, url, symbols = argv
    traded = set(symbols.split(","))
    if mode == "raw":
        run_raw(url, traded)
    elif mode == "bus":
        import uvloop

        uvloop.run(run_bus(url, traded))
    else:
        raise SystemExit(f"floor_probe: mode must be raw or bus, not {mode!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
