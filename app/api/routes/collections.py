"""Collections: create, list, read, rename and delete galleries.

Creating, changing and deleting needs an admin key; a client key lists and
reads the collections it may reach (another is 404 ``collection_not_found``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from app.api.deps import AdminDep, ClientDep, ServicesDep, SessionDep, collection_target
from app.api.errors import COLLECTION_ERRORS, error_responses
from app.core.errors import (
    CollectionExists,
    CollectionProtected,
    InvalidCollectionId,
    ModelNotFound,
    ModelUncalibrated,
    TooManyCollections,
)
from app.schemas.collections import (
    CollectionCreate,
    CollectionDeleted,
    CollectionPage,
    CollectionPublic,
    CollectionUpdate,
)
from app.services import collections
from app.services.collections import Target

router = APIRouter(prefix="/collections", tags=["collections"])

ClientTarget = Annotated[Target, Depends(collection_target("client", from_path=True))]
AdminTarget = Annotated[Target, Depends(collection_target("admin", from_path=True))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a collection: a gallery with its own subjects, index, thresholds, reports and model",
    responses=error_responses(
        InvalidCollectionId, CollectionExists, ModelNotFound, ModelUncalibrated, TooManyCollections
    ),
)
def create_collection(
    caller: AdminDep, body: CollectionCreate, services: ServicesDep, session: SessionDep
) -> CollectionPublic:
    return collections.create(services, session, body, caller.actor)


@router.get("", summary="The collections this key may use, a page at a time", responses=error_responses())
def list_collections(
    caller: ClientDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page")
    ] = None,
) -> CollectionPage:
    return collections.page(session, caller, limit, cursor)


@router.get(
    "/{collection_id}", summary="A collection with its counts", responses=error_responses(*COLLECTION_ERRORS)
)
def get_collection(gallery: ClientTarget, session: SessionDep) -> CollectionPublic:
    return collections.read(session, gallery)


@router.patch(
    "/{collection_id}",
    summary="Change a collection's name or metadata",
    responses=error_responses(*COLLECTION_ERRORS),
)
def patch_collection(gallery: AdminTarget, update: CollectionUpdate, session: SessionDep) -> CollectionPublic:
    return collections.patch(session, gallery, update)


@router.delete(
    "/{collection_id}",
    summary="Delete a collection and every subject, template and stored crop of it",
    description=(
        "In one transaction; its templates stop matching at once in this worker and within a second in "
        "every other. The `default` collection cannot be deleted (409 `collection_protected`)."
    ),
    responses=error_responses(CollectionProtected, *COLLECTION_ERRORS),
)
def delete_collection(gallery: AdminTarget, services: ServicesDep, session: SessionDep) -> CollectionDeleted:
    return collections.remove(services, session, gallery)
