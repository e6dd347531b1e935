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
from app.db.collections import get_collection_by_id
from app.db.faces import iter_embedding_batches
from app.db.jobs import active_job, add_job
from app.db.models import Collection, Job, Report
from app.db.reports import add_report, delete_gallery_reports_except, latest_gallery_report
from app.db.session import begin_write
from app.eval.decision_score import statistic_name
from app.eval.report import ReportContext, check_enough_templates, templates_report
from app.eval.template_pairs import ProgressFn, count_pairs
from app.schemas.admin import JobAccepted, ReportPublic
from app.services.collections import Target, embedding_collection
from app.services.container import Services
from app.services.jobs import job_public, stale_before, start_after_commit
from app.services.thresholds import identify_score, operating_thresholds

logger = logging.getLogger(__name__)

REPORT_JOB = "gallery_report"


def context_of(services: Services, session: Session, collection: Collection) -> ReportContext:
    thresholds = operating_thresholds(session, collection.id, services.thresholds_of(collection.model_name))
    manifest = services.pipelines.manifest(collection.model_name)
    assert manifest.metric is not None  # an embedder's manifest always names one
    return ReportContext(
        manifest.name,
        manifest.metric,
        thresholds.verify,
        thresholds.identify,
        collection=collection.external_id,
        identify_score=identify_score(manifest),
    )


def gallery_templates(
    session: Session, collection: Collection
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Every stored template of the collection (N, D) and its subject's id (N,)."""
    batches = list(iter_embedding_batches(session, collection.id, collection.model_name))
    if not batches:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return (
        np.concatenate([batch.vectors for batch in batches]),
        np.concatenate([batch.subject_ids for batch in batches]),
    )


def gallery_report(
    services: Services, session: Session, target: Target, *, refresh: bool = False
) -> Report | Job:
    """The collection's kept report while it is current; else a new one, or the job computing it.

    Current means: same model, no enrolment or deletion in the collection
    since (its change seq), and the same thresholds in force (its
    ``operating`` block).
    """
    begin_write(session)
    collection = embedding_collection(services, session, target)
    context = context_of(services, session, collection)
    seq = collection.change_seq
    latest = latest_gallery_report(session, collection.id, context.model_name)
    if latest is not None and not refresh and _is_current(latest, seq, context):
        return latest
    running = active_job(session, REPORT_JOB, collection.id, stale_before())
    if running is not None:
        return running
    vectors, labels = gallery_templates(session, collection)
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

    collection_id = collection.id
    if comparisons <= settings.report_sync_max_comparisons:
        return _keep(session, compute(None), collection_id, context, seq)

    job = add_job(session, REPORT_JOB, total=comparisons, collection_id=collection_id)

    def work(progress: ProgressFn) -> dict[str, Any]:
        body = compute(progress)
        with services.session_factory() as job_session:
            begin_write(job_session)
            if get_collection_by_id(job_session, collection_id) is None:  # deleted meanwhile
                return {"progress": comparisons}
            report = _keep(job_session, body, collection_id, context, seq)
            job_session.commit()
        return {"result_id": report.id, "progress": comparisons}

    start_after_commit(session, services.session_factory, Job, job.id, work)
    log_event(logger, "report.job_started", job=job.id, comparisons=comparisons)
    return job


def report_or_job(
    services: Services, session: Session, target: Target, *, refresh: bool = False
) -> ReportPublic | JobAccepted:
    """``gallery_report`` as the API answers it: the report, or the job that is computing it."""
    result = gallery_report(services, session, target, refresh=refresh)
    if isinstance(result, Job):
        return JobAccepted(job=job_public(result))
    return ReportPublic.model_validate(result.body)


def _keep(
    session: Session, body: dict[str, Any], collection_id: int, context: ReportContext, seq: int
) -> Report:
    report = add_report(
        session,
        body["id"],
        "gallery",
        body,
        collection_id=collection_id,
        model_name=context.model_name,
        gallery_seq=seq,
    )
    delete_gallery_reports_except(session, collection_id, report.id)
    log_event(
        logger,
        "report.computed",
        collection=context.collection,
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
        and operating.get("identify_statistic", "similarity") == statistic_name(context.identify_score)
        and "fnir_at_fpir_raw" in report.body.get("identification", {})  # reports before open-set scores
    )
