"""Service tests use the storage tests' real databases (SQLite, and PostgreSQL when reachable)."""

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.orm import Session

from app.db.session import create_engine_for, make_session_factory, upgrade_database
from tests.db.conftest import db_url, empty_db_url, engine, postgres_server, session  # noqa: F401

Sessions = Callable[[], Session]


@pytest.fixture
def database(empty_db_url: str) -> Iterator[tuple[str, Sessions]]:  # noqa: F811
    """A migrated empty database: its URL and a session factory."""
    upgrade_database(empty_db_url)
    connections = create_engine_for(empty_db_url)
    yield empty_db_url, make_session_factory(connections)
    connections.dispose()
