"""Bar histories for the backtester: the Parquet candle cache, CSV files or the data service's
candles API, as `BarSeries`.

CSV files have the columns `date,open,high,low,close,volume` (the project's NSE data format):
a daily `date` is `YYYY-MM-DD` and means the Kite daily candle stamped 00:00 IST; an intraday
`date` is the bar start with its offset. Parquet files follow `dalal_shared.candlestore`.
"""

from __future__ import annotations

import bisect
import gzip
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from dalal_engine.bars import BarSeries, BarStarts
from dalal_engine.timing import warmup_days
from dalal_shared.errors import PermanentError
from dalal_shared.timeutil import to_ist

if TYPE_CHECKING:
    import pandas as pd

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
    if isinstance(series.start, BarStarts):  # the same index, without making datetimes
        n = int(np.searchsorted(series.seconds, end.timestamp(), side="left"))
    else:
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


_IST_SECONDS = 19_800  # a daily bar is the Kite candle stamped 00:00 IST of its day
_COLUMNS = ("date", "open", "high", "low", "close", "volume")


def read_csv(path: Path, symbol: str) -> BarSeries:
    """A `date,open,high,low,close,volume` file (plain or `.gz`) as bars, sorted by time, a
    repeated time keeping its last row. Parsed with the standard library and numpy (no
    pandas: `dalal backtest` spends its time on the backtest, not on importing a parser)."""
    if path.suffix == ".gz":  # decompressed at once, decoded as a text file would be
        raw = io.BytesIO(gzip.decompress(path.read_bytes()))
        with io.TextIOWrapper(raw, newline="") as unzipped:
            text = unzipped.read()
    else:
        with open(path, newline="") as fh:
            text = fh.read()
    head, _, body = text.partition("\n")
    header = [h.strip().lower() for h in head.rstrip("\r").split(",")] if text else []
    missing = [c for c in _COLUMNS if c not in header]
    if missing:
        raise NoBarsError(f"{path}: no column {', '.join(missing)} (want {','.join(_COLUMNS)})")
    at = {name: header.index(name) for name in _COLUMNS}
    dates: Sequence[str] | NDArray[np.str_]
    record = _loaded_by_numpy(body, header, at["date"])
    numbers = None if record is not None else _plain_numbers(body, len(header), at["date"])
    if record is not None:  # the usual file: numpy's C reader
        dates, records = record

        def parsed(name: str) -> NDArray[np.float64]:
            values: NDArray[np.float64] = records[name]
            return values

    elif numbers is not None:  # every number parsed at once from the text's bytes
        dates, table = numbers

        def parsed(name: str) -> NDArray[np.float64]:
            return table[:, at[name]]

    else:
        cols = _columns_at_once(body, len(header))
        if cols is None:  # anything unusual (CR LF, blank lines, ragged rows): line by line
            rows = [line.split(",") for line in body.splitlines() if line.strip()]
            if not rows:
                raise NoBarsError(f"{path}: no bars")
            cols = list(zip(*rows, strict=True))
        dates = cols[at["date"]]
        raw_volume = cols[at["volume"]]
        if "" in raw_volume:
            raw_volume = [v or "0" for v in raw_volume]
            cols[at["volume"]] = raw_volume

        def parsed(name: str) -> NDArray[np.float64]:
            return np.array(list(map(float, cols[at[name]])))

    seconds = _epoch_seconds(dates)
    order = np.argsort(seconds, kind="stable")
    seconds = seconds[order]
    keep = np.append(seconds[1:] != seconds[:-1], True)  # the last row of a repeated time
    picked = order[keep]
    seconds = seconds[keep]

    def column(name: str) -> NDArray[np.float64]:
        values: NDArray[np.float64] = parsed(name)[picked]
        return values

    volume = column("volume")
    return BarSeries(
        symbol=symbol,
        start=BarStarts(seconds),  # datetimes made when read
        open=column("open"),
        high=column("high"),
        low=column("low"),
        close=column("close"),
        volume=volume.astype(np.int64),
        _seconds=seconds,
    )


# what a body must not hold for `_loaded_by_numpy`: what numpy's reader and `str.split` with
# `float()` could tell apart (control characters, CR among them, which numpy may take for a
# line end or strip as space; spaces around a field; quotes)
_NOT_FOR_NUMPY = (*(chr(c) for c in range(32) if c != ord("\n")), "\x7f", " ", '"')


def _loaded_by_numpy(
    body: str, header: list[str], date_at: int
) -> tuple[NDArray[np.str_], NDArray[np.void]] | None:
    """The dates (as a numpy array of texts) and the rows (a record per line, a float64
    field per number column) of a CSV body with exactly the six columns, read by numpy's C
    reader (`np.loadtxt`). Its numbers are the floats `float()` reads field by field: numpy
    converts each field with `PyOS_string_to_double`, the function behind `float()`, and a
    field it cannot read whole fails the read. None when the body is not printable ASCII
    with LF line ends, without space or quote, or numpy refuses it (an empty field, a ragged row, an
    `_` in a number, a date longer than the first): the other readers take it, as before."""
    if len(header) != len(_COLUMNS) or not body.strip() or not body.isascii():
        return None
    if any(c in body for c in _NOT_FOR_NUMPY):
        return None
    first = body.partition("\n")[0].split(",")
    if len(first) != len(header):
        return None
    width = len(first[date_at]) + 1  # one more: a later, longer date shows
    dtype = np.dtype(
        [(name, f"U{width}" if k == date_at else "f8") for k, name in enumerate(header)]
    )
    try:
        rows = np.loadtxt(io.StringIO(body), delimiter=",", dtype=dtype, comments=None, ndmin=1)
    except ValueError:
        return None
    dates = np.ascontiguousarray(rows[header[date_at]])
    if dates.view(np.uint32).reshape(len(dates), width)[:, -1].any():
        return None
    return dates.astype(f"U{width - 1}"), rows


def _columns_at_once(body: str, width: int) -> list[Sequence[str]] | None:
    """The columns of a plain CSV body (LF line ends, no blank line, `width` fields on every
    row) from one split of the whole text, each line end kept as a field of its own so that
    a row with more or fewer fields shows; None when the body is not that plain."""
    if not body.strip() or "\r" in body:
        return None
    if not body.endswith("\n"):
        body += "\n"
    rows = body.count("\n")
    fields = body.replace("\n", ",\n,").split(",")
    stride = width + 1
    if len(fields) != rows * stride + 1 or fields[width::stride].count("\n") != rows:
        return None  # ragged rows or blank lines
    return [fields[k:-1:stride] for k in range(width)]


_POWERS_OF_TEN = 10 ** np.arange(16, dtype=np.int64)
_MAX_DIGITS = 15  # a whole number of at most 15 digits is exact in a float64


_CHUNK_CHARACTERS = 60_000  # parsed a piece at a time: the work arrays stay in the CPU cache


def _plain_numbers(
    body: str, width: int, date_at: int
) -> tuple[NDArray[np.str_], NDArray[np.float64]] | None:
    """`_plain_piece` of the whole body, a piece of whole lines at a time."""
    if len(body) <= _CHUNK_CHARACTERS:
        return _plain_piece(body, width, date_at)
    dates = []
    tables = []
    start = 0
    while start < len(body):
        cut = body.find("\n", start + _CHUNK_CHARACTERS)
        stop = len(body) if cut < 0 else cut + 1
        piece = _plain_piece(body[start:stop], width, date_at)
        if piece is None:
            return None
        dates.append(piece[0])
        tables.append(piece[1])
        start = stop
    return np.concatenate(dates), np.concatenate(tables)


def _plain_piece(
    body: str, width: int, date_at: int
) -> tuple[NDArray[np.str_], NDArray[np.float64]] | None:
    """The date column (texts, as a numpy array) and every field as a number (a row per line,
    a column per field; the date column's are meaningless) of a plain CSV body, parsed at once
    from its bytes: ASCII, LF line ends, `width` fields on every line, the dates all of one length,
    every other field digits with at most one `.` and at most 15 digits. Such a field is the
    whole number N of its digits over 10**d (d digits after the point), both exact in float64,
    and one division rounds N / 10**d correctly: the float `float()` reads from the text.
    None when the body is not that plain (the caller then reads it field by field)."""
    if not body.strip() or "\r" in body:
        return None
    if not body.endswith("\n"):
        body += "\n"
    try:
        raw = np.frombuffer(body.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        return None
    if not raw.all():
        return None  # a NUL byte
    is_sep = (raw == ord(",")) | (raw == ord("\n"))
    ends = np.flatnonzero(is_sep)  # where each field ends (its separator)
    rows = int(np.count_nonzero(raw == ord("\n")))
    if len(ends) != rows * width or rows == 0:
        return None
    grid = raw[ends].reshape(rows, width)
    if not ((grid[:, :-1] == ord(",")).all() and (grid[:, -1] == ord("\n")).all()):
        return None  # ragged rows or blank lines
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = (ends - starts).reshape(rows, width)
    date_length = int(lengths[0, date_at])
    if date_length == 0 or not (lengths[:, date_at] == date_length).all():
        return None
    first = starts.reshape(rows, width)[:, date_at]
    at_date = first[:, None] + np.arange(date_length)  # every byte of every date
    in_number = ~is_sep
    in_number[at_date] = False
    is_digit = (raw >= ord("0")) & (raw <= ord("9"))
    is_point = raw == ord(".")
    if not (is_digit | is_point | ~in_number).all():
        return None  # a sign, an exponent, a space, an underscore: not plain
    if not (lengths > 0).all():
        return None  # an empty field
    number_grid = np.ones((rows, width), dtype=bool)
    number_grid[:, date_at] = False
    numbers = number_grid.reshape(-1)  # which fields are numbers
    field_of = np.cumsum(is_sep, dtype=np.int32)  # a byte's field (not a separator's)
    digit_at = np.flatnonzero(is_digit & in_number)
    digit_field = field_of[digit_at]
    counts = np.bincount(digit_field, minlength=len(ends))[numbers]
    if not (counts >= 1).all() or (counts > _MAX_DIGITS).any():
        return None  # a field without a digit, or too long to be exact
    # the digits of each number, in order: each times 10 to the digits after it
    last_digit = np.cumsum(counts) - 1
    first_digit = last_digit - counts + 1
    after = np.repeat(last_digit, counts) - np.arange(len(digit_at))
    value = (raw[digit_at] - ord("0")).astype(np.int64) * _POWERS_OF_TEN[after]
    whole = np.zeros(len(ends), dtype=np.int64)
    whole[numbers] = np.add.reduceat(value, first_digit)
    points = np.flatnonzero(is_point & in_number)
    point_field = field_of[points]
    if len(points) > 1 and not (np.diff(point_field) > 0).all():
        return None  # two points in a field
    decimals = np.zeros(len(ends), dtype=np.int64)
    ordinal = np.cumsum(numbers) - 1  # a number field's place among the numbers
    decimals[point_field] = last_digit[ordinal[point_field]] - np.searchsorted(digit_at, points) + 1
    table = (whole.astype(np.float64) / _POWERS_OF_TEN[decimals].astype(np.float64)).reshape(
        rows, width
    )
    texts = raw[at_date].view(f"S{date_length}").reshape(rows)
    return texts.astype(f"U{date_length}"), table


def _epoch_seconds(dates: Sequence[str] | NDArray[np.str_]) -> NDArray[np.int64]:
    """Bar starts as epoch seconds: a daily `YYYY-MM-DD` is the Kite candle of that IST day;
    an intraday date is an ISO time with its offset (`2024-01-01T09:15:00+05:30`). The
    texts as a list, or as a numpy array of them (whose width is the longest one's)."""
    if isinstance(dates, np.ndarray):
        longest = dates.dtype.itemsize // np.dtype("U1").itemsize
    else:
        longest = max(len(d) for d in dates)
    if longest <= 10:  # daily: the Kite candle of that IST day
        if isinstance(dates, np.ndarray):  # numpy reads dates from str objects faster
            dates = dates.tolist()
        days = np.array(dates, dtype="datetime64[D]")
        return days.astype("datetime64[s]").astype(np.int64) - _IST_SECONDS
    fast = _offset_seconds(dates)
    if fast is not None:
        return fast
    if isinstance(dates, np.ndarray):
        dates = dates.tolist()
    return np.fromiter(
        (int(datetime.fromisoformat(d).timestamp()) for d in dates),
        dtype=np.int64,
        count=len(dates),
    )


def _offset_seconds(dates: Sequence[str] | NDArray[np.str_]) -> NDArray[np.int64] | None:
    """`YYYY-MM-DDTHH:MM:SS+HH:MM` times (every one in that form: a real date, a time of day,
    `T` or a space between) as epoch seconds, from their digits at once; None for any other
    form (then `datetime.fromisoformat` reads them, or says what is wrong)."""
    text = np.asarray(dates)
    if text.dtype != np.dtype("<U25"):
        return None
    codes = text.view(np.uint32).reshape(len(text), 25)
    digits = codes[:, _DIGITS].astype(np.int64) - ord("0")  # unsigned wrap-around: huge
    marks = codes[:, _MARKS]
    if (
        not ((digits >= 0) & (digits <= 9)).all()
        or not (marks == _MARK_CODES).all()
        or not ((codes[:, 10] == ord("T")) | (codes[:, 10] == ord(" "))).all()
        or not ((codes[:, 19] == ord("+")) | (codes[:, 19] == ord("-"))).all()
    ):
        return None
    d = digits
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7]
    hour, minute, second = (
        d[:, 8] * 10 + d[:, 9],
        d[:, 10] * 10 + d[:, 11],
        d[:, 12] * 10 + d[:, 13],
    )
    offset = (d[:, 14] * 10 + d[:, 15]) * 3600 + (d[:, 16] * 10 + d[:, 17]) * 60
    if (
        not ((year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)).all()
        or not ((hour < 24) & (minute < 60) & (second < 60) & (offset < 86_400)).all()
    ):
        return None
    first = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    month_days = ((first + 1).astype("datetime64[D]") - first.astype("datetime64[D]")).astype(
        np.int64
    )
    if not (day <= month_days).all():  # 30 February and the like
        return None
    days = first.astype("datetime64[D]").astype(np.int64) + day - 1
    local = days * 86_400 + hour * 3600 + minute * 60 + second
    out: NDArray[np.int64] = local - np.where(codes[:, 19] == ord("-"), -offset, offset)
    return out


# where `YYYY-MM-DDTHH:MM:SS+HH:MM` has its digits, and its fixed separators
_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24]
_MARKS = [4, 7, 13, 16, 22]
_MARK_CODES = np.array([ord(c) for c in "--:::"], dtype=np.uint32)


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
        from dalal_shared import candlestore  # pyarrow: only when reading the Parquet cache

        table = candlestore.read(Path(cache_dir), exchange, interval, symbol)
        if table.num_rows == 0:
            raise NoBarsError(
                f"no cached {interval} bars for {exchange}:{symbol} under {cache_dir} "
                "(run `dalal data backfill` first, or pass --data-dir with CSVs)"
            )
        series = _series(symbol, table.to_pandas())  # pandas comes with pyarrow's conversion
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
    import pandas as pd  # only here: the CSV path does without it

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
