"""Inline SVG charts for the backtest report: scales, ticks (rupees in Indian grouping, dates in
IST), grid and axes, lines, filled areas, trade markers and downsampling. Pure functions that
return SVG text; no I/O and no scripts. Every string that reaches the SVG is escaped, so each
chart is well-formed XML."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dalal_shared import axes
from dalal_shared.axes import MINUS, nice_ticks, tick_decimals
from dalal_shared.slots import slot_init
from dalal_shared.timeutil import IST

MAX_POINTS = 1500  # per polyline: a multi-year minute-bar curve stays a small page

GRID = "#e5e7eb"
AXIS_TEXT = "#6b7280"
ENTRY_COLOUR = "#16a34a"
EXIT_COLOUR = "#dc2626"
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"

__all__ = ["MINUS", "format_inr", "nice_ticks", "tick_decimals"]  # used by the report

_HOUR = 3600
_DAY = 86_400
_MONTH = 30.44 * _DAY


# ---------------------------------------------------------------- numbers


def format_inr(value: float, decimals: int = 0) -> str:
    """`dalal_shared.axes.format_inr` (Indian digit grouping, a typographic minus), the same
    text (a test holds the two equal), about 3x faster on what a report formats thousands
    of: floats with at most five digits before the point, where the grouping is one comma or
    none. Anything else (lakhs and more, a Decimal, an int) goes to the shared function."""
    if type(value) is not float:
        return axes.format_inr(value, decimals)
    text = f"{abs(value):.{decimals}f}"
    whole, dot, fraction = text.partition(".")
    if len(whole) > 5:
        return axes.format_inr(value, decimals)
    if len(whole) > 3:
        whole = f"{whole[:-3]},{whole[-3:]}"
    if value < 0 and float(text) != 0:
        return f"{MINUS}{whole}{dot}{fraction}"
    return f"{whole}{dot}{fraction}"


# ---------------------------------------------------------------- geometry


@dataclass(frozen=True, slots=True)
class Box:
    """The plotting area of a panel, in SVG pixels."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height


@dataclass(frozen=True, slots=True)
class Scale:
    """A linear map from data values [lo, hi] to pixels [start, end]."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        return self.start + (value - self.lo) / self._span * (self.end - self.start)

    def map(self, values: ArrayLike) -> NDArray[np.float64]:
        data = np.asarray(values, dtype=np.float64)
        return self.start + (data - self.lo) / self._span * (self.end - self.start)

    @property
    def _span(self) -> float:
        return (self.hi - self.lo) or 1.0


@slot_init  # a marker per fill: thousands in a report
@dataclass(frozen=True, slots=True)
class Marker:
    """A trade fill on a price chart: an entry (up-triangle) or an exit (down-triangle)."""

    at_seconds: float
    price: float
    kind: Literal["entry", "exit"]
    label: str


# ---------------------------------------------------------------- numbers and ticks


_HOUR_STEPS = (1, 2, 3, 6, 12)
_DAY_STEPS = (1, 2, 7)
_MONTH_STEPS = (1, 2, 3, 6, 12, 24, 60, 120)


def time_ticks(t0: float, t1: float, max_ticks: int = 8) -> list[tuple[float, str]]:
    """Round IST times between epoch seconds `t0` and `t1` with labels: hours for a day or two,
    days for a few weeks, else months ("Mar 2021") or years ("2023"); at most `max_ticks`."""
    span = max(t1 - t0, 1.0)
    for unit, steps, seconds in (
        ("hour", _HOUR_STEPS, _HOUR),
        ("day", _DAY_STEPS, _DAY),
        ("month", _MONTH_STEPS, _MONTH),
    ):
        for step in steps:
            if span / (step * seconds) <= max_ticks - 1:
                ticks = _calendar_ticks(t0, t1, unit, step)
                if len(ticks) <= max_ticks:
                    return ticks
    return []


def _calendar_ticks(t0: float, t1: float, unit: str, step: int) -> list[tuple[float, str]]:
    first = datetime.fromtimestamp(t0, IST)
    if unit == "hour":
        at = first.replace(minute=0, second=0, microsecond=0, hour=first.hour - first.hour % step)
        advance: Callable[[datetime], datetime] = lambda d: d + timedelta(hours=step)  # noqa: E731
        label = "%H:%M"
    elif unit == "day":
        at = first.replace(hour=0, minute=0, second=0, microsecond=0)
        advance = lambda d: d + timedelta(days=step)  # noqa: E731
        label = "%d %b"
    else:
        months = first.year * 12 + first.month - 1
        months -= months % step
        at = first.replace(year=months // 12, month=months % 12 + 1, day=1, hour=0, minute=0)
        at = at.replace(second=0, microsecond=0)
        advance = lambda d: _add_months(d, step)  # noqa: E731
        label = "%Y" if step >= 12 else "%b %Y"
    ticks = []
    while at.timestamp() <= t1:
        if at.timestamp() >= t0:
            ticks.append((at.timestamp(), at.strftime(label)))
        at = advance(at)
    return ticks


def _add_months(at: datetime, months: int) -> datetime:
    index = at.year * 12 + at.month - 1 + months
    return at.replace(year=index // 12, month=index % 12 + 1)


# ---------------------------------------------------------------- downsampling


def downsample(values: ArrayLike, max_points: int = MAX_POINTS) -> NDArray[np.intp]:
    """Indices of at most `max_points` points that keep a series' shape: the first and last
    point and, in each of (max_points - 2) / 2 runs of consecutive points, its lowest and
    highest (so the global minimum and maximum survive)."""
    if max_points < 4:
        raise ValueError("downsampling keeps at least 4 points")
    data = np.asarray(values, dtype=np.float64)
    n = len(data)
    if n <= max_points:
        return np.arange(n, dtype=np.intp)
    edges = np.linspace(1, n - 1, (max_points - 2) // 2 + 1).astype(np.intp)
    los, his = edges[:-1], edges[1:]
    runs = his > los
    los, his = los[runs], his[runs]
    if np.isnan(data[1 : n - 1]).any():  # argmin and argmax pick NaNs: run by run
        keep = [0, n - 1]
        for lo, hi in zip(los.tolist(), his.tolist(), strict=True):
            run = data[lo:hi]
            keep.extend((lo + int(run.argmin()), lo + int(run.argmax())))
        picked = np.asarray(keep, dtype=np.intp)
    else:  # all runs at once: the first lowest and first highest point of each
        picked = np.concatenate(
            (
                [0, n - 1],
                _first_where(data, los, his, np.minimum),
                _first_where(data, los, his, np.maximum),
            )
        ).astype(np.intp)
    out = np.sort(picked)  # np.unique, without importing numpy.ma
    return out[np.append(True, out[1:] != out[:-1])]


def _first_where(
    data: NDArray[np.float64],
    los: NDArray[np.intp],
    his: NDArray[np.intp],
    extreme: np.ufunc,
) -> NDArray[np.intp]:
    """For each run data[lo:hi] (consecutive, non-empty), the index of its first value equal
    to the run's `extreme` (np.minimum or np.maximum): argmin / argmax of every run at once."""
    span = data[los[0] : his[-1]]
    starts = los - los[0]
    best = extreme.reduceat(span, starts)
    run_of = np.repeat(np.arange(len(los)), his - los)
    hits = np.flatnonzero(span == best[run_of])
    first = hits[np.append(True, run_of[hits][1:] != run_of[hits][:-1])]
    out: NDArray[np.intp] = first + los[0]
    return out


# ---------------------------------------------------------------- SVG pieces


def svg(width: int, height: int, body: str, label: str, css_class: str = "chart") -> str:
    """A standalone `<svg>` element (scales down to its container's width)."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(css_class)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}" font-family="{escape(FONT)}" font-size="11">'
        f"<title>{escape(label)}</title>{body}</svg>"
    )


def y_axis(box: Box, scale: Scale, ticks: Sequence[float], labels: Sequence[str]) -> str:
    """Horizontal grid lines at each tick with its label left of the plot."""
    parts = []
    for tick, label in zip(ticks, labels, strict=True):
        y = scale(tick)
        parts.append(
            f'<line x1="{box.left:.1f}" y1="{y:.1f}" x2="{box.right:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{box.left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" '
            f'fill="{AXIS_TEXT}">{escape(label)}</text>'
        )
    return "".join(parts)


def x_axis(
    box: Box, scale: Scale, ticks: Sequence[tuple[float, str]], *, labels: bool = True
) -> str:
    """Vertical grid lines at each time tick, the baseline, and (optionally) labels below."""
    parts = [
        f'<line x1="{box.left:.1f}" y1="{box.bottom:.1f}" x2="{box.right:.1f}" '
        f'y2="{box.bottom:.1f}" stroke="#9ca3af" stroke-width="1"/>'
    ]
    for at, text in ticks:
        x = scale(at)
        parts.append(
            f'<line x1="{x:.1f}" y1="{box.top:.1f}" x2="{x:.1f}" y2="{box.bottom:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        if labels:
            parts.append(
                f'<text x="{x:.1f}" y="{box.bottom + 15:.1f}" text-anchor="middle" '
                f'fill="{AXIS_TEXT}">{escape(text)}</text>'
            )
    return "".join(parts)


def _points(xs: NDArray[np.float64], ys: NDArray[np.float64]) -> str:
    """SVG points "x,y x,y ...", one decimal each. One %-format over the interleaved floats:
    the text of formatting each pair (`%.1f` is `format(v, ".1f")`), without a Python-level
    step per point (a report draws some 20,000)."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values for {len(ys)} y values")
    flat = np.column_stack((xs, ys)).ravel().tolist()
    return " ".join(["%.1f,%.1f"] * len(xs)) % tuple(flat)


def polyline(xs: ArrayLike, ys: ArrayLike, colour: str, width: float = 1.5) -> str:
    """A line through pixel coordinates."""
    points = _points(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64))
    return (
        f'<polyline fill="none" stroke="{escape(colour)}" stroke-width="{width}" '
        f'stroke-linejoin="round" points="{points}"/>'
    )


def area(xs: ArrayLike, ys: ArrayLike, baseline: float, colour: str) -> str:
    """The region between a line through pixel coordinates and the horizontal `baseline`,
    filled translucent, with the line drawn on top."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if not len(x):
        return ""
    outline = np.concatenate(([x[0]], x, [x[-1]])), np.concatenate(([baseline], y, [baseline]))
    return (
        f'<polygon fill="{escape(colour)}" fill-opacity="0.25" stroke="none" '
        f'points="{_points(*outline)}"/>' + polyline(x, y, colour, 1.2)
    )


def markers(items: Sequence[Marker], x: Scale, y: Scale, size: float = 4.5) -> str:
    """Entries as green up-triangles and exits as red down-triangles centred on (time, price),
    each with a hover title. The corners of all at once (the same float arithmetic as one by
    one), written with one %-format: a report draws a marker per fill, thousands."""
    if not items:
        return ""
    cx = x.map([item.at_seconds for item in items])
    cy = y.map([item.price for item in items])
    entry = [item.kind == "entry" for item in items]
    tip = np.where(entry, -size, size)
    apex, base = cy + tip, cy - tip * 0.8
    columns = (
        [item.kind for item in items],
        cx.tolist(),
        apex.tolist(),
        (cx + size).tolist(),
        base.tolist(),
        (cx - size).tolist(),
        base.tolist(),
        [ENTRY_COLOUR if e else EXIT_COLOUR for e in entry],
        [html_text(item.label) for item in items],
    )
    values = [value for row in zip(*columns, strict=True) for value in row]
    return (_MARKER * len(items)) % tuple(values)


_MARKER = (
    '<path class="%s" d="M%.1f,%.1f L%.1f,%.1f L%.1f,%.1f Z" fill="%s" stroke="white" '
    'stroke-width="0.8"><title>%s</title></path>'
)
_SPECIAL = re.compile("[&<>\"']")


def html_text(text: str) -> str:
    """`html.escape(text)`, skipped for the many texts (figures, dates) with nothing to
    escape."""
    return escape(text) if _SPECIAL.search(text) else text


# ---------------------------------------------------------------- a time-series panel


@dataclass(frozen=True, slots=True)
class Series:
    """Values at epoch seconds, in time order."""

    seconds: NDArray[np.float64]
    values: NDArray[np.float64]


def time_panel(
    box: Box,
    series: Series,
    *,
    x_domain: tuple[float, float],
    y_labels: Callable[[Sequence[float]], list[str]],
    colour: str,
    line_width: float = 1.5,
    fill_to: float | None = None,
    x_labels: bool = True,
    max_x_ticks: int = 8,
    points_on: Sequence[Marker] = (),
    max_points: int = MAX_POINTS,
) -> str:
    """One panel: grid, y ticks (labelled by `y_labels`), IST date ticks, the series as a line
    (or, with `fill_to`, an area down to that value), and trade markers. The y axis covers the
    series, `fill_to` and the markers; the x axis is `x_domain` (epoch seconds)."""
    values = series.values
    y_range = [m.price for m in points_on] + ([] if fill_to is None else [fill_to])
    if len(values):
        y_range += [float(values.min()), float(values.max())]
    ticks = nice_ticks(
        min(y_range, default=0.0), max(y_range, default=1.0), count=int(box.height // 40)
    )
    y = Scale(ticks[0], ticks[-1], box.bottom, box.top)
    x = Scale(x_domain[0], x_domain[1], box.left, box.right)
    keep = downsample(values, max_points) if len(values) else np.zeros(0, dtype=np.intp)
    xs, ys = x.map(series.seconds[keep]), y.map(values[keep])
    drawn = (
        area(xs, ys, y(fill_to), colour)
        if fill_to is not None
        else polyline(xs, ys, colour, line_width)
    )
    return (
        y_axis(box, y, ticks, y_labels(ticks))
        + x_axis(box, x, time_ticks(*x_domain, max_ticks=max_x_ticks), labels=x_labels)
        + drawn
        + markers(points_on, x, y)
    )


def rupee_labels(ticks: Sequence[float]) -> list[str]:
    """Tick labels for rupee amounts in Indian grouping, with as many decimals as they need."""
    decimals = tick_decimals(ticks)
    return [format_inr(t, decimals) for t in ticks]


def percent_labels(ticks: Sequence[float]) -> list[str]:
    """Tick labels for fractions shown as percent (0.05 -> "5%")."""
    percents = [round(t * 100, 8) for t in ticks]
    decimals = tick_decimals(percents)
    return [format_inr(p, decimals) + "%" for p in percents]
