"""Many templates in one write: ``add_face``'s rows, subjects and change log for a bulk import."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.bulk_insert import insert_many
from app.db.changes import lock_change_log, record_new_faces
from app.db.embeddings import embedding_to_bytes
from app.db.faces import Box, StoredCrop
from app.db.models import Face, Subject, new_public_ids

T = TypeVar("T")

# Values bound per IN (...) query: well under SQLite's 32,766 host parameters.
_IN_CHUNK = 10_000


@dataclass(frozen=True)
class NewTemplate:
    """One template for ``add_faces_bulk``: what ``add_face`` takes, its subject named by external id."""

    subject_id: str  # the subject's external id (the API's subject_id) in the collection
    embedding: npt.ArrayLike  # (D,)
    box: Box
    det_score: float
    quality: float
    image_sha256: str
    quality_json: dict[str, Any] | None = None
    crop: StoredCrop | None = None


@dataclass(frozen=True)
class BulkAdded:
    """What ``add_faces_bulk`` did, template by template."""

    face_ids: list[int | None]  # per template, in order: its new face's id, None for a duplicate
    subjects_created: list[str]  # external ids of the subjects it created

    @property
    def added(self) -> int:
        return sum(face_id is not None for face_id in self.face_ids)


def add_faces_bulk(
    session: Session,
    collection_id: int,
    templates: Sequence[NewTemplate],
    *,
    model_name: str,
    model_version: str,
    subject_names: Mapping[str, str | None] | None = None,
) -> BulkAdded:
    """``add_face`` for many templates at once: the same rows and change log, in a few statements.

    Missing subjects are created first (``subject_names`` names them; an
    existing subject is left as it is, as ``get_or_create_subject`` does).
    A template from image bytes its subject already has for this model, or
    that comes again later in ``templates``, is a duplicate and not stored.
    Call under the gallery write lock (``begin_gallery_write``), one
    transaction's worth (a few thousand templates) at a time. One call
    writes at one moment: its new subjects and faces share one
    ``created_at``, its changes one ``at``.
    """
    if not templates:
        return BulkAdded([], [])
    blobs = _embeddings_to_bytes([t.embedding for t in templates])  # refuses NaN before anything is written
    session.flush()
    lock_change_log(session)
    now = utcnow()
    subject_ids, created = _ensure_subjects(
        session, collection_id, [t.subject_id for t in templates], subject_names or {}, now
    )
    taken = set(
        _stored_ids(
            session,
            model_name,
            [subject_ids[t.subject_id] for t in templates if t.subject_id not in created],
            [t.image_sha256 for t in templates],
        )
    )
    positions: list[int] = []
    for position, template in enumerate(templates):
        key = (subject_ids[template.subject_id], template.image_sha256)
        if key in taken:
            continue
        taken.add(key)
        positions.append(position)
    face_ids: list[int | None] = [None] * len(templates)
    if positions:
        kept = [templates[position] for position in positions]
        owners = [subject_ids[t.subject_id] for t in kept]
        constants = {
            "collection_id": collection_id,
            "model_name": model_name,
            "model_version": model_version,
            "created_at": now,
        }
        columns = _face_columns(kept, [blobs[position] for position in positions], owners)
        before = session.scalar(select(func.max(Face.id))) or 0
        new_ids = _insert_faces(session, columns, constants, before)
        for position, face_id in zip(positions, new_ids, strict=True):
            face_ids[position] = face_id
        record_new_faces(session, collection_id, model_name, before)
    return BulkAdded(
        face_ids, [name for name in dict.fromkeys(t.subject_id for t in templates) if name in created]
    )


def stored_images(
    session: Session, collection_id: int, model_name: str, keys: Collection[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which ``(subject external id, image sha256)`` pairs the collection has a template of, for this model.

    A bulk import asks this before inference, once per batch, to skip what an earlier run stored.
    """
    subjects = sorted({subject for subject, _ in keys})
    hashes = sorted({sha for _, sha in keys})
    found: set[tuple[str, str]] = set()
    for subject_chunk in _chunks(subjects):
        for hash_chunk in _chunks(hashes):
            found.update(
                (subject, sha)
                for subject, sha in session.execute(
                    select(Subject.external_id, Face.image_sha256)
                    .join(Face, Face.subject_id == Subject.id)
                    .where(
                        Subject.collection_id == collection_id,
                        Subject.external_id.in_(subject_chunk),
                        Face.model_name == model_name,
                        Face.image_sha256.in_(hash_chunk),
                    )
                )
            )
    return found & set(keys)


def _ensure_subjects(
    session: Session,
    collection_id: int,
    external_ids: Iterable[str],
    names: Mapping[str, str | None],
    now: datetime,
) -> tuple[dict[str, int], set[str]]:
    """Row ids of the named subjects, creating the missing ones: ``get_or_create_subject`` in bulk."""
    wanted = list(dict.fromkeys(external_ids))
    ids = _subject_ids(session, collection_id, wanted)
    missing = [external_id for external_id in wanted if external_id not in ids]
    if missing:
        insert_many(
            session,
            _table(Subject),
            {"external_id": missing, "name": [names.get(external_id) for external_id in missing]},
            {"collection_id": collection_id, "metadata_json": {}, "created_at": now, "updated_at": now},
        )
        ids.update(_subject_ids(session, collection_id, missing))
    return ids, set(missing)


def _insert_faces(
    session: Session, columns: Mapping[str, Sequence[Any]], constants: Mapping[str, Any], before: int
) -> list[int]:
    """Insert the rows of one collection and model; their new ids, in the order of the rows.

    A plain executemany, the drivers' fast path (RETURNING makes psycopg parse
    one huge statement per page). A sequence only goes up, and under the
    change-log lock no other writer adds faces: the new ids are the ones
    above ``before``, the largest id before, in the order the rows went in.
    Read from the (collection, model, id) index alone, not the rows.
    """
    insert_many(session, _table(Face), columns, constants)
    new_ids = list(
        session.scalars(
            select(Face.id)
            .where(
                Face.collection_id == constants["collection_id"],
                Face.model_name == constants["model_name"],
                Face.id > before,
            )
            .order_by(Face.id)
        )
    )
    count = len(columns["subject_id"])
    if len(new_ids) != count:
        raise RuntimeError(f"{count} faces inserted, {len(new_ids)} found: another writer added faces")
    return new_ids


def _subject_ids(session: Session, collection_id: int, external_ids: Sequence[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in _chunks(external_ids):
        found = session.execute(
            select(Subject.external_id, Subject.id).where(
                Subject.collection_id == collection_id, Subject.external_id.in_(chunk)
            )
        )
        ids.update((external_id, subject_id) for external_id, subject_id in found)
    return ids


def _stored_ids(
    session: Session, model_name: str, subject_ids: Iterable[int], hashes: Iterable[str]
) -> dict[tuple[int, str], int]:
    """Ids of the stored templates of these subjects and images for the model, by (subject, sha256)."""
    found: dict[tuple[int, str], int] = {}
    subjects, images = sorted(set(subject_ids)), sorted(set(hashes))
    if not subjects:
        return found
    for subject_chunk in _chunks(subjects):
        for hash_chunk in _chunks(images):
            rows = session.execute(
                select(Face.subject_id, Face.image_sha256, Face.id).where(
                    Face.subject_id.in_(subject_chunk),
                    Face.image_sha256.in_(hash_chunk),
                    Face.model_name == model_name,
                )
            )
            found.update(((subject_id, sha), face_id) for subject_id, sha, face_id in rows)
    return found


def _face_columns(
    templates: Sequence[NewTemplate], blobs: Sequence[bytes], subject_ids: Sequence[int]
) -> dict[str, list[Any]]:
    """The ``faces`` columns ``add_face`` writes that differ from template to template.

    The batch's collection, model and time are the same in every row.
    """
    crops = [t.crop for t in templates]
    return {
        "public_id": new_public_ids(len(templates)),
        "subject_id": list(subject_ids),
        "embedding": list(blobs),
        "embedding_dim": [len(data) // 4 for data in blobs],
        "box_x1": [t.box[0] for t in templates],
        "box_y1": [t.box[1] for t in templates],
        "box_x2": [t.box[2] for t in templates],
        "box_y2": [t.box[3] for t in templates],
        "det_score": [t.det_score for t in templates],
        "quality": [t.quality for t in templates],
        "quality_json": [t.quality_json or {} for t in templates],
        "image_sha256": [t.image_sha256 for t in templates],
        "crop": [None if crop is None else crop.png for crop in crops],
        "crop_kind": [None if crop is None else "source" for crop in crops],
        "crop_landmarks": [None if crop is None else crop.landmarks for crop in crops],
        "crop_box": [None if crop is None else crop.box for crop in crops],
    }


def _embeddings_to_bytes(embeddings: Sequence[npt.ArrayLike]) -> list[bytes]:
    """``embedding_to_bytes`` of each, in one array operation when they are all 1-D of one size (a batch)."""
    try:
        stacked = np.asarray(embeddings, dtype=np.float32)  # (N, D)
    except (TypeError, ValueError):  # not one size: each is checked (and refused) on its own
        stacked = None
    if stacked is None or stacked.ndim != 2 or stacked.shape[1] == 0:
        return [embedding_to_bytes(embedding) for embedding in embeddings]
    data = embedding_to_bytes(stacked.reshape(-1))  # refuses NaN or inf in any of them
    size = len(data) // len(embeddings)
    return [data[start : start + size] for start in range(0, len(data), size)]


def _table(model: type[Face] | type[Subject]) -> Table:
    table: Table = model.__table__  # type: ignore[assignment]
    return table


def _chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]
