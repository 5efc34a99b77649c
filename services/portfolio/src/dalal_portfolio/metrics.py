"""Prometheus metrics of the portfolio (dalal_portfolio_*)."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import Counter, Gauge

from dalal_portfolio.ledger import Valuation

EQUITY = Gauge("dalal_portfolio_equity_rupees", "Cash plus open positions marked to market")
CASH = Gauge("dalal_portfolio_cash_rupees", "Cash after fills, charges, deposits, withdrawals")
AVAILABLE = Gauge("dalal_portfolio_available_capital_rupees", "Cash less funds blocked by orders")
REALISED = Gauge(
    "dalal_portfolio_realised_pnl_rupees", "Realised P&L of closed quantity", ["basis"]
)
UNREALISED = Gauge("dalal_portfolio_unrealised_pnl_rupees", "Unrealised P&L at last prices")
CHARGES = Gauge("dalal_portfolio_charges_rupees", "Zerodha charges paid on every fill")
DRAWDOWN = Gauge("dalal_portfolio_drawdown_rupees", "Equity below its highest recorded value")
DRAWDOWN_RATIO = Gauge(
    "dalal_portfolio_drawdown_ratio", "Drawdown as a fraction of the highest recorded equity"
)
OPEN_POSITIONS = Gauge("dalal_portfolio_open_positions", "Positions with non-zero quantity")
EXPOSURE = Gauge("dalal_portfolio_gross_exposure_rupees", "Sum of |quantity x last price|")
FILLS = Counter("dalal_portfolio_fills_applied_total", "Fills applied to the ledger")
DUPLICATES = Counter(
    "dalal_portfolio_fills_duplicate_total", "Fill deliveries ignored as already applied"
)
SNAPSHOTS = Counter("dalal_portfolio_equity_snapshots_total", "Equity snapshots stored")


def update(v: Valuation, peak_equity: Decimal) -> None:
    EQUITY.set(float(v.equity))
    CASH.set(float(v.cash))
    AVAILABLE.set(float(v.available_capital))
    REALISED.labels("gross").set(float(v.realised_gross))
    REALISED.labels("net").set(float(v.realised_net))
    UNREALISED.set(float(v.unrealised))
    CHARGES.set(float(v.charges))
    OPEN_POSITIONS.set(v.open_positions)
    EXPOSURE.set(float(v.gross_exposure))
    dd = max(peak_equity - v.equity, Decimal(0))
    DRAWDOWN.set(float(dd))
    DRAWDOWN_RATIO.set(float(dd / peak_equity) if peak_equity > 0 else 0.0)


LEDGER_WRITER = Gauge(
    "dalal_portfolio_ledger_writer", "1 on the replica that writes the ledger (holds the lease)"
)
