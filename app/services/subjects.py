"""Subjects and templates: list, read, rename, delete."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from app.core.errors import FaceNotFound, SubjectNotFound, ValidationFailed
from app.core.logging import log_event
from app.db.audit import write_audit
from app.db.faces import delete_face, get_face_by_public_id, list_faces
from app.db.models import Subject
from app.db.subjects import (
    delete_subject,
    face_counts,
    get_subject_by_external_id,
    list_subjects,
    update_subject,
)
from app.schemas.subjects import (
    FaceDeleted,
    FacePublic,
    SubjectDeleted,
    SubjectDetail,
    SubjectPage,
    SubjectPublic,
    SubjectUpdate,
)
from app.services.container import Services
from app.services.transactions import after_commit, begin_gallery_write

logger = logging.getLogger(__name__)


def list_subject_page(session: Session, limit: int, cursor: str | None) -> SubjectPage:
    after_id = _decode_cursor(cursor)
    subjects, total = list_subjects(session, limit=limit, after_id=after_id)
    counts = face_counts(session, [subject.id for subject in subjects])
    items = [SubjectPublic.from_subject(subject, counts[subject.id]) for subject in subjects]
    next_cursor = str(subjects[-1].id) if len(subjects) == limit else None
    return SubjectPage(items=items, total=total, next_cursor=next_cursor)


def get_subject(session: Session, subject_id: str) -> SubjectDetail:
    subject = _subject(session, subject_id)
    return _detail(session, subject)


def patch_subject(session: Session, subject_id: str, update: SubjectUpdate, actor: str) -> SubjectDetail:
    begin_gallery_write(session)
    subject = _subject(session, subject_id)
    if "name" in update.model_fields_set:
        update_subject(session, subject, name=update.name)
    if "metadata" in update.model_fields_set:
        update_subject(session, subject, metadata=update.metadata or {})
    write_audit(
        session, actor, "subject.update", subject.external_id, {"fields": sorted(update.model_fields_set)}
    )
    return _detail(session, subject)


def remove_subject(services: Services, session: Session, subject_id: str, actor: str) -> SubjectDeleted:
    begin_gallery_write(session)
    subject = _subject(session, subject_id)
    face_ids = delete_subject(session, subject)
    after_commit(session, services.index.catch_up)
    write_audit(session, actor, "subject.delete", subject_id, {"faces": len(face_ids)})
    log_event(logger, "subject.deleted", subject=subject_id, faces=len(face_ids))
    return SubjectDeleted(subject_id=subject_id, deleted_faces=len(face_ids))


def get_face(session: Session, face_id: str) -> FacePublic:
    face = get_face_by_public_id(session, face_id)
    # The subject is read by a second statement, which may already see it deleted (PostgreSQL).
    subject = None if face is None else face.subject
    if face is None or subject is None:
        raise FaceNotFound(f"no face {face_id!r}", {"face_id": face_id})
    return FacePublic.from_face(face, subject.external_id)


def remove_face(services: Services, session: Session, face_id: str, actor: str) -> FaceDeleted:
    begin_gallery_write(session)
    face = get_face_by_public_id(session, face_id)
    if face is None:
        raise FaceNotFound(f"no face {face_id!r}", {"face_id": face_id})
    subject_id = face.subject.external_id
    delete_face(session, face)
    after_commit(session, services.index.catch_up)
    write_audit(session, actor, "face.delete", face_id, {"subject_id": subject_id})
    log_event(logger, "face.deleted", face=face_id, subject=subject_id)
    return FaceDeleted(face_id=face_id, subject_id=subject_id)


def _subject(session: Session, subject_id: str) -> Subject:
    subject = get_subject_by_external_id(session, subject_id)
    if subject is None:
        raise SubjectNotFound(f"no subject {subject_id!r}", {"subject_id": subject_id})
    return subject


def _detail(session: Session, subject: Subject) -> SubjectDetail:
    faces = [FacePublic.from_face(face, subject.external_id) for face in list_faces(session, subject.id)]
    return SubjectDetail(**SubjectPublic.from_subject(subject, len(faces)).model_dump(), faces=faces)


def _decode_cursor(cursor: str | None) -> int | None:
    """Cursors are opaque to clients; today they are the last subject's row id."""
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or len(cursor) > 18:
        raise ValidationFailed("cursor is not one this service returned", {"cursor": cursor[:64]})
    return int(cursor)
