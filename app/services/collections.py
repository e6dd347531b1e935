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
from pathlib import Path

from sqlalchemy.orm import Session

from app.core.errors import (
    CollectionExists,
    CollectionNotFound,
    CollectionProtected,
    InvalidCollectionId,
    ModelNotFound,
    ModelUncalibrated,
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
from app.model_packs.catalog import installed_models
from app.pipeline.pipelines import Pipelines
from app.schemas.collections import (
    COLLECTION_ID_PATTERN,
    CollectionCreate,
    CollectionDeleted,
    CollectionPage,
    CollectionPublic,
    CollectionUpdate,
    GivenThresholds,
)
from app.services.container import Services
from app.services.cursors import decode_cursor
from app.services.keys import Principal
from app.services.thresholds import (
    IDENTIFY_KEY,
    VERIFY_KEY,
    OperatingThresholds,
    default_thresholds,
    seed_thresholds,
    set_thresholds,
)
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
    """``find_collection`` for a use case that embeds: the collection's model must be installed here."""
    collection = find_collection(session, target)
    services.runner_of(collection.model_name)  # 409 model_unavailable when it is not
    return collection


def create(services: Services, session: Session, body: CollectionCreate, actor: str) -> CollectionPublic:
    if not _VALID_ID.match(body.collection_id):
        raise InvalidCollectionId(
            "collection_id must be 1-64 letters, digits, '_', '.' or '-'",
            {"collection_id": body.collection_id[:64], "pattern": COLLECTION_ID_PATTERN},
        )
    model = body.model or services.model.name
    thresholds = model_thresholds(services.pipelines, model, body.thresholds)
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
    seed_thresholds(session, collection.id, services.thresholds_of(model))
    if body.thresholds is not None:
        set_thresholds(
            session,
            collection.id,
            thresholds,
            {VERIFY_KEY: thresholds.verify, IDENTIFY_KEY: thresholds.identify},
            actor=actor,
            source="given when the collection was created",
        )
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


def model_thresholds(pipelines: Pipelines, model: str, given: GivenThresholds | None) -> OperatingThresholds:
    """The thresholds a collection of ``model`` starts with: ``given``, else the model's calibrated ones.

    422 ``model_not_found`` for a model that is not an installed embedder,
    422 ``model_uncalibrated`` for one without calibrated thresholds when
    none are given: its similarities have no known meaning yet.
    """
    try:
        manifest = pipelines.manifest(model)
    except ModelNotFound as error:
        error.details = {**error.details, "installed": installed_embedders(pipelines.settings.models_dir)}
        raise
    if given is not None:
        return OperatingThresholds(verify=given.verify, identify=given.identify)
    if not manifest.calibrated:
        raise ModelUncalibrated(
            f"model {model!r} has no calibrated thresholds: calibrate it "
            '(`facerec models calibrate`) or give "thresholds": {"verify": ..., "identify": ...}',
            {"model": model},
        )
    return default_thresholds(manifest)


def installed_embedders(models_dir: Path) -> list[str]:
    return [m.name for m in installed_models(models_dir) if m.kind == "embedder"]


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
