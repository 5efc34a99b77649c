"""SQL plumbing every service with a database shares: engines, URLs, Alembic at start-up.

Each service owns its tables (named with its prefix, e.g. `portfolio_`, so one SQLite file or
one PostgreSQL database can hold several services without clashes) and its own Alembic
version table (`alembic_version_<service>`). SQLite is the default (a file under `var/`);
`postgresql://` and `postgresql+psycopg://` URLs use psycopg 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from dalal_shared.errors import ConfigError


def normalise_url(url: str) -> str:
    """Pick the driver Dalal ships with (psycopg 3) for a bare `postgresql://` URL."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ConfigError(
            f"unsupported database driver {parsed.drivername!r} (DALAL_DATABASE_URL): "
            "use sqlite:///path or postgresql+psycopg://user@host/db"
        )
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; a SQLite file's folder is created, WAL and foreign keys are on."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def ping(engine: Engine) -> None:
    """Raise when the database does not answer (for /readyz)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def upgrade(engine: Engine, script_location: str | Path, *, version_table: str) -> None:
    """Run the Alembic migrations in `script_location` up to head on `engine`.

    The migrations' env.py takes the connection from `config.attributes["connection"]` and
    the version table from `config.attributes["version_table"]`.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        config.attributes["version_table"] = version_table
        command.upgrade(config, "head")


def current_revision(engine: Engine, *, version_table: str) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": version_table})
        return ctx.get_current_revision()


class SqlStore:
    """Base of a service's SQL store: its engine, its migrations run on open, ping and close.
    Subclasses set `migrations` (an Alembic script folder) and `version_table`."""

    migrations: Path
    version_table: str

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Self:
        engine = make_engine(url)
        upgrade(engine, cls.migrations, version_table=cls.version_table)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        ping(self.engine)
