"""SQLite's write-ahead log checkpointed when the store says, not inside some commit: a store
opened with `own_checkpoints` never stops a commit for SQLite's automatic checkpoint (4-6 ms
every few hundred commits of the engine's minute step), and `SqlStore.checkpoint` copies the
log into the database file at the moment its owner chooses. By default SQLite does it itself,
as always."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from dalal_shared import db
from dalal_shared.testing import demo_migrations

ROWS = 1_500  # of 4 KB: a commit each, every one a page or more of log, 1,000 pages and on


class DemoStore(db.SqlStore):
    version_table = "alembic_version_demo"


@pytest.fixture
def store_class(tmp_path: Path) -> type[DemoStore]:
    columns = (
        'sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("payload", sa.LargeBinary, nullable=False)'
    )
    DemoStore.migrations = demo_migrations(tmp_path / "migrations", "demo_rows", columns)
    return DemoStore


def write_rows(store: db.SqlStore, count: int) -> None:
    table = sa.table("demo_rows", sa.column("payload", sa.LargeBinary))
    for k in range(count):
        with store.engine.begin() as conn:
            conn.execute(sa.insert(table).values(payload=bytes([k % 251]) * 4096))


def rows_in_the_file_alone(path: Path, tmp_path: Path) -> int:
    """The rows a reader finds in the database file without its write-ahead log (what has
    been checkpointed into it)."""
    alone = tmp_path / "alone.sqlite3"
    shutil.copyfile(path, alone)
    with sqlite3.connect(alone) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM demo_rows").fetchone()[0])
        except sqlite3.OperationalError:  # not even the table yet
            return 0


def log_pages(path: Path) -> int:
    """The write-ahead log's length in pages (its frames: a page and a 24-byte header)."""
    wal = path.with_name(path.name + "-wal")
    return (wal.stat().st_size - 32) // (4096 + 24) if wal.exists() else 0


def test_a_store_with_its_own_checkpoints_leaves_them_out_of_its_commits(
    store_class: type[DemoStore], tmp_path: Path
) -> None:
    path = tmp_path / "own.sqlite3"
    store = store_class.open(f"sqlite:///{path}", own_checkpoints=True)
    try:
        write_rows(store, ROWS)
        assert log_pages(path) > ROWS  # never started over: no commit checkpointed it
        assert rows_in_the_file_alone(path, tmp_path) == 0
        store.checkpoint()
        assert rows_in_the_file_alone(path, tmp_path) == ROWS
        write_rows(store, 10)  # the log starts over from its beginning once all of it is in
        assert log_pages(path) > ROWS  # (the file keeps its length)
        store.checkpoint()
        assert rows_in_the_file_alone(path, tmp_path) == ROWS + 10
    finally:
        store.close()


def test_by_default_sqlite_checkpoints_inside_the_commits(
    store_class: type[DemoStore], tmp_path: Path
) -> None:
    path = tmp_path / "default.sqlite3"
    store = store_class.open(f"sqlite:///{path}")
    try:
        write_rows(store, ROWS)
        assert log_pages(path) < ROWS  # started over at SQLite's 1,000 pages
        assert rows_in_the_file_alone(path, tmp_path) >= 900  # copied by some commit
    finally:
        store.close()


def test_a_checkpoint_waits_for_nobody(store_class: type[DemoStore], tmp_path: Path) -> None:
    """A reader in the middle of a transaction: the checkpoint copies what it can and returns
    at once (PASSIVE: a FULL one would wait for the reader, up to the 30 s busy timeout);
    the rest goes in at the next one, once the reader is done."""
    path = tmp_path / "busy.sqlite3"
    store = store_class.open(f"sqlite:///{path}", own_checkpoints=True)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        write_rows(store, 5)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM demo_rows").fetchone()[0] == 5
        write_rows(store, 5)  # after the reader's snapshot
        done = threading.Event()
        worker = threading.Thread(target=lambda: (store.checkpoint(), done.set()), daemon=True)
        worker.start()
        assert done.wait(20), "the checkpoint waited for the reader"
        reader.execute("COMMIT")
        store.checkpoint()
        assert rows_in_the_file_alone(path, tmp_path) == 10
    finally:
        reader.close()
        store.close()


def test_a_checkpoint_is_nothing_on_postgresql(
    store_class: type[DemoStore], postgres_url: str
) -> None:
    store = store_class.open(postgres_url, own_checkpoints=True)
    try:
        write_rows(store, 3)
        store.checkpoint()
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM demo_rows")).scalar_one() == 3
    finally:
        store.close()
