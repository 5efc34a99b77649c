"""A backtest's report on disk: `result.json` (everything) and `report.html` (equity curve as
inline SVG from dalal_shared.performance, the statistics and the trades)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from dalal_engine.backtest import BacktestResult
from dalal_shared.performance import curve_html


def write_report(result: BacktestResult, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    data["equity_curve"] = [
        {"at": p.at.isoformat(), "equity": str(p.equity), "gross_exposure": str(p.gross_exposure)}
        for p in result.equity
    ]
    json_path = out_dir / "result.json"
    json_path.write_text(json.dumps(data, indent=1))
    page = curve_html(
        result.equity, title=f"Backtest {result.config.name} ({result.config.strategy})"
    )
    stats = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in result.report.to_json().items()
    )
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c))}</td>"
            for c in (
                t.symbol,
                t.opened_at.date(),
                t.quantity,
                t.entry_price,
                ", ".join(f"{e.leg} {e.quantity}@{e.price}" for e in t.exits),
                t.closed_at.date() if t.closed_at else "",
                t.charges,
                t.net_pnl,
            )
        )
        + "</tr>"
        for t in result.trades
    )
    extra = (
        f"<h2>Statistics</h2><table>{stats}</table><h2>Trades</h2><table>"
        "<tr><th>symbol</th><th>opened</th><th>qty</th><th>entry</th><th>exits</th>"
        f"<th>closed</th><th>charges</th><th>net P&amp;L</th></tr>{rows}</table>"
    )
    html_path = out_dir / "report.html"
    html_path.write_text(page.replace("</body>", extra + "</body>"))
    return json_path, html_path
