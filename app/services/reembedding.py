"""Moving a collection to another model: every template recomputed from what enrolment stored.

A job computes the new model's template of each face from its stored crop
(``Face.crop``: the region of the photo around the face, or for faces
stored before regions were kept, the old model's aligned crop) into
``staged_templates``, then switches the collection in one transaction under
the gallery write lock: the faces take the new templates, the collection the
new model and that model's thresholds, and the change log a ``rebuild`` so
every worker rebuilds its index. Until then searches use the old model;
enrolments made meanwhile are embedded with both (``embed_for``), and the
switch embeds whatever is still missing. A failed, cancelled or killed job
leaves the collection as it was (its staged templates are deleted).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from app.core.arrays import FloatArray
from app.core.errors import (
    AppError,
    FacesNotMovable,
    JobNotFound,
    ModelPackError,
    ReembedRefused,
    ValidationFailed,
)
from app.core.logging import log_event
from app.core.settings import Settings
from app.db.audit import write_audit
from app.db.base import utcnow
from app.db.changes import lock_change_log, record_drop
from app.db.collections import get_collection, get_collection_by_id
from app.db.faces import count_faces, delete_face
from app.db.jobs import active_job, add_job, get_job
from app.db.models import Collection, Face, Job
from app.db.session import begin_write
from app.db.staging import add_staged, delete_staged, faces_to_stage, switch_to_staged
from app.pipeline.face_pipeline import Face as PipelineFace
from app.pipeline.geometry import SourceCrop, estimate_similarity, transform_points
from app.pipeline.manifest import ModelManifest
from app.pipeline.pipelines import Pipelines
from app.pipeline.runner import InferenceRunner
from app.schemas.admin import JobPublic
from app.schemas.reembed import ReembedRequest
from app.services.collections import Target, find_collection, model_thresholds
from app.services.container import Services
from app.services.jobs import (
    PROGRESS_INTERVAL_S,
    ProgressFn,
    job_public,
    stale_before,
    start_after_commit,
)
from app.services.thresholds import (
    IDENTIFY_KEY,
    VERIFY_KEY,
    OperatingThresholds,
    default_thresholds,
    reset_thresholds,
    set_thresholds,
)
from app.services.transactions import after_commit, begin_gallery_write

logger = logging.getLogger(__name__)

REEMBED_JOB = "reembed"
# Faces embedded per transaction: each batch is staged and its progress written.
BATCH = 32
# A stored aligned crop may leave at most this share of the new model's crop to border
# filling; beyond it the new template would be of a face cut short.
MAX_OUTSIDE = 0.05
CANCELLED = "cancelled by an admin; the collection stays on its model"


@dataclass(frozen=True)
class MoveContext:
    """What a move needs of the service: the database, the models, and what to do after the switch."""

    session_factory: Callable[[], Session]
    pipelines: Pipelines
    settings: Settings
    after_switch: Callable[[], object] = lambda: None

    @classmethod
    def of(cls, services: Services) -> MoveContext:
        return cls(services.session_factory, services.pipelines, services.settings, services.index.catch_up)

    def runner(self, model: str) -> InferenceRunner:
        return self.pipelines.runner(model)

    def thresholds_of(self, model: str) -> OperatingThresholds:
        return default_thresholds(self.pipelines.manifest(model))


@dataclass(frozen=True)
class Move:
    """A running re-embedding job of a collection: what enrolments must also embed for."""

    job_id: str
    collection_id: int
    model: str


def running_move(session: Session, collection_external_id: str) -> Move | None:
    collection = get_collection(session, collection_external_id)
    if collection is None:
        return None
    job = active_job(session, REEMBED_JOB, collection.id, stale_before())
    if job is None or not job.details:
        return None
    return Move(job.id, collection.id, str(job.details["model"]))


def embed_for(services: Services, move: Move, faces: Sequence[PipelineFace]) -> FloatArray:
    """The new model's templates of faces being enrolled, from the same regions."""
    return services.runner_of(move.model).embed_sources([face.source for face in faces])


def stage_enrolled(session: Session, move: Move, templates: Sequence[tuple[int, FloatArray]]) -> None:
    """In the enrolment's (locked) transaction: keep its new-model templates if the job still runs."""
    job = get_job(session, move.job_id)
    if job is not None and job.state in ("queued", "running"):
        add_staged(session, move.job_id, templates)


def start(services: Services, session: Session, target: Target, request: ReembedRequest) -> JobPublic:
    """Queue the move (202 with the job); it runs in this worker once the request commits."""
    context = MoveContext.of(services)
    job = prepare(context, session, target, request)
    start_after_commit(
        session,
        services.session_factory,
        Job,
        job.id,
        lambda progress: run(context, job.id, progress),
        cleanup=lambda: discard_staged(services.session_factory, job.id),
    )
    return job_public(job)


def prepare(context: MoveContext, session: Session, target: Target, request: ReembedRequest) -> Job:
    """Check that the move can start and create its job row, in the caller's transaction."""
    if not context.settings.store_crops:
        raise ReembedRefused(
            "re-embedding needs the stored face crops, and FACEREC_STORE_CROPS=false keeps none",
            {"setting": "FACEREC_STORE_CROPS"},
        )
    begin_write(session)
    collection = find_collection(session, target)
    model_thresholds(context.pipelines, request.model, request.thresholds)  # installed; calibrated or given
    if collection.model_name == request.model:
        raise ValidationFailed(
            f"collection {collection.external_id!r} is on model {request.model} already",
            {"model": request.model},
        )
    running = active_job(session, REEMBED_JOB, collection.id, stale_before())
    if running is not None:
        raise ReembedRefused(
            f"collection {collection.external_id!r} is being moved already (job {running.id})",
            {"job": running.id},
        )
    return create_job(session, collection, request, target.actor)


def create_job(session: Session, collection: Collection, request: ReembedRequest, actor: str) -> Job:
    job = add_job(session, REEMBED_JOB, count_faces(session, collection.id), collection.id)
    job.details = {
        "model": request.model,
        "from_model": collection.model_name,
        "thresholds": None if request.thresholds is None else request.thresholds.model_dump(),
        "unmovable": request.unmovable,
        "actor": actor,
    }
    write_audit(
        session,
        actor,
        "collection.reembed",
        collection.external_id,
        {"job": job.id, "model": request.model},
        collection_id=collection.id,
    )
    return job


def cancel(session: Session, job_id: str, actor: str) -> JobPublic:
    """Stop a queued or running move; it finds out at its next batch and changes nothing."""
    begin_write(session)
    job = get_job(session, job_id)
    if job is None or job.kind != REEMBED_JOB:
        raise JobNotFound(f"no re-embedding job {job_id!r}", {"job_id": job_id})
    if job.state in ("queued", "running"):
        job.state, job.error = "failed", CANCELLED
        job.details = {**(job.details or {}), "cancelled_by": actor}
        delete_staged(session, job.id)
    return job_public(job)


def discard_staged(session_factory: Callable[[], Session], job_id: str) -> None:
    """Delete a job's staged templates unless it finished (idempotent; the switch deletes them too)."""
    with session_factory() as session:
        begin_write(session)
        job = get_job(session, job_id)
        if job is None or job.state != "done":
            delete_staged(session, job_id)
        session.commit()


def run(context: MoveContext, job_id: str, progress: ProgressFn) -> dict[str, Any]:
    """Stage every face's new template, then switch; returns the job's final fields."""
    with context.session_factory() as session:
        job = _live_job(session, job_id)
        details = dict(job.details or {})
        collection_id = job.collection_id
    assert collection_id is not None
    new_model, old_model = str(details["model"]), str(details["from_model"])
    runner = context.runner(new_model)
    old_manifest = _manifest_or_none(context, old_model)
    unmovable: dict[int, str] = {}
    done, last_id = 0, 0
    while True:
        with context.session_factory() as session:
            _live_job(session, job_id)
            faces = faces_to_stage(session, collection_id, job_id, after_id=last_id, limit=BATCH)
            if not faces:
                break
            last_id = faces[-1].id
            sources, face_ids = _sources(faces, old_manifest, runner.pipeline.model, unmovable)
        templates = runner.embed_sources(sources) if sources else np.zeros((0, 0), np.float32)
        with context.session_factory() as session:
            begin_write(session)
            _live_job(session, job_id)
            add_staged(session, job_id, list(zip(face_ids, templates, strict=True)))
            session.commit()
        done += len(faces)
        progress(done)
    return _switch(context, job_id, collection_id, details, runner, old_manifest, unmovable, done)


def _switch(
    context: MoveContext,
    job_id: str,
    collection_id: int,
    details: dict[str, Any],
    runner: InferenceRunner,
    old_manifest: ModelManifest | None,
    unmovable: dict[int, str],
    done: int,
) -> dict[str, Any]:
    """Under the gallery write lock: embed what enrolments added meanwhile, then move the collection."""
    new_manifest: ModelManifest = runner.pipeline.model
    with context.session_factory() as session:
        begin_gallery_write(session)
        _live_job(session, job_id)
        collection = get_collection_by_id(session, collection_id)
        if collection is None or collection.model_name != details["from_model"]:
            raise ReembedRefused("the collection was deleted or moved by someone else meanwhile")
        last_id = 0
        while late := faces_to_stage(session, collection_id, job_id, after_id=last_id, limit=BATCH):
            last_id = late[-1].id
            late = [face for face in late if face.id not in unmovable]
            sources, face_ids = _sources(late, old_manifest, new_manifest, unmovable)
            if sources:
                add_staged(session, job_id, list(zip(face_ids, runner.embed_sources(sources), strict=True)))
            done += len(late)
        listed = [{"face_id": face_id, "reason": reason} for face_id, reason in sorted(unmovable.items())]
        not_moved = _public_ids(session, listed)
        if unmovable and details["unmovable"] == "fail":
            session.rollback()  # nothing changes; only the job learns which faces
            begin_write(session)
            _live_job(session, job_id).details = {**details, "not_movable": not_moved[:1000]}
            session.commit()
            raise FacesNotMovable(
                f"{len(unmovable)} face(s) cannot be moved to {new_manifest.name} from what was stored "
                f'(first: {not_moved[0]["reason"]}); nothing changed. Send "unmovable": "delete" to move '
                "the rest and delete these",
                {"faces": not_moved[:100]},
            )
        for face_id in unmovable:
            face = session.get(Face, face_id)
            if face is not None:
                delete_face(session, face)
        lock_change_log(session)
        moved = switch_to_staged(session, job_id, new_manifest.name, new_manifest.version)
        left = count_faces(session, collection_id) - count_faces(session, collection_id, new_manifest.name)
        if left:  # never a collection of two models: roll back whole
            raise ReembedRefused(f"{left} face(s) of the collection got no template of {new_manifest.name}")
        collection.model_name = new_manifest.name
        defaults = context.thresholds_of(new_manifest.name)
        reset_thresholds(session, collection_id, defaults)
        given = details.get("thresholds")
        if given:
            set_thresholds(
                session,
                collection_id,
                defaults,
                {VERIFY_KEY: float(given["verify"]), IDENTIFY_KEY: float(given["identify"])},
                actor=str(details.get("actor", "system")),
                source=f"given with re-embedding job {job_id}",
            )
        record_drop(session, collection_id, op="rebuild")
        job = _live_job(session, job_id)
        job.details = {**details, "moved": moved, "deleted": not_moved[:1000], "switched_at": str(utcnow())}
        job.state, job.progress = "done", done
        after_commit(session, context.after_switch)
        session.commit()
    log_event(
        logger,
        "collection.reembedded",
        collection=collection_id,
        model=new_manifest.name,
        moved=moved,
        deleted=len(unmovable),
    )
    return {"progress": done}


def _live_job(session: Session, job_id: str) -> Job:
    job = get_job(session, job_id)
    if job is None:
        raise ReembedRefused("the job is gone (its collection was deleted)")
    if job.state not in ("queued", "running"):
        raise ReembedRefused(job.error or CANCELLED)
    return job


def _manifest_or_none(context: MoveContext, name: str) -> ModelManifest | None:
    """The old model's manifest, for re-aligning its aligned crops; None when it is no longer installed."""
    try:
        return context.pipelines.manifest(name)
    except AppError:
        return None


def _sources(
    faces: Sequence[Face],
    old: ModelManifest | None,
    new: ModelManifest,
    unmovable: dict[int, str],
) -> tuple[list[SourceCrop], list[int]]:
    sources, ids = [], []
    for face in faces:
        source = source_of(face, old, new)
        if isinstance(source, str):
            unmovable[face.id] = source
        else:
            sources.append(source)
            ids.append(face.id)
    return sources, ids


def source_of(face: Face, old: ModelManifest | None, new: ModelManifest) -> SourceCrop | str:
    """The region a new template of ``face`` is cut from, or why there is none."""
    if face.crop is None:
        return "no crop was stored for this face (FACEREC_STORE_CROPS was false when it was enrolled)"
    pixels = np.asarray(Image.open(io.BytesIO(face.crop)).convert("RGB"), dtype=np.uint8)
    if face.crop_kind == "source" and face.crop_landmarks is not None and face.crop_box is not None:
        return SourceCrop(
            pixels, np.asarray(face.crop_landmarks, np.float32), np.asarray(face.crop_box, np.float32)
        )
    return _from_aligned(pixels, old, new)


def _from_aligned(pixels: Any, old: ModelManifest | None, new: ModelManifest) -> SourceCrop | str:
    """An old model's aligned crop as a region: its landmarks taken to be that model's template.

    The fit put the face's landmarks near the template, not on it (and a
    framing correction moved them a little more), so this re-alignment is
    close to, not equal to, one from the photo. Refused when the new
    model's crop would reach too far beyond the stored one, or needs the
    face's box for its own framing correction.
    """
    if old is None or old.template is None:
        return "the stored crop is an aligned crop of a model that is no longer installed"
    if new.framing_correction is not None:
        return f"model {new.name} frames faces from their box, which an aligned crop does not keep"
    if new.template is None:
        raise ModelPackError(f"model {new.name} has no template")
    height, width = pixels.shape[:2]
    old_points = np.asarray(old.template, np.float32)
    matrix = estimate_similarity(old_points, np.asarray(new.template, np.float32))  # old crop → new crop
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    grid = np.stack(
        np.meshgrid(np.linspace(0, new.input.width, 24), np.linspace(0, new.input.height, 24)), axis=-1
    ).reshape(-1, 2)
    inside = transform_points(inverse, grid.astype(np.float32))  # (576, 2) in the stored crop
    outside = float(
        np.mean((inside[:, 0] < 0) | (inside[:, 0] > width) | (inside[:, 1] < 0) | (inside[:, 1] > height))
    )
    if outside > MAX_OUTSIDE:
        return (
            f"the stored aligned crop of {old.name} holds only {1 - outside:.0%} of the crop {new.name} "
            "needs; enrol this face again from a photo"
        )
    box = np.array([0.0, 0.0, width, height], np.float32)
    return SourceCrop(pixels, old_points, box)


def _public_ids(session: Session, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in listed:
        face = session.get(Face, item["face_id"])
        if face is not None:
            out.append({"face_id": face.public_id, "reason": item["reason"]})
    return out


def run_foreground(context: MoveContext, job_id: str, progress: ProgressFn) -> dict[str, Any]:
    """``run`` in the calling process (the CLI), keeping the job row as a background job would."""
    last_write = 0.0

    def tracked(done: int) -> None:
        nonlocal last_write
        progress(done)
        if time.monotonic() - last_write >= PROGRESS_INTERVAL_S:
            last_write = time.monotonic()
            _update_job(context, job_id, progress=done)

    _update_job(context, job_id, state="running")
    try:
        fields = run(context, job_id, tracked)
    except AppError as error:
        discard_staged(context.session_factory, job_id)
        _update_job(context, job_id, state="failed", error=error.message[:1000])
        raise
    return fields


def _update_job(context: MoveContext, job_id: str, **fields: Any) -> None:
    with context.session_factory() as session:
        begin_write(session)
        job = get_job(session, job_id)
        if job is not None and job.state in ("queued", "running"):
            for name, value in fields.items():
                setattr(job, name, value)
        session.commit()
