"""Engines, sessions and schema upgrades for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

import app
from app.core.logging import log_event
from app.core.settings import Settings

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5_000
# Migrations wait longer: a second process starting at the same time should
# queue behind the first rather than fail.
SQLITE_MIGRATION_BUSY_TIMEOUT_MS = 120_000
# Any constant works; it only has to be the same in every process.
MIGRATION_LOCK_KEY = 0x66726563_6D696772  # "frecmigr"
_SQLITE_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})


class MigrationsNotFound(RuntimeError):
    """The Alembic scripts are not where the package expects them (an install without the source tree)."""


def database_url(settings: Settings) -> str:
    """``FACEREC_DATABASE_URL`` when set, else a SQLite file in ``data_dir`` (created if missing)."""
    configured = getattr(settings, "database_url", None)
    if configured:
        return str(configured)
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'facerec.db'}"


def normalise_url(url: str | URL) -> URL:
    """Route bare ``postgres://``/``postgresql://`` URLs to psycopg 3, the driver we install."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine_for(url: str | URL, *, sqlite_foreign_keys: bool = True) -> Engine:
    """An engine with the per-backend settings the service relies on.

    SQLite: WAL (readers never block the writer), enforced foreign keys, a
    busy timeout instead of instant "database is locked", and real
    transactions (see ``_install_sqlite_hooks``). PostgreSQL: pre-ping so a
    restarted server does not fail the first request.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        _install_sqlite_hooks(engine, foreign_keys=sqlite_foreign_keys)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _install_sqlite_hooks(engine: Engine, *, foreign_keys: bool) -> None:
    # The sqlite3 module's legacy mode neither BEGINs before SELECT or DDL nor
    # nests SAVEPOINTs in the transaction, so SQLAlchemy issues BEGIN itself.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"sqlite_begin must be one of {sorted(_SQLITE_BEGIN_MODES)}, not {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit, for building responses."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer; call first in a request that writes.

    On SQLite a transaction that reads, then writes after another writer has
    committed fails at once with "database is locked"; taking the write lock
    up front makes it wait its turn (busy timeout) instead. A no-op on
    PostgreSQL and when the transaction has already begun.
    """
    if session.in_transaction():
        return
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})


def default_migrations_dir() -> Path:
    return Path(app.__file__).resolve().parents[1] / "migrations"


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock until it commits.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: ``BEGIN
    IMMEDIATE`` (the file's write lock) with a long busy timeout.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_MIGRATION_BUSY_TIMEOUT_MS}")
            connection.commit()
            connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            yield connection
            if connection.dialect.name == "sqlite":
                _check_foreign_keys(connection)


def _check_foreign_keys(connection: Connection) -> None:
    # Migrations run with SQLite's foreign keys off (batch table rebuilds would
    # otherwise cascade-delete faces), so check what they left behind.
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"migration left {len(problems)} rows with broken foreign keys")


def upgrade_database(url: str | URL, *, revision: str = "head", migrations_dir: Path | None = None) -> None:
    """Apply the Alembic migrations; safe when several processes start at once."""
    # Imported here: a serving worker whose database was migrated before it started
    # never needs Alembic, which would hold ~13 MiB of it (``Settings.migrate_on_start``).
    from alembic import command
    from alembic.config import Config

    directory = migrations_dir or default_migrations_dir()
    if not (directory / "env.py").is_file():
        raise MigrationsNotFound(
            f"no Alembic migrations in {directory}: run the service from the source tree "
            "(or an install that ships migrations/)"
        )
    config = Config()
    config.set_main_option("script_location", str(directory).replace("%", "%%"))
    engine = create_engine_for(url, sqlite_foreign_keys=False)
    try:
        with migration_connection(engine) as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    log_event(logger, "db.upgraded", revision=revision, backend=engine.dialect.name)
