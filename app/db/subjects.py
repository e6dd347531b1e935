"""Subjects: the people templates belong to, addressed by the client's ``external_id`` within a collection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.changes import lock_change_log, record_changes
from app.db.models import Face, Subject
from app.db.unset import UNSET, Unset


def get_subject_by_external_id(session: Session, collection_id: int, external_id: str) -> Subject | None:
    return session.scalar(
        select(Subject).where(Subject.collection_id == collection_id, Subject.external_id == external_id)
    )


def get_or_create_subject(
    session: Session,
    collection_id: int,
    external_id: str,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Subject, bool]:
    """The subject and whether it was created; an existing one is returned unchanged."""
    existing = get_subject_by_external_id(session, collection_id, external_id)
    if existing is not None:
        return existing, False
    subject = Subject(
        collection_id=collection_id, external_id=external_id, name=name, metadata_json=metadata or {}
    )
    try:
        # A savepoint, so losing a race with a concurrent create keeps the transaction usable.
        with session.begin_nested():
            session.add(subject)
    except IntegrityError:
        winner = get_subject_by_external_id(session, collection_id, external_id)
        if winner is None:
            raise
        return winner, False
    return subject, True


def list_subjects(
    session: Session, collection_id: int, limit: int = 50, after_id: int | None = None
) -> tuple[list[Subject], int]:
    """A page of the collection's subjects in id order after the cursor ``after_id``, and their count.

    A keyset cursor (the last item's id) rather than an offset, so deletes
    between pages neither skip nor repeat subjects.
    """
    query = select(Subject).where(Subject.collection_id == collection_id).order_by(Subject.id).limit(limit)
    if after_id is not None:
        query = query.where(Subject.id > after_id)
    return list(session.scalars(query)), count_subjects(session, collection_id)


def update_subject(
    session: Session,
    subject: Subject,
    *,
    name: str | None | Unset = UNSET,
    metadata: dict[str, Any] | Unset = UNSET,
) -> Subject:
    if name is not UNSET:
        subject.name = name
    if metadata is not UNSET:
        subject.metadata_json = metadata
    session.flush()
    return subject


def delete_subject(session: Session, subject: Subject) -> list[int]:
    """Delete the subject and all its templates; returns the removed face ids.

    Faces are deleted explicitly (not only by the ON DELETE CASCADE) so that
    each gets its 'remove' change row whatever the backend's foreign-key
    settings.
    """
    lock_change_log(session)
    face_ids = list(session.scalars(select(Face.id).where(Face.subject_id == subject.id).order_by(Face.id)))
    record_changes(session, "remove", subject.collection_id, [(face_id, subject.id) for face_id in face_ids])
    session.execute(delete(Face).where(Face.subject_id == subject.id))
    session.delete(subject)
    session.flush()
    return face_ids


def count_subjects(session: Session, collection_id: int | None = None) -> int:
    """Subjects of one collection, or of all when ``collection_id`` is None."""
    query = select(func.count()).select_from(Subject)
    if collection_id is not None:
        query = query.where(Subject.collection_id == collection_id)
    return session.scalar(query) or 0


def face_counts(session: Session, subject_ids: Iterable[int]) -> dict[int, int]:
    """Templates per subject, 0 included, for list responses."""
    wanted = set(subject_ids)
    counts = dict.fromkeys(wanted, 0)
    if wanted:
        rows = session.execute(
            select(Face.subject_id, func.count()).where(Face.subject_id.in_(wanted)).group_by(Face.subject_id)
        )
        counts.update({subject_id: count for subject_id, count in rows})
    return counts
