"""`db.Prepared` (statements run on the driver's cursor) writes and reads what SQLAlchemy's own
execute writes and reads: the same rows, a timezone-aware DateTime, booleans and NULLs
included, in the caller's transaction (rolled back with it), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from dalal_shared import db

metadata = sa.MetaData()
rows_t = sa.Table(
    "prepared_rows",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(40), nullable=False, unique=True),
    sa.Column("flag", sa.Boolean, nullable=False),
    sa.Column("amount", sa.Float),
    sa.Column("note", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
KEYS = ("name", "flag", "amount", "note", "at")
INSERT = db.Prepared(sa.insert(rows_t), KEYS)
BY_NAME = db.Prepared(
    sa.select(rows_t.c.name, rows_t.c.flag).where(rows_t.c.name == sa.bindparam("n"))
)
FLAGGED = db.Prepared(
    sa.select(rows_t.c.name).where(rows_t.c.flag == sa.true()).order_by(rows_t.c.name)
)
UNFLAG = db.Prepared(sa.update(rows_t).where(rows_t.c.name == sa.bindparam("n")).values(flag=False))


def row(n: int) -> dict[str, Any]:
    return {
        "name": f"r{n}",
        "flag": n % 2 == 0,
        "amount": None if n == 3 else n * 1.25,
        "note": None if n % 3 else f"note {n}",
        "at": datetime(2026, 12, 4, 9, 15, n, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    }


def unflag_then_fail(engine: sa.Engine, name: str) -> None:
    with engine.begin() as c:
        UNFLAG.run(c, {"n": name})
        raise RuntimeError("the step failed")


def stored(engine: sa.Engine, table: sa.Table) -> list[tuple[Any, ...]]:
    with engine.connect() as c:
        got = c.execute(sa.select(table).order_by(table.c.name)).all()
    return [tuple(r)[1:] for r in got]  # without the sequence


def test_prepared_rows_equal_sqlalchemys(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        metadata.create_all(engine)
        twin = sa.Table("prepared_twin", sa.MetaData(), *(c._copy() for c in rows_t.columns))
        twin.create(engine)
        rows = [row(n) for n in range(7)]
        with engine.begin() as c:
            assert INSERT.run(c, rows[:1]) == 1  # one row
            INSERT.run(c, rows[1:])  # many
            c.execute(sa.insert(twin), rows)
        # the same values as SQLAlchemy wrote (its DateTime as each dialect stores it)
        assert stored(engine, rows_t) == stored(engine, twin)
        assert len(stored(engine, rows_t)) == len(rows)
        with engine.connect() as c:
            assert BY_NAME.first(c, {"n": "r2"}) in (("r2", True), ("r2", 1))
            assert BY_NAME.first(c, {"n": "nobody"}) is None
            assert [r[0] for r in FLAGGED.all(c)] == ["r0", "r2", "r4", "r6"]
        with engine.begin() as c:
            assert UNFLAG.run(c, [{"n": "r0"}, {"n": "r2"}]) == 2
        with pytest.raises(RuntimeError):  # rolled back with its block
            unflag_then_fail(engine, "r4")
        with engine.connect() as c:
            assert [r[0] for r in FLAGGED.all(c)] == ["r4", "r6"]
    finally:
        engine.dispose()


def test_prepared_refuses_an_expanding_parameter(tmp_path: Any) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    metadata.create_all(engine)
    in_list = db.Prepared(sa.select(rows_t.c.name).where(rows_t.c.name.in_(["a", "b"])))
    with engine.connect() as c, pytest.raises(ValueError, match="expanding"):
        in_list.all(c)
    engine.dispose()
