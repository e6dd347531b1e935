"""Similarity in each metric a manifest may declare: higher means more alike, and every path agrees."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from app.pipeline.similarity import Metric, paired_similarity, pairwise_similarity, prepare

METRICS: tuple[Metric, ...] = get_args(Metric)


def test_damping_takes_each_length_to_its_square_root() -> None:
    vectors = np.array([[3.0, 4.0], [0.0, 0.25], [0.0, 0.0]], dtype=np.float32)
    damped = prepare(vectors, "damped_euclidean")
    np.testing.assert_allclose(np.linalg.norm(damped, axis=1), [5**0.5, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(damped[0] / np.linalg.norm(damped[0]), [0.6, 0.8], rtol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_unit_vectors_score_their_cosine_in_every_metric(metric: Metric) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 6, 128)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(paired_similarity(a, b, metric), (a * b).sum(axis=1), atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_paired_and_pairwise_agree_and_self_is_most_alike(metric: Metric) -> None:
    rng = np.random.default_rng(2)
    vectors = (rng.normal(size=(8, 128)) * rng.uniform(0.5, 2.0, size=(8, 1))).astype(np.float32)
    matrix = pairwise_similarity(vectors, vectors, metric)
    rows, cols = np.triu_indices(8, 1)
    np.testing.assert_allclose(
        paired_similarity(vectors[rows], vectors[cols], metric), matrix[rows, cols], atol=1e-5
    )
    if metric != "cosine":  # a Euclidean similarity is highest, 1, for the vector itself
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-4)  # float32 rounding of |x|² - 2x·x + |x|²
        assert np.all(matrix[rows, cols] < 1.0)
