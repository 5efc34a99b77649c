"""SQL adapter of the ledger (SQLAlchemy 2 Core; schema by Alembic, see migrations/).

The fills table is the record; positions and round trips are derived from it and rewritten for
the affected position in the same transaction as each new fill, with the bus events that fill
causes (an outbox, published after commit), so a crash between commit and publish loses no
event and counts no fill twice.

Money is stored exactly: NUMERIC(24, 4) on PostgreSQL, text on SQLite (whose NUMERIC is a
float), always read back as a Decimal with 4 places, so both databases give identical results.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dalal_portfolio.blocked import Hold
from dalal_portfolio.ledger import CashMovement, Exit, Fill, Lot, Position, RoundTrip, q4
from dalal_shared import db, outbox
from dalal_shared.sqltypes import Money, UtcDateTime

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version_portfolio"


metadata = sa.MetaData()

fills_t = sa.Table(
    "portfolio_fills",
    metadata,
    sa.Column("trade_id", sa.String(64), primary_key=True),
    sa.Column("client_order_id", sa.String(64), nullable=False),
    sa.Column("broker_order_id", sa.String(64), nullable=False),
    sa.Column("exchange", sa.String(8), nullable=False),
    sa.Column("symbol", sa.String(40), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("product", sa.String(8), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price", Money, nullable=False),
    sa.Column("filled_at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.String(200)),
    sa.Column("charged", sa.Boolean, nullable=False),
    sa.Column("charges", Money, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Index("ix_portfolio_fills_symbol", "symbol", "product"),
)
positions_t = sa.Table(
    "portfolio_positions",
    metadata,
    sa.Column("exchange", sa.String(8), primary_key=True),
    sa.Column("symbol", sa.String(40), primary_key=True),
    sa.Column("product", sa.String(8), primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("average_price", Money, nullable=False),
    sa.Column("realised_gross", Money, nullable=False),
    sa.Column("realised_net", Money, nullable=False),
    sa.Column("charges", Money, nullable=False),
    sa.Column("opened_at", UtcDateTime),
    sa.Column("last_fill_at", UtcDateTime),
    sa.Column("fills", sa.Integer, nullable=False),
    sa.Column("lots", sa.Text, nullable=False),
    sa.Column("exits", sa.Text, nullable=False),
)
round_trips_t = sa.Table(
    "portfolio_round_trips",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("exchange", sa.String(8), nullable=False),
    sa.Column("symbol", sa.String(40), nullable=False),
    sa.Column("product", sa.String(8), nullable=False),
    sa.Column("direction", sa.String(5), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("entry_price", Money, nullable=False),
    sa.Column("exit_price", Money, nullable=False),
    sa.Column("opened_at", UtcDateTime, nullable=False),
    sa.Column("closed_at", UtcDateTime, nullable=False),
    sa.Column("realised_gross", Money, nullable=False),
    sa.Column("charges", Money, nullable=False),
    sa.Column("realised_net", Money, nullable=False),
    sa.Column("exits", sa.Text, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Index("ix_portfolio_round_trips_key", "exchange", "symbol", "product"),
)
cash_t = sa.Table(
    "portfolio_cash_movements",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("amount", Money, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("note", sa.String(500), nullable=False),
)
snapshots_t = sa.Table(
    "portfolio_equity_snapshots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False, index=True),
    sa.Column("equity", Money, nullable=False),
    sa.Column("cash", Money, nullable=False),
    sa.Column("realised_net", Money, nullable=False),
    sa.Column("unrealised", Money, nullable=False),
    sa.Column("gross_exposure", Money, nullable=False),
    sa.Column("open_positions", sa.Integer, nullable=False),
    sa.Column("session_day", sa.Date, nullable=True),
    sa.Index("ux_portfolio_snapshots_session_day", "session_day", unique=True),
)
# the events of a change, written in its transaction (dalal_shared.outbox: the envelope and its
# id fixed when written, so a publish repeated after a crash repeats the same id; rows are
# deleted once Redis has them)
outbox_t = outbox.outbox_table(metadata, "portfolio_event_outbox")
meta_t = sa.Table(
    "portfolio_meta",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


holds_t = sa.Table(
    "portfolio_order_holds",
    metadata,
    sa.Column("client_order_id", sa.String(64), primary_key=True),
    sa.Column("symbol", sa.String(40)),
    sa.Column("side", sa.String(4)),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price", Money),
    sa.Column("reported_filled", sa.Integer, nullable=False),
    sa.Column("open", sa.Boolean, nullable=False),
    sa.Column("placed", sa.Boolean, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    at: datetime
    equity: Decimal
    cash: Decimal
    realised_net: Decimal
    unrealised: Decimal
    gross_exposure: Decimal
    open_positions: int
    session_day: date | None = None  # set on the end-of-day snapshot of that session


def _exit_json(e: Exit) -> dict[str, Any]:
    return {
        "trade_id": e.trade_id,
        "client_order_id": e.client_order_id,
        "quantity": e.quantity,
        "price": str(e.price),
        "at": e.at.astimezone(UTC).isoformat(),
        "reason": e.reason,
        "realised_gross": str(e.realised_gross),
        "charges": str(e.charges),
        "realised_net": str(e.realised_net),
    }


def _exit_from(d: dict[str, Any]) -> Exit:
    return Exit(
        trade_id=d["trade_id"],
        client_order_id=d["client_order_id"],
        quantity=int(d["quantity"]),
        price=Decimal(d["price"]),
        at=datetime.fromisoformat(d["at"]),
        reason=d["reason"],
        realised_gross=Decimal(d["realised_gross"]),
        charges=Decimal(d["charges"]),
        realised_net=Decimal(d["realised_net"]),
    )


def _lot_json(lot: Lot) -> dict[str, Any]:
    return {
        "quantity": lot.quantity,
        "price": str(lot.price),
        "opened_at": lot.opened_at.astimezone(UTC).isoformat(),
        "trade_id": lot.trade_id,
        "entry_charges": str(q4(lot.entry_charges)),
    }


def _trip_row(t: RoundTrip) -> dict[str, Any]:
    return {
        "exchange": t.exchange,
        "symbol": t.symbol,
        "product": t.product,
        "direction": t.direction,
        "quantity": t.quantity,
        "entry_price": t.entry_price,
        "exit_price": t.exit_price,
        "opened_at": t.opened_at,
        "closed_at": t.closed_at,
        "realised_gross": t.realised_gross,
        "charges": t.charges,
        "realised_net": t.realised_net,
        "exits": json.dumps([_exit_json(e) for e in t.exits]),
        "source": t.source,
    }


# statements built once: executing them with parameters skips SQLAlchemy's per-call
# construction (a fill is one transaction of a few of these)
_INSERT_FILL = fills_t.insert()
_INSERT_OUTBOX = outbox_t.insert()
_INSERT_POSITION = positions_t.insert()
_INSERT_TRIP = round_trips_t.insert()
_UPDATE_POSITION = (
    positions_t.update()
    .where(
        (positions_t.c.exchange == sa.bindparam("k_exchange"))
        & (positions_t.c.symbol == sa.bindparam("k_symbol"))
        & (positions_t.c.product == sa.bindparam("k_product"))
    )
)  # fmt: skip
_UPDATE_FILL_CHARGES = fills_t.update().where(fills_t.c.trade_id == sa.bindparam("k_trade_id"))
_DELETE_LEDGER_TRIPS = round_trips_t.delete().where(
    (round_trips_t.c.exchange == sa.bindparam("k_exchange"))
    & (round_trips_t.c.symbol == sa.bindparam("k_symbol"))
    & (round_trips_t.c.product == sa.bindparam("k_product"))
    & (round_trips_t.c.source == "ledger")
)


class LedgerStore(db.SqlStore):
    """The ledger's tables. Every write is one transaction."""

    migrations = MIGRATIONS
    version_table = VERSION_TABLE

    # ------------------------------------------------------------ reads

    def load_fills(self) -> list[Fill]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(fills_t).order_by(fills_t.c.filled_at)).mappings()
            return [
                Fill(
                    trade_id=r["trade_id"],
                    client_order_id=r["client_order_id"],
                    broker_order_id=r["broker_order_id"],
                    exchange=r["exchange"],
                    symbol=r["symbol"],
                    side=r["side"],
                    product=r["product"],
                    quantity=r["quantity"],
                    price=r["price"],
                    filled_at=r["filled_at"],
                    reason=r["reason"],
                    charged=r["charged"],
                )
                for r in rows
            ]

    def load_cash(self) -> list[CashMovement]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(cash_t)).mappings()
            return [CashMovement(r["key"], r["amount"], r["at"], r["note"]) for r in rows]

    def load_imported_trips(self) -> list[RoundTrip]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(round_trips_t)
                .where(round_trips_t.c.source == "seed")
                .order_by(round_trips_t.c.id)
            ).mappings()
            return [
                RoundTrip(
                    exchange=r["exchange"],
                    symbol=r["symbol"],
                    product=r["product"],
                    direction=r["direction"],
                    quantity=r["quantity"],
                    entry_price=r["entry_price"],
                    exit_price=r["exit_price"],
                    opened_at=r["opened_at"],
                    closed_at=r["closed_at"],
                    realised_gross=r["realised_gross"],
                    charges=r["charges"],
                    realised_net=r["realised_net"],
                    exits=tuple(_exit_from(e) for e in json.loads(r["exits"])),
                    source=r["source"],
                )
                for r in rows
            ]

    def load_holds(self) -> list[Hold]:
        """Order holds as stored (`filled` is the ledger's to recompute)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(holds_t)).mappings()
            return [
                Hold(
                    client_order_id=r["client_order_id"],
                    symbol=r["symbol"],
                    side=r["side"],
                    quantity=r["quantity"],
                    unit_price=r["unit_price"],
                    reported_filled=r["reported_filled"],
                    open=r["open"],
                    placed=r["placed"],
                )
                for r in rows
            ]

    def meta(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(meta_t.c.value).where(meta_t.c.name == name)
            ).scalar_one_or_none()

    def snapshots(self) -> list[SnapshotRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(snapshots_t).order_by(snapshots_t.c.at, snapshots_t.c.id)
            ).mappings()
            return [
                SnapshotRow(
                    r["at"],
                    r["equity"],
                    r["cash"],
                    r["realised_net"],
                    r["unrealised"],
                    r["gross_exposure"],
                    r["open_positions"],
                    r["session_day"],
                )
                for r in rows
            ]

    def has_end_of_day(self, day: date) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(snapshots_t.c.id).where(snapshots_t.c.session_day == day)
            ).first()
            return found is not None

    def pending_events(self) -> list[dict[str, str]]:
        """The events written and not yet published (their stream entry fields), in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(outbox_t.c.fields).order_by(outbox_t.c.seq)).all()
        return [json.loads(r.fields) for r in rows]

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """The ledger tables as plain sorted rows (no surrogate ids, no wall-clock columns)."""
        skip = {"id", "recorded_at", "created_at", "published_at", "updated_at"}
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.engine.connect() as conn:
            for table in (fills_t, positions_t, round_trips_t, cash_t, meta_t, holds_t):
                cols = [c for c in table.c if c.name not in skip]
                rows = conn.execute(sa.select(*cols)).all()
                out[table.name] = sorted(tuple(r) for r in rows)
            events = conn.execute(sa.select(outbox_t.c.stream, outbox_t.c.fields)).all()
            out["portfolio_event_outbox"] = sorted(  # without the ids and times
                (r.stream, json.loads(r.fields)["type"], json.loads(r.fields)["data"])
                for r in events
            )
        return out

    # ------------------------------------------------------------ writes

    def record_fill(
        self,
        fill: Fill,
        position: Position,
        events: Iterable[dict[str, Any]],
        *,
        now: datetime,
        changed_charges: dict[str, Decimal] | None = None,
        new_round_trips: list[RoundTrip] | None = None,
    ) -> None:
        """Insert a new fill, update its position's derived rows, queue its events.

        `changed_charges`: other fills of the position whose charges the new fill changed (a
        late trade of the same order, a DP charge moving to an earlier sell); None rewrites all.
        `new_round_trips`: the round trips the fill closed, when the earlier ones are unchanged
        (a fill in time order); None rewrites the position's round trips (a late fill).
        """
        with self.engine.begin() as conn:
            conn.execute(
                _INSERT_FILL,
                {
                    "trade_id": fill.trade_id,
                    "client_order_id": fill.client_order_id,
                    "broker_order_id": fill.broker_order_id,
                    "exchange": fill.exchange,
                    "symbol": fill.symbol,
                    "side": fill.side,
                    "product": fill.product,
                    "quantity": fill.quantity,
                    "price": fill.price,
                    "filled_at": fill.filled_at,
                    "reason": fill.reason,
                    "charged": fill.charged,
                    "charges": position.fill_charges.get(fill.trade_id, Decimal(0)),
                    "recorded_at": now,
                },
            )
            self._write_position(conn, position, changed_charges, new_round_trips)
            rows = list(events)  # dalal_shared.outbox.row values
            if rows:
                conn.execute(_INSERT_OUTBOX, rows)

    def _write_position(
        self,
        conn: sa.Connection,
        pos: Position,
        changed_charges: dict[str, Decimal] | None = None,
        new_round_trips: list[RoundTrip] | None = None,
    ) -> None:
        row = {
            "exchange": pos.exchange,
            "symbol": pos.symbol,
            "product": pos.product,
            "quantity": pos.quantity,
            "average_price": pos.average_price,
            "realised_gross": pos.realised_gross,
            "realised_net": pos.realised_net,
            "charges": pos.charges,
            "opened_at": pos.opened_at,
            "last_fill_at": pos.last_fill_at,
            "fills": pos.fills,
            "lots": json.dumps([_lot_json(lot) for lot in pos.lots]),
            "exits": json.dumps([_exit_json(e) for e in pos.exits]),
        }
        key = {"k_exchange": pos.exchange, "k_symbol": pos.symbol, "k_product": pos.product}
        if conn.execute(_UPDATE_POSITION, {**row, **key}).rowcount == 0:
            conn.execute(_INSERT_POSITION, row)
        # a late fill can change its neighbours' charges (one order's brokerage cap, DP)
        charges = pos.fill_charges if changed_charges is None else changed_charges
        if charges:
            conn.execute(
                _UPDATE_FILL_CHARGES,
                [{"k_trade_id": t, "charges": c} for t, c in charges.items()],
            )
        if new_round_trips is None:
            conn.execute(_DELETE_LEDGER_TRIPS, key)
            new_round_trips = pos.round_trips
        if new_round_trips:
            conn.execute(_INSERT_TRIP, [_trip_row(t) for t in new_round_trips])

    def record_hold(self, hold: Hold, *, now: datetime) -> None:
        """Insert or replace one order hold (one transaction)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(holds_t).where(holds_t.c.client_order_id == hold.client_order_id)
            )
            conn.execute(
                sa.insert(holds_t).values(
                    client_order_id=hold.client_order_id,
                    symbol=hold.symbol,
                    side=hold.side,
                    quantity=hold.quantity,
                    unit_price=hold.unit_price,
                    reported_filled=hold.reported_filled,
                    open=hold.open,
                    placed=hold.placed,
                    updated_at=now,
                )
            )

    def record_cash(self, movement: CashMovement) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(cash_t).values(
                    key=movement.key, amount=movement.amount, at=movement.at, note=movement.note
                )
            )

    def record_snapshot(self, row: SnapshotRow, event: dict[str, Any] | None = None) -> bool:
        """Store a snapshot and its event in one transaction; False (nothing stored) when it
        is the end-of-day snapshot of a day that already has one."""
        try:
            self._insert_snapshot(row, event)
        except sa.exc.IntegrityError:
            if row.session_day is None:
                raise
            return False
        return True

    def _insert_snapshot(self, row: SnapshotRow, event: dict[str, Any] | None) -> None:
        with self.engine.begin() as conn:
            if event is not None:
                conn.execute(_INSERT_OUTBOX, [event])
            conn.execute(
                sa.insert(snapshots_t).values(
                    at=row.at,
                    equity=row.equity,
                    cash=row.cash,
                    realised_net=row.realised_net,
                    unrealised=row.unrealised,
                    gross_exposure=row.gross_exposure,
                    open_positions=row.open_positions,
                    session_day=row.session_day,
                )
            )

    def record_seed_import(
        self,
        *,
        digest: str,
        initial_capital: Decimal,
        fills: list[tuple[Fill, Position]],
        trips: list[RoundTrip],
    ) -> None:
        """One transaction: the seed's open positions as fills, its closed ones as trips."""
        with self.engine.begin() as conn:
            conn.execute(sa.insert(meta_t).values(name="seed_import_sha256", value=digest))
            conn.execute(
                sa.insert(meta_t).values(name="initial_capital_rupees", value=str(initial_capital))
            )
            now = datetime.now(UTC)
            for fill, pos in fills:
                conn.execute(
                    sa.insert(fills_t).values(
                        trade_id=fill.trade_id,
                        client_order_id=fill.client_order_id,
                        broker_order_id=fill.broker_order_id,
                        exchange=fill.exchange,
                        symbol=fill.symbol,
                        side=fill.side,
                        product=fill.product,
                        quantity=fill.quantity,
                        price=fill.price,
                        filled_at=fill.filled_at,
                        reason=fill.reason,
                        charged=fill.charged,
                        charges=Decimal(0),
                        recorded_at=now,
                    )
                )
                self._write_position(conn, pos)
            if trips:
                conn.execute(sa.insert(round_trips_t), [_trip_row(t) for t in trips])
