"""The Parquet candle cache layout, shared by its writer (data-cache) and its readers (the
engine's backtester, benchmarks).

One file per exchange, interval and symbol: `<root>/<EXCHANGE>/<interval>/<SYMBOL>.parquet`,
sorted by `ts`, no duplicate timestamps. `ts` is the bar start in UTC (IST only at the edges);
prices are float64 rupees as Kite sends them (indicators want floats; the ledger converts fills
to Decimal), volume and open interest int64. Writes are atomic (temp file + rename), so a
reader never sees half a file. Only the data service writes.
"""

from __future__ import annotations

import json
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
    # a file is one symbol's series (small): reading it whole and slicing the sorted `ts` is
    # several times faster than the dataset API's row filters
    table = pq.ParquetFile(path).read()
    if table.schema != SCHEMA:
        table = table.cast(SCHEMA)
    ts = table.column("ts")
    lo = 0
    hi = table.num_rows
    if start is not None:
        lo = _bisect(ts, to_utc(start))
    if end is not None:
        hi = _bisect(ts, to_utc(end))
    return table.slice(lo, max(0, hi - lo))


def _bisect(ts: pa.ChunkedArray, moment: datetime) -> int:
    """Index of the first bar with ts >= moment (ts sorted ascending)."""
    scalar = pa.scalar(moment, SCHEMA.field("ts").type)
    return int(pc.sum(pc.less(ts, scalar)).as_py() or 0)


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


# ---------------------------------------------------------------- coverage index
# Beside each Parquet file, `<SYMBOL>.coverage.json` lists the session days (IST dates, as
# inclusive ranges) that were fetched completely: a day in it is never requested again, even
# when it has no bar (the symbol did not trade or was not listed yet).


def coverage_path(root: Path, exchange: str, interval: str, symbol: str) -> Path:
    return candle_path(root, exchange, interval, symbol).with_suffix(".coverage.json")


def read_coverage(root: Path, exchange: str, interval: str, symbol: str) -> list[list[str]]:
    """Covered day ranges as [[first, last], ...] ISO dates; empty when nothing is cached."""
    path = coverage_path(root, exchange, interval, symbol)
    if not path.exists():
        return []
    ranges: list[list[str]] = json.loads(path.read_text()).get("ranges", [])
    return ranges


def write_coverage(
    root: Path, exchange: str, interval: str, symbol: str, ranges: list[list[str]]
) -> Path:
    path = coverage_path(root, exchange, interval, symbol)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".json.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"ranges": ranges}))
    os.replace(tmp, path)
    return path


def cached_files(root: Path) -> list[tuple[str, str, str]]:
    """(exchange, interval, symbol) of every cached Parquet file under `root`."""
    out = []
    for path in sorted(Path(root).glob("*/*/*.parquet")):
        out.append((path.parent.parent.name, path.parent.name, path.stem))
    return out
