"""The open-set decision score on hand-built galleries: a known cohort, tiny galleries, one subject, none.

What a user notices: a stranger who resembles everyone is not named, a
small collection still answers (and is not more lenient than a large one),
and the figures a report prints for the score are the ones a brute-force
count over every search gives.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.eval import identification
from app.eval.decision_score import (
    RAW_SIMILARITY,
    decision_score_of,
    decision_scores,
    statistic_name,
    subjects_needed,
)
from app.eval.report import FPIR_TARGETS, identification_report
from app.pipeline.manifest import DecisionScore

COHORT3 = DecisionScore(kind="cohort_gap", cohort=3, prior=0.5)
NONE = -np.inf


def test_the_score_subtracts_the_floored_mean_of_the_next_subjects() -> None:
    top = np.array(
        [
            [0.9, 0.8, 0.7, 0.6, 0.1],  # cohort 0.8, 0.7, 0.6 (mean 0.7); the fifth is ignored
            [0.9, 0.6, 0.4, 0.2, 0.1],  # 0.4 and 0.2 count at the prior 0.5: mean (0.6+0.5+0.5)/3
            [0.7, 0.3, 0.2, 0.1, 0.0],  # all below the prior: the raw similarity against 0.5
        ]
    )
    assert decision_scores(top, COHORT3) == pytest.approx([0.2, 0.9 - 1.6 / 3, 0.2])
    assert decision_scores(top, RAW_SIMILARITY) == pytest.approx([0.9, 0.9, 0.7])
    assert subjects_needed(COHORT3) == 4 and subjects_needed(RAW_SIMILARITY) == 1
    assert statistic_name(COHORT3) == "cohort_gap(3)" and statistic_name(RAW_SIMILARITY) == "similarity"


def test_a_probe_that_resembles_everyone_scores_below_one_that_stands_out() -> None:
    # Same top similarity; the first probe's next-best subjects are nearly as close.
    hub, distinct = decision_scores(np.array([[0.9, 0.89, 0.88, 0.87], [0.9, 0.55, 0.5, 0.45]]), COHORT3)
    assert hub == pytest.approx(0.02) and distinct == pytest.approx(0.9 - 1.55 / 3)
    assert distinct > hub


def test_tiny_galleries_one_subject_and_an_empty_one() -> None:
    # Two subjects: one cohort member present, two missing, which count at the prior.
    assert decision_score_of([0.9, 0.8], COHORT3) == pytest.approx(0.9 - (0.8 + 0.5 + 0.5) / 3)
    # One subject: no cohort at all, so the score is s1 - prior.
    assert decision_score_of([0.9], COHORT3) == pytest.approx(0.4)
    assert decision_scores(np.array([[0.9, NONE, NONE, NONE]]), COHORT3) == pytest.approx([0.4])
    # An empty gallery has no top subject: never a match.
    assert decision_scores(np.full((1, 4), NONE), COHORT3)[0] == NONE
    assert decision_scores(np.zeros((2, 0)), COHORT3).tolist() == [NONE, NONE]
    assert decision_score_of([], RAW_SIMILARITY) == NONE


def test_a_small_gallery_is_never_more_lenient_than_the_full_cohort() -> None:
    """Dropping cohort members (a smaller gallery) can only lower a probe's cohort mean to the prior."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        row = np.sort(rng.uniform(0, 1, size=8))[::-1]
        full = decision_score_of(row.tolist(), COHORT3)
        for keep in range(1, 4):
            smaller = decision_score_of(row[:keep].tolist(), COHORT3)
            # With members gone the cohort mean is at most the prior's; the score rises at most
            # by what those members stood above the prior.
            lost = np.maximum(row[keep:4], 0.5) - 0.5
            assert smaller <= full + lost.sum() / 3 + 1e-12


def test_a_cohort_gap_needs_a_cohort_and_a_prior() -> None:
    with pytest.raises(ValueError):
        DecisionScore(kind="cohort_gap", cohort=0, prior=0.5)
    with pytest.raises(ValueError):
        DecisionScore(kind="cohort_gap", cohort=10)


def test_open_set_with_the_cohort_score_hand_computed() -> None:
    gallery = ["a", "b", "c", "d"]
    mated = np.array(
        [
            [0.9, 0.85, 0.8, 0.75],  # a first, but everyone is close: score 0.9 - 0.8 = 0.1
            [0.2, 0.7, 0.1, 0.0],  # b first, cohort at the prior: 0.7 - 0.5 = 0.2
        ]
    )
    nonmated = np.array(
        [
            [0.95, 0.9, 0.9, 0.9],  # raw 0.95, the highest of all; score 0.05
            [0.8, 0.1, 0.0, 0.0],  # raw 0.8; score 0.3
        ]
    )
    raw = identification.open_set(mated, ["a", "b"], nonmated, gallery, fpirs=(0.5,))
    cohort = identification.open_set(mated, ["a", "b"], nonmated, gallery, fpirs=(0.5,), score=COHORT3)
    # Raw: the threshold passing one stranger of two lies just above 0.8; only 0.9 reaches it.
    assert raw["0.5"].threshold == pytest.approx(np.nextafter(0.8, 1)) and raw["0.5"].fnir == 0.5
    # Cohort: strangers score 0.05 and 0.1, so just above 0.05; both mated probes pass.
    assert cohort["0.5"].threshold == pytest.approx(0.05) and cohort["0.5"].fnir == 0.0
    assert cohort["0.5"].fnir_ci[0] == 0.0 and cohort["0.5"].fpir_ci[0] < 0.5 < cohort["0.5"].fpir_ci[1]


def test_report_figures_match_a_brute_force_count() -> None:
    """A small real-shaped gallery: every report figure recounted search by search, by plain loops."""
    rng = np.random.default_rng(7)
    identities = 40
    labels = np.repeat(np.arange(identities), rng.integers(1, 4, size=identities)).astype(str)  # (N,)
    centres = rng.normal(size=(identities, 16))
    vectors = centres[labels.astype(int)] + 0.9 * rng.normal(size=(labels.size, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T  # (N, N)
    score = DecisionScore(kind="cohort_gap", cohort=5, prior=0.3)
    threshold = 0.05
    report = identification_report(similarity, labels, identify_threshold=threshold, score=score)

    def search(row: int, hold_out_identity: bool) -> tuple[list[str], list[float]]:
        """Subjects ranked by their best template for one probe, and their similarities."""
        best: dict[str, float] = {}
        for column in range(labels.size):
            if column == row or (hold_out_identity and labels[column] == labels[row]):
                continue
            best[labels[column]] = max(best.get(labels[column], -np.inf), similarity[row, column])
        ranked = sorted(best, key=lambda subject: -best[subject])
        return ranked, [best[subject] for subject in ranked]

    def decide(values: list[float]) -> float:
        cohort = [max(v, score.prior or 0.0) for v in values[1 : 1 + score.cohort]]
        cohort += [score.prior or 0.0] * (score.cohort - len(cohort))
        return values[0] - sum(cohort) / score.cohort

    counts = {label: int(np.sum(labels == label)) for label in labels}
    mated, misses = 0, 0
    for row in range(labels.size):
        if counts[labels[row]] < 2:
            continue
        mated += 1
        ranked, values = search(row, hold_out_identity=False)
        own_first = ranked[0] == labels[row] and values[1] < values[0]
        misses += not (own_first and decide(values) >= threshold)
    strangers = [decide(search(row, hold_out_identity=True)[1]) for row in range(labels.size)]
    assert report["fnir"] == pytest.approx(misses / mated)
    assert report["fpir"] == pytest.approx(np.mean(np.array(strangers) >= threshold))
    assert report["statistic"] == "cohort_gap(5)"

    ordered = sorted(strangers, reverse=True)
    for fpir in FPIR_TARGETS:
        point = report["fnir_at_fpir"][f"{fpir:g}"]
        allowed = int(np.floor(fpir * len(strangers)))
        # The smallest threshold letting at most `allowed` strangers through.
        assert point["threshold"] == pytest.approx(np.nextafter(ordered[allowed], np.inf))
        assert sum(s >= point["threshold"] for s in strangers) <= allowed
        assert point["nonmated"] == labels.size and point["mated"] == mated
        assert point["fnir_ci"][0] <= point["fnir"] <= point["fnir_ci"][1]
    # The raw side is the same protocol decided on the top similarity alone.
    raw_strangers = sorted((search(row, True)[1][0] for row in range(labels.size)), reverse=True)
    raw_point = report["fnir_at_fpir_raw"]["0.1"]
    assert raw_point["threshold"] == pytest.approx(
        np.nextafter(raw_strangers[int(0.1 * labels.size)], np.inf)
    )


def test_the_report_shows_the_threshold_by_gallery_size() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(120), 2).astype(str)  # 120 identities, 2 templates each
    vectors = rng.normal(size=(120, 16))[labels.astype(int)] + rng.normal(size=(240, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    report = identification_report(vectors @ vectors.T, labels, score=RAW_SIMILARITY)
    rows = report["by_gallery_size"]
    assert [row["subjects"] for row in rows] == [25, 50, 100, 120]
    assert rows[-1]["draws"] == 1 and all(row["draws"] == 5 for row in rows[:-1])
    # On raw similarity a stranger's best match only rises with more subjects to meet.
    assert rows[0]["thresholds"]["0.1"] < rows[-1]["thresholds"]["0.1"]
    # The whole gallery's row is the report's own threshold.
    assert rows[-1]["thresholds"]["0.1"] == pytest.approx(report["fnir_at_fpir"]["0.1"]["threshold"])
    assert rows[-1]["measurable"] == {"0.1": True, "0.01": False, "0.001": False}
