"""The report's fast paths give the text of the code they stand in for: the charts' own
`format_inr` against `dalal_shared.axes.format_inr`, the SVG points and trade markers against
the one-by-one formatting they replaced, a trade's row against its cell-by-cell writing,
`result.json`'s curve written as text against the JSON encoder's, on many random values."""

from __future__ import annotations

import html
import json
import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from dalal_engine import charts, history, report
from dalal_engine.backtest import Backtester, BacktestResult, BacktestSettings, EquityCurve, Trade
from dalal_engine.strategyconfig import validate_document
from dalal_shared import axes
from dalal_shared.timeutil import IST

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


def _old_markers(items: list[charts.Marker], x: charts.Scale, y: charts.Scale) -> str:
    """`charts.markers` before it placed all markers at once."""
    size, parts = 4.5, []
    for item in items:
        cx, cy = x(item.at_seconds), y(item.price)
        tip = -size if item.kind == "entry" else size
        colour = charts.ENTRY_COLOUR if item.kind == "entry" else charts.EXIT_COLOUR
        parts.append(
            f'<path class="{item.kind}" d="M{cx:.1f},{cy + tip:.1f} L{cx + size:.1f},'
            f'{cy - tip * 0.8:.1f} L{cx - size:.1f},{cy - tip * 0.8:.1f} Z" '
            f'fill="{colour}" stroke="white" stroke-width="0.8">'
            f"<title>{html.escape(item.label)}</title></path>"
        )
    return "".join(parts)


def test_markers_as_one_by_one() -> None:
    rng = random.Random(11)
    labels = ["Buy 10 @ ₹1,234.50 · 02 Nov 2023 11:15", 'X sell 5 (stop <"it\'s" & more>)', ""]
    for _ in range(50):
        items = [
            charts.Marker(
                rng.uniform(1.6e9, 1.8e9),
                _random_amount(rng),
                rng.choice(["entry", "exit"]),
                rng.choice(labels),
            )
            for _ in range(rng.randrange(0, 60))
        ]
        x = charts.Scale(1.6e9, rng.choice([1.6e9, 1.8e9]), 64.0, 454.0)  # an empty span too
        y = charts.Scale(rng.uniform(-10, 0), rng.uniform(1, 1e5), 204.0, 24.0)
        assert charts.markers(items, x, y) == _old_markers(items, x, y)


def _old_trade_row(trade: Trade, is_open: bool) -> str:
    """`report._trade_row` before it wrote a row in one format."""

    def cell(css: str, text: str) -> str:
        css = css.strip()
        opening = f"<td class='{css}'>" if css else "<td>"
        return f"{opening}{html.escape(text)}</td>"

    exits = "; ".join(
        f"{e.leg} {e.quantity} @ {charts.format_inr(float(e.price), 2)} ({report._ist_day(e.at)})"
        for e in trade.exits
    )
    net_pnl = trade.net_pnl
    cost = trade.entry_price * trade.quantity
    ret = float(net_pnl / cost) if cost else None
    closed = "open" if is_open else (report._ist(trade.closed_at) if trade.closed_at else "")
    cells = (
        ("", trade.symbol),
        ("", report._ist(trade.opened_at)),
        ("num", str(trade.quantity)),
        ("num", charts.format_inr(float(trade.entry_price), 2)),
        ("", exits),
        ("", closed),
        ("num", charts.format_inr(float(trade.charges), 2)),
        (f"num {report._tone(net_pnl)}", charts.format_inr(float(net_pnl), 2)),
        (f"num {report._tone(ret)}", report._signed_pct(ret)),
    )
    return "<tr>" + "".join([cell(css, text) for css, text in cells]) + "</tr>"


@pytest.fixture(scope="module")
def result() -> BacktestResult:
    """A real run: sma_cross on two symbols' daily bars."""
    cfg = validate_document(
        {
            "name": "t",
            "strategy": "sma_cross",
            "universe": ["INFY", "RELIANCE"],
            "params": {"fast_bars": 5, "slow_bars": 20},
        }
    )[0]
    data = {s: history.load(s, "day", data_dir=FIXTURES) for s in cfg.universe}
    return Backtester(cfg, data, BacktestSettings()).run()


def test_trade_rows_as_cell_by_cell(result: BacktestResult) -> None:
    """The trades table's rows as the cell-by-cell code wrote them: a real run's trades, and
    the same trades with a symbol to escape, a break-even, a loss, no cost, no close."""
    trades = [*result.trades, *result.open_trades]
    assert len(trades) > 5
    odd = [
        replace(trades[0], symbol="M&M"),
        replace(trades[1], gross_pnl=trades[1].charges),  # net zero: no tone
        replace(trades[2], gross_pnl=Decimal("-123456.78")),
        replace(trades[3], entry_price=Decimal(0)),  # no cost: no return
        replace(trades[4], closed_at=None, exits=[]),
    ]
    for trade in [*trades, *odd]:
        for is_open in (False, True):
            assert report._trade_row(trade, is_open) == _old_trade_row(trade, is_open)


def test_ist_texts_as_strftime_writes_them() -> None:
    rng = random.Random(5)
    zones = [UTC, IST, timezone(timedelta(hours=-7, minutes=-30))]
    for _ in range(2_000):
        at = datetime.fromtimestamp(rng.uniform(-2e9, 4e9), rng.choice(zones))
        report._ist.cache_clear()
        assert report._ist(at) == f"{at.astimezone(IST):%d %b %Y %H:%M}"
        assert report._ist_day(at) == f"{at.astimezone(IST):%d %b}"


def test_points_refuse_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="2 x values for 3 y values"):
        charts._points(np.zeros(2), np.zeros(3))


def test_result_json_text_as_the_encoder_writes_it(result: BacktestResult, tmp_path: Path) -> None:
    """`result.json` with its curve written as text: the same bytes as `json.dumps` of the
    result with the curve's points as dicts (the way before), on a real run and on a curve
    of random amounts (negative, zero, repeated)."""
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
    # texts the encoder escapes, a refused decision, an open trade without exits
    odd_text = 'a "quoted" \\ back\nslash, ₹ é \x01 <&>'
    trade = replace(result.trades[0], symbol="M&M", closed_at=None)
    trade.exits = [replace(e, reason=odd_text, leg="T1") for e in result.trades[0].exits]
    odd = replace(
        result,
        trades=[trade, *result.trades[1:]],
        open_trades=[replace(trade, exits=[])],
        fills=[replace(f, reason=odd_text, symbol="M&M") for f in result.fills],
        decisions=[
            replace(d, detail=odd_text, approved=not d.approved, quantity=-d.quantity)
            for d in result.decisions
        ],
    )
    assert odd.trades and odd.fills and odd.decisions
    variants = (result, odd, *(replace(result, curve=c) for c in (random_curve, edge_curve, empty)))
    for one in variants:
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
