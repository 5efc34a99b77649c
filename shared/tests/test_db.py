"""The shared SQL helpers: URLs, engines, Alembic at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dalal_shared import db
from dalal_shared.errors import ConfigError

ENV = """
from alembic import context
config = context.config
context.configure(connection=config.attributes["connection"],
                  version_table=config.attributes["version_table"])
with context.begin_transaction():
    context.run_migrations()
"""
REV = """
import sqlalchemy as sa
from alembic import op
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
def upgrade():
    op.create_table("demo_things", sa.Column("id", sa.Integer, primary_key=True))
def downgrade():
    op.drop_table("demo_things")
"""


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(ENV)
    (folder / "versions" / "0001_demo.py").write_text(REV)
    return folder


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
