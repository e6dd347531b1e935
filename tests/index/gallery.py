"""Seeded galleries and the brute-force reference the index is checked against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core.arrays import FloatArray, IntArray
from app.index import Candidate, FaceIndex, IndexKind
from app.pipeline.similarity import Metric, pairwise_similarity


@dataclass(frozen=True)
class Gallery:
    face_ids: IntArray  # (N,) non-sequential, like database ids after deletions
    subject_ids: IntArray  # (N,) every subject owns at least one template
    embeddings: FloatArray  # (N, D) raw: norms vary, which matters for Euclidean
    queries: FloatArray  # (Q, D) noisy views of enrolled subjects plus strangers

    def without(self, face_ids: IntArray) -> Gallery:
        keep = ~np.isin(self.face_ids, face_ids)
        return Gallery(self.face_ids[keep], self.subject_ids[keep], self.embeddings[keep], self.queries)


def make_gallery(
    seed: int = 0, n_faces: int = 2000, n_subjects: int = 300, dim: int = 128, n_queries: int = 40
) -> Gallery:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_subjects, dim))  # (S, D)
    subjects = np.concatenate([np.arange(n_subjects), rng.integers(0, n_subjects, n_faces - n_subjects)])
    rng.shuffle(subjects)
    noisy = centres[subjects] + 0.8 * rng.normal(size=(n_faces, dim))  # (N, D)
    scale = rng.uniform(0.8, 1.25, size=(n_faces, 1))
    embeddings = noisy / np.linalg.norm(noisy, axis=1, keepdims=True) * scale
    face_ids = np.sort(rng.choice(10**9, size=n_faces, replace=False)).astype(np.int64)
    known = centres[rng.integers(0, n_subjects, n_queries - n_queries // 4)]
    known = known + 0.8 * rng.normal(size=known.shape)
    strangers = rng.normal(size=(n_queries // 4, dim))
    queries = np.concatenate([known, strangers])
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return Gallery(
        face_ids=face_ids,
        subject_ids=subjects.astype(np.int64),
        embeddings=embeddings.astype(np.float32),
        queries=queries.astype(np.float32),
    )


def brute_force_templates(gallery: Gallery, metric: Metric, k: int) -> tuple[FloatArray, IntArray]:
    """(Q, k) similarities and face ids of the k most similar templates."""
    similarities = pairwise_similarity(gallery.queries, gallery.embeddings, metric)  # (Q, N)
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]  # (Q, k)
    return np.take_along_axis(similarities, order, axis=1), gallery.face_ids[order]


def brute_force_subjects(gallery: Gallery, metric: Metric, top_n: int) -> list[list[tuple[int, int, float]]]:
    """Per query: (subject, best face, similarity) of the top_n subjects by best template."""
    similarities = pairwise_similarity(gallery.queries, gallery.embeddings, metric)  # (Q, N)
    ranking = []
    for row in similarities:
        order = np.argsort(-row, kind="stable")  # (N,)
        _, first = np.unique(gallery.subject_ids[order], return_index=True)
        best = order[np.sort(first)][:top_n]  # each subject's best template, best subject first
        ranking.append([(int(gallery.subject_ids[i]), int(gallery.face_ids[i]), float(row[i])) for i in best])
    return ranking


# float32 similarities of different templates can lie closer than FAISS's and
# numpy's rounding errors; such near-ties may rank either way.
TIE = 1e-5


def assert_subjects_match(found: list[list[Candidate]], gallery: Gallery, metric: Metric, top_n: int) -> None:
    """``found`` is the brute-force subject ranking, up to near-ties.

    Position by position the similarities agree, each candidate carries its
    subject's best similarity and subjects are distinct, so any difference in
    ids is an exchange of near-equal subjects or templates; those must be rare.
    """
    similarities = pairwise_similarity(gallery.queries, gallery.embeddings, metric)  # (Q, N)
    position = {face: i for i, face in enumerate(gallery.face_ids.tolist())}
    expected = brute_force_subjects(gallery, metric, top_n)
    differences = 0
    for row, candidates, reference in zip(similarities, found, expected, strict=True):
        best = np.full(int(gallery.subject_ids.max()) + 1, -np.inf)  # (S,)
        np.maximum.at(best, gallery.subject_ids, row)
        assert len(candidates) == len(reference)
        assert len({c.subject_id for c in candidates}) == len(candidates)
        np.testing.assert_allclose(
            [c.similarity for c in candidates], [s for _, _, s in reference], rtol=TIE, atol=TIE
        )
        for candidate, (subject, face, _) in zip(candidates, reference, strict=True):
            i = position[candidate.face_id]
            assert gallery.subject_ids[i] == candidate.subject_id
            assert abs(row[i] - candidate.similarity) <= TIE
            assert abs(best[candidate.subject_id] - candidate.similarity) <= TIE
            differences += (candidate.subject_id, candidate.face_id) != (subject, face)
    assert differences <= max(1, 0.01 * sum(len(c) for c in found))


def recall(found_ids: IntArray, expected_ids: IntArray) -> float:
    """Mean share of each (Q, k) reference row that the found row also holds."""
    k = expected_ids.shape[1]
    rows = zip(found_ids.tolist(), expected_ids.tolist(), strict=True)
    return float(np.mean([len(set(found) & set(expected)) / k for found, expected in rows]))


def index_of(gallery: Gallery, metric: Metric, kind: IndexKind = "flat", **options: Any) -> FaceIndex:
    """A CPU index holding the whole gallery."""
    index = FaceIndex(gallery.embeddings.shape[1], metric, kind, use_gpu=False, **options)
    index.add(gallery.face_ids, gallery.subject_ids, gallery.embeddings)
    return index
