"""Real databases for the storage tests: a SQLite file always, PostgreSQL when reachable.

PostgreSQL: each module (or test, for ``empty_db_url``) gets a fresh,
uniquely named database on 127.0.0.1:5432, dropped afterwards. Set
``FACEREC_TEST_PG_ADMIN_URL`` to use another server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import URL, Engine, make_url
from sqlalchemy.orm import Session

from app.db.session import create_engine_for, upgrade_database

BACKENDS = ["sqlite", "postgresql"]


@dataclass(frozen=True)
class PostgresServer:
    admin_url: URL | None
    unavailable: str = ""

    def connect(self) -> psycopg.Connection:
        assert self.admin_url is not None
        url = self.admin_url
        return psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database,
            autocommit=True,
            connect_timeout=3,
        )


def _candidate_admin_urls() -> list[URL]:
    given = os.environ.get("FACEREC_TEST_PG_ADMIN_URL")
    if given:
        return [make_url(given)]
    return [make_url(f"postgresql+psycopg://{user}@127.0.0.1:5432/test") for user in ("postgres", "root")]


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    errors = []
    for url in _candidate_admin_urls():
        server = PostgresServer(url.set(drivername="postgresql+psycopg"))
        try:
            with server.connect() as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as error:
            errors.append(f"{url.username}: {str(error).strip()}")
            continue
        return server
    return PostgresServer(None, "PostgreSQL unreachable (" + "; ".join(errors) + ")")


@contextmanager
def fresh_database(backend: str, folder: Path, server: PostgresServer) -> Iterator[str]:
    """An empty database of ``backend``; skips the test when PostgreSQL is unreachable."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'facerec.db'}"
        return
    if server.admin_url is None:
        pytest.skip(server.unavailable)
    name = f"facerec_test_{uuid.uuid4().hex[:12]}"
    with server.connect() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[str]:
    """A migrated database shared by one module's tests (each test rolls back)."""
    with fresh_database(request.param, tmp_path_factory.mktemp("db"), postgres_server) as url:
        upgrade_database(url)
        yield url


@pytest.fixture(params=BACKENDS)
def empty_db_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[str]:
    """An empty, unmigrated database of its own, for tests that commit or migrate."""
    with fresh_database(request.param, tmp_path, postgres_server) as url:
        yield url


@pytest.fixture(scope="module")
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_for(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session whose commits are savepoints inside one transaction rolled back at the end."""
    with engine.connect() as connection:
        outer = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()
            outer.rollback()
