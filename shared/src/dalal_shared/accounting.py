"""The accounting kernel: fills -> FIFO lots -> positions -> realised P&L -> charges.

One set of rules, used by the backtester (`dalal_engine.backtest`), the live engine's view of
what a strategy holds (`dalal_engine.live`) and the portfolio ledger (`dalal_portfolio.ledger`),
so a backtest's P&L and the ledger's P&L are equal by construction for the same fills.

A position (exchange, symbol, product) is built fill by fill in canonical order (`filled_at`,
then `trade_id`) by `PositionReplay.step`:

* a fill first closes opposite lots FIFO (realised gross = (exit - entry) x quantity, signed by
  direction), then opens a lot in its own direction with what is left (a flip);
* charges come from `dalal_shared.charges`, per scrip and IST day: a fill pays what it adds to
  its day's charges (`ScripDay`), so a same-day CNC buy and sell are charged as intraday for the
  matched quantity (the sell carries the difference, negative when it gives back the buy's
  delivery STT and stamp), brokerage is per executed order (`broker_order_id`), and the DP
  charge is paid once per scrip and day when shares are delivered out;
* a closing fill's realised P&L net of charges subtracts its own charges and the entry charges
  of the lots it closes, pro rata; a flat-to-flat cycle is one `RoundTrip`.

Quantities are signed (short positions are negative: intraday shorts). Money is Decimal, kept
to 4 decimals (`q4`) inside; the edges (API, reports) round to the paisa.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from dalal_shared.charges import ChargesBreakdown, ScripDay, breakdown_of_paise
from dalal_shared.errors import PermanentError
from dalal_shared.money import q4
from dalal_shared.slots import slot_init
from dalal_shared.timeutil import to_utc

ZERO = Decimal("0")
_IST_OFFSET = timedelta(hours=5, minutes=30)  # IST has no daylight saving

PositionKey = tuple[str, str, str]  # exchange, symbol, product


class InvalidFill(PermanentError):
    code = "invalid_fill"


@slot_init
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
        # UTC inside, whatever zone the fill came in (Kite's are IST): a position's times read
        # the same before and after a restart (the store keeps UTC)
        if self.filled_at.tzinfo is not UTC:
            object.__setattr__(self, "filled_at", to_utc(self.filled_at))

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


@slot_init
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


@slot_init
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


@slot_init
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
    opened_at: datetime | None = None  # of the current open cycle
    exits: list[Exit] = field(default_factory=list)  # of the current open cycle
    round_trips: list[RoundTrip] = field(default_factory=list)
    effects: dict[str, FillEffect] = field(default_factory=dict)
    fill_charges: dict[str, Decimal] = field(default_factory=dict)
    fills: int = 0
    last_fill_at: datetime | None = None
    # `charges` by component in whole paise (brokerage, STT, transaction, SEBI, stamp, GST,
    # DP): `charges_breakdown`; whether a fill was charged, and whether a DP charge was ever
    # part of a fill's day (the breakdown's Decimals are then to the paisa, else a plain 0)
    charges_paise: list[int] = field(default_factory=lambda: [0] * 7, repr=False)
    charged: bool = field(default=False, repr=False)
    dp_charged: bool = field(default=False, repr=False)

    @property
    def key(self) -> PositionKey:
        return (self.exchange, self.symbol, self.product)

    @property
    def charges_breakdown(self) -> ChargesBreakdown:
        """Every charge paid on this key's fills, by component."""
        if not self.charged:
            return ChargesBreakdown()
        return breakdown_of_paise(self.charges_paise, self.dp_charged)

    @property
    def is_open(self) -> bool:
        return self.quantity != 0

    @property
    def average_price(self) -> Decimal:
        """Quantity-weighted price of the open lots (0 when flat)."""
        if not self.quantity:
            return ZERO
        lots = self.lots
        if len(lots) == 1:  # the usual case (the same value as the sum below)
            lot = lots[0]
            return q4(lot.price * lot.quantity / self.quantity)
        cost = sum((lot.price * lot.quantity for lot in lots), ZERO)
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


class PositionReplay:
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

    @classmethod
    def holding(
        cls, key: PositionKey, lots: Iterable[Lot], opened_at: datetime | None = None
    ) -> PositionReplay:
        """A position that already holds `lots` (a store kept them), to step further fills
        through: how a restarted engine goes on from what it saved. The cycle's entries are
        the lots; charges already paid are not known here."""
        state = cls(key)
        pos = state.pos
        pos.lots = [replace(lot) for lot in lots]
        pos.quantity = sum(lot.quantity for lot in pos.lots)
        if pos.lots:
            first = pos.lots[0]
            pos.opened_at = opened_at or first.opened_at
            cycle = _Cycle("LONG" if pos.quantity > 0 else "SHORT", pos.opened_at)
            cycle.entry_qty = abs(pos.quantity)
            cycle.entry_value = sum((abs(lot.quantity) * lot.price for lot in pos.lots), ZERO)
            cycle.max_quantity = abs(pos.quantity)
            state.cycle = cycle
            state.last = max((lot.opened_at, lot.trade_id) for lot in pos.lots)
        return state

    def _charge(self, fill: Fill) -> Decimal:
        """The fill's charges: what it adds to its scrip's IST day (`dalal_shared.charges`:
        a same-day CNC buy and sell are intraday for the matched quantity, brokerage per
        order, the DP charge once a day when shares are delivered out). Negative when a
        same-day sell turns a buy booked at delivery rates intraday."""
        if not fill.charged:
            return ZERO
        trade_day = (fill.filled_at + _IST_OFFSET).date()  # filled_at is UTC (Fill makes it)
        day = self._days.get(trade_day)
        if day is None:
            day = self._days[trade_day] = ScripDay(fill.product, trade_day)
        dp_before = day.dp_charged
        delta = day.add_trade(fill.broker_order_id, fill.side == "BUY", fill.quantity, fill.price)
        pos = self.pos
        paid = pos.charges_paise
        for k, paise in enumerate(delta):
            paid[k] += paise
        pos.charged = True
        if dp_before or day.dp_charged:
            pos.dp_charged = True
        pos.charges = Decimal(sum(paid)).scaleb(-2)
        return Decimal(sum(delta)).scaleb(-2)

    def step(self, fill: Fill) -> FillEffect:
        """Book one fill after every fill stepped before it; what it did to the position."""
        pos = self.pos
        trade_id, price, quantity = fill.trade_id, fill.price, fill.quantity
        filled_at = fill.filled_at
        self.last = (filled_at, trade_id)  # fill.sort_key()
        fill_charge = self._charge(fill)
        pos.fill_charges[trade_id] = fill_charge
        pos.fills += 1
        pos.last_fill_at = filled_at
        buy = fill.side == "BUY"
        signed = quantity if buy else -quantity
        before = pos.quantity
        lots = pos.lots
        remaining = quantity
        closed_qty = 0
        gross = ZERO
        released_entry = ZERO
        # 1) close against opposite lots, FIFO
        while remaining and lots and (lots[0].quantity > 0) != buy:
            lot = lots[0]
            held = abs(lot.quantity)
            take = min(remaining, held)
            direction = 1 if lot.quantity > 0 else -1
            gross += (price - lot.price) * take * direction
            share = _split(lot.entry_charges, take, held)
            released_entry += share
            lot.entry_charges -= share
            lot.quantity -= take * direction
            remaining -= take
            closed_qty += take
            if lot.quantity == 0:
                lots.pop(0)
        # 2) what is left opens (or adds to) a position in the fill's direction
        opening_charge = _split(fill_charge, remaining, quantity) if remaining else ZERO
        closing_charge = fill_charge - opening_charge
        reason = fill.reason or fill.client_order_id
        cycle = self.cycle
        if closed_qty:
            assert cycle is not None
            net = gross - closing_charge - released_entry
            exit_ = Exit(  # positional (a call per closing fill): the fields in order
                trade_id,
                fill.client_order_id,
                closed_qty,
                price,
                filled_at,
                reason,
                q4(gross),
                q4(closing_charge + released_entry),
                q4(net),
            )
            pos.realised_gross += gross
            pos.realised_net += net
            cycle.gross += gross
            cycle.charges += closing_charge + released_entry
            cycle.exit_qty += closed_qty
            cycle.exit_value += price * closed_qty
            cycle.exits.append(exit_)
            pos.exits.append(exit_)
        pos.quantity = after = before + signed
        round_trip_charges = ZERO
        if closed_qty and not lots:
            assert cycle is not None
            round_trip_charges = cycle.charges
            pos.round_trips.append(_close_cycle(pos, cycle, filled_at))
            self.cycle = cycle = None
            pos.exits = []
            pos.opened_at = None
        if remaining:
            if cycle is None:
                self.cycle = cycle = _Cycle("LONG" if buy else "SHORT", filled_at)
                pos.opened_at = filled_at
            cycle.entry_qty += remaining
            cycle.entry_value += price * remaining
            lots.append(  # positional: quantity, price, opened_at, trade_id, entry_charges
                Lot(remaining if buy else -remaining, price, filled_at, trade_id, opening_charge)
            )
        if cycle is not None and abs(after) > cycle.max_quantity:
            cycle.max_quantity = abs(after)
        kind: Literal["opened", "increased", "reduced", "closed", "flipped"]
        if before == 0:
            kind = "opened"
        elif closed_qty == 0:
            kind = "increased"
        elif remaining:
            kind = "flipped"
        elif after == 0:
            kind = "closed"
        else:
            kind = "reduced"
        effect = FillEffect(  # positional (a call per fill): the fields in order
            trade_id,
            kind,
            after,
            pos.average_price,
            closed_qty,
            q4(gross),
            q4(round_trip_charges),
            reason,
        )
        pos.effects[trade_id] = effect
        pos.realised_gross = q4(pos.realised_gross)
        pos.realised_net = q4(pos.realised_net)
        return effect


def replay(key: PositionKey, fills: Iterable[Fill]) -> Position:
    """Rebuild one position from its fills, in canonical order (filled_at, trade_id)."""
    return replay_state(key, fills).pos


def replay_state(key: PositionKey, fills: Iterable[Fill]) -> PositionReplay:
    state = PositionReplay(key)
    for fill in sorted(fills, key=Fill.sort_key):
        state.step(fill)
    return state


def _close_cycle(pos: Position, cycle: _Cycle, closed_at: datetime) -> RoundTrip:
    return RoundTrip(  # positional (a call per round trip): the fields in order
        pos.exchange,
        pos.symbol,
        pos.product,
        cycle.direction,
        cycle.max_quantity,
        q4(cycle.entry_value / cycle.entry_qty),
        q4(cycle.exit_value / cycle.exit_qty),
        cycle.opened_at,
        closed_at,
        q4(cycle.gross),
        q4(cycle.charges),
        q4(cycle.gross - cycle.charges),
        tuple(cycle.exits),
    )
