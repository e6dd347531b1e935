"""Genuine/impostor scores from labelled templates: all pairs, or a uniform impostor sample."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from app.eval.template_pairs import count_pairs, template_pair_scores
from app.pipeline.similarity import pairwise_similarity


def seeded_templates(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(12), rng.integers(1, 6, size=12))  # (N,) 1-5 templates each
    vectors = rng.normal(size=(labels.size, 16)).astype(np.float32)  # (N, 16)
    return vectors, labels


def test_all_pairs_match_a_brute_force_reference() -> None:
    vectors, labels = seeded_templates()
    n = labels.size
    scores = template_pair_scores(vectors, labels, "cosine", max_impostor=10**6)
    similarity = pairwise_similarity(vectors, vectors, "cosine")
    genuine = [similarity[i, j] for i in range(n) for j in range(i + 1, n) if labels[i] == labels[j]]
    impostor = [similarity[i, j] for i in range(n) for j in range(i + 1, n) if labels[i] != labels[j]]
    assert np.sort(scores.genuine) == pytest.approx(np.sort(genuine), abs=1e-6)
    assert np.sort(scores.impostor) == pytest.approx(np.sort(impostor), abs=1e-6)
    _, per_identity = np.unique(labels, return_counts=True)
    assert count_pairs(labels) == (sum(comb(int(k), 2) for k in per_identity), len(impostor))
    assert scores.impostor_total == len(impostor) and not scores.impostor_sampled


def test_beyond_the_limit_impostors_are_a_sample_of_cross_identity_pairs() -> None:
    vectors, labels = seeded_templates()
    full = template_pair_scores(vectors, labels, "euclidean", max_impostor=10**6)
    progress: list[int] = []
    sampled = template_pair_scores(vectors, labels, "euclidean", max_impostor=200, progress=progress.append)
    assert sampled.impostor_sampled and sampled.impostor.size == 200
    assert sampled.impostor_total == full.impostor.size
    assert np.sort(sampled.genuine) == pytest.approx(np.sort(full.genuine), abs=1e-6)
    # Every sampled score is one of the real cross-identity scores, and the sample spreads over them.
    known = np.sort(full.impostor)
    nearest = known[np.clip(np.searchsorted(known, sampled.impostor), 0, known.size - 1)]
    below = known[np.clip(np.searchsorted(known, sampled.impostor) - 1, 0, known.size - 1)]
    assert np.minimum(abs(nearest - sampled.impostor), abs(below - sampled.impostor)).max() < 1e-5
    assert sampled.impostor_total > 200
    assert abs(np.median(sampled.impostor) - np.median(full.impostor)) < 0.1 * np.std(full.impostor) + 1.0
    assert progress[-1] == full.genuine.size + 200
