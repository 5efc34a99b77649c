"""Performance statistics against figures worked out by hand."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from decimal import Decimal as D

import numpy as np
import pytest

from dalal_shared.performance import (
    EquityPoint,
    compute,
    compute_paise,
    curve_html,
    curve_json,
    drawdown,
)
from dalal_shared.performance import daily_curve as _daily
from dalal_shared.timeutil import IST

DAY0 = datetime(2025, 1, 1, 15, 30, tzinfo=IST)


def curve(*values: str, exposure: str = "0") -> list[EquityPoint]:
    return [EquityPoint(DAY0 + timedelta(days=i), D(v), D(exposure)) for i, v in enumerate(values)]


def test_trade_statistics() -> None:
    r = compute([D("300"), D("-100"), D("100"), D("-200"), D("0")], curve("1000", "1100"))
    assert (r.trades, r.wins, r.losses) == (5, 2, 3)
    assert r.win_rate == pytest.approx(0.4)
    assert r.average_win_rupees == D("200.00")  # (300 + 100) / 2
    assert r.average_loss_rupees == D("-100.00")  # (-100 - 200 + 0) / 3
    assert r.profit_factor == pytest.approx(400 / 300)
    assert r.expectancy_rupees == D("20.00")  # 100 / 5
    assert r.total_pnl_rupees == D("100.00")


def test_no_trades_gives_empty_statistics_not_errors() -> None:
    r = compute([], [])
    assert r.trades == 0 and r.win_rate is None and r.profit_factor is None
    assert r.sharpe is None and r.max_drawdown == 0.0


def test_returns_sharpe_and_sortino() -> None:
    # daily returns +10%, -10%, +10%
    r = compute([], curve("100", "110", "99", "108.9"))
    rets = [0.1, -0.1, 0.1]
    mu = sum(rets) / 3
    sd = math.sqrt(sum((x - mu) ** 2 for x in rets) / 2)
    assert r.sharpe == pytest.approx(mu / sd * math.sqrt(252))
    assert r.sortino == pytest.approx(mu / math.sqrt(0.01 / 3) * math.sqrt(252))
    assert r.total_return == pytest.approx(0.089)
    assert r.cagr == pytest.approx(1.089 ** (365.25 / 3) - 1)


def test_max_drawdown_and_its_duration() -> None:
    # peak 120 on day 1, trough 90 on day 3 (-25%), back above 120 on day 5
    points = curve("100", "120", "100", "90", "110", "125", "124")
    dd = drawdown(_daily(points))
    assert dd.fraction == pytest.approx(0.25)
    assert dd.rupees == D("30")
    assert dd.duration_days == 4  # day 1 -> day 5
    assert dd.longest_days == 4
    r = compute([], points)
    assert r.max_drawdown == pytest.approx(0.25) and r.max_drawdown_duration_days == 4


def test_unrecovered_drawdown_lasts_until_the_last_day() -> None:
    dd = drawdown(_daily(curve("100", "80", "90")))
    assert dd.duration_days == 2 and dd.fraction == pytest.approx(0.2)


def test_daily_statistics_use_the_last_point_of_each_ist_day() -> None:
    intraday = [
        EquityPoint(DAY0.replace(hour=10), D("50")),  # superseded by the close
        EquityPoint(DAY0, D("100")),
        EquityPoint(DAY0 + timedelta(days=1), D("110")),
    ]
    r = compute([], intraday)
    assert r.days == 2 and r.total_return == pytest.approx(0.1)


def test_exposure() -> None:
    points = curve("100", "100", exposure="50")
    points.append(EquityPoint(DAY0 + timedelta(days=2), D("100"), D("0")))
    r = compute([], points)
    assert r.exposure_days_fraction == pytest.approx(2 / 3)
    assert r.average_gross_exposure == pytest.approx((0.5 + 0.5 + 0) / 3)


def test_equity_curve_outputs() -> None:
    points = curve("100", "120", "90")
    data = curve_json(points)
    assert [p["equity"] for p in data] == ["100", "120", "90"]
    assert data[-1]["drawdown"] == "0.250000"
    page = curve_html(points, title="Account")
    assert page.startswith("<!DOCTYPE html>") and "<polyline" in page
    assert "<script src" not in page  # self-contained


def test_the_equity_curve_page_has_axes_a_person_can_read() -> None:
    import re
    import xml.etree.ElementTree as ET

    page = curve_html(curve("1000000", "1012500", "987250.5"), title="Account")
    svg = ET.fromstring(re.search(r"<svg.*</svg>", page, re.S).group(0))  # type: ignore[union-attr]
    ns = "{http://www.w3.org/2000/svg}"
    texts = {t.get("class"): [] for t in svg.iter(f"{ns}text")}
    for t in svg.iter(f"{ns}text"):
        texts[t.get("class")].append(t.text or "")
    values = [float(v.replace(",", "")) for v in texts["y-tick"]]  # Indian grouping: 10,00,000
    assert len(values) >= 3 and values == sorted(values)
    assert values[0] <= 987250.5 and values[-1] >= 1012500  # the curve lies within the axis
    assert len(texts["x-tick"]) == 5 and all(re.search(r"\d{2} \w{3}", x) for x in texts["x-tick"])
    assert sum(1 for line in svg.iter(f"{ns}line") if line.get("class") == "axis") == 2
    labels = " ".join(texts[None])
    assert "Equity (₹)" in labels and "Time (IST)" in labels


def test_the_paise_arrays_form_gives_the_same_report() -> None:
    """A backtest hands its curve over as arrays in paise with IST day numbers: the report is
    the one `compute` makes from the same points (several points a day, a drawdown that
    recovers, days flat and days exposed)."""
    rng = np.random.default_rng(11)
    start = datetime(2025, 1, 6, 9, 15, tzinfo=IST)
    moments = [start + timedelta(hours=3 * k) for k in range(400)]  # 2-3 points per IST day
    equity = 1_000_000_00 + np.cumsum(rng.integers(-900_00, 1_000_00, len(moments)))
    exposure = np.where(rng.random(len(moments)) < 0.4, 0, rng.integers(1, 500_000_00, 400))
    points = [
        EquityPoint(at, D(int(e)).scaleb(-2), D(int(x)).scaleb(-2))
        for at, e, x in zip(moments, equity, exposure, strict=True)
    ]
    days = np.array([(m.date() - date(1970, 1, 1)).days for m in moments], dtype=np.int64)
    pnls = [D("120.50"), D("-40.25"), D("0")]
    expected = compute(pnls, points, initial_equity=D("1000000"), risk_free_annual=0.05)
    got = compute_paise(
        pnls, days, equity, exposure, initial_equity=D("1000000"), risk_free_annual=0.05
    )
    assert got == expected
    assert expected.max_drawdown > 0 and expected.days < len(points)
    assert compute_paise([], *(np.zeros(0, dtype=np.int64),) * 3) == compute([], [])


def test_drawdown_counts_intraday_falls_from_the_initial_capital() -> None:
    """One day of marks that fell from the initial capital: the report, the paise form of a
    backtest and the curve's drawdown column all see the same fall (day closes alone see
    none: one close, no earlier peak)."""
    opening = datetime(2025, 1, 2, 9, 15, tzinfo=IST)
    points = [
        EquityPoint(opening + timedelta(minutes=5 * i), D(v), D("0"))
        for i, v in enumerate(["99800", "95000", "97000"])
    ]
    r = compute([], points, initial_equity=D("100000"))
    assert r.max_drawdown_rupees == D("5000.00") and r.max_drawdown == pytest.approx(0.05)
    days = np.array([(p.at.date() - date(1970, 1, 1)).days for p in points], dtype=np.int64)
    paise = np.array([int(p.equity * 100) for p in points], dtype=np.int64)
    same = compute_paise([], days, paise, np.zeros(3, dtype=np.int64), initial_equity=D("100000"))
    assert same.max_drawdown_rupees == r.max_drawdown_rupees
    assert same.max_drawdown == pytest.approx(r.max_drawdown)
    column = [D(p["drawdown"]) for p in curve_json(points, D("100000"))]
    assert column == [D("0.002000"), D("0.050000"), D("0.030000")]
    # without an initial equity the first point is the first peak, as before
    assert compute([], points).max_drawdown_rupees == D("4800.00")
