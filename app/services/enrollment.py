"""Enrol: remember a subject's face from one or more images.

Each image contributes its largest face if that face passes the quality
gate; images that fail are listed in ``rejected`` without failing the
others. When no image yields a usable face the request fails with the first
image's reason and nothing is written: no empty subject is created, and an
existing subject's name and metadata stay as they were.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.core.errors import (
    AppError,
    ImageTooLarge,
    InvalidImage,
    LowQualityFace,
    ModelUnavailable,
    NoFaceDetected,
)
from app.core.logging import log_event
from app.core.settings import Settings
from app.db.audit import write_audit
from app.db.faces import StoredCrop, add_face
from app.db.subjects import UNSET, face_counts, get_or_create_subject, update_subject
from app.pipeline.face_pipeline import Face, FaceQuality
from app.pipeline.runner import InferenceRunner, encode_crop
from app.schemas.enroll import DuplicateImage, EnrolledFace, EnrollRequest, EnrollResult, RejectedImage
from app.services import reembedding
from app.services.collections import Target, embedding_collection
from app.services.container import Services
from app.services.subjects import face_public, subject_public
from app.services.transactions import after_commit, begin_gallery_write

logger = logging.getLogger(__name__)

_REJECTIONS: dict[str, type[AppError]] = {
    cls.code: cls for cls in (NoFaceDetected, LowQualityFace, InvalidImage, ImageTooLarge)
}


@dataclass(frozen=True)
class _Accepted:
    index: int
    sha256: str
    face: Face
    crop: StoredCrop | None  # encoded before the write lock is taken


def enroll(services: Services, session: Session, target: Target, request: EnrollRequest) -> EnrollResult:
    # Checked before the (long) inference, in a session of its own: the request's
    # transaction must begin with the write lock, below.
    with services.session_factory() as peek:
        model_name = embedding_collection(services, peek, target).model_name
        moving = reembedding.running_move(peek, target.collection_id)
    runner = services.runner_of(model_name)
    accepted, rejected = _screen(services, runner, request.images)
    if not accepted:
        first = rejected[0]
        raise _REJECTIONS[first.code](
            f"no image could be enrolled: {first.message}",
            {"rejected": [item.model_dump() for item in rejected]},
        )
    # While the collection moves to another model, its new templates are computed for both.
    staged = None if moving is None else reembedding.embed_for(services, moving, [a.face for a in accepted])

    # Inference is done: only now take the write lock, and hold it briefly.
    begin_gallery_write(session)
    collection = embedding_collection(services, session, target)  # it may have gone meanwhile
    if collection.model_name != model_name:
        raise ModelUnavailable(
            f"collection {collection.external_id!r} moved to model {collection.model_name} during this "
            "enrolment; send it again",
            {"collection_id": collection.external_id, "model": collection.model_name},
        )
    subject, created = get_or_create_subject(
        session, collection.id, request.subject_id, request.name, request.metadata
    )
    if not created and (request.name is not None or request.metadata is not None):
        update_subject(
            session,
            subject,
            name=UNSET if request.name is None else request.name,
            metadata=UNSET if request.metadata is None else request.metadata,
        )

    model = runner.pipeline.model
    faces: list[EnrolledFace] = []
    duplicates: list[DuplicateImage] = []
    added_rows = []
    for position, item in enumerate(accepted):
        face = item.face
        row, added = add_face(
            session,
            subject,
            face.embedding,
            model_name=model.name,
            model_version=model.version,
            box=(float(face.box[0]), float(face.box[1]), float(face.box[2]), float(face.box[3])),
            det_score=float(face.det_score),
            quality=float(face.quality.score),
            quality_json=face.quality.to_dict(),
            image_sha256=item.sha256,
            crop=item.crop,
        )
        if not added:
            duplicates.append(DuplicateImage(index=item.index, face_id=row.public_id))
            continue
        if staged is not None:
            added_rows.append((row.id, staged[position]))
        faces.append(EnrolledFace(index=item.index, **face_public(row, subject.external_id).model_dump()))

    if moving is not None and added_rows:
        reembedding.stage_enrolled(session, moving, added_rows)
    if faces:
        after_commit(session, services.index.catch_up)
    write_audit(
        session,
        target.actor,
        "subject.enroll",
        subject.external_id,
        {"faces": len(faces), "duplicates": len(duplicates), "rejected": len(rejected), "created": created},
        collection_id=collection.id,
    )
    log_event(
        logger,
        "enroll",
        collection=collection.external_id,
        subject=subject.external_id,
        created=created,
        faces=len(faces),
        duplicates=len(duplicates),
        rejected=len(rejected),
    )
    count = face_counts(session, [subject.id])[subject.id]
    return EnrollResult(
        subject=subject_public(subject, count),
        created=created,
        faces=faces,
        duplicates=duplicates,
        rejected=rejected,
    )


def _screen(
    services: Services, runner: InferenceRunner, images: list[bytes]
) -> tuple[list[_Accepted], list[RejectedImage]]:
    """Run every image through the collection's pipeline and the quality gate."""
    settings = services.settings
    accepted: list[_Accepted] = []
    rejected: list[RejectedImage] = []
    for index, data in enumerate(images):
        try:
            analyzed = runner.analyze(data, max_faces=1)
        except (InvalidImage, ImageTooLarge) as error:
            rejected.append(RejectedImage(index=index, code=error.code, message=error.message))
            continue
        services.metrics.faces_detected("enroll", len(analyzed.faces))
        if not analyzed.faces:
            rejected.append(RejectedImage(index=index, code=NoFaceDetected.code, message="no face was found"))
            continue
        face = analyzed.faces[0]
        problems = quality_problems(face.quality, settings)
        if problems:
            rejected.append(RejectedImage(index=index, code=LowQualityFace.code, message="; ".join(problems)))
            continue
        crop = stored_crop(face) if settings.store_crops else None
        accepted.append(_Accepted(index, analyzed.sha256, face, crop))
    return accepted, rejected


def stored_crop(face: Face) -> StoredCrop:
    """What is kept of a face so that another model can embed it later (``SourceCrop``)."""
    source = face.source
    return StoredCrop(encode_crop(source.pixels), source.landmarks.tolist(), source.box.tolist())


def quality_problems(quality: FaceQuality, settings: Settings) -> list[str]:
    """Why a face may not be enrolled (empty when it may): the gate every enrolment passes."""
    problems = []
    if quality.face_size < settings.enroll_min_face_size:
        problems.append(
            f"the face is {quality.face_size:.0f} px; "
            f"at least {settings.enroll_min_face_size:.0f} px is needed"
        )
    if quality.det_score < settings.enroll_min_det_score:
        problems.append(
            f"detection score {quality.det_score:.3f} is below {settings.enroll_min_det_score:.3f}"
        )
    return problems
