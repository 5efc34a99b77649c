"""Parameter sweeps: one strategy over one universe and date range, once per point of a
parameter grid, each point a backtest (`dalal sweep`, `POST /sweeps`).

A `SweepRequest` is a backtest request (`backtest_jobs.BacktestRequest`: strategy, symbols,
dates, interval, fixed params, risk, capital) plus `grid` (parameter -> the values to try; the
points are their cartesian product, in a stable order) and the `objective` the results are
ranked by. Every point is checked as a strategy config before anything runs, so a bad value is
a 422 naming the parameter, not a failed trial later.

The trials are independent: the engine API stores one row per point and sends one Celery task
per point (`tasks.run_sweep_trial`); any engine worker takes any trial, so more workers finish
a sweep sooner. A worker keeps the bars it loaded for a sweep in memory (`BarCache`), so a
sweep loads its history once per worker, not once per trial. The worker that finishes the last
trial ranks them and writes the full report of the best point. `run_local` runs the same
trials in one process, one after another (what a single-process optimiser does).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from dalal_engine import history
from dalal_engine.backtest import Backtester, BacktestResult, BacktestSettings
from dalal_engine.backtest_jobs import BacktestRequest, BadBacktestRequest, parse_model
from dalal_engine.strategy import BarSeries
from dalal_shared.clients import DataClient
from dalal_shared.timeutil import IST

MAX_POINTS = 5000

Objective = Literal[
    "total_return", "cagr", "sharpe", "sortino", "profit_factor", "net_pnl", "max_drawdown"
]
# ranked from the best down: higher is better except for the drawdown
LOWER_IS_BETTER = frozenset({"max_drawdown"})


class SweepRequest(BacktestRequest):
    grid: dict[str, list[Any]] = Field(min_length=1)
    objective: Objective = "sharpe"

    @model_validator(mode="after")
    def _grid(self) -> SweepRequest:
        for name, values in self.grid.items():
            if not values:
                raise ValueError(f"grid: {name} has no values to try")
            if name in self.params:
                raise ValueError(f"grid: {name} is also a fixed param; give it in one place")
        if self.points_count() > MAX_POINTS:
            raise ValueError(f"grid: {self.points_count()} points, at most {MAX_POINTS}")
        return self

    def points_count(self) -> int:
        return math.prod(len(v) for v in self.grid.values())

    def points(self) -> Iterator[dict[str, Any]]:
        """Every grid point (only the swept parameters), in a stable order."""
        names = list(self.grid)
        for values in itertools.product(*(self.grid[n] for n in names)):
            yield dict(zip(names, values, strict=True))

    def trial(self, point: dict[str, Any]) -> BacktestRequest:
        """The backtest of one point: the fixed params with the point's on top."""
        body = {k: v for k, v in self.to_json().items() if k not in ("grid", "objective")}
        body["params"] = {**self.params, **point}
        return BacktestRequest.model_validate(body)


def parse_sweep(body: Any) -> SweepRequest:
    """Validate a sweep body and every point's strategy config; BadBacktestRequest (422, code
    `invalid_<field>`) naming the first bad field or point otherwise."""
    request = parse_model(SweepRequest, body)
    for point in request.points():
        try:
            request.trial(point).config()
        except BadBacktestRequest as exc:
            raise BadBacktestRequest(
                f"grid point {point}: {exc.message}", code="invalid_grid"
            ) from None
    return request


def trial_metrics(result: BacktestResult) -> dict[str, Any]:
    """The figures a sweep ranks and shows, JSON-ready (money as strings)."""
    r = result.report
    return {
        "trades": r.trades,
        "net_pnl": str(r.total_pnl_rupees),
        "total_return": r.total_return,
        "cagr": r.cagr,
        "sharpe": r.sharpe,
        "sortino": r.sortino,
        "profit_factor": r.profit_factor,
        "max_drawdown": r.max_drawdown,
        "win_rate": r.win_rate,
        "charges": str(result.charges.total),
    }


def objective_value(metrics: dict[str, Any], objective: str) -> float | None:
    value = metrics.get(objective)
    if value is None:
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def ranked(trials: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """Finished trials from the best down by `objective` (those without a value last, then by
    their grid order): the first is the sweep's best point."""
    sign = 1.0 if objective in LOWER_IS_BETTER else -1.0

    def key(t: dict[str, Any]) -> tuple[int, float, int]:
        value = objective_value(t.get("metrics") or {}, objective)
        return (value is None, sign * value if value is not None else 0.0, t["n"])

    return sorted((t for t in trials if t["status"] == "done"), key=key)


class BarCache:
    """The bars of the last few universes loaded (per process): the trials of one sweep share
    them instead of reading the same history once per point."""

    def __init__(self, size: int = 4):
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], dict[str, BarSeries]] = OrderedDict()

    def get(
        self, key: tuple[Any, ...], load: Callable[[], dict[str, BarSeries]]
    ) -> dict[str, BarSeries]:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        bars = load()
        self._entries[key] = bars
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return bars


BARS = BarCache()


def window(request: BacktestRequest) -> tuple[datetime, datetime]:
    return (
        datetime.combine(request.from_, dtime(0), tzinfo=IST),
        datetime.combine(request.to, dtime(23, 59), tzinfo=IST),
    )


def load_bars(
    request: BacktestRequest,
    *,
    cache_dir: Path | None,
    data_dir: Path | None,
    data: DataClient | None = None,
    cache: BarCache = BARS,
    scope: str = "",
) -> dict[str, BarSeries]:
    """The bars of a request's universe, loaded once per `scope` (a sweep: its points share
    them; the next sweep reads the history again, which may have grown) and kept (`cache`)."""
    cfg = request.config()
    start, end = window(request)
    source = str(data_dir) if data_dir else ("data-service" if data else str(cache_dir))
    key = (scope, source, cfg.exchange, cfg.interval, tuple(cfg.universe), start, end)
    return cache.get(
        key,
        lambda: history.load_universe(
            cfg, start=start, end=end, data=data, cache_dir=cache_dir, data_dir=data_dir
        ),
    )


def run_trial(
    request: BacktestRequest,
    *,
    cache_dir: Path | None,
    data_dir: Path | None,
    data: DataClient | None = None,
    cache: BarCache = BARS,
    scope: str = "",
) -> BacktestResult:
    """One point's backtest on the (shared) bars of its universe."""
    bars = load_bars(
        request, cache_dir=cache_dir, data_dir=data_dir, data=data, cache=cache, scope=scope
    )
    start, end = window(request)
    settings = BacktestSettings(request.capital_rupees, start=start, end=end)
    return Backtester(request.config(), bars, settings).run()


def run_local(
    request: SweepRequest,
    *,
    cache_dir: Path | None,
    data_dir: Path | None,
    data: DataClient | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Every point in this process, one after another; the trials as the API shows them."""
    points = list(request.points())
    out: list[dict[str, Any]] = []
    for n, point in enumerate(points):
        result = run_trial(request.trial(point), cache_dir=cache_dir, data_dir=data_dir, data=data)
        out.append({"n": n, "params": point, "status": "done", "metrics": trial_metrics(result)})
        if progress is not None:
            progress(n + 1, len(points))
    return out
