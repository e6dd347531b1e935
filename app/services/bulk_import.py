"""Bulk enrolment: the photos of a folder (or a CSV list) into a collection, in batches, resumably.

Each photo goes through what POST /enroll does to one image: the
collection's pipeline keeps its largest face if that face passes the same
quality gate, with the same stored crop, and one subject's image bytes are
one template per model. Photos are hashed first, and those whose subject
already has a template of the same bytes and model (from an earlier run that
was interrupted, or from enrolment) are skipped before any inference: one
query per batch. Inference runs in a thread pool as large as the runner's
inference slots (ONNX Runtime releases the GIL), one image per call; the
pipeline has no path that batches detection across images. Each batch is
then written in one short transaction under the gallery write lock
(``add_faces_bulk``): an interrupted import loses at most the batch in
flight, and running it again picks up where it stopped.

A collection being moved to another model is refused: its new templates
would have to be computed for both models, which enrolment does one request
at a time.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from app.core.errors import (
    CollectionMoving,
    ImageTooLarge,
    InvalidImage,
    LowQualityFace,
    ModelNotFound,
    ModelUnavailable,
    NoFaceDetected,
)
from app.core.logging import log_event
from app.core.settings import Settings
from app.db.audit import write_audit
from app.db.bulk_faces import NewTemplate, add_faces_bulk, stored_images
from app.pipeline.decode import IMAGE_SUFFIXES
from app.pipeline.pipelines import Pipelines
from app.pipeline.runner import InferenceRunner
from app.schemas.common import SubjectId
from app.services import reembedding
from app.services.collections import Target, find_collection
from app.services.container import Services
from app.services.enrollment import quality_problems, stored_crop
from app.services.keys import Principal
from app.services.transactions import begin_gallery_write

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 512
# Reasons a listed photo is refused before inference; the others are the enrolment errors' codes.
INVALID_SUBJECT_ID = "invalid_subject_id"
INVALID_NAME = "invalid_name"
INVALID_ROW = "invalid_row"
UNREADABLE_FILE = "unreadable_file"
NAME_MAX_LENGTH = 255  # EnrollRequest.name's limit

_SUBJECT_ID: TypeAdapter[str] = TypeAdapter(SubjectId)


@dataclass(frozen=True)
class ImportItem:
    path: Path
    subject_id: str
    name: str | None = None  # the subject's name, when the import creates it


@dataclass(frozen=True)
class Rejection:
    path: str
    code: str
    message: str


@dataclass(frozen=True)
class ImportListing:
    items: list[ImportItem]
    rejected: list[Rejection] = field(default_factory=list)  # rows that name no photo
    ignored: int = 0  # files without an image extension


@dataclass
class ImportSummary:
    collection_id: str
    model: str
    listed: int = 0
    done: int = 0  # listed images dealt with (enrolled, skipped, duplicate or rejected)
    enrolled: int = 0
    subjects_created: int = 0
    skipped_stored: int = 0  # the subject had a template of these bytes before this run
    duplicates: int = 0  # the same bytes for the same subject again within this run
    analysed: int = 0  # images that went through inference
    rejected: list[Rejection] = field(default_factory=list)
    seconds: float = 0.0

    def rejected_by_code(self) -> dict[str, int]:
        return dict(sorted(Counter(r.code for r in self.rejected).items()))

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ImportContext:
    """What an import needs of the service: the database, the models, the settings and who acts."""

    session_factory: Callable[[], Session]
    pipelines: Pipelines
    settings: Settings
    actor: str = "cli"

    @classmethod
    def of(cls, services: Services, actor: str = "cli") -> ImportContext:
        return cls(services.session_factory, services.pipelines, services.settings, actor)


def list_folder(root: Path) -> ImportListing:
    """One sub-folder per subject, named by its subject id; its image files (by extension) are the photos."""
    items: list[ImportItem] = []
    ignored = 0
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            ignored += 1
            continue
        for path in sorted(entry.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                items.append(ImportItem(path, entry.name))
            else:
                ignored += 1
    return ImportListing(items, ignored=ignored)


def list_csv(path: Path) -> ImportListing:
    """Rows ``path,subject_id[,name]``, paths relative to the CSV's folder; a header row may come first."""
    items: list[ImportItem] = []
    rejected: list[Rejection] = []
    with path.open(newline="", encoding="utf-8-sig") as stream:
        for number, row in enumerate(csv.reader(stream, skipinitialspace=True), start=1):
            if not any(cell.strip() for cell in row):
                continue
            if number == 1 and [cell.strip().lower() for cell in row[:2]] == ["path", "subject_id"]:
                continue
            if len(row) not in (2, 3) or not row[0].strip():
                rejected.append(Rejection(f"{path}:{number}", INVALID_ROW, "expected path,subject_id[,name]"))
                continue
            name = row[2] if len(row) == 3 and row[2] else None
            items.append(ImportItem(path.parent / row[0], row[1], name))
    return ImportListing(items, rejected)


class BulkImport:
    """One import into one collection; ``summary`` holds its counts so far, also after an interrupt."""

    def __init__(
        self,
        context: ImportContext,
        collection_id: str,
        *,
        batch_size: int = DEFAULT_BATCH,
        progress: Callable[[int], object] = lambda done: None,
    ) -> None:
        """Refuses a collection that is not there, whose model is not installed, or that is moving."""
        self.context = context
        self.target = Target(collection_id, Principal("admin", context.actor))
        self.batch_size = batch_size
        self.progress = progress
        with context.session_factory() as session:
            collection = find_collection(session, self.target)
            self._refuse_moving(session)
        self.model_name = collection.model_name
        try:
            self.runner: InferenceRunner = context.pipelines.runner(collection.model_name)
        except ModelNotFound as error:
            raise ModelUnavailable(
                f"this service has no model {collection.model_name!r} installed: {error.message}",
                {"model": collection.model_name},
            ) from error
        self.summary = ImportSummary(collection.external_id, collection.model_name)
        self._seen: set[tuple[str, str]] = set()  # (subject, sha256) sent to inference in this run

    def run(self, listing: ImportListing) -> ImportSummary:
        started = time.perf_counter()
        self.summary.listed += len(listing.items) + len(listing.rejected)
        for rejection in listing.rejected:
            self._reject(rejection)
        valid = [item for item in listing.items if self._valid(item)]
        pool = ThreadPoolExecutor(self.runner.workers, thread_name_prefix="import")
        try:
            for batch in _chunks(valid, self.batch_size):
                self._import_batch(pool, batch)
        finally:
            # On an interrupt, queued images are dropped; the few being analysed finish first.
            pool.shutdown(wait=True, cancel_futures=True)
            self.summary.seconds += time.perf_counter() - started
        summary = self.summary
        log_event(
            logger,
            "import.done",
            collection=summary.collection_id,
            listed=summary.listed,
            enrolled=summary.enrolled,
            skipped=summary.skipped_stored,
            duplicates=summary.duplicates,
            rejected=len(summary.rejected),
            seconds=round(summary.seconds, 3),
        )
        return summary

    def _valid(self, item: ImportItem) -> bool:
        """Subject ids as the API takes them; a bad one is a rejected row, not a failed import."""
        try:
            _SUBJECT_ID.validate_python(item.subject_id)
        except ValidationError as error:
            reason = error.errors(include_url=False, include_input=False)[0]["msg"]
            self._reject(Rejection(str(item.path), INVALID_SUBJECT_ID, f"subject id: {reason}"))
            return False
        if item.name is not None and len(item.name) > NAME_MAX_LENGTH:
            self._reject(
                Rejection(str(item.path), INVALID_NAME, f"the name is over {NAME_MAX_LENGTH} characters")
            )
            return False
        return True

    def _import_batch(self, pool: ThreadPoolExecutor, batch: Sequence[ImportItem]) -> None:
        max_bytes = self.context.settings.max_image_bytes
        hashed: list[tuple[ImportItem, str]] = []
        for item, digest in zip(batch, pool.map(lambda item: _hash(item, max_bytes), batch), strict=True):
            if isinstance(digest, Rejection):
                self._reject(digest)
            else:
                hashed.append((item, digest))
        with self.context.session_factory() as session:
            collection = find_collection(session, self.target)
            stored = stored_images(
                session, collection.id, self.model_name, {(i.subject_id, d) for i, d in hashed}
            )
        todo: list[ImportItem] = []
        for item, digest in hashed:
            key = (item.subject_id, digest)
            if key in self._seen:
                self.summary.duplicates += 1
                self._advance()
            elif key in stored:
                self.summary.skipped_stored += 1
                self._advance()
            else:
                self._seen.add(key)
                todo.append(item)
        self._write(self._analyse_all(pool, todo), todo)

    def _analyse_all(self, pool: ThreadPoolExecutor, items: Sequence[ImportItem]) -> list[NewTemplate]:
        """The accepted templates of ``items``, in their order; the others are rejected."""
        settings = self.context.settings
        futures: dict[Future[NewTemplate | Rejection], int] = {
            pool.submit(_analyse, self.runner, settings, item): position
            for position, item in enumerate(items)
        }
        results: list[NewTemplate | Rejection | None] = [None] * len(items)
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            self.summary.analysed += 1
            self._advance()
        accepted = []
        for result in results:
            if isinstance(result, NewTemplate):
                accepted.append(result)
            elif result is not None:
                self.summary.rejected.append(result)
        return accepted

    def _write(self, templates: list[NewTemplate], items: Sequence[ImportItem]) -> None:
        if not templates:
            return
        names: dict[str, str | None] = {}
        for item in items:
            if item.name is not None:
                names.setdefault(item.subject_id, item.name)
        model = self.runner.pipeline.model
        with self.context.session_factory() as session:
            begin_gallery_write(session)
            collection = find_collection(session, self.target)  # it may have gone meanwhile
            if collection.model_name != self.model_name:
                raise ModelUnavailable(
                    f"collection {collection.external_id!r} moved to model {collection.model_name} during "
                    "this import; run it again",
                    {"collection_id": collection.external_id, "model": collection.model_name},
                )
            self._refuse_moving(session)
            added = add_faces_bulk(
                session,
                collection.id,
                templates,
                model_name=model.name,
                model_version=model.version,
                subject_names=names,
            )
            counts = {
                "faces": added.added,
                "duplicates": len(templates) - added.added,
                "subjects_created": len(added.subjects_created),
            }
            write_audit(
                session,
                self.context.actor,
                "collection.import",
                collection.external_id,
                counts,
                collection_id=collection.id,
            )
            session.commit()
        self.summary.enrolled += added.added
        self.summary.duplicates += len(templates) - added.added  # stored by another writer meanwhile
        self.summary.subjects_created += len(added.subjects_created)
        log_event(logger, "import.batch", collection=collection.external_id, **counts)

    def _refuse_moving(self, session: Session) -> None:
        move = reembedding.running_move(session, self.target.collection_id)
        if move is not None:
            raise CollectionMoving(
                f"collection {self.target.collection_id!r} is being moved to model {move.model} "
                f"(job {move.job_id}); import into it once the move has finished",
                {"collection_id": self.target.collection_id, "job": move.job_id, "model": move.model},
            )

    def _reject(self, rejection: Rejection) -> None:
        self.summary.rejected.append(rejection)
        self._advance()

    def _advance(self) -> None:
        self.summary.done += 1
        self.progress(1)


def _hash(item: ImportItem, max_bytes: int) -> str | Rejection:
    """The sha256 of the photo's bytes (what the duplicate rule compares), or why it cannot be read."""
    try:
        size = item.path.stat().st_size
        if size > max_bytes:
            return Rejection(
                str(item.path), ImageTooLarge.code, f"the image is {size} bytes; the limit is {max_bytes}"
            )
        return hashlib.sha256(_read(item.path, max_bytes)).hexdigest()
    except OSError as error:
        return Rejection(str(item.path), UNREADABLE_FILE, error.strerror or type(error).__name__)


def _analyse(runner: InferenceRunner, settings: Settings, item: ImportItem) -> NewTemplate | Rejection:
    """The photo's largest face as enrolment would store it, or why enrolment would refuse it."""
    path = str(item.path)
    try:
        analyzed = runner.analyze(_read(item.path, settings.max_image_bytes), max_faces=1)
    except OSError as error:
        return Rejection(path, UNREADABLE_FILE, error.strerror or type(error).__name__)
    except (InvalidImage, ImageTooLarge) as error:
        return Rejection(path, error.code, error.message)
    if not analyzed.faces:
        return Rejection(path, NoFaceDetected.code, "no face was found")
    face = analyzed.faces[0]
    problems = quality_problems(face.quality, settings)
    if problems:
        return Rejection(path, LowQualityFace.code, "; ".join(problems))
    x1, y1, x2, y2 = (float(value) for value in face.box)
    return NewTemplate(
        subject_id=item.subject_id,
        embedding=face.embedding,
        box=(x1, y1, x2, y2),
        det_score=float(face.det_score),
        quality=float(face.quality.score),
        image_sha256=analyzed.sha256,
        quality_json=face.quality.to_dict(),
        crop=stored_crop(face) if settings.store_crops else None,
    )


def _read(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes, so a file that grew past the limit is refused, not loaded."""
    with path.open("rb") as stream:
        return stream.read(max_bytes + 1)


def _chunks(items: Sequence[ImportItem], size: int) -> Iterator[Sequence[ImportItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
