"""The ivf kind: trained on the collection's own templates, tuned for recall, rebuilt as it changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.index import FaceIndex, faiss_index, kinds
from app.index.ivf import K_FACTOR, RERANK_MIN, TARGET_RECALL, list_count, search_parameters
from app.pipeline.similarity import Metric
from tests.index.gallery import Gallery, brute_force_subjects, brute_force_templates, make_gallery, recall

N = 12_000


@pytest.fixture(scope="module")
def gallery() -> Gallery:
    """Templates near a 12-dimensional subspace, as face embeddings lie near a low-dimensional manifold.

    (Uniform noise in all 64 dimensions has no neighbourhoods for an
    inverted file to exploit, which no face model's embeddings look like.)
    """
    noisy = make_gallery(seed=5, n_faces=N, n_subjects=3_000, dim=12, n_queries=200)
    rng = np.random.default_rng(6)
    lift = np.linalg.qr(rng.normal(size=(64, 12)))[0].T  # (12, 64) orthonormal rows

    def lifted(x: np.ndarray) -> np.ndarray:
        return (x @ lift + 0.05 * rng.normal(size=(len(x), 64))).astype(np.float32)

    return Gallery(noisy.face_ids, noisy.subject_ids, lifted(noisy.embeddings), lifted(noisy.queries))


def built(gallery: Gallery, metric: Metric, setting: kinds.KindSetting = "ivf") -> FaceIndex:
    return FaceIndex.build(
        64, metric, setting, gallery.face_ids, gallery.subject_ids, gallery.embeddings, use_gpu=False
    )


def assert_close_to_exact(index: FaceIndex, gallery: Gallery, metric: Metric) -> None:
    _, ids = index.search_templates(gallery.queries, 10)
    assert recall(ids, brute_force_templates(gallery, metric, 10)[1]) >= 0.98
    top = index.search_subjects(gallery.queries, 1)
    reference = brute_force_subjects(gallery, metric, 1)
    agree = np.mean([c[0].subject_id == r[0][0] for c, r in zip(top, reference, strict=True)])
    assert agree >= 0.98


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_trained_on_its_templates_and_tuned_for_recall(gallery: Gallery, metric: Metric) -> None:
    index = built(gallery, metric)
    assert index.kind == "ivf" and index.ivf is not None
    assert index.ivf.nlist == list_count(N) and index.ivf.trained_on == N
    assert index.ivf.recall_at_10 >= TARGET_RECALL and 1 <= index.ivf.nprobe < index.ivf.nlist
    assert_close_to_exact(index, gallery, metric)
    # Scores are exact: the best template's similarity is the brute-force one.
    similarities, ids = index.search_templates(gallery.queries, 1)
    exact_similarities, exact_ids = brute_force_templates(gallery, metric, 1)
    same = ids[:, 0] == exact_ids[:, 0]
    np.testing.assert_allclose(similarities[same], exact_similarities[same], atol=1e-5)


def test_a_shallow_search_re_ranks_as_many_candidates_as_a_deep_one() -> None:
    # 4-bit codes blur near neighbours: a search for one face still scores RERANK_MIN exactly.
    assert search_parameters(1).k_factor == RERANK_MIN
    assert search_parameters(11).k_factor * 11 == pytest.approx(RERANK_MIN)
    assert search_parameters(10 * RERANK_MIN).k_factor == K_FACTOR


def test_too_small_for_ivf_is_flat_until_it_grows(gallery: Gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kinds, "IVF_FROM", 6_000)
    index = FaceIndex(64, "cosine", "auto", use_gpu=False)
    index.add(gallery.face_ids[:5_000], gallery.subject_ids[:5_000], gallery.embeddings[:5_000])
    assert index.kind == "flat" and index.ivf is None
    index.add(gallery.face_ids[5_000:], gallery.subject_ids[5_000:], gallery.embeddings[5_000:])
    assert index.kind == "ivf" and index.ivf is not None and index.ivf.trained_on == N
    assert_close_to_exact(index, gallery, "cosine")


def test_a_mapped_ivf_takes_changes_in_its_delta_then_merges(
    gallery: Gallery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held_back = 1_500
    first = FaceIndex.build(
        64,
        "cosine",
        "ivf",
        gallery.face_ids[held_back:],
        gallery.subject_ids[held_back:],
        gallery.embeddings[held_back:],
        use_gpu=False,
    )
    path = tmp_path / "index.npz"
    first.save(path, applied_seq=9)
    index = FaceIndex.load(path, 64, "cosine", "ivf", use_gpu=False)
    assert index is not None and index.mapped and index.kind == "ivf" and index.ivf == first.ivf
    monkeypatch.setattr(faiss_index, "DELTA_MIN", 500)
    index.add(gallery.face_ids[:400], gallery.subject_ids[:400], gallery.embeddings[:400])
    assert index.mapped  # still the mapped base, the 400 are in the delta
    removed = gallery.face_ids[held_back : held_back + 50]
    index.remove(removed)
    remaining = gallery.without(np.concatenate([removed, gallery.face_ids[400:held_back]]))
    np.testing.assert_array_equal(index.face_ids(), remaining.face_ids)
    assert_close_to_exact(index, remaining, "cosine")
    index.add(
        gallery.face_ids[400:held_back], gallery.subject_ids[400:held_back], gallery.embeddings[400:held_back]
    )
    # Past DELTA_MIN: a new base with the same centroids (the collection has not doubled).
    assert not index.mapped and index.base_file is None
    assert index.ivf is not None and first.ivf is not None and index.ivf.trained_on == first.ivf.trained_on
    assert_close_to_exact(index, gallery.without(removed), "cosine")


def test_retrained_once_it_has_doubled(gallery: Gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kinds, "IVF_MIN_TEMPLATES", 3_000)
    third = len(gallery.face_ids) // 3
    index = FaceIndex.build(
        64, "cosine", "ivf", gallery.face_ids[:third], gallery.subject_ids[:third], gallery.embeddings[:third]
    )
    assert index.ivf is not None and index.ivf.trained_on == third
    index.add(gallery.face_ids[third:], gallery.subject_ids[third:], gallery.embeddings[third:])
    assert index.ivf is not None and index.ivf.trained_on == len(gallery.face_ids)
    assert index.ivf.nlist == list_count(len(gallery.face_ids))
    assert_close_to_exact(index, gallery, "cosine")
