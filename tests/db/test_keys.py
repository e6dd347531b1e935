"""API keys: stored only as hashes, found by plaintext, dead once revoked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db.keys import (
    create_api_key,
    list_api_keys,
    lookup_api_key,
    mark_api_key_used,
    revoke_api_key,
)


def test_plaintext_is_never_stored(session: Session) -> None:
    key, plaintext = create_api_key(session, "admin", "ops laptop")
    assert plaintext.startswith("frk_") and len(plaintext) > 40
    assert key.prefix == plaintext[:12]
    rows = session.execute(text("SELECT * FROM api_keys")).all()
    stored = " ".join(str(value) for row in rows for value in row)
    assert plaintext not in stored
    assert plaintext[12:] not in stored


def test_lookup_finds_the_key_only_from_its_exact_plaintext(session: Session) -> None:
    key, plaintext = create_api_key(session, "client", "kiosk")
    other, _ = create_api_key(session, "client", "other")
    assert lookup_api_key(session, plaintext) is key
    assert lookup_api_key(session, plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    assert lookup_api_key(session, key.key_hash) is None
    assert lookup_api_key(session, "") is None
    assert other is not key


def test_revoked_keys_stop_working(session: Session) -> None:
    key, plaintext = create_api_key(session, "client", "lost phone")
    revoke_api_key(session, key)
    assert key.revoked_at is not None
    assert lookup_api_key(session, plaintext) is None
    assert key not in list_api_keys(session)
    assert key in list_api_keys(session, include_revoked=True)


def test_use_is_recorded_at_most_once_a_minute(session: Session) -> None:
    key, _ = create_api_key(session, "client", "busy")
    assert mark_api_key_used(session, key)
    first = key.last_used_at
    assert not mark_api_key_used(session, key)
    assert key.last_used_at == first
    assert mark_api_key_used(session, key, min_interval=timedelta(0))


def test_unknown_roles_are_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="role"):
        create_api_key(session, "root", "nope")  # type: ignore[arg-type]
