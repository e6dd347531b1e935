"""Identification on hand-computed similarity matrices: CMC, leave-one-out CMC, FNIR at FPIR.

What a user notices: rank-k and FNIR figures count each identity once,
never let a template find itself, and never flatter a model through ties.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.eval import identification
from tests.eval.score_sets import TEMPLATE_LABELS, TEMPLATE_SIMILARITY

GALLERY = ["a", "a", "b", "c", "c"]


def test_cmc_ranks_distinct_identities_by_their_best_template() -> None:
    similarity = np.array(
        [
            [0.2, 0.9, 0.5, 0.3, 0.1],  # a: a 0.9 > b 0.5 > c 0.3 -> rank 1
            [0.8, 0.1, 0.6, 0.7, 0.2],  # b: a 0.8 > c 0.7 > b 0.6 -> rank 3
            [0.9, 0.95, 0.1, 0.85, 0.2],  # c: a 0.95 > c 0.85 -> rank 2 (3rd template, 2nd identity)
        ]
    )
    ranks = identification.cmc(similarity, ["a", "b", "c"], GALLERY, ranks=(1, 2, 3))
    assert ranks == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})


def test_cmc_counts_ties_against_the_probe() -> None:
    assert identification.cmc(np.array([[0.5, 0.5]]), ["a"], ["a", "b"], ranks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_cmc_refuses_a_probe_whose_identity_is_not_enrolled() -> None:
    with pytest.raises(ValueError, match="'d'"):
        identification.cmc(np.zeros((2, 5)), ["a", "d"], GALLERY)


def test_leave_one_out_cmc_excludes_the_probe_itself() -> None:
    # Self-similarity 1.0 would make every probe rank 1.
    result = identification.leave_one_out_cmc(TEMPLATE_SIMILARITY, TEMPLATE_LABELS, ranks=(1, 2))
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
    points = identification.open_set(
        mated, ["a", "b", "a", "b"], nonmated, ["a", "b"], fpirs=(0.05, 0.1, 0.3, 0.7)
    )

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
    assert identification.open_set_rates(mated, labels, nonmated, ["a", "b"], 0.6) == (0.5, 0.5)
    assert identification.open_set_rates(mated, labels, nonmated, ["a", "b"], 0.7) == (
        0.5,
        0.25,
    )  # 0.7 itself counts
    assert identification.open_set_rates(mated, labels, nonmated, ["a", "b"], 0.95) == (1.0, 0.0)
    # The rates agree with open_set at its own thresholds.
    for point in identification.open_set(mated, labels, nonmated, ["a", "b"], fpirs=(0.25, 0.5)).values():
        fnir, fpir = identification.open_set_rates(mated, labels, nonmated, ["a", "b"], point.threshold)
        assert (fnir, fpir) == pytest.approx((point.fnir, point.observed_fpir))
