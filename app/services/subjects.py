"""A collection's subjects and templates: list, read, rename, delete."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from app.core.errors import FaceNotFound, SubjectNotFound
from app.core.logging import log_event
from app.db.audit import write_audit
from app.db.faces import delete_face, get_face_by_public_id, list_faces
from app.db.models import Collection, Face, Subject
from app.db.subjects import (
    delete_subject,
    face_counts,
    get_subject_by_external_id,
    list_subjects,
    update_subject,
)
from app.schemas.common import Box, FaceQualityPublic
from app.schemas.subjects import (
    FaceDeleted,
    FacePublic,
    SubjectDeleted,
    SubjectDetail,
    SubjectPage,
    SubjectPublic,
    SubjectUpdate,
)
from app.services.collections import Target, find_collection
from app.services.container import Services
from app.services.cursors import decode_cursor
from app.services.transactions import after_commit, begin_gallery_write

logger = logging.getLogger(__name__)


def list_subject_page(session: Session, target: Target, limit: int, cursor: str | None) -> SubjectPage:
    collection = find_collection(session, target)
    after_id = decode_cursor(cursor)
    subjects, total = list_subjects(session, collection.id, limit=limit, after_id=after_id)
    counts = face_counts(session, [subject.id for subject in subjects])
    items = [subject_public(subject, counts[subject.id]) for subject in subjects]
    next_cursor = str(subjects[-1].id) if len(subjects) == limit else None
    return SubjectPage(items=items, total=total, next_cursor=next_cursor)


def get_subject(session: Session, target: Target, subject_id: str) -> SubjectDetail:
    subject = _subject(session, find_collection(session, target), subject_id)
    return _detail(session, subject)


def patch_subject(session: Session, target: Target, subject_id: str, update: SubjectUpdate) -> SubjectDetail:
    begin_gallery_write(session)
    collection = find_collection(session, target)
    subject = _subject(session, collection, subject_id)
    update_subject(session, subject, **update.changes())
    write_audit(
        session,
        target.actor,
        "subject.update",
        subject.external_id,
        {"fields": sorted(update.model_fields_set)},
        collection_id=collection.id,
    )
    return _detail(session, subject)


def remove_subject(services: Services, session: Session, target: Target, subject_id: str) -> SubjectDeleted:
    begin_gallery_write(session)
    collection = find_collection(session, target)
    subject = _subject(session, collection, subject_id)
    face_ids = delete_subject(session, subject)
    after_commit(session, services.index.catch_up)
    write_audit(
        session,
        target.actor,
        "subject.delete",
        subject_id,
        {"faces": len(face_ids)},
        collection_id=collection.id,
    )
    log_event(
        logger, "subject.deleted", collection=collection.external_id, subject=subject_id, faces=len(face_ids)
    )
    return SubjectDeleted(subject_id=subject_id, deleted_faces=len(face_ids))


def get_face(session: Session, target: Target, face_id: str) -> FacePublic:
    face = get_face_by_public_id(session, find_collection(session, target).id, face_id)
    # The subject is read by a second statement, which may already see it deleted (PostgreSQL).
    subject = None if face is None else face.subject
    if face is None or subject is None:
        raise FaceNotFound(f"no face {face_id!r}", {"face_id": face_id})
    return face_public(face, subject.external_id)


def remove_face(services: Services, session: Session, target: Target, face_id: str) -> FaceDeleted:
    begin_gallery_write(session)
    collection = find_collection(session, target)
    face = get_face_by_public_id(session, collection.id, face_id)
    if face is None:
        raise FaceNotFound(f"no face {face_id!r}", {"face_id": face_id})
    subject_id = face.subject.external_id
    delete_face(session, face)
    after_commit(session, services.index.catch_up)
    write_audit(
        session, target.actor, "face.delete", face_id, {"subject_id": subject_id}, collection_id=collection.id
    )
    log_event(logger, "face.deleted", face=face_id, subject=subject_id)
    return FaceDeleted(face_id=face_id, subject_id=subject_id)


def _subject(session: Session, collection: Collection, subject_id: str) -> Subject:
    subject = get_subject_by_external_id(session, collection.id, subject_id)
    if subject is None:
        raise SubjectNotFound(f"no subject {subject_id!r}", {"subject_id": subject_id})
    return subject


def _detail(session: Session, subject: Subject) -> SubjectDetail:
    faces = [face_public(face, subject.external_id) for face in list_faces(session, subject.id)]
    return SubjectDetail(**subject_public(subject, len(faces)).model_dump(), faces=faces)


def face_public(face: Face, subject_id: str) -> FacePublic:
    """A stored template as the API shows it; ``subject_id`` is its subject's external id."""
    quality = dict(face.quality_json or {})
    return FacePublic(
        face_id=face.public_id,
        subject_id=subject_id,
        box=Box.from_array((face.box_x1, face.box_y1, face.box_x2, face.box_y2)),
        det_score=face.det_score,
        quality=FaceQualityPublic(
            score=face.quality,
            det_score=float(quality.get("det_score", face.det_score)),
            face_size=float(quality.get("face_size", 0.0)),
            sharpness=float(quality.get("sharpness", 0.0)),
        ),
        model=face.model_name,
        model_version=face.model_version,
        created_at=face.created_at,
    )


def subject_public(subject: Subject, face_count: int) -> SubjectPublic:
    return SubjectPublic(
        subject_id=subject.external_id,
        name=subject.name,
        metadata=dict(subject.metadata_json or {}),
        face_count=face_count,
        created_at=subject.created_at,
        updated_at=subject.updated_at,
    )
