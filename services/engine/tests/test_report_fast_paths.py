"""The report's fast paths give the text of the code they stand in for: the charts' own
`format_inr` against `dalal_shared.axes.format_inr`, and the SVG points against the
pair-by-pair formatting they replaced, `result.json`'s curve written as text against the JSON
encoder's, on many random values."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from dalal_engine import charts, history, report
from dalal_engine.backtest import Backtester, BacktestSettings, EquityCurve
from dalal_engine.strategyconfig import validate_document
from dalal_shared import axes

FIXTURES = Path(__file__).parent / "fixtures"


def _old_points(xs: np.ndarray, ys: np.ndarray) -> str:
    """`charts._points` before it formatted all pairs in one go."""
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True))


def _random_amount(rng: random.Random) -> float:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.uniform(-1e6, 1e6)
    if kind == 1:
        return round(rng.uniform(-1e5, 1e5), 2)
    if kind == 2:  # near the rounding edges: 999.995, 99999.996, -0.004
        return rng.choice([1, -1]) * (10 ** rng.randrange(0, 6) - rng.choice([0.004, 0.005, 0.006]))
    if kind == 3:
        return rng.uniform(-0.01, 0.01)
    if kind == 4:
        return rng.uniform(-1e14, 1e14)
    return float(rng.randrange(-200_000, 200_000)) / rng.choice([1, 4, 100, 1000])


def test_format_inr_as_the_shared_one() -> None:
    rng = random.Random(11)
    values = [_random_amount(rng) for _ in range(40_000)]
    values += [0.0, -0.0, 1e5, 99999.5, -99999.5, 12345.0, math.inf, -math.inf, math.nan]
    for value in values:
        for decimals in range(5):
            assert charts.format_inr(value, decimals) == axes.format_inr(value, decimals)


@pytest.mark.parametrize("value", [Decimal("-1234.565"), Decimal("0.005"), 7, -1234567])
def test_format_inr_of_other_types_as_the_shared_one(value: object) -> None:
    for decimals in range(4):
        assert charts.format_inr(value, decimals) == axes.format_inr(value, decimals)  # type: ignore[arg-type]


def test_points_as_pair_by_pair() -> None:
    rng = np.random.default_rng(3)
    for n in [0, 1, 2, 7, 1500]:
        xs = rng.uniform(-50, 1000, n)
        ys = rng.uniform(-50, 400, n)
        if n > 2:
            xs[1], ys[2] = -0.04, 0.05  # -0.0 and a half-way decimal
        assert charts._points(xs, ys) == _old_points(xs, ys)


def test_points_refuse_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="2 x values for 3 y values"):
        charts._points(np.zeros(2), np.zeros(3))


def test_result_json_text_as_the_encoder_writes_it(tmp_path: Path) -> None:
    """`result.json` with its curve written as text: the same bytes as `json.dumps` of the
    result with the curve's points as dicts (the way before), on a real run and on a curve
    of random amounts (negative, zero, repeated)."""
    cfg = validate_document(
        {
            "name": "t",
            "strategy": "sma_cross",
            "universe": ["INFY", "RELIANCE"],
            "params": {"fast_bars": 5, "slow_bars": 20},
        }
    )[0]
    data = {s: history.load(s, "day", data_dir=FIXTURES) for s in cfg.universe}
    result = Backtester(cfg, data, BacktestSettings()).run()
    rng = np.random.default_rng(9)
    n = 3_000
    seconds = 1_700_000_000 + np.cumsum(rng.integers(60, 90_000, n))
    amounts = rng.integers(-(10**15), 10**15, n) // rng.choice([1, 1000, 10**9], n)
    random_curve = EquityCurve(
        close_seconds=seconds.astype(np.int64),
        days=((seconds + 19_800) // 86_400).astype(np.int64),
        equity_paise=amounts.astype(np.int64),
        exposure_paise=np.where(rng.random(n) < 0.3, 0, amounts[::-1]).astype(np.int64),
    )
    extremes = np.array([0, 5, -5, 99, -99, 100, -100, -(2**63), 2**63 - 1], dtype=np.int64)
    edge_curve = EquityCurve(
        close_seconds=seconds[: len(extremes)].astype(np.int64),
        days=np.zeros(len(extremes), dtype=np.int64),
        equity_paise=extremes,
        exposure_paise=extremes[::-1].copy(),
    )
    empty = EquityCurve(*(np.zeros(0, dtype=np.int64) for _ in range(4)))
    for one in (result, *(replace(result, curve=c) for c in (random_curve, edge_curve, empty))):
        before = one.to_json()
        before["equity_curve"] = [
            {
                "at": p.at.isoformat(),
                "equity": str(p.equity),
                "gross_exposure": str(p.gross_exposure),
            }
            for p in one.curve.points()
        ]
        assert report.result_json_text(one) == json.dumps(before, separators=(",", ":"))
        assert report.equity_curve_json(one.curve) == before["equity_curve"]
    json_path, _ = report.write_report(result, tmp_path)
    assert json_path.read_text() == report.result_json_text(result)
