"""API keys: who a request's key names, the first admin key, and key management.

Keys are stored hashed (``app.db.keys``). ``FACEREC_ADMIN_KEY``, when set,
is an admin key checked in memory (compared in constant time) in addition
to the stored keys. Auth is off only with an explicit
``FACEREC_AUTH_ENABLED=false``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.errors import ApiKeyNotFound, CollectionNotFound, Unauthorized, ValidationFailed
from app.core.logging import log_event
from app.core.settings import Settings
from app.db.audit import SYSTEM_ACTOR, write_audit
from app.db.base import utcnow
from app.db.collections import get_collection
from app.db.keys import (
    create_api_key,
    get_api_key,
    key_collection_ids,
    key_collection_names,
    list_api_keys,
    lookup_api_key,
    mark_api_key_used,
    revoke_api_key,
)
from app.db.models import ApiKey, ApiKeyRole
from app.db.session import begin_write
from app.schemas.keys import ApiKeyCreated, ApiKeyPublic

logger = logging.getLogger(__name__)

FIRST_ADMIN_KEY_NAME = "first admin key"
# Where keys travel; named here because the refusal tells the caller.
API_KEY_HEADER = "X-API-Key"
# A key's last_used_at is refreshed at most this often, so reads do not each become a write.
LAST_USED_INTERVAL = timedelta(minutes=1)

Role = Literal["client", "admin"]


@dataclass(frozen=True)
class Principal:
    role: Role
    actor: str  # what the audit log records: a key's display prefix, "env-admin-key" or "anonymous"
    # The collections (by row id) a scoped client key may reach; None: every collection.
    collections: frozenset[int] | None = None

    def reaches(self, collection_id: int) -> bool:
        return self.collections is None or collection_id in self.collections


class AuthContext(Protocol):
    """What authentication needs from the running service."""

    settings: Settings
    session_factory: Callable[[], Session]


def authenticate(context: AuthContext, plaintext: str | None) -> Principal:
    settings = context.settings
    if not settings.auth_enabled:
        return Principal("admin", "anonymous")
    if not plaintext:
        raise Unauthorized(f"send an API key in the {API_KEY_HEADER} header")
    if settings.admin_key is not None and _same_secret(plaintext, settings.admin_key.get_secret_value()):
        return Principal("admin", "env-admin-key")
    with context.session_factory() as session:
        key = lookup_api_key(session, plaintext)
        if key is None:
            raise Unauthorized("the API key is not valid (unknown or revoked)")
        scope = key_collection_ids(session, key.id) if key.scoped else None
        principal = Principal("admin" if key.role == "admin" else "client", key.prefix, scope)
        stale = key.last_used_at is None or utcnow() - key.last_used_at >= LAST_USED_INTERVAL
        key_id = key.id
    if stale:
        _record_use(context, key_id)
    return principal


def _same_secret(given: str, expected: str) -> bool:
    # Digests have equal length, so the comparison time says nothing about the key.
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def _record_use(context: AuthContext, key_id: int) -> None:
    """Best effort, at most once a minute per key: a busy database must not fail the request."""
    try:
        with context.session_factory() as session:
            begin_write(session)
            key = get_api_key(session, key_id)
            if key is not None and mark_api_key_used(session, key, LAST_USED_INTERVAL):
                session.commit()
    except SQLAlchemyError as error:
        log_event(logger, "api_key.mark_used_failed", logging.DEBUG, error=type(error).__name__)


def ensure_first_admin_key(session: Session, settings: Settings) -> str | None:
    """On a key table that has never held a key, create an admin key; returns its plaintext.

    Nothing is created when ``FACEREC_ADMIN_KEY`` provides the admin key or
    auth is off. Call in a write transaction (``begin_write``).
    """
    if settings.admin_key is not None or not settings.auth_enabled:
        return None
    if list_api_keys(session, include_revoked=True):
        return None
    key, plaintext = create_api_key(session, "admin", FIRST_ADMIN_KEY_NAME)
    write_audit(session, SYSTEM_ACTOR, "api_key.create", key.prefix, {"role": "admin"})
    return plaintext


def create_key(
    session: Session, role: ApiKeyRole, name: str, actor: str, collections: list[str] | None = None
) -> ApiKeyCreated:
    """A new key; the response is the only place its plaintext ever appears.

    ``collections``: the only collections a client key may reach (None: every one).
    """
    begin_write(session)
    if role not in ("client", "admin"):
        raise ValidationFailed(f"role must be client or admin, not {role!r}", {"role": role})
    if collections is not None and role == "admin":
        raise ValidationFailed("an admin key reaches every collection; only client keys take a list")
    scope = None if collections is None else _collection_ids(session, collections)
    key, plaintext = create_api_key(session, role, name, scope)
    write_audit(
        session,
        actor,
        "api_key.create",
        key.prefix,
        {
            "role": role,
            "name": name,
            "collections": None if collections is None else sorted(set(collections)),
        },
    )
    log_event(logger, "api_key.created", prefix=key.prefix, role=role, actor=actor, scoped=key.scoped)
    return ApiKeyCreated(**key_public(session, key).model_dump(), key=plaintext)


def _collection_ids(session: Session, names: list[str]) -> list[int]:
    ids = []
    for name in sorted(set(names)):
        collection = get_collection(session, name)
        if collection is None:
            raise CollectionNotFound(f"no collection {name!r}", {"collection_id": name})
        ids.append(collection.id)
    return ids


def list_keys(session: Session, include_revoked: bool = False) -> list[ApiKeyPublic]:
    keys = list_api_keys(session, include_revoked=include_revoked)
    scopes = key_collection_names(session, [key.id for key in keys if key.scoped])
    return [_public(key, scopes.get(key.id, []) if key.scoped else None) for key in keys]


def revoke_key(session: Session, prefix: str, actor: str) -> ApiKeyPublic:
    """Revoke the one active key whose display prefix starts with ``prefix``."""
    begin_write(session)
    matches = [key for key in list_api_keys(session) if key.prefix.startswith(prefix)] if prefix else []
    if not matches:
        raise ApiKeyNotFound(f"no active API key with prefix {prefix!r}", {"prefix": prefix})
    if len(matches) > 1:
        raise ValidationFailed(
            f"{len(matches)} keys start with {prefix!r}; give more of the prefix",
            {"prefix": prefix, "matches": [key.prefix for key in matches]},
        )
    key = matches[0]
    revoke_api_key(session, key)
    write_audit(session, actor, "api_key.revoke", key.prefix, {"role": key.role})
    log_event(logger, "api_key.revoked", prefix=key.prefix, actor=actor)
    return key_public(session, key)


def key_public(session: Session, key: ApiKey) -> ApiKeyPublic:
    scope = key_collection_names(session, [key.id]).get(key.id, []) if key.scoped else None
    return _public(key, scope)


def _public(key: ApiKey, collections: list[str] | None) -> ApiKeyPublic:
    public = ApiKeyPublic.model_validate(key, from_attributes=True)
    return public.model_copy(update={"collections": collections})
