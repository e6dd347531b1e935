"""Pair accuracy (the LFW protocol) against hand-computed cases and a brute-force optimum.

What a user notices: the accuracy ``facerec eval pairs`` and training print
is the LFW protocol's, each fold scored at a threshold it had no part in.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from app.eval import pair_accuracy, verification
from tests.eval.score_sets import GENUINE, IMPOSTOR, random_scores


def test_best_accuracy_threshold_hand_computed() -> None:
    threshold, accuracy = pair_accuracy.best_accuracy_threshold([0.6, 0.7], [0.1, 0.2])
    assert (threshold, accuracy) == (pytest.approx(0.4), 1.0)  # halfway between the classes
    threshold, accuracy = pair_accuracy.best_accuracy_threshold(GENUINE, IMPOSTOR)
    assert (threshold, accuracy) == (pytest.approx(0.45), 7 / 8)  # first of the two 7/8 plateaus


def accuracy_at(genuine: NDArray, impostor: NDArray, threshold: float) -> float:
    far, frr = verification.far_frr_at(genuine, impostor, threshold)
    return 1 - (far * impostor.size + frr * genuine.size) / (genuine.size + impostor.size)


def test_best_accuracy_threshold_reaches_the_brute_force_optimum() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        genuine, impostor = random_scores(rng, np.float32, ties=bool(rng.integers(2)))
        candidates = [p.threshold for p in verification.roc_points(genuine, impostor)]
        best = max(accuracy_at(genuine, impostor, c) for c in candidates)
        threshold, accuracy = pair_accuracy.best_accuracy_threshold(genuine, impostor)
        achieved = accuracy_at(genuine, impostor, threshold)
        assert accuracy == pytest.approx(best) == pytest.approx(achieved)


def test_kfold_accuracy_uses_thresholds_from_the_other_folds_only() -> None:
    # Fold 0 alone puts the threshold halfway at 0.5, which lets fold 1's 0.52 impostor in;
    # fold 1's own best threshold (0.56) would have scored it perfectly.
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.6, 0.52, 0.45])
    labels = np.array([True, True, False, False, True, False, False])
    result = pair_accuracy.kfold_accuracy(scores, labels, folds=[np.arange(4), np.arange(4, 7)])
    assert result.thresholds == pytest.approx((0.56, 0.5))
    assert result.per_fold == pytest.approx((1.0, 2 / 3))
    assert (result.mean, result.std) == (pytest.approx(5 / 6), pytest.approx(1 / 6))


def test_kfold_accuracy_on_separable_data_with_seeded_folds() -> None:
    rng = np.random.default_rng(8)
    scores = np.concatenate([rng.uniform(0.6, 1.0, 300), rng.uniform(-1.0, 0.4, 300)])
    labels = np.arange(600) < 300
    result = pair_accuracy.kfold_accuracy(scores, labels, folds=10, seed=3)
    assert (result.mean, result.std) == (1.0, 0.0)
    assert len(result.per_fold) == 10
    assert all(0.4 < t < 0.6 for t in result.thresholds)
    assert pair_accuracy.kfold_accuracy(scores, labels, folds=10, seed=3) == result  # deterministic
