"""`dalal backtest`: run a strategy over history in-process (the Parquet candle cache, CSV files
or the data service) and write its report."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import yaml
from rich.console import Console

from dalal_engine import history
from dalal_engine.backtest import Backtester, BacktestResult, BacktestSettings
from dalal_engine.report import write_report
from dalal_engine.strategyconfig import StrategyConfigError, load_file, validate_document
from dalal_shared.errors import DalalError
from dalal_shared.money import INITIAL_CAPITAL_RUPEES
from dalal_shared.timeutil import IST, to_ist

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.table import Table

console = Console()
err = Console(stderr=True)


def parse_params(pairs: list[str]) -> dict[str, object]:
    """`--param key=value` options as strategy parameters (values read as YAML: 10, 1.5, true)."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param wants key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _local_api_key() -> str | None:
    """The key for the data service's read routes: DALAL_API_KEY, else var/api_key."""
    from dalal_shared.settings import load_settings  # the stack's settings: only with --data-url
    from dalal_shared.stack import StackSettings

    return load_settings(StackSettings).local_api_key()


def _day(option: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{option} wants YYYY-MM-DD, got {value!r}") from None


def backtest(
    strategy: Annotated[str | None, typer.Option(help="registered strategy, e.g. swing")] = None,
    symbols: Annotated[str | None, typer.Option(help="comma-separated, e.g. RELIANCE,TCS")] = None,
    from_: Annotated[
        str, typer.Option("--from", help="first trading day (YYYY-MM-DD)")
    ] = "2021-01-01",
    to: Annotated[str, typer.Option(help="last trading day (YYYY-MM-DD)")] = "2025-09-30",
    interval: Annotated[str, typer.Option(help="bar interval (day, 15minute, ...)")] = "day",
    config: Annotated[Path | None, typer.Option(help="strategy YAML (first entry is run)")] = None,
    param: Annotated[list[str] | None, typer.Option(help="strategy parameter key=value")] = None,
    cache_dir: Annotated[Path, typer.Option(help="Parquet candle cache")] = Path("var/cache"),
    data_dir: Annotated[Path | None, typer.Option(help="CSV dir instead of the cache")] = None,
    data_url: Annotated[
        str | None,
        typer.Option(
            help="the data service (e.g. http://127.0.0.1:8002) instead of the cache: bars "
            "through its candles API, which fetches what its cache misses from Kite"
        ),
    ] = None,
    capital: Annotated[float, typer.Option(help="initial capital, rupees")] = float(
        INITIAL_CAPITAL_RUPEES
    ),
    market_protection: Annotated[
        float,
        typer.Option(
            min=0,
            max=100,
            help="market protection of MARKET orders, % of the last price (the broker's "
            "default, as Kite needs one); 0 = fill at any price (as most backtesters do)",
        ),
    ] = 3.0,
    out: Annotated[Path, typer.Option(help="report folder")] = Path("var/backtests/latest"),
) -> None:
    """Backtest a strategy over cached bars; print a summary and write result.json + report.html."""
    try:
        if config is not None:
            cfg = load_file(config)[0]
            if symbols:
                cfg = cfg.model_copy(update={"universe": [s.strip() for s in symbols.split(",")]})
        else:
            if not strategy or not symbols:
                raise typer.BadParameter("give --strategy and --symbols, or --config")
            doc = {
                "name": f"bt-{strategy}",
                "strategy": strategy,
                "interval": interval,
                "universe": [s.strip().upper() for s in symbols.split(",") if s.strip()],
                "params": parse_params(param or []),
            }
            if strategy == "sma_cross" and not param:
                doc["params"] = {"fast_bars": 10, "slow_bars": 30}
            cfg = validate_document(doc)[0]
        start = datetime.combine(_day("--from", from_), dtime(0), tzinfo=IST)
        end = datetime.combine(_day("--to", to), dtime(23, 59), tzinfo=IST)
        if data_dir is not None and data_url:
            raise typer.BadParameter("give --data-dir or --data-url, not both")
        if data_url:
            from dalal_shared.clients import DataClient  # httpx: only with --data-url

            with DataClient(data_url, timeout=300.0, api_key=_local_api_key()) as client:
                data = history.load_universe(cfg, start=start, end=end, data=client)
        else:
            data = history.load_universe(
                cfg,
                start=start,
                end=end,
                cache_dir=None if data_dir else cache_dir,
                data_dir=data_dir,
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
        err.print(f"[red]dalal backtest:[/red] {exc.message}")
        raise typer.Exit(2) from None
    except DalalError as exc:
        err.print(f"[red]dalal backtest:[/red] {exc.message}")
        raise typer.Exit(1) from None
    with _young_collections_every(YOUNG_GC_THRESHOLD):
        json_path, html_path = write_report(result, out, bars=data)
    console.print(summary_table(result, seconds))
    for warning in result.warnings:  # the data covers less than asked: say so, with the range
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if result.warnings:
        first = to_ist(result.data_start).date() if result.data_start else "-"
        last = to_ist(result.data_end).date() if result.data_end else "-"
        err.print(f"bars used: {first} .. {last}", highlight=False)
    console.print(f"report: {html_path}  data: {json_path}", highlight=False)


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


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None] | None]:
    """A transient progress bar on a terminal's stderr; elsewhere (a pipe, a file) there is
    nothing to draw, and rich's progress module is not even imported."""
    if not err.is_terminal:
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
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("bars", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def summary_table(result: BacktestResult, seconds: float) -> Table:
    from rich.table import Table

    r = result.report
    cfg = result.config

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.2f}%"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    table = Table(title=f"{cfg.strategy} on {', '.join(cfg.universe)} ({cfg.interval})")
    table.add_column("metric")
    table.add_column("value", justify="right")
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
    for k, v in rows:
        table.add_row(k, v)
    return table
