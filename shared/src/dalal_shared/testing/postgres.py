"""pytest fixtures for a real PostgreSQL: a throwaway database per test, dropped afterwards.

The server is `DALAL_TEST_POSTGRES_URL` (default `postgresql://postgres@127.0.0.1:5432/postgres`,
trust auth on the project's machines). When it does not answer, the tests that need it skip and
say why.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin_url() -> str:
    return os.environ.get("DALAL_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The maintenance-database URL of a reachable PostgreSQL, or skip."""
    import psycopg

    url = _admin_url()
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL not reachable at {url} ({type(exc).__name__}: {exc})"[:300])
    return url


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return (
        make_url(url)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh, empty database `dalal_test_<random>`, dropped after."""
    import psycopg

    name = f"dalal_test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(postgres_admin_url, name)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """Each test using it runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.sqlite3"
    url: str = request.getfixturevalue("postgres_url")
    return url
