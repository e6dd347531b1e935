"""Subjects: create, read, update, page through, and delete with all their templates."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.changes import changes_since, current_change_seq
from app.db.faces import count_faces, get_face_by_public_id
from app.db.models import Face
from app.db.subjects import (
    count_subjects,
    delete_subject,
    face_counts,
    get_or_create_subject,
    get_subject_by_external_id,
    list_subjects,
    update_subject,
)
from tests.db.factories import add_test_face, default_id


def test_get_or_create_returns_the_existing_subject_unchanged(session: Session) -> None:
    created, was_created = get_or_create_subject(
        session, default_id(session), "alice", "Alice", {"team": "blue"}
    )
    again, created_again = get_or_create_subject(session, default_id(session), "alice", "Someone else", {})
    assert was_created and not created_again
    assert again.id == created.id
    assert (again.name, again.metadata_json) == ("Alice", {"team": "blue"})
    assert get_subject_by_external_id(session, default_id(session), "alice") is created
    assert get_subject_by_external_id(session, default_id(session), "nobody") is None


def test_update_changes_only_what_is_given(session: Session) -> None:
    subject, _ = get_or_create_subject(session, default_id(session), "bob", "Bob", {"a": 1})
    update_subject(session, subject, metadata={"a": 2})
    assert (subject.name, subject.metadata_json) == ("Bob", {"a": 2})
    update_subject(session, subject, name=None)
    session.expire_all()
    reread = get_subject_by_external_id(session, default_id(session), "bob")
    assert reread is not None
    assert (reread.name, reread.metadata_json) == (None, {"a": 2})


def test_pages_cover_every_subject_once(session: Session) -> None:
    for number in range(7):
        get_or_create_subject(session, default_id(session), f"person-{number}")
    seen: list[str] = []
    cursor = None
    while True:
        page, total = list_subjects(session, default_id(session), limit=3, after_id=cursor)
        assert total == 7
        if not page:
            break
        seen.extend(subject.external_id for subject in page)
        cursor = page[-1].id
    assert seen == [f"person-{number}" for number in range(7)]


def test_delete_removes_the_templates_and_logs_each_removal(session: Session) -> None:
    keep, _ = get_or_create_subject(session, default_id(session), "keep")
    kept_face = add_test_face(session, keep, seed=9, image=b"keep")
    doomed, _ = get_or_create_subject(session, default_id(session), "doomed")
    faces = [add_test_face(session, doomed, seed=seed, image=f"img-{seed}".encode()) for seed in range(3)]
    assert all(face is not None for face in faces)
    public_ids = [face.public_id for face in faces if face is not None]
    seq_before = current_change_seq(session)

    removed = delete_subject(session, doomed)

    assert removed == sorted(face.id for face in faces if face is not None)
    assert get_subject_by_external_id(session, default_id(session), "doomed") is None
    assert all(
        get_face_by_public_id(session, default_id(session), public_id) is None for public_id in public_ids
    )
    assert session.scalar(select(func.count()).select_from(Face).where(Face.subject_id == doomed.id)) == 0
    assert count_faces(session) == 1 and kept_face is not None
    assert count_subjects(session) == 1
    changes = changes_since(session, seq_before)
    assert [(change.op, change.face_id, change.subject_id) for change in changes] == [
        ("remove", face_id, doomed.id) for face_id in removed
    ]


def test_face_counts_include_subjects_without_faces(session: Session) -> None:
    with_faces, _ = get_or_create_subject(session, default_id(session), "with")
    add_test_face(session, with_faces, image=b"1")
    add_test_face(session, with_faces, image=b"2")
    without, _ = get_or_create_subject(session, default_id(session), "without")
    assert face_counts(session, [with_faces.id, without.id]) == {with_faces.id: 2, without.id: 0}
