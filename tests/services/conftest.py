"""Service tests use the storage tests' real databases (SQLite, and PostgreSQL when reachable)."""

from tests.db.conftest import db_url, engine, postgres_server, session  # noqa: F401
