"""Setting the operating thresholds by hand or from a report's threshold for a target FAR, and their view."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import FarNotMeasurable, ReportNotFound, ReportPending, ValidationFailed
from app.db.models import Collection, Job, Report
from app.db.reports import get_report, latest_gallery_report
from app.db.session import begin_write
from app.eval.report import AT_FAR_TARGETS
from app.schemas.admin import ThresholdChangePublic, ThresholdSources, ThresholdsPublic
from app.services.collections import Target, find_collection
from app.services.container import Services
from app.services.gallery_report import gallery_report
from app.services.thresholds import (
    IDENTIFY_KEY,
    VERIFY_KEY,
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
    services: Services, session: Session, target: Target, target_far: float, report_id: str | None
) -> ThresholdsPublic:
    """Both thresholds from a report's ``at_far`` entry for ``target_far``.

    Without ``report_id``: the collection's latest gallery report, computed
    now if there is none. A report of another collection is not found.
    """
    entry_index = _target_index(target_far)
    begin_write(session)
    collection = find_collection(session, target)
    report = _chosen_report(services, session, target, collection, report_id)
    entry: dict[str, Any] = report.body["at_far"][entry_index]
    if not entry["measurable"] or entry["threshold"] is None:
        raise FarNotMeasurable(entry["note"], {"report_id": report.id, "target_far": target_far})
    threshold = float(entry["threshold"])
    source = f"report {report.id} at FAR {target_far:g}"
    values = {VERIFY_KEY: threshold, IDENTIFY_KEY: threshold}
    set_thresholds(
        session,
        collection.id,
        services.thresholds_of(collection.model_name),
        values,
        actor=target.actor,
        source=source,
    )
    return _view(services, session, collection)


def thresholds_view(services: Services, session: Session, target: Target) -> ThresholdsPublic:
    return _view(services, session, find_collection(session, target))


def _target_index(target_far: float) -> int:
    for index, target in enumerate(AT_FAR_TARGETS):
        if math.isclose(target, target_far, rel_tol=1e-9):
            return index
    raise ValidationFailed(
        f"target_far must be one of the report's targets: {', '.join(f'{t:g}' for t in AT_FAR_TARGETS)}",
        {"target_far": target_far},
    )


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


def _view(services: Services, session: Session, collection: Collection) -> ThresholdsPublic:
    in_force = operating_thresholds(session, collection.id, services.thresholds_of(collection.model_name))
    return ThresholdsPublic(
        collection=collection.external_id,
        verify_threshold=in_force.verify,
        identify_threshold=in_force.identify,
        source=ThresholdSources(**threshold_sources(session, collection.id)),
        history=[
            ThresholdChangePublic.model_validate(change, from_attributes=True)
            for change in threshold_history(session, collection.id)
        ],
    )
