"""The change counter: ordered, transactional, and consistent under concurrent writers."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.changes import changes_since, current_change_seq, faces_removed_since
from app.db.faces import count_faces, delete_face
from app.db.models import ChangeLog, Face
from app.db.session import begin_write, create_engine_for, make_session_factory, upgrade_database
from app.db.subjects import get_or_create_subject
from tests.db.factories import add_test_face, default_id, store_test_face


def test_every_add_and_remove_advances_the_counter_in_order(session: Session) -> None:
    start = current_change_seq(session)
    subject, _ = get_or_create_subject(session, default_id(session), "frank")
    first = add_test_face(session, subject, image=b"1")
    after_first = current_change_seq(session)
    second = add_test_face(session, subject, image=b"2")
    after_second = current_change_seq(session)
    delete_face(session, first)
    after_delete = current_change_seq(session)
    assert start < after_first < after_second < after_delete

    changes = changes_since(session, start)
    assert [(c.op, c.face_id, c.subject_id) for c in changes] == [
        ("add", first.id, subject.id),
        ("add", second.id, subject.id),
        ("remove", first.id, subject.id),
    ]
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert [c.face_id for c in changes_since(session, after_first)] == [second.id, first.id]
    assert changes_since(session, after_delete) == []
    assert len(changes_since(session, start, limit=2)) == 2


def test_faces_removed_since_a_seq_are_the_removals_after_it(session: Session) -> None:
    subject, _ = get_or_create_subject(session, default_id(session), "hedda")
    kept, first, second = (add_test_face(session, subject, image=image) for image in (b"k", b"1", b"2"))
    start = current_change_seq(session)
    delete_face(session, first)
    after_first = current_change_seq(session)
    add_test_face(session, subject, image=b"3")  # an add after the seq is not a removal
    delete_face(session, second)

    assert faces_removed_since(session, start) == {first.id, second.id}
    assert faces_removed_since(session, after_first) == {second.id}
    assert faces_removed_since(session, current_change_seq(session)) == set()
    assert kept.id not in faces_removed_since(session, 0)


def test_a_duplicate_writes_no_change(session: Session) -> None:
    subject, _ = get_or_create_subject(session, default_id(session), "gina")
    first = add_test_face(session, subject, image=b"same")
    seq = current_change_seq(session)
    again, added = store_test_face(session, subject, image=b"same")
    assert (again.id, added) == (first.id, False)
    assert current_change_seq(session) == seq


def test_rollback_leaves_neither_face_nor_change(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with factory() as session:
        seq = current_change_seq(session)
        faces = count_faces(session)
        subject, _ = get_or_create_subject(session, default_id(session), "rolled-back")
        face = add_test_face(session, subject)
        assert face is not None
        assert current_change_seq(session) > seq
        session.rollback()
    with factory() as session:
        assert current_change_seq(session) == seq
        assert count_faces(session) == faces
        assert session.scalar(select(ChangeLog).where(ChangeLog.face_id == face.id)) is None


def test_concurrent_writers_commit_in_seq_order(empty_db_url: str) -> None:
    upgrade_database(empty_db_url)
    engine = create_engine_for(empty_db_url)
    factory = make_session_factory(engine)
    writers = 6
    barrier = threading.Barrier(writers)
    created: list[bool] = []
    errors: list[BaseException] = []

    def enroll(number: int) -> None:
        try:
            with factory() as session:
                barrier.wait()
                begin_write(session)
                subject, was_created = get_or_create_subject(session, default_id(session), "crowd")
                add_test_face(session, subject, seed=number, image=f"photo-{number}".encode())
                session.commit()
                created.append(was_created)
        except Exception as error:  # reported by the assertion below
            errors.append(error)

    try:
        threads = [threading.Thread(target=enroll, args=(number,)) for number in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert sorted(created) == [False] * (writers - 1) + [True]
        with factory() as session:
            changes = changes_since(session, 0)
            assert [change.seq for change in changes] == list(range(1, writers + 1))
            face_ids = set(session.scalars(select(Face.id)))
            assert {change.face_id for change in changes} == face_ids
            assert len(face_ids) == writers
    finally:
        engine.dispose()
