"""Evaluation sets uploaded by the operator: detect and embed (enrolling no one), then the same report.

The images live only in a temporary folder while the job runs and are
deleted after it, whatever happens; the database keeps counts and the report.
Embedding and pair scoring are ``facerec eval``'s (``app.eval``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np
from sqlalchemy.orm import Session

from app.core.errors import EvaluationNotFound
from app.core.ids import new_id
from app.core.logging import log_event
from app.db.audit import write_audit
from app.db.evaluations import add_evaluation, delete_evaluation, get_evaluation, list_evaluations
from app.db.jobs import update_tracked
from app.db.models import Evaluation, Report
from app.db.reports import add_report, delete_report, get_report
from app.db.session import begin_write
from app.eval.embedding import EmbeddedSet, embed_files
from app.eval.report import ReportContext, build_report, identification_report, templates_report
from app.eval.run import score_pairs
from app.eval.template_pairs import ProgressFn
from app.pipeline.similarity import pairwise_similarity
from app.schemas.admin import EvaluationList, EvaluationPublic, EvaluationSummary, ReportPublic
from app.services.archive import EvaluationSet, unpack_evaluation
from app.services.collections import Target, embedding_collection, find_collection
from app.services.container import Services
from app.services.gallery_report import context_of
from app.services.jobs import expire_if_stale, start_after_commit

logger = logging.getLogger(__name__)

# Images embedded between two progress writes.
EMBED_CHUNK = 32


def create_evaluation(
    services: Services, session: Session, target: Target, upload: IO[bytes], name: str | None
) -> EvaluationSummary:
    """Unpack and check the upload now (bad input is a 400), then embed and report in the background.

    The set is embedded with the collection's model and reported on at its thresholds.
    """
    actor = target.actor
    folder = Path(tempfile.mkdtemp(prefix="facerec-eval-"))
    try:
        evaluation_set = unpack_evaluation(upload, folder)
        begin_write(session)
        collection = embedding_collection(services, session, target)
        evaluation = add_evaluation(
            session,
            new_id("ev"),
            name or "evaluation",
            collection_id=collection.id,
            total=len(evaluation_set.images),
            identities=evaluation_set.identities,
            pairs_source="pairs.txt" if evaluation_set.pairs is not None else "all",
            actor=actor,
        )
        context = context_of(services, session, collection)
        write_audit(
            session,
            actor,
            "evaluation.create",
            evaluation.id,
            {
                "images": evaluation.images,
                "identities": evaluation.identities,
                "pairs": evaluation.pairs_source,
            },
            collection_id=collection.id,
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    evaluation_id, collection_id = evaluation.id, collection.id

    def work(progress: ProgressFn) -> dict[str, Any]:
        return _evaluate(services, context, collection_id, evaluation_id, evaluation_set, progress)

    def delete_images() -> None:
        shutil.rmtree(folder, ignore_errors=True)

    start_after_commit(session, services.session_factory, Evaluation, evaluation.id, work, delete_images)
    log_event(
        logger,
        "evaluation.created",
        id=evaluation.id,
        images=evaluation.images,
        pairs=evaluation.pairs_source,
    )
    return evaluation_summary(evaluation)


def _evaluate(
    services: Services,
    context: ReportContext,
    collection_id: int,
    evaluation_id: str,
    evaluation_set: EvaluationSet,
    progress: ProgressFn,
) -> dict[str, Any]:
    pipeline = services.runner_of(context.model_name).pipeline  # the collection's model
    paths = list(evaluation_set.images)
    embedded = EmbeddedSet()
    for start in range(0, len(paths), EMBED_CHUNK):
        chunk = embed_files(pipeline, paths[start : start + EMBED_CHUNK], progress=False)
        embedded.embeddings.update(chunk.embeddings)
        embedded.no_face.extend(chunk.no_face)
        embedded.retried.extend(chunk.retried)
        embedded.unreadable.update(chunk.unreadable)
        progress(min(len(paths), start + EMBED_CHUNK))
    no_face = len(embedded.no_face) + len(embedded.unreadable)
    _record(services, evaluation_id, no_face=no_face)  # kept even when too few faces fail the report
    found = [path for path in paths if path in embedded.embeddings]
    vectors = (
        np.stack([embedded.embeddings[path] for path in found]).astype(np.float32)
        if found
        else np.zeros((0, 1), dtype=np.float32)
    )  # (F, D)
    labels = np.array([evaluation_set.images[path] for path in found])  # (F,)
    source = {"kind": "evaluation", "evaluation_id": evaluation_id}
    if evaluation_set.pairs is None:
        body = templates_report(
            context, vectors, labels, max_impostor=services.settings.report_max_impostor_pairs, source=source
        )
    else:
        scores, same = score_pairs(evaluation_set.pairs, embedded, pipeline.metric)
        similarity = (
            pairwise_similarity(vectors, vectors, pipeline.metric) if found else np.zeros((0, 0), np.float32)
        )  # (F, F)
        identification = identification_report(
            similarity, labels, context.identify_threshold, context.identify_score
        )
        body = build_report(
            context,
            scores[same],
            scores[~same],
            identification,
            source={**source, "impostor_sampled": False, "impostor_total": int(np.count_nonzero(~same))},
            counts={"subjects": evaluation_set.identities, "templates": len(found)},
        )
    body["source"]["no_face"] = no_face
    with services.session_factory() as session:
        begin_write(session)
        # Linked in the same transaction, so deleting the evaluation always finds its report;
        # when it was deleted while this ran, the report is not kept at all.
        if update_tracked(session, Evaluation, evaluation_id, report_id=body["id"]):
            add_report(
                session,
                body["id"],
                "evaluation",
                body,
                collection_id=collection_id,
                model_name=context.model_name,
                evaluation_id=evaluation_id,
            )
        session.commit()
    log_event(logger, "evaluation.done", id=evaluation_id, images=len(paths), no_face=no_face)
    return {"report_id": body["id"], "no_face": no_face, "progress": len(paths)}


def _record(services: Services, evaluation_id: str, **fields: Any) -> None:
    with services.session_factory() as session:
        begin_write(session)
        update_tracked(session, Evaluation, evaluation_id, **fields)
        session.commit()


def evaluation_or_404(session: Session, target: Target, evaluation_id: str) -> Evaluation:
    """The collection's evaluation; one of another collection is not found."""
    evaluation = get_evaluation(session, find_collection(session, target).id, evaluation_id)
    if evaluation is None:
        raise EvaluationNotFound(f"no evaluation {evaluation_id!r}", {"evaluation_id": evaluation_id})
    return evaluation


def current_evaluation(session: Session, target: Target, evaluation_id: str) -> EvaluationPublic:
    """The evaluation with its report, as a status request should see it: an abandoned job shows as failed."""
    begin_write(session)
    evaluation = evaluation_or_404(session, target, evaluation_id)
    expire_if_stale(evaluation)
    report = evaluation_report(session, evaluation)
    return EvaluationPublic(
        **evaluation_summary(evaluation).model_dump(),
        report=ReportPublic.model_validate(report.body) if report is not None else None,
    )


def evaluation_report(session: Session, evaluation: Evaluation) -> Report | None:
    return get_report(session, evaluation.report_id) if evaluation.report_id else None


def all_evaluations(session: Session, target: Target) -> EvaluationList:
    begin_write(session)
    evaluations = list_evaluations(session, find_collection(session, target).id)
    for evaluation in evaluations:
        expire_if_stale(evaluation)
    items = [evaluation_summary(evaluation) for evaluation in evaluations]
    return EvaluationList(items=items, count=len(items))


def evaluation_summary(evaluation: Evaluation) -> EvaluationSummary:
    return EvaluationSummary.model_validate(evaluation, from_attributes=True)


def remove_evaluation(session: Session, target: Target, evaluation_id: str) -> None:
    begin_write(session)
    evaluation = evaluation_or_404(session, target, evaluation_id)
    if evaluation.report_id:
        delete_report(session, evaluation.report_id)
    delete_evaluation(session, evaluation)
    write_audit(
        session, target.actor, "evaluation.delete", evaluation_id, collection_id=evaluation.collection_id
    )
