"""Strategy configurations (YAML): which strategy, on which universe and interval, with which
parameters and risk limits. Validated in full before anything runs; every problem names its
field, e.g. `strategies[0].params.fast_bars: field required`.

```yaml
strategies:
  - name: swing-largecaps        # instance name (letters, digits, - and _)
    strategy: swing              # a registered strategy
    interval: day
    universe: [RELIANCE, TCS, INFY]
    product: CNC
    params: {stop_atr_multiple: 2.0, time_stop_bars: 20}
    risk: {risk_per_trade_pct: 1.0, max_open_positions: 5, max_daily_loss_rupees: 5000}
    schedule: {every_seconds: 60}  # optional: the seed's fixed cycle instead of bar events
```
A file with a single strategy may leave out the `strategies:` list. With `schedule`, the live
loop runs `execute_cycle(universe)` every `every_seconds`, reading the latest bars from the data
service's candles API, instead of consuming `market.bars.<interval>`.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dalal_engine.intraday import KITE_MIS_CUTOFF
from dalal_engine.risk import RiskConfig
from dalal_engine.strategy import Strategy, StrategyParams, registry
from dalal_shared.errors import ConfigError
from dalal_shared.intervals import Interval
from dalal_shared.symbols import Symbol


class StrategyConfigError(ConfigError):
    code = "bad_strategy_config"
    status_code = 422


class Schedule(BaseModel):
    """The seed's fixed cycle: poll the data service every `every_seconds`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    every_seconds: int = Field(gt=0, le=86_400)


class StrategyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$")
    strategy: str
    interval: Interval = "day"
    exchange: Literal["NSE", "BSE"] = "NSE"
    product: Literal["CNC", "MIS"] = "CNC"
    universe: list[Symbol] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    schedule: Schedule | None = None
    mis_exit_at: time = Field(
        time(15, 15),
        description="MIS on intraday bars: positions exit at this IST time and nothing new "
        "opens after it (Kite squares MIS off from 15:20 and charges for it)",
    )
    exchange_stop: bool = Field(
        False,
        description="keep each position's stop at the exchange too, so it fires while Dalal is "
        "down: a Kite GTT for CNC (with the target as its second leg when that target sells "
        "the whole position), an SL-M order for MIS",
    )

    @field_validator("mis_exit_at")
    @classmethod
    def _before_the_cutoff(cls, value: time) -> time:
        if not time(9, 15) < value <= KITE_MIS_CUTOFF:
            raise ValueError(
                f"must lie in the session and not after Kite's MIS cut-off "
                f"({KITE_MIS_CUTOFF:%H:%M} IST), got {value:%H:%M}"
            )
        return value

    def build(self) -> Strategy:
        cls = registry()[self.strategy]
        return cls(cls.Params.model_validate(self.params))


class StrategiesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    strategies: list[StrategyConfig] = Field(min_length=1)


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _problems(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    out = []
    for err in exc.errors():
        loc = prefix + tuple(err.get("loc") or ())
        msg = err.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        out.append(f"{_where(loc)}: {msg}")
    return out


def validate_document(doc: Any) -> list[StrategyConfig]:
    """Validate a parsed YAML document; raise StrategyConfigError listing every problem."""
    if isinstance(doc, dict) and "strategies" not in doc:
        doc = {"strategies": [doc]}
    problems: list[str] = []
    try:
        parsed = StrategiesFile.model_validate(doc)
    except ValidationError as exc:
        raise StrategyConfigError("invalid strategy config: " + "; ".join(_problems(exc))) from None
    known = registry()
    names: set[str] = set()
    for i, cfg in enumerate(parsed.strategies):
        if cfg.name in names:
            problems.append(f"strategies[{i}].name: {cfg.name!r} is used twice")
        names.add(cfg.name)
        cls = known.get(cfg.strategy)
        if cls is None:
            problems.append(
                f"strategies[{i}].strategy: unknown strategy {cfg.strategy!r}; "
                f"known: {', '.join(sorted(known))}"
            )
            continue
        try:
            cls.Params.model_validate(cfg.params)
        except ValidationError as exc:
            problems.extend(_problems(exc, ("strategies", i, "params")))
    if problems:
        raise StrategyConfigError("invalid strategy config: " + "; ".join(problems))
    return list(parsed.strategies)


def load_text(text: str) -> list[StrategyConfig]:
    import yaml  # here: `dalal backtest` validates a document its read-ahead parsed (~9 ms)

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StrategyConfigError(f"strategy config is not valid YAML: {exc}") from None
    return validate_document(doc)


def load_file(path: Path) -> list[StrategyConfig]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise StrategyConfigError(f"cannot read strategy config {path}: {exc}") from None
    return load_text(text)


def params_of(cfg: StrategyConfig) -> StrategyParams:
    return registry()[cfg.strategy].Params.model_validate(cfg.params)
