"""Admin: API key management (also available as `facerec keys`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from app.api.deps import AdminDep, SessionDep
from app.api.errors import error_responses
from app.core.errors import ApiKeyNotFound, CollectionNotFound
from app.schemas.keys import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyPublic
from app.services import keys

router = APIRouter(prefix="/admin/keys", tags=["admin"])


@router.get("", summary="Active API keys", responses=error_responses())
def list_keys(caller: AdminDep, session: SessionDep, include_revoked: bool = False) -> ApiKeyList:
    return ApiKeyList(items=keys.list_keys(session, include_revoked))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key; the key is in this response only",
    responses=error_responses(CollectionNotFound),
)
def create_key(caller: AdminDep, body: ApiKeyCreate, session: SessionDep) -> ApiKeyCreated:
    return keys.create_key(session, body.role, body.name, caller.actor, body.collections)


@router.delete("/{prefix}", summary="Revoke an API key", responses=error_responses(ApiKeyNotFound))
def revoke_key(
    prefix: Annotated[str, Path(min_length=4, max_length=16)], session: SessionDep, caller: AdminDep
) -> ApiKeyPublic:
    return keys.revoke_key(session, prefix, caller.actor)
