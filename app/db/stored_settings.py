"""A collection's operating settings changed at run time (thresholds), kept as JSON by key.

Distinct from ``app.core.settings``, which is the process's start-up
configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Setting


def get_setting(session: Session, collection_id: int, key: str, default: Any = None) -> Any:
    row = session.get(Setting, (collection_id, key))
    return default if row is None else row.value


def get_settings(session: Session, collection_id: int, keys: Iterable[str]) -> dict[str, Any]:
    """The stored values of these keys, in one query of two columns; a key not stored is absent."""
    query = select(Setting.key, Setting.value).where(
        Setting.collection_id == collection_id, Setting.key.in_(list(keys))
    )
    return {key: value for key, value in session.execute(query)}


def set_setting(session: Session, collection_id: int, key: str, value: Any) -> Setting:
    row = session.get(Setting, (collection_id, key))
    if row is None:
        row = Setting(collection_id=collection_id, key=key, value=value)
        session.add(row)
    else:
        row.value = value
    session.flush()
    return row


def all_settings(session: Session, collection_id: int) -> dict[str, Any]:
    query = select(Setting).where(Setting.collection_id == collection_id).order_by(Setting.key)
    return {row.key: row.value for row in session.scalars(query)}
