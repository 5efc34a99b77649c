"""Bar histories for the backtester: the Parquet candle cache, CSV files or the data service's
candles API, as `BarSeries`.

CSV files have the columns `date,open,high,low,close,volume` (the project's NSE data format):
a daily `date` is `YYYY-MM-DD` and means the Kite daily candle stamped 00:00 IST; an intraday
`date` is the bar start with its offset. Parquet files follow `dalal_shared.candlestore`.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dalal_engine.strategy import BarSeries
from dalal_engine.timing import warmup_days
from dalal_shared import candlestore
from dalal_shared.errors import PermanentError
from dalal_shared.timeutil import to_ist

if TYPE_CHECKING:
    from dalal_engine.strategyconfig import StrategyConfig
    from dalal_shared.clients import DataClient


class NoBarsError(PermanentError):
    code = "no_bars"


def _series(symbol: str, frame: pd.DataFrame) -> BarSeries:
    frame = frame.sort_values("ts").drop_duplicates("ts", keep="last")
    starts = tuple(ts.to_pydatetime() for ts in frame["ts"])
    utc = frame["ts"].dt.tz_convert(UTC).dt.tz_localize(None)
    seconds = utc.to_numpy(dtype="datetime64[s]").astype(np.int64)
    return BarSeries(
        symbol=symbol,
        start=starts,
        open=frame["open"].to_numpy(np.float64),
        high=frame["high"].to_numpy(np.float64),
        low=frame["low"].to_numpy(np.float64),
        close=frame["close"].to_numpy(np.float64),
        volume=frame["volume"].fillna(0).to_numpy(np.int64),
        _seconds=seconds,
    )


def _before(series: BarSeries, end: datetime) -> BarSeries:
    """The bars of `series` that start before `end`."""
    n = bisect.bisect_left(series.start, end)
    if n == len(series):
        return series
    return BarSeries(
        series.symbol,
        series.start[:n],
        series.open[:n],
        series.high[:n],
        series.low[:n],
        series.close[:n],
        series.volume[:n],
        series.seconds[:n],
    )


def read_csv(path: Path, symbol: str) -> BarSeries:
    frame = pd.read_csv(path)
    text = frame["date"].astype(str)
    if text.str.len().max() <= 10:  # daily: the Kite candle of that IST day
        ts = pd.to_datetime(text, format="%Y-%m-%d").dt.tz_localize("Asia/Kolkata")
    else:
        ts = pd.to_datetime(text, format="ISO8601")
    frame = frame.assign(ts=ts.dt.tz_convert(UTC))
    return _series(symbol, frame)


def find_csv(data_dir: Path, interval: str, symbol: str) -> Path | None:
    """`<dir>/<interval>/<SYMBOL>.csv` or `<dir>/<SYMBOL>.csv`, plain or gzipped (`.csv.gz`,
    as kitesim ships most of its daily files)."""
    name = symbol.replace(" ", "") + ".csv"
    for folder in (data_dir / interval, data_dir):
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.exists():
                return candidate
    return None


def load(
    symbol: str,
    interval: str,
    *,
    cache_dir: Path | None = None,
    data_dir: Path | None = None,
    exchange: str = "NSE",
    end: datetime | None = None,
) -> BarSeries:
    """Bars of `symbol` from the CSV data dir when given, else the Parquet cache; all history
    up to `end` (the strategy's warm-up comes from the bars before the backtest's start)."""
    if data_dir is not None:
        path = find_csv(Path(data_dir), interval, symbol)
        if path is None:
            raise NoBarsError(f"no CSV for {symbol} ({interval}) under {data_dir}")
        series = read_csv(path, symbol)
    elif cache_dir is not None:
        table = candlestore.read(Path(cache_dir), exchange, interval, symbol)
        if table.num_rows == 0:
            raise NoBarsError(
                f"no cached {interval} bars for {exchange}:{symbol} under {cache_dir} "
                "(run `dalal data backfill` first, or pass --data-dir with CSVs)"
            )
        series = _series(symbol, table.to_pandas())
    else:
        raise NoBarsError("give a Parquet cache dir or a CSV data dir")
    if end is not None:
        series = _before(series, end)
    if len(series) == 0:
        raise NoBarsError(f"no bars for {symbol} before {end}")
    return series


def from_service(
    client: DataClient,
    symbol: str,
    interval: str,
    *,
    start: datetime,
    end: datetime,
    warmup_bars: int,
    exchange: str = "NSE",
) -> BarSeries:
    """Bars of `symbol` from the data service (`GET /candles`, which fetches what its cache
    misses from Kite): from `warmup_bars` bars before `start` up to `end`."""
    first = to_ist(start) - timedelta(days=warmup_days(interval, max(warmup_bars, 1)))
    body = client.candles(
        exchange, symbol, interval, f"{first:%Y-%m-%d}", f"{to_ist(end):%Y-%m-%dT%H:%M:%S}"
    )
    rows = body["candles"]
    if not rows:
        raise NoBarsError(f"the data service has no {interval} bars for {exchange}:{symbol}")
    frame = pd.DataFrame(rows, columns=body["columns"])
    frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601", utc=True)
    return _before(_series(symbol, frame), end)  # the API's `to` is inclusive


def load_universe(
    config: StrategyConfig,
    *,
    start: datetime,
    end: datetime,
    data: DataClient | None = None,
    cache_dir: Path | None = None,
    data_dir: Path | None = None,
) -> dict[str, BarSeries]:
    """Every symbol of `config`'s universe: CSV files in `data_dir`, else the data service's
    candles API through `data` (warm-up included), else the Parquet cache."""
    if data is not None and data_dir is None:
        warmup = config.build().warmup_bars
        return {
            s: from_service(
                data,
                s,
                config.interval,
                start=start,
                end=end,
                warmup_bars=warmup,
                exchange=config.exchange,
            )
            for s in config.universe
        }
    return {
        s: load(
            s,
            config.interval,
            cache_dir=cache_dir,
            data_dir=data_dir,
            exchange=config.exchange,
            end=end,
        )
        for s in config.universe
    }
