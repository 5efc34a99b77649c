"""The portfolio's use cases: the ledger book, its store and the events it owes the bus.

Synchronous and thread-safe (one lock): bus handlers call it through `asyncio.to_thread`, the
HTTP routes from FastAPI's thread pool. No Redis or HTTP here; publishing is the caller's job,
from the outbox this writes in the same transaction as each fill.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from dalal_portfolio.blocked import BlockedFunds, Hold, order_value
from dalal_portfolio.ledger import (
    Book,
    CashMovement,
    Fill,
    FillEffect,
    Position,
    RoundTrip,
    Valuation,
    q4,
)
from dalal_portfolio.seed import SeedState, seed_fills, seed_metrics, seed_round_trips
from dalal_portfolio.store import LedgerStore, SnapshotRow
from dalal_shared import outbox, performance
from dalal_shared.errors import ConflictError, NotFoundError
from dalal_shared.messages import (
    EquitySnapshot,
    Message,
    ModifyOrder,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
    PlaceOrder,
    PositionClosed,
    PositionOpened,
    PositionReduced,
)
from dalal_shared.money import paise
from dalal_shared.orderlegs import exit_reason
from dalal_shared.streams import PORTFOLIO_EVENTS
from dalal_shared.timeutil import ist_iso, utcnow

OutboxEvent = dict[str, Any]  # dalal_shared.outbox.row values
SOURCE = "portfolio"  # the envelopes' source, as the service's own publisher sets it


def fill_from_message(msg: OrderFilled) -> Fill:
    return Fill(
        trade_id=msg.trade_id,
        client_order_id=msg.client_order_id,
        broker_order_id=msg.broker_order_id,
        exchange=msg.exchange,
        symbol=msg.symbol,
        side=msg.side,
        product=msg.product,
        quantity=msg.quantity,
        price=msg.price,
        filled_at=msg.filled_at,
        reason=exit_reason(msg.client_order_id),  # "stop-loss (S-...)": what the order was for
    )


def events_for(fill: Fill, pos: Position, effect: FillEffect) -> list[Message]:
    """The portfolio.events a fill causes, from its role in the canonical replay."""
    base: dict[str, Any] = {
        "exchange": fill.exchange,
        "symbol": fill.symbol,
        "product": fill.product,
    }
    out: list[Message] = []
    if effect.kind in ("closed", "flipped"):
        trip = next(t for t in reversed(pos.round_trips) if fill.trade_id in _trade_ids(t))
        out.append(
            PositionClosed(
                **base,
                realised_pnl=trip.realised_gross,
                charges=trip.charges,
                closed_at=fill.filled_at,
                reason=(trip.exits[-1].reason if trip.exits else "") or "",
            )
        )
    if effect.kind == "reduced":
        out.append(
            PositionReduced(
                **base,
                quantity_closed=effect.closed_quantity,
                quantity_remaining=effect.quantity_after,
                realised_pnl=effect.realised_gross,
                reason=effect.reason,
            )
        )
    if effect.kind in ("opened", "increased", "flipped") and effect.quantity_after:
        out.append(
            PositionOpened(
                **base,
                quantity=effect.quantity_after,
                average_price=effect.average_price_after,
                opened_at=fill.filled_at,
            )
        )
    return out


def _trade_ids(trip: RoundTrip) -> set[str]:
    return {e.trade_id for e in trip.exits}


def _outbox(messages: list[Message], corr: str | None) -> list[OutboxEvent]:
    """The outbox rows of `messages`: each envelope's id is fixed here, so a publish repeated
    after a crash repeats it and consumers can tell."""
    return [outbox.row(PORTFOLIO_EVENTS, m, source=SOURCE, corr=corr) for m in messages]


@dataclass(frozen=True, slots=True)
class Mark:
    price: Decimal
    at: datetime


class PortfolioService:
    def __init__(
        self,
        store: LedgerStore,
        *,
        initial_capital: Decimal,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.store = store
        self.clock = clock
        self._lock = threading.RLock()
        self._configured_capital = Decimal(initial_capital)
        self.book = Book(self._configured_capital)
        self._marks: dict[str, Mark] = {}
        self.fills_applied = 0
        self.fills_duplicate = 0
        self._peak_equity = Decimal(0)
        self.holds = BlockedFunds()
        # read models rendered once per state version (bumped by every change under the lock)
        self.version = 0
        self._rendered: dict[str, tuple[int, bytes]] = {}

    # ------------------------------------------------------------ start-up

    def load(self) -> None:
        with self._lock:
            seeded = self.store.meta("initial_capital_rupees")
            capital = Decimal(seeded) if seeded is not None else self._configured_capital
            book = Book(capital)
            book.load(self.store.load_fills())
            book.restore_cash(self.store.load_cash())
            book.imported_round_trips = self.store.load_imported_trips()
            self.book = book
            filled: dict[str, int] = {}
            for f in book.fills():
                filled[f.client_order_id] = filled.get(f.client_order_id, 0) + f.quantity
            self.holds.load(
                [
                    Hold(**{**_hold_fields(h), "filled": filled.get(h.client_order_id, 0)})
                    for h in self.store.load_holds()
                ]
            )
            book.blocked_funds = self.holds.total()
            self.version += 1
            # the drawdown's running peak starts at the initial capital (dalal_shared.performance)
            self._peak_equity = max([capital, *(s.equity for s in self.store.snapshots())])

    def peak_equity(self) -> Decimal:
        """The highest equity recorded or seen now (for the drawdown gauge)."""
        with self._lock:
            self._peak_equity = max(self._peak_equity, self.valuation().equity)
            return self._peak_equity

    # ------------------------------------------------------------ fills and marks

    def apply_fill(self, fill: Fill, *, corr: str | None = None) -> bool:
        """Apply a fill exactly once; True when it was new."""
        with self._lock:
            before = self.book.position(fill.key)
            old_charges = dict(before.fill_charges) if before is not None else {}
            old_trips = list(before.round_trips) if before is not None else []
            applied = self.book.apply(fill)
            if applied.duplicate:
                self.fills_duplicate += 1
                return False
            assert applied.effect is not None
            events = _outbox(events_for(fill, applied.position, applied.effect), corr)
            try:
                changed = {
                    t: c
                    for t, c in applied.position.fill_charges.items()
                    if t != fill.trade_id and old_charges.get(t) != c
                }
                trips = applied.position.round_trips
                unchanged = trips[: len(old_trips)] == old_trips
                self.store.record_fill(
                    fill,
                    applied.position,
                    events,
                    now=self.clock(),
                    changed_charges=changed,
                    new_round_trips=trips[len(old_trips) :] if unchanged else None,
                )
            except Exception:
                self.book.forget(fill.trade_id)
                raise
            self.fills_applied += 1
            self.version += 1
            if self.holds.filled(fill.client_order_id, fill.quantity) is not None:
                self.book.blocked_funds = self.holds.total()
            return True

    def mark(self, symbol: str, price: Decimal, at: datetime) -> None:
        """Record a last traded price (older ticks than the one held are ignored)."""
        with self._lock:
            known = self._marks.get(symbol)
            if known is None or at >= known.at:
                self._marks[symbol] = Mark(price, at)
                if known is None or known.price != price:
                    self.version += 1

    def marks(self) -> dict[str, Decimal]:
        with self._lock:
            return {s: m.price for s, m in self._marks.items()}

    # ------------------------------------------------------------ blocked funds

    def order_placed(self, command: PlaceOrder) -> bool:
        """Hold the value of a new order (once per client_order_id); True when new."""
        with self._lock:
            coid = command.client_order_id
            mark = self._marks.get(command.symbol)
            hold = Hold(
                client_order_id=coid,
                symbol=command.symbol,
                side=command.side,
                quantity=command.quantity,
                unit_price=order_value(
                    command.order_type, command.price, mark.price if mark else None
                ),
                filled=sum(f.quantity for f in self.book.fills() if f.client_order_id == coid),
            )
            before = self.holds.get(coid)
            return self._hold_changed(coid, before, self.holds.place(hold))

    def order_modified(self, command: ModifyOrder) -> bool:
        """A modification re-prices the order's hold: a new limit price, or (to MARKET / SL-M)
        the last tick price; a new quantity. True when the hold changed."""
        with self._lock:
            coid = command.client_order_id
            before = self.holds.get(coid)
            if before is None:
                return False
            unit_price = None
            if command.order_type is not None or command.price is not None:
                order_type = command.order_type or ("LIMIT" if command.price else "MARKET")
                mark = self._marks.get(before.symbol or "")
                unit_price = order_value(order_type, command.price, mark.price if mark else None)
            return self._hold_changed(
                coid,
                before,
                self.holds.modified(coid, quantity=command.quantity, unit_price=unit_price),
            )

    def order_event(self, event: Message) -> bool:
        """An order's state from `orders.events`: partial fills shrink its hold, the end
        releases it. True when the hold changed."""
        with self._lock:
            if isinstance(event, OrderUpdated):
                terminal = event.status in ("COMPLETE", "CANCELLED", "REJECTED")
                filled = event.filled_quantity
            elif isinstance(event, OrderCancelled):
                terminal, filled = True, event.filled_quantity
            elif isinstance(event, OrderRejected):
                terminal, filled = True, 0
            else:
                return False
            coid = event.client_order_id
            changed = False
            if isinstance(event, OrderUpdated) and not terminal and (event.quantity or event.price):
                before = self.holds.get(coid)
                changed = self._hold_changed(
                    coid,
                    before,
                    self.holds.modified(coid, quantity=event.quantity, unit_price=event.price),
                )
            before = self.holds.get(coid)
            reported = self._hold_changed(
                coid, before, self.holds.reported(coid, filled, terminal=terminal)
            )
            return changed or reported

    def _hold_changed(self, coid: str, before: Hold | None, hold: Hold | None) -> bool:
        if hold is None:
            return False
        try:
            self.store.record_hold(hold, now=self.clock())
        except Exception:
            self.holds.restore(coid, before)
            raise
        self.book.blocked_funds = self.holds.total()
        self.version += 1
        return True

    def blocked_orders(self) -> dict[str, Any]:
        with self._lock:
            return {
                "blocked_unknown_orders": self.holds.unknown(),
                "open_orders": [
                    {
                        "client_order_id": h.client_order_id,
                        "symbol": h.symbol,
                        "side": h.side,
                        "quantity": h.quantity,
                        "remaining": h.remaining,
                        "unit_price": str(h.unit_price) if h.unit_price is not None else None,
                        "blocked": str(h.blocked),
                    }
                    for h in self.holds.open_holds()
                ],
            }

    # ------------------------------------------------------------ cash

    def move_cash(self, key: str, amount: Decimal, note: str = "") -> bool:
        with self._lock:
            movement = CashMovement(key, q4(amount), self.clock(), note)
            if not self.book.move_cash(movement):
                return False
            try:
                self.store.record_cash(movement)
            except Exception:
                self.book.drop_cash(key)
                raise
            self.version += 1
            return True

    # ------------------------------------------------------------ reads

    def rendered(self, key: str) -> bytes | None:
        """The JSON body rendered for `key` at the current state version, if any (no lock: a
        stale read only misses the cache)."""
        hit = self._rendered.get(key)
        return hit[1] if hit is not None and hit[0] == self.version else None

    def render(self, key: str, build: Callable[[], Any]) -> bytes:
        """Build and remember the JSON body of a read model for the current state version."""
        with self._lock:
            hit = self._rendered.get(key)
            if hit is not None and hit[0] == self.version:
                return hit[1]
            body = json.dumps(build(), separators=(",", ":")).encode()
            self._rendered[key] = (self.version, body)
            return body

    def valuation(self) -> Valuation:
        with self._lock:
            return self.book.valuation(self.marks())

    def positions(self, *, include_closed: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            marks = self.marks()
            return [
                position_json(p, marks.get(p.symbol))
                for p in self.book.positions(open_only=not include_closed)
            ]

    def position(self, symbol: str) -> list[dict[str, Any]]:
        with self._lock:
            found = self.book.positions_for(symbol)
            if not found:
                raise NotFoundError(f"no position in {symbol}", code="unknown_symbol")
            mark = self.marks().get(symbol)
            return [position_json(p, mark) for p in found]

    def trades(self) -> list[dict[str, Any]]:
        with self._lock:
            return [trip_json(t) for t in self.book.round_trips()]

    # ------------------------------------------------------------ equity

    def snapshot(self, *, session_day: date | None = None) -> EquitySnapshot | None:
        """Persist an equity snapshot and queue it for `portfolio.events`. With `session_day`:
        the end-of-day snapshot of that session, None when that day already has one."""
        with self._lock:
            v = self.valuation()
            now = self.clock()
            msg = EquitySnapshot(
                equity=v.equity,
                cash=v.cash,
                realised_pnl=v.realised_net,
                unrealised_pnl=v.unrealised,
                open_positions=v.open_positions,
                at=now,
                session_day=session_day,
            )
            row = SnapshotRow(
                now, v.equity, v.cash, v.realised_net, v.unrealised, v.gross_exposure,
                v.open_positions, session_day,
            )  # fmt: skip
            if not self.store.record_snapshot(row, _outbox([msg], None)[0]):
                return None
            return msg

    def end_of_day(self, day: date) -> EquitySnapshot | None:
        """The end-of-day snapshot of `day`, taken once whatever the repetition of the signal;
        None when that day already has one."""
        with self._lock:
            if self.store.has_end_of_day(day):
                return None
            return self.snapshot(session_day=day)

    def equity_points(self, *, end_of_day_only: bool = False) -> list[performance.EquityPoint]:
        points = [
            performance.EquityPoint(s.at, s.equity, s.gross_exposure)
            for s in self.store.snapshots()
            if s.session_day is not None or not end_of_day_only
        ]
        if end_of_day_only:
            return points
        v = self.valuation()
        points.append(performance.EquityPoint(self.clock(), v.equity, v.gross_exposure))
        return points

    def performance(self) -> dict[str, Any]:
        with self._lock:
            trips = self.book.round_trips()
            capital = self.book.initial_capital
            v = self.valuation()
            state = self.export_seed_state()
        report = performance.compute(
            [t.realised_net for t in trips], self.equity_points(), initial_equity=capital
        )
        return {
            **report.to_json(),
            "seed_metrics": seed_metrics(state),
            "realised_pnl_net_rupees": str(paise(v.realised_net)),  # money to the paisa here
            "unrealised_pnl_rupees": str(paise(v.unrealised)),
            "charges_rupees": str(paise(v.charges)),
        }

    # ------------------------------------------------------------ seed

    def import_seed(self, state: SeedState) -> dict[str, Any]:
        """Import a seed `data/portfolio_state.json` into an empty ledger (once)."""
        digest = hashlib.sha256(
            json.dumps(state.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        with self._lock:
            done = self.store.meta("seed_import_sha256")
            if done == digest:
                return {"imported": False, "reason": "already imported"}
            if done is not None:
                raise ConflictError("a different seed state was already imported",
                                    code="seed_already_imported")  # fmt: skip
            if self.book.fills() or self.book.cash_movements():
                raise ConflictError(
                    "the ledger already has fills or cash movements; import into an empty one",
                    code="ledger_not_empty",
                )
            fills = seed_fills(state)
            trips = seed_round_trips(state)
            trial = Book(state.initial_capital)
            trial.load(fills)
            pairs = [(f, next(p for p in trial.positions() if p.key == f.key)) for f in fills]
            self.store.record_seed_import(
                digest=digest, initial_capital=state.initial_capital, fills=pairs, trips=trips
            )
            self.load()
            return {"imported": True, "positions": len(fills), "closed_positions": len(trips)}

    def export_seed_state(self) -> dict[str, Any]:
        """The ledger in the seed's `portfolio_state.json` shape."""
        with self._lock:
            book = self.book
            realised = book.realised_net()
            positions = {}
            for p in book.positions(open_only=True):
                positions[p.symbol] = {
                    "symbol": p.symbol,
                    "entry_price": float(p.average_price),
                    "qty": p.quantity,
                    "entry_time": ist_iso(p.opened_at) if p.opened_at else None,
                    "partial_exit_1": len(p.exits) >= 1,
                    "partial_exit_2": len(p.exits) >= 2,
                    "product": p.product,
                }
            closed = [
                {
                    "symbol": t.symbol,
                    "entry_price": float(t.entry_price),
                    "qty": t.quantity,
                    "entry_time": ist_iso(t.opened_at),
                    "exit_price": float(t.exit_price),
                    "exit_time": ist_iso(t.closed_at),
                    "exit_reason": t.exits[-1].reason if t.exits else "",
                    "pnl": float(t.realised_net),
                    "pnl_pct": float((t.exit_price - t.entry_price) / t.entry_price)
                    * (1 if t.direction == "LONG" else -1),
                }
                for t in book.round_trips()
            ]
            return {
                "initial_capital": float(book.initial_capital),
                "current_capital": float(book.initial_capital + book.net_deposits() + realised),
                "positions": positions,
                "closed_positions": closed,
            }


def _hold_fields(h: Hold) -> dict[str, Any]:
    return {name: getattr(h, name) for name in Hold.__slots__}


def position_json(p: Position, mark: Decimal | None) -> dict[str, Any]:
    return {
        "exchange": p.exchange,
        "symbol": p.symbol,
        "product": p.product,
        "quantity": p.quantity,
        "average_price": str(p.average_price),
        "last_price": str(mark) if mark is not None else None,
        "unrealised_pnl": str(paise(p.unrealised(mark))),
        "realised_pnl_gross": str(paise(p.realised_gross)),
        "realised_pnl_net": str(paise(p.realised_net)),
        "charges": str(paise(p.charges)),
        "opened_at": ist_iso(p.opened_at) if p.opened_at else None,
        "lots": [
            {
                "quantity": lot.quantity,
                "price": str(q4(lot.price)),
                "opened_at": ist_iso(lot.opened_at),
            }
            for lot in p.lots
        ],
        "partial_exits": [exit_json(e) for e in p.exits],
        "fills": p.fills,
    }


def exit_json(e: Any) -> dict[str, Any]:
    return {
        "trade_id": e.trade_id,
        "quantity": e.quantity,
        "price": str(q4(e.price)),
        "at": ist_iso(e.at),
        "reason": e.reason,
        "realised_pnl_gross": str(paise(e.realised_gross)),
        "charges": str(paise(e.charges)),
        "realised_pnl_net": str(paise(e.realised_net)),
    }


def trip_json(t: RoundTrip) -> dict[str, Any]:
    return {
        "exchange": t.exchange,
        "symbol": t.symbol,
        "product": t.product,
        "direction": t.direction,
        "quantity": t.quantity,
        "entry_price": str(t.entry_price),
        "exit_price": str(t.exit_price),
        "opened_at": ist_iso(t.opened_at),
        "closed_at": ist_iso(t.closed_at),
        "realised_pnl_gross": str(paise(t.realised_gross)),
        "charges": str(paise(t.charges)),
        "realised_pnl_net": str(paise(t.realised_net)),
        "exits": [exit_json(e) for e in t.exits],
        "source": t.source,
    }
