"""Performance statistics of a trading account or a backtest: one definition for both.

Inputs are the net P&L of each closed trade and an equity curve (points in time with the
account's equity and gross exposure). Daily statistics use the last equity point of each IST
day. Conventions (state them, since every tool differs):

* returns are simple daily returns of equity; Sharpe = mean / sample stdev x sqrt(252), Sortino
  = mean / downside deviation x sqrt(252), downside deviation = sqrt(mean(min(r, 0)^2)) over all
  days; the risk-free rate is an argument (annual, default 0);
* CAGR = (final / initial) ^ (365.25 / calendar days) - 1, None under one day of history;
* drawdown is measured on **every recorded point** (intraday marks included), from a running
  peak that starts at the initial equity: the same definition for the report's figure, its
  underwater chart, the portfolio's `/performance`, its drawdown gauges on `/metrics` and the
  equity curve's `drawdown` column (`running_drawdown`). Max drawdown is the largest such fall
  as a fraction of the peak; its duration is the calendar days from that peak until equity
  regained it (or until the last point, if it has not); `longest_drawdown_days` is the longest
  time spent under any peak;
* exposure is the fraction of days that ended with any open position, and the average gross
  exposure as a fraction of equity;
* a trade with net P&L > 0 is a win; = 0 or less is a loss (the seed's rule).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import pairwise
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from dalal_shared.axes import format_inr, nice_ticks, tick_decimals
from dalal_shared.timeutil import to_ist

TRADING_DAYS_PER_YEAR = 252


class EquityPoint(NamedTuple):
    """Equity (and gross exposure) at a moment; a backtest makes one per bar, so it is a
    light immutable tuple."""

    at: datetime
    equity: Decimal
    gross_exposure: Decimal = Decimal("0")


@dataclass(frozen=True, slots=True)
class Report:
    """A backtest's or an account's figures: trades, wins and losses, P&L, return, risk."""

    trades: int
    wins: int
    losses: int
    win_rate: float | None
    average_win_rupees: Decimal | None
    average_loss_rupees: Decimal | None
    profit_factor: float | None  # gross wins / |gross losses|; None without losses
    expectancy_rupees: Decimal | None  # mean net P&L per trade
    total_pnl_rupees: Decimal
    initial_equity_rupees: Decimal
    final_equity_rupees: Decimal
    total_return: float | None
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float
    max_drawdown_rupees: Decimal
    max_drawdown_duration_days: int
    longest_drawdown_days: int
    exposure_days_fraction: float | None
    average_gross_exposure: float | None
    days: int

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}


_IST_OFFSET_SECONDS = 19_800  # IST is UTC+05:30 all year (no daylight saving)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_AT = attrgetter("at")


def daily_curve(points: Sequence[EquityPoint]) -> list[tuple[date, EquityPoint]]:
    """The last point of each IST day, in date order."""
    days, last_points = _daily(points)
    return [(_date(day), p) for day, p in zip(days, last_points, strict=True)]


def _daily(points: Sequence[EquityPoint]) -> tuple[list[int], list[EquityPoint]]:
    """`daily_curve` with IST days as day numbers from the epoch (no date object per day)."""
    days: list[int] = []
    last_points: list[EquityPoint] = []
    previous = None
    for point in sorted(points, key=_AT):
        day = _day_number(point.at)
        if day == previous:
            last_points[-1] = point
        else:
            days.append(day)
            last_points.append(point)
            previous = day
    return days, last_points


def _day_number(at: datetime) -> int:
    """The IST day of an aware time, as days since 1970-01-01 (a naive time raises)."""
    if at.tzinfo is None:
        to_ist(at)  # raises: a naive time has no day
    return int((at.timestamp() + _IST_OFFSET_SECONDS) // 86_400)


def _date(day: int) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + day)


def _returns(values: Sequence[float]) -> list[float]:
    return [cur / prev - 1.0 for prev, cur in pairwise(values) if prev > 0]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _excess(returns: Sequence[float], risk_free_annual: float) -> Sequence[float]:
    if not risk_free_annual:
        return returns
    daily = risk_free_annual / TRADING_DAYS_PER_YEAR
    return [r - daily for r in returns]


def sharpe(returns: Sequence[float], risk_free_annual: float = 0.0) -> float | None:
    if len(returns) < 2:
        return None
    excess = _excess(returns, risk_free_annual)
    mu = _mean(excess)
    var = sum([(r - mu) * (r - mu) for r in excess]) / (len(excess) - 1)
    if var <= 0:
        return None
    return mu / math.sqrt(var) * math.sqrt(TRADING_DAYS_PER_YEAR)


def sortino(returns: Sequence[float], risk_free_annual: float = 0.0) -> float | None:
    if len(returns) < 2:
        return None
    excess = _excess(returns, risk_free_annual)
    downside = math.sqrt(sum([r * r for r in excess if r < 0.0]) / len(excess))
    if downside == 0:
        return None
    return _mean(excess) / downside * math.sqrt(TRADING_DAYS_PER_YEAR)


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The deepest fall of an equity curve from a peak, and how long the curve stayed under it."""

    fraction: float
    rupees: Decimal
    peak_day: date | None
    trough_day: date | None
    duration_days: int
    longest_days: int


def drawdown(curve: Sequence[tuple[date, EquityPoint]]) -> Drawdown:
    days = [d.toordinal() - _EPOCH_ORDINAL for d, _ in curve]
    points = [p for _, p in curve]
    return _drawdown(days, [float(p.equity) for p in points], lambda i: points[i].equity)


def _drawdown(
    days: Sequence[int], values: Sequence[float], exact: Callable[[int], Decimal]
) -> Drawdown:
    """One pass in floats finds the deepest fall; its size in rupees is then exact (`exact(i)`
    is the Decimal equity of point i)."""
    if not values:
        return Drawdown(0.0, Decimal("0"), None, None, 0, 0)
    peak, peak_i = values[0], 0
    worst, worst_peak_i, worst_trough_i = 0.0, -1, -1
    longest = 0
    for i, value in enumerate(values):
        if value >= peak:
            longest = max(longest, days[i] - days[peak_i])
            peak, peak_i = value, i
            continue
        fall = (peak - value) / peak if peak > 0 else 0.0
        if fall > worst:
            worst, worst_peak_i, worst_trough_i = fall, peak_i, i
    last_day = days[-1]
    if values[-1] < peak:
        longest = max(longest, last_day - days[peak_i])
    if worst_peak_i < 0:
        return Drawdown(0.0, Decimal("0"), None, None, 0, longest)
    peak_equity = exact(worst_peak_i)
    rupees = peak_equity - exact(worst_trough_i)
    peak_value = values[worst_peak_i]
    recovered = next(
        (days[i] for i in range(worst_trough_i + 1, len(values)) if values[i] >= peak_value),
        None,
    )
    return Drawdown(
        float(rupees / peak_equity),
        rupees,
        _date(days[worst_peak_i]),
        _date(days[worst_trough_i]),
        (recovered if recovered is not None else last_day) - days[worst_peak_i],
        longest,
    )


def running_drawdown(
    equity: Sequence[Decimal], initial_equity: Decimal | None = None
) -> list[Decimal]:
    """Each point's fall below the running peak (which starts at `initial_equity` when given),
    as a fraction of that peak: the drawdown column of the equity curve."""
    out: list[Decimal] = []
    peak = initial_equity
    for value in equity:
        peak = value if peak is None or value > peak else peak
        out.append((peak - value) / peak if peak > 0 else Decimal("0"))
    return out


def _with_start(
    days: list[int], values: list[float], exact: Callable[[int], Decimal], initial: Decimal | None
) -> tuple[list[int], list[float], Callable[[int], Decimal]]:
    """The points with the initial equity before the first, as the first peak."""
    if initial is None or not days:
        return days, values, exact
    return (
        [days[0], *days],
        [float(initial), *values],
        lambda i: initial if i == 0 else exact(i - 1),
    )


def compute(
    trade_pnls: Sequence[Decimal],
    equity: Sequence[EquityPoint],
    *,
    initial_equity: Decimal | None = None,
    risk_free_annual: float = 0.0,
) -> Report:
    """Every statistic of the module docstring, from closed-trade P&Ls and an equity curve."""
    ordered = sorted(equity, key=_AT)
    all_days = [_day_number(p.at) for p in ordered]
    dd = _drawdown(
        *_with_start(
            all_days, [float(p.equity) for p in ordered], lambda i: ordered[i].equity,
            initial_equity,
        )
    )  # fmt: skip
    days, points = _daily(ordered)
    return _report(
        trade_pnls,
        days,
        [float(p.equity) for p in points],  # once, for returns and exposure
        [float(p.gross_exposure) for p in points],
        lambda i: points[i].equity,
        initial_equity,
        risk_free_annual,
        dd,
    )


def compute_paise(
    trade_pnls: Sequence[Decimal],
    days: NDArray[np.int64],
    equity_paise: NDArray[np.int64],
    exposure_paise: NDArray[np.int64],
    *,
    initial_equity: Decimal | None = None,
    risk_free_annual: float = 0.0,
) -> Report:
    """`compute` for a curve held as arrays (a backtest's form): equity and gross exposure in
    whole paise at each point, in time order, with its IST day as days since 1970-01-01. The
    same statistics as `compute` over the same points."""
    if len(days):
        last = np.flatnonzero(np.append(days[1:] != days[:-1], True))  # each day's last point
    else:
        last = np.zeros(0, dtype=np.int64)
    equity_day = equity_paise[last]
    dd = _drawdown(
        *_with_start(
            days.tolist(),
            (equity_paise / 100).tolist(),
            lambda i: Decimal(int(equity_paise[i])).scaleb(-2),
            initial_equity,
        )
    )
    return _report(
        trade_pnls,
        days[last].tolist(),
        (equity_day / 100).tolist(),
        (exposure_paise[last] / 100).tolist(),
        lambda i: Decimal(int(equity_day[i])).scaleb(-2),
        initial_equity,
        risk_free_annual,
        dd,
    )


def _report(
    trade_pnls: Sequence[Decimal],
    days: Sequence[int],
    values: Sequence[float],
    exposures: Sequence[float],
    exact: Callable[[int], Decimal],
    initial_equity: Decimal | None,
    risk_free_annual: float,
    dd: Drawdown,
) -> Report:
    """The report from the daily curve: day numbers, equity and exposure as floats, and the
    exact equity of a point (`exact(i)`) where rupees are reported; `dd` from every point."""
    wins = [p for p in trade_pnls if p > 0]
    losses = [p for p in trade_pnls if p <= 0]
    n = len(trade_pnls)
    gross_win = sum(wins, Decimal("0"))
    gross_loss = sum(losses, Decimal("0"))
    first = exact(0) if values else (initial_equity or Decimal("0"))
    start = initial_equity if initial_equity is not None else first
    final = exact(len(values) - 1) if values else start
    returns = _returns(values)
    cagr = None
    if len(values) >= 2 and start > 0 and final > 0:
        span = days[-1] - days[0]
        if span >= 1:
            cagr = (float(final / start)) ** (365.25 / span) - 1.0
    exposure_days = None
    avg_exposure = None
    if values:
        exposure_days = sum([1 for e in exposures if e > 0]) / len(values)
        ratios = [e / v for e, v in zip(exposures, values, strict=True) if v > 0]
        avg_exposure = _mean(ratios) if ratios else None
    return Report(
        trades=n,
        wins=len(wins),
        losses=len(losses),
        win_rate=len(wins) / n if n else None,
        average_win_rupees=_q(gross_win / len(wins)) if wins else None,
        average_loss_rupees=_q(gross_loss / len(losses)) if losses else None,
        profit_factor=float(gross_win / -gross_loss) if gross_loss < 0 else None,
        expectancy_rupees=_q((gross_win + gross_loss) / n) if n else None,
        total_pnl_rupees=_q(gross_win + gross_loss),
        initial_equity_rupees=_q(start),
        final_equity_rupees=_q(final),
        total_return=float(final / start) - 1.0 if start > 0 else None,
        cagr=cagr,
        sharpe=sharpe(returns, risk_free_annual),
        sortino=sortino(returns, risk_free_annual),
        max_drawdown=dd.fraction,
        max_drawdown_rupees=_q(dd.rupees),
        max_drawdown_duration_days=dd.duration_days,
        longest_drawdown_days=dd.longest_days,
        exposure_days_fraction=exposure_days,
        average_gross_exposure=avg_exposure,
        days=len(values),
    )


def _q(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


# ---------------------------------------------------------------- equity curve output


def curve_json(
    points: Sequence[EquityPoint], initial_equity: Decimal | None = None
) -> list[dict[str, str]]:
    """The equity curve with its running drawdown (`running_drawdown`), one entry per point."""
    out = []
    ordered = sorted(points, key=lambda p: p.at)
    falls = running_drawdown([p.equity for p in ordered], initial_equity)
    for p, dd in zip(ordered, falls, strict=True):
        out.append(
            {
                "at": to_ist(p.at).isoformat(),  # IST at the edges
                "equity": str(p.equity),
                "gross_exposure": str(p.gross_exposure),
                "drawdown": str(dd.quantize(Decimal("0.000001"))),
            }
        )
    return out


def curve_html(
    points: Sequence[EquityPoint],
    *,
    title: str = "Equity curve",
    initial_equity: Decimal | None = None,
) -> str:
    """A self-contained HTML page with the equity curve as inline SVG (no scripts, no CDN):
    a rupee axis with round values and gridlines, a time axis with IST dates."""
    pts = sorted(points, key=lambda p: p.at)
    width, height = 900, 380
    left, right, top, bottom = 90, 20, 30, 50
    body: str
    if len(pts) < 2:
        body = "<p>Not enough equity points to draw a curve yet.</p>"
    else:
        t0, t1 = pts[0].at.timestamp(), pts[-1].at.timestamp()
        lo = float(min(p.equity for p in pts))
        hi = float(max(p.equity for p in pts))
        ticks_v = nice_ticks(lo, hi)
        decimals = tick_decimals(ticks_v)
        lo, hi = min(lo, ticks_v[0]), max(hi, ticks_v[-1])
        span_t = (t1 - t0) or 1.0
        span_v = (hi - lo) or 1.0
        plot_w, plot_h = width - left - right, height - top - bottom

        def x_of(ts: float) -> float:
            return left + (ts - t0) / span_t * plot_w

        def y_of(value: float) -> float:
            return top + plot_h - (value - lo) / span_v * plot_h

        line = " ".join(f"{x_of(p.at.timestamp()):.1f},{y_of(float(p.equity)):.1f}" for p in pts)
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="{html.escape(title)}" font-family="sans-serif">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
        ]
        for value in ticks_v:  # the rupee axis: gridlines and labels
            y = y_of(value)
            parts.append(
                f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#e5e5e5"/>'
                f'<text class="y-tick" x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
                f'text-anchor="end">{format_inr(value, decimals)}</text>'
            )
        days = 5
        for i in range(days):  # the time axis: evenly spaced IST dates
            ts = t0 + span_t * i / (days - 1)
            label = to_ist(datetime.fromtimestamp(ts, tz=UTC))
            fmt = "%d %b %H:%M" if span_t < 3 * 86400 else "%d %b %Y"
            anchor = "start" if i == 0 else "end" if i == days - 1 else "middle"
            parts.append(
                f'<text class="x-tick" x="{x_of(ts):.1f}" y="{height - bottom + 18}" '
                f'font-size="11" text-anchor="{anchor}">{label:{fmt}}</text>'
            )
        parts += [
            f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" '
            'stroke="#333"/>',
            f'<line class="axis" x1="{left}" x2="{width - right}" y1="{height - bottom}" '
            f'y2="{height - bottom}" stroke="#333"/>',
            f'<text x="14" y="{top + plot_h / 2:.0f}" font-size="12" '
            f'transform="rotate(-90 14 {top + plot_h / 2:.0f})" text-anchor="middle">'
            "Equity (₹)</text>",
            f'<text x="{left + plot_w / 2:.0f}" y="{height - 8}" font-size="12" '
            'text-anchor="middle">Time (IST)</text>',
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{line}"/>',
            "</svg>",
        ]
        body = "".join(parts)
    data = json.dumps(curve_json(pts, initial_equity)).replace("</", "<\\/")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}"
        f"<script type='application/json' id='equity-data'>{data}</script></body></html>"
    )
