"""The migrations build exactly the models' schema, repeatably and under concurrent start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from app.db.models import Base
from app.db.session import MigrationsNotFound, create_engine_for, upgrade_database
from app.db.stored_settings import get_setting, set_setting
from tests.db.factories import default_id

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAD = "0004"  # the newest migration


def _schema_diff(url: str) -> list[object]:
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _version(url: str) -> str | None:
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_upgrade_builds_the_models_schema(empty_db_url: str) -> None:
    upgrade_database(empty_db_url)
    assert _schema_diff(empty_db_url) == []
    assert _version(empty_db_url) == HEAD


def test_upgrade_twice_changes_nothing_and_keeps_data(empty_db_url: str) -> None:
    upgrade_database(empty_db_url)
    engine = create_engine_for(empty_db_url)
    try:
        with Session(engine) as session, session.begin():
            set_setting(session, default_id(session), "identify.threshold", 0.42)
        upgrade_database(empty_db_url)
        with Session(engine) as session:
            assert get_setting(session, default_id(session), "identify.threshold") == 0.42
    finally:
        engine.dispose()
    assert _schema_diff(empty_db_url) == []
    assert _version(empty_db_url) == HEAD


def test_integer_ids_are_never_reused_on_sqlite(empty_db_url: str) -> None:
    if not empty_db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL sequences never go back by construction")
    upgrade_database(empty_db_url)
    engine = create_engine_for(empty_db_url)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
            rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
            sql = {name: statement for name, statement in rows}
    finally:
        engine.dispose()
    for table in ("subjects", "faces", "change_log"):
        assert table in tables
        assert "AUTOINCREMENT" in sql[table], table


def test_two_processes_starting_at_once_both_succeed(empty_db_url: str) -> None:
    script = "import sys; from app.db.session import upgrade_database; upgrade_database(sys.argv[1])"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_db_url], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    results = [
        (process.wait(timeout=120), process.stderr.read() if process.stderr else "") for process in processes
    ]
    assert [code for code, _ in results] == [0, 0, 0], results
    assert _schema_diff(empty_db_url) == []


def test_alembic_command_line_upgrades_too(empty_db_url: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={empty_db_url}", "upgrade", "head"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert _version(empty_db_url) == HEAD
    assert _schema_diff(empty_db_url) == []


def test_missing_migrations_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationsNotFound, match="no Alembic migrations"):
        upgrade_database(f"sqlite:///{tmp_path / 'x.db'}", migrations_dir=tmp_path / "migrations")
