"""Collections: named galleries, each pinned to the embedding model its templates come from."""

from __future__ import annotations

from collections.abc import Collection as Ids
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.changes import lock_change_log, record_drop
from app.db.models import (
    DEFAULT_COLLECTION,
    ApiKeyCollection,
    Collection,
    Evaluation,
    Face,
    Job,
    Report,
    Setting,
    Subject,
)
from app.db.unset import UNSET, Unset


def get_collection(session: Session, external_id: str) -> Collection | None:
    return session.scalar(select(Collection).where(Collection.external_id == external_id))


def get_collection_by_id(session: Session, collection_id: int) -> Collection | None:
    return session.get(Collection, collection_id)


def ensure_default_collection(session: Session, model_name: str) -> Collection:
    """The default collection, created when missing; an empty one follows the embedder now running.

    Call in a write transaction. The migration pins ``default`` to the model
    of its templates; with none yet, it is pinned to ``model_name``.
    """
    collection = get_collection(session, DEFAULT_COLLECTION)
    if collection is None:
        created = create_collection(session, DEFAULT_COLLECTION, model_name=model_name)
        collection = created if created is not None else get_collection(session, DEFAULT_COLLECTION)
        assert collection is not None  # created here, or by another worker just now
    elif (
        collection.model_name != model_name
        and not collection_counts(session, [collection.id])[collection.id][1]
    ):
        collection.model_name = model_name
        session.flush()
    return collection


def create_collection(
    session: Session,
    external_id: str,
    *,
    model_name: str,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Collection | None:
    """A new collection, or None when one with this id exists (also when another request just made it)."""
    collection = Collection(
        external_id=external_id, name=name, metadata_json=metadata or {}, model_name=model_name
    )
    try:
        # A savepoint, so losing a race with a concurrent create keeps the transaction usable.
        with session.begin_nested():
            session.add(collection)
    except IntegrityError:
        return None
    return collection


def list_collections(
    session: Session, limit: int = 50, after_id: int | None = None, only: Ids[int] | None = None
) -> tuple[list[Collection], int]:
    """A page in id order after the cursor ``after_id``, and the total; ``only`` limits both to those ids."""
    query = select(Collection).order_by(Collection.id).limit(limit)
    total = select(func.count()).select_from(Collection)
    if only is not None:
        query = query.where(Collection.id.in_(only))
        total = total.where(Collection.id.in_(only))
    if after_id is not None:
        query = query.where(Collection.id > after_id)
    return list(session.scalars(query)), session.scalar(total) or 0


def all_collections(session: Session) -> list[Collection]:
    """Every collection, in id order (there are at most ``max_collections``)."""
    return list(session.scalars(select(Collection).order_by(Collection.id)))


def collection_models(session: Session, collection_ids: Ids[int]) -> dict[int, str]:
    """The embedder of each named collection that still exists."""
    query = select(Collection.id, Collection.model_name).where(Collection.id.in_(set(collection_ids)))
    return {cid: model for cid, model in session.execute(query)}


def collection_labels(session: Session, limit: int) -> dict[int, str]:
    """The external ids of the ``limit`` oldest collections, by row id (stable as others come and go)."""
    query = select(Collection.id, Collection.external_id).order_by(Collection.id).limit(limit)
    return {cid: external_id for cid, external_id in session.execute(query)}


def subjects_by_collection(session: Session) -> dict[int, int]:
    query = select(Subject.collection_id, func.count()).group_by(Subject.collection_id)
    return {cid: int(count) for cid, count in session.execute(query)}


def count_collections(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Collection)) or 0


def update_collection(
    session: Session,
    collection: Collection,
    *,
    name: str | None | Unset = UNSET,
    metadata: dict[str, Any] | Unset = UNSET,
    model_name: str | Unset = UNSET,
) -> Collection:
    if name is not UNSET:
        collection.name = name
    if metadata is not UNSET:
        collection.metadata_json = metadata
    if model_name is not UNSET:
        collection.model_name = model_name
    session.flush()
    return collection


def collection_counts(session: Session, collection_ids: Ids[int]) -> dict[int, tuple[int, int]]:
    """(subjects, templates) per collection, zeros included."""
    wanted = set(collection_ids)
    counts = dict.fromkeys(wanted, (0, 0))
    if not wanted:
        return counts
    subjects = dict(
        session.execute(
            select(Subject.collection_id, func.count())
            .where(Subject.collection_id.in_(wanted))
            .group_by(Subject.collection_id)
        ).all()
    )
    faces = dict(
        session.execute(
            select(Face.collection_id, func.count())
            .where(Face.collection_id.in_(wanted))
            .group_by(Face.collection_id)
        ).all()
    )
    return {cid: (int(subjects.get(cid, 0)), int(faces.get(cid, 0))) for cid in wanted}


def delete_collection(session: Session, collection: Collection) -> int:
    """Delete the collection and everything it holds; returns how many templates went with it.

    Each table is emptied explicitly rather than by ON DELETE CASCADE alone,
    so nothing is left behind whatever the backend's foreign-key settings.
    One ``drop`` change tells every worker to drop the collection's index.
    """
    lock_change_log(session)
    cid = collection.id
    templates = session.scalar(select(func.count()).select_from(Face).where(Face.collection_id == cid)) or 0
    record_drop(session, cid)
    for table in (Face, Subject, Setting, Report, Evaluation, Job, ApiKeyCollection):
        session.execute(delete(table).where(table.collection_id == cid))
    session.delete(collection)
    session.flush()
    return int(templates)
