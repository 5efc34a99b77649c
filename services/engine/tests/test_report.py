"""The backtest report page: monthly returns by hand, downsampling that keeps a curve's shape,
and a real two-symbol backtest's page: well-formed charts, one marker per fill, the monthly
table, and `result.json` as before."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal as D
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from dalal_engine import history
from dalal_engine.backtest import Backtester, BacktestResult, BacktestSettings, EquityCurve
from dalal_engine.charts import downsample, format_inr, nice_ticks, time_ticks
from dalal_engine.report import monthly_returns, report_page, write_report, yearly_returns
from dalal_engine.strategy import BarSeries
from dalal_engine.strategyconfig import validate_document
from dalal_shared.timeutil import IST

FIXTURES = Path(__file__).parent / "fixtures"
SYMBOLS = ("INFY", "RELIANCE")
SVG = "{http://www.w3.org/2000/svg}"


def day(y: int, m: int, d: int) -> int:
    return (date(y, m, d) - date(1970, 1, 1)).days


def test_monthly_returns_chain_month_ends_from_the_initial_capital() -> None:
    days = np.array([day(2024, 1, 2), day(2024, 1, 31), day(2024, 2, 15), day(2024, 4, 1)])
    equity = np.array([100_500_00, 102_000_00, 99_960_00, 104_958_00], dtype=np.int64)
    got = monthly_returns(days, equity, initial_paise=100_000_00)
    assert set(got) == {(2024, 1), (2024, 2), (2024, 4)}  # March has no points: no cell
    assert got[(2024, 1)] == pytest.approx(102_000 / 100_000 - 1)  # vs the initial capital
    assert got[(2024, 2)] == pytest.approx(99_960 / 102_000 - 1)
    assert got[(2024, 4)] == pytest.approx(104_958 / 99_960 - 1)  # vs the last point before
    assert yearly_returns(got) == {2024: pytest.approx(104_958 / 100_000 - 1)}


def test_monthly_returns_split_at_ist_month_ends_across_years() -> None:
    days = np.array([day(2023, 12, 29), day(2024, 1, 1)])
    equity = np.array([110_000_00, 99_000_00], dtype=np.int64)
    got = monthly_returns(days, equity, initial_paise=100_000_00)
    assert got == {(2023, 12): pytest.approx(0.10), (2024, 1): pytest.approx(-0.10)}
    assert monthly_returns(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 1) == {}


def test_downsampling_keeps_the_ends_and_the_extremes_under_the_cap() -> None:
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.normal(size=200_000))
    keep = downsample(values, 1500)
    assert len(keep) <= 1500
    assert keep[0] == 0 and keep[-1] == len(values) - 1
    assert np.all(np.diff(keep) > 0)  # in time order, no repeats
    assert values[keep].min() == values.min() and values[keep].max() == values.max()
    assert downsample(values[:10], 1500).tolist() == list(range(10))  # small: untouched


def test_downsampling_picks_each_runs_first_lowest_and_highest_point_with_ties_and_nans() -> None:
    """All runs at once pick what argmin / argmax of each run pick (the first of equal
    values); a series with NaNs picks them as argmin / argmax do."""

    def run_by_run(values: np.ndarray, max_points: int) -> list[int]:
        n = len(values)
        edges = np.linspace(1, n - 1, (max_points - 2) // 2 + 1).astype(np.intp).tolist()
        keep = {0, n - 1}
        for lo, hi in pairwise(edges):
            if hi > lo:
                keep |= {lo + int(values[lo:hi].argmin()), lo + int(values[lo:hi].argmax())}
        return sorted(keep)

    rng = np.random.default_rng(5)
    prices = np.round(np.cumsum(rng.normal(size=5_000)), 0)  # rounded: many ties
    flat = np.zeros(3_000)
    holes = prices.copy()
    holes[[17, 2_500, 2_501]] = np.nan
    for values in (prices, flat, holes, prices[:801]):
        for cap in (10, 100, 800):
            assert downsample(values, cap).tolist() == run_by_run(values, cap)


def test_axis_labels_read_like_a_trader_writes_them() -> None:
    assert format_inr(1_050_000) == "10,50,000"
    assert format_inr(123_456_789.5, 2) == "12,34,56,789.50"
    assert format_inr(-1234.5, 2) == "\N{MINUS SIGN}1,234.50"
    assert format_inr(999) == "999"
    ticks = nice_ticks(973_210.0, 1_181_400.0)
    assert ticks[0] <= 973_210 and ticks[-1] >= 1_181_400 and len(ticks) <= 8
    start = datetime(2021, 1, 1, tzinfo=IST).timestamp()
    end = datetime(2025, 9, 30, tzinfo=IST).timestamp()
    years = [label for _, label in time_ticks(start, end)]
    assert years == ["2021", "2022", "2023", "2024", "2025"]
    quarter = datetime(2021, 4, 1, tzinfo=IST).timestamp()
    months = [label for _, label in time_ticks(start, quarter)]
    assert months == ["Jan 2021", "Feb 2021", "Mar 2021", "Apr 2021"]


def backtest() -> tuple[BacktestResult, dict[str, BarSeries]]:
    cfg = validate_document({"name": "page", "strategy": "swing", "universe": list(SYMBOLS)})[0]
    data = {s: history.load(s, "day", data_dir=FIXTURES) for s in SYMBOLS}
    settings = BacktestSettings(D("1000000"), start=datetime(2021, 1, 1, tzinfo=IST))
    return Backtester(cfg, data, settings).run(), data


def svg_blocks(page: str) -> list[ET.Element]:
    return [ET.fromstring(block) for block in re.findall(r"<svg\b.*?</svg>", page, re.S)]


def test_the_page_of_a_real_backtest(tmp_path: Path) -> None:
    result, data = backtest()
    trades = [*result.trades, *result.open_trades]
    assert {t.symbol for t in trades} == set(SYMBOLS)
    assert any(len(t.exits) > 1 for t in trades)  # partial exits are in the test

    json_path, html_path = write_report(result, tmp_path, bars=data)
    page = html_path.read_text()

    charts = svg_blocks(page)  # every chart is well-formed
    by_label = {c.get("aria-label"): c for c in charts}
    assert "Equity curve and drawdown" in by_label
    for symbol in SYMBOLS:
        chart = by_label[f"{symbol} close price with trades"]
        paths = chart.iter(f"{SVG}path")
        kinds = [p.get("class") for p in paths]
        mine = [t for t in trades if t.symbol == symbol]
        assert kinds.count("entry") == len(mine)
        assert kinds.count("exit") == sum(len(t.exits) for t in mine)
        line = chart.find(f"{SVG}polyline")
        assert line is not None
        in_window = sum(ts >= result.settings.start for ts in data[symbol].start)
        assert len(line.get("points", "").split()) == in_window  # warm-up bars are not drawn

    monthly = page[page.index("<table class='monthly'>") :]
    monthly = monthly[: monthly.index("</table>")]
    assert re.findall(r"<tr><th>(\d{4})</th>", monthly) == ["2021"]
    assert "<th>Jan</th>" in monthly and "<th>Year</th>" in monthly
    for figure in ("Total return", "CAGR", "Sharpe", "Sortino", "Max drawdown", "Win rate"):
        assert f"<div class='label'>{figure}</div>" in page
    assert "<script" not in page and "http://" not in page.replace(SVG[1:-1], "")

    expected = result.to_json()
    expected["equity_curve"] = [
        {"at": p.at.isoformat(), "equity": str(p.equity), "gross_exposure": str(p.gross_exposure)}
        for p in result.equity
    ]
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(expected))


def test_without_bars_the_page_has_no_symbol_charts(tmp_path: Path) -> None:
    result, _ = backtest()
    _, html_path = write_report(result, tmp_path)
    page = html_path.read_text()
    labels = [c.get("aria-label") for c in svg_blocks(page)]
    assert labels == ["Equity curve and drawdown"]
    assert "<h2>Trades</h2>" in page and "<h2>Monthly returns</h2>" in page


def test_a_long_minute_curve_stays_a_small_page() -> None:
    """Five years of minute bars: every polyline is downsampled, so the page stays small."""
    result, data = backtest()
    n = 5 * 250 * 375
    seconds = datetime(2021, 1, 1, 9, 16, tzinfo=IST).timestamp() + np.arange(n) * 60
    walk = np.cumsum(np.random.default_rng(5).normal(0, 500, size=n)).astype(np.int64)
    curve = EquityCurve(
        close_seconds=seconds.astype(np.int64),
        days=((seconds + 19_800) // 86_400).astype(np.int64),
        equity_paise=100_000_000 + walk,
        exposure_paise=np.zeros(n, dtype=np.int64),
    )
    page = report_page(replace(result, curve=curve), data)
    assert len(page) < 400_000
    for chart in svg_blocks(page):
        for line in chart.iter(f"{SVG}polyline"):
            assert len(line.get("points", "").split()) <= 1500


def test_at_most_twelve_symbol_charts_traded_first_and_the_rest_named() -> None:
    result, data = backtest()
    extra = {f"X{i:02d}": replace(data["INFY"], symbol=f"X{i:02d}") for i in range(12)}
    page = report_page(result, {**extra, **data})  # the traded symbols come last here
    labels = [c.get("aria-label") for c in svg_blocks(page)]
    symbols = [label.split()[0] for label in labels if label.endswith("close price with trades")]
    assert symbols == ["INFY", "RELIANCE", *(f"X{i:02d}" for i in range(10))]
    assert "2 more symbols not drawn: X10, X11" in page
