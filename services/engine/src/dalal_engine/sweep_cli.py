"""`dalal sweep`: backtest every point of a parameter grid, on the engine workers (through the
engine API's `POST /sweeps`) or in this process (`--local`), and show the ranked results."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from dalal_engine import sweeps
from dalal_engine.backtest_jobs import BadBacktestRequest
from dalal_engine.cli import parse_params
from dalal_engine.report import write_report
from dalal_shared.clients import EngineClient, ServiceError, ServiceUnavailable
from dalal_shared.errors import ConfigError, DalalError
from dalal_shared.money import INITIAL_CAPITAL_RUPEES
from dalal_shared.settings import load_settings
from dalal_shared.stack import StackSettings

console = Console()
err = Console(stderr=True)

FIGURES = ("trades", "net_pnl", "total_return", "sharpe", "max_drawdown", "profit_factor")
LABELS = {
    "trades": "trades",
    "net_pnl": "net P&L",
    "total_return": "return",
    "cagr": "CAGR",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "max DD",
    "profit_factor": "PF",
}


def _grid(items: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise typer.BadParameter(f"--grid wants name=v1,v2,..., got {item!r}")
        out[name.strip()] = [yaml.safe_load(v) for v in values.split(",") if v.strip()]
    return out


def _fmt(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in ("total_return", "max_drawdown", "cagr"):
        return f"{float(value) * 100:.1f}%"
    if name == "net_pnl":
        return f"{float(value):,.0f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def results_table(results: list[dict[str, Any]], objective: str, title: str) -> Table:
    names = list(dict.fromkeys(k for r in results for k in r["params"]))
    table = Table(title=title)
    table.add_column("#", justify="right")
    for n in names:
        table.add_column(n, justify="right", min_width=len(n))
    figures = list(dict.fromkeys([objective, *FIGURES]))
    for f in figures:
        table.add_column(LABELS[f] + (" *" if f == objective else ""), justify="right")
    for rank, r in enumerate(results, 1):
        m = r.get("metrics") or {}
        table.add_row(
            str(rank),
            *(str(r["params"].get(n)) for n in names),
            *(_fmt(f, m.get(f)) for f in figures),
        )
    return table


def _remote(client: EngineClient, body: dict[str, Any], top: int) -> dict[str, Any]:
    sweep = client.request_object("POST", "/sweeps", json=body)
    sid = sweep["id"]
    with Progress(
        TextColumn(f"sweep {sid}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[workers]} worker(s)"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("trials", total=sweep["progress"]["trials_total"], workers=0)
        while sweep["status"] not in ("done", "failed"):
            time.sleep(0.5)
            sweep = client.request_object("GET", f"/sweeps/{sid}", params={"top": top})
            bar.update(
                task,
                completed=sweep["progress"]["trials_done"],
                workers=len(sweep["workers"]),
            )
    return sweep


def sweep(
    strategy: Annotated[str, typer.Option(help="registered strategy, e.g. sma_cross")],
    symbols: Annotated[str, typer.Option(help="comma-separated, e.g. RELIANCE,TCS")],
    grid: Annotated[
        list[str],
        typer.Option(help="a swept parameter and its values, e.g. fast_bars=5,10,20 (repeat it)"),
    ],
    from_: Annotated[
        str, typer.Option("--from", help="first trading day (YYYY-MM-DD)")
    ] = "2021-01-01",
    to: Annotated[str, typer.Option(help="last trading day (YYYY-MM-DD)")] = "2025-09-30",
    interval: Annotated[str, typer.Option(help="bar interval (day, 15minute, ...)")] = "day",
    param: Annotated[
        list[str] | None, typer.Option(help="a fixed strategy parameter, name=value")
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            help="what ranks the points: sharpe, sortino, total_return, cagr, net_pnl, "
            "profit_factor, max_drawdown (lower is better)"
        ),
    ] = "sharpe",
    top: Annotated[int, typer.Option(min=1, help="how many of the best points to show")] = 10,
    capital: Annotated[float, typer.Option(help="initial capital, rupees")] = float(
        INITIAL_CAPITAL_RUPEES
    ),
    local: Annotated[
        bool,
        typer.Option(
            help="run every point here, one after another, on --data-dir or --cache-dir "
            "(no engine or worker needed)"
        ),
    ] = False,
    data_dir: Annotated[Path | None, typer.Option(help="--local: CSV dir")] = None,
    cache_dir: Annotated[Path, typer.Option(help="--local: Parquet candle cache")] = Path(
        "var/cache"
    ),
    out: Annotated[Path, typer.Option(help="--local: the best point's report folder")] = Path(
        "var/sweeps/latest"
    ),
    engine_url: Annotated[
        str | None, typer.Option(help="the engine API (default: the local stack's)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Backtest every point of a parameter grid and rank the points.

    The grid is the cartesian product of the --grid options:
    --grid fast_bars=5,10,20 --grid slow_bars=30,50 is 6 points.

    By default the points run on the engine workers (POST /sweeps: more workers finish sooner)
    and the engine serves the best point's report. --local runs them in this process instead.
    Net P&L in the table is in rupees; * marks the objective.
    """
    body: dict[str, Any] = {
        "strategy": strategy,
        "symbols": [s.strip().upper() for s in symbols.split(",") if s.strip()],
        "from": from_,
        "to": to,
        "interval": interval,
        "params": parse_params(param or []),
        "grid": _grid(grid),
        "objective": objective,
        "capital_rupees": str(capital),
    }
    try:
        request = sweeps.parse_sweep(body)
    except BadBacktestRequest as exc:
        err.print(f"dalal sweep: {exc.message}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    t0 = time.perf_counter()
    if local:
        outcome = _run_local(request, data_dir=data_dir, cache_dir=cache_dir, top=top, out=out)
    else:
        outcome = _run_remote(body, engine_url=engine_url, top=top)
    outcome["seconds"] = round(time.perf_counter() - t0, 3)
    if as_json:
        print(json.dumps(outcome, indent=2, default=str))
        return
    n = request.points_count()
    title = f"{strategy}: the best {min(top, n)} of {n} points by {request.objective}"
    console.print(results_table(outcome["results"], request.objective, title))
    for failure in outcome.get("failures") or []:
        err.print(f"[yellow]point {failure['params']} failed:[/yellow] {failure['error']}")
    best = outcome.get("best")
    if best:
        console.print(f"best: {best['params']}", highlight=False)
    if outcome.get("report"):
        console.print(f"report of the best point: {outcome['report']}", highlight=False)
    console.print(f"{n} points in {outcome['seconds']:.2f} s", highlight=False)


def _run_local(
    request: sweeps.SweepRequest, *, data_dir: Path | None, cache_dir: Path, top: int, out: Path
) -> dict[str, Any]:
    cache = None if data_dir else cache_dir
    try:
        with Progress(
            TextColumn("sweep"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("points", total=request.points_count())
            trials = sweeps.run_local(
                request,
                cache_dir=cache,
                data_dir=data_dir,
                progress=lambda done, total: bar.update(task, completed=done),
            )
        order = sweeps.ranked(trials, request.objective)
        best = order[0] if order else None
        report = None
        if best is not None:
            trial = request.trial(best["params"])
            result = sweeps.run_trial(trial, cache_dir=cache, data_dir=data_dir)
            bars = sweeps.load_bars(trial, cache_dir=cache, data_dir=data_dir)
            _json, report = write_report(result, out, bars=bars)
    except DalalError as exc:
        err.print(f"dalal sweep: {exc.message}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    return {"results": order[:top], "best": best, "report": str(report) if report else None}


def _run_remote(body: dict[str, Any], *, engine_url: str | None, top: int) -> dict[str, Any]:
    try:
        settings = load_settings(StackSettings)
    except ConfigError as exc:
        err.print(f"dalal sweep: {exc.message}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    url = engine_url or settings.url_of("engine")
    client = EngineClient(url, api_key=settings.local_api_key())
    try:
        done = _remote(client, body, top)
    except ServiceUnavailable:
        err.print(f"dalal sweep: the engine is not reachable at {url} (or use --local)")
        raise typer.Exit(3) from None
    except ServiceError as exc:
        err.print(f"dalal sweep: {exc.message}", highlight=False, markup=False)
        raise typer.Exit(2 if exc.status_code in (400, 404, 422) else 1) from None
    finally:
        client.close()
    if done["status"] == "failed":
        err.print(f"dalal sweep: sweep {done['id']} failed: {done['error']}")
        raise typer.Exit(1)
    link = (done.get("links") or {}).get("html")
    return {
        "id": done["id"],
        "results": done["results"],
        "failures": done["failures"],
        "best": done["best"],
        "workers": done["workers"],
        "report": f"{url}{link}" if link else None,
    }
