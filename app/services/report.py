"""The admin FAR/FRR report on the enrolled gallery: computed, kept, and reused until the gallery changes.

``build_report`` assembles the report JSON (see docs/admin_api.md for its shape)
from ``app.eval``'s functions; evaluation uploads use it too. A report with
more comparisons than ``report_sync_max_comparisons`` is computed by a
background job (``app.services.jobs``); the last gallery report is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from app.core.errors import NotEnoughData
from app.core.logging import log_event
from app.db.base import utcnow
from app.db.changes import current_change_seq
from app.db.faces import iter_embedding_batches
from app.db.models import Job, Report
from app.db.reports import (
    active_job,
    add_job,
    add_report,
    delete_gallery_reports_except,
    latest_gallery_report,
    new_id,
)
from app.db.session import begin_write
from app.eval.report import identification_report, verification_rates, verification_report
from app.eval.template_pairs import ProgressFn, count_pairs, template_pair_scores
from app.pipeline.similarity import Metric, pairwise_similarity
from app.services.container import Services
from app.services.jobs import stale_before, start_after_commit
from app.services.thresholds import OperatingThresholds, operating_thresholds

logger = logging.getLogger(__name__)

REPORT_JOB = "gallery_report"
# Identification holds an (N, N) similarity matrix a few times over; beyond this
# many templates it runs on a random subset of whole identities.
IDENTIFICATION_MAX_TEMPLATES = 4_000


@dataclass(frozen=True)
class ReportContext:
    """What a report records about how it was made."""

    model_name: str
    metric: Metric
    thresholds: OperatingThresholds


def context_of(services: Services, session: Session) -> ReportContext:
    return ReportContext(
        services.model.name,
        services.pipeline.metric,
        operating_thresholds(session, services.default_thresholds),
    )


def build_report(
    context: ReportContext,
    genuine: NDArray[np.float64],
    impostor: NDArray[np.float64],
    identification: dict[str, Any],
    *,
    source: dict[str, Any],
    counts: dict[str, int],
) -> dict[str, Any]:
    """The report JSON from verification scores and an ``identification_report``."""
    if genuine.size == 0 or impostor.size == 0:
        raise NotEnoughData(
            "a report needs genuine and impostor comparisons",
            {"genuine": int(genuine.size), "impostor": int(impostor.size)},
        )
    identification = dict(identification)
    operating = {
        "verify_threshold": context.thresholds.verify,
        "identify_threshold": context.thresholds.identify,
        **verification_rates(genuine, impostor, context.thresholds.verify),
        "fnir": identification.pop("fnir", None),
        "fpir": identification.pop("fpir", None),
    }
    return {
        "id": new_id("rpt"),
        "created_at": utcnow().isoformat(),
        "model": context.model_name,
        "metric": context.metric,
        "source": source,
        "counts": {**counts, "genuine": int(genuine.size), "impostor": int(impostor.size)},
        **verification_report(genuine, impostor),
        "identification": identification,
        "operating": operating,
    }


def templates_report(
    context: ReportContext,
    vectors: NDArray[np.float32],
    labels: NDArray[Any],
    *,
    max_impostor: int,
    source: dict[str, Any],
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The report over labelled templates: all genuine pairs, impostors all or sampled, identification."""
    check_enough_templates(labels)
    pairs = template_pair_scores(
        vectors, labels, context.metric, max_impostor=max_impostor, progress=progress
    )
    identification = _identification(context, vectors, labels)
    return build_report(
        context,
        pairs.genuine,
        pairs.impostor,
        identification,
        source={**source, "impostor_sampled": pairs.impostor_sampled, "impostor_total": pairs.impostor_total},
        counts={"subjects": int(np.unique(labels).size), "templates": int(labels.size)},
    )


def check_enough_templates(labels: NDArray[Any]) -> None:
    genuine, impostor = count_pairs(labels)
    if genuine == 0 or impostor == 0:
        raise NotEnoughData(
            "a report needs at least 2 subjects, one of them with 2 or more templates",
            {"templates": int(labels.size), "subjects": int(np.unique(labels).size)},
        )


def _identification(
    context: ReportContext, vectors: NDArray[np.float32], labels: NDArray[Any]
) -> dict[str, Any]:
    note = ""
    if labels.size > IDENTIFICATION_MAX_TEMPLATES:
        rng = np.random.default_rng(0)
        keep = np.zeros(labels.size, dtype=bool)
        for identity in rng.permutation(np.unique(labels)):
            members = labels == identity
            if np.count_nonzero(keep) + np.count_nonzero(members) > IDENTIFICATION_MAX_TEMPLATES:
                continue
            keep |= members
        note = f"; on a random subset of whole identities ({int(keep.sum())} of {labels.size} templates)"
        vectors, labels = vectors[keep], labels[keep]
    similarity = pairwise_similarity(vectors, vectors, context.metric)  # (N, N)
    report = identification_report(similarity, labels, context.thresholds.identify)
    report["note"] += note
    return report


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
        and operating.get("verify_threshold") == context.thresholds.verify
        and operating.get("identify_threshold") == context.thresholds.identify
    )
