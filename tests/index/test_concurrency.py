"""Searches running while the sync thread adds and removes neither fail nor see a torn index."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from app.index import FaceIndex, IndexKind
from tests.index.gallery import assert_subjects_match, make_gallery


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_searches_during_changes(kind: IndexKind) -> None:
    gallery = make_gallery(seed=4, n_faces=1500, n_subjects=200, dim=64)
    # A low threshold makes the writer rebuild the index several times meanwhile.
    index = FaceIndex(64, "cosine", kind, use_gpu=False, compact_fraction=0.05)
    half = len(gallery.face_ids) // 2
    index.add(gallery.face_ids[:half], gallery.subject_ids[:half], gallery.embeddings[:half])
    known = set(gallery.face_ids.tolist())
    errors: list[BaseException] = []
    stop = threading.Event()
    searches = [0] * 4

    def search(worker: int) -> None:
        rng = np.random.default_rng(worker)
        try:
            while not stop.is_set():
                queries = gallery.queries[rng.integers(0, len(gallery.queries), 3)]
                for candidates in index.search_subjects(queries, 5):
                    assert len({c.subject_id for c in candidates}) == len(candidates)
                    assert all(c.face_id in known for c in candidates)
                _, ids = index.search_templates(queries, 10)
                assert set(ids[ids >= 0].tolist()) <= known
                searches[worker] += 1
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    def write() -> None:
        rng = np.random.default_rng(99)
        try:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                batch = rng.choice(len(gallery.face_ids), 40, replace=False)
                index.add(gallery.face_ids[batch], gallery.subject_ids[batch], gallery.embeddings[batch])
                index.remove(gallery.face_ids[rng.choice(len(gallery.face_ids), 40, replace=False)])
            # End in a known state: everything present.
            index.add(gallery.face_ids, gallery.subject_ids, gallery.embeddings)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            stop.set()

    threads = [threading.Thread(target=search, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=write))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert all(count > 0 for count in searches)
    np.testing.assert_array_equal(index.face_ids(), np.sort(gallery.face_ids))
    if kind == "flat":
        assert_subjects_match(index.search_subjects(gallery.queries, 5), gallery, "cosine", 5)
