"""The Parquet candle cache: layout, merge without duplicates, atomic writes, range reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from dalal_shared import candlestore as cs
from dalal_shared.timeutil import IST

T0 = datetime(2024, 1, 1, 9, 15, tzinfo=IST)


def bars(start: int, n: int, price: float = 100.0) -> pa.Table:
    ts = [T0 + timedelta(minutes=start + i) for i in range(n)]
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "open": [price] * n,
            "high": [price + 1] * n,
            "low": [price - 1] * n,
            "close": [price] * n,
            "volume": [10] * n,
        }
    )


def test_layout_and_refused_names(tmp_path: Path) -> None:
    assert cs.candle_path(tmp_path, "nse", "minute", "m&m") == tmp_path / "NSE/minute/M&M.parquet"
    for bad in ("../etc", "a/b", ""):
        with pytest.raises(cs.BadCandleRequest):
            cs.candle_path(tmp_path, "NSE", "minute", bad)
    with pytest.raises(cs.BadCandleRequest, match="interval"):
        cs.candle_path(tmp_path, "NSE", "2minute", "INFY")


def test_upsert_merges_without_duplicates_and_new_bars_win(tmp_path: Path) -> None:
    cs.upsert(tmp_path, "NSE", "minute", "INFY", bars(0, 10, 100.0))
    merged = cs.upsert(tmp_path, "NSE", "minute", "INFY", bars(5, 10, 200.0))
    assert merged.num_rows == 15
    closes = merged.column("close").to_pylist()
    assert closes[:5] == [100.0] * 5 and closes[5:] == [200.0] * 10
    stored = cs.read(tmp_path, "NSE", "minute", "INFY")
    assert stored.equals(merged)
    assert stored.column("oi").to_pylist() == [0] * 15
    assert not list(tmp_path.rglob("*.tmp*"))


def test_range_read_is_half_open_and_timezone_aware(tmp_path: Path) -> None:
    cs.write(tmp_path, "NSE", "minute", "TCS", bars(0, 30))
    part = cs.read(
        tmp_path,
        "NSE",
        "minute",
        "TCS",
        start=T0 + timedelta(minutes=10),
        end=(T0 + timedelta(minutes=20)).astimezone(UTC),
    )
    ts = part.column("ts").to_pylist()
    assert len(ts) == 10
    assert ts[0] == T0 + timedelta(minutes=10)
    assert cs.read(tmp_path, "NSE", "day", "TCS").num_rows == 0


def test_normalise_sorts_and_dedupes() -> None:
    table = pa.concat_tables([bars(5, 3), bars(0, 6)])
    out = cs.normalise(table)
    assert out.num_rows == 8
    assert out.column("ts").to_pylist() == sorted(out.column("ts").to_pylist())


def test_coverage_index_sits_beside_the_file_and_lists_cached_series(tmp_path: Path) -> None:
    assert cs.read_coverage(tmp_path, "NSE", "day", "TCS") == []
    cs.write(tmp_path, "NSE", "day", "TCS", bars(0, 3))
    cs.write_coverage(tmp_path, "NSE", "day", "TCS", [["2024-01-01", "2024-01-31"]])
    assert cs.read_coverage(tmp_path, "NSE", "day", "TCS") == [["2024-01-01", "2024-01-31"]]
    assert cs.cached_files(tmp_path) == [("NSE", "day", "TCS")]


def test_range_read_bounds_are_start_inclusive_end_exclusive(tmp_path: Path) -> None:
    cs.write(tmp_path, "NSE", "minute", "TCS", bars(0, 10))
    got = cs.read(
        tmp_path, "NSE", "minute", "TCS", T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
    )
    assert [t.astimezone(IST).minute for t in got.column("ts").to_pylist()] == [17, 18, 19]
