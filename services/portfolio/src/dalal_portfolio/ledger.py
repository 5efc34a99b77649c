"""The ledger: fills in, positions, realised P&L, charges and cash out. Plain Python.

The ledger is a pure function of the *set* of fills it holds (plus cash movements), which is
what makes it exact under at-least-once, out-of-order delivery:

* a fill is keyed on Kite's `trade_id`; a second delivery of the same trade is a no-op, and a
  different trade under a known `trade_id` is refused (`ConflictingFill`);
* a position (exchange, symbol, product) is rebuilt from its own fills in canonical order
  (`filled_at`, then `trade_id`) whenever one of them arrives, so a late fill lands where it
  belongs in time and FIFO matching is the same as if delivery had been clean.

What a fill does to its position (FIFO lots, realised P&L, Zerodha's charges per scrip and day)
is the shared accounting kernel, `dalal_shared.accounting`, the one the backtester and the
engine use too; this module adds idempotency, cash and the valuation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from dalal_shared.accounting import (
    ZERO,
    Exit,
    Fill,
    FillEffect,
    InvalidFill,
    Lot,
    Position,
    PositionKey,
    PositionReplay,
    RoundTrip,
    replay,
    replay_state,
)
from dalal_shared.errors import ConflictError, PermanentError
from dalal_shared.money import q4

__all__ = [
    "ZERO",
    "Applied",
    "Book",
    "CashMovement",
    "ConflictingFill",
    "Exit",
    "Fill",
    "FillEffect",
    "InsufficientFunds",
    "InvalidFill",
    "Lot",
    "Position",
    "PositionKey",
    "RoundTrip",
    "Valuation",
    "q4",
    "replay",
]


class ConflictingFill(ConflictError):
    code = "conflicting_fill"


# ---------------------------------------------------------------- cash


@dataclass(frozen=True, slots=True)
class CashMovement:
    """A deposit (positive) or withdrawal (negative), keyed for idempotency."""

    key: str
    amount: Decimal
    at: datetime
    note: str = ""

    def __post_init__(self) -> None:
        if self.amount == 0:
            raise PermanentError("a cash movement needs a non-zero amount", code="invalid_amount")


class InsufficientFunds(PermanentError):
    code = "insufficient_funds"


# ---------------------------------------------------------------- the book


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of offering a fill to the book."""

    fill: Fill
    duplicate: bool
    position: Position
    effect: FillEffect | None


class Book:
    """Every fill and cash movement, and the positions and cash they imply."""

    def __init__(self, initial_capital: Decimal):
        self.initial_capital = Decimal(initial_capital)
        self._fills: dict[str, Fill] = {}
        self._by_key: dict[PositionKey, dict[str, Fill]] = defaultdict(dict)
        self._positions: dict[PositionKey, Position] = {}
        self._replays: dict[PositionKey, PositionReplay] = {}
        self._cash: dict[str, CashMovement] = {}
        self.imported_round_trips: list[RoundTrip] = []  # closed trades from a seed import
        self.blocked_funds = ZERO  # value of open buy orders, set by the open-order book

    # ------------------------------------------------------------ fills

    def fill(self, trade_id: str) -> Fill | None:
        return self._fills.get(trade_id)

    def apply(self, fill: Fill) -> Applied:
        """Add a fill (idempotent on trade_id) and rebuild its position."""
        known = self._fills.get(fill.trade_id)
        if known is not None:
            if not known.same_trade(fill):
                raise ConflictingFill(
                    f"trade {fill.trade_id} was already applied with different details"
                )
            pos = self._positions[known.key]
            return Applied(known, True, pos, pos.effects.get(fill.trade_id))
        self._fills[fill.trade_id] = fill
        self._by_key[fill.key][fill.trade_id] = fill
        state = self._replays.get(fill.key)
        if state is not None and state.last is not None and fill.sort_key() > state.last:
            state.step(fill)  # in time order: one more step
        else:  # the first fill of its key, or a late one: replay the key from the start
            state = self._rebuild(fill.key)
        return Applied(fill, False, state.pos, state.pos.effects[fill.trade_id])

    def _rebuild(self, key: PositionKey) -> PositionReplay:
        state = replay_state(key, self._by_key[key].values())
        self._replays[key] = state
        self._positions[key] = state.pos
        return state

    def load(self, fills: Iterable[Fill]) -> None:
        """Bulk-load fills (start-up): one replay per key."""
        touched = set()
        for fill in fills:
            if fill.trade_id in self._fills:
                continue
            self._fills[fill.trade_id] = fill
            self._by_key[fill.key][fill.trade_id] = fill
            touched.add(fill.key)
        for key in touched:
            self._rebuild(key)

    def forget(self, trade_id: str) -> None:
        """Undo `apply` (the store could not persist the fill)."""
        fill = self._fills.pop(trade_id, None)
        if fill is None:
            return
        del self._by_key[fill.key][trade_id]
        if self._by_key[fill.key]:
            self._rebuild(fill.key)
        else:
            del self._by_key[fill.key]
            del self._positions[fill.key]
            del self._replays[fill.key]

    def fills(self) -> list[Fill]:
        return sorted(self._fills.values(), key=Fill.sort_key)

    # ------------------------------------------------------------ cash

    def move_cash(self, movement: CashMovement) -> bool:
        """Record a deposit/withdrawal; False when its key was already recorded (same amount)."""
        known = self._cash.get(movement.key)
        if known is not None:
            if known.amount != movement.amount:
                raise ConflictError(f"cash movement {movement.key} already recorded differently")
            return False
        if movement.amount < 0 and self.available_capital() + movement.amount < 0:
            raise InsufficientFunds(
                f"withdrawal of {-movement.amount} exceeds available capital "
                f"{q4(self.available_capital())}"
            )
        self._cash[movement.key] = movement
        return True

    def restore_cash(self, movements: Iterable[CashMovement]) -> None:
        """Load recorded movements (start-up; they were validated when recorded)."""
        for movement in movements:
            self._cash[movement.key] = movement

    def drop_cash(self, key: str) -> None:
        """Undo `move_cash` (the store could not persist it)."""
        self._cash.pop(key, None)

    def cash_movements(self) -> list[CashMovement]:
        return sorted(self._cash.values(), key=lambda m: (m.at, m.key))

    def net_deposits(self) -> Decimal:
        return sum((m.amount for m in self._cash.values()), ZERO)

    def imported_realised(self) -> Decimal:
        return sum((t.realised_net for t in self.imported_round_trips), ZERO)

    def cash(self) -> Decimal:
        """Initial capital + deposits - withdrawals - buys + sells - charges."""
        flow = ZERO
        for fill in self._fills.values():
            flow -= fill.price * fill.signed_quantity
        charges = sum((p.charges for p in self._positions.values()), ZERO)
        return q4(
            self.initial_capital + self.net_deposits() + flow - charges + self.imported_realised()
        )

    def available_capital(self) -> Decimal:
        return q4(self.cash() - self.blocked_funds)

    # ------------------------------------------------------------ positions

    def positions(self, *, open_only: bool = False) -> list[Position]:
        out = sorted(self._positions.values(), key=lambda p: p.key)
        return [p for p in out if p.is_open] if open_only else out

    def position(self, key: PositionKey) -> Position | None:
        return self._positions.get(key)

    def positions_for(self, symbol: str) -> list[Position]:
        return [p for p in self.positions() if p.symbol == symbol]

    def round_trips(self) -> list[RoundTrip]:
        trips = list(self.imported_round_trips)
        for pos in self._positions.values():
            trips.extend(pos.round_trips)
        return sorted(trips, key=lambda t: (t.closed_at, t.symbol, t.product))

    def realised_gross(self) -> Decimal:
        own = sum((p.realised_gross for p in self._positions.values()), ZERO)
        return own + sum((t.realised_gross for t in self.imported_round_trips), ZERO)

    def realised_net(self) -> Decimal:
        own = sum((p.realised_net for p in self._positions.values()), ZERO)
        return own + self.imported_realised()

    def charges(self) -> Decimal:
        return sum((p.charges for p in self._positions.values()), ZERO)

    def valuation(self, marks: dict[str, Decimal]) -> Valuation:
        """Mark every open position to `marks` (symbol -> last price; cost when missing)."""
        unrealised = ZERO
        market_value = ZERO
        gross_exposure = ZERO
        open_positions = 0
        for pos in self._positions.values():
            if not pos.is_open:
                continue
            open_positions += 1
            mark = marks.get(pos.symbol, pos.average_price)
            unrealised += pos.unrealised(mark)
            market_value += mark * pos.quantity
            gross_exposure += abs(mark * pos.quantity)
        cash = self.cash()
        return Valuation(
            cash=cash,
            market_value=q4(market_value),
            equity=q4(cash + market_value),
            unrealised=q4(unrealised),
            realised_gross=q4(self.realised_gross()),
            realised_net=q4(self.realised_net()),
            charges=q4(self.charges()),
            gross_exposure=q4(gross_exposure),
            open_positions=open_positions,
            blocked_funds=q4(self.blocked_funds),
            available_capital=self.available_capital(),
            initial_capital=q4(self.initial_capital),
            net_deposits=q4(self.net_deposits()),
        )


@dataclass(frozen=True, slots=True)
class Valuation:
    cash: Decimal
    market_value: Decimal
    equity: Decimal
    unrealised: Decimal
    realised_gross: Decimal
    realised_net: Decimal
    charges: Decimal
    gross_exposure: Decimal
    open_positions: int
    blocked_funds: Decimal
    available_capital: Decimal
    initial_capital: Decimal
    net_deposits: Decimal
