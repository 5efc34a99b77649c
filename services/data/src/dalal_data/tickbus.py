"""The feed's fast path to `market.ticks`: Tick envelopes written without pydantic per tick and
appended in one Redis round trip per batch.

The entries are the bus's ordinary envelopes (`type`, `v`, `id`, `ts`, `source`, `corr`, `data`,
in that order; `Envelope.from_fields` reads them like any other): `data` is the JSON
`Tick.model_dump_json()` would write, produced from a per-instrument template (validated once,
through the Tick model, when the instrument is first seen). What made the generic
`Publisher.publish_many` slow for ticks was not Redis but the client: two pydantic models per
tick and redis-py packing 17 arguments per XADD in Python. Here one EVALSHA carries the whole
batch, one argument per tick (its 26-character envelope id followed by its data), and the
script appends each entry with the same approximate MAXLEN trim as the Publisher.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import redis.asyncio as aioredis

from dalal_shared.bus import PUBLISHED
from dalal_shared.ids import new_id
from dalal_shared.messages import Tick
from dalal_shared.timeutil import utcnow

ID_LENGTH = 26

_APPEND = """
local stream, maxlen, kind, v, ts, source = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
for i = 6, #ARGV do
  local p = ARGV[i]
  local id = string.sub(p, 1, 26)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'type', kind, 'v', v, 'id', id,
             'ts', ts, 'source', source, 'corr', id, 'data', string.sub(p, 27))
end
return #ARGV - 5
"""

# (instrument_token, exchange, symbol, last_price, cumulative volume, exchange_ts)
TickRow = tuple[int, str, str, Decimal, int, datetime]


def _utc_json(ts: datetime) -> str:
    """An aware time as pydantic writes it in JSON (UTC, `Z`)."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TickWriter:
    def __init__(self, redis: aioredis.Redis, *, stream: str, source: str, maxlen: int = 100_000):
        self.redis = redis
        self.stream = stream
        self.source = source
        self.maxlen = maxlen
        self._script = redis.register_script(_APPEND)
        self._heads: dict[tuple[int, str, str], str] = {}
        self._last_ts: tuple[datetime | None, str] = (None, "")
        self._published = PUBLISHED.labels(stream, "Tick")

    def _head(self, token: int, exchange: str, symbol: str) -> str:
        """`{"instrument_token":..,"exchange":..,"symbol":..,"last_price":"` of an instrument,
        checked once through the Tick model (a bad symbol fails here, not in every consumer)."""
        key = (token, exchange, symbol)
        head = self._heads.get(key)
        if head is None:
            Tick(
                instrument_token=token,
                exchange=exchange,
                symbol=symbol,
                last_price=Decimal(1),
                exchange_ts=utcnow(),
            )
            head = (
                f'{{"instrument_token":{token},"exchange":{json.dumps(exchange)},'
                f'"symbol":{json.dumps(symbol)},"last_price":"'
            )
            self._heads[key] = head
        return head

    def data(self, row: TickRow) -> str:
        """The `data` field of one tick: what `Tick.model_dump_json()` gives."""
        token, exchange, symbol, price, volume, ts = row
        last, text = self._last_ts
        if ts != last:
            text = _utc_json(ts)
            self._last_ts = (ts, text)
        return (
            f'{self._head(token, exchange, symbol)}{price}","volume":{volume},'
            f'"exchange_ts":"{text}"}}'
        )

    async def publish(self, rows: Sequence[TickRow], ids: Sequence[str] | None = None) -> int:
        """Append one Tick envelope per row to the stream; the number appended. `ids` (one
        `new_id()` per row, made by the caller) become the envelopes' `id` and `corr`, so a bar
        the tick closes can carry the same correlation id."""
        if not rows:
            return 0
        if ids is None:
            ids = [new_id() for _ in rows]
        elif len(ids) != len(rows) or any(len(i) != ID_LENGTH for i in ids):
            raise ValueError(f"one {ID_LENGTH}-character id per row")
        payloads = [i + self.data(row) for i, row in zip(ids, rows, strict=True)]
        stamp = utcnow().isoformat()  # the envelopes' `ts`: this publish
        n = await self._script(
            keys=[self.stream],
            args=[self.maxlen, "Tick", Tick.version, stamp, self.source, *payloads],
        )
        self._published.inc(len(rows))
        return int(n)
