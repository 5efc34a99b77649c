"""Instruments and bars: the real NSE data kitesim serves and replays.

Bars live in CSV files `<root>/<interval>/<SYMBOL>.csv` (`date,open,high,low,close,volume`;
daily dates `YYYY-MM-DD`, intraday dates the bar start with its IST offset), `SYMBOL` being the
Kite trading symbol without spaces (`NIFTY50.csv` is `NIFTY 50`), or in Parquet files
`<root>/<EXCHANGE>/<interval>/<SYMBOL>.parquet` in the layout of `dalal_shared.candlestore` (the
data service's cache: ts UTC, float64 prices, volume, oi), so a Dalal cache directory can be
served as is. CSV files may be gzipped (`<SYMBOL>.csv.gz`). Several roots are searched in order
(a user directory first, then the bundled data): a symbol's bars all come from the first root
that has any file of it, so a user's 5-minute file is never mixed with (or overridden by) bundled
15-minute or minute bars. Within a root, Parquet wins over CSV. An interval with no file of its
own is built from a finer one that divides it (5minute from minute, 60minute from 15minute, day
from any intraday interval). The market clock replays the finest interval the symbol's root has
(`replay_day`: per day, so minute bars for one month and 15-minute bars for the year both play).
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

from dalal_shared import candlestore
from dalal_shared.fills import Bar
from dalal_shared.intervals import INTERVAL_MINUTES
from dalal_shared.timeutil import IST

DIR_ALIASES: dict[str, tuple[str, ...]] = {"day": ("day", "daily_adjusted", "daily")}
SESSION_OPEN = time(9, 15)


@dataclass(frozen=True, slots=True)
class OiBar(Bar):
    """A bar with open interest (Parquet files carry it; CSV bars are plain `Bar`s, oi 0)."""

    oi: int = 0


@dataclass(frozen=True, slots=True)
class Instrument:
    instrument_token: int
    exchange_token: int
    tradingsymbol: str
    name: str
    tick_size: Decimal
    lot_size: int
    instrument_type: str
    segment: str
    exchange: str

    @property
    def is_index(self) -> bool:
        return self.segment == "INDICES"

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


class InstrumentStore:
    """The instruments dump, by token and by `EXCHANGE:SYMBOL`."""

    def __init__(self, text: str):
        # Serve only well-formed rows (the upstream dump has one commented-out line).
        lines = text.splitlines(keepends=True)
        text = lines[0] + "".join(ln for ln in lines[1:] if ln.split(",", 1)[0].isdigit())
        self._text = text
        self.by_token: dict[int, Instrument] = {}
        self.by_key: dict[str, Instrument] = {}
        for row in csv.DictReader(io.StringIO(text)):
            inst = Instrument(
                instrument_token=int(row["instrument_token"]),
                exchange_token=int(row["exchange_token"]),
                tradingsymbol=row["tradingsymbol"],
                name=row["name"],
                tick_size=Decimal(row["tick_size"] or "0"),
                lot_size=int(float(row["lot_size"] or 0)),
                instrument_type=row["instrument_type"],
                segment=row["segment"],
                exchange=row["exchange"],
            )
            self.by_token[inst.instrument_token] = inst
            self.by_key[inst.key] = inst

    @classmethod
    def from_csv(cls, path: Path) -> InstrumentStore:
        return cls(path.read_text())

    def csv_text(self, exchange: str | None = None) -> str:
        """The dump as Kite serves it, whole or for one exchange."""
        if exchange is None:
            return self._text
        lines = self._text.splitlines(keepends=True)
        header, rows = lines[0], lines[1:]
        suffix = f",{exchange}"
        return header + "".join(r for r in rows if r.rstrip("\r\n").endswith(suffix))

    def exchanges(self) -> set[str]:
        return {i.exchange for i in self.by_token.values()}

    def get(self, token: int) -> Instrument | None:
        return self.by_token.get(token)

    def lookup(self, key: str) -> Instrument | None:
        """`EXCHANGE:SYMBOL` or a numeric instrument token."""
        if key.isdigit():
            return self.by_token.get(int(key))
        return self.by_key.get(key)


def _parse_ts(text: str) -> datetime:
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), SESSION_OPEN, tzinfo=IST)
    value = datetime.fromisoformat(text.replace(" ", "T"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=IST)
    return value.astimezone(IST)


def read_bars(path: Path) -> list[Bar]:
    bars = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return []
        for row in reader:
            if not row:
                continue
            bars.append(
                Bar(
                    start=_parse_ts(row[0]),
                    open=Decimal(row[1]),
                    high=Decimal(row[2]),
                    low=Decimal(row[3]),
                    close=Decimal(row[4]),
                    volume=int(float(row[5])) if len(row) > 5 and row[5] else 0,
                )
            )
    bars.sort(key=lambda b: b.start)
    return bars


def read_parquet_bars(root: Path, exchange: str, interval: str, symbol: str) -> list[Bar]:
    """A candlestore file as bars: ts (UTC) to IST, float prices to Decimal, oi kept."""
    table = candlestore.read(root, exchange, interval, symbol)
    cols = table.to_pydict()
    prices: dict[float, Decimal] = {}  # a series repeats its prices: convert each once

    def price(value: float) -> Decimal:
        out = prices.get(value)
        if out is None:
            # repr of a float is the shortest text that round-trips: 2500.05, not 2500.0499...
            out = prices[value] = Decimal(repr(float(value)))
        return out

    daily = interval == "day"
    bars: list[Bar] = []
    for ts, o, h, lo, c, v, oi in zip(
        cols["ts"],
        cols["open"],
        cols["high"],
        cols["low"],
        cols["close"],
        cols["volume"],
        cols["oi"],
        strict=True,
    ):
        start = ts.astimezone(IST)
        if daily:  # daily bars start at the open, as the CSV ones do
            start = datetime.combine(start.date(), SESSION_OPEN, tzinfo=IST)
        bars.append(OiBar(start, price(o), price(h), price(lo), price(c), v or 0, oi or 0))
    return bars


def resample(bars: list[Bar], minutes: int) -> list[Bar]:
    """Aggregate intraday bars into `minutes` buckets aligned to 09:15 IST."""
    out: list[Bar] = []
    current: list[Bar] = []
    bucket: datetime | None = None
    for bar in bars:
        start = bar.start.astimezone(IST)
        session_open = datetime.combine(start.date(), SESSION_OPEN, tzinfo=IST)
        offset = int((start - session_open).total_seconds() // 60)
        b = session_open + timedelta(minutes=(offset // minutes) * minutes)
        if bucket is not None and b != bucket:
            out.append(_merge(bucket, current))
            current = []
        bucket = b
        current.append(bar)
    if current and bucket is not None:
        out.append(_merge(bucket, current))
    return out


def bars_on(bars: list[Bar], day: date) -> list[Bar]:
    """The bars of one IST day from a time-sorted series (binary search: series are long)."""
    start = datetime.combine(day, time(0, 0), tzinfo=IST)
    lo = bisect.bisect_left(bars, start, key=lambda b: b.start)
    hi = bisect.bisect_left(bars, start + timedelta(days=1), key=lambda b: b.start)
    return bars[lo:hi]


def resample_days(bars: list[Bar]) -> list[Bar]:
    """Intraday bars into daily bars (one per IST date, starting at the 09:15 open)."""
    out: list[Bar] = []
    current: list[Bar] = []
    day: date | None = None
    for bar in bars:
        d = bar.start.astimezone(IST).date()
        if day is not None and d != day:
            out.append(_merge(datetime.combine(day, SESSION_OPEN, tzinfo=IST), current))
            current = []
        day = d
        current.append(bar)
    if current and day is not None:
        out.append(_merge(datetime.combine(day, SESSION_OPEN, tzinfo=IST), current))
    return out


def _merge(start: datetime, bars: list[Bar]) -> Bar:
    return OiBar(
        start=start,
        open=bars[0].open,
        high=max(b.high for b in bars),
        low=min(b.low for b in bars),
        close=bars[-1].close,
        volume=sum(b.volume for b in bars),
        oi=bar_oi(bars[-1]),  # open interest at the end of the bucket
    )


def bar_oi(bar: Bar) -> int:
    return bar.oi if isinstance(bar, OiBar) else 0


def file_stem(tradingsymbol: str) -> str:
    return tradingsymbol.replace(" ", "")


BarSource = tuple[str, Path]  # ("csv", path) or ("parquet", root)


class BarStore:
    """Bars per (exchange, symbol, interval), read lazily from the roots and kept in memory.

    Each root may hold CSV (`<interval>/<SYMBOL>.csv`, any exchange) and Parquet
    (`<EXCHANGE>/<interval>/<SYMBOL>.parquet`) files; roots are searched in order.
    """

    def __init__(self, roots: list[Path]):
        self.roots = [r for r in roots if r is not None]
        self._cache: dict[tuple[str, str, str], list[Bar] | None] = {}
        self._roots_of: dict[tuple[str, str], Path | None] = {}

    def root_of(self, symbol: str, exchange: str = "NSE") -> Path | None:
        """The first root holding any file of `symbol`: all its bars come from there."""
        key = (exchange, symbol)
        if key not in self._roots_of:
            self._roots_of[key] = next(
                (
                    root
                    for root in self.roots
                    if any(self._source_in(root, symbol, i, exchange) for i in INTERVAL_MINUTES)
                ),
                None,
            )
        return self._roots_of[key]

    def _source(self, symbol: str, interval: str, exchange: str) -> BarSource | None:
        root = self.root_of(symbol, exchange)
        return None if root is None else self._source_in(root, symbol, interval, exchange)

    @staticmethod
    def _source_in(root: Path, symbol: str, interval: str, exchange: str) -> BarSource | None:
        for name in dict.fromkeys((symbol.upper(), file_stem(symbol).upper())):
            try:
                path = candlestore.candle_path(root, exchange, interval, name)
            except candlestore.BadCandleRequest:
                continue
            if path.is_file():
                return ("parquet", root)
        for dirname in DIR_ALIASES.get(interval, (interval,)):
            for suffix in (".csv", ".csv.gz"):
                path = root / dirname / f"{file_stem(symbol)}{suffix}"
                if path.is_file():
                    return ("csv", path)
        return None

    def _raw(self, symbol: str, interval: str, exchange: str) -> list[Bar] | None:
        key = (exchange, symbol, interval)
        if key not in self._cache:
            source = self._source(symbol, interval, exchange)
            if source is None:
                self._cache[key] = None
            elif source[0] == "csv":
                self._cache[key] = read_bars(source[1])
            else:
                self._cache[key] = self._read_parquet(source[1], exchange, interval, symbol)
        return self._cache[key]

    @staticmethod
    def _read_parquet(root: Path, exchange: str, interval: str, symbol: str) -> list[Bar]:
        for name in dict.fromkeys((symbol.upper(), file_stem(symbol).upper())):
            if candlestore.candle_path(root, exchange, interval, name).is_file():
                return read_parquet_bars(root, exchange, interval, name)
        return []

    def available_intervals(self, symbol: str, exchange: str = "NSE") -> list[str]:
        return [i for i in INTERVAL_MINUTES if self._source(symbol, i, exchange) is not None]

    def symbols(self, exchange: str = "NSE") -> set[str]:
        """Every file stem (spaces removed) found in any interval folder of any root: CSV
        files of any exchange, Parquet files of `exchange`."""
        out: set[str] = set()
        for root in self.roots:
            if not root.is_dir():
                continue
            for sub in root.iterdir():
                if sub.is_dir():
                    out.update(p.stem for p in sub.glob("*.csv"))
                    out.update(p.name[: -len(".csv.gz")] for p in sub.glob("*.csv.gz"))
            for path in root.glob(f"{exchange.upper()}/*/*.parquet"):
                if path.parent.name in INTERVAL_MINUTES:
                    out.add(file_stem(path.stem))
        return out

    def bars(self, symbol: str, interval: str, exchange: str = "NSE") -> list[Bar] | None:
        """All bars of `symbol` at `interval` (built from a finer interval if need be)."""
        if interval not in INTERVAL_MINUTES:
            raise ValueError(f"unknown interval {interval}")
        own = self._raw(symbol, interval, exchange)
        if own is not None:
            return own
        if interval == "day":  # from the coarsest intraday file (usually the longest history)
            for finer in sorted(INTERVAL_MINUTES, key=INTERVAL_MINUTES.__getitem__, reverse=True):
                source = None if finer == "day" else self._raw(symbol, finer, exchange)
                if source:
                    key = (exchange, symbol, f"day<{finer}")
                    if key not in self._cache:
                        self._cache[key] = resample_days(source)
                    return self._cache[key]
            return None
        minutes = INTERVAL_MINUTES[interval]
        for finer, fm in sorted(INTERVAL_MINUTES.items(), key=lambda kv: -kv[1]):
            if finer == "day" or fm >= minutes or minutes % fm:
                continue
            source = self._raw(symbol, finer, exchange)
            if source is not None:
                key = (exchange, symbol, f"{interval}<{finer}")
                if key not in self._cache:
                    self._cache[key] = resample(source, minutes)
                return self._cache[key]
        return None

    def replay_day(
        self, symbol: str, day: date, exchange: str = "NSE"
    ) -> tuple[str, list[Bar]] | None:
        """What the market clock replays of `symbol` on `day`: the bars of that day of the
        finest interval with a file of its own in the symbol's root that has any (minute bars
        for January, 15-minute for the rest of the year, day bars after that)."""
        for interval in sorted(INTERVAL_MINUTES, key=INTERVAL_MINUTES.__getitem__):
            bars = self._raw(symbol, interval, exchange)
            if bars:
                todays = bars_on(bars, day)
                if todays:
                    return interval, todays
        return None

    def between(
        self, symbol: str, interval: str, start: datetime, end: datetime, exchange: str = "NSE"
    ) -> list[Bar]:
        """Bars with start in [start, end] (aware datetimes)."""
        bars = self.bars(symbol, interval, exchange) or []
        if interval == "day":
            first, last = start.astimezone(IST).date(), end.astimezone(IST).date()
            return [b for b in bars if first <= b.start.date() <= last]
        return [b for b in bars if start <= b.start <= end]


def candle(bar: Bar, *, oi: bool, daily: bool = False) -> list[object]:
    """One candle as Kite sends it: [ts '+0530', o, h, l, c, v(, oi)]; daily at 00:00."""
    start = bar.start.astimezone(IST)
    if daily:
        start = start.replace(hour=0, minute=0, second=0)
    ts = start.strftime("%Y-%m-%dT%H:%M:%S+0530")
    row: list[object] = [ts, float(bar.open), float(bar.high), float(bar.low), float(bar.close)]
    row.append(bar.volume)
    if oi:
        row.append(bar_oi(bar))
    return row
