"""Verify (1:1) and identify (1:N), within one collection.

Both use the largest face of each image (identify: every face with
``all_faces``), compare in the collection's model's metric where a higher
similarity means more alike, and decide against the collection's operating
threshold in force (stored in the database) unless the request overrides it.
Verify decides on the similarity; identify on the model's open-set decision
score (``app.eval.decision_score``), read from the top candidate and its
cohort of next-best subjects, while each candidate still reports its raw
similarity.
"""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy.orm import Session

from app.core.errors import AppError, NoFaceDetected, SubjectHasNoFaces, SubjectNotFound
from app.core.logging import log_event
from app.db.embeddings import bytes_to_embedding
from app.db.faces import face_labels, list_faces
from app.db.models import Collection
from app.db.subjects import get_subject_by_external_id
from app.eval.decision_score import decision_score_of, statistic_name, subjects_needed
from app.index import Candidate
from app.pipeline.face_pipeline import Face as DetectedFace
from app.pipeline.runner import InferenceRunner
from app.pipeline.similarity import pairwise_similarity
from app.schemas.common import Box, ModelInfo
from app.schemas.recognition import (
    DetectedFace as DetectedFacePublic,
)
from app.schemas.recognition import (
    IdentifiedFace,
    IdentifyCandidate,
    IdentifyMatch,
    IdentifyRequest,
    IdentifyResult,
    VerifyFaces,
    VerifyRequest,
    VerifyResult,
)
from app.services.collections import Target, embedding_collection
from app.services.container import Services
from app.services.thresholds import identify_score, operating_thresholds

logger = logging.getLogger(__name__)


def verify(services: Services, session: Session, target: Target, request: VerifyRequest) -> VerifyResult:
    collection = embedding_collection(services, session, target)
    runner = services.runner_of(collection.model_name)
    if request.image_a is not None and request.image_b is not None:
        return _verify_pair(
            services, runner, session, collection, request.image_a, request.image_b, request.threshold
        )
    assert request.image is not None and request.subject_id is not None  # the schema's validator
    return _verify_subject(
        services, runner, session, collection, request.image, request.subject_id, request.threshold
    )


def identify(
    services: Services, session: Session, target: Target, request: IdentifyRequest
) -> IdentifyResult:
    collection = embedding_collection(services, session, target)
    runner = services.runner_of(collection.model_name)
    max_faces = services.settings.identify_max_faces if request.all_faces else 1
    probes = _faces(services, runner, request.image, "file", max_faces=max_faces, endpoint="identify")
    queries = np.stack([face.embedding for face in probes]).astype(np.float32)  # (F, D)

    score = identify_score(services.pipelines.manifest(collection.model_name))
    follower = services.index
    # Removals another worker committed since our last replay are not in the index yet.
    excluded = follower.removed_since_sync(session)
    depth = max(request.top_n, subjects_needed(score))  # the decision score reads the top one's cohort
    ranked = follower.search_subjects(
        collection.id, queries, depth, exclude_face_ids=excluded, model_name=collection.model_name
    )

    threshold = request.threshold
    if threshold is None:
        defaults = services.thresholds_of(collection.model_name)
        threshold = operating_thresholds(session, collection.id, defaults).identify
    results = []
    for probe, candidates in zip(probes, ranked, strict=True):
        public = _public_candidates(session, candidates)
        decision = decision_score_of([c.similarity for c in public], score) if public else None
        match = (
            IdentifyMatch(subject_id=public[0].subject_id, similarity=public[0].similarity, score=decision)
            if decision is not None and decision >= threshold
            else None
        )
        results.append(
            IdentifiedFace(
                box=Box.from_array(probe.box),
                det_score=round(float(probe.det_score), 4),
                candidates=public[: request.top_n],
                score=decision,
                match=match,
            )
        )
    log_event(
        logger,
        "identify",
        collection=collection.external_id,
        faces=len(results),
        matched=sum(result.match is not None for result in results),
        top_n=request.top_n,
    )
    return IdentifyResult(
        faces=results,
        threshold=threshold,
        statistic=statistic_name(score),
        collection=collection.external_id,
        model=_model_info(runner),
    )


def _verify_pair(
    services: Services,
    runner: InferenceRunner,
    session: Session,
    collection: Collection,
    image_a: bytes,
    image_b: bytes,
    override: float | None,
) -> VerifyResult:
    face_a = _faces(services, runner, image_a, "file_a", max_faces=1, endpoint="verify")[0]
    face_b = _faces(services, runner, image_b, "file_b", max_faces=1, endpoint="verify")[0]
    similarity = runner.pipeline.similarity(face_a.embedding, face_b.embedding)
    threshold = override if override is not None else _verify_threshold(services, session, collection)
    log_event(logger, "verify", kind="pair", collection=collection.external_id, match=similarity >= threshold)
    return VerifyResult(
        similarity=similarity,
        threshold=threshold,
        match=similarity >= threshold,
        faces=VerifyFaces(a=_detected(face_a), b=_detected(face_b)),
        collection=collection.external_id,
        model=_model_info(runner),
    )


def _verify_subject(
    services: Services,
    runner: InferenceRunner,
    session: Session,
    collection: Collection,
    image: bytes,
    subject_id: str,
    override: float | None,
) -> VerifyResult:
    probe = _faces(services, runner, image, "file", max_faces=1, endpoint="verify")[0]
    subject = get_subject_by_external_id(session, collection.id, subject_id)
    if subject is None:
        raise SubjectNotFound(f"no subject {subject_id!r}", {"subject_id": subject_id})
    model = runner.pipeline.model
    templates = [face for face in list_faces(session, subject.id) if face.model_name == model.name]
    if not templates:
        raise SubjectHasNoFaces(
            f"subject {subject_id!r} has no template of model {model.name}",
            {"subject_id": subject_id, "model": model.name},
        )
    gallery = np.stack(
        [bytes_to_embedding(face.embedding, face.embedding_dim) for face in templates]
    )  # (T, D)
    similarities = pairwise_similarity(probe.embedding[None, :], gallery, runner.pipeline.metric)[0]  # (T,)
    best = int(np.argmax(similarities))
    similarity = float(similarities[best])
    threshold = override if override is not None else _verify_threshold(services, session, collection)
    log_event(
        logger,
        "verify",
        kind="subject",
        collection=collection.external_id,
        subject=subject_id,
        templates=len(templates),
    )
    return VerifyResult(
        similarity=similarity,
        threshold=threshold,
        match=similarity >= threshold,
        faces=VerifyFaces(a=_detected(probe)),
        subject_id=subject_id,
        matched_face_id=templates[best].public_id,
        collection=collection.external_id,
        model=_model_info(runner),
    )


def _faces(
    services: Services, runner: InferenceRunner, data: bytes, field: str, *, max_faces: int, endpoint: str
) -> list[DetectedFace]:
    """The faces of one uploaded image; a bad image or no face fails the request, naming the field."""
    try:
        analyzed = runner.analyze(data, max_faces=max_faces)
    except AppError as error:
        error.details = {**error.details, "field": field}
        raise
    services.metrics.faces_detected(endpoint, len(analyzed.faces))
    if not analyzed.faces:
        raise NoFaceDetected(f"no face was found in {field}", {"field": field})
    return analyzed.faces


def _public_candidates(session: Session, candidates: list[Candidate]) -> list[IdentifyCandidate]:
    """Index ids → public ids; a face deleted since the search began is dropped."""
    # On PostgreSQL each statement sees the latest commits: a face or its subject
    # can vanish between the search and this read.
    labels = face_labels(session, [candidate.face_id for candidate in candidates])
    return [
        IdentifyCandidate(
            subject_id=label.subject_external_id,
            name=label.subject_name,
            similarity=float(candidate.similarity),
            face_id=label.public_id,
        )
        for candidate in candidates
        if (label := labels.get(candidate.face_id)) is not None
    ]


def _verify_threshold(services: Services, session: Session, collection: Collection) -> float:
    return operating_thresholds(session, collection.id, services.thresholds_of(collection.model_name)).verify


def _detected(face: DetectedFace) -> DetectedFacePublic:
    return DetectedFacePublic(box=Box.from_array(face.box), det_score=round(float(face.det_score), 4))


def _model_info(runner: InferenceRunner) -> ModelInfo:
    model = runner.pipeline.model
    return ModelInfo(name=model.name, version=model.version, metric=runner.pipeline.metric)
