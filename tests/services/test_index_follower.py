"""A worker's index of a collection while the collection moves to another model.

The sync thread and a request run at once here, as in a worker: the thread
is held inside the rebuild of the moved collection while a query of the new
model arrives. The query must wait for the new index, never meet the old
model's vectors (here of another size, so meeting them fails loudly).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from app.core.settings import Settings
from app.db.changes import lock_change_log, record_drop
from app.db.collections import get_collection_by_id
from app.db.faces import delete_face, list_faces
from app.db.subjects import get_or_create_subject
from app.index import SearchIndex
from app.pipeline.similarity import Metric
from app.services.index_engines import EmbeddingBatch
from app.services.index_follower import EmbeddingSpace, IndexFollower
from tests.db.factories import MODEL, add_test_face, default_id, store_test_face, unit_vector
from tests.services.conftest import Sessions

NEXT_MODEL = "next-model"
SPACES = {MODEL: EmbeddingSpace(128, "cosine"), NEXT_MODEL: EmbeddingSpace(64, "cosine")}


def move_default_collection(session_factory: Sessions, people: int) -> int:
    """What a re-embedding commits: every template replaced by the next model's, and a ``rebuild``."""
    with session_factory() as session:
        collection_id = default_id(session)
        for seed in range(people):
            subject, _ = get_or_create_subject(session, collection_id, f"s{seed}", None, None)
            for face in list_faces(session, subject.id):
                delete_face(session, face)
            store_test_face(
                session, subject, seed=seed, image=f"photo-{seed}".encode(), model_name=NEXT_MODEL, dim=64
            )
        collection = get_collection_by_id(session, collection_id)
        assert collection is not None
        collection.model_name = NEXT_MODEL
        lock_change_log(session)
        record_drop(session, collection_id, op="rebuild")
        session.commit()
    return collection_id


def test_a_query_of_the_new_model_waits_for_the_rebuild_under_way(
    database: tuple[str, Sessions], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, session_factory = database
    with session_factory() as session:
        collection_id = default_id(session)
        for seed in range(12):
            subject, _ = get_or_create_subject(session, collection_id, f"s{seed}", None, None)
            add_test_face(session, subject, seed=seed, image=f"photo-{seed}".encode())
        session.commit()
    follower = IndexFollower.open(
        session_factory,
        settings=Settings(data_dir=str(tmp_path), index_kind="flat"),
        database_url=url,
        spaces=SPACES.get,
    )
    building, release = threading.Event(), threading.Event()
    build = follower.engine.build

    def held_build(
        collection: int, dim: int, metric: Metric, batches: Iterable[EmbeddingBatch], seq: int
    ) -> SearchIndex:
        if dim == SPACES[NEXT_MODEL].dim:
            building.set()
            assert release.wait(timeout=30)
        return build(collection, dim, metric, batches, seq)

    monkeypatch.setattr(follower.engine, "build", held_build)
    try:
        move_default_collection(session_factory, 12)
        sync = threading.Thread(target=follower.catch_up)  # the sync thread's replay
        sync.start()
        assert building.wait(timeout=30)
        threading.Timer(0.5, release.set).start()  # the rebuild finishes a moment later
        (top,) = follower.search_subjects(
            collection_id, unit_vector(5, 64)[None, :], 1, exclude_face_ids=(), model_name=NEXT_MODEL
        )
        assert release.is_set()  # the query waited for the rebuild
        assert top[0].similarity == pytest.approx(1.0, abs=1e-5)
        sync.join(timeout=30)
    finally:
        release.set()
        follower.stop()
