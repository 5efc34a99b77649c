"""`dalal backtest`: run a strategy over history in-process (the Parquet candle cache, CSV files
or the data service) and write its report.

Its wall time is mostly fixed cost, so the command keeps that down: the `dalal` dispatcher runs
it without typer when its arguments are plain (`backtest_argv`; typer reads anything else and
answers `--help`); CSV files are read ahead by a forked child while this process imports the
rest, and that child then prints the summary (this process imports rich only for an error
or a progress bar: `_Prefetch`); `report.html` is written by another child while `result.json`
is (`_report_files`)."""

from __future__ import annotations

import errno
import gc
import inspect
import mmap
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, TypeVar

from dalal_shared.cli_main import imports_frozen as _imports_frozen
from dalal_shared.errors import DalalError
from dalal_shared.money import INITIAL_CAPITAL_RUPEES
from dalal_shared.timeutil import IST, to_ist

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console
    from rich.table import Table

    from dalal_engine.backtest import BacktestResult
    from dalal_engine.bars import BarSeries

# What this module imports itself is light: the strategies, their pydantic models, numpy, the
# backtester, the report and rich are imported by the command, after it has started reading
# the CSV files in another process (`_Prefetch`).


@lru_cache(maxsize=1)
def _console() -> Console:
    """The summary's console (stdout), made when first printed to."""
    from rich.console import Console

    return Console()


@lru_cache(maxsize=1)
def _err() -> Console:
    """The console of errors and warnings (stderr)."""
    from rich.console import Console

    return Console(stderr=True)


def _say_error(message: str) -> None:
    """The command's error on stderr: its text as it is (no markup read in it), one line
    where it is one (a pipe or a log file gets no line breaks at 80 columns)."""
    from rich.markup import escape

    _err().print(f"[red]dalal backtest:[/red] {escape(message)}", soft_wrap=True)


class UsageError(Exception):
    """A bad option value, found before the command printed or wrote anything: typer's
    `BadParameter` (its usage message and exit status 2)."""


def _option(*param_decls: str, **attrs: Any) -> Any:
    """`typer.Option(...)`, typer imported only when it reads the command's signature: the
    annotations are text until then (`from __future__ import annotations`), and a run
    without typer (`backtest_argv`) never reads them."""
    import typer

    return typer.Option(*param_decls, **attrs)


def _bad_parameter(message: str) -> Exception:
    import typer

    return typer.BadParameter(message)


def _params(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    if not pairs:
        return out  # yaml not imported for nothing (~9 ms of a short backtest)
    import yaml

    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param wants key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def parse_params(pairs: list[str]) -> dict[str, object]:
    """`--param key=value` options as strategy parameters (values read as YAML: 10, 1.5, true);
    typer's `BadParameter` for a pair without `=`."""
    try:
        return _params(pairs)
    except UsageError as exc:
        raise _bad_parameter(str(exc)) from None


def _local_api_key() -> str | None:
    """The key for the data service's read routes: DALAL_API_KEY, else var/api_key."""
    from dalal_shared.settings import load_settings  # the stack's settings: only with --data-url
    from dalal_shared.stack import StackSettings

    return load_settings(StackSettings).local_api_key()


def _day(option: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} wants YYYY-MM-DD, got {value!r}") from None


def backtest(
    strategy: Annotated[str | None, _option(help="registered strategy, e.g. swing")] = None,
    symbols: Annotated[str | None, _option(help="comma-separated, e.g. RELIANCE,TCS")] = None,
    from_: Annotated[str, _option("--from", help="first trading day (YYYY-MM-DD)")] = "2021-01-01",
    to: Annotated[str, _option(help="last trading day (YYYY-MM-DD)")] = "2025-09-30",
    interval: Annotated[str, _option(help="bar interval (day, 15minute, ...)")] = "day",
    config: Annotated[Path | None, _option(help="strategy YAML (first entry is run)")] = None,
    param: Annotated[list[str] | None, _option(help="strategy parameter key=value")] = None,
    cache_dir: Annotated[Path, _option(help="Parquet candle cache")] = Path("var/cache"),
    data_dir: Annotated[Path | None, _option(help="CSV dir instead of the cache")] = None,
    data_url: Annotated[
        str | None,
        _option(
            help="the data service (e.g. http://127.0.0.1:8002) instead of the cache: bars "
            "through its candles API, which fetches what its cache misses from Kite"
        ),
    ] = None,
    capital: Annotated[float, _option(help="initial capital, rupees")] = float(
        INITIAL_CAPITAL_RUPEES
    ),
    market_protection: Annotated[
        float,
        _option(
            min=0,
            max=100,
            help="market protection of MARKET orders, % of the last price (the broker's "
            "default, as Kite needs one); 0 = fill at any price (as most backtesters do)",
        ),
    ] = 3.0,
    out: Annotated[Path, _option(help="report folder")] = Path("var/backtests/latest"),
) -> None:
    """Backtest a strategy over cached bars; print a summary and write result.json + report.html."""
    try:
        code = _run(
            strategy=strategy,
            symbols=symbols,
            from_=from_,
            to=to,
            interval=interval,
            config=config,
            param=param,
            cache_dir=cache_dir,
            data_dir=data_dir,
            data_url=data_url,
            capital=capital,
            market_protection=market_protection,
            out=out,
        )
    except UsageError as exc:
        raise _bad_parameter(str(exc)) from None
    if code:
        import typer

        raise typer.Exit(code)


def _run(
    *,
    strategy: str | None,
    symbols: str | None,
    from_: str,
    to: str,
    interval: str,
    config: Path | None,
    param: list[str] | None,
    cache_dir: Path,
    data_dir: Path | None,
    data_url: str | None,
    capital: float,
    market_protection: float,
    out: Path,
) -> int:
    """The command's work; its exit status (0, or 1 and 2 after saying why on stderr).
    `UsageError` only before anything is printed or written. The CSV files of `--data-dir`
    are read ahead (`_Prefetch`) while the command imports what it needs."""
    prefetch = _Prefetch.start(config, symbols, interval, to, None if data_url else data_dir)
    try:
        with _imports_frozen():  # what the command needs (rich: where the child prints)
            from dalal_engine import history, report  # noqa: F401
            from dalal_engine.backtest import Backtester, BacktestSettings
            from dalal_engine.strategyconfig import (
                StrategyConfigError,
                load_file,
                validate_document,
            )

            if prefetch is None or not prefetch.printer:
                _console()  # rich's consoles, with the rest
                _err()
        try:
            if config is not None:
                # the document the read-ahead child parsed (yaml not imported here), else
                # the file read and parsed here
                doc = prefetch.document() if prefetch is not None else _UNREAD
                cfg = (load_file(config) if doc is _UNREAD else validate_document(doc))[0]
                if symbols:
                    cfg = cfg.model_copy(
                        update={"universe": [s.strip() for s in symbols.split(",")]}
                    )
            else:
                if not strategy or not symbols:
                    raise UsageError("give --strategy and --symbols, or --config")
                doc = {
                    "name": f"bt-{strategy}",
                    "strategy": strategy,
                    "interval": interval,
                    "universe": [s.strip().upper() for s in symbols.split(",") if s.strip()],
                    "params": _params(param or []),
                }
                if strategy == "sma_cross" and not param:
                    doc["params"] = {"fast_bars": 10, "slow_bars": 30}
                cfg = validate_document(doc)[0]
            start = datetime.combine(_day("--from", from_), dtime(0), tzinfo=IST)
            end = datetime.combine(_day("--to", to), dtime(23, 59), tzinfo=IST)
            if data_dir is not None and data_url:
                raise UsageError("give --data-dir or --data-url, not both")
            if data_url:
                from dalal_shared.clients import DataClient  # httpx: only with --data-url

                with DataClient(data_url, timeout=300.0, api_key=_local_api_key()) as client:
                    data = history.load_universe(cfg, start=start, end=end, data=client)
            else:
                read = prefetch.bars(cfg.universe, cfg.interval, end) if prefetch else None
                data = (
                    read
                    if read is not None
                    else history.load_universe(
                        cfg,
                        start=start,
                        end=end,
                        cache_dir=None if data_dir else cache_dir,
                        data_dir=data_dir,
                    )
                )
            settings = BacktestSettings(
                Decimal(str(capital)),
                start=start,
                end=end,
                market_protection_pct=Decimal(str(market_protection)) or None,
            )
            runner = Backtester(cfg, data, settings)
            with _progress() as progress, _young_collections_every(YOUNG_GC_THRESHOLD):
                t0 = time.perf_counter()
                result = runner.run(progress)
                seconds = time.perf_counter() - t0
        except StrategyConfigError as exc:
            _say_error(exc.message)
            return 2
        except DalalError as exc:
            _say_error(exc.message)
            return 1
        summary = summary_of(result, seconds)
        sent = prefetch is not None and prefetch.send_summary(summary)  # printed meanwhile
        with (
            _young_collections_every(YOUNG_GC_THRESHOLD),
            _report_files(result, out, data) as (json_path, html_path),
        ):
            if not (sent and prefetch is not None and prefetch.summary_printed()):
                print_summary(summary)
    finally:
        if prefetch is not None:
            prefetch.close()
    print(f"report: {html_path}  data: {json_path}", flush=True)
    return 0


def _protection(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 100:  # typer's range check says what is wrong
        raise ValueError(value)
    return number


# the command's options as `backtest_argv` reads them: parameter and conversion (what typer
# does with the value: click's FLOAT, `Path`, or the text)
_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--strategy": ("strategy", str),
    "--symbols": ("symbols", str),
    "--from": ("from_", str),
    "--to": ("to", str),
    "--interval": ("interval", str),
    "--config": ("config", Path),
    "--param": ("param", str),  # repeatable
    "--cache-dir": ("cache_dir", Path),
    "--data-dir": ("data_dir", Path),
    "--data-url": ("data_url", str),
    "--capital": ("capital", float),
    "--market-protection": ("market_protection", _protection),
    "--out": ("out", Path),
}


def backtest_argv(args: list[str]) -> int | None:
    """`dalal backtest` run from its arguments without typer (whose import and reading of the
    command's signature cost as much as the strategy's whole decision loop on a short run):
    its exit status when every argument is one of the command's options with a value that
    typer would take as it is (`--name value` or `--name=value`, each once, `--param` as often
    as wanted). None, having done nothing, for anything else (`--help`, an unknown or repeated
    option, a missing value or one that starts with `-`, a number typer would refuse, or a
    usage error the command finds): then typer reads the arguments and answers as always."""
    given: dict[str, Any] = {}
    k = 0
    while k < len(args):
        name, eq, value = args[k].partition("=")
        if eq:
            k += 1
        elif k + 1 < len(args):
            value = args[k + 1]
            k += 2
        else:
            return None
        option = _OPTIONS.get(name)
        if option is None or not value or value.startswith("-"):
            return None
        key, convert = option
        try:
            converted = convert(value)
        except ValueError:
            return None
        if key == "param":
            given.setdefault(key, []).append(converted)
        elif key in given:
            return None
        else:
            given[key] = converted
    kwargs = {
        p.name: given.get(p.name, p.default)
        for p in inspect.signature(backtest).parameters.values()
    }
    try:
        return _run(**kwargs)
    except UsageError:
        return None
    except KeyboardInterrupt:  # as typer ends a command that is interrupted
        return 130
    except OSError as exc:  # a closed pipe: quietly, as click does
        if exc.errno != errno.EPIPE:
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


# `dalal_shared.cli_main` runs these commands of the module straight from their arguments when
# they can (None: typer after all)
WITHOUT_TYPER: dict[str, Callable[[list[str]], int | None]] = {"backtest": backtest_argv}


# room for the bars `_Prefetch`'s child reads (shared memory, taken only as it is written):
# 48 bytes a bar, ~5 million bars; a run with more reads its files itself
_PREFETCH_BYTES = 256 << 20


class _Prefetch:
    """A forked child on another core that does the command's work that needs none of its
    imports: it reads the run's CSV files while this process imports the strategies, pydantic,
    the backtester and the report (~0.15 s; the files take about a third of that), then
    imports rich and prints the summary when this process sends it (`send_summary`), so that
    rich's import (~12 ms) and the table's drawing are not on the command's way.

    The child is forked before those imports (a small heap: little copy-on-write). It reads
    what the arguments name as `dalal backtest` will read them (with `data_dir`; none
    without): the universe and interval of the config file (its first strategy; `--symbols`
    instead of its universe) or of `--symbols` and `--interval`, the bars before `--to`'s end,
    with `history.load`. It copies the arrays into memory shared with this process and sends
    what it read (the symbols, the interval, the end, where each array lies, and the config
    file's YAML document, which the command then validates without parsing the file again:
    `document`) through a pipe.
    The command takes the bars only for exactly the universe, interval and end it validated:
    anything else (a config the child read another way, a file it could not read, more bars
    than the shared memory holds) is read by this process, which says what is wrong as always.

    The child prints only where it writes where this process would (`printer`: stdout and
    stderr are the process's file descriptors, not a test runner's buffers); a summary it did
    not print is this process's to print. Where `_may_fork` says no, there is no child."""

    def __init__(self, pid: int, receive: int, shared: mmap.mmap, summary_pipe: int | None) -> None:
        self.pid: int | None = pid
        self.receive: int | None = receive
        self.layout: tuple[Any, ...] | None = None  # what the child sent (`_read_ahead`)
        self.shared = shared
        self.summary_pipe = summary_pipe  # where `send_summary` writes; None: not a printer
        self.sent = False  # the child has the summary

    @property
    def printer(self) -> bool:
        """Whether the child prints the summary (else this process does)."""
        return self.summary_pipe is not None

    @classmethod
    def start(
        cls,
        config: Path | None,
        symbols: str | None,
        interval: str,
        to: str,
        data_dir: Path | None,
    ) -> _Prefetch | None:
        if not _may_fork():
            return None
        printer = _prints_to_descriptors()
        if data_dir is None and not printer:
            return None  # nothing for a child to do
        try:
            shared = mmap.mmap(-1, _PREFETCH_BYTES if data_dir else mmap.PAGESIZE)
        except OSError:  # no room to promise (a strict overcommit policy)
            return None
        receive, send = os.pipe()
        summary_in, summary_out = os.pipe() if printer else (-1, -1)
        sys.stdout.flush()  # nothing buffered is the child's to write too
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: the files, the summary, then gone without exit handlers
            status = _NOT_PRINTED
            try:
                os.close(receive)
                if printer:
                    os.close(summary_out)
                try:
                    layout = (
                        _read_ahead(config, symbols, interval, to, data_dir, shared)
                        if data_dir is not None
                        else None
                    )
                except Exception:  # the command reads the files itself
                    layout = None
                with os.fdopen(send, "wb") as pipe:
                    if layout is not None:
                        pickle.dump(layout, pipe, protocol=pickle.HIGHEST_PROTOCOL)
                status = _summary_child(summary_in) if printer else 0
            except KeyboardInterrupt:  # the terminal's Ctrl-C: the parent has it too
                status = 130
            except BaseException:  # noqa: S110  (not printed: the command prints it)
                pass
            finally:
                os._exit(status)
        os.close(send)
        if printer:
            os.close(summary_in)
        return cls(pid, receive, shared, summary_out if printer else None)

    def _layout(self) -> tuple[Any, ...] | None:
        """What the child read (`_read_ahead`), waited for once; None when it read nothing."""
        if self.receive is not None:
            with os.fdopen(self.receive, "rb") as pipe:
                payload = pipe.read()
            self.receive = None
            if payload:
                self.layout = pickle.loads(payload)  # noqa: S301  (ours)
        return self.layout

    def document(self) -> Any:
        """The config file's YAML document as the child parsed it (`yaml.safe_load`), or
        `_UNREAD` when it parsed none (no config, a file it could not read or parse, bars it
        could not read): then the command reads the file itself and says what is wrong."""
        layout = self._layout()
        return layout[4][0] if layout is not None and layout[4] else _UNREAD

    def bars(
        self, universe: list[str], interval: str, end: datetime
    ) -> dict[str, BarSeries] | None:
        """`history.load_universe`'s bars of `universe` from the CSV files (the first of a
        repeated symbol), when the child read exactly those; else None."""
        layout = self._layout()
        if layout is None:
            return None
        symbols, read_interval, read_end, places, _doc = layout
        if (symbols, read_interval, read_end) != (list(dict.fromkeys(universe)), interval, end):
            return None
        import numpy as np

        from dalal_engine.bars import BarSeries, BarStarts

        data = {}
        for symbol, columns in zip(symbols, places, strict=True):
            o, h, lo, c, v, seconds = (
                np.frombuffer(self.shared, dtype=kind, count=count, offset=offset)
                for kind, count, offset in columns
            )
            data[symbol] = BarSeries(symbol, BarStarts(seconds), o, h, lo, c, v, seconds)
        return data

    def send_summary(self, summary: Summary) -> bool:
        """Send `summary` to the child, which prints it (`print_summary`) while this process
        goes on: True; False when the child is not a printer (or gone) and the summary is this
        process's to print. `summary_printed` waits for it."""
        if self.summary_pipe is None or self.pid is None:
            return False
        body = pickle.dumps(summary, protocol=pickle.HIGHEST_PROTOCOL)
        sys.stdout.flush()  # what this process wrote comes first
        sys.stderr.flush()
        with suppress(BrokenPipeError), os.fdopen(self.summary_pipe, "wb") as pipe:
            self.summary_pipe = None
            self.sent = True
            pipe.write(len(body).to_bytes(8, "little") + body)
        return True

    def summary_printed(self) -> bool:
        """Wait for the child that was sent the summary: True when it printed it; False when
        it printed nothing (gone before) and the summary is this process's to print. A child
        that failed while printing raises: `BrokenPipeError` for a closed stdout or stderr
        (as a print of this process's would), else `SummaryNotPrinted`. A child killed by a
        signal counts as one that printed nothing (better twice than not at all)."""
        code = self._reap()
        if code == 0:
            return True
        if code is None or code == _NOT_PRINTED or code < 0:  # < 0: killed, by a signal
            return False
        if code == _BROKEN_PIPE:
            raise BrokenPipeError(errno.EPIPE, "the summary's output is closed")
        raise SummaryNotPrinted(f"the process printing the summary ended with status {code}")

    def close(self) -> None:
        """Stop the child if it is still there (the command ended without its bars or its
        summary); one that was sent the summary is waited for, not stopped mid-table."""
        for fd in (self.receive, self.summary_pipe):
            if fd is not None:
                os.close(fd)
        self.receive = self.summary_pipe = None
        if self.pid is None:
            return
        if not self.sent:
            with suppress(ProcessLookupError):  # gone already, not reaped yet: no error
                os.kill(self.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> int | None:
        """Wait for the child; its exit status."""
        if self.pid is None:
            return None
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return os.waitstatus_to_exitcode(status)


# the `_Prefetch` child's exit status when it printed no summary, and when it could not write it
_NOT_PRINTED = 3
_BROKEN_PIPE = 4


# `_Prefetch.document` when the child parsed no config document
_UNREAD: Any = object()


class SummaryNotPrinted(RuntimeError):
    """The child process printing the summary failed (its error is on stderr)."""


def _prints_to_descriptors() -> bool:
    """Whether `sys.stdout` and `sys.stderr` write to the process's file descriptors 1 and 2
    (what a forked child writes to as well): not a test runner's or an embedding program's
    buffers."""
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # no descriptor (io.UnsupportedOperation)
        return False


def _warm_summary() -> None:
    """rich imported, its consoles made, and a summary drawn where nobody sees it: the
    modules and caches a first table needs are ready when the real one comes."""
    import io

    from rich.console import Console

    _console()
    _err()
    rows = [(f"metric {k}", f"Rs {k}.00 ({k}%)") for k in range(16)]
    Console(file=io.StringIO(), width=_console().width).print(
        summary_table(Summary("warming", rows, [], None))
    )
    Console(file=io.StringIO()).print("[yellow]warning:[/yellow] -", highlight=False)


def _summary_child(fd: int) -> int:
    """What `_Prefetch`'s child does once the files are read: import rich, wait for the
    summary (8 bytes of length, then the pickled `Summary`: read to a length, not to the end,
    as another child of the command holds the pipe open too), print it. Its exit status: 0
    printed, `_NOT_PRINTED` when none came (the command ended early or prints it itself),
    `_BROKEN_PIPE` when stdout or stderr is closed, 1 for any other error (on stderr)."""
    try:
        _warm_summary()
        with os.fdopen(fd, "rb") as pipe:
            head = pipe.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else -1
            body = pipe.read(size) if size > 0 else b""
        if size <= 0 or len(body) < size:
            return _NOT_PRINTED
        summary = pickle.loads(body)  # noqa: S301  (ours)
    except Exception:
        return _NOT_PRINTED
    try:
        print_summary(summary)
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        return _BROKEN_PIPE
    except Exception:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


def _read_ahead(
    config: Path | None,
    symbols: str | None,
    interval: str,
    to: str,
    data_dir: Path,
    shared: mmap.mmap,
) -> tuple[list[str], str, datetime, list[list[tuple[str, int, int]]], tuple[Any, ...]]:
    """What `_Prefetch`'s child does: the universe, interval and end the arguments name, each
    symbol's arrays (open, high, low, close, volume, start seconds) copied into `shared`,
    where they lie there (dtype, length, offset), and the config file's document as
    `yaml.safe_load` parsed it, for the command to validate (`(document,)`; `()` without a
    config file)."""
    end = datetime.combine(date.fromisoformat(to), dtime(23, 59), tzinfo=IST)
    document: tuple[Any, ...] = ()
    if config is not None:
        import yaml

        doc = yaml.safe_load(Path(config).read_text())
        document = (doc,)
        if isinstance(doc, dict) and "strategies" in doc:
            doc = doc["strategies"][0]
        interval = doc.get("interval", "day")
        universe = [s.strip() for s in symbols.split(",")] if symbols else doc["universe"]
    else:
        universe = [s.strip().upper() for s in (symbols or "").split(",") if s.strip()]
    universe = list(dict.fromkeys(universe))
    import numpy as np

    from dalal_engine import history

    places, offset = [], 0
    for symbol in universe:
        s = history.load(symbol, interval, data_dir=data_dir, end=end)
        columns = []
        for array in (s.open, s.high, s.low, s.close, s.volume, s.seconds):
            np.frombuffer(shared, dtype=array.dtype, count=len(array), offset=offset)[:] = array
            columns.append((array.dtype.str, len(array), offset))
            offset += -(-array.nbytes // 8) * 8  # the next 8-byte boundary
        places.append(columns)
    return universe, interval, end, places, document


def _may_fork() -> bool:
    """Whether this process may do part of the command in a forked child: on Linux only (macOS
    and others discourage `fork` without `exec`: system libraries there are not fork-safe),
    with no other Python thread (a child forked while another thread holds a lock, the
    import lock or a logging handler's, could wait for it for ever, and the command with it),
    and with a second core to run it on (on one core it only adds a fork)."""
    if sys.platform != "linux" or not hasattr(os, "fork"):
        return False
    import threading

    if threading.active_count() != 1:
        return False
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return cores > 1


@contextmanager
def _report_files(
    result: BacktestResult, out: Path, bars: dict[str, BarSeries]
) -> Iterator[tuple[Path, Path]]:
    """`write_report`'s `result.json` and `report.html` (their paths inside the block). The
    page is built in a forked child on another core while this process writes `result.json`
    and goes on with the block (the summary): the child has the run's objects as they are,
    copy-on-write. The first rows of the page's trades table (`ROWS_HERE` of them, the JSON's
    work and the page's then take about as long) are this process's to build once the JSON is
    written, leaving the block: it sends them to the child, which meanwhile built the rest
    (`report.page_frame`, the other rows); the child builds them itself when none come whole
    (this process failed or was stopped). Leaving the block waits for the child; an error of
    the child's (its traceback on stderr) raises there. Where `_may_fork` says no,
    `write_report` first."""
    from dalal_engine.report import (
        page_frame,
        result_json_text,
        trade_rows,
        trades_sections,
        write_report,
    )

    if not _may_fork():
        yield write_report(result, out, bars=bars)
        return
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "result.json", out / "report.html"
    here = result.trades[: int(len(result.trades) * ROWS_HERE)]
    rows_in, rows_out = os.pipe()
    sys.stdout.flush()  # nothing buffered is the child's to write too
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: the page, then gone without the parent's exit handlers
        status = 1
        try:
            os.close(rows_out)
            top, bottom = page_frame(result, bars)
            rest = trade_rows(result.trades[len(here) :])
            first = _received_text(rows_in)
            if first is None:
                first = trade_rows(here)
            html_path.write_text(top + trades_sections(result, first + rest) + bottom)
            status = 0
        except KeyboardInterrupt:  # the terminal's Ctrl-C: the parent has it too
            status = 130
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(status)
    os.close(rows_in)
    try:
        json_path.write_text(result_json_text(result))
        yield json_path, html_path
    finally:
        _send_text(rows_out, trade_rows, here)
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise ReportNotWritten(f"{html_path}: the process writing it ended with status {code}")


T = TypeVar("T")

# the share of the trades table's rows `_report_files` builds in this process (the rest and
# the page around them in the child)
ROWS_HERE = 0.6


def _send_text(fd: int, build: Callable[[T], str], arg: T) -> None:
    """`build(arg)` through the pipe `fd` (8 bytes of length, then the UTF-8 text), which is
    closed after; anything that fails (the build, a reader gone) leaves the pipe closed with
    what was written: the reader then sees no whole text."""
    try:
        body = build(arg).encode()
        with os.fdopen(fd, "wb") as pipe:
            fd = -1
            pipe.write(len(body).to_bytes(8, "little") + body)
    except Exception:  # noqa: S110  (the child builds them itself)
        pass
    finally:
        if fd >= 0:
            os.close(fd)


def _received_text(fd: int) -> str | None:
    """What `_send_text` sent through `fd` (read to its end, then closed), or None when no
    whole text came."""
    with os.fdopen(fd, "rb") as pipe:
        head = pipe.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else -1
        body = pipe.read(size) if size >= 0 else b""
    if size < 0 or len(body) != size:
        return None
    return body.decode()


class ReportNotWritten(RuntimeError):
    """The child process that writes `report.html` failed (its error is on stderr)."""


# The run and the report allocate a few hundred thousand short-lived objects (decisions, fills,
# Decimals, the report's rows) and next to no reference cycles: collecting the young generation
# every 700 allocations (Python's default) costs a backtest 5-10 ms of CPU for nothing found.
YOUNG_GC_THRESHOLD = 20_000


@contextmanager
def _young_collections_every(allocations: int) -> Iterator[None]:
    """Collect the youngest generation every `allocations` net allocations instead of
    Python's default (the older generations' thresholds as they were), restored afterwards.
    Garbage with cycles is still collected, in fewer, larger batches; a threshold of 0 (the
    automatic collection turned off) stays 0."""
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, allocations) if young else 0, *older)
    try:
        yield
    finally:
        gc.set_threshold(young, *older)


def _stderr_may_be_terminal() -> bool:
    """Whether rich may take stderr for a terminal (without importing rich): it is one, or a
    variable that makes rich decide (`TTY_COMPATIBLE`, `FORCE_COLOR`) is set."""
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None] | None]:
    """A transient progress bar on a terminal's stderr; elsewhere (a pipe, a file) there is
    nothing to draw, and rich's progress module is not even imported."""
    if not _stderr_may_be_terminal() or not _err().is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("backtest"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=_err(),
        transient=True,
    ) as bar:
        task = bar.add_task("bars", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


class Summary(NamedTuple):
    """What the command prints after a run: the table's title and rows (stdout), a warning per
    symbol whose data covers less than asked and the range the bars did cover (stderr)."""

    title: str
    rows: list[tuple[str, str]]
    warnings: list[str]
    bars_used: str | None


def summary_of(result: BacktestResult, seconds: float) -> Summary:
    """The run's summary (`seconds`: the run's time, for its speed)."""
    r = result.report
    cfg = result.config

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.2f}%"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    rows = [
        (
            "bars",
            f"{result.bars:,} ({result.bars / seconds:,.0f} bars/s)"
            if seconds
            else str(result.bars),
        ),
        ("trades (closed)", str(r.trades)),
        ("open at the end", str(len(result.open_trades))),
        ("win rate", pct(r.win_rate)),
        ("profit factor", num(r.profit_factor)),
        ("expectancy", f"Rs {r.expectancy_rupees}" if r.expectancy_rupees is not None else "-"),
        ("net P&L of closed trades", f"Rs {r.total_pnl_rupees}"),
        ("charges paid", f"Rs {result.charges.total}"),
        ("initial -> final equity", f"Rs {r.initial_equity_rupees} -> Rs {r.final_equity_rupees}"),
        ("total return", pct(r.total_return)),
        ("CAGR", pct(r.cagr)),
        ("Sharpe / Sortino", f"{num(r.sharpe)} / {num(r.sortino)}"),
        (
            "max drawdown",
            f"{pct(r.max_drawdown)} (Rs {r.max_drawdown_rupees}, "
            f"{r.max_drawdown_duration_days} days)",
        ),
        ("exposure (days in market)", pct(r.exposure_days_fraction)),
        ("refused signals", str(sum(1 for d in result.decisions if not d.approved))),
    ]
    bars_used = None
    if result.warnings:
        first = to_ist(result.data_start).date() if result.data_start else "-"
        last = to_ist(result.data_end).date() if result.data_end else "-"
        bars_used = f"bars used: {first} .. {last}"
    title = f"{cfg.strategy} on {', '.join(cfg.universe)} ({cfg.interval})"
    return Summary(title, rows, list(result.warnings), bars_used)


def summary_table(summary: Summary) -> Table:
    """The summary's table, as rich draws it."""
    from rich.table import Table

    table = Table(title=summary.title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary.rows:
        table.add_row(k, v)
    return table


def print_summary(summary: Summary) -> None:
    """The table on stdout; the warnings (the data covers less than asked) and the range the
    bars covered on stderr."""
    _console().print(summary_table(summary))
    for warning in summary.warnings:
        _err().print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    if summary.bars_used:
        _err().print(summary.bars_used, highlight=False, soft_wrap=True)
