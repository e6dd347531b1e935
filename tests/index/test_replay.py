"""Replaying the change log gives the index the database's final state, idempotently."""

from __future__ import annotations

import numpy as np
import pytest

from app.index import FaceIndex, IndexChange, apply_changes
from tests.index.gallery import Gallery, index_of, make_gallery


@pytest.fixture(scope="module")
def gallery() -> Gallery:
    return make_gallery(seed=2, n_faces=500, n_subjects=80, dim=32)


def change_log(gallery: Gallery) -> tuple[list[IndexChange], Gallery]:
    """A log of adds, removes and deleted-later adds, and the gallery it ends in."""
    rng = np.random.default_rng(3)
    log: list[IndexChange] = []
    deleted = set(rng.choice(gallery.face_ids, 120, replace=False).tolist())
    for face_id, subject_id, embedding in zip(
        gallery.face_ids.tolist(), gallery.subject_ids.tolist(), gallery.embeddings, strict=True
    ):
        # The log keeps no embedding for a face deleted since, as a database row would not.
        log.append(IndexChange(0, "add", face_id, subject_id, None if face_id in deleted else embedding))
    for face_id in sorted(deleted):
        position = int(rng.integers(0, len(log) + 1))
        later = max(position, next(i for i, c in enumerate(log) if c.face_id == face_id) + 1)
        log.insert(later, IndexChange(0, "remove", face_id, None, None))
    log.insert(5, IndexChange(0, "remove", 10**12, None, None))  # never existed
    log = [change._replace(seq=seq) for seq, change in enumerate(log, start=1)]
    return log, gallery.without(np.array(sorted(deleted), dtype=np.int64))


def assert_same_content(index: FaceIndex, expected: FaceIndex, gallery: Gallery) -> None:
    np.testing.assert_array_equal(index.face_ids(), expected.face_ids())
    assert [index.subject_of(f) for f in index.face_ids().tolist()] == [
        expected.subject_of(f) for f in expected.face_ids().tolist()
    ]
    got = index.search_templates(gallery.queries, 10)
    want = expected.search_templates(gallery.queries, 10)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)


def test_replay_equals_building_from_the_final_state(gallery: Gallery) -> None:
    log, final = change_log(gallery)
    index = FaceIndex(32, "cosine", use_gpu=False)
    assert apply_changes(index, log) == len(log) == index.applied_seq
    assert_same_content(index, index_of(final, "cosine"), gallery)


def test_replay_in_small_polls_equals_one_replay(gallery: Gallery) -> None:
    log, final = change_log(gallery)
    index = FaceIndex(32, "euclidean", use_gpu=False)
    for start in range(0, len(log), 37):
        apply_changes(index, log[start : start + 37])
    assert index.applied_seq == len(log)
    assert_same_content(index, index_of(final, "euclidean"), gallery)


def test_replaying_twice_is_idempotent(gallery: Gallery) -> None:
    log, final = change_log(gallery)
    index = FaceIndex(32, "cosine", use_gpu=False)
    apply_changes(index, log)
    assert apply_changes(index, log) == len(log)  # already applied: skipped by seq
    index.applied_seq = 0  # a snapshot older than its content: every change replays
    assert apply_changes(index, log) == len(log)
    assert_same_content(index, index_of(final, "cosine"), gallery)


def test_a_replacing_add_and_an_empty_poll(gallery: Gallery) -> None:
    index = index_of(gallery, "cosine")
    index.applied_seq = 10
    assert apply_changes(index, []) == 10
    face_id = int(gallery.face_ids[0])
    apply_changes(index, [(11, "add", face_id, 999, gallery.queries[0])])
    assert index.subject_of(face_id) == 999 and index.applied_seq == 11
    assert index.search_subjects(gallery.queries[:1], 1)[0][0].face_id == face_id


def test_unknown_operations_are_refused(gallery: Gallery) -> None:
    index = FaceIndex(32, "cosine", use_gpu=False)
    with pytest.raises(ValueError):
        apply_changes(index, [(1, "update", 1, 1, gallery.embeddings[0])])
    assert index.applied_seq == 0
