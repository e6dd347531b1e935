"""Verification figures on hand-computed cases and brute-force references.

What a user notices: the FAR/FRR, ROC, AUC and EER printed by ``facerec eval``
and the admin report are right, a calibrated threshold never lets more
impostors through than promised, and a FAR the data cannot resolve is flagged
instead of reported as if it were known.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.eval import verification
from tests.eval.score_sets import GENUINE, IMPOSTOR, TENTHS, random_scores


@pytest.mark.parametrize(
    ("threshold", "far", "frr"),
    [
        (0.5, 0.25, 0.0),  # only the 0.65 impostor gets in
        (0.65, 0.25, 0.25),  # a score equal to the threshold is accepted
        (0.75, 0.0, 0.5),
        (0.95, 0.0, 1.0),
        (0.0, 1.0, 0.0),
    ],
)
def test_far_frr_at_hand_computed(threshold: float, far: float, frr: float) -> None:
    assert verification.far_frr_at(GENUINE, IMPOSTOR, threshold) == (far, frr)


def test_far_frr_at_accepts_a_float32_score_equal_to_the_threshold() -> None:
    genuine = np.array([0.65], dtype=np.float32)  # 0.64999998 in float32
    impostor = np.array([0.1], dtype=np.float32)
    assert verification.far_frr_at(genuine, impostor, 0.65) == (0.0, 0.0)


def test_roc_points_lists_every_operating_point_in_threshold_order() -> None:
    points = verification.roc_points(GENUINE, IMPOSTOR)
    assert [p.threshold for p in points[:-1]] == [0.1, 0.2, 0.3, 0.6, 0.65, 0.7, 0.8, 0.9]
    assert [p.far for p in points] == [1.0, 0.75, 0.5, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0]
    assert [p.frr for p in points] == [0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.5, 0.75, 1.0]
    # The last point rejects everything: its threshold is the next float above the top score.
    assert points[-1].threshold == np.nextafter(0.9, 1.0)


def test_roc_points_match_far_frr_at_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        genuine, impostor = random_scores(rng, np.float32, ties=True)
        points = verification.roc_points(genuine, impostor)
        assert len(points) == np.unique(np.concatenate([genuine, impostor])).size + 1
        for point in points:
            assert verification.far_frr_at(genuine, impostor, point.threshold) == (point.far, point.frr)


def test_thinned_roc_keeps_the_ends_and_resolves_low_far() -> None:
    rng = np.random.default_rng(0)
    genuine = rng.normal(0.6, 0.1, 5_000)
    impostor = rng.normal(0.0, 0.1, 100_000)
    full = verification.roc_points(genuine, impostor)
    thin = verification.roc_points(genuine, impostor, max_points=50)
    assert len(thin) <= 50
    assert thin[0] == full[0] and thin[-1] == full[-1]
    assert set(thin) <= set(full)  # sampled, never interpolated
    assert all(a.threshold < b.threshold for a, b in zip(thin, thin[1:], strict=False))
    # Evenly spaced points alone would jump from FAR 1e-5 to ~4e-2, leaving a log-axis DET plot
    # one point below 1e-3; the log-spaced half puts several there.
    assert min(p.far for p in thin if p.far > 0) == pytest.approx(1 / impostor.size)
    assert len({p.far for p in thin if 0 < p.far <= 1e-3}) >= 4


def test_auc_hand_computed_and_extremes() -> None:
    assert verification.auc(GENUINE, IMPOSTOR) == 15 / 16  # only (0.6, 0.65) is ordered wrongly
    assert verification.auc([0.8, 0.9], [0.1, 0.2]) == 1.0
    assert verification.auc([0.1, 0.2], [0.8, 0.9]) == 0.0
    assert verification.auc([0.5, 0.5], [0.5, 0.5, 0.5]) == 0.5  # ties count half


def test_auc_of_identical_distributions_is_one_half() -> None:
    rng = np.random.default_rng(1)
    same = rng.normal(size=1_000)
    assert verification.auc(same, same) == 0.5
    assert verification.auc(rng.normal(size=20_000), rng.normal(size=20_000)) == pytest.approx(0.5, abs=0.015)


def test_auc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(2)
    for _ in range(30):
        genuine, impostor = random_scores(rng, np.float64, ties=True)
        pairs = (genuine[:, None] > impostor[None, :]) + 0.5 * (genuine[:, None] == impostor[None, :])
        assert verification.auc(genuine, impostor) == pytest.approx(pairs.mean(), abs=1e-12)


def test_eer_where_far_and_frr_meet_exactly() -> None:
    assert verification.eer(GENUINE, IMPOSTOR) == pytest.approx((0.25, 0.65))
    assert verification.eer([0.8, 0.9], [0.1, 0.2]) == pytest.approx((0.0, 0.8))


def test_eer_interpolates_between_operating_points() -> None:
    # t=0.5: FAR 1/2, FRR 1/3; t=0.7: FAR 0, FRR 1/3. FAR - FRR goes 1/6 -> -1/3,
    # so the crossing is 1/3 of the way: EER 1/3 at threshold 0.5 + 0.2/3.
    value, threshold = verification.eer([0.4, 0.7, 0.9], [0.2, 0.5])
    assert value == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.5 + 0.2 / 3)


def test_eer_lies_between_far_and_frr_at_its_threshold_on_random_data() -> None:
    rng = np.random.default_rng(4)
    for _ in range(30):
        genuine, impostor = random_scores(rng, np.float64, ties=False)
        value, threshold = verification.eer(genuine, impostor)
        far, frr = verification.far_frr_at(genuine, impostor, threshold)
        assert min(far, frr) - 1e-12 <= value <= max(far, frr) + 1e-12


def test_threshold_at_far_sits_just_above_the_kth_largest_impostor() -> None:
    point = verification.threshold_at_far([0.85, 0.95], TENTHS, 0.2)  # k = 2: 0.9 and 1.0 may pass
    assert point.threshold == np.nextafter(0.8, 1.0)
    assert (point.far, point.false_accepts, point.frr) == (0.2, 2, 0.0)


def test_threshold_at_far_is_not_fooled_by_float_rounding_of_the_target() -> None:
    impostor = np.arange(100) / 100
    assert verification.threshold_at_far([1.0], impostor, 0.29).far == 0.29  # 0.29 * 100 = 28.999999999999996


def test_threshold_at_far_never_exceeds_the_target_when_impostors_tie() -> None:
    impostor = [0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    point = verification.threshold_at_far([0.95], impostor, 0.2)  # 0.9 would let 3 in, 2 allowed
    assert point.threshold > 0.9
    assert point.far == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threshold_at_far_is_the_smallest_that_keeps_far_at_or_below_target(dtype: type) -> None:
    rng = np.random.default_rng(5)
    targets = [0.0, 0.001, 0.01, 0.05, 0.1, 0.29, 0.3, 0.5, 0.77, 1.0]
    for _ in range(40):
        genuine, impostor = random_scores(rng, dtype, ties=bool(rng.integers(2)))
        candidates = [p.threshold for p in verification.roc_points(genuine, impostor)]
        for target in targets:
            point = verification.threshold_at_far(genuine, impostor, target)
            assert point.far <= target
            assert verification.far_frr_at(genuine, impostor, point.threshold) == (point.far, point.frr)
            lower = [c for c in candidates if c < point.threshold]
            if lower:  # any lower operating point lets too many impostors in
                assert verification.far_frr_at(genuine, impostor, max(lower))[0] > target


def test_a_far_too_small_for_the_data_is_not_measurable() -> None:
    rng = np.random.default_rng(6)
    impostor = rng.normal(0.0, 0.1, 20_000)
    genuine = rng.normal(0.7, 0.1, 500)
    points = verification.calibrate_thresholds(genuine, impostor, fars=(1e-3, 1e-5))

    resolvable, unresolvable = points
    assert resolvable.measurable  # 20,000 comparisons can show FAR < 1e-3 (2,995 needed)
    assert resolvable.far <= 1e-3
    assert not unresolvable.measurable
    assert unresolvable.false_accepts == 0
    assert unresolvable.far_upper_95 == pytest.approx(1 - 0.05 ** (1 / 20_000), rel=1e-9)  # 1.4979e-4
    text = unresolvable.describe()
    assert "not measurable" in text
    assert "0 false accepts in 20,000" in text
    assert "FAR < 1.5e-04" in text
    assert "299,572 comparisons are needed" in text


def test_tar_at_far_hand_computed_and_none_below_one_expected_false_accept() -> None:
    tar = verification.tar_at_far([0.85, 0.95, 0.5, 0.99], TENTHS, fars=(0.1, 0.2, 0.05))
    assert tar == {"0.1": 0.5, "0.2": 0.75, "0.05": None}  # 10 impostors * 0.05 < 1


def test_histogram_edges_and_counts() -> None:
    hist = verification.histogram([0.1, 0.2, 0.2, 0.9], bins=4, range=(0.0, 1.0))
    assert hist.to_dict() == {"edges": [0.0, 0.25, 0.5, 0.75, 1.0], "counts": [3, 0, 0, 1]}


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")], [[0.1, 0.2]]])
def test_unusable_scores_are_refused(bad: list) -> None:
    with pytest.raises(ValueError):
        verification.eer(bad, [0.1, 0.2])
