"""API keys: the first admin key, and key management for the CLI and the admin API."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from app.core.errors import ApiKeyNotFound, ValidationFailed
from app.core.logging import log_event
from app.core.settings import Settings
from app.db.audit import write_audit
from app.db.keys import create_api_key, list_api_keys, revoke_api_key
from app.db.models import ApiKey, ApiKeyRole
from app.db.session import begin_write

logger = logging.getLogger(__name__)

FIRST_ADMIN_KEY_NAME = "first admin key"


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
    write_audit(session, "system", "api_key.create", key.prefix, {"role": "admin"})
    return plaintext


def create_key(session: Session, role: ApiKeyRole, name: str, actor: str) -> tuple[ApiKey, str]:
    begin_write(session)
    if role not in ("client", "admin"):
        raise ValidationFailed(f"role must be client or admin, not {role!r}", {"role": role})
    key, plaintext = create_api_key(session, role, name)
    write_audit(session, actor, "api_key.create", key.prefix, {"role": role, "name": name})
    log_event(logger, "api_key.created", prefix=key.prefix, role=role, actor=actor)
    return key, plaintext


def list_keys(session: Session, include_revoked: bool = False) -> list[ApiKey]:
    return list_api_keys(session, include_revoked=include_revoked)


def revoke_key(session: Session, prefix: str, actor: str) -> ApiKey:
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
    return key
