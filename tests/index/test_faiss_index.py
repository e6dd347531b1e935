"""FaceIndex searches against a brute-force reference on a seeded gallery."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from app.index import FaceIndex
from app.pipeline.similarity import Metric
from tests.index.gallery import (
    Gallery,
    assert_subjects_match,
    brute_force_subjects,
    brute_force_templates,
    index_of,
    make_gallery,
    recall,
)

METRICS: list[Metric] = list(get_args(Metric))


@pytest.fixture(scope="module")
def gallery() -> Gallery:
    return make_gallery()


def assert_matches_reference(index: FaceIndex, gallery: Gallery, metric: Metric, top_n: int) -> None:
    assert_subjects_match(index.search_subjects(gallery.queries, top_n), gallery, metric, top_n)


@pytest.mark.parametrize("metric", METRICS)
def test_flat_templates_equal_brute_force(gallery: Gallery, metric: Metric) -> None:
    index = index_of(gallery, metric)
    similarities, ids = index.search_templates(gallery.queries, 10)
    expected_similarities, expected_ids = brute_force_templates(gallery, metric, 10)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(similarities, expected_similarities, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("top_n", [1, 5, 100])
def test_flat_subjects_equal_brute_force(gallery: Gallery, metric: Metric, top_n: int) -> None:
    index = index_of(gallery, metric)
    results = index.search_subjects(gallery.queries, top_n)
    for candidates in results:
        assert len(candidates) == top_n
        assert len({c.subject_id for c in candidates}) == top_n
        similarities = [c.similarity for c in candidates]
        assert similarities == sorted(similarities, reverse=True)
        assert all(index.subject_of(c.face_id) == c.subject_id for c in candidates)
    assert_matches_reference(index, gallery, metric, top_n)


@pytest.mark.parametrize("metric", METRICS)
def test_top_n_beyond_the_gallery_returns_every_subject(gallery: Gallery, metric: Metric) -> None:
    index = index_of(gallery, metric)
    n_subjects = len(np.unique(gallery.subject_ids))
    for candidates in index.search_subjects(gallery.queries[:3], n_subjects + 50):
        assert len(candidates) == n_subjects
    assert_matches_reference(index, gallery, metric, n_subjects + 50)


def test_euclidean_and_cosine_rank_differently_on_raw_embeddings(gallery: Gallery) -> None:
    """The metric is honoured: raw lengths change the Euclidean ranking but not the cosine one.

    Each ranking is checked against numpy's own, written out here rather
    than through the service's similarity code.
    """
    k = 10
    unit = gallery.embeddings / np.linalg.norm(gallery.embeddings, axis=1, keepdims=True)  # (N, D)
    cosine = gallery.queries @ unit.T  # (Q, N); the queries are unit length
    distance = ((gallery.queries[:, None, :] - gallery.embeddings[None, :, :]) ** 2).sum(axis=2)  # (Q, N)
    by_cosine = gallery.face_ids[np.argsort(-cosine, axis=1, kind="stable")[:, :k]]  # (Q, k)
    by_distance = gallery.face_ids[np.argsort(distance, axis=1, kind="stable")[:, :k]]  # (Q, k)

    _, cosine_ids = index_of(gallery, "cosine").search_templates(gallery.queries, k)
    _, euclidean_ids = index_of(gallery, "euclidean").search_templates(gallery.queries, k)
    np.testing.assert_array_equal(cosine_ids, by_cosine)
    np.testing.assert_array_equal(euclidean_ids, by_distance)
    differing = np.any(cosine_ids != euclidean_ids, axis=1).mean()
    assert differing > 0.5, f"the two metrics rank alike for {1 - differing:.0%} of queries"

    # The lengths are the whole difference: on unit-length templates the two agree.
    unit_gallery = Gallery(gallery.face_ids, gallery.subject_ids, unit.astype(np.float32), gallery.queries)
    _, unit_euclidean_ids = index_of(unit_gallery, "euclidean").search_templates(gallery.queries, k)
    np.testing.assert_array_equal(unit_euclidean_ids, by_cosine)


@pytest.mark.parametrize("metric", METRICS)
def test_removed_faces_disappear(gallery: Gallery, metric: Metric) -> None:
    index = index_of(gallery, metric)
    _, top_ids = index.search_templates(gallery.queries, 3)
    removed = np.unique(top_ids)
    assert index.remove(removed) == len(removed)
    assert len(index) == len(gallery.face_ids) - len(removed)
    _, ids = index.search_templates(gallery.queries, 10)
    assert not np.isin(ids, removed).any()
    np.testing.assert_array_equal(ids, brute_force_templates(gallery.without(removed), metric, 10)[1])
    assert_matches_reference(index, gallery.without(removed), metric, 5)
    assert index.subject_of(int(removed[0])) is None


@pytest.mark.parametrize("metric", METRICS)
def test_removing_most_of_the_gallery_keeps_results_exact(gallery: Gallery, metric: Metric) -> None:
    """Past the tombstone threshold the index is rebuilt; results must not change."""
    index = index_of(gallery, metric)
    removed = gallery.face_ids[::2]
    index.remove(removed)
    remaining = gallery.without(removed)
    np.testing.assert_array_equal(index.face_ids(), remaining.face_ids)
    assert_matches_reference(index, remaining, metric, 5)
    index.add(gallery.face_ids, gallery.subject_ids, gallery.embeddings)
    assert_matches_reference(index, gallery, metric, 5)


def test_removing_unknown_ids_is_a_no_op(gallery: Gallery) -> None:
    index = index_of(gallery, "cosine")
    before = index.search_templates(gallery.queries, 10)
    assert index.remove([-5, 123, 10**12]) == 0
    index.remove(gallery.face_ids[:1])
    assert index.remove(gallery.face_ids[:1]) == 0
    assert len(index) == len(gallery.face_ids) - 1
    after = index.search_templates(gallery.queries, 10)
    expected = brute_force_templates(gallery.without(gallery.face_ids[:1]), "cosine", 10)[1]
    np.testing.assert_array_equal(after[1], expected)
    assert before[1].shape == after[1].shape


@pytest.mark.parametrize("metric", METRICS)
def test_adding_an_existing_id_replaces_its_vector(gallery: Gallery, metric: Metric) -> None:
    index = index_of(gallery, metric)
    query = gallery.queries[:1]
    _, (old_top,) = index.search_templates(query, 1)
    moved = int(gallery.face_ids[-1])
    index.add([moved], [7], query)
    assert len(index) == len(gallery.face_ids)
    assert index.subject_of(moved) == 7
    similarities, ids = index.search_templates(query, 2)
    assert ids[0].tolist() == [moved, old_top[0]]
    assert similarities[0, 0] == pytest.approx(1.0, abs=1e-5)
    # The old vector is gone: its own position no longer finds the id.
    _, near_old = index.search_templates(gallery.embeddings[-1:], len(gallery.face_ids))
    assert (near_old[0] == moved).sum() == 1


def test_duplicate_ids_in_one_batch_keep_the_last(gallery: Gallery) -> None:
    index = FaceIndex(gallery.embeddings.shape[1], "cosine", use_gpu=False)
    index.add([1, 1], [10, 11], gallery.queries[:2])
    assert len(index) == 1 and index.subject_of(1) == 11
    similarities, _ = index.search_templates(gallery.queries[1:2], 1)
    assert similarities[0, 0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_excluded_ids_are_filtered_and_top_n_still_filled(gallery: Gallery, metric: Metric) -> None:
    index = index_of(gallery, metric)
    first = index.search_subjects(gallery.queries, 1)
    best_subjects = {c[0].subject_id for c in first}
    excluded = gallery.face_ids[np.isin(gallery.subject_ids, list(best_subjects))]
    results = index.search_subjects(gallery.queries, 5, exclude_face_ids=set(excluded.tolist()))
    for candidates in results:
        assert len(candidates) == 5
        assert not best_subjects & {c.subject_id for c in candidates}
    assert_subjects_match(results, gallery.without(excluded), metric, 5)
    _, ids = index.search_templates(gallery.queries, 10, exclude_face_ids=set(excluded.tolist()))
    np.testing.assert_array_equal(ids, brute_force_templates(gallery.without(excluded), metric, 10)[1])


@pytest.mark.parametrize("metric", METRICS)
def test_hnsw_recall_against_brute_force(gallery: Gallery, metric: Metric) -> None:
    index = index_of(gallery, metric, "hnsw")
    _, ids = index.search_templates(gallery.queries, 10)
    _, expected = brute_force_templates(gallery, metric, 10)
    assert recall(ids, expected) >= 0.95
    top = index.search_subjects(gallery.queries, 5)
    reference = brute_force_subjects(gallery, metric, 5)
    agree = np.mean([c[0].subject_id == r[0][0] for c, r in zip(top, reference, strict=True)])
    assert agree >= 0.95


@pytest.mark.parametrize("metric", METRICS)
def test_hnsw_removal_and_replacement(gallery: Gallery, metric: Metric) -> None:
    index = index_of(gallery, metric, "hnsw")
    _, top_ids = index.search_templates(gallery.queries, 3)
    removed = np.unique(top_ids)
    index.remove(removed)
    _, ids = index.search_templates(gallery.queries, 10)
    assert not np.isin(ids, removed).any()
    assert (ids >= 0).all()
    index.remove(gallery.face_ids[: len(gallery.face_ids) // 2])  # forces a rebuild
    remaining = gallery.without(np.concatenate([removed, gallery.face_ids[: len(gallery.face_ids) // 2]]))
    np.testing.assert_array_equal(index.face_ids(), remaining.face_ids)
    _, ids = index.search_templates(remaining.queries, 10)
    _, expected = brute_force_templates(remaining, metric, 10)
    assert recall(ids, expected) >= 0.95
    moved = int(remaining.face_ids[0])
    index.add([moved], [1], gallery.queries[:1])
    _, ids = index.search_templates(gallery.queries[:1], 1)
    assert ids[0, 0] == moved


def test_empty_and_small_indexes_pad_results() -> None:
    index = FaceIndex(4, "cosine", use_gpu=False)
    queries = np.eye(4, dtype=np.float32)[:2]
    assert index.search_subjects(queries, 5) == [[], []]
    similarities, ids = index.search_templates(queries, 3)
    assert ids.tolist() == [[-1, -1, -1], [-1, -1, -1]] and np.isneginf(similarities).all()
    index.add([5], [1], queries[:1])
    similarities, ids = index.search_templates(queries, 3)
    assert ids.tolist() == [[5, -1, -1], [5, -1, -1]]
    assert similarities[0, 0] == pytest.approx(1.0) and similarities[1, 0] == pytest.approx(0.0)


def test_bad_input_is_refused() -> None:
    index = FaceIndex(4, "cosine", use_gpu=False)
    with pytest.raises(ValueError):
        index.add([1], [1], np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        index.add([1], [1], np.full((1, 4), np.nan, dtype=np.float32))
    with pytest.raises(ValueError):
        index.search_subjects(np.zeros((1, 5), dtype=np.float32), 1)
    with pytest.raises(ValueError):
        index.search_subjects(np.zeros((1, 4), dtype=np.float32), 0)
    with pytest.raises(ValueError):
        FaceIndex(4, "cosine", "annoy")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FaceIndex(4, "cosine", "hnsw", use_gpu=True)
