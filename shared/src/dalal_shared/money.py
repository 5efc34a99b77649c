"""Money: Decimal rupees, stored and sent with 4 decimal places."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

Q4 = Decimal("0.0001")
PAISA = Decimal("0.01")


def q4(value: Decimal) -> Decimal:
    """Money and prices as stored: 4 decimal places (the bus's `Rupees` precision)."""
    return value.quantize(Q4, rounding=ROUND_HALF_EVEN)
