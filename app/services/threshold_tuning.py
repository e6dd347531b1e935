"""Setting the thresholds by hand or from a report (verify by target FAR, identify by target FPIR)."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import (
    FarNotMeasurable,
    FpirNotMeasurable,
    ReportNotFound,
    ReportPending,
    ValidationFailed,
)
from app.db.models import Collection, Job, Report
from app.db.reports import get_report, latest_gallery_report
from app.db.session import begin_write
from app.eval.decision_score import statistic_name
from app.eval.intervals import min_comparisons
from app.eval.report import AT_FAR_TARGETS, FPIR_TARGETS
from app.schemas.admin import ReportOperatingPoint, ThresholdChangePublic, ThresholdSources, ThresholdsPublic
from app.services.collections import Target, find_collection
from app.services.container import Services
from app.services.gallery_report import gallery_report
from app.services.thresholds import (
    IDENTIFY_KEY,
    VERIFY_KEY,
    identify_score,
    operating_thresholds,
    set_thresholds,
    threshold_history,
    threshold_sources,
)


def set_direct(
    services: Services, session: Session, target: Target, values: dict[str, float]
) -> ThresholdsPublic:
    begin_write(session)
    collection = find_collection(session, target)
    defaults = services.thresholds_of(collection.model_name)
    set_thresholds(session, collection.id, defaults, values, actor=target.actor, source="set by admin")
    return _view(services, session, collection)


def set_from_report(
    services: Services,
    session: Session,
    target: Target,
    target_far: float | None,
    target_fpir: float | None,
    report_id: str | None,
) -> ThresholdsPublic:
    """Verify's threshold from a report's ``at_far`` entry, identify's from its ``fnir_at_fpir`` entry.

    Without ``report_id``: the collection's latest gallery report, computed
    now if there is none. A report of another collection is not found. The
    identify threshold is read off the decision score the report was made
    with, which is the collection's (a report on another statistic is stale
    and recomputed).
    """
    far_index = _target_index(target_far, AT_FAR_TARGETS, "target_far") if target_far is not None else None
    fpir_key = f"{_fpir_target(target_fpir):g}" if target_fpir is not None else None
    begin_write(session)
    collection = find_collection(session, target)
    report = _chosen_report(services, session, target, collection, report_id)
    subjects = int(report.body["counts"]["subjects"])
    changes: list[tuple[str, str, ReportOperatingPoint]] = []  # (key, source, what the report measured)
    if far_index is not None:
        entry: dict[str, Any] = report.body["at_far"][far_index]
        if not entry["measurable"] or entry["threshold"] is None:
            raise FarNotMeasurable(entry["note"], {"report_id": report.id, "target_far": target_far})
        point = ReportOperatingPoint(
            report_id=report.id,
            target_far=target_far,
            threshold=float(entry["threshold"]),
            frr=entry["frr"],
            subjects=subjects,
        )
        changes.append((VERIFY_KEY, f"report {report.id} at FAR {target_far:g}", point))
    if fpir_key is not None:
        entry = _fpir_point(report, fpir_key, services, collection)
        point = ReportOperatingPoint(
            report_id=report.id,
            target_fpir=target_fpir,
            threshold=float(entry["threshold"]),
            fnir=entry["fnir"],
            fnir_ci=entry.get("fnir_ci"),
            subjects=subjects,
        )
        changes.append((IDENTIFY_KEY, f"report {report.id} at FPIR {fpir_key} ({subjects} subjects)", point))
    defaults = services.thresholds_of(collection.model_name)
    for key, source, point in changes:
        set_thresholds(
            session, collection.id, defaults, {key: point.threshold}, actor=target.actor, source=source
        )
    points = [point for _, _, point in changes]
    return _view(services, session, collection, points)


def _fpir_point(report: Report, key: str, services: Services, collection: Collection) -> dict[str, Any]:
    identification = report.body["identification"]
    points = identification.get("fnir_at_fpir") or {}
    statistic = identification.get("statistic", "similarity")
    expected = statistic_name(identify_score(services.pipelines.manifest(collection.model_name)))
    if statistic != expected:
        raise ReportNotFound(
            f"report {report.id} decided identification on {statistic}, this collection on {expected}; "
            "compute a new report",
            {"report_id": report.id},
        )
    point = points.get(key)
    if point is None or not point["measurable"]:
        nonmated = point["nonmated"] if point is not None else 0
        raise FpirNotMeasurable(
            f"the report's {nonmated} non-mated searches cannot show an FPIR of {key}: that needs "
            f"{min_comparisons(float(key))} (enrol more subjects, or evaluate on a larger set)",
            {"report_id": report.id, "target_fpir": float(key), "nonmated": nonmated},
        )
    return dict(point)


def thresholds_view(services: Services, session: Session, target: Target) -> ThresholdsPublic:
    return _view(services, session, find_collection(session, target))


def _target_index(value: float, targets: tuple[float, ...], field: str) -> int:
    for index, target in enumerate(targets):
        if math.isclose(target, value, rel_tol=1e-9):
            return index
    raise ValidationFailed(
        f"{field} must be one of the report's targets: {', '.join(f'{t:g}' for t in targets)}",
        {field: value},
    )


def _fpir_target(target_fpir: float) -> float:
    return FPIR_TARGETS[_target_index(target_fpir, FPIR_TARGETS, "target_fpir")]


def _chosen_report(
    services: Services, session: Session, target: Target, collection: Collection, report_id: str | None
) -> Report:
    if report_id is not None:
        report = get_report(session, report_id)
        if report is None or report.collection_id != collection.id:
            raise ReportNotFound(f"no report {report_id!r}", {"report_id": report_id})
        return report
    latest = latest_gallery_report(session, collection.id, collection.model_name)
    if latest is not None:
        return latest
    computed = gallery_report(services, session, target)
    if isinstance(computed, Job):
        raise ReportPending(
            "there is no gallery report yet; it is being computed, try again when the job is done",
            {"job": computed.id},
        )
    return computed


def _view(
    services: Services,
    session: Session,
    collection: Collection,
    from_report: list[ReportOperatingPoint] | None = None,
) -> ThresholdsPublic:
    in_force = operating_thresholds(session, collection.id, services.thresholds_of(collection.model_name))
    return ThresholdsPublic(
        collection=collection.external_id,
        verify_threshold=in_force.verify,
        identify_threshold=in_force.identify,
        identify_statistic=in_force.identify_statistic,
        source=ThresholdSources(**threshold_sources(session, collection.id)),
        from_report=from_report or [],
        history=[
            ThresholdChangePublic.model_validate(change, from_attributes=True)
            for change in threshold_history(session, collection.id)
        ],
    )
