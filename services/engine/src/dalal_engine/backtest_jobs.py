"""Backtests as jobs: the request (validated; errors name the field), and the run a worker does.

`POST /backtests` validates a `BacktestRequest`, stores it (`engine_backtests`, status
`queued`) and sends `dalal_engine.run_backtest(id)` to the engine worker's Celery queue. The
worker loads the bars (Parquet candle cache or a CSV data dir), runs the same `Backtester` the
CLI runs, writes its progress (bars done / total, ETA) to the row as it goes, and when done the
summary metrics and the report (`result.json`, `report.html` under the backtests dir).
"""

from __future__ import annotations

import time
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dalal_engine import history
from dalal_engine.backtest import Backtester, BacktestResult, BacktestSettings
from dalal_engine.report import write_report
from dalal_engine.strategyconfig import StrategyConfig, StrategyConfigError, validate_document
from dalal_shared.clients import DataClient
from dalal_shared.errors import PermanentError
from dalal_shared.messages import Interval, Symbol
from dalal_shared.money import INITIAL_CAPITAL_RUPEES
from dalal_shared.timeutil import IST, to_ist

PROGRESS_EVERY_SECONDS = 0.5
R = TypeVar("R", bound="BacktestRequest")


class BadBacktestRequest(PermanentError):
    code = "invalid_request"
    status_code = 422


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str = Field(min_length=1)
    symbols: list[Symbol] = Field(min_length=1, max_length=200)
    from_: date = Field(alias="from")
    to: date
    interval: Interval = "day"
    params: dict[str, Any] = Field(default_factory=dict)
    risk: dict[str, Any] = Field(default_factory=dict)
    capital_rupees: Decimal = Field(INITIAL_CAPITAL_RUPEES, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> BacktestRequest:
        if self.to < self.from_:
            raise ValueError("to: must not be before from")
        return self

    def config(self) -> StrategyConfig:
        doc = {
            "name": f"bt-{self.strategy}"[:40],
            "strategy": self.strategy,
            "interval": self.interval,
            "universe": list(self.symbols),
            "params": self.params,
            "risk": self.risk,
        }
        try:
            return validate_document(doc)[0]
        except StrategyConfigError as exc:
            # "strategies[0].params.slow_bars: ..." -> field "params.slow_bars"
            message = exc.message.removeprefix("invalid strategy config: ")
            message = message.replace("strategies[0].", "")
            field = message.split(":", 1)[0].split(".", 1)[0]
            raise BadBacktestRequest(message, code=f"invalid_{field}") from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def parse_request(body: Any) -> BacktestRequest:
    """Validate a request body; BadBacktestRequest with code `invalid_<field>` otherwise."""
    request = parse_model(BacktestRequest, body)
    request.config()  # the strategy and its parameters
    return request


def parse_model(model: type[R], body: Any) -> R:
    """`body` as `model`; BadBacktestRequest naming the first bad field otherwise."""
    if not isinstance(body, dict):
        raise BadBacktestRequest("the body must be a JSON object", code="invalid_body")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if not loc and ":" in msg:  # a model-level check names its field first
            loc = [msg.split(":", 1)[0]]
            msg = msg.split(":", 1)[1].strip()
        field = (loc[0] if loc else "body").removesuffix("_")
        where = ".".join(loc).replace("from_", "from") or field
        raise BadBacktestRequest(f"{where}: {msg}", code=f"invalid_{field}") from None


def summary(result: BacktestResult, seconds: float) -> dict[str, Any]:
    return {
        "bars": result.bars,
        "seconds": round(seconds, 3),
        "bars_per_second": round(result.bars / seconds) if seconds > 0 else None,
        "trades": len(result.trades),
        "open_trades": len(result.open_trades),
        "charges_rupees": str(result.charges.total),
        "refused_signals": sum(1 for d in result.decisions if not d.approved),
        "data_start": to_ist(result.data_start).isoformat() if result.data_start else None,
        "data_end": to_ist(result.data_end).isoformat() if result.data_end else None,
        "warnings": list(result.warnings),
        "report": result.report.to_json(),
    }


def run(
    request: BacktestRequest,
    *,
    out_dir: Path,
    cache_dir: Path | None,
    data_dir: Path | None,
    progress: Any = None,
    data: DataClient | None = None,
) -> tuple[BacktestResult, dict[str, Any]]:
    """Load the bars (CSV files in `data_dir`, else the data service's candles API through
    `data`, which fetches what its cache lacks from Kite, else a Parquet cache), run the
    backtester, write the report; (result, summary)."""
    cfg = request.config()
    start = datetime.combine(request.from_, dtime(0), tzinfo=IST)
    end = datetime.combine(request.to, dtime(23, 59), tzinfo=IST)
    bars = history.load_universe(
        cfg, start=start, end=end, data=data, cache_dir=cache_dir, data_dir=data_dir
    )
    settings = BacktestSettings(request.capital_rupees, start=start, end=end)
    t0 = time.perf_counter()
    result = Backtester(cfg, bars, settings).run(progress)
    seconds = time.perf_counter() - t0
    write_report(result, out_dir, bars=bars)
    return result, summary(result, seconds)
