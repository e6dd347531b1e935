"""The report dict shared by ``facerec eval`` and the admin report, on hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.eval import intervals, verification
from app.eval.report import (
    AT_FAR_TARGETS,
    NO_FACE_SCORE,
    identification_report,
    rates_from_curve,
    verification_rates,
    verification_report,
)
from tests.eval.score_sets import GENUINE, IMPOSTOR, TEMPLATE_LABELS, TEMPLATE_SIMILARITY


def test_verification_report_hand_computed() -> None:
    report = verification_report(GENUINE, IMPOSTOR)
    json.dumps(report)  # JSON-ready as it is stored
    # Thresholds 0.1 .. 0.9 then one above all; 0.65 is the only impostor above a genuine score.
    assert [p["far"] for p in report["curve"]] == [1.0, 0.75, 0.5, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0]
    assert [p["frr"] for p in report["curve"]] == [0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.5, 0.75, 1.0]
    # FAR - FRR goes 0.25 (at 0.6) -> 0.0 (at 0.65): they meet at 0.65 with EER 0.25.
    assert report["eer"] == {"value": pytest.approx(0.25), "threshold": pytest.approx(0.65)}
    assert report["auc"] == pytest.approx(15 / 16)  # one of 16 genuine-impostor orderings is wrong
    assert report["best_accuracy"]["accuracy"] == pytest.approx(7 / 8)
    for name, scores in (("genuine", GENUINE), ("impostor", IMPOSTOR)):
        histogram = report["histograms"][name]
        assert sum(histogram["counts"]) == len(scores)
        assert histogram["edges"][0] == pytest.approx(0.1) and histogram["edges"][-1] == pytest.approx(0.9)


def test_at_far_entries_state_what_four_impostors_can_show() -> None:
    entries = verification_report(GENUINE, IMPOSTOR)["at_far"]
    assert [entry["target_far"] for entry in entries] == list(AT_FAR_TARGETS)
    for entry in entries:
        # 4 impostor comparisons cannot show even FAR 0.1 (29 needed): no threshold, only the bound.
        assert entry["measurable"] is False and entry["threshold"] is None and entry["frr"] is None
        assert entry["false_accepts"] == 0 and entry["impostor"] == 4
        assert entry["far_upper_95"] == pytest.approx(1 - 0.05 ** (1 / 4))  # 0.527: exact, zero events
        assert (
            "0 false accepts in 4 impostor comparisons" in entry["note"] and "not measurable" in entry["note"]
        )


def test_a_measurable_target_has_its_threshold_and_intervals() -> None:
    rng = np.random.default_rng(3)
    genuine = rng.normal(0.8, 0.05, 200)
    impostor = rng.normal(0.3, 0.1, 1000)  # 1,000 comparisons resolve FAR 1e-2 (299 needed), not 1e-3
    entries = {entry["target_far"]: entry for entry in verification_report(genuine, impostor)["at_far"]}
    point = verification.threshold_at_far(genuine, impostor, 1e-2)
    hit = entries[1e-2]
    assert hit["measurable"] and hit["threshold"] == point.threshold
    assert hit["far"] == point.far <= 1e-2 and hit["frr"] == point.frr
    assert hit["far_ci"] == pytest.approx(list(intervals.wilson_interval(point.false_accepts, 1000)))
    assert hit["frr_ci"][0] <= hit["frr"] <= hit["frr_ci"][1]
    assert not entries[1e-3]["measurable"]


def test_faceless_pairs_count_in_the_lowest_bin() -> None:
    genuine = np.array([0.6, 0.7, NO_FACE_SCORE])
    report = verification_report(genuine, IMPOSTOR)
    counts = report["histograms"]["genuine"]["counts"]
    assert sum(counts) == 3 and counts[0] == 1
    assert report["histograms"]["genuine"]["edges"][0] == pytest.approx(0.1)  # real scores set the range


def test_verification_rates_at_a_threshold() -> None:
    rates = verification_rates(GENUINE, IMPOSTOR, 0.65)
    assert (rates["far"], rates["frr"]) == (0.25, 0.25)
    assert rates["far_ci"] == pytest.approx(list(intervals.wilson_interval(1, 4)))


def test_identification_holds_each_identity_out_in_turn() -> None:
    # Templates: 0 a, 1 a, 2 b, 3 b, 4 c (the leave-one-out case of test_identification).
    report = identification_report(TEMPLATE_SIMILARITY, TEMPLATE_LABELS, identify_threshold=0.5)
    assert report["cmc"]["1"] == pytest.approx(0.5) and report["cmc"]["2"] == pytest.approx(1.0)
    assert report["probes"] == 4
    # Non-mated tops with the own identity removed:
    # 0 -> b 0.6, 1 -> c 0.25, 2 -> a 0.6, 3 -> c 0.9, 4 -> b 0.9.
    # Mated (own template excluded): 0 finds a 0.3 but b 0.6 ranks first (miss); 1 a 0.3 first;
    # 2 b 0.8 first; 3 b 0.8 but c 0.9 first (miss).
    assert report["fpir"] == pytest.approx(4 / 5)  # tops >= 0.5: 0.6, 0.6, 0.9, 0.9
    assert report["fnir"] == pytest.approx(3 / 4)  # only probe 2 is first and >= 0.5
    point = report["fnir_at_fpir"]["0.1"]
    assert (point["nonmated"], point["mated"]) == (5, 4)
    assert point["observed_fpir"] == 0.0  # 10% of 5 probes allows no false positive


def test_identification_needs_two_identities_and_a_repeat() -> None:
    report = identification_report(np.eye(3), ["a", "b", "c"])
    assert report["cmc"] is None and report["fnir_at_fpir"] is None and report["note"]


def test_rates_read_off_a_stored_curve() -> None:
    curve = verification_report(GENUINE, IMPOSTOR)["curve"]
    assert rates_from_curve(curve, 0.65) == (0.25, 0.25)  # a curve threshold: exact
    assert rates_from_curve(curve, 0.66) == (0.0, 0.25)  # next kept point up (0.7)
    assert rates_from_curve(curve, 5.0) == (0.0, 1.0)
