"""Money: Decimal rupees, stored and sent with 4 decimal places."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

Q4 = Decimal("0.0001")
PAISA = Decimal("0.01")

# The account's starting capital when nothing else says: the one default of the portfolio
# ledger, the engine (equity without a portfolio), the backtester and kitesim's opening
# balance. Deployments set it once: DALAL_INITIAL_CAPITAL_RUPEES (compose, k8s, .env.example).
INITIAL_CAPITAL_RUPEES = Decimal("1000000")


def paise(value: Decimal) -> Decimal:
    """Money at an edge (API, report, bus summary): to the paisa, half up as on a contract note."""
    return value.quantize(PAISA, rounding=ROUND_HALF_UP)


def q4(value: Decimal) -> Decimal:
    """Money and prices as stored: 4 decimal places (the bus's `Rupees` precision)."""
    return value.quantize(Q4, rounding=ROUND_HALF_EVEN)
