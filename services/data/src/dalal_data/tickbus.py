"""The feed's fast path to `market.ticks` and the bar streams: Tick and Bar envelopes written
without pydantic per message, and a batch of ticks with the bars they close appended in one
Redis round trip.

The entries are the bus's ordinary envelopes (`type`, `v`, `id`, `ts`, `source`, `corr`, `data`,
in that order; `Envelope.from_fields` reads them like any other): `data` is the JSON
`Tick.model_dump_json()` would write, produced from a per-instrument template (validated once,
through the Tick model, when the instrument is first seen). What made the generic
`Publisher.publish_many` slow for ticks was not Redis but the client: two pydantic models per
tick and redis-py packing 17 arguments per XADD in Python. Here one EVALSHA carries the whole
batch, one argument per tick (its 26-character envelope id followed by its data), and the
script appends each entry with the same approximate MAXLEN trim as the Publisher.

The bars a batch of ticks closes (at a minute's close, one per symbol and interval) go in the
same script call, after the ticks: a bar's `data` is `Bar.model_dump_json()`'s text from a
per-(symbol, interval) head checked once through the Bar model, its prices written as they are
when they are plain positive decimals with at most 4 places (every price from Kite's ticker;
anything else goes through the model, which refuses what it always refused). One call is one
atomic step on the server: an engine blocked on the bars stream wakes once, with every bar of
the minute, one round trip after the ticks were stamped (it was two: the ticks, then the bars
built through pydantic, ~0.7 ms for 50 on a 2-core machine).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from dalal_data.bars import OpenBar
from dalal_shared.bus import PUBLISHED
from dalal_shared.ids import new_id
from dalal_shared.messages import Bar, Tick
from dalal_shared.streams import bars_stream
from dalal_shared.timeutil import utcnow

ID_LENGTH = 26

_APPEND = """
local maxlen, source, ticks = ARGV[1], ARGV[2], tonumber(ARGV[3])
local tick_ts, tick_v, bar_ts, bar_v = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
for i = 8, 7 + ticks do
  local p = ARGV[i]
  local id = string.sub(p, 1, 26)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'type', 'Tick', 'v', tick_v, 'id', id,
             'ts', tick_ts, 'source', source, 'corr', id, 'data', string.sub(p, 27))
end
for i = 8 + ticks, #ARGV do
  local p = ARGV[i]
  redis.call('XADD', KEYS[tonumber(string.sub(p, 1, 2))], 'MAXLEN', '~', maxlen, '*',
             'type', 'Bar', 'v', bar_v, 'id', string.sub(p, 3, 28), 'ts', bar_ts,
             'source', source, 'corr', string.sub(p, 29, 54), 'data', string.sub(p, 55))
end
return #ARGV - 7
"""

# (instrument_token, exchange, symbol, last_price, cumulative volume, exchange_ts)
TickRow = tuple[int, str, str, Decimal, int, datetime]
# (exchange, bar): a bar the ticks closed, to its interval's stream
BarRow = tuple[str, OpenBar]

# a price written as it is: digits, at most 4 places, at most 20 digits (`PositiveRupees`)
_PLAIN_PRICE = re.compile(r"[0-9]{1,16}(?:\.[0-9]{1,4})?")


def _utc_json(ts: datetime) -> str:
    """An aware time as pydantic writes it in JSON (UTC, `Z`)."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_time(ts: datetime) -> str:
    """An aware time as pydantic writes it in JSON: with its own offset, `Z` for UTC."""
    text = ts.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


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
        self._bar_heads: dict[tuple[str, str, str], str] = {}
        self._bar_start: tuple[datetime | None, str] = (None, "")
        self._bars_published: dict[str, Any] = {}  # stream -> PUBLISHED child

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

    def _bar_head(self, exchange: str, symbol: str, interval: str) -> str:
        """`{"exchange":..,"symbol":..,"interval":..,` of a symbol's bars of an interval,
        checked once through the Bar model."""
        key = (exchange, symbol, interval)
        head = self._bar_heads.get(key)
        if head is None:
            one = Decimal(1)
            Bar(
                exchange=exchange,
                symbol=symbol,
                interval=interval,
                start=utcnow(),
                open=one,
                high=one,
                low=one,
                close=one,
            )
            head = (
                f'{{"exchange":{json.dumps(exchange)},"symbol":{json.dumps(symbol)},'
                f'"interval":{json.dumps(interval)},'
            )
            self._bar_heads[key] = head
        return head

    def bar_data(self, exchange: str, bar: OpenBar) -> str:
        """The `data` field of one bar: what `Bar(...).model_dump_json()` gives (through the
        model, which raises on what it refuses, when a price is not a plain positive decimal
        of at most 4 places or the volume is negative)."""
        texts = [str(bar.open), str(bar.high), str(bar.low), str(bar.close)]
        plain = _PLAIN_PRICE.fullmatch
        if (
            bar.volume < 0
            or bar.start.utcoffset() is None
            or not all(plain(t) and t.strip("0.") for t in texts)
        ):
            return Bar(
                exchange=exchange,
                symbol=bar.symbol,
                interval=bar.interval,
                start=bar.start,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
            ).model_dump_json()
        last, start = self._bar_start
        if last is None or bar.start != last or bar.start.tzinfo is not last.tzinfo:
            start = _json_time(bar.start)
            self._bar_start = (bar.start, start)
        o, h, lo, c = texts
        return (
            f'{self._bar_head(exchange, bar.symbol, bar.interval)}"start":"{start}",'
            f'"open":"{o}","high":"{h}","low":"{lo}","close":"{c}","volume":{bar.volume}}}'
        )

    async def publish(
        self,
        rows: Sequence[TickRow],
        ids: Sequence[str] | None = None,
        bars: Sequence[BarRow] = (),
    ) -> int:
        """Append one Tick envelope per row to the stream, then one Bar envelope per bar to its
        interval's stream (`bars_stream`), in one atomic call; the number appended. `ids` (one
        `new_id()` per row, made by the caller) become the ticks' `id` and `corr`; a bar's
        `corr` is its `corr` (the id of the tick that closed it), else its own id. The ticks
        are stamped (`ts`) before the bars are written out, the bars after."""
        if not rows and not bars:
            return 0
        if ids is None:
            ids = [new_id() for _ in rows]
        elif len(ids) != len(rows) or any(len(i) != ID_LENGTH for i in ids):
            raise ValueError(f"one {ID_LENGTH}-character id per row")
        payloads = [i + self.data(row) for i, row in zip(ids, rows, strict=True)]
        tick_stamp = utcnow().isoformat()  # the ticks' `ts`: this publish
        keys = [self.stream]
        places: dict[str, int] = {}
        counts: dict[str, int] = {}
        for exchange, bar in bars:
            stream = bars_stream(bar.interval)
            k = places.get(stream)
            if k is None:
                keys.append(stream)
                k = places[stream] = len(keys)
            counts[stream] = counts.get(stream, 0) + 1
            bar_id = new_id()
            corr = bar.corr or bar_id
            if len(corr) != ID_LENGTH:
                raise ValueError(f"a bar's corr has {ID_LENGTH} characters, not {corr!r}")
            payloads.append(f"{k:02d}{bar_id}{corr}{self.bar_data(exchange, bar)}")
        if len(keys) > 99:
            raise ValueError("at most 98 bar streams in one publish")
        bar_stamp = utcnow().isoformat()  # the bars' `ts`: built, now sent
        n = await self._script(
            keys=keys,
            args=[
                self.maxlen, self.source, len(rows),
                tick_stamp, Tick.version, bar_stamp, Bar.version,
                *payloads,
            ],
        )  # fmt: skip
        if rows:
            self._published.inc(len(rows))
        for stream, count in counts.items():
            child = self._bars_published.get(stream)
            if child is None:
                child = self._bars_published[stream] = PUBLISHED.labels(stream, "Bar")
            child.inc(count)
        return int(n)
