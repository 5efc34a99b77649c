"""The Parquet candle cache layout, shared by its writer (data-cache) and its readers (the
engine's backtester, benchmarks).

One file per exchange, interval and symbol: `<root>/<EXCHANGE>/<interval>/<SYMBOL>.parquet`,
sorted by `ts`, no duplicate timestamps. `ts` is the bar start in UTC (IST only at the edges);
prices are float64 rupees as Kite sends them (indicators want floats; the ledger converts fills
to Decimal), volume and open interest int64. Writes are atomic (temp file + rename), so a
reader never sees half a file. Only the data service writes.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dalal_shared.errors import PermanentError
from dalal_shared.streams import BAR_INTERVALS
from dalal_shared.timeutil import to_utc

SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.int64()),
        ("oi", pa.int64()),
    ]
)
_SAFE_SYMBOL = re.compile(r"^[A-Za-z0-9&\-_. ]{1,40}$")


class BadCandleRequest(PermanentError):
    code = "bad_candle_request"


def candle_path(root: Path, exchange: str, interval: str, symbol: str) -> Path:
    if interval not in BAR_INTERVALS:
        raise BadCandleRequest(f"unknown interval {interval!r}; one of {', '.join(BAR_INTERVALS)}")
    if not _SAFE_SYMBOL.match(symbol) or symbol in {".", ".."}:
        raise BadCandleRequest(f"not a trading symbol: {symbol!r}")
    if not exchange.isalpha():
        raise BadCandleRequest(f"not an exchange: {exchange!r}")
    return Path(root) / exchange.upper() / interval / f"{symbol.upper()}.parquet"


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def normalise(table: pa.Table) -> pa.Table:
    """Cast to SCHEMA (adding a zero `oi` column when missing), sorted by ts, unique ts."""
    if "oi" not in table.column_names:
        table = table.append_column("oi", pa.array([0] * table.num_rows, pa.int64()))
    table = table.select(SCHEMA.names).cast(SCHEMA)
    if table.num_rows == 0:
        return table
    table = table.sort_by("ts")  # stable: of equal timestamps the later row stays last
    ts = table.column("ts").combine_chunks()
    if len(ts) < 2:
        return table
    # keep row i when the next row has another timestamp (the last of a run of equals)
    differs = pc.not_equal(ts.slice(1), ts.slice(0, len(ts) - 1))
    keep = pa.concat_arrays([differs, pa.array([True])])
    return table if pc.all(keep).as_py() else table.filter(keep)


def merge(existing: pa.Table, new: pa.Table) -> pa.Table:
    """Union of two candle tables; where both have a bar start, the new bar wins."""
    if existing.num_rows == 0:
        return normalise(new)
    if new.num_rows == 0:
        return normalise(existing)
    new = normalise(new)
    mask = pc.invert(pc.is_in(existing.column("ts"), value_set=new.column("ts")))
    return normalise(pa.concat_tables([existing.filter(mask).cast(SCHEMA), new]))


def read(
    root: Path,
    exchange: str,
    interval: str,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pa.Table:
    """Cached bars with start <= ts < end (either bound optional); empty when nothing cached."""
    path = candle_path(root, exchange, interval, symbol)
    if not path.exists():
        return empty_table()
    filters = []
    if start is not None:
        filters.append(("ts", ">=", pa.scalar(to_utc(start), SCHEMA.field("ts").type)))
    if end is not None:
        filters.append(("ts", "<", pa.scalar(to_utc(end), SCHEMA.field("ts").type)))
    return pq.read_table(path, filters=filters or None, schema=SCHEMA)


def write(root: Path, exchange: str, interval: str, symbol: str, table: pa.Table) -> Path:
    """Replace the cached file atomically with `table` (normalised)."""
    path = candle_path(root, exchange, interval, symbol)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".parquet.tmp{os.getpid()}")
    pq.write_table(normalise(table), tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def upsert(root: Path, exchange: str, interval: str, symbol: str, new: pa.Table) -> pa.Table:
    """Merge `new` into the cached file and write it back; returns the merged table."""
    merged = merge(read(root, exchange, interval, symbol), new)
    write(root, exchange, interval, symbol, merged)
    return merged
