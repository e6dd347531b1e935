"""Result objects: what the report stores and prints about an operating point.

What a user notices: stored reports are plain JSON, and each at-FAR line
states what the comparisons show and no more.
"""

from __future__ import annotations

import json

from app.eval import pair_accuracy, verification
from tests.eval.score_sets import GENUINE, IMPOSTOR, TENTHS


def test_results_serialise_to_json() -> None:
    point = verification.threshold_at_far(GENUINE, IMPOSTOR, 0.25)
    accuracy = pair_accuracy.kfold_accuracy(GENUINE + IMPOSTOR, [True] * 4 + [False] * 4, folds=2)
    decoded = json.loads(json.dumps({"point": point.to_dict(), "accuracy": accuracy.to_dict()}))
    assert decoded["point"]["threshold"] == point.threshold
    assert decoded["point"]["frr_ci95"] == list(point.frr_ci95)
    assert len(decoded["accuracy"]["per_fold"]) == 2


def test_a_measurable_point_describes_its_threshold_bound_and_frr_interval() -> None:
    # 10 impostors resolve FAR 0.3 (9 needed); 3 of them may pass, so the threshold sits above 0.7.
    point = verification.threshold_at_far([0.85, 0.95], TENTHS, 0.3)
    assert point.measurable
    assert point.describe() == (
        "threshold 0.7000 for FAR <= 3e-01: observed FAR 3.0e-01 (3/10, FAR < 6.1e-01 at 95%), "
        "FRR 0.00% (95% CI 0.00%-65.76%, 0/2)"  # 3 of 10: one-sided bound 0.6066; 0 of 2: Wilson 0.6576
    )


def test_a_zero_far_target_is_never_claimed() -> None:
    point = verification.threshold_at_far([0.85, 0.95], TENTHS, 0.0)
    assert not point.measurable
    assert point.describe() == "FAR 0 cannot be demonstrated; 0 false accepts in 10 comparisons"
