"""The admin FAR/FRR report on the enrolled gallery: computed, kept, and reused until the gallery changes.

``app.eval.report`` assembles the report JSON. A report with more
comparisons than ``report_sync_max_comparisons`` is computed by a
background job (``app.services.jobs``); the last gallery report is kept.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from app.core.logging import log_event
from app.db.changes import current_change_seq
from app.db.faces import iter_embedding_batches
from app.db.jobs import active_job, add_job
from app.db.models import Job, Report
from app.db.reports import add_report, delete_gallery_reports_except, latest_gallery_report
from app.db.session import begin_write
from app.eval.report import ReportContext, check_enough_templates, templates_report
from app.eval.template_pairs import ProgressFn, count_pairs
from app.schemas.admin import JobAccepted, ReportPublic
from app.services.container import Services
from app.services.jobs import job_public, stale_before, start_after_commit
from app.services.thresholds import operating_thresholds

logger = logging.getLogger(__name__)

REPORT_JOB = "gallery_report"


def context_of(services: Services, session: Session) -> ReportContext:
    thresholds = operating_thresholds(session, services.default_thresholds)
    return ReportContext(
        services.model.name, services.pipeline.metric, thresholds.verify, thresholds.identify
    )


def gallery_templates(session: Session, model_name: str) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Every stored template of the model (N, D) and its subject's id (N,)."""
    batches = list(iter_embedding_batches(session, model_name))
    if not batches:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return (
        np.concatenate([batch.vectors for batch in batches]),
        np.concatenate([batch.subject_ids for batch in batches]),
    )


def gallery_report(services: Services, session: Session, *, refresh: bool = False) -> Report | Job:
    """The kept gallery report while it is current; else a new one, or the job computing it.

    Current means: same model, no enrolment or deletion since (change-log
    seq), and the same thresholds in force (its ``operating`` block).
    """
    begin_write(session)
    context = context_of(services, session)
    seq = current_change_seq(session)
    latest = latest_gallery_report(session, context.model_name)
    if latest is not None and not refresh and _is_current(latest, seq, context):
        return latest
    running = active_job(session, REPORT_JOB, stale_before())
    if running is not None:
        return running
    vectors, labels = gallery_templates(session, context.model_name)
    check_enough_templates(labels)
    settings = services.settings
    genuine, impostor = count_pairs(labels)
    comparisons = genuine + min(impostor, settings.report_max_impostor_pairs)

    def compute(progress: ProgressFn | None) -> dict[str, Any]:
        return templates_report(
            context,
            vectors,
            labels,
            max_impostor=settings.report_max_impostor_pairs,
            source={"kind": "gallery", "evaluation_id": None},
            progress=progress,
        )

    if comparisons <= settings.report_sync_max_comparisons:
        return _keep(session, compute(None), context, seq)

    job = add_job(session, REPORT_JOB, total=comparisons)

    def work(progress: ProgressFn) -> dict[str, Any]:
        body = compute(progress)
        with services.session_factory() as job_session:
            begin_write(job_session)
            report = _keep(job_session, body, context, seq)
            job_session.commit()
        return {"result_id": report.id, "progress": comparisons}

    start_after_commit(session, services.session_factory, Job, job.id, work)
    log_event(logger, "report.job_started", job=job.id, comparisons=comparisons)
    return job


def report_or_job(
    services: Services, session: Session, *, refresh: bool = False
) -> ReportPublic | JobAccepted:
    """``gallery_report`` as the API answers it: the report, or the job that is computing it."""
    result = gallery_report(services, session, refresh=refresh)
    if isinstance(result, Job):
        return JobAccepted(job=job_public(result))
    return ReportPublic.model_validate(result.body)


def _keep(session: Session, body: dict[str, Any], context: ReportContext, seq: int) -> Report:
    report = add_report(session, body["id"], "gallery", body, model_name=context.model_name, gallery_seq=seq)
    delete_gallery_reports_except(session, report.id)
    log_event(
        logger,
        "report.computed",
        id=report.id,
        genuine=body["counts"]["genuine"],
        impostor=body["counts"]["impostor"],
        sampled=body["source"]["impostor_sampled"],
    )
    return report


def _is_current(report: Report, seq: int, context: ReportContext) -> bool:
    operating = report.body.get("operating", {})
    return (
        report.gallery_seq == seq
        and operating.get("verify_threshold") == context.verify_threshold
        and operating.get("identify_threshold") == context.identify_threshold
    )
