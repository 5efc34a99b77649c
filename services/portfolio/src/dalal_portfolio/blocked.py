"""Funds blocked by open BUY orders: what `available capital = cash - blocked` subtracts.

Each `PlaceOrder` (on `orders.commands`) becomes a hold, once per client_order_id: LIMIT/SL
orders hold price x quantity, MARKET ones the last known tick price x quantity (or an unknown
amount when no tick has been seen: counted in `unknown`, not in the total). A hold shrinks as
the order fills (the ledger's new fills of that client_order_id, or the filled quantity an
`OrderUpdated` reports, whichever is larger) and is released by OrderCancelled, OrderRejected
or a terminal OrderUpdated. Commands and events travel on different streams, so a terminal
event may arrive before its command: the order is then remembered as closed and the late
command blocks nothing. SELL orders block nothing (delivery sells are covered by holdings).
A modification (the ModifyOrder command, or an OrderUpdated reporting new terms) re-prices
the hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from dalal_portfolio.ledger import q4

ZERO = Decimal(0)
TERMINAL = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})


@dataclass(frozen=True, slots=True)
class Hold:
    client_order_id: str
    symbol: str | None
    side: str | None
    quantity: int
    unit_price: Decimal | None  # None: a MARKET order placed before any tick of its symbol
    filled: int = 0  # from the ledger's fills of this order
    reported_filled: int = 0  # from OrderUpdated / OrderCancelled
    open: bool = True
    placed: bool = True  # False: a terminal event came before the command

    @property
    def remaining(self) -> int:
        return max(0, self.quantity - max(self.filled, self.reported_filled))

    @property
    def blocked(self) -> Decimal:
        if not self.open or self.side != "BUY" or self.unit_price is None:
            return ZERO
        return q4(self.unit_price * self.remaining)

    @property
    def unknown(self) -> bool:
        return self.open and self.side == "BUY" and self.unit_price is None and self.remaining > 0


def order_value(
    order_type: str, price: Decimal | None, last_price: Decimal | None
) -> Decimal | None:
    """The unit price an order blocks: its limit price, else the last tick (MARKET, SL-M)."""
    if order_type in ("LIMIT", "SL") and price is not None:
        return price
    return last_price


class BlockedFunds:
    """Holds by client_order_id. Every method returns the changed hold (to persist) or None."""

    def __init__(self) -> None:
        self._holds: dict[str, Hold] = {}

    def load(self, holds: list[Hold]) -> None:
        self._holds = {h.client_order_id: h for h in holds}

    def get(self, client_order_id: str) -> Hold | None:
        return self._holds.get(client_order_id)

    def restore(self, client_order_id: str, hold: Hold | None) -> None:
        """Undo a change that could not be stored."""
        if hold is None:
            self._holds.pop(client_order_id, None)
        else:
            self._holds[client_order_id] = hold

    def place(self, hold: Hold) -> Hold | None:
        """Record a new order; a repeated client_order_id (or one already closed) is a no-op."""
        if hold.client_order_id in self._holds:
            known = self._holds[hold.client_order_id]
            if known.placed:
                return None
            # closed before its command arrived: keep it closed, but remember what it was
            hold = replace(hold, open=False, reported_filled=known.reported_filled)
        self._holds[hold.client_order_id] = hold
        return hold

    def filled(self, client_order_id: str, quantity: int) -> Hold | None:
        """A new (deduplicated) fill of the order."""
        hold = self._holds.get(client_order_id)
        if hold is None:
            return None
        hold = replace(hold, filled=hold.filled + quantity)
        self._holds[client_order_id] = hold
        return hold

    def reported(
        self, client_order_id: str, filled_quantity: int, *, terminal: bool
    ) -> Hold | None:
        """An order event: the broker's filled quantity, and whether the order is over."""
        hold = self._holds.get(client_order_id)
        if hold is None:
            if not terminal:
                return None
            hold = Hold(client_order_id, None, None, 0, None, reported_filled=filled_quantity,
                        open=False, placed=False)  # fmt: skip
            self._holds[client_order_id] = hold
            return hold
        if not hold.open:
            return None
        new = replace(
            hold,
            reported_filled=max(hold.reported_filled, filled_quantity),
            open=hold.open and not terminal,
        )
        if new == hold:
            return None
        self._holds[client_order_id] = new
        return new

    def modified(
        self, client_order_id: str, *, quantity: int | None, unit_price: Decimal | None
    ) -> Hold | None:
        """New terms of an open order (a ModifyOrder, or an OrderUpdated that reports them):
        the hold follows the new quantity and price."""
        hold = self._holds.get(client_order_id)
        if hold is None or not hold.open or not hold.placed:
            return None
        new = replace(
            hold,
            quantity=hold.quantity if quantity is None else quantity,
            unit_price=hold.unit_price if unit_price is None else unit_price,
        )
        if new == hold:
            return None
        self._holds[client_order_id] = new
        return new

    def total(self) -> Decimal:
        return sum((h.blocked for h in self._holds.values()), ZERO)

    def unknown(self) -> int:
        return sum(1 for h in self._holds.values() if h.unknown)

    def open_holds(self) -> list[Hold]:
        return [h for h in self._holds.values() if h.open and h.placed]
