"""Schema drift: each service's Alembic migrations, run on an empty database, give exactly the
tables, columns, indexes and constraints its SQLAlchemy models declare (issue 21). A model
changed without a migration (or a migration that is a hand copy gone stale) fails here, naming
the difference, on SQLite and on PostgreSQL."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dalal_shared import db

# service -> the module holding its metadata, MIGRATIONS and VERSION_TABLE
SCHEMAS = {
    "broker": "dalal_broker.journal",
    "engine": "dalal_engine.store",
    "portfolio": "dalal_portfolio.store",
}


def _drift(url: str, module_name: str) -> list[Any]:
    module = importlib.import_module(module_name)
    engine = db.make_engine(url)
    try:
        db.upgrade(engine, module.MIGRATIONS, version_table=module.VERSION_TABLE)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "version_table": module.VERSION_TABLE,
                    "compare_type": True,
                    "compare_server_default": False,
                },
            )
            return list(compare_metadata(context, module.metadata))
    finally:
        engine.dispose()


@pytest.mark.parametrize("service", sorted(SCHEMAS))
def test_migrations_equal_the_models_on_sqlite(service: str, tmp_path: Path) -> None:
    diff = _drift(f"sqlite:///{tmp_path / f'{service}.sqlite3'}", SCHEMAS[service])
    assert diff == [], f"{service}: migrations and models differ: {diff}"


@pytest.mark.postgres
@pytest.mark.parametrize("service", sorted(SCHEMAS))
def test_migrations_equal_the_models_on_postgresql(service: str, postgres_url: str) -> None:
    diff = _drift(postgres_url, SCHEMAS[service])
    assert diff == [], f"{service}: migrations and models differ: {diff}"
