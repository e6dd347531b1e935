"""Engine settings and the database URL the service starts with."""

from __future__ import annotations

from datetime import timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.db.session import database_url, normalise_url
from app.db.subjects import get_or_create_subject, get_subject_by_external_id
from tests.db.factories import default_id


class _SettingsWithUrl(Settings):
    database_url: str | None = None


def test_default_url_is_a_sqlite_file_in_a_created_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "yet"
    url = database_url(Settings(data_dir=data_dir))
    assert url == f"sqlite:///{data_dir / 'facerec.db'}"
    assert data_dir.is_dir()


def test_configured_url_wins(tmp_path: Path) -> None:
    url = "postgresql+psycopg://facerec@db:5432/facerec"
    assert database_url(_SettingsWithUrl(data_dir=tmp_path / "unused", database_url=url)) == url
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_postgres_urls_use_psycopg3(scheme: str) -> None:
    assert normalise_url(f"{scheme}://u@h/db").drivername == "postgresql+psycopg"


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar_one() == 5000


def test_timestamps_come_back_in_utc(session: Session) -> None:
    subject, _ = get_or_create_subject(session, default_id(session), "utc")
    written = subject.created_at
    session.expunge_all()
    reread = get_subject_by_external_id(session, default_id(session), "utc")
    assert reread is not None
    assert reread.created_at.tzinfo is not None
    assert reread.created_at.utcoffset() == timezone.utc.utcoffset(None)
    assert reread.created_at == written
