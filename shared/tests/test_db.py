"""The shared SQL helpers: URLs, engines, Alembic at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dalal_shared import db
from dalal_shared.errors import ConfigError
from dalal_shared.testing import demo_migrations


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    columns = 'sa.Column("id", sa.Integer, primary_key=True)'
    return demo_migrations(tmp_path / "migrations", "demo_things", columns)


def test_bare_postgres_urls_use_psycopg_and_unknown_drivers_are_refused() -> None:
    assert db.normalise_url("postgresql://u@h/d").startswith("postgresql+psycopg://")
    with pytest.raises(ConfigError, match="DALAL_DATABASE_URL"):
        db.normalise_url("mysql://u@h/d")


def test_migrations_run_once_and_again_is_a_no_op(database_url: str, migrations: Path) -> None:
    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine, migrations, version_table="alembic_version_demo")
        db.upgrade(engine, migrations, version_table="alembic_version_demo")
        assert db.current_revision(engine, version_table="alembic_version_demo") == "0001"
        assert "demo_things" in sa.inspect(engine).get_table_names()
        db.ping(engine)
    finally:
        engine.dispose()


def test_a_sqlite_file_gets_its_folder(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/var/deep/x.sqlite3")
    try:
        db.ping(engine)
        assert (tmp_path / "var" / "deep" / "x.sqlite3").exists()
    finally:
        engine.dispose()


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def test_a_sqlite_database_and_its_wal_are_private(tmp_path: Path, migrations: Path) -> None:
    path = tmp_path / "var" / "ledger.sqlite3"
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine, migrations, version_table="alembic_version_demo")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO demo_things (id) VALUES (1)"))
        assert _mode(path) == "0o600"
        assert _mode(path.with_name(path.name + "-wal")) == "0o600"
    engine.dispose()


def test_an_existing_readable_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)
    db.make_engine(f"sqlite:///{path}").dispose()
    assert _mode(path) == "0o600"


def test_a_url_that_is_not_one_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^DALAL_DATABASE_URL: not a database URL"):
        db.make_engine("notaurl")


def test_an_unreachable_postgres_is_one_line_naming_the_variable(migrations: Path) -> None:
    from dalal_shared.embedded import free_port

    url = f"postgresql://dalal:hidden-pw@127.0.0.1:{free_port()}/dalal"
    with pytest.raises(ConfigError) as exc:
        db.upgrade(db.make_engine(url), migrations, version_table="alembic_version_demo")
    assert exc.value.message.startswith("DALAL_DATABASE_URL: cannot open the database at ")
    assert "\n" not in exc.value.message and "hidden-pw" not in exc.value.message
