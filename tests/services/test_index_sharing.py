"""Several workers on one data folder: one writes snapshots, the others map them.

Two followers in one process stand in for two worker processes: the writer
lock is an ``flock`` on a file each opens on its own, which conflicts
within a process as between processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.settings import Settings
from app.db.changes import current_change_seq
from app.db.faces import delete_face, list_faces
from app.db.subjects import get_or_create_subject
from app.index import FaceIndex
from app.services import index_sharing
from app.services.index_follower import EmbeddingSpace, IndexFollower
from tests.db.factories import MODEL, add_test_face, default_id, unit_vector
from tests.services.conftest import Sessions

SPACE = EmbeddingSpace(128, "cosine")


def enrol(session_factory: Sessions, first: int, count: int) -> None:
    with session_factory() as session:
        collection = default_id(session)
        for seed in range(first, first + count):
            subject, _ = get_or_create_subject(session, collection, f"s{seed}", None, None)
            add_test_face(session, subject, seed=seed, image=f"photo-{seed}".encode())
        session.commit()


def remove_subject_faces(session_factory: Sessions, external_id: str) -> None:
    with session_factory() as session:
        subject, _ = get_or_create_subject(session, default_id(session), external_id, None, None)
        for face in list_faces(session, subject.id):
            delete_face(session, face)
        session.commit()


def open_follower(url: str, session_factory: Sessions, data_dir: Path) -> IndexFollower:
    settings = Settings(data_dir=str(data_dir), index_kind="flat")
    return IndexFollower.open(
        session_factory,
        settings=settings,
        database_url=url,
        spaces=lambda model: SPACE if model == MODEL else None,
    )


def default_index_of(follower: IndexFollower, session_factory: Sessions) -> FaceIndex:
    with session_factory() as session:
        return follower.index_of(default_id(session))


def test_one_writer_maps_its_snapshot_and_the_others_adopt_it(
    database: tuple[str, Sessions], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_sharing, "SHARE_FROM", 10)
    url, session_factory = database
    enrol(session_factory, 0, 40)
    writer = open_follower(url, session_factory, tmp_path)
    reader = open_follower(url, session_factory, tmp_path)
    try:
        assert writer.writes_snapshots and not reader.writes_snapshots
        written = default_index_of(writer, session_factory)
        first = default_index_of(reader, session_factory)
        assert not first.mapped  # rebuilt by itself: its own copy
        reader.save_snapshots()  # not the writer: writes nothing
        assert reader.adopt_snapshots() == 0
        writer.save_snapshots()
        assert written.mapped

        # Changes after the snapshot reach the reader's adopted index from the change log.
        enrol(session_factory, 40, 5)
        remove_subject_faces(session_factory, "s3")
        reader.catch_up()
        assert reader.adopt_snapshots() == 1
        adopted = default_index_of(reader, session_factory)
        assert adopted is not first and adopted.mapped
        assert adopted.base_file == written.base_file
        writer.catch_up()
        np.testing.assert_array_equal(
            adopted.face_ids(),
            default_index_of(writer, session_factory).face_ids(),
        )
        assert len(adopted) == 44
        query = unit_vector(42)[None, :]
        (top,) = adopted.search_subjects(query, 1)
        assert top[0].similarity == pytest.approx(1.0, abs=1e-5)
        assert reader.adopt_snapshots() == 0  # nothing newer published
    finally:
        writer.stop()
    # The writer has gone: the next reader to look takes over.
    try:
        assert reader.adopt_snapshots() == 0 and reader.writes_snapshots
    finally:
        reader.stop()


def test_a_stale_snapshot_is_loaded_and_filled_in(database: tuple[str, Sessions], tmp_path: Path) -> None:
    url, session_factory = database
    enrol(session_factory, 0, 30)
    first = open_follower(url, session_factory, tmp_path)
    first.stop()  # the writer leaves a snapshot
    enrol(session_factory, 30, 3)
    remove_subject_faces(session_factory, "s0")
    again = open_follower(url, session_factory, tmp_path)
    try:
        index = default_index_of(again, session_factory)
        assert index.mapped and len(index) == 32
        (top,) = index.search_subjects(unit_vector(31)[None, :], 1)
        assert top[0].similarity == pytest.approx(1.0, abs=1e-5)
        (nearest,) = index.search_subjects(unit_vector(0)[None, :], 1)
        assert nearest[0].similarity < 0.9  # s0's template went after the snapshot
    finally:
        again.stop()


def test_milvus_holds_the_change_seq_it_was_built_at(database: tuple[str, Sessions], tmp_path: Path) -> None:
    """A restart finds Milvus current: nothing to replay, nothing to rebuild."""
    pytest.importorskip("milvus_lite", reason="the milvus-lite extra is not installed")
    url, session_factory = database
    enrol(session_factory, 0, 12)
    settings = Settings(data_dir=str(tmp_path), index_url=str(tmp_path / "milvus.db"))

    def opened() -> IndexFollower:
        return IndexFollower.open(
            session_factory,
            settings=settings,
            database_url=url,
            spaces=lambda m: SPACE if m == MODEL else None,
        )

    with session_factory() as session:
        seq, collection = current_change_seq(session), default_id(session)
    first = opened()
    stored = first.engine.open(collection, MODEL, SPACE.dim, SPACE.metric)
    assert stored is not None and stored.applied_seq == seq and len(stored) == 12
    first.stop()
    remove_subject_faces(session_factory, "s1")
    again = opened()
    try:
        index = default_index_of(again, session_factory)
        assert len(index) == 11 and index.applied_seq > seq
        (top,) = index.search_subjects(unit_vector(5)[None, :], 1)
        assert top[0].similarity == pytest.approx(1.0, abs=1e-5)
    finally:
        again.stop()
