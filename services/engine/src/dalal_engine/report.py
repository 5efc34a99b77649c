"""A backtest's report on disk: `result.json` (everything) and `report.html`, one self-contained
page (inline CSS and SVG, no scripts): the key figures, the equity curve over its drawdown, one
price chart per symbol with the trades marked (when the bars are given), monthly returns, the
statistics and the trades. Rupees show in Indian digit grouping, times in IST."""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dalal_engine.backtest import (
    BacktestResult,
    BacktestSettings,
    EquityCurve,
    FillRecord,
    Trade,
)
from dalal_engine.charts import (
    ENTRY_COLOUR,
    EXIT_COLOUR,
    MINUS,
    Box,
    Marker,
    Series,
    format_inr,
    html_text,
    percent_labels,
    rupee_labels,
    svg,
    time_panel,
)
from dalal_engine.risk import RiskDecision
from dalal_engine.strategy import BarSeries
from dalal_shared.money import paise as to_paisa
from dalal_shared.performance import Report
from dalal_shared.timeutil import IST, isoformat, to_ist

MAX_SYMBOL_CHARTS = 12
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
EQUITY_COLOUR = "#2563eb"
DRAWDOWN_COLOUR = "#dc2626"
PRICE_COLOUR = "#475569"
NONE = "\N{EN DASH}"  # a figure that does not exist (no trades, no losses)
_FRACTION_STATS = {
    "win_rate",
    "total_return",
    "cagr",
    "max_drawdown",
    "exposure_days_fraction",
    "average_gross_exposure",
}


def write_report(
    result: BacktestResult, out_dir: Path, *, bars: Mapping[str, BarSeries] | None = None
) -> tuple[Path, Path]:
    """Write `result.json` and `report.html` under `out_dir`; with `bars` (the run's input) the
    page also draws each symbol's price with its trades."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "result.json"
    json_path.write_text(result_json_text(result))
    html_path = out_dir / "report.html"
    html_path.write_text(report_page(result, bars))
    return json_path, html_path


def result_json_text(result: BacktestResult) -> str:
    """`result.json`: the result's JSON (`to_json`) and its equity curve (`equity_curve_json`),
    compact, as `json.dumps` with `(",", ":")` writes them. Written as text: the encoder for
    the head (an `indent` sends json to its pure-Python encoder, 5-10x slower; `jq .` or
    `python -m json.tool` pretty-prints), the trades, fills and decisions (thousands) each in
    one format, their texts through the encoder's own string function (`_json_str`; figures
    and times are digits, `-`, `.`, `:`, `T`, `+` and `E`: nothing to escape), the curve's
    points straight from its arrays."""
    head = json.dumps(result.json_head(), separators=(",", ":"))
    assert head.endswith("}") and head != "{}"
    unfilled = json.dumps(result.unfilled_json(), separators=(",", ":"))
    return (
        f'{head[:-1]},"trades":{_trades_json(result.trades)}'
        f',"open_trades":{_trades_json(result.open_trades)}'
        f',"fills":{_fills_json(result.fills)},"unfilled":{unfilled}'
        f',"decisions":{_decisions_json(result.decisions)}'
        f',"equity_curve":{equity_curve_text(result.curve)}}}'
    )


_json_str = json.encoder.encode_basestring_ascii  # what `json.dumps` writes for a str


_FILL = (
    '{"client_order_id":%s,"symbol":%s,"side":%s,"quantity":%s,"price":"%s","at":"%s",'
    '"leg":%s,"reason":%s,"charges":"%s"}'
)


def _fills_json(fills: Sequence[FillRecord]) -> str:
    """`[f.to_json() for f in fills]` as `json.dumps` writes it."""
    return _json_list([
        _FILL % (
            _json_str(f.client_order_id), _json_str(f.symbol), _json_str(f.side),
            f.quantity, f.price, isoformat(f.at), _json_str(f.leg), _json_str(f.reason),
            f.charges,
        )
        for f in fills
    ])  # fmt: skip


def _json_list(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


_DECISION = (
    '{"at":"%s","strategy":%s,"symbol":%s,"action":%s,"approved":%s,"reason":%s,'
    '"quantity":%s,"detail":%s}'
)


def _decisions_json(decisions: Sequence[RiskDecision]) -> str:
    """`[d.to_json() for d in decisions]` as `json.dumps` writes it."""
    return _json_list([
        _DECISION % (
            isoformat(d.at), _json_str(d.strategy), _json_str(d.symbol), _json_str(d.action),
            "true" if d.approved else "false", _json_str(d.reason), d.quantity,
            _json_str(d.detail),
        )
        for d in decisions
    ])  # fmt: skip


_TRADE = (
    '{"symbol":%s,"opened_at":"%s","closed_at":%s,"quantity":%s,"entry_price":"%s",'
    '"exits":[%s],"gross_pnl":"%s","charges":"%s","net_pnl":"%s"}'
)
_EXIT = '{"at":"%s","quantity":%s,"price":"%s","leg":%s,"reason":%s}'


def _trades_json(trades: Sequence[Trade]) -> str:
    """`[t.to_json() for t in trades]` as `json.dumps` writes it."""
    return _json_list([
        _TRADE % (
            _json_str(t.symbol), isoformat(t.opened_at),
            f'"{isoformat(t.closed_at)}"' if t.closed_at else "null", t.quantity,
            t.entry_price,
            ",".join([
                _EXIT % (isoformat(e.at), e.quantity, e.price, _json_str(e.leg),
                         _json_str(e.reason))
                for e in t.exits
            ]),
            to_paisa(t.gross_pnl), to_paisa(t.charges), to_paisa(t.net_pnl),
        )
        for t in trades
    ])  # fmt: skip


def equity_curve_json(curve: EquityCurve) -> list[dict[str, str]]:
    """`result.json`'s equity curve: each point's time (ISO 8601, UTC), equity and gross
    exposure (rupees, to the paisa), as `EquityPoint`s give them, straight from the curve's
    arrays."""
    return json.loads(equity_curve_text(curve))


_POINT = '{"at":"%s+00:00","equity":"%s%d.%02d","gross_exposure":"%s%d.%02d"}'
_INT64_MIN = np.iinfo(np.int64).min


def equity_curve_text(curve: EquityCurve) -> str:
    """`equity_curve_json` as compact JSON text (`json.dumps` with `(",", ":")`), every point
    in one format: the times formatted by numpy at once, each amount as its sign, whole
    rupees and paise (what `str(Decimal(paise).scaleb(-2))` writes: plain digits, two
    decimals, a minus sign below zero)."""
    n = len(curve)
    if n == 0:
        return "[]"
    times = np.datetime_as_string(curve.close_seconds.astype("datetime64[s]"), unit="s")
    columns: list[list[object]] = [times.tolist()]
    for paise in (curve.equity_paise, curve.exposure_paise):
        if (paise == _INT64_MIN).any():  # no absolute value in int64: Python's integers
            whole = paise.tolist()
            columns.append(["-" if p < 0 else "" for p in whole])
            columns.append([abs(p) // 100 for p in whole])
            columns.append([abs(p) % 100 for p in whole])
            continue
        size = np.abs(paise)
        columns.append(np.where(paise < 0, "-", "").tolist())
        columns.append((size // 100).tolist())
        columns.append((size % 100).tolist())
    values = [value for point in zip(*columns, strict=True) for value in point]
    return "[" + ",".join([_POINT] * n) % tuple(values) + "]"


def report_page(result: BacktestResult, bars: Mapping[str, BarSeries] | None = None) -> str:
    """The whole HTML page of a backtest."""
    top, bottom = page_frame(result, bars)
    return top + trades_sections(result) + bottom


def page_frame(
    result: BacktestResult, bars: Mapping[str, BarSeries] | None = None
) -> tuple[str, str]:
    """The page around its trades tables (`trades_sections`, which go between the two): its
    head, figures, charts and statistics; its closing tags. Built apart so that two processes
    can share the page's work (`dalal backtest`)."""
    title = f"Backtest {result.config.name} ({result.config.strategy})"
    curve = result.curve
    monthly = monthly_returns(
        curve.days, curve.equity_paise, int(result.settings.initial_capital_rupees * 100)
    )
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        _subtitle(result),
        _key_figures(result),
        "<h2>Equity and drawdown</h2>",
        _equity_chart(
            curve.close_seconds,
            curve.equity_paise,
            float(result.settings.initial_capital_rupees),
        ),
        _symbol_charts(result, bars) if bars else "",
        "<h2>Monthly returns</h2>",
        _monthly_table(monthly),
        "<h2>Statistics</h2>",
        _statistics_table(result.report),
    ]
    top = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{''.join(sections)}"
    )
    return top, "</main></body></html>"


def trades_sections(result: BacktestResult, rows: str | None = None) -> str:
    """The page's trades table, and the table of the trades open at the end (if any).
    `rows`: the trades table's rows (`trade_rows(result.trades)`), built elsewhere, in parts
    maybe."""
    sections = ["<h2>Trades</h2>", _trades_table(result.trades, False, rows)]
    if result.open_trades:
        sections += [
            "<h2>Open at the end</h2>",
            "<p class='note'>Net P&amp;L of an open trade is what its partial exits realised, "
            "less its charges so far.</p>",
            _trades_table(result.open_trades, True),
        ]
    return "".join(sections)


def trade_rows(trades: Sequence[Trade]) -> str:
    """The trades table's rows of closed `trades` (`trades_sections`' `rows`)."""
    return "".join([_trade_row(t, False) for t in trades])


# ---------------------------------------------------------------- monthly returns


def monthly_returns(
    days: NDArray[np.int64], equity_paise: NDArray[np.int64], initial_paise: int
) -> dict[tuple[int, int], float]:
    """(year, month) -> return of each IST calendar month that has equity points: the month's
    last equity over the last equity before it (the initial capital for the first month),
    minus one. `days` are IST days since 1970-01-01, in time order with `equity_paise`."""
    if not len(days):
        return {}
    months = np.asarray(days, dtype="datetime64[D]").astype("datetime64[M]").astype(np.int64)
    last = np.flatnonzero(np.append(months[1:] != months[:-1], True))
    closes = np.asarray(equity_paise, dtype=np.float64)[last]
    previous = np.concatenate(([float(initial_paise)], closes[:-1]))
    out: dict[tuple[int, int], float] = {}
    for month, close, before in zip(months[last].tolist(), closes, previous, strict=True):
        if before > 0:
            out[(1970 + month // 12, month % 12 + 1)] = float(close / before - 1.0)
    return out


def yearly_returns(monthly: Mapping[tuple[int, int], float]) -> dict[int, float]:
    """Each year's return compounded from its monthly returns."""
    growth: dict[int, float] = {}
    for (year, _month), value in sorted(monthly.items()):
        growth[year] = growth.get(year, 1.0) * (1.0 + value)
    return {year: g - 1.0 for year, g in growth.items()}


def _monthly_table(monthly: Mapping[tuple[int, int], float]) -> str:
    if not monthly:
        return "<p class='note'>No equity points, so no monthly returns.</p>"
    years = yearly_returns(monthly)
    head = "".join(f"<th>{m}</th>" for m in MONTHS) + "<th>Year</th>"
    rows = []
    for year in sorted(years):
        cells = "".join(
            _return_cell(monthly.get((year, month)), full_at=0.10) for month in range(1, 13)
        )
        rows.append(
            f"<tr><th>{year}</th>{cells}{_return_cell(years[year], full_at=0.30, css='year')}</tr>"
        )
    return f"<table class='monthly'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _return_cell(value: float | None, *, full_at: float, css: str = "") -> str:
    """A percent cell shaded green (gain) or red (loss), deeper as |value| nears `full_at`."""
    attribute = f" class='{css}'" if css else ""
    if value is None:
        return f"<td{attribute}></td>"
    strength = min(abs(value) / full_at, 1.0)
    rgb = "22,163,74" if value >= 0 else "220,38,38"
    style = f"background:rgba({rgb},{0.08 + 0.6 * strength:.2f})"
    return f"<td{attribute} style='{style}'>{html.escape(_signed_pct(value, 1))}</td>"


# ---------------------------------------------------------------- figures and formatting


def _rupees(value: Decimal | float | None, decimals: int = 0) -> str:
    """ "₹10,50,000"; a loss as "-₹1,234" (with a typographic minus sign)."""
    if value is None:
        return NONE
    amount = format_inr(float(value), decimals)
    sign = MINUS if amount.startswith(MINUS) else ""
    return f"{sign}₹{amount.removeprefix(MINUS)}"


def _pct(value: float | None, decimals: int = 2) -> str:
    return NONE if value is None else format_inr(value * 100, decimals) + "%"


def _signed_pct(value: float | None, decimals: int = 2) -> str:
    if value is None:
        return NONE
    return ("+" if value > 0 else "") + _pct(value, decimals)


def _ratio(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f}".replace("-", MINUS)


def _tone(value: float | Decimal | None) -> str:
    if value is None or value == 0:
        return ""
    return "gain" if value > 0 else "loss"


@lru_cache(maxsize=16384)
def _ist(at: datetime) -> str:
    """The time in IST as the report shows it (remembered: a trade's times show in its row and
    on its chart's markers, and strftime is slow: `%d %b %Y %H:%M` written out, months in
    English). Equal instants give the same text."""
    t = to_ist(at)
    return f"{t.day:02d} {MONTHS[t.month - 1]} {t.year} {t.hour:02d}:{t.minute:02d}"


@lru_cache(maxsize=16384)
def _ist_day(at: datetime) -> str:
    """`%d %b` of the IST day."""
    t = to_ist(at)
    return f"{t.day:02d} {MONTHS[t.month - 1]}"


def _subtitle(result: BacktestResult) -> str:
    cfg, s, curve = result.config, result.settings, result.curve
    symbols = ", ".join(cfg.universe) if len(cfg.universe) <= 8 else f"{len(cfg.universe)} symbols"
    if len(curve):
        first, last = (datetime.fromtimestamp(int(curve.close_seconds[i]), IST) for i in (0, -1))
        window = f"{first:%d %b %Y} to {last:%d %b %Y}"
    else:
        window = "no bars in the window"
    parts = [
        symbols,
        f"{cfg.interval} bars",
        window,
        f"capital {_rupees(s.initial_capital_rupees)}",
        f"{result.bars:,} bars run",
    ]
    return f"<p class='subtitle'>{html.escape(' · '.join(parts))}</p>"


def _key_figures(result: BacktestResult) -> str:
    report = result.report
    trades = f"{report.trades}"
    if result.open_trades:
        trades += f" (+{len(result.open_trades)} open)"
    figures = [
        ("Total return", _signed_pct(report.total_return), _tone(report.total_return)),
        ("CAGR", _signed_pct(report.cagr), _tone(report.cagr)),
        ("Sharpe", _ratio(report.sharpe), ""),
        ("Sortino", _ratio(report.sortino), ""),
        (
            "Max drawdown",
            f"{_pct(-report.max_drawdown)} · {_rupees(-report.max_drawdown_rupees)}",
            _tone(-report.max_drawdown),
        ),
        ("Trades", trades, ""),
        ("Win rate", _pct(report.win_rate, 1), ""),
        ("Profit factor", _ratio(report.profit_factor), ""),
        ("Charges paid", _rupees(result.charges.total), ""),
        ("Final equity", _rupees(report.final_equity_rupees), _tone(report.total_return)),
    ]
    cards = "".join(_figure(label, value, tone) for label, value, tone in figures)
    return f"<div class='figures'>{cards}</div>"


def _figure(label: str, value: str, tone: str) -> str:
    css = f"value {tone}".strip()
    return (
        f"<div class='figure'><div class='label'>{html.escape(label)}</div>"
        f"<div class='{css}'>{html.escape(value)}</div></div>"
    )


# ---------------------------------------------------------------- charts


def _equity_chart(
    close_seconds: NDArray[np.int64], equity_paise: NDArray[np.int64], initial: float
) -> str:
    """Equity (rupees) above its drawdown from the running peak (percent; the peak starts at
    the initial capital, as the report's max drawdown), one shared x axis."""
    if len(close_seconds) < 2:
        return "<p class='note'>Not enough equity points to draw a curve.</p>"
    seconds = close_seconds.astype(np.float64)
    equity = equity_paise.astype(np.float64) / 100
    drawdown = equity / np.maximum(np.maximum.accumulate(equity), initial) - 1.0
    domain = (float(seconds[0]), float(seconds[-1]))
    top = Box(left=84, top=24, width=860, height=280)
    bottom = Box(left=84, top=top.bottom + 34, width=860, height=120)
    body = (
        _panel_title(top, "Equity (₹)")
        + time_panel(
            top,
            Series(seconds, equity),
            x_domain=domain,
            y_labels=rupee_labels,
            colour=EQUITY_COLOUR,
            x_labels=False,
        )
        + _panel_title(bottom, "Drawdown from peak")
        + time_panel(
            bottom,
            Series(seconds, drawdown),
            x_domain=domain,
            y_labels=percent_labels,
            colour=DRAWDOWN_COLOUR,
            fill_to=0.0,
        )
    )
    return svg(960, int(bottom.bottom) + 26, body, "Equity curve and drawdown")


def _panel_title(box: Box, text: str) -> str:
    return (
        f'<text x="{box.left:.1f}" y="{box.top - 8:.1f}" font-weight="600" '
        f'fill="#374151">{html.escape(text)}</text>'
    )


def _symbol_charts(result: BacktestResult, bars: Mapping[str, BarSeries]) -> str:
    trades = [*result.trades, *result.open_trades]
    traded = {t.symbol for t in trades}
    order = sorted(bars, key=lambda s: s not in traded)  # traded symbols first, else input order
    shown, left_out = order[:MAX_SYMBOL_CHARTS], order[MAX_SYMBOL_CHARTS:]
    charts = "".join(
        _symbol_chart(
            symbol, bars[symbol], [t for t in trades if t.symbol == symbol], result.settings
        )
        for symbol in shown
    )
    note = ""
    if left_out:
        note = (
            f"<p class='note'>{len(left_out)} more symbol{'s' if len(left_out) > 1 else ''} "
            f"not drawn: {html.escape(', '.join(left_out))}</p>"
        )
    legend = (
        f"<p class='note'><span style='color:{ENTRY_COLOUR}'>▲</span> entry "
        f"<span style='color:{EXIT_COLOUR}'>▼</span> exit (each fill; hover for details)</p>"
    )
    return f"<h2>Prices and trades</h2>{legend}<div class='symbols'>{charts}</div>{note}"


def _symbol_chart(
    symbol: str, series: BarSeries, trades: Sequence[Trade], settings: BacktestSettings
) -> str:
    inside = _in_window(series.seconds, settings)
    seconds = series.seconds[inside].astype(np.float64)
    closes = series.close[inside].astype(np.float64)
    points = trade_markers(trades)
    times = [*seconds[:1].tolist(), *seconds[-1:].tolist(), *(m.at_seconds for m in points)]
    if not times:
        return f"<p class='note'>{html.escape(symbol)}: no bars in the backtest window.</p>"
    domain = (min(times), max(times))
    box = Box(left=64, top=24, width=390, height=180)
    body = _panel_title(box, f"{symbol} · {len(trades)} trade{'s' if len(trades) != 1 else ''}")
    body += time_panel(
        box,
        Series(seconds, closes),
        x_domain=domain,
        y_labels=rupee_labels,
        colour=PRICE_COLOUR,
        line_width=1.0,
        max_x_ticks=6,
        points_on=points,
    )
    return svg(470, int(box.bottom) + 26, body, f"{symbol} close price with trades", "symbol-chart")


def _in_window(seconds: NDArray[np.int64], settings: BacktestSettings) -> NDArray[np.bool_]:
    """Bars the backtest traded over: from `start` (earlier bars only warmed up) to before
    `end`."""
    inside = np.ones(len(seconds), dtype=bool)
    if settings.start is not None:
        inside &= seconds >= settings.start.timestamp()
    if settings.end is not None:
        inside &= seconds < settings.end.timestamp()
    return inside


def trade_markers(trades: Sequence[Trade]) -> list[Marker]:
    """One entry marker per trade and one exit marker per exit fill (partial exits too)."""
    out = []
    for trade in trades:
        out.append(
            Marker(
                trade.opened_at.timestamp(),
                float(trade.entry_price),
                "entry",
                f"Buy {trade.quantity} @ {_rupees(trade.entry_price, 2)} · {_ist(trade.opened_at)}",
            )
        )
        out.extend(
            Marker(
                fill.at.timestamp(),
                float(fill.price),
                "exit",
                f"{fill.leg} sell {fill.quantity} @ {_rupees(fill.price, 2)} ({fill.reason}) · "
                f"{_ist(fill.at)}",
            )
            for fill in trade.exits
        )
    return out


# ---------------------------------------------------------------- tables


def _statistics_table(report: Report) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(_stat_label(f.name))}</th>"
        f"<td class='num'>{html.escape(_stat_value(f.name, getattr(report, f.name)))}</td></tr>"
        for f in dataclasses.fields(report)
    )
    return f"<table class='stats'>{rows}</table>"


_STAT_WORDS = {"cagr": "CAGR", "pnl": "P&L"}


def _stat_label(name: str) -> str:
    """ "max_drawdown_rupees" -> "Max drawdown (₹)"."""
    words = [_STAT_WORDS.get(w, w) for w in name.removesuffix("_rupees").split("_")]
    label = " ".join(words)
    return label[:1].upper() + label[1:] + (" (₹)" if name.endswith("_rupees") else "")


def _stat_value(name: str, value: object) -> str:
    if value is None:
        return NONE
    if isinstance(value, Decimal):
        return format_inr(float(value), 2)
    if name in _FRACTION_STATS and isinstance(value, float):
        return _pct(value)
    if isinstance(value, float):
        return _ratio(value)
    return str(value)


_TRADE_COLUMNS = (
    "Symbol",
    "Opened (IST)",
    "Qty",
    "Entry ₹",
    "Exits",
    "Closed (IST)",
    "Charges ₹",
    "Net P&L ₹",
    "Return",
)


def _trades_table(trades: Sequence[Trade], open_trades: bool, rows: str | None = None) -> str:
    if not trades:
        return "<p class='note'>No trades.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _TRADE_COLUMNS)
    if rows is None:
        rows = "".join([_trade_row(t, open_trades) for t in trades])
    return f"<div class='scroll'><table class='trades'><tr>{head}</tr>{rows}</table></div>"


def _trade_row(trade: Trade, is_open: bool) -> str:
    """A trade's row, in one format (a row per trade): a cell's class is `num` for figures,
    with `gain` or `loss` for P&L and return. Only the symbol and the exits' text may hold a
    character to escape (`M&M`, a strategy's leg): figures, IST times and "open" never do."""
    exits = "; ".join(
        f"{e.leg} {e.quantity} @ {format_inr(float(e.price), 2)} ({_ist_day(e.at)})"
        for e in trade.exits
    )
    net_pnl = trade.net_pnl  # a Decimal sum: once
    cost = trade.entry_price * trade.quantity
    ret = float(net_pnl / cost) if cost else None
    closed = "open" if is_open else (_ist(trade.closed_at) if trade.closed_at else "")
    return _TRADE_ROW % (
        html_text(trade.symbol),
        _ist(trade.opened_at),
        trade.quantity,
        format_inr(float(trade.entry_price), 2),
        html_text(exits),
        closed,
        format_inr(float(trade.charges), 2),
        _NUM_CLASS[_tone(net_pnl)],
        format_inr(float(net_pnl), 2),
        _NUM_CLASS[_tone(ret)],
        _signed_pct(ret),
    )


_TRADE_ROW = (
    "<tr><td>%s</td><td>%s</td><td class='num'>%s</td><td class='num'>%s</td><td>%s</td>"
    "<td>%s</td><td class='num'>%s</td><td class='%s'>%s</td><td class='%s'>%s</td></tr>"
)
_NUM_CLASS = {"": "num", "gain": "num gain", "loss": "num loss"}  # by `_tone`


_STYLE = """
body{margin:0;background:#f8fafc;color:#111827;font:14px/1.45 system-ui,-apple-system,
'Segoe UI',sans-serif}
main{max-width:1000px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:16px;margin:28px 0 8px;color:#1f2937}
.subtitle,.note{color:#6b7280;margin:4px 0 12px}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(175px,1fr));gap:10px;
margin:16px 0}
.figure{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px 12px;min-width:0}
.figure .label{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.03em}
.figure .value{font-size:19px;font-weight:600;margin-top:2px;overflow-wrap:anywhere}
.gain{color:#15803d}.loss{color:#b91c1c}
svg{display:block;max-width:100%;height:auto;background:#fff;border:1px solid #e5e7eb;
border-radius:8px}
.symbols{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #eef0f3;text-align:left}
th{background:#f3f4f6;font-weight:600}
td.num,.stats td{text-align:right;font-variant-numeric:tabular-nums}
.trades tr:nth-child(even) td{background:#fafafa}
.trades th{position:sticky;top:0}
.scroll{max-height:600px;overflow:auto;border:1px solid #e5e7eb;border-radius:8px}
.monthly td{text-align:right;min-width:46px;font-variant-numeric:tabular-nums}
.monthly td.year{font-weight:600;border-left:2px solid #d1d5db}
"""
