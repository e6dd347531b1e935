"""The tables.

Integer primary keys never get reused (``sqlite_autoincrement``; PostgreSQL
sequences never go back): a face's id is also its FAISS id, so a reused id
would let a stale vector in some worker's index answer for a different
person, and a collection's id names its index, so a reused one would let a
deleted collection's index answer for a new one.

Everything a gallery holds belongs to a collection: subjects (and their
faces), change-log rows, thresholds, reports, evaluation sets and jobs.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, UtcDateTime, utcnow

ApiKeyRole = Literal["client", "admin"]
# "drop": the whole collection is gone; its index goes with it.
ChangeOp = Literal["add", "remove", "drop", "rebuild"]
DEFAULT_COLLECTION = "default"


def new_public_ids(count: int) -> list[str]:
    """``count`` new ``Face.public_id`` values, 32 lowercase hex digits: Unix ms (48 bits), 80 random bits.

    Time first, so a new id sorts after the ones before it and an insert
    touches the right edge of ``faces.public_id``'s unique index: with
    random ids each template of a bulk write dirtied a page of its own.
    The 80 bits from ``secrets`` keep the id unguessable. Not a UUIDv7
    (its version and variant bits would leave 74 random ones); the same
    shape as the ``uuid4().hex`` ids stored before, which stay valid.
    The time it tells is the face's ``created_at``, public already. A bulk
    write's ids share one time and one read of randomness.
    """
    millis = f"{time.time_ns() // 1_000_000:012x}"
    random_digits = secrets.token_hex(10 * count)
    return [millis + random_digits[start : start + 20] for start in range(0, 20 * count, 20)]


def _new_public_id() -> str:
    return new_public_ids(1)[0]


class Collection(Base):
    """A gallery, named by the client's ``external_id`` (the API's ``collection_id``).

    ``model_name`` is the embedder its templates come from. ``change_seq``
    is the newest change-log seq of this collection: an index that has
    applied it holds every template of the collection.
    """

    __tablename__ = "collections"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_name: Mapped[str] = mapped_column(String(64))
    change_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Subject(Base):
    """A person, named by the client's own ``external_id`` (the API's ``subject_id``) within a collection."""

    __tablename__ = "subjects"
    __table_args__ = (
        UniqueConstraint("collection_id", "external_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Face(Base):
    """One enrolled template: the embedding plus what is needed to audit or rebuild it."""

    __tablename__ = "faces"
    __table_args__ = (
        # The same image bytes enrolled twice for one subject and model are one template.
        UniqueConstraint("subject_id", "image_sha256", "model_name"),
        # Index rebuilds walk one collection's faces of one model in id order.
        Index("ix_faces_collection_id_model_name_id", "collection_id", "model_name", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=_new_public_id)
    # The subject's collection, kept on the face too so an index is rebuilt without a join.
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # little-endian float32
    embedding_dim: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    box_x1: Mapped[float] = mapped_column(Float)
    box_y1: Mapped[float] = mapped_column(Float)
    box_x2: Mapped[float] = mapped_column(Float)
    box_y2: Mapped[float] = mapped_column(Float)
    det_score: Mapped[float] = mapped_column(Float)
    quality: Mapped[float] = mapped_column(Float)
    quality_json: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    image_sha256: Mapped[str] = mapped_column(String(64))
    # The aligned crop (PNG/JPEG), kept unless privacy settings say otherwise so
    # templates can be rebuilt for a new model; deferred so listings skip it.
    crop: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # "source": the region of the photo around the face (every model's crop is cut from it),
    # with ``crop_landmarks`` (5 x [x, y]) and ``crop_box`` ([x1, y1, x2, y2]) in its pixels;
    # "aligned": the model's own aligned crop, from before regions were kept.
    crop_kind: Mapped[str | None] = mapped_column(String(16))
    crop_landmarks: Mapped[list[list[float]] | None] = mapped_column(JSON, deferred=True)
    crop_box: Mapped[list[float] | None] = mapped_column(JSON, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    subject: Mapped[Subject] = relationship()


class Setting(Base):
    """A collection's operating values changed at run time (thresholds), as JSON."""

    __tablename__ = "settings"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    """An API key, stored only as its sha256; ``prefix`` identifies it to people."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('client', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # True: the key reaches only the collections in api_key_collections (none
    # once they are all deleted); False: every collection.
    scoped: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiKeyCollection(Base):
    """One collection a scoped client key may use."""

    __tablename__ = "api_key_collections"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class AuditLog(Base):
    """Who changed what. Never holds images, embeddings or other biometric data."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The collection acted on (no foreign key: the log outlives it); None for service-wide acts.
    collection_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ChangeLog(Base):
    """One row per face added or removed, or per collection dropped, written in the same transaction.

    ``seq`` is the database's change counter: index snapshots record the seq
    they reflect, and workers replay the rows after it, each into its
    collection's index. No foreign keys: the face, or the collection, is
    usually gone by the time its removal is read. A ``drop`` row has no face.
    """

    __tablename__ = "change_log"
    __table_args__ = (
        CheckConstraint("op IN ('add', 'remove', 'drop', 'rebuild')", name="op"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    op: Mapped[str] = mapped_column(String(8))
    collection_id: Mapped[int] = mapped_column(Integer)
    face_id: Mapped[int | None] = mapped_column(Integer)
    subject_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Report(Base):
    """A computed FAR/FRR report (``app.eval.report``'s JSON): the last gallery one, and evaluations'.

    ``gallery_seq`` is the change-log seq the gallery report saw, so a later
    enrolment or deletion marks it stale. Holds scores' summaries only, never
    embeddings or images.
    """

    __tablename__ = "reports"
    __table_args__ = (CheckConstraint("kind IN ('gallery', 'evaluation')", name="kind"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    evaluation_id: Mapped[str | None] = mapped_column(String(32))
    gallery_seq: Mapped[int | None] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Job(Base):
    """A background computation run by one worker; any worker reads its progress from here."""

    __tablename__ = "jobs"
    __table_args__ = (CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The collection the job works on; deleting it deletes the job (its thread then finds no row).
    collection_id: Mapped[int | None] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    result_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(String(1000))
    # What the job works on and what it found (a re-embedding: the target model, faces it could not move).
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class StagedTemplate(Base):
    """A template a re-embedding job computed for the collection's next model, kept until the switch."""

    __tablename__ = "staged_templates"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # little-endian float32
    embedding_dim: Mapped[int] = mapped_column(Integer)


class Evaluation(Base):
    """An uploaded evaluation set: counts and its report only; the images are deleted after the job."""

    __tablename__ = "evaluations"
    __table_args__ = (CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
    no_face: Mapped[int] = mapped_column(Integer, default=0)
    identities: Mapped[int] = mapped_column(Integer, default=0)
    pairs_source: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(1000))
    report_id: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
