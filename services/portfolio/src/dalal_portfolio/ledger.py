"""The ledger: fills in, positions, realised P&L, charges and cash out. Plain Python.

The ledger is a pure function of the *set* of fills it holds (plus cash movements), which is
what makes it exact under at-least-once, out-of-order delivery:

* a fill is keyed on Kite's `trade_id`; a second delivery of the same trade is a no-op, and a
  different trade under a known `trade_id` is refused (`ConflictingFill`);
* a position (exchange, symbol, product) is rebuilt from its own fills in canonical order
  (`filled_at`, then `trade_id`) whenever one of them arrives, so a late fill lands where it
  belongs in time and FIFO matching is the same as if delivery had been clean.

Charges come from `dalal_shared.charges`, per scrip and IST day: a fill pays what it adds to
its day's charges (`ScripDay`), so a same-day CNC buy and sell are charged as intraday for the
matched quantity (the sell carries the difference, negative when it gives back the buy's
delivery STT and stamp), brokerage is per executed order (`broker_order_id`), and the DP
charge is paid once per scrip and day when shares are delivered out. A closing
fill's realised P&L net of charges subtracts its own charges and the entry charges of the lots
it closes, pro rata.

Quantities are signed (short positions are negative: intraday shorts). Money is Decimal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from dalal_shared.charges import ChargesBreakdown, ScripDay, TradeFill
from dalal_shared.errors import ConflictError, PermanentError
from dalal_shared.money import q4
from dalal_shared.timeutil import to_ist

ZERO = Decimal("0")

PositionKey = tuple[str, str, str]  # exchange, symbol, product


class ConflictingFill(ConflictError):
    code = "conflicting_fill"


class InvalidFill(PermanentError):
    code = "invalid_fill"


@dataclass(frozen=True, slots=True)
class Fill:
    """One Kite trade (an order fills in one or more trades)."""

    trade_id: str
    client_order_id: str
    broker_order_id: str
    exchange: str
    symbol: str
    side: Literal["BUY", "SELL"]
    product: str
    quantity: int
    price: Decimal
    filled_at: datetime
    reason: str | None = None  # why this order was placed (exit reason), when known
    charged: bool = True  # False for fills imported from a seed state (no charges known)

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise InvalidFill(f"trade {self.trade_id}: quantity must be positive")
        if self.price <= 0:
            raise InvalidFill(f"trade {self.trade_id}: price must be positive")
        if self.side not in ("BUY", "SELL"):
            raise InvalidFill(f"trade {self.trade_id}: side must be BUY or SELL")
        if self.filled_at.tzinfo is None:
            raise InvalidFill(f"trade {self.trade_id}: filled_at must be timezone-aware")

    @property
    def key(self) -> PositionKey:
        return (self.exchange, self.symbol, self.product)

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "BUY" else -self.quantity

    def sort_key(self) -> tuple[datetime, str]:
        return (self.filled_at, self.trade_id)

    def same_trade(self, other: Fill) -> bool:
        """Whether `other` is a redelivery of this trade (reason may be learnt later)."""
        return replace(other, reason=self.reason) == self


@dataclass(slots=True)
class Lot:
    """An open FIFO lot: signed quantity at a price, with the entry charges not yet realised."""

    quantity: int
    price: Decimal
    opened_at: datetime
    trade_id: str
    entry_charges: Decimal


@dataclass(frozen=True, slots=True)
class Exit:
    """A fill that reduced or closed a position (the seed's partial_exit_1/2, generalised)."""

    trade_id: str
    client_order_id: str
    quantity: int
    price: Decimal
    at: datetime
    reason: str
    realised_gross: Decimal
    charges: Decimal
    realised_net: Decimal


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A position from flat to flat: one closed trade for performance statistics."""

    exchange: str
    symbol: str
    product: str
    direction: Literal["LONG", "SHORT"]
    quantity: int  # the largest absolute quantity held
    entry_price: Decimal  # quantity-weighted average of the entries
    exit_price: Decimal  # quantity-weighted average of the exits
    opened_at: datetime
    closed_at: datetime
    realised_gross: Decimal
    charges: Decimal
    realised_net: Decimal
    exits: tuple[Exit, ...]
    source: str = "ledger"


@dataclass(frozen=True, slots=True)
class FillEffect:
    """What one fill did to its position in the canonical replay (drives bus events)."""

    trade_id: str
    kind: Literal["opened", "increased", "reduced", "closed", "flipped"]
    quantity_after: int
    average_price_after: Decimal
    closed_quantity: int
    realised_gross: Decimal
    charges: Decimal  # charges of the round trip, when closed
    reason: str


@dataclass(slots=True)
class Position:
    """A position's state after replaying its fills."""

    exchange: str
    symbol: str
    product: str
    quantity: int = 0
    lots: list[Lot] = field(default_factory=list)
    realised_gross: Decimal = ZERO  # over every round trip of this key
    realised_net: Decimal = ZERO
    charges: Decimal = ZERO  # every charge paid on this key's fills
    charges_breakdown: ChargesBreakdown = field(default_factory=ChargesBreakdown)
    opened_at: datetime | None = None  # of the current open cycle
    exits: list[Exit] = field(default_factory=list)  # of the current open cycle
    round_trips: list[RoundTrip] = field(default_factory=list)
    effects: dict[str, FillEffect] = field(default_factory=dict)
    fill_charges: dict[str, Decimal] = field(default_factory=dict)
    fills: int = 0
    last_fill_at: datetime | None = None

    @property
    def key(self) -> PositionKey:
        return (self.exchange, self.symbol, self.product)

    @property
    def is_open(self) -> bool:
        return self.quantity != 0

    @property
    def average_price(self) -> Decimal:
        """Quantity-weighted price of the open lots (0 when flat)."""
        if not self.quantity:
            return ZERO
        cost = sum((lot.price * lot.quantity for lot in self.lots), ZERO)
        return q4(cost / self.quantity)

    @property
    def cost(self) -> Decimal:
        """Signed cost of the open lots (negative for a short)."""
        return sum((lot.price * lot.quantity for lot in self.lots), ZERO)

    @property
    def open_entry_charges(self) -> Decimal:
        return sum((lot.entry_charges for lot in self.lots), ZERO)

    def unrealised(self, mark: Decimal | None) -> Decimal:
        """Gross unrealised P&L at `mark` (the average price when no mark is known)."""
        if not self.quantity or mark is None:
            return ZERO
        return q4(mark * self.quantity - self.cost)


# ---------------------------------------------------------------- replay


class _Cycle:
    """Accumulates one flat-to-flat round trip during a replay."""

    def __init__(self, direction: Literal["LONG", "SHORT"], opened_at: datetime):
        self.direction = direction
        self.opened_at = opened_at
        self.max_quantity = 0
        self.entry_qty = 0
        self.entry_value = ZERO
        self.exit_qty = 0
        self.exit_value = ZERO
        self.gross = ZERO
        self.charges = ZERO
        self.exits: list[Exit] = []


def _split(amount: Decimal, part: int, whole: int) -> Decimal:
    return amount if part == whole else q4(amount * part / whole)


class _Replay:
    """One position built fill by fill in canonical order (filled_at, trade_id).

    Everything a fill does depends only on the fills before it in that order (its charges on
    its order's earlier fills and on the day's earlier delivery sells; its P&L on the open
    lots), so a fill that sorts after every known fill of its key is one more `step`; a fill
    that sorts earlier means a replay from the start.
    """

    def __init__(self, key: PositionKey):
        self.pos = Position(*key)
        self.cycle: _Cycle | None = None
        self.last: tuple[datetime, str] | None = None
        self._days: dict[date, ScripDay] = {}

    def _charge(self, fill: Fill) -> ChargesBreakdown:
        """The fill's charges: what it adds to its scrip's IST day (`dalal_shared.charges`:
        a same-day CNC buy and sell are intraday for the matched quantity, brokerage per
        order, the DP charge once a day when shares are delivered out). Negative when a
        same-day sell turns a buy booked at delivery rates intraday."""
        if not fill.charged:
            return ChargesBreakdown()
        trade_day = to_ist(fill.filled_at).date()
        day = self._days.get(trade_day)
        if day is None:
            day = self._days[trade_day] = ScripDay(fill.product, trade_day)
        charge = day.add(
            TradeFill(fill.broker_order_id, fill.side, fill.quantity, fill.price)  # type: ignore[arg-type]
        )
        self.pos.charges_breakdown = self.pos.charges_breakdown + charge
        self.pos.charges = self.pos.charges_breakdown.total
        return charge

    def step(self, fill: Fill) -> None:
        pos = self.pos
        self.last = fill.sort_key()
        fill_charge = self._charge(fill).total
        pos.fill_charges[fill.trade_id] = fill_charge
        pos.fills += 1
        pos.last_fill_at = fill.filled_at
        signed = fill.signed_quantity
        before = pos.quantity
        remaining = abs(signed)
        closed_qty = 0
        gross = ZERO
        released_entry = ZERO
        # 1) close against opposite lots, FIFO
        while remaining and pos.lots and (pos.lots[0].quantity > 0) != (signed > 0):
            lot = pos.lots[0]
            take = min(remaining, abs(lot.quantity))
            direction = 1 if lot.quantity > 0 else -1
            gross += (fill.price - lot.price) * take * direction
            share = _split(lot.entry_charges, take, abs(lot.quantity))
            released_entry += share
            lot.entry_charges -= share
            lot.quantity -= take * direction
            remaining -= take
            closed_qty += take
            if lot.quantity == 0:
                pos.lots.pop(0)
        # 2) what is left opens (or adds to) a position in the fill's direction
        opening_charge = _split(fill_charge, remaining, fill.quantity) if remaining else ZERO
        closing_charge = fill_charge - opening_charge
        if closed_qty:
            assert self.cycle is not None
            net = gross - closing_charge - released_entry
            reason = fill.reason or fill.client_order_id
            exit_ = Exit(
                trade_id=fill.trade_id,
                client_order_id=fill.client_order_id,
                quantity=closed_qty,
                price=fill.price,
                at=fill.filled_at,
                reason=reason,
                realised_gross=q4(gross),
                charges=q4(closing_charge + released_entry),
                realised_net=q4(net),
            )
            pos.realised_gross += gross
            pos.realised_net += net
            self.cycle.gross += gross
            self.cycle.charges += closing_charge + released_entry
            self.cycle.exit_qty += closed_qty
            self.cycle.exit_value += fill.price * closed_qty
            self.cycle.exits.append(exit_)
            pos.exits.append(exit_)
        pos.quantity = before + signed
        flat_now = not pos.lots
        round_trip_charges = ZERO
        if closed_qty and flat_now:
            assert self.cycle is not None
            round_trip_charges = self.cycle.charges
            pos.round_trips.append(_close_cycle(pos, self.cycle, fill.filled_at))
            self.cycle = None
            pos.exits = []
            pos.opened_at = None
        if remaining:
            if self.cycle is None:
                self.cycle = _Cycle("LONG" if signed > 0 else "SHORT", fill.filled_at)
                pos.opened_at = fill.filled_at
            self.cycle.entry_qty += remaining
            self.cycle.entry_value += fill.price * remaining
            pos.lots.append(
                Lot(
                    quantity=remaining if signed > 0 else -remaining,
                    price=fill.price,
                    opened_at=fill.filled_at,
                    trade_id=fill.trade_id,
                    entry_charges=opening_charge,
                )
            )
        if self.cycle is not None:
            self.cycle.max_quantity = max(self.cycle.max_quantity, abs(pos.quantity))
        kind: Literal["opened", "increased", "reduced", "closed", "flipped"]
        if before == 0:
            kind = "opened"
        elif closed_qty == 0:
            kind = "increased"
        elif remaining:
            kind = "flipped"
        elif pos.quantity == 0:
            kind = "closed"
        else:
            kind = "reduced"
        pos.effects[fill.trade_id] = FillEffect(
            trade_id=fill.trade_id,
            kind=kind,
            quantity_after=pos.quantity,
            average_price_after=pos.average_price,
            closed_quantity=closed_qty,
            realised_gross=q4(gross),
            charges=q4(round_trip_charges),
            reason=fill.reason or fill.client_order_id,
        )
        pos.realised_gross = q4(pos.realised_gross)
        pos.realised_net = q4(pos.realised_net)


def replay(key: PositionKey, fills: Iterable[Fill]) -> Position:
    """Rebuild one position from its fills, in canonical order (filled_at, trade_id)."""
    return _replay(key, fills).pos


def _replay(key: PositionKey, fills: Iterable[Fill]) -> _Replay:
    state = _Replay(key)
    for fill in sorted(fills, key=Fill.sort_key):
        state.step(fill)
    return state


def _close_cycle(pos: Position, cycle: _Cycle, closed_at: datetime) -> RoundTrip:
    return RoundTrip(
        exchange=pos.exchange,
        symbol=pos.symbol,
        product=pos.product,
        direction=cycle.direction,
        quantity=cycle.max_quantity,
        entry_price=q4(cycle.entry_value / cycle.entry_qty),
        exit_price=q4(cycle.exit_value / cycle.exit_qty),
        opened_at=cycle.opened_at,
        closed_at=closed_at,
        realised_gross=q4(cycle.gross),
        charges=q4(cycle.charges),
        realised_net=q4(cycle.gross - cycle.charges),
        exits=tuple(cycle.exits),
    )


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
        self._replays: dict[PositionKey, _Replay] = {}
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

    def _rebuild(self, key: PositionKey) -> _Replay:
        state = _replay(key, self._by_key[key].values())
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
