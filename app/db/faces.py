"""Face templates: every insert and delete also writes the change log, in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.changes import lock_change_log, record_changes
from app.db.embeddings import embedding_to_bytes
from app.db.models import Face, Subject

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class EmbeddingBatch:
    """Rows ready for ``FaceIndex.add``."""

    face_ids: npt.NDArray[np.int64]  # (N,)
    subject_ids: npt.NDArray[np.int64]  # (N,)
    vectors: npt.NDArray[np.float32]  # (N, D)


@dataclass(frozen=True)
class StoredCrop:
    """The region of the photo a template was cut from: lossless PNG, with landmarks and box in its pixels."""

    png: bytes
    landmarks: list[list[float]]  # 5 x [x, y]
    box: list[float]  # [x1, y1, x2, y2]


def add_face(
    session: Session,
    subject: Subject,
    embedding: npt.ArrayLike,
    *,
    model_name: str,
    model_version: str,
    box: Box,
    det_score: float,
    quality: float,
    image_sha256: str,
    quality_json: dict[str, Any] | None = None,
    crop: StoredCrop | None = None,
) -> tuple[Face, bool]:
    """Store a template: the face and True, or the subject's template from the same image and model and False.

    The same image bytes enrolled twice for one subject and model are one template.
    """
    data = embedding_to_bytes(embedding)
    lock_change_log(session)
    duplicate = session.scalar(
        select(Face).where(
            Face.subject_id == subject.id,
            Face.image_sha256 == image_sha256,
            Face.model_name == model_name,
        )
    )
    if duplicate is not None:
        return duplicate, False
    x1, y1, x2, y2 = box
    face = Face(
        subject=subject,
        collection_id=subject.collection_id,
        embedding=data,
        embedding_dim=len(data) // 4,
        model_name=model_name,
        model_version=model_version,
        box_x1=x1,
        box_y1=y1,
        box_x2=x2,
        box_y2=y2,
        det_score=det_score,
        quality=quality,
        quality_json=quality_json or {},
        image_sha256=image_sha256,
        crop=None if crop is None else crop.png,
        crop_kind=None if crop is None else "source",
        crop_landmarks=None if crop is None else crop.landmarks,
        crop_box=None if crop is None else crop.box,
    )
    session.add(face)
    session.flush()
    record_changes(session, "add", subject.collection_id, [(face.id, subject.id)])
    return face, True


def get_face_by_public_id(session: Session, collection_id: int, public_id: str) -> Face | None:
    """The collection's template with this id; another collection's is not found."""
    return session.scalar(
        select(Face).where(Face.collection_id == collection_id, Face.public_id == public_id)
    )


@dataclass(frozen=True)
class FaceLabel:
    """What a search result shows of a stored template: its public id and its subject's."""

    public_id: str
    subject_external_id: str
    subject_name: str | None


def face_labels(session: Session, face_ids: Iterable[int]) -> dict[int, FaceLabel]:
    """Labels of faces by internal id, in one query of four columns; ids no longer stored are absent.

    Read on every /identify for its few candidates: columns, not ORM objects,
    which cost several times the query itself to build.
    """
    ids = list(face_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(Face.id, Face.public_id, Subject.external_id, Subject.name)
        .join(Subject, Face.subject_id == Subject.id)
        .where(Face.id.in_(ids))
    )
    return {face_id: FaceLabel(public_id, subject, name) for face_id, public_id, subject, name in rows}


def list_faces(session: Session, subject_id: int) -> list[Face]:
    return list(session.scalars(select(Face).where(Face.subject_id == subject_id).order_by(Face.id)))


def delete_face(session: Session, face: Face) -> None:
    lock_change_log(session)
    record_changes(session, "remove", face.collection_id, [(face.id, face.subject_id)])
    session.delete(face)
    session.flush()


def count_faces(session: Session, collection_id: int | None = None, model_name: str | None = None) -> int:
    """Templates of one collection (or all), of one model (or any)."""
    query = select(func.count()).select_from(Face)
    if collection_id is not None:
        query = query.where(Face.collection_id == collection_id)
    if model_name is not None:
        query = query.where(Face.model_name == model_name)
    return session.scalar(query) or 0


def iter_embedding_batches(
    session: Session, collection_id: int, model_name: str, batch_size: int = 4096
) -> Iterator[EmbeddingBatch]:
    """A collection's templates of one model in id order, a batch at a time, for index rebuilds.

    Read ``current_change_seq`` first, in the same transaction: on PostgreSQL
    each batch may also see later commits, so replaying the changes after
    that seq must be idempotent (remove an id before adding it).
    """
    last_id = 0
    while True:
        rows = session.execute(
            select(Face.id, Face.subject_id, Face.embedding, Face.embedding_dim)
            .where(Face.collection_id == collection_id, Face.model_name == model_name, Face.id > last_id)
            .order_by(Face.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        yield _to_batch(rows)
        last_id = rows[-1].id


def iter_embeddings(
    session: Session, collection_id: int, model_name: str, batch_size: int = 4096
) -> Iterator[tuple[int, int, npt.NDArray[np.float32]]]:
    """``(face_id, subject_id, embedding)`` one at a time; see ``iter_embedding_batches``."""
    for batch in iter_embedding_batches(session, collection_id, model_name, batch_size):
        for face_id, subject_id, vector in zip(batch.face_ids, batch.subject_ids, batch.vectors, strict=True):
            yield int(face_id), int(subject_id), vector


def load_embeddings(session: Session, face_ids: Iterable[int], model_name: str) -> EmbeddingBatch | None:
    """The named faces that still exist for ``model_name``: what a follower adds for 'add' changes."""
    wanted = sorted(set(face_ids))
    if not wanted:
        return None
    rows = session.execute(
        select(Face.id, Face.subject_id, Face.embedding, Face.embedding_dim)
        .where(Face.model_name == model_name, Face.id.in_(wanted))
        .order_by(Face.id)
    ).all()
    return _to_batch(rows) if rows else None


def _to_batch(rows: Sequence[tuple[int, int, bytes, int]]) -> EmbeddingBatch:
    """Rows of ``(id, subject_id, embedding, embedding_dim)`` as arrays."""
    dims = {dim for _, _, _, dim in rows}
    if len(dims) != 1:
        raise ValueError(f"one model's embeddings have different sizes: {sorted(dims)}")
    dim = dims.pop()
    vectors = np.frombuffer(b"".join(blob for _, _, blob, _ in rows), dtype="<f4").reshape(len(rows), dim)
    return EmbeddingBatch(
        face_ids=np.fromiter((face_id for face_id, _, _, _ in rows), dtype=np.int64, count=len(rows)),
        subject_ids=np.fromiter(
            (subject_id for _, subject_id, _, _ in rows), dtype=np.int64, count=len(rows)
        ),
        vectors=vectors.astype(np.float32),
    )
