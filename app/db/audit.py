"""The audit log of administrative and data changes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import AuditLog

SYSTEM_ACTOR = "system"


def write_audit(
    session: Session,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    *,
    collection_id: int | None = None,
) -> AuditLog:
    """Record ``actor`` (a key prefix or ``"system"``) doing ``action`` to ``target`` (in a collection).

    ``details`` is for ids, counts and settings: never images, embeddings or crops.
    """
    entry = AuditLog(
        actor=actor, action=action, target=target, details=details or {}, collection_id=collection_id
    )
    session.add(entry)
    session.flush()
    return entry


def list_audit(session: Session, limit: int = 100, before_id: int | None = None) -> list[AuditLog]:
    """Newest first; pass the last id seen as ``before_id`` for the next page."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    return list(session.scalars(query))


def list_audit_by_action(
    session: Session, action: str, collection_id: int, limit: int = 50
) -> list[AuditLog]:
    """One kind of entry (e.g. ``threshold.set``) in one collection, newest first."""
    query = (
        select(AuditLog)
        .where(AuditLog.action == action, AuditLog.collection_id == collection_id)
        .order_by(AuditLog.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
