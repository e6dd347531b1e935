"""API-key authentication and roles.

Keys travel in ``X-API-Key`` and are stored hashed (``app.db.keys``). A
missing or unknown key is a 401, a key without the role a 403. ``admin``
holds every ``client`` right. ``FACEREC_ADMIN_KEY``, when set, is an admin
key checked in memory (compared in constant time) in addition to the stored
keys. Auth is off only with an explicit ``FACEREC_AUTH_ENABLED=false``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from fastapi import Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.errors import Forbidden, Unauthorized
from app.core.logging import log_event
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.keys import get_api_key, lookup_api_key, mark_api_key_used
from app.db.session import begin_write

logger = logging.getLogger(__name__)

Role = Literal["client", "admin"]
_RANK: dict[str, int] = {"client": 1, "admin": 2}

API_KEY_HEADER = "X-API-Key"
# A key's last_used_at is refreshed at most this often, so reads do not each become a write.
LAST_USED_INTERVAL = timedelta(minutes=1)
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="an API key from `facerec keys create`"
)


@dataclass(frozen=True)
class Principal:
    role: Role
    actor: str  # what the audit log records: a key's display prefix, "env-admin-key" or "anonymous"


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
        principal = Principal("admin" if key.role == "admin" else "client", key.prefix)
        stale = key.last_used_at is None or utcnow() - key.last_used_at >= LAST_USED_INTERVAL
        key_id = key.id
    if stale:
        _record_use(context, key_id)
    return principal


def require_role(role: Role) -> Callable[..., Principal]:
    """A dependency that authenticates the request and checks it holds ``role``."""

    def dependency(request: Request, api_key: str | None = Security(api_key_header)) -> Principal:
        principal = authenticate(request.app.state.services, api_key)
        if _RANK[principal.role] < _RANK[role]:
            raise Forbidden(
                f"this endpoint needs the {role} role", {"role": principal.role, "required": role}
            )
        return principal

    return dependency


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
