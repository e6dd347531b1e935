"""Operating thresholds: seeded from the manifest, tuned by admins; the stored values are in force."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.db.audit import list_audit_by_action
from app.db.stored_settings import set_setting
from app.pipeline.face_pipeline import FacePipeline
from app.pipeline.manifest import ThresholdPoint
from app.services.thresholds import (
    FALLBACK_IDENTIFY_THRESHOLD,
    FALLBACK_VERIFY_THRESHOLD,
    IDENTIFY_KEY,
    THRESHOLD_SET_ACTION,
    VERIFY_KEY,
    OperatingThresholds,
    default_thresholds,
    operating_thresholds,
    seed_thresholds,
    set_thresholds,
    threshold_sources,
)
from tests.db.factories import default_id


def test_defaults_come_from_the_manifest_calibration(pipeline: FacePipeline) -> None:
    manifest = pipeline.model.model_copy(
        update={
            "thresholds": [
                ThresholdPoint(far=1e-2, threshold=0.80, frr=0.01),
                ThresholdPoint(far=1e-3, threshold=0.85, frr=0.05),
                ThresholdPoint(far=1e-4, threshold=0.91, frr=0.20),
            ]
        }
    )
    # The default pack's manifest states an open-set point: identify follows it, on its decision score.
    assert manifest.open_set is not None
    point = manifest.open_set.default_point()
    assert point.target_fpir == 0.01 and point.gallery_subjects >= 3000
    assert default_thresholds(manifest) == OperatingThresholds(0.85, point.threshold, "cohort_gap(10)")
    # Without one, identify keeps the older rule: raw similarity at FAR 1e-4.
    raw = manifest.model_copy(update={"open_set": None})
    assert default_thresholds(raw) == OperatingThresholds(verify=0.85, identify=0.91)
    uncalibrated = raw.model_copy(update={"thresholds": []})
    assert default_thresholds(uncalibrated) == OperatingThresholds(
        FALLBACK_VERIFY_THRESHOLD, FALLBACK_IDENTIFY_THRESHOLD
    )


def test_seeding_keeps_what_an_admin_set(session: Session) -> None:
    cid = default_id(session)
    defaults = OperatingThresholds(verify=0.8, identify=0.9)
    set_thresholds(session, cid, defaults, {IDENTIFY_KEY: 0.95}, actor="admin", source="manual")
    seeded = seed_thresholds(session, cid, defaults)
    assert seeded == OperatingThresholds(verify=0.8, identify=0.95)
    assert seed_thresholds(
        session, cid, OperatingThresholds(verify=0.1, identify=0.1)
    ) == OperatingThresholds(verify=0.1, identify=0.95)

    set_setting(session, cid, VERIFY_KEY, 0.83)
    in_force = operating_thresholds(session, cid, OperatingThresholds(verify=0.0, identify=0.0))
    assert in_force.verify == pytest.approx(0.83) and in_force.identify == pytest.approx(0.95)


def test_a_seeded_default_follows_a_recalibrated_manifest(session: Session) -> None:
    cid = default_id(session)
    # A database seeded from an earlier calibration (or another metric): the
    # values no one tuned move to the new defaults, and stay there.
    assert seed_thresholds(session, cid, OperatingThresholds(verify=0.86, identify=0.89)).verify == 0.86
    recalibrated = OperatingThresholds(verify=0.91, identify=0.93)
    assert seed_thresholds(session, cid, recalibrated) == recalibrated
    assert operating_thresholds(session, cid, OperatingThresholds(verify=0.0, identify=0.0)) == recalibrated


def test_a_hand_set_identify_threshold_is_dropped_when_the_statistic_changes(session: Session) -> None:
    """A value tuned on raw similarity means nothing on a cohort score: the new default replaces it."""
    cid = default_id(session)
    raw = OperatingThresholds(verify=0.86, identify=0.92)
    seed_thresholds(session, cid, raw)
    set_thresholds(session, cid, raw, {IDENTIFY_KEY: 0.95, VERIFY_KEY: 0.88}, actor="admin", source="manual")
    cohort = OperatingThresholds(verify=0.86, identify=0.035, identify_statistic="cohort_gap(10)")
    assert seed_thresholds(session, cid, cohort) == OperatingThresholds(0.88, 0.035, "cohort_gap(10)")
    assert threshold_sources(session, cid)["verify"] == "manual"  # verify's scale did not change
    assert threshold_sources(session, cid)["identify"] == "model manifest default"
    dropped = list_audit_by_action(session, THRESHOLD_SET_ACTION, cid, 1)[0]
    assert dropped.actor == "system" and dropped.details["previous"] == pytest.approx(0.95)
    assert "changed from similarity to cohort_gap(10)" in dropped.details["source"]
    # Once on the new statistic, a value set by hand is kept again.
    set_thresholds(session, cid, cohort, {IDENTIFY_KEY: 0.05}, actor="admin", source="manual")
    assert seed_thresholds(session, cid, cohort).identify == pytest.approx(0.05)
