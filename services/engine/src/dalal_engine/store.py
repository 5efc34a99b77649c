"""SQL adapter of the live loop's state (SQLAlchemy 2 Core; schema by Alembic in migrations/).

Tables (prefix `engine_`): the bars the loop has seen (its indicator history), each strategy
instance's per-symbol state and position, the order intents it emitted (an outbox: written
before publishing, marked published after), the trades it has applied, its risk decisions,
backtest jobs (request, progress, summary), parameter sweeps and their trials, and a key/value
meta table (the loop's mode:
running, paused or stopped). Money is text (exact Decimal) and times
are stored as UTC ISO strings, identical on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from dalal_engine.risk import RiskDecision
from dalal_shared import db, outbox
from dalal_shared.accounting import ZERO, Lot
from dalal_shared.messages import CancelOrder, Envelope, Message, PlaceOrder, RiskDecided
from dalal_shared.streams import ENGINE_DECISIONS, ORDERS_COMMANDS
from dalal_shared.timeutil import to_utc

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version_engine"

metadata = sa.MetaData()

bars_t = sa.Table(
    "engine_bars",
    metadata,
    sa.Column("exchange", sa.String(8), primary_key=True),
    sa.Column("symbol", sa.String(40), primary_key=True),
    sa.Column("interval", sa.String(16), primary_key=True),
    sa.Column("start", sa.String(40), primary_key=True),  # UTC ISO, sorts by time
    sa.Column("open", sa.Float, nullable=False),
    sa.Column("high", sa.Float, nullable=False),
    sa.Column("low", sa.Float, nullable=False),
    sa.Column("close", sa.Float, nullable=False),
    sa.Column("volume", sa.BigInteger, nullable=False),
)
state_t = sa.Table(
    "engine_strategy_state",
    metadata,
    sa.Column("strategy", sa.String(40), primary_key=True),
    sa.Column("symbol", sa.String(40), primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("average_price", sa.String(40), nullable=False),
    sa.Column("opened_at", sa.String(40)),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("last_bar", sa.String(40)),
    sa.Column("lots", sa.Text),  # JSON: the open FIFO lots (migration 0006)
)
intents_t = sa.Table(
    "engine_intents",
    metadata,
    sa.Column("client_order_id", sa.String(20), primary_key=True),
    sa.Column("strategy", sa.String(40), nullable=False),
    sa.Column("symbol", sa.String(40), nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("filled_quantity", sa.Integer, nullable=False),
    sa.Column("published", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    # why it ended REJECTED or CANCELLED (the broker's reason, or `bus_unavailable`)
    sa.Column("reason", sa.String(200)),
    # the outbox's read after every step that ordered (`unpublished`): a few rows of a table
    # that grows with every order, found without reading it whole
    sa.Index("ix_engine_intents_published", "published", "created_at"),
)
trades_t = sa.Table(
    "engine_trades",
    metadata,
    sa.Column("trade_id", sa.String(64), primary_key=True),
    sa.Column("client_order_id", sa.String(20), nullable=False),
)
decisions_t = sa.Table(
    "engine_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("strategy", sa.String(40), nullable=False),
    sa.Column("symbol", sa.String(40), nullable=False),
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("approved", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("detail", sa.String(400), nullable=False),
    sa.Column("client_order_id", sa.String(20)),
)
backtests_t = sa.Table(
    "engine_backtests",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # queued, running, done, failed
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("bars_done", sa.Integer, nullable=False),
    sa.Column("bars_total", sa.Integer, nullable=False),
    sa.Column("eta_seconds", sa.Float),
    sa.Column("summary", sa.Text),
    sa.Column("error", sa.String(500)),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("started_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
)
sweeps_t = sa.Table(
    "engine_sweeps",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # queued, running, finishing, done
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("trials_total", sa.Integer, nullable=False),
    sa.Column("best", sa.Text),  # the best trial (JSON), once done
    sa.Column("error", sa.String(500)),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
)
sweep_trials_t = sa.Table(
    "engine_sweep_trials",
    metadata,
    sa.Column("sweep_id", sa.String(40), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),  # the point's place in the grid
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # queued, running, done, failed
    sa.Column("metrics", sa.Text),
    sa.Column("error", sa.String(500)),
    sa.Column("worker", sa.String(120)),
    sa.Column("seconds", sa.Float),
    sa.Column("started_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
)
# what a step publishes besides its orders (RiskDecided events, CancelOrder commands), written in
# the step's transaction with the envelope ids fixed then (dalal_shared.outbox); the order
# commands keep their own outbox, the intents table (a hand-sent order must never go out late)
outbox_t = outbox.outbox_table(metadata, "engine_outbox")
SOURCE = "engine"
meta_t = sa.Table(
    "engine_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def iso(value: datetime) -> str:
    return to_utc(value).isoformat()


# the statements of the per-bar path, compiled once and run on the driver's cursor
# (`db.Prepared`): SQLAlchemy's execute cost more than SQLite's own work for these short rows,
# most of the SQL part of a minute's burst of 50 bars
_BAR_KEYS = ("exchange", "symbol", "interval", "start", "open", "high", "low", "close", "volume")
_BARS_NEW = {  # a bar stored already is left as it is (the conflict skipped by the database)
    "sqlite": db.Prepared(sqlite_insert(bars_t).on_conflict_do_nothing(), _BAR_KEYS),
    "postgresql": db.Prepared(postgresql_insert(bars_t).on_conflict_do_nothing(), _BAR_KEYS),
}
_STATE_DELETE = db.Prepared(
    sa.delete(state_t).where(
        state_t.c.strategy == sa.bindparam("n"), state_t.c.symbol == sa.bindparam("y")
    )
)
_STATE_INSERT = db.Prepared(
    sa.insert(state_t),
    ("strategy", "symbol", "quantity", "average_price", "opened_at", "state", "last_bar", "lots"),
)
_INTENT_EXISTS = db.Prepared(
    sa.select(intents_t.c.client_order_id).where(intents_t.c.client_order_id == sa.bindparam("c"))
)
_INTENT_INSERT = db.Prepared(
    sa.insert(intents_t),
    (
        "client_order_id",
        "strategy",
        "symbol",
        "command",
        "status",
        "filled_quantity",
        "published",
        "created_at",
        "reason",
    ),
)
_DECISION_INSERT = db.Prepared(
    sa.insert(decisions_t),
    (
        "at",
        "strategy",
        "symbol",
        "action",
        "approved",
        "reason",
        "quantity",
        "detail",
        "client_order_id",
    ),
)
_UNPUBLISHED = db.Prepared(
    sa.select(intents_t.c.command)
    .where(intents_t.c.published == sa.false(), intents_t.c.status != "REJECTED")
    .where(intents_t.c.status != "HELD")
    .order_by(intents_t.c.created_at)
)
_PUBLISHED = db.Prepared(
    sa.update(intents_t)
    .where(intents_t.c.client_order_id == sa.bindparam("c"))
    .values(published=True)
)
_OUTBOX_INSERT = db.Prepared(sa.insert(outbox_t), ("envelope_id", "stream", "fields", "created_at"))


def _bar_row(exchange: str, symbol: str, interval: str, bar: StoredBar) -> dict[str, Any]:
    return {
        "exchange": exchange,
        "symbol": symbol,
        "interval": interval,
        "start": iso(bar.start),
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
    }


def _insert_bars(c: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Bar rows in one statement; a bar stored already is left as it is."""
    if rows:
        _BARS_NEW[c.dialect.name].run(c, rows)


def _state_row(strategy: str, symbol: str, st: SymbolState) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "symbol": symbol,
        "quantity": st.quantity,
        "average_price": str(st.average_price),
        "opened_at": iso(st.opened_at) if st.opened_at else None,
        "state": json.dumps(st.state or {}),
        "last_bar": iso(st.last_bar) if st.last_bar else None,
        "lots": json.dumps([_lot_json(lot) for lot in st.lots]),
    }


@dataclass
class _Rows:
    """The rows of a `batch()`, written at its end (each list in one executemany)."""

    bars: list[dict[str, Any]] = field(default_factory=list)
    state_keys: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def write(self, c: sa.Connection) -> None:
        _insert_bars(c, self.bars)
        if self.state_keys:
            _STATE_DELETE.run(c, self.state_keys)
            _STATE_INSERT.run(c, self.states)
        _DECISION_INSERT.run(c, self.decisions)
        _OUTBOX_INSERT.run(c, self.outbox)


def _lot_json(lot: Lot) -> dict[str, str | int]:
    return {
        "quantity": lot.quantity,
        "price": str(lot.price),
        "opened_at": iso(lot.opened_at),
        "trade_id": lot.trade_id,
    }


def _lots(row: Any) -> list[Lot]:
    """The stored lots; a state saved before migration 0006 held one position at its average
    price, which is one lot."""
    if row.lots:
        return [
            Lot(
                int(d["quantity"]),
                Decimal(d["price"]),
                datetime.fromisoformat(d["opened_at"]),
                d["trade_id"],
                ZERO,
            )
            for d in json.loads(row.lots)
        ]
    if row.quantity and row.opened_at:
        opened = datetime.fromisoformat(row.opened_at)
        return [Lot(row.quantity, Decimal(row.average_price), opened, "", ZERO)]
    return []


@dataclass(frozen=True, slots=True)
class StoredBar:
    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(slots=True)
class SymbolState:
    quantity: int = 0
    average_price: Decimal = Decimal("0")
    opened_at: datetime | None = None
    state: dict[str, Any] | None = None
    last_bar: datetime | None = None
    # the open FIFO lots (`dalal_shared.accounting`): quantity and average price above are
    # the kernel's figures for them, the portfolio ledger's for the same fills
    lots: list[Lot] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Intent:
    command: PlaceOrder
    strategy: str
    status: str
    filled_quantity: int
    published: bool
    created_at: datetime | None = None  # the signal bar's start (a tick's time for levels)
    reason: str | None = None  # why it was rejected or cancelled

    @property
    def leg(self) -> str:
        return self.command.client_order_id.split("-", 1)[0]


# in flight: may still fill (HELD: a sell waiting for the position's stop at the exchange to be
# cancelled before it is published, so the two never both sell)
OPEN_STATUSES = ("SUBMITTED", "OPEN", "CANCELLING", "HELD")
TERMINAL_STATUSES = ("COMPLETE", "CANCELLED", "REJECTED")


class EngineStore(db.SqlStore):
    migrations = MIGRATIONS
    version_table = VERSION_TABLE
    # the correlation id of the event being handled (`LiveEngine.traced`): the outbox rows a
    # step writes carry it, so a decision or a cancel traces back to its bar or tick
    corr: str | None = None
    # set when a step wrote outbox rows: the handlers publish them after the step
    outbox_written: bool = False
    # the open transaction of `batch()`: the steps inside write into it
    _batch: sa.Connection | None = None
    _rows: _Rows | None = None  # and the rows they leave for its end

    def hot_statements(self, dialect_name: str) -> Sequence[db.Prepared]:
        """A bar's and an order's statements, compiled when the store opens: compiled at their
        first row instead, they put ~1.6 ms on the first order after a start (five of them)."""
        bars_new = _BARS_NEW.get(dialect_name)
        return (
            *((bars_new,) if bars_new is not None else ()),
            _STATE_DELETE,
            _STATE_INSERT,
            _INTENT_EXISTS,
            _INTENT_INSERT,
            _DECISION_INSERT,
            _UNPUBLISHED,
            _PUBLISHED,
            _OUTBOX_INSERT,
        )

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The steps inside (`record_bar`, `record_signals`) share one transaction, committed
        when the block ends (rolled back when it raises). Their bar, state, decision and
        outbox rows are written at the end, one statement each for all of them (in the order
        the steps wrote them); what a step reads back (whether an intent exists) is written at
        once. One bar per symbol per batch: a state row is written once per batch."""
        if self._batch is not None:
            raise RuntimeError("a batch is open already")
        with self.engine.begin() as c:
            self._batch, self._rows = c, _Rows()
            try:
                yield
                self._rows.write(c)
            finally:
                self._batch = self._rows = None

    def _begin(self) -> AbstractContextManager[sa.Connection]:
        return nullcontext(self._batch) if self._batch is not None else self.engine.begin()

    # ---------------------------------------------------------------- meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(meta_t.c.value).where(meta_t.c.key == key)).first()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as c:
            c.execute(sa.delete(meta_t).where(meta_t.c.key == key))
            c.execute(sa.insert(meta_t).values(key=key, value=value))

    # ---------------------------------------------------------------- bars
    def bars(self, exchange: str, symbol: str, interval: str, limit: int) -> list[StoredBar]:
        q = (
            sa.select(bars_t)
            .where(
                bars_t.c.exchange == exchange,
                bars_t.c.symbol == symbol,
                bars_t.c.interval == interval,
            )
            .order_by(bars_t.c.start.desc())
            .limit(limit)
        )
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return [
            StoredBar(datetime.fromisoformat(r.start), r.open, r.high, r.low, r.close, r.volume)
            for r in reversed(rows)
        ]

    # ---------------------------------------------------------------- one bar's outcome
    def record_bar(
        self,
        *,
        exchange: str,
        symbol: str,
        interval: str,
        bar: StoredBar,
        states: dict[str, SymbolState],
        intents: list[Intent],
        decisions: list[tuple[RiskDecision, str | None]],
        cancels: Sequence[str | tuple[str, str]] | None = None,
        cancel_reason: str = "",
    ) -> list[PlaceOrder]:
        """Store a bar with what it caused, in one transaction; returns the intents that are new
        (an intent whose id exists already is the same signal decided again: not new)."""
        with self._begin() as c:
            if self._rows is not None:
                self._rows.bars.append(_bar_row(exchange, symbol, interval, bar))
            else:
                _insert_bars(c, [_bar_row(exchange, symbol, interval, bar)])
            return self._record(
                c, symbol, bar.start, states, intents, decisions, cancels or [], cancel_reason
            )

    def store_bars(self, bars: Sequence[tuple[str, str, str, StoredBar]]) -> None:
        """Bars that caused nothing ((exchange, symbol, interval, bar)), in one transaction;
        a bar stored already is left as it is."""
        with self.engine.begin() as c:
            _insert_bars(c, [_bar_row(*b) for b in bars])

    def record_signals(
        self,
        *,
        symbol: str,
        at: datetime,
        states: dict[str, SymbolState],
        intents: list[Intent],
        decisions: list[tuple[RiskDecision, str | None]],
        cancels: Sequence[str | tuple[str, str]],
        cancel_reason: str = "",
    ) -> list[PlaceOrder]:
        """Store what a tick or a bar caused without a bar (levels hit, stale orders to
        cancel: those intents become CANCELLING; a cancel given as (id, reason) has its own
        reason), in one transaction; returns new intents (HELD ones included: they are
        published when released)."""
        with self._begin() as c:
            return self._record(c, symbol, at, states, intents, decisions, cancels, cancel_reason)

    def _record(
        self,
        c: sa.Connection,
        symbol: str,
        at: datetime,
        states: dict[str, SymbolState],
        intents: list[Intent],
        decisions: list[tuple[RiskDecision, str | None]],
        cancels: Sequence[str | tuple[str, str]],
        cancel_reason: str = "",
    ) -> list[PlaceOrder]:
        """The rows of one step; its cancels and decisions also go to the outbox (in this
        transaction, after its intents: the relay publishes them after the new orders)."""
        new: list[PlaceOrder] = []
        events: list[dict[str, Any]] = []
        for cancel_of in cancels:
            coid, reason = cancel_of if isinstance(cancel_of, tuple) else (cancel_of, cancel_reason)
            moved = c.execute(
                sa.update(intents_t)
                .where(
                    intents_t.c.client_order_id == coid,
                    intents_t.c.status.in_(("SUBMITTED", "OPEN")),
                )
                .values(status="CANCELLING")
            ).rowcount
            if moved:
                cancel = CancelOrder(client_order_id=coid, reason=reason[:200] or None)
                events.append(outbox.row(ORDERS_COMMANDS, cancel, source=SOURCE, corr=self.corr))
            else:  # a HELD sell was never published: nothing to cancel at the broker
                c.execute(
                    sa.update(intents_t)
                    .where(intents_t.c.client_order_id == coid, intents_t.c.status == "HELD")
                    .values(status="CANCELLED", reason=reason[:200] or None, published=True)
                )
        rows = self._rows
        for strategy, st in states.items():
            if rows is not None:
                rows.state_keys.append({"n": strategy, "y": symbol})
                rows.states.append(_state_row(strategy, symbol, st))
            else:
                self._put_state(c, strategy, symbol, st)
        for intent in intents:
            coid = intent.command.client_order_id
            if _INTENT_EXISTS.first(c, {"c": coid}):
                continue
            _INTENT_INSERT.run(
                c,
                {
                    "client_order_id": coid,
                    "strategy": intent.strategy,
                    "symbol": symbol,
                    "command": intent.command.model_dump_json(),
                    "status": "HELD" if intent.status == "HELD" else "SUBMITTED",
                    "filled_quantity": 0,
                    "published": False,
                    "created_at": iso(at),
                    "reason": None,
                },
            )
            new.append(intent.command)
        for decision, decided_coid in decisions:
            row = {
                "at": iso(decision.at),
                "strategy": decision.strategy,
                "symbol": decision.symbol,
                "action": decision.action,
                "approved": decision.approved,
                "reason": decision.reason,
                "quantity": decision.quantity,
                "detail": decision.detail[:400],
                "client_order_id": decided_coid,
            }
            if rows is not None:
                rows.decisions.append(row)
            else:
                _DECISION_INSERT.run(c, row)
            event = RiskDecided(
                strategy=decision.strategy,
                symbol=decision.symbol,
                action=decision.action,
                approved=decision.approved,
                reason=decision.reason,
                quantity=decision.quantity,
                detail=decision.detail[:500],
                decided_at=decision.at,
            )
            events.append(outbox.row(ENGINE_DECISIONS, event, source=SOURCE, corr=self.corr))
        if events:
            if rows is not None:
                rows.outbox.extend(events)
            else:
                _OUTBOX_INSERT.run(c, events)
            self.outbox_written = True
        return new

    def outbox_messages(self) -> list[Message]:
        """What the outbox holds, not yet published, in write order (decoded)."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(outbox_t.c.fields).order_by(outbox_t.c.seq)).all()
        return [Envelope.from_fields(json.loads(r.fields)).message for r in rows]

    def requeue_cancels(self) -> int:
        """A CancelOrder in the outbox for every intent still CANCELLING (at start: cancelling
        twice is harmless, a cancel lost with a crash of an older version is not); how many."""
        with self.engine.begin() as c:
            coids = [
                r[0]
                for r in c.execute(
                    sa.select(intents_t.c.client_order_id).where(intents_t.c.status == "CANCELLING")
                )
            ]
            if coids:
                c.execute(
                    sa.insert(outbox_t),
                    [
                        outbox.row(
                            ORDERS_COMMANDS,
                            CancelOrder(client_order_id=coid, reason="stale"),
                            source=SOURCE,
                        )
                        for coid in coids
                    ],
                )
                self.outbox_written = True
        return len(coids)

    def _put_state(self, c: sa.Connection, strategy: str, symbol: str, st: SymbolState) -> None:
        _STATE_DELETE.run(c, {"n": strategy, "y": symbol})
        _STATE_INSERT.run(c, _state_row(strategy, symbol, st))

    def put_state(self, strategy: str, symbol: str, st: SymbolState) -> None:
        with self.engine.begin() as c:
            self._put_state(c, strategy, symbol, st)

    def states(self) -> dict[tuple[str, str], SymbolState]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(state_t)).all()
        return {
            (r.strategy, r.symbol): SymbolState(
                r.quantity,
                Decimal(r.average_price),
                datetime.fromisoformat(r.opened_at) if r.opened_at else None,
                json.loads(r.state),
                datetime.fromisoformat(r.last_bar) if r.last_bar else None,
                _lots(r),
            )
            for r in rows
        }

    # ---------------------------------------------------------------- intents and fills
    def unpublished(self) -> list[PlaceOrder]:
        with self.engine.connect() as c:
            rows = _UNPUBLISHED.all(c)
        return [PlaceOrder.model_validate_json(r[0]) for r in rows]

    def mark_published(self, *client_order_ids: str) -> None:
        with self.engine.begin() as c:
            _PUBLISHED.run(c, [{"c": coid} for coid in client_order_ids])

    def intents(self, *, open_only: bool = False) -> list[Intent]:
        """Every intent (or the open ones: what the live loop keeps in memory at start)."""
        q = sa.select(intents_t)
        if open_only:
            q = q.where(intents_t.c.status.in_(OPEN_STATUSES))
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return [_intent(r) for r in rows]

    def intent(self, client_order_id: str) -> Intent | None:
        """One intent by its id (a primary-key lookup), None when the id is not the loop's."""
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(intents_t).where(intents_t.c.client_order_id == client_order_id)
            ).first()
        return _intent(row) if row is not None else None

    def has_intent(self, client_order_id: str) -> bool:
        with self.engine.connect() as c:
            return (
                c.execute(
                    sa.select(intents_t.c.client_order_id).where(
                        intents_t.c.client_order_id == client_order_id
                    )
                ).first()
                is not None
            )

    def last_close(self, exchange: str, symbol: str) -> float | None:
        """The close of the symbol's latest stored bar of any interval (None: never seen)."""
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(bars_t.c.close)
                .where(bars_t.c.exchange == exchange, bars_t.c.symbol == symbol)
                .order_by(bars_t.c.start.desc())
                .limit(1)
            ).first()
        return float(row[0]) if row is not None else None

    def latest_bars(self) -> dict[str, datetime]:
        """The start of the latest stored bar of each interval (where the market was)."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(bars_t.c.interval, sa.func.max(bars_t.c.start)).group_by(
                    bars_t.c.interval
                )
            ).all()
        return {r[0]: datetime.fromisoformat(r[1]) for r in rows if r[1]}

    def put_protection_intent(self, command: PlaceOrder, strategy: str, at: datetime) -> None:
        """The exit a protective GTT will place, as an intent of `strategy` (status GTT: not
        in flight, never published by the outbox), so its fills move the position; its
        quantity follows the protection's while it has not fired."""
        coid = command.client_order_id
        with self.engine.begin() as c:
            done = c.execute(
                sa.update(intents_t)
                .where(intents_t.c.client_order_id == coid, intents_t.c.status == "GTT")
                .values(command=command.model_dump_json())
            ).rowcount
            if (
                done
                or c.execute(
                    sa.select(intents_t.c.client_order_id).where(
                        intents_t.c.client_order_id == coid
                    )
                ).first()
            ):
                return
            c.execute(
                sa.insert(intents_t).values(
                    client_order_id=coid,
                    strategy=strategy,
                    symbol=command.symbol,
                    command=command.model_dump_json(),
                    status="GTT",
                    filled_quantity=0,
                    published=True,
                    created_at=iso(at),
                )
            )

    def release_held(self, command: PlaceOrder) -> bool:
        """A HELD sell goes out now with these terms (its quantity cut to what the position
        still holds): SUBMITTED and unpublished, so `unpublished` sends it. False when it was
        not HELD (released or dropped before)."""
        with self.engine.begin() as c:
            return bool(
                c.execute(
                    sa.update(intents_t)
                    .where(
                        intents_t.c.client_order_id == command.client_order_id,
                        intents_t.c.status == "HELD",
                    )
                    .values(status="SUBMITTED", command=command.model_dump_json(), published=False)
                ).rowcount
            )

    def drop_held(self, client_order_id: str, reason: str) -> bool:
        """A HELD sell that will never go out: CANCELLED (and never published)."""
        with self.engine.begin() as c:
            return bool(
                c.execute(
                    sa.update(intents_t)
                    .where(
                        intents_t.c.client_order_id == client_order_id,
                        intents_t.c.status == "HELD",
                    )
                    .values(status="CANCELLED", reason=reason[:200], published=True)
                ).rowcount
            )

    def set_intent_terms(self, command: PlaceOrder) -> None:
        """The terms an order has at the exchange now (the broker confirmed a modify)."""
        with self.engine.begin() as c:
            c.execute(
                sa.update(intents_t)
                .where(intents_t.c.client_order_id == command.client_order_id)
                .values(command=command.model_dump_json())
            )

    def set_intent_status(
        self,
        client_order_id: str,
        status: str,
        reason: str | None = None,
        *,
        only_from: tuple[str, ...] | None = None,
    ) -> bool:
        """Move an intent to `status` (from one of `only_from` when given); False when no
        row changed."""
        q = sa.update(intents_t).where(intents_t.c.client_order_id == client_order_id)
        if only_from is not None:
            q = q.where(intents_t.c.status.in_(only_from))
        values: dict[str, Any] = {"status": status}
        if reason is not None:
            values["reason"] = reason[:200]
        with self.engine.begin() as c:
            return bool(c.execute(q.values(**values)).rowcount)

    def apply_trade(
        self,
        *,
        trade_id: str,
        client_order_id: str,
        quantity: int,
        strategy: str,
        symbol: str,
        state: SymbolState,
        order_quantity: int,
    ) -> bool:
        """Record a trade once (False when seen before) with the position it leaves."""
        with self.engine.begin() as c:
            if c.execute(
                sa.select(trades_t.c.trade_id).where(trades_t.c.trade_id == trade_id)
            ).first():
                return False
            c.execute(
                sa.insert(trades_t).values(trade_id=trade_id, client_order_id=client_order_id)
            )
            row = c.execute(
                sa.select(intents_t.c.filled_quantity).where(
                    intents_t.c.client_order_id == client_order_id
                )
            ).first()
            filled = (row[0] if row else 0) + quantity
            # a late fill of a cancelled order (it traded before the cancel reached the
            # exchange) counts, but does not bring the order back to life
            ended = intents_t.c.status.in_(("CANCELLED", "REJECTED", "CANCELLING"))
            c.execute(
                sa.update(intents_t)
                .where(intents_t.c.client_order_id == client_order_id)
                .values(
                    filled_quantity=filled,
                    status="COMPLETE"
                    if filled >= order_quantity
                    else sa.case((ended, intents_t.c.status), else_="OPEN"),
                )
            )
            self._put_state(c, strategy, symbol, state)
        return True

    def decisions(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(decisions_t).order_by(decisions_t.c.id.desc()).limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    # ---------------------------------------------------------------- backtest jobs
    def create_backtest(self, backtest_id: str, request: dict[str, Any], at: datetime) -> None:
        with self.engine.begin() as c:
            c.execute(
                sa.insert(backtests_t).values(
                    id=backtest_id,
                    status="queued",
                    request=json.dumps(request),
                    bars_done=0,
                    bars_total=0,
                    created_at=iso(at),
                )
            )

    def update_backtest(self, backtest_id: str, **values: Any) -> None:
        for key in ("started_at", "finished_at"):
            if isinstance(values.get(key), datetime):
                values[key] = iso(values[key])
        if "summary" in values and values["summary"] is not None:
            values["summary"] = json.dumps(values["summary"])
        with self.engine.begin() as c:
            c.execute(sa.update(backtests_t).where(backtests_t.c.id == backtest_id).values(values))

    def backtest(self, backtest_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(backtests_t).where(backtests_t.c.id == backtest_id)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out["request"] = json.loads(out["request"])
        out["summary"] = json.loads(out["summary"]) if out["summary"] else None
        return out

    def backtests(self, limit: int) -> list[dict[str, Any]]:
        """The latest backtest jobs, newest first (as `backtest` gives each)."""
        query = (
            sa.select(backtests_t)
            .order_by(backtests_t.c.created_at.desc(), backtests_t.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as c:
            rows = c.execute(query).all()
        out = []
        for row in rows:
            job = dict(row._mapping)
            job["request"] = json.loads(job["request"])
            job["summary"] = json.loads(job["summary"]) if job["summary"] else None
            out.append(job)
        return out

    # ------------------------------------------------------------------ sweeps
    def create_sweep(
        self, sweep_id: str, request: dict[str, Any], points: list[dict[str, Any]], at: datetime
    ) -> None:
        """The sweep and one queued trial per grid point, in one transaction."""
        with self.engine.begin() as c:
            c.execute(
                sa.insert(sweeps_t).values(
                    id=sweep_id,
                    status="queued",
                    request=json.dumps(request),
                    trials_total=len(points),
                    created_at=iso(at),
                )
            )
            c.execute(
                sa.insert(sweep_trials_t),
                [
                    {"sweep_id": sweep_id, "n": n, "params": json.dumps(p), "status": "queued"}
                    for n, p in enumerate(points)
                ],
            )

    def sweep(self, sweep_id: str) -> dict[str, Any] | None:
        """The sweep with its trials (grid order), or None."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(sweeps_t).where(sweeps_t.c.id == sweep_id)).first()
            if row is None:
                return None
            trials = c.execute(
                sa.select(sweep_trials_t)
                .where(sweep_trials_t.c.sweep_id == sweep_id)
                .order_by(sweep_trials_t.c.n)
            ).all()
        out = dict(row._mapping)
        out["request"] = json.loads(out["request"])
        out["best"] = json.loads(out["best"]) if out["best"] else None
        out["trials"] = [_trial(t) for t in trials]
        return out

    def sweep_ids(self, limit: int) -> list[str]:
        """The latest sweeps' ids, newest first."""
        query = (
            sa.select(sweeps_t.c.id)
            .order_by(sweeps_t.c.created_at.desc(), sweeps_t.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as c:
            return [row.id for row in c.execute(query)]

    def start_trial(
        self, sweep_id: str, n: int, worker: str, at: datetime
    ) -> dict[str, Any] | None:
        """Mark a trial running (again, after a worker died in it); None when it has ended
        already (a redelivered task) or is unknown."""
        with self.engine.begin() as c:
            done = c.execute(
                sa.update(sweep_trials_t)
                .where(
                    sweep_trials_t.c.sweep_id == sweep_id,
                    sweep_trials_t.c.n == n,
                    sweep_trials_t.c.status.in_(["queued", "running"]),
                )
                .values(status="running", worker=worker[:120], started_at=iso(at))
            ).rowcount
            if not done:
                return None
            c.execute(
                sa.update(sweeps_t)
                .where(sweeps_t.c.id == sweep_id, sweeps_t.c.status == "queued")
                .values(status="running")
            )
            row = c.execute(
                sa.select(sweep_trials_t).where(
                    sweep_trials_t.c.sweep_id == sweep_id, sweep_trials_t.c.n == n
                )
            ).one()
        return _trial(row)

    def finish_trial(
        self,
        sweep_id: str,
        n: int,
        *,
        metrics: dict[str, Any] | None,
        error: str | None,
        seconds: float,
        at: datetime,
    ) -> bool:
        """Record a trial's end (done with its metrics, or failed with why); True when every
        trial of the sweep has ended and this call claimed the sweep's finishing (exactly one
        caller does)."""
        with self.engine.begin() as c:
            c.execute(
                sa.update(sweep_trials_t)
                .where(
                    sweep_trials_t.c.sweep_id == sweep_id,
                    sweep_trials_t.c.n == n,
                    sweep_trials_t.c.status == "running",
                )
                .values(
                    status="failed" if error else "done",
                    metrics=json.dumps(metrics) if metrics is not None else None,
                    error=error[:500] if error else None,
                    seconds=seconds,
                    finished_at=iso(at),
                )
            )
        with self.engine.begin() as c:
            open_trials = c.execute(
                sa.select(sa.func.count()).where(
                    sweep_trials_t.c.sweep_id == sweep_id,
                    sweep_trials_t.c.status.in_(["queued", "running"]),
                )
            ).scalar_one()
            if open_trials:
                return False
            return bool(
                c.execute(
                    sa.update(sweeps_t)
                    .where(sweeps_t.c.id == sweep_id, sweeps_t.c.status.in_(["queued", "running"]))
                    .values(status="finishing")
                ).rowcount
            )

    def finish_sweep(
        self, sweep_id: str, *, best: dict[str, Any] | None, error: str | None, at: datetime
    ) -> None:
        with self.engine.begin() as c:
            c.execute(
                sa.update(sweeps_t)
                .where(sweeps_t.c.id == sweep_id)
                .values(
                    status="failed" if error else "done",
                    best=json.dumps(best) if best is not None else None,
                    error=error[:500] if error else None,
                    finished_at=iso(at),
                )
            )


def _trial(r: Any) -> dict[str, Any]:
    out = dict(r._mapping)
    out["params"] = json.loads(out["params"])
    out["metrics"] = json.loads(out["metrics"]) if out["metrics"] else None
    return out


def _intent(r: Any) -> Intent:
    return Intent(
        PlaceOrder.model_validate_json(r.command),
        r.strategy,
        r.status,
        r.filled_quantity,
        r.published,
        datetime.fromisoformat(r.created_at),
        r.reason,
    )
