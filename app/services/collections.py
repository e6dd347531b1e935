"""Collections: create, list, read, rename and delete galleries, and find the one a request names.

A request names its collection by ``collection_id`` (the unprefixed routes
name ``default``). ``find_collection`` answers 404 ``collection_not_found``
both for a collection that does not exist and for one the caller's key may
not reach, so a scoped key learns nothing about the others.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.core.errors import (
    CollectionExists,
    CollectionNotFound,
    CollectionProtected,
    InvalidCollectionId,
    ModelNotFound,
    ModelUnavailable,
    TooManyCollections,
)
from app.core.logging import log_event
from app.db.audit import write_audit
from app.db.collections import (
    collection_counts,
    count_collections,
    create_collection,
    delete_collection,
    get_collection,
    list_collections,
    update_collection,
)
from app.db.models import DEFAULT_COLLECTION, Collection
from app.schemas.collections import (
    COLLECTION_ID_PATTERN,
    CollectionCreate,
    CollectionDeleted,
    CollectionPage,
    CollectionPublic,
    CollectionUpdate,
)
from app.services.container import Services
from app.services.cursors import decode_cursor
from app.services.keys import Principal
from app.services.thresholds import seed_thresholds
from app.services.transactions import after_commit, begin_gallery_write

logger = logging.getLogger(__name__)

_VALID_ID = re.compile(COLLECTION_ID_PATTERN)


@dataclass(frozen=True)
class Target:
    """The collection a request names and who asks: what every gallery use case starts from."""

    collection_id: str
    principal: Principal

    @property
    def actor(self) -> str:
        return self.principal.actor


def find_collection(session: Session, target: Target) -> Collection:
    """The named collection if it exists and the caller may reach it; else 404 for either reason."""
    collection = (
        get_collection(session, target.collection_id) if _VALID_ID.match(target.collection_id) else None
    )
    if collection is None or not target.principal.reaches(collection.id):
        raise CollectionNotFound(
            f"no collection {target.collection_id!r}", {"collection_id": target.collection_id[:64]}
        )
    return collection


def embedding_collection(services: Services, session: Session, target: Target) -> Collection:
    """``find_collection`` for a use case that embeds: the collection's model must be the one loaded."""
    collection = find_collection(session, target)
    if collection.model_name != services.model.name:
        raise ModelUnavailable(
            f"collection {collection.external_id!r} holds {collection.model_name} templates, "
            f"but this service runs {services.model.name}",
            {"collection_id": collection.external_id, "model": collection.model_name},
        )
    return collection


def create(services: Services, session: Session, body: CollectionCreate, actor: str) -> CollectionPublic:
    if not _VALID_ID.match(body.collection_id):
        raise InvalidCollectionId(
            "collection_id must be 1-64 letters, digits, '_', '.' or '-'",
            {"collection_id": body.collection_id[:64], "pattern": COLLECTION_ID_PATTERN},
        )
    model = body.model or services.model.name
    if model != services.model.name:
        # One embedder runs per service for now; its name is the only one installed.
        raise ModelNotFound(
            f"no embedder {model!r} is installed; this service runs {services.model.name}",
            {"model": model, "installed": [services.model.name]},
        )
    # The gallery write lock (SQLite's write lock, PostgreSQL's change-log lock) queues
    # concurrent creates in every worker here, so the limit and the id check hold.
    begin_gallery_write(session)
    if count_collections(session) >= services.settings.max_collections:
        raise TooManyCollections(
            f"this service holds its limit of {services.settings.max_collections} collections",
            {"max_collections": services.settings.max_collections},
        )
    collection = create_collection(
        session, body.collection_id, model_name=model, name=body.name, metadata=body.metadata
    )
    if collection is None:
        raise CollectionExists(
            f"collection {body.collection_id!r} exists", {"collection_id": body.collection_id}
        )
    seed_thresholds(session, collection.id, services.default_thresholds)
    write_audit(
        session,
        actor,
        "collection.create",
        collection.external_id,
        {"model": model},
        collection_id=collection.id,
    )
    log_event(logger, "collection.created", collection=collection.external_id, model=model)
    return collection_public(session, collection)


def page(session: Session, principal: Principal, limit: int, cursor: str | None) -> CollectionPage:
    """The collections the caller may reach, a page at a time."""
    after_id = decode_cursor(cursor)
    collections, total = list_collections(session, limit=limit, after_id=after_id, only=principal.collections)
    counts = collection_counts(session, [c.id for c in collections])
    items = [_public(collection, *counts[collection.id]) for collection in collections]
    next_cursor = str(collections[-1].id) if len(collections) == limit else None
    return CollectionPage(items=items, total=total, next_cursor=next_cursor)


def read(session: Session, target: Target) -> CollectionPublic:
    return collection_public(session, find_collection(session, target))


def patch(session: Session, target: Target, update: CollectionUpdate) -> CollectionPublic:
    begin_gallery_write(session)
    collection = find_collection(session, target)
    update_collection(session, collection, **update.changes())
    write_audit(
        session,
        target.actor,
        "collection.update",
        collection.external_id,
        {"fields": sorted(update.model_fields_set)},
        collection_id=collection.id,
    )
    return collection_public(session, collection)


def remove(services: Services, session: Session, target: Target) -> CollectionDeleted:
    """Delete the collection and all it holds, in this transaction; every worker drops its index."""
    begin_gallery_write(session)
    collection = find_collection(session, target)
    if collection.external_id == DEFAULT_COLLECTION:
        raise CollectionProtected(
            "the default collection cannot be deleted", {"collection_id": DEFAULT_COLLECTION}
        )
    subjects, _ = collection_counts(session, [collection.id])[collection.id]
    templates = delete_collection(session, collection)
    after_commit(session, services.index.catch_up)
    write_audit(
        session,
        target.actor,
        "collection.delete",
        target.collection_id,
        {"subjects": subjects, "templates": templates},
        collection_id=collection.id,
    )
    log_event(logger, "collection.deleted", collection=target.collection_id, templates=templates)
    return CollectionDeleted(
        collection_id=target.collection_id, deleted_subjects=subjects, deleted_templates=templates
    )


def collection_public(session: Session, collection: Collection) -> CollectionPublic:
    return _public(collection, *collection_counts(session, [collection.id])[collection.id])


def _public(collection: Collection, subjects: int, templates: int) -> CollectionPublic:
    return CollectionPublic(
        collection_id=collection.external_id,
        name=collection.name,
        metadata=dict(collection.metadata_json or {}),
        model=collection.model_name,
        subjects=subjects,
        templates=templates,
        created_at=collection.created_at,
    )
