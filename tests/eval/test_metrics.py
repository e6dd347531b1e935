"""Metrics on hand-computed cases, brute-force references and known statistical values.

What a user notices: the FAR/FRR, EER, accuracy and CMC figures printed by
``facerec eval`` and the admin report are right, a calibrated threshold never
lets more impostors through than promised, and a FAR the data cannot resolve
is flagged instead of reported as if it were known.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.typing import NDArray

from app.eval import metrics

# The two small sets below are used throughout; every figure was worked out by hand.
GENUINE = [0.6, 0.7, 0.8, 0.9]
IMPOSTOR = [0.1, 0.2, 0.65, 0.3]
TENTHS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def random_scores(rng: np.random.Generator, dtype: type[np.floating], ties: bool) -> tuple[NDArray, NDArray]:
    genuine = rng.normal(0.6, 0.2, int(rng.integers(1, 60))).astype(dtype)
    impostor = rng.normal(0.3, 0.2, int(rng.integers(1, 200))).astype(dtype)
    if ties:
        genuine, impostor = np.round(genuine, 1), np.round(impostor, 1)
    return genuine, impostor


# --------------------------------------------------------------------------- FAR / FRR and the curve


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
    assert metrics.far_frr_at(GENUINE, IMPOSTOR, threshold) == (far, frr)


def test_far_frr_at_accepts_a_float32_score_equal_to_the_threshold() -> None:
    genuine = np.array([0.65], dtype=np.float32)  # 0.64999998 in float32
    impostor = np.array([0.1], dtype=np.float32)
    assert metrics.far_frr_at(genuine, impostor, 0.65) == (0.0, 0.0)


def test_roc_points_lists_every_operating_point_in_threshold_order() -> None:
    points = metrics.roc_points(GENUINE, IMPOSTOR)
    assert [p.threshold for p in points[:-1]] == [0.1, 0.2, 0.3, 0.6, 0.65, 0.7, 0.8, 0.9]
    assert [p.far for p in points] == [1.0, 0.75, 0.5, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0]
    assert [p.frr for p in points] == [0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.5, 0.75, 1.0]
    # The last point rejects everything: its threshold is the next float above the top score.
    assert points[-1].threshold == np.nextafter(0.9, 1.0)


def test_roc_points_match_far_frr_at_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        genuine, impostor = random_scores(rng, np.float32, ties=True)
        points = metrics.roc_points(genuine, impostor)
        assert len(points) == np.unique(np.concatenate([genuine, impostor])).size + 1
        for point in points:
            assert metrics.far_frr_at(genuine, impostor, point.threshold) == (point.far, point.frr)


def test_thinned_roc_keeps_the_ends_and_resolves_low_far() -> None:
    rng = np.random.default_rng(0)
    genuine = rng.normal(0.6, 0.1, 5_000)
    impostor = rng.normal(0.0, 0.1, 100_000)
    full = metrics.roc_points(genuine, impostor)
    thin = metrics.roc_points(genuine, impostor, max_points=50)
    assert len(thin) <= 50
    assert thin[0] == full[0] and thin[-1] == full[-1]
    assert set(thin) <= set(full)  # sampled, never interpolated
    assert all(a.threshold < b.threshold for a, b in zip(thin, thin[1:], strict=False))
    # Evenly spaced points alone would jump from FAR 1e-5 to ~4e-2, leaving a log-axis DET plot
    # one point below 1e-3; the log-spaced half puts several there.
    assert min(p.far for p in thin if p.far > 0) == pytest.approx(1 / impostor.size)
    assert len({p.far for p in thin if 0 < p.far <= 1e-3}) >= 4


# --------------------------------------------------------------------------- AUC and EER


def test_auc_hand_computed_and_extremes() -> None:
    assert metrics.auc(GENUINE, IMPOSTOR) == 15 / 16  # only (0.6, 0.65) is ordered wrongly
    assert metrics.auc([0.8, 0.9], [0.1, 0.2]) == 1.0
    assert metrics.auc([0.1, 0.2], [0.8, 0.9]) == 0.0
    assert metrics.auc([0.5, 0.5], [0.5, 0.5, 0.5]) == 0.5  # ties count half


def test_auc_of_identical_distributions_is_one_half() -> None:
    rng = np.random.default_rng(1)
    same = rng.normal(size=1_000)
    assert metrics.auc(same, same) == 0.5
    assert metrics.auc(rng.normal(size=20_000), rng.normal(size=20_000)) == pytest.approx(0.5, abs=0.015)


def test_auc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(2)
    for _ in range(30):
        genuine, impostor = random_scores(rng, np.float64, ties=True)
        pairs = (genuine[:, None] > impostor[None, :]) + 0.5 * (genuine[:, None] == impostor[None, :])
        assert metrics.auc(genuine, impostor) == pytest.approx(pairs.mean(), abs=1e-12)


def test_eer_where_far_and_frr_meet_exactly() -> None:
    assert metrics.eer(GENUINE, IMPOSTOR) == pytest.approx((0.25, 0.65))
    assert metrics.eer([0.8, 0.9], [0.1, 0.2]) == pytest.approx((0.0, 0.8))


def test_eer_interpolates_between_operating_points() -> None:
    # t=0.5: FAR 1/2, FRR 1/3; t=0.7: FAR 0, FRR 1/3. FAR - FRR goes 1/6 -> -1/3,
    # so the crossing is 1/3 of the way: EER 1/3 at threshold 0.5 + 0.2/3.
    value, threshold = metrics.eer([0.4, 0.7, 0.9], [0.2, 0.5])
    assert value == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.5 + 0.2 / 3)


def test_eer_lies_between_far_and_frr_at_its_threshold_on_random_data() -> None:
    rng = np.random.default_rng(4)
    for _ in range(30):
        genuine, impostor = random_scores(rng, np.float64, ties=False)
        value, threshold = metrics.eer(genuine, impostor)
        far, frr = metrics.far_frr_at(genuine, impostor, threshold)
        assert min(far, frr) - 1e-12 <= value <= max(far, frr) + 1e-12


# --------------------------------------------------------------------------- thresholds at a FAR


def test_threshold_at_far_sits_just_above_the_kth_largest_impostor() -> None:
    point = metrics.threshold_at_far([0.85, 0.95], TENTHS, 0.2)  # k = 2: 0.9 and 1.0 may pass
    assert point.threshold == np.nextafter(0.8, 1.0)
    assert (point.far, point.false_accepts, point.frr) == (0.2, 2, 0.0)


def test_threshold_at_far_is_not_fooled_by_float_rounding_of_the_target() -> None:
    impostor = np.arange(100) / 100
    assert metrics.threshold_at_far([1.0], impostor, 0.29).far == 0.29  # 0.29 * 100 = 28.999999999999996


def test_threshold_at_far_never_exceeds_the_target_when_impostors_tie() -> None:
    impostor = [0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    point = metrics.threshold_at_far([0.95], impostor, 0.2)  # 0.9 would let 3 in, 2 allowed
    assert point.threshold > 0.9
    assert point.far == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threshold_at_far_is_the_smallest_that_keeps_far_at_or_below_target(dtype: type) -> None:
    rng = np.random.default_rng(5)
    targets = [0.0, 0.001, 0.01, 0.05, 0.1, 0.29, 0.3, 0.5, 0.77, 1.0]
    for _ in range(40):
        genuine, impostor = random_scores(rng, dtype, ties=bool(rng.integers(2)))
        candidates = [p.threshold for p in metrics.roc_points(genuine, impostor)]
        for target in targets:
            point = metrics.threshold_at_far(genuine, impostor, target)
            assert point.far <= target
            assert metrics.far_frr_at(genuine, impostor, point.threshold) == (point.far, point.frr)
            lower = [c for c in candidates if c < point.threshold]
            if lower:  # any lower operating point lets too many impostors in
                assert metrics.far_frr_at(genuine, impostor, max(lower))[0] > target


def test_a_far_too_small_for_the_data_is_not_measurable() -> None:
    rng = np.random.default_rng(6)
    impostor = rng.normal(0.0, 0.1, 20_000)
    genuine = rng.normal(0.7, 0.1, 500)
    points = metrics.calibrate_thresholds(genuine, impostor, fars=(1e-3, 1e-5))

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


def test_min_comparisons_is_where_zero_errors_first_prove_the_target() -> None:
    needed = metrics.min_comparisons(1e-3)
    assert needed == 2995  # ln(0.05) / ln(1 - 1e-3) = 2994.2
    assert metrics.clopper_pearson_upper(0, needed) <= 1e-3 < metrics.clopper_pearson_upper(0, needed - 1)


def test_tar_at_far_hand_computed_and_none_below_one_expected_false_accept() -> None:
    tar = metrics.tar_at_far([0.85, 0.95, 0.5, 0.99], TENTHS, fars=(0.1, 0.2, 0.05))
    assert tar == {"0.1": 0.5, "0.2": 0.75, "0.05": None}  # 10 impostors * 0.05 < 1


# --------------------------------------------------------------------------- confidence intervals


def test_clopper_pearson_known_values() -> None:
    assert metrics.clopper_pearson_upper(0, 10) == pytest.approx(0.2589, abs=1e-4)
    assert metrics.clopper_pearson_upper(1, 10) == pytest.approx(0.3942, abs=1e-4)
    assert metrics.clopper_pearson_upper(10, 10) == 1.0
    # References from scipy.special.betaincinv(k + 1, n - k, 0.95).
    assert metrics.clopper_pearson_upper(3, 20_000) == pytest.approx(3.8763675578637095e-4, rel=1e-9)
    assert metrics.clopper_pearson_upper(1, 10**8) == pytest.approx(4.7438644247114806e-8, rel=1e-6)
    assert metrics.clopper_pearson_upper(20_000, 10**8) == pytest.approx(2.0234166677208013e-4, rel=1e-9)
    # k = 0 is 1 - 0.05**(1/n); reference computed at 40 digits (the naive float form loses ~1e-8).
    assert metrics.clopper_pearson_upper(0, 10**8) == pytest.approx(2.9957322286819324e-8, rel=1e-12)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (4, 37), (25, 1000), (120, 2000)])
def test_clopper_pearson_bound_leaves_five_percent_lower_tail(k: int, n: int) -> None:
    upper = metrics.clopper_pearson_upper(k, n)
    tail = math.fsum(math.comb(n, j) * upper**j * (1 - upper) ** (n - j) for j in range(k + 1))
    assert tail == pytest.approx(0.05, rel=1e-9)


def test_wilson_known_values() -> None:
    assert metrics.wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = metrics.wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)


def test_interval_inputs_are_checked() -> None:
    with pytest.raises(ValueError):
        metrics.clopper_pearson_upper(11, 10)
    with pytest.raises(ValueError):
        metrics.wilson_interval(-1, 10)


# --------------------------------------------------------------------------- accuracy


def test_best_accuracy_threshold_hand_computed() -> None:
    threshold, accuracy = metrics.best_accuracy_threshold([0.6, 0.7], [0.1, 0.2])
    assert (threshold, accuracy) == (pytest.approx(0.4), 1.0)  # halfway between the classes
    threshold, accuracy = metrics.best_accuracy_threshold(GENUINE, IMPOSTOR)
    assert (threshold, accuracy) == (pytest.approx(0.45), 7 / 8)  # first of the two 7/8 plateaus


def accuracy_at(genuine: NDArray, impostor: NDArray, threshold: float) -> float:
    far, frr = metrics.far_frr_at(genuine, impostor, threshold)
    return 1 - (far * impostor.size + frr * genuine.size) / (genuine.size + impostor.size)


def test_best_accuracy_threshold_reaches_the_brute_force_optimum() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        genuine, impostor = random_scores(rng, np.float32, ties=bool(rng.integers(2)))
        candidates = [p.threshold for p in metrics.roc_points(genuine, impostor)]
        best = max(accuracy_at(genuine, impostor, c) for c in candidates)
        threshold, accuracy = metrics.best_accuracy_threshold(genuine, impostor)
        achieved = accuracy_at(genuine, impostor, threshold)
        assert accuracy == pytest.approx(best) == pytest.approx(achieved)


def test_kfold_accuracy_uses_thresholds_from_the_other_folds_only() -> None:
    # Fold 0 alone puts the threshold halfway at 0.5, which lets fold 1's 0.52 impostor in;
    # fold 1's own best threshold (0.56) would have scored it perfectly.
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.6, 0.52, 0.45])
    labels = np.array([True, True, False, False, True, False, False])
    result = metrics.kfold_accuracy(scores, labels, folds=[np.arange(4), np.arange(4, 7)])
    assert result.thresholds == pytest.approx((0.56, 0.5))
    assert result.per_fold == pytest.approx((1.0, 2 / 3))
    assert (result.mean, result.std) == (pytest.approx(5 / 6), pytest.approx(1 / 6))


def test_kfold_accuracy_on_separable_data_with_seeded_folds() -> None:
    rng = np.random.default_rng(8)
    scores = np.concatenate([rng.uniform(0.6, 1.0, 300), rng.uniform(-1.0, 0.4, 300)])
    labels = np.arange(600) < 300
    result = metrics.kfold_accuracy(scores, labels, folds=10, seed=3)
    assert (result.mean, result.std) == (1.0, 0.0)
    assert len(result.per_fold) == 10
    assert all(0.4 < t < 0.6 for t in result.thresholds)
    assert metrics.kfold_accuracy(scores, labels, folds=10, seed=3) == result  # deterministic


# --------------------------------------------------------------------------- identification

GALLERY = ["a", "a", "b", "c", "c"]


def test_cmc_ranks_distinct_identities_by_their_best_template() -> None:
    similarity = np.array(
        [
            [0.2, 0.9, 0.5, 0.3, 0.1],  # a: a 0.9 > b 0.5 > c 0.3 -> rank 1
            [0.8, 0.1, 0.6, 0.7, 0.2],  # b: a 0.8 > c 0.7 > b 0.6 -> rank 3
            [0.9, 0.95, 0.1, 0.85, 0.2],  # c: a 0.95 > c 0.85 -> rank 2 (3rd template, 2nd identity)
        ]
    )
    ranks = metrics.cmc(similarity, ["a", "b", "c"], GALLERY, ranks=(1, 2, 3))
    assert ranks == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})


def test_cmc_counts_ties_against_the_probe() -> None:
    assert metrics.cmc(np.array([[0.5, 0.5]]), ["a"], ["a", "b"], ranks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_cmc_refuses_a_probe_whose_identity_is_not_enrolled() -> None:
    with pytest.raises(ValueError, match="'d'"):
        metrics.cmc(np.zeros((2, 5)), ["a", "d"], GALLERY)


def test_leave_one_out_cmc_excludes_the_probe_itself() -> None:
    # Templates: 0 a, 1 a, 2 b, 3 b, 4 c. Self-similarity 1.0 would make every probe rank 1.
    similarity = np.array(
        [
            [1.0, 0.3, 0.6, 0.2, 0.1],
            [0.3, 1.0, 0.1, 0.2, 0.25],
            [0.6, 0.1, 1.0, 0.8, 0.3],
            [0.2, 0.2, 0.8, 1.0, 0.9],
            [0.1, 0.25, 0.3, 0.9, 1.0],
        ]
    )
    result = metrics.leave_one_out_cmc(similarity, ["a", "a", "b", "b", "c"], ranks=(1, 2))
    # Probe 0: b 0.6 beats a 0.3 -> rank 2; 1: rank 1; 2: rank 1; 3: c 0.9 beats b 0.8 -> rank 2.
    assert result.cmc == pytest.approx({1: 0.5, 2: 1.0})
    assert (result.probes, result.skipped) == (4, 1)  # c has a single template


def test_open_set_fnir_at_fpir_hand_computed() -> None:
    mated = np.array(
        [
            [0.9, 0.3],  # a, rank 1 at 0.9
            [0.4, 0.7],  # b, rank 1 at 0.7
            [0.5, 0.6],  # a, but b ranks first: a miss at any threshold
            [0.2, 0.45],  # b, rank 1 at 0.45
        ]
    )
    nonmated_top = [0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.8, 0.95]
    nonmated = np.stack([nonmated_top, np.zeros(10)], axis=1)  # (10, 2)
    points = metrics.open_set(mated, ["a", "b", "a", "b"], nonmated, ["a", "b"], fpirs=(0.05, 0.1, 0.3, 0.7))

    assert points["0.05"].fnir == 1.0  # threshold above every non-mated score, and every mated one
    assert points["0.1"].threshold == np.nextafter(0.8, 1.0)
    assert (points["0.1"].fnir, points["0.1"].observed_fpir) == (0.75, 0.1)
    assert (points["0.3"].fnir, points["0.3"].observed_fpir) == (0.5, 0.3)
    assert (points["0.7"].fnir, points["0.7"].observed_fpir) == (0.25, 0.7)
    # 10 non-mated probes can show FPIR < 0.3 (9 needed) but not FPIR < 0.1 (29 needed).
    assert points["0.3"].measurable and not points["0.1"].measurable


def test_open_set_rates_at_one_threshold_hand_computed() -> None:
    mated = np.array([[0.9, 0.3], [0.4, 0.7], [0.5, 0.6], [0.2, 0.45]])  # as in the case above
    nonmated = np.array([[0.1, 0.0], [0.55, 0.2], [0.3, 0.7], [0.65, 0.1]])  # tops 0.1, 0.55, 0.7, 0.65
    labels = ["a", "b", "a", "b"]
    # At 0.6: hits are probes 0 (0.9) and 1 (0.7); probe 2 ranks b first, probe 3 is below -> FNIR 2/4.
    # Non-mated tops reaching 0.6: 0.7 and 0.65 -> FPIR 2/4.
    assert metrics.open_set_rates(mated, labels, nonmated, ["a", "b"], 0.6) == (0.5, 0.5)
    assert metrics.open_set_rates(mated, labels, nonmated, ["a", "b"], 0.7) == (
        0.5,
        0.25,
    )  # 0.7 itself counts
    assert metrics.open_set_rates(mated, labels, nonmated, ["a", "b"], 0.95) == (1.0, 0.0)
    # The rates agree with open_set at its own thresholds.
    for point in metrics.open_set(mated, labels, nonmated, ["a", "b"], fpirs=(0.25, 0.5)).values():
        fnir, fpir = metrics.open_set_rates(mated, labels, nonmated, ["a", "b"], point.threshold)
        assert (fnir, fpir) == pytest.approx((point.fnir, point.observed_fpir))


# --------------------------------------------------------------------------- reporting helpers


def test_histogram_edges_and_counts() -> None:
    hist = metrics.histogram([0.1, 0.2, 0.2, 0.9], bins=4, range=(0.0, 1.0))
    assert hist.to_dict() == {"edges": [0.0, 0.25, 0.5, 0.75, 1.0], "counts": [3, 0, 0, 1]}


def test_results_serialise_to_json() -> None:
    point = metrics.threshold_at_far(GENUINE, IMPOSTOR, 0.25)
    accuracy = metrics.kfold_accuracy(GENUINE + IMPOSTOR, [True] * 4 + [False] * 4, folds=2)
    decoded = json.loads(json.dumps({"point": point.to_dict(), "accuracy": accuracy.to_dict()}))
    assert decoded["point"]["threshold"] == point.threshold
    assert decoded["point"]["frr_ci95"] == list(point.frr_ci95)
    assert len(decoded["accuracy"]["per_fold"]) == 2


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")], [[0.1, 0.2]]])
def test_unusable_scores_are_refused(bad: list) -> None:
    with pytest.raises(ValueError):
        metrics.eer(bad, [0.1, 0.2])
