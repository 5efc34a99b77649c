"""The order journal (SQL): every intent is written before anything is sent to Kite.

Rows move PENDING (journaled; the send may or may not have reached Kite) -> OPEN / TRIGGER
PENDING / COMPLETE / CANCELLED / REJECTED. A PENDING row is "outcome unknown": before it is
ever sent again, Kite's order book is searched for its tag. Trades are keyed on Kite's
trade_id, so a fill is recorded once however often it is seen. Events go to an outbox in the
same transaction as the state change that causes them and are published after commit, so a
crash between the two loses no event.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import overload

import sqlalchemy as sa
from sqlalchemy import Engine

from dalal_shared import db, outbox
from dalal_shared.messages import Message, PlaceOrder, ProtectPosition
from dalal_shared.sqltypes import Money, UtcDateTime
from dalal_shared.timeutil import ist_iso, utcnow

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version_broker"

PENDING = "PENDING"
TERMINAL = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})

metadata = sa.MetaData()
orders_t = sa.Table(
    "broker_orders",
    metadata,
    sa.Column("client_order_id", sa.String(20), primary_key=True),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("corr", sa.String(64), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("broker_order_id", sa.String(64), unique=True),
    sa.Column("reason", sa.String(64)),
    sa.Column("message", sa.Text),
    sa.Column("filled_quantity", sa.Integer, nullable=False, default=0),
    sa.Column("average_price", Money),
    sa.Column("send_attempts", sa.Integer, nullable=False, default=0),
    sa.Column("terms", sa.Text),  # the current terms after a modify (None: as placed)
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_broker_orders_status", "status"),
)
trades_t = sa.Table(
    "broker_trades",
    metadata,
    sa.Column("trade_id", sa.String(64), primary_key=True),
    sa.Column("client_order_id", sa.String(20), nullable=False),
    sa.Column("broker_order_id", sa.String(64), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price", Money, nullable=False),
    sa.Column("filled_at", UtcDateTime, nullable=False),
)
protections_t = sa.Table(
    "broker_protections",
    metadata,
    sa.Column("client_order_id", sa.String(20), primary_key=True),  # of the order it places
    sa.Column("command", sa.Text, nullable=False),  # the ProtectPosition now in force
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("gtt_id", sa.BigInteger),
    sa.Column("broker_order_id", sa.String(64)),  # the order a triggered GTT placed
    sa.Column("message", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_broker_protections_status", "status"),
)
# events written in the transaction that changes the journal (dalal_shared.outbox: whole
# envelopes, ids fixed when written, deleted once Redis has them)
outbox_t = outbox.outbox_table(metadata, "broker_outbox")


@dataclass(frozen=True)
class OrderRow:
    client_order_id: str
    command: PlaceOrder
    corr: str
    status: str
    broker_order_id: str | None
    reason: str | None
    message: str | None
    filled_quantity: int
    average_price: Decimal | None
    send_attempts: int
    created_at: datetime
    updated_at: datetime
    terms: PlaceOrder | None = None  # after a modify; `command` stays the order as placed

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def current(self) -> PlaceOrder:
        """The order's terms now: the command as placed, with any modification applied."""
        return self.terms or self.command

    def view(self) -> dict[str, object]:
        c = self.current
        return {
            "client_order_id": self.client_order_id,
            "broker_order_id": self.broker_order_id,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "exchange": c.exchange,
            "symbol": c.symbol,
            "side": c.side,
            "quantity": c.quantity,
            "order_type": c.order_type,
            "product": c.product,
            "price": str(c.price) if c.price is not None else None,
            "trigger_price": str(c.trigger_price) if c.trigger_price is not None else None,
            "filled_quantity": self.filled_quantity,
            "average_price": str(self.average_price) if self.average_price is not None else None,
            "created_at": ist_iso(self.created_at),
            "updated_at": ist_iso(self.updated_at),
        }


@dataclass(frozen=True)
class ProtectionRow:
    """A protective GTT: PENDING (being placed: Kite may have it), ACTIVE, then TRIGGERED,
    CANCELLED, EXPIRED or FAILED."""

    client_order_id: str
    command: ProtectPosition
    status: str
    gtt_id: int | None
    broker_order_id: str | None
    message: str | None
    updated_at: datetime

    def view(self) -> dict[str, object]:
        c = self.command
        return {
            "client_order_id": self.client_order_id,
            "status": self.status,
            "gtt_id": self.gtt_id,
            "broker_order_id": self.broker_order_id,
            "message": self.message,
            "exchange": c.exchange,
            "symbol": c.symbol,
            "quantity": c.quantity,
            "stop_price": str(c.stop_price),
            "target_price": str(c.target_price) if c.target_price is not None else None,
            "strategy": c.strategy,
            "updated_at": ist_iso(self.updated_at),
        }


def _protection(r: sa.Row) -> ProtectionRow:
    return ProtectionRow(
        client_order_id=r.client_order_id,
        command=ProtectPosition.model_validate_json(r.command),
        status=r.status,
        gtt_id=r.gtt_id,
        broker_order_id=r.broker_order_id,
        message=r.message,
        updated_at=r.updated_at,
    )


def _row(r: sa.Row) -> OrderRow:
    return OrderRow(
        client_order_id=r.client_order_id,
        command=PlaceOrder.model_validate_json(r.command),
        corr=r.corr,
        status=r.status,
        broker_order_id=r.broker_order_id,
        reason=r.reason,
        message=r.message,
        filled_quantity=r.filled_quantity,
        average_price=r.average_price,
        send_attempts=r.send_attempts,
        created_at=r.created_at,
        updated_at=r.updated_at,
        terms=PlaceOrder.model_validate_json(r.terms) if r.terms else None,
    )


@dataclass(frozen=True)
class NewOrder:
    """An intent to journal (`Journal.insert_many`): `insert`'s arguments."""

    command: PlaceOrder
    corr: str
    status: str
    send_attempts: int = 0
    reason: str | None = None
    message: str | None = None
    events: Sequence[tuple[str, Message]] = ()


def _insert_params(entry: NewOrder, now: datetime) -> dict[str, object]:
    return {
        "client_order_id": entry.command.client_order_id,
        "command": entry.command.model_dump_json(),
        "corr": entry.corr,
        "status": entry.status,
        "reason": entry.reason,
        "message": entry.message,
        "filled_quantity": 0,
        "send_attempts": entry.send_attempts,
        "created_at": now,
        "updated_at": now,
    }


def _written(entry: NewOrder, now: datetime) -> OrderRow:
    """The row `_insert_params` writes, as reading it back would give it."""
    return OrderRow(
        client_order_id=entry.command.client_order_id,
        command=entry.command,
        corr=entry.corr,
        status=entry.status,
        broker_order_id=None,
        reason=entry.reason,
        message=entry.message,
        filled_quantity=0,
        average_price=None,
        send_attempts=entry.send_attempts,
        created_at=now,
        updated_at=now,
    )


_INSERT_ORDER = orders_t.insert()
_INSERT_TRADE = trades_t.insert()
_UPDATE = orders_t.update().where(orders_t.c.client_order_id == sa.bindparam("b_coid"))
_UPDATE_IF = _UPDATE.where(
    orders_t.c.status == sa.bindparam("b_status"),
    orders_t.c.filled_quantity == sa.bindparam("b_filled"),
)
_ORDER = sa.select(orders_t).where(orders_t.c.client_order_id == sa.bindparam("b_coid"))
_ORDERS_IN = sa.select(orders_t).where(
    orders_t.c.client_order_id.in_(sa.bindparam("b_coids", expanding=True))
)
_CORR_OF = sa.select(orders_t.c.corr).where(orders_t.c.client_order_id == sa.bindparam("b_coid"))


class Journal:
    """Synchronous SQL store; callers run it off the event loop."""

    def __init__(self, engine: Engine, *, source: str = "broker"):
        self.engine = engine
        self.source = source

    def migrate(self) -> None:
        db.upgrade(self.engine, MIGRATIONS, version_table=VERSION_TABLE)

    def _outbox(self, conn: sa.Connection, events: list[tuple[str, Message]], corr: str) -> None:
        rows = [outbox.row(st, m, source=self.source, corr=corr) for st, m in events]
        if rows:
            conn.execute(outbox_t.insert(), rows)

    def require(self, client_order_id: str) -> OrderRow:
        """The row of an order known to be journaled (a missing one is a bug: KeyError)."""
        row = self.get(client_order_id)
        if row is None:
            raise KeyError(f"no journal row for {client_order_id}")
        return row

    def get(self, client_order_id: str) -> OrderRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(_ORDER, {"b_coid": client_order_id}).first()
        return _row(r) if r else None

    def by_broker_id(self, broker_order_id: str) -> OrderRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(
                sa.select(orders_t).where(orders_t.c.broker_order_id == broker_order_id)
            ).first()
        return _row(r) if r else None

    def insert(
        self,
        command: PlaceOrder,
        *,
        corr: str,
        status: str,
        reason: str | None = None,
        message: str | None = None,
        send_attempts: int = 0,
        events: list[tuple[str, Message]] = (),  # type: ignore[assignment]
    ) -> tuple[OrderRow, bool]:
        """Journal a new intent; (existing row, False) when the id is already journaled."""
        entry = NewOrder(command, corr, status, send_attempts, reason, message, tuple(events))
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                # values as parameters: one compiled statement, reused
                conn.execute(_INSERT_ORDER, _insert_params(entry, now))
                self._outbox(conn, list(events), corr)
        except sa.exc.IntegrityError:
            existing = self.get(command.client_order_id)
            assert existing is not None
            return existing, False
        # the row as written (what reading it back would give: no second query on the order's
        # way to Kite)
        return _written(entry, now), True

    def insert_many(self, entries: Sequence[NewOrder]) -> builtins.list[tuple[OrderRow, bool]]:
        """`insert` for several intents in one transaction (a bus read's orders: one commit, one
        turn on the journal's thread): for each entry, in order, (its row as written, True), or
        (the row journaled already, False). An id twice in `entries`: the second is a copy of
        the first. Another writer inserting one of the ids between this transaction's read and
        its insert (a second process) fails the whole call (IntegrityError): nothing is
        written, and each order can be journaled again one by one."""
        now = utcnow()
        coids = builtins.list(dict.fromkeys(e.command.client_order_id for e in entries))
        out: builtins.list[tuple[OrderRow, bool]] = []
        with self.engine.begin() as conn:
            known = {
                r.client_order_id: _row(r)
                for r in conn.execute(_ORDERS_IN, {"b_coids": coids}).all()
            }
            fresh: builtins.list[NewOrder] = []
            for entry in entries:
                coid = entry.command.client_order_id
                if coid in known:
                    out.append((known[coid], False))
                    continue
                row = known[coid] = _written(entry, now)
                fresh.append(entry)
                out.append((row, True))
            if fresh:
                conn.execute(_INSERT_ORDER, [_insert_params(e, now) for e in fresh])
                events = [
                    outbox.row(st, m, source=self.source, corr=e.corr)
                    for e in fresh
                    for st, m in e.events
                ]
                if events:
                    conn.execute(outbox_t.insert(), events)
        return out

    @overload
    def update(
        self,
        client_order_id: str,
        *,
        events: Sequence[tuple[str, Message]] = ...,
        expect: None = None,
        **values: object,
    ) -> OrderRow: ...
    @overload
    def update(
        self,
        client_order_id: str,
        *,
        events: Sequence[tuple[str, Message]] = ...,
        expect: tuple[str, int],
        **values: object,
    ) -> OrderRow | None: ...
    def update(
        self,
        client_order_id: str,
        *,
        events: Sequence[tuple[str, Message]] = (),
        expect: tuple[str, int] | None = None,
        **values: object,
    ) -> OrderRow | None:
        """Change a row and journal its events in one transaction. With `expect` (status,
        filled_quantity) the change applies only to a row still in that state, else None: two
        paths (or replicas) seeing the same Kite update record it, and its events, once."""
        # values and ids as parameters of statements built once (per set of columns set):
        # SQLAlchemy compiles them once, not the literal values of every call
        params = {**values, "updated_at": utcnow(), "b_coid": client_order_id}
        if expect is not None:
            params["b_status"], params["b_filled"] = expect
        with self.engine.begin() as conn:
            changed = conn.execute(_UPDATE_IF if expect is not None else _UPDATE, params).rowcount
            if changed == 0 and expect is not None:
                return None
            corr = conn.execute(_CORR_OF, {"b_coid": client_order_id}).scalar_one()
            self._outbox(conn, list(events), corr)
        row = self.get(client_order_id)
        assert row is not None
        return row

    def update_if(
        self,
        client_order_id: str,
        *,
        expect: tuple[str, int],
        events: Sequence[tuple[str, Message]] = (),
        **values: object,
    ) -> OrderRow | None:
        """`update` only while the row is still in `expect` (status, filled_quantity)."""
        return self.update(client_order_id, events=events, expect=expect, **values)

    def count_attempt(self, client_order_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                orders_t.update()
                .where(orders_t.c.client_order_id == client_order_id)
                .values(send_attempts=orders_t.c.send_attempts + 1, updated_at=utcnow())
            )

    def add_trade(
        self,
        *,
        trade_id: str,
        client_order_id: str,
        broker_order_id: str,
        quantity: int,
        price: Decimal,
        filled_at: datetime,
        events: list[tuple[str, Message]],
    ) -> bool:
        """Record a Kite trade once; False when it was recorded before."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    _INSERT_TRADE,
                    {
                        "trade_id": trade_id,
                        "client_order_id": client_order_id,
                        "broker_order_id": broker_order_id,
                        "quantity": quantity,
                        "price": price,
                        "filled_at": filled_at,
                    },
                )
                corr = conn.execute(_CORR_OF, {"b_coid": client_order_id}).scalar_one()
                self._outbox(conn, events, corr)
        except sa.exc.IntegrityError:
            return False
        return True

    def insert_external(
        self, command: PlaceOrder, *, broker_order_id: str, message: str, reason: str = "external"
    ) -> tuple[OrderRow, bool]:
        """Journal an order placed outside Dalal (by hand in Kite), found through its trades:
        OPEN with Kite's order id, reason `external`; (existing row, False) when already there."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    orders_t.insert().values(
                        client_order_id=command.client_order_id,
                        command=command.model_dump_json(),
                        corr=command.client_order_id,
                        status="OPEN",
                        broker_order_id=broker_order_id,
                        reason=reason,
                        message=message,
                        filled_quantity=0,
                        send_attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            existing = self.by_broker_id(broker_order_id) or self.get(command.client_order_id)
            assert existing is not None
            return existing, False
        row = self.get(command.client_order_id)
        assert row is not None
        return row, True

    # ------------------------------------------------------------------ protections (GTT)
    def protection(self, client_order_id: str) -> ProtectionRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(
                protections_t.select().where(protections_t.c.client_order_id == client_order_id)
            ).first()
        return _protection(r) if r is not None else None

    def protections(self, statuses: Sequence[str] | None = None) -> builtins.list[ProtectionRow]:
        q = protections_t.select().order_by(protections_t.c.created_at)
        if statuses is not None:
            q = q.where(protections_t.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            return [_protection(r) for r in conn.execute(q)]

    def put_protection(
        self,
        command: ProtectPosition,
        status: str,
        *,
        gtt_id: int | None = None,
        broker_order_id: str | None = None,
        message: str | None = None,
        events: builtins.list[tuple[str, Message]] | None = None,
    ) -> None:
        """Write a protection's state (insert or replace), its events in the same
        transaction."""
        now = utcnow()
        values = {
            "command": command.model_dump_json(),
            "status": status,
            "gtt_id": gtt_id,
            "broker_order_id": broker_order_id,
            "message": message,
            "updated_at": now,
        }
        coid = command.client_order_id
        with self.engine.begin() as conn:
            done = conn.execute(
                protections_t.update()
                .where(protections_t.c.client_order_id == coid)
                .values(**values)
            ).rowcount
            if not done:
                conn.execute(
                    protections_t.insert().values(client_order_id=coid, created_at=now, **values)
                )
            self._outbox(conn, events or [], coid)

    def traded_quantity(self, client_order_id: str) -> int:
        """The quantity of the order's recorded trades."""
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(trades_t.c.quantity), 0)).where(
                    trades_t.c.client_order_id == client_order_id
                )
            ).scalar_one()
        return int(total)

    def known_trades(self, trade_ids: list[str]) -> set[str]:
        """Which of these Kite trade ids are recorded."""
        out: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(trade_ids), 500):
                chunk = trade_ids[start : start + 500]
                out.update(
                    conn.execute(
                        sa.select(trades_t.c.trade_id).where(trades_t.c.trade_id.in_(chunk))
                    ).scalars()
                )
        return out

    def trades_of(self, client_order_id: str) -> list[dict[str, object]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(trades_t)
                .where(trades_t.c.client_order_id == client_order_id)
                .order_by(trades_t.c.filled_at)
            ).all()
        return [dict(r._mapping) for r in rows]

    def list(self, *, status: str | None = None, limit: int = 500) -> list[OrderRow]:
        query = sa.select(orders_t).order_by(orders_t.c.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(orders_t.c.status == status)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).all()]

    def live(self) -> builtins.list[OrderRow]:
        """Orders not yet in a terminal state (pending sends and open orders)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(orders_t).where(orders_t.c.status.not_in(list(TERMINAL)))
            ).all()
        return [_row(r) for r in rows]
