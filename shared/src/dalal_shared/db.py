"""SQL plumbing every service with a database shares: engines, URLs, Alembic at start-up.

Each service owns its tables (named with its prefix, e.g. `portfolio_`, so one SQLite file or
one PostgreSQL database can hold several services without clashes) and its own Alembic
version table (`alembic_version_<service>`). SQLite is the default (a file under `var/`);
`postgresql://` and `postgresql+psycopg://` URLs use psycopg 3.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from dalal_shared.errors import ConfigError

URL_VARIABLE = "DALAL_DATABASE_URL"
FILE_MODE = 0o600  # the ledger and the order journal are nobody else's business


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{URL_VARIABLE}: not a database URL; use sqlite:///path or "
            "postgresql+psycopg://user@host/db"
        ) from None


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(not a URL)"


def normalise_url(url: str) -> str:
    """Pick the driver Dalal ships with (psycopg 3) for a bare `postgresql://` URL."""
    parsed = _parse(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ConfigError(
            f"{URL_VARIABLE}: unsupported database driver {parsed.drivername!r}: "
            "use sqlite:///path or postgresql+psycopg://user@host/db"
        )
    return parsed.render_as_string(hide_password=False)


def _private_sqlite_file(path: Path) -> None:
    """Create the database file readable by its owner only (mode 0600), and tighten an existing
    one and its WAL/shared-memory files (SQLite gives those the database file's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):  # not there, or not ours to change
            if candidate.stat().st_mode & 0o777 != FILE_MODE:
                candidate.chmod(FILE_MODE)


# SQLite checkpoints its write-ahead log by itself inside the commit that takes the log past
# 1,000 pages (~4 MB): every few hundred commits of a busy store, one commit pays 4-6 ms
# (`bench/engine_burst.py`: a minute's step 0.9 ms, those 5-6). A store that checkpoints at its
# own quiet moments (`SqlStore.checkpoint`, `own_checkpoints`) moves SQLite's limit out to
# this, a backstop for a log nobody checkpointed for a long while (64 MB with 4 KB pages).
DEFERRED_CHECKPOINT_PAGES = 16_384


def make_engine(url: str, *, wal_autocheckpoint: int | None = None, **kwargs: Any) -> Engine:
    """An engine for `url`; a SQLite file is created with mode 0600 (its folder too), WAL and
    foreign keys are on. `wal_autocheckpoint`: SQLite's automatic checkpoint limit, in pages,
    on every connection (None: SQLite's 1,000; other databases: ignored)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:" and "mode=memory" not in url:
            try:
                _private_sqlite_file(Path(parsed.database))
            except OSError as exc:
                raise ConfigError(
                    f"{URL_VARIABLE}: cannot create the SQLite file {parsed.database} "
                    f"({exc.strerror or exc})"
                ) from None
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            if wal_autocheckpoint is not None:
                cur.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
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


def checkpoint(engine: Engine) -> None:
    """Copy the write-ahead log's pages into the SQLite file now, as SQLite's automatic
    checkpoint would inside some later commit (PASSIVE: without waiting for readers or
    writers; what a reader still needs stays for the next one). For an engine made with
    `DEFERRED_CHECKPOINT_PAGES` (`SqlStore.open(own_checkpoints=True)`), at a moment its hot
    path is not waiting (`dbthread.Checkpoints`); blocking file I/O (two fsyncs): call it off
    the event loop. Nothing for other databases."""
    if not is_sqlite(engine):
        return
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        cursor.fetchall()
        cursor.close()
    finally:
        raw.close()


def upgrade(
    engine: Engine, script_location: str | Path, *, version_table: str, target: str = "head"
) -> None:
    """Run the Alembic migrations in `script_location` up to `target` (head) on `engine`.

    The migrations' env.py takes the connection from `config.attributes["connection"]` and
    the version table from `config.attributes["version_table"]`.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            config.attributes["version_table"] = version_table
            command.upgrade(config, target)
    except DBAPIError as exc:  # unreachable, refused, bad credentials: one line naming the URL
        reason = " ".join(str(exc.orig or exc).split())[:300]
        raise ConfigError(
            f"{URL_VARIABLE}: cannot open the database at {safe_url(str(engine.url))}: {reason}"
        ) from None


def current_revision(engine: Engine, *, version_table: str) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": version_table})
        return ctx.get_current_revision()


class SqlStore:
    """Base of a service's SQL store: its engine, its migrations run on open, ping and close.
    Subclasses set `migrations` (an Alembic script folder) and `version_table`, and may name
    the `Prepared` statements of their hot path (`hot_statements`): compiled when the store is
    made, so the first row of the day does not pay for them."""

    migrations: Path
    version_table: str

    def __init__(self, engine: Engine):
        self.engine = engine
        for statement in self.hot_statements(engine.dialect.name):
            statement.prepare(engine.dialect)

    def hot_statements(self, dialect_name: str) -> Sequence[Prepared]:
        """The statements to compile for this dialect when the store is made."""
        return ()

    @property
    def local(self) -> bool:
        """Whether the database is a file of this machine (SQLite): a statement is the
        process's own work, never a network round trip."""
        return is_sqlite(self.engine)

    @classmethod
    def open(cls, url: str, *, own_checkpoints: bool = False) -> Self:
        """Connect and migrate; an unreachable or refusing database is a `ConfigError` naming
        DALAL_DATABASE_URL (password masked) in one line, not a driver traceback.
        `own_checkpoints`: the caller runs `checkpoint` at its quiet moments, so that the
        store's commits never run SQLite's automatic checkpoint (`DEFERRED_CHECKPOINT_PAGES`)."""
        engine = make_engine(
            url, wal_autocheckpoint=DEFERRED_CHECKPOINT_PAGES if own_checkpoints else None
        )
        try:
            upgrade(engine, cls.migrations, version_table=cls.version_table)
        except ConfigError:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        ping(self.engine)

    def checkpoint(self) -> None:
        """`checkpoint` of the store's engine."""
        checkpoint(self.engine)


@dataclass(frozen=True, slots=True)
class _Bind:
    name: str  # as the SQL names it
    key: str  # as the rows name it
    required: bool
    fixed: Any  # the value of a parameter that is not required
    process: Any  # the column type's bind processor for the dialect, or None


class Prepared:
    """A statement compiled once per dialect and run on the connection's DBAPI cursor (one
    row, or many in one `executemany`), in the caller's transaction.

    For the few statements of a hot path: SQLAlchemy's `Connection.execute` costs more per
    call than SQLite's own work for a short row (cache key, compiled-cache lookup, parameter
    processing, result objects). The values go through the same bind processors SQLAlchemy
    applies (each column type's, for the dialect: a DateTime on SQLite, say), so the rows
    written are the same. `keys`: the columns an INSERT takes (else every column of the
    table); the statement must have no expanding (IN) parameters."""

    def __init__(self, statement: Any, keys: tuple[str, ...] | None = None) -> None:
        self.statement = statement
        self.keys = keys
        self._compiled: dict[str, tuple[str, bool, list[_Bind]]] = {}

    def prepare(self, dialect: Any) -> None:
        """Compile for `dialect` now (SQLAlchemy's compiler, ~0.3 ms a statement here), not at
        the first row: at start-up, so the first order of a running service does not wait
        for it (`SqlStore.hot_statements`)."""
        self._for(dialect)

    def _for(self, dialect: Any) -> tuple[str, bool, list[_Bind]]:
        got = self._compiled.get(dialect.name)
        if got is None:
            compiled = self.statement.compile(
                dialect=dialect, column_keys=list(self.keys) if self.keys is not None else None
            )
            sql = str(compiled)
            if "POSTCOMPILE" in sql:
                raise ValueError("Prepared takes no expanding (IN) parameters")
            rendered = {name: bind for bind, name in compiled.bind_names.items()}
            positional = compiled.positiontup is not None
            order = list(compiled.positiontup) if positional else list(rendered)
            binds = []
            for name in order:
                bind = rendered[name]
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                # a parameter of the statement's own (`.values(x=1)`) keeps its value
                fixed = None if bind.required else bind.effective_value
                binds.append(_Bind(name, bind.key, bind.required, fixed, process))
            got = self._compiled[dialect.name] = (sql, positional, binds)
        return got

    def _params(self, dialect: Any, rows: Sequence[Mapping[str, Any]]) -> tuple[str, list[Any]]:
        sql, positional, binds = self._for(dialect)
        out: list[Any] = []
        for r in rows:
            values = []
            for b in binds:
                value = r[b.key] if b.required else b.fixed
                values.append(b.process(value) if b.process is not None else value)
            out.append(
                tuple(values)
                if positional
                else {b.name: v for b, v in zip(binds, values, strict=True)}
            )
        return sql, out

    @contextlib.contextmanager
    def _executed(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> Iterator[Any]:
        """The driver's cursor after executing for `rows` (one: `execute`, more: `executemany`)."""
        sql, params = self._params(conn.dialect, rows)
        cursor = conn.connection.cursor()
        try:
            if len(params) == 1:
                cursor.execute(sql, params[0])
            else:
                cursor.executemany(sql, params)
            yield cursor
        finally:
            cursor.close()

    def run(self, conn: Connection, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
        """Execute for one row (a mapping) or each of `rows`; the rows it touched."""
        many = [rows] if isinstance(rows, Mapping) else rows
        if not many:
            return 0
        with self._executed(conn, many) as cursor:
            return int(cursor.rowcount)

    def first(self, conn: Connection, row: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row a query returns for these values (None: no row)."""
        with self._executed(conn, [row]) as cursor:
            found = cursor.fetchone()
        return tuple(found) if found is not None else None

    def all(self, conn: Connection, row: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row a query returns (values as the driver gives them)."""
        with self._executed(conn, [row or {}]) as cursor:
            return [tuple(r) for r in cursor.fetchall()]
