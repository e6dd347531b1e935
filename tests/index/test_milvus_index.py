"""MilvusFaceIndex on a real Milvus Lite database, against FaceIndex and the brute-force reference."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("milvus_lite", reason="Milvus tests need pymilvus and milvus-lite")

from milvus_lite import server_manager_instance  # noqa: E402
from pymilvus import MilvusClient  # noqa: E402

from app.index import FaceIndex, IndexChange, apply_changes  # noqa: E402
from app.index.milvus_index import MAX_TOPK, MilvusFaceIndex  # noqa: E402
from app.pipeline.similarity import Metric, pairwise_similarity  # noqa: E402
from tests.index.gallery import Gallery, assert_subjects_match, index_of, make_gallery  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 32


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusClient]:
    """One Milvus Lite database for the module; each test takes its own collection."""
    path = str(tmp_path_factory.mktemp("milvus") / "m.db")
    client = MilvusClient(path)
    yield client
    client.close()
    server_manager_instance.release_server(path)


_names = itertools.count()


@pytest.fixture
def collection() -> str:
    return f"faces_{next(_names)}"


@pytest.fixture(scope="module")
def gallery() -> Gallery:
    return make_gallery(seed=5, n_faces=1500, n_subjects=200, dim=DIM, n_queries=24)


def milvus_of(client: MilvusClient, collection: str, gallery: Gallery, metric: Metric) -> MilvusFaceIndex:
    index = MilvusFaceIndex.open(client, collection, gallery.embeddings.shape[1], metric)
    index.add(gallery.face_ids, gallery.subject_ids, gallery.embeddings)
    return index


def release(client: MilvusClient, path: Path) -> None:
    """Close the client and stop the in-process Milvus Lite server, as a process exit does."""
    client.close()
    server_manager_instance.release_server(str(path))


# ----- agreement with FaceIndex ---------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "damped_euclidean"])
def test_templates_equal_faiss(
    client: MilvusClient, collection: str, gallery: Gallery, metric: Metric
) -> None:
    index = milvus_of(client, collection, gallery, metric)
    similarities, ids = index.search_templates(gallery.queries, 10)
    expected_similarities, expected_ids = index_of(gallery, metric).search_templates(gallery.queries, 10)
    np.testing.assert_allclose(similarities, expected_similarities, atol=1e-4)
    # Each returned face carries its own similarity, so any id difference is a near-tie swap.
    truth = pairwise_similarity(gallery.queries, gallery.embeddings, metric)  # (Q, N)
    columns = np.searchsorted(gallery.face_ids, ids)  # (Q, 10)
    np.testing.assert_allclose(similarities, np.take_along_axis(truth, columns, axis=1), atol=1e-4)
    assert (ids != expected_ids).mean() <= 0.01


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("top_n", [1, 5, 60])
def test_subjects_equal_faiss(
    client: MilvusClient, collection: str, gallery: Gallery, metric: Metric, top_n: int
) -> None:
    index = milvus_of(client, collection, gallery, metric)
    found = index.search_subjects(gallery.queries, top_n)
    expected = index_of(gallery, metric).search_subjects(gallery.queries, top_n)
    assert_subjects_match(found, gallery, metric, top_n)
    for candidates, reference in zip(found, expected, strict=True):
        np.testing.assert_allclose(
            [c.similarity for c in candidates], [c.similarity for c in reference], atol=1e-4
        )


def test_a_crowding_subject_does_not_hide_the_others(client: MilvusClient, collection: str) -> None:
    """One subject owns the 500 nearest templates: the search goes past them to the next subjects."""
    rng = np.random.default_rng(11)
    query = rng.normal(size=(1, DIM)).astype(np.float32)
    crowd = query + 0.05 * rng.normal(size=(500, DIM))  # subject 0, all close to the query
    others = rng.normal(size=(300, DIM))  # subjects 1..30
    embeddings = np.concatenate([crowd, others]).astype(np.float32)
    subjects = np.concatenate([np.zeros(500), 1 + np.arange(300) % 30]).astype(np.int64)
    face_ids = np.arange(800, dtype=np.int64) * 3 + 7
    index = MilvusFaceIndex.open(client, collection, DIM, "cosine")
    index.add(face_ids, subjects, embeddings)
    reference = FaceIndex(DIM, "cosine", use_gpu=False)
    reference.add(face_ids, subjects, embeddings)
    for top_n in (3, 31, 50):  # 31 subjects exist: the last two exhaust the collection
        [found] = index.search_subjects(query, top_n)
        [expected] = reference.search_subjects(query, top_n)
        assert [(c.subject_id, c.face_id) for c in found] == [(c.subject_id, c.face_id) for c in expected]
        np.testing.assert_allclose([c.similarity for c in found], [c.similarity for c in expected], atol=1e-4)


# ----- writes ----------------------------------------------------------------


def test_a_write_is_searchable_at_once(client: MilvusClient, collection: str, gallery: Gallery) -> None:
    index = milvus_of(client, collection, gallery, "cosine")
    index.add([5], [77], gallery.queries[:1])
    similarities, ids = index.search_templates(gallery.queries[:1], 1)
    assert ids[0, 0] == 5 and similarities[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert index.search_subjects(gallery.queries[:1], 1)[0][0].subject_id == 77
    assert index.remove([5]) == 1
    assert index.search_templates(gallery.queries[:1], 1)[1][0, 0] != 5


def test_add_replaces_and_the_last_occurrence_wins(client: MilvusClient, collection: str) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3, DIM)).astype(np.float32)
    index = MilvusFaceIndex.open(client, collection, DIM, "cosine")
    index.add([1, 2], [10, 20], vectors[:2])
    index.add([1, 1], [11, 12], vectors[1:3])  # replaces id 1; within the call, the last row wins
    assert len(index) == index.ntotal == 2
    np.testing.assert_array_equal(index.face_ids(), [1, 2])
    assert index.subject_of(1) == 12 and index.subject_of(2) == 20 and index.subject_of(3) is None
    similarities, ids = index.search_templates(vectors[2:3], 2)
    assert ids[0, 0] == 1 and similarities[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_remove_counts_present_ids_only(client: MilvusClient, collection: str, gallery: Gallery) -> None:
    index = milvus_of(client, collection, gallery, "euclidean")
    gone = gallery.face_ids[:100]
    assert index.remove(np.concatenate([gone, gone[:5], [10**12]])) == 100
    assert index.remove(gone) == 0
    assert index.ntotal == len(gallery.face_ids) - 100
    np.testing.assert_array_equal(index.face_ids(), gallery.face_ids[100:])
    _, ids = index.search_templates(gallery.queries, 50)
    assert not np.isin(ids, gone).any()


def test_exclude_face_ids(client: MilvusClient, collection: str, gallery: Gallery) -> None:
    index = milvus_of(client, collection, gallery, "cosine")
    reference = index_of(gallery, "cosine")
    _, best = reference.search_templates(gallery.queries, 3)
    excluded = set(best[:, :2].ravel().tolist())
    similarities, ids = index.search_templates(gallery.queries, 5, exclude_face_ids=excluded)
    expected_similarities, _ = reference.search_templates(gallery.queries, 5, exclude_face_ids=excluded)
    assert not np.isin(ids, list(excluded)).any()
    np.testing.assert_allclose(similarities, expected_similarities, atol=1e-4)
    found = index.search_subjects(gallery.queries, 5, exclude_face_ids=excluded)
    expected = reference.search_subjects(gallery.queries, 5, exclude_face_ids=excluded)
    assert all(c.face_id not in excluded for candidates in found for c in candidates)
    for candidates, reference_candidates in zip(found, expected, strict=True):
        np.testing.assert_allclose(
            [c.similarity for c in candidates], [c.similarity for c in reference_candidates], atol=1e-4
        )


def change_log(gallery: Gallery) -> list[IndexChange]:
    """Adds, re-adds under another subject, removes, and an add of a face deleted since."""
    first = slice(0, 300)
    log = [
        IndexChange(0, "add", int(f), int(s), e)
        for f, s, e in zip(
            gallery.face_ids[first], gallery.subject_ids[first], gallery.embeddings[first], strict=True
        )
    ]
    log += [IndexChange(0, "remove", int(f), None, None) for f in gallery.face_ids[:40]]
    log += [IndexChange(0, "add", int(f), 9999, gallery.embeddings[0]) for f in gallery.face_ids[40:50]]
    log += [IndexChange(0, "add", 10**9 + 1, 1, None), IndexChange(0, "remove", 10**12, None, None)]
    return [change._replace(seq=seq) for seq, change in enumerate(log, start=1)]


def test_replaying_twice_gives_the_same_content(
    client: MilvusClient, collection: str, gallery: Gallery
) -> None:
    log = change_log(gallery)
    index = MilvusFaceIndex.open(client, collection, DIM, "cosine")
    reference = FaceIndex(DIM, "cosine", use_gpu=False)
    assert apply_changes(index, log) == apply_changes(reference, log) == len(log)
    content = index.face_ids(), [index.subject_of(f) for f in index.face_ids().tolist()]
    found = index.search_templates(gallery.queries, 10)
    index.applied_seq = 0  # a stored seq behind the content: every change replays
    assert apply_changes(index, log) == len(log)
    np.testing.assert_array_equal(index.face_ids(), reference.face_ids())
    np.testing.assert_array_equal(index.face_ids(), content[0])
    assert [index.subject_of(f) for f in index.face_ids().tolist()] == content[1]
    assert [reference.subject_of(f) for f in reference.face_ids().tolist()] == content[1]
    again = index.search_templates(gallery.queries, 10)
    np.testing.assert_array_equal(again[1], found[1])
    np.testing.assert_allclose(again[0], reference.search_templates(gallery.queries, 10)[0], atol=1e-4)


# ----- the collection's life -------------------------------------------------


def test_content_and_seq_survive_a_restart(tmp_path: Path, gallery: Gallery) -> None:
    path = tmp_path / "m.db"
    client = MilvusClient(str(path))
    index = milvus_of(client, "faces", gallery, "euclidean")
    assert index.applied_seq == 0
    index.applied_seq = 42
    index.save_applied_seq()
    index.add([1], [1], gallery.queries[:1])  # written after the seq was stored
    before = index.search_templates(gallery.queries, 10)
    release(client, path)

    client = MilvusClient(str(path))
    reopened = MilvusFaceIndex.open(client, "faces", DIM, "euclidean")
    assert reopened.applied_seq == 42
    assert reopened.ntotal == len(gallery.face_ids) + 1
    after = reopened.search_templates(gallery.queries, 10)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)
    release(client, path)


CRASHING_WRITER = """
import os, sys
from pymilvus import MilvusClient
from app.index.milvus_index import MilvusFaceIndex
from tests.index.gallery import make_gallery

gallery = make_gallery(seed=5, n_faces=1500, n_subjects=200, dim=32, n_queries=24)
index = MilvusFaceIndex.open(MilvusClient(sys.argv[1]), "faces", 32, "cosine")
index.add(gallery.face_ids[:1000], gallery.subject_ids[:1000], gallery.embeddings[:1000])
index.applied_seq = 1000
index.save_applied_seq()
index.add(gallery.face_ids[1000:], gallery.subject_ids[1000:], gallery.embeddings[1000:])
index.applied_seq = 1500  # set, never stored: the process dies first
os._exit(1)
"""


def test_a_crash_leaves_the_stored_seq_behind_the_data(tmp_path: Path, gallery: Gallery) -> None:
    path = tmp_path / "m.db"
    subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(path)], cwd=REPO_ROOT, check=False, timeout=120
    )
    client = MilvusClient(str(path))
    index = MilvusFaceIndex.open(client, "faces", DIM, "cosine")
    assert index.applied_seq == 1000
    np.testing.assert_array_equal(index.face_ids(), gallery.face_ids)  # the unflushed rows came back
    log = [
        IndexChange(seq, "add", int(f), int(s), e)
        for seq, f, s, e in zip(
            range(1, 1501), gallery.face_ids, gallery.subject_ids, gallery.embeddings, strict=True
        )
    ]
    assert apply_changes(index, log) == 1500
    np.testing.assert_array_equal(index.face_ids(), gallery.face_ids)
    _, ids = index.search_templates(gallery.queries, 10)
    np.testing.assert_array_equal(ids, index_of(gallery, "cosine").search_templates(gallery.queries, 10)[1])
    release(client, path)


@pytest.mark.parametrize(("dim", "metric"), [(DIM * 2, "euclidean"), (DIM, "damped_euclidean")])
def test_another_layout_drops_and_recreates(
    client: MilvusClient, collection: str, gallery: Gallery, dim: int, metric: Metric
) -> None:
    old = milvus_of(client, collection, gallery, "euclidean")
    old.applied_seq = 7
    old.save_applied_seq()
    assert MilvusFaceIndex.open(client, collection, DIM, "euclidean").applied_seq == 7  # same layout: kept
    fresh = MilvusFaceIndex.open(client, collection, dim, metric)
    assert fresh.ntotal == 0 and fresh.applied_seq == 0
    fresh.add([3], [4], np.ones((1, dim), np.float32))
    assert fresh.search_templates(np.ones((1, dim), np.float32), 1)[1][0, 0] == 3


def test_drop_removes_the_collection(client: MilvusClient, collection: str, gallery: Gallery) -> None:
    index = milvus_of(client, collection, gallery, "cosine")
    index.drop()
    assert not client.has_collection(collection)
    assert MilvusFaceIndex.open(client, collection, DIM, "cosine").ntotal == 0


def test_an_empty_index_returns_padded_rows(client: MilvusClient, collection: str, gallery: Gallery) -> None:
    index = MilvusFaceIndex.open(client, collection, DIM, "euclidean")
    assert index.ntotal == 0 and index.face_ids().dtype == np.int64 and index.face_ids().size == 0
    similarities, ids = index.search_templates(gallery.queries[:3], 4)
    assert similarities.shape == ids.shape == (3, 4)
    assert np.isneginf(similarities).all() and (ids == -1).all()
    assert index.search_subjects(gallery.queries[:3], 5) == [[], [], []]
    index.add([8], [9], gallery.embeddings[:1])
    similarities, ids = index.search_templates(gallery.queries[:1], 3)
    np.testing.assert_array_equal(ids, [[8, -1, -1]])
    assert np.isfinite(similarities[0, 0]) and np.isneginf(similarities[0, 1:]).all()


def test_bad_input_is_refused(client: MilvusClient, collection: str) -> None:
    with pytest.raises(ValueError, match="dim"):
        MilvusFaceIndex(client, collection, 0, "cosine")
    with pytest.raises(ValueError, match="metric"):
        MilvusFaceIndex(client, collection, DIM, "manhattan")  # type: ignore[arg-type]
    index = MilvusFaceIndex.open(client, collection, DIM, "cosine")
    vectors = np.ones((2, DIM), np.float32)
    with pytest.raises(ValueError, match="embeddings"):
        index.add([1, 2], [1, 2], vectors[:1])
    with pytest.raises(ValueError, match="embeddings"):
        index.add([1, 2], [1], vectors)
    with pytest.raises(ValueError, match="non-negative"):
        index.add([1, -2], [1, 2], vectors)
    with pytest.raises(ValueError, match="finite"):
        index.add([1, 2], [1, 2], np.where(np.eye(2, DIM, dtype=bool), np.nan, vectors))
    with pytest.raises(ValueError, match="queries"):
        index.search_templates(np.ones((1, DIM + 1)), 1)
    with pytest.raises(ValueError, match="finite"):
        index.search_subjects(np.full((1, DIM), np.inf), 1)
    with pytest.raises(ValueError, match="k must be"):
        index.search_templates(vectors, 0)
    with pytest.raises(ValueError, match="k must be"):
        index.search_templates(vectors, MAX_TOPK + 1)
    with pytest.raises(ValueError, match="top_n"):
        index.search_subjects(vectors, 0)
    assert index.ntotal == 0
