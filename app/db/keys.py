"""API keys: only a sha256 of each key is stored; the plaintext is shown once, at creation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection as Ids
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ApiKey, ApiKeyCollection, ApiKeyRole, Collection

KEY_MARKER = "frk_"
# The marker plus 8 random characters: enough for a person to tell keys apart
# in logs and the audit trail, useless for guessing the rest.
DISPLAY_PREFIX_LENGTH = 12


def hash_api_key(plaintext: str) -> str:
    # A plain hash suffices: keys are 256 random bits, not guessable passwords.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_key(
    session: Session, role: ApiKeyRole, name: str, collection_ids: Ids[int] | None = None
) -> tuple[ApiKey, str]:
    """A new key and its plaintext, which cannot be recovered later.

    ``collection_ids``: the only collections the key may reach (a client
    key's scope); None reaches every collection.
    """
    if role not in ("client", "admin"):
        raise ValueError(f"unknown role {role!r}")
    plaintext = KEY_MARKER + secrets.token_urlsafe(32)
    key = ApiKey(
        prefix=plaintext[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_api_key(plaintext),
        role=role,
        name=name,
        scoped=collection_ids is not None,
    )
    session.add(key)
    session.flush()
    session.add_all(ApiKeyCollection(api_key_id=key.id, collection_id=cid) for cid in collection_ids or ())
    session.flush()
    return key, plaintext


def key_collection_ids(session: Session, key_id: int) -> frozenset[int]:
    """The collections a scoped key may reach (empty once they are all deleted)."""
    query = select(ApiKeyCollection.collection_id).where(ApiKeyCollection.api_key_id == key_id)
    return frozenset(session.scalars(query))


def key_collection_names(session: Session, key_ids: Iterable[int]) -> dict[int, list[str]]:
    """Each key's reachable collections by ``collection_id``, for listings (keys absent: none)."""
    rows = session.execute(
        select(ApiKeyCollection.api_key_id, Collection.external_id)
        .join(Collection, Collection.id == ApiKeyCollection.collection_id)
        .where(ApiKeyCollection.api_key_id.in_(set(key_ids)))
        .order_by(Collection.external_id)
    )
    names: dict[int, list[str]] = {}
    for key_id, external_id in rows:
        names.setdefault(key_id, []).append(external_id)
    return names


def lookup_api_key(session: Session, plaintext: str) -> ApiKey | None:
    """The active (not revoked) key with this plaintext, else ``None``."""
    if not plaintext.startswith(KEY_MARKER):
        return None
    digest = hash_api_key(plaintext)
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    return key


def get_api_key(session: Session, key_id: int) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_api_keys(session: Session, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke_api_key(session: Session, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()


def mark_api_key_used(session: Session, key: ApiKey, min_interval: timedelta = timedelta(minutes=1)) -> bool:
    """Record use at most once per ``min_interval``, so reads do not turn into a write each.

    Returns whether a write was made.
    """
    now: datetime = utcnow()
    if key.last_used_at is not None and now - key.last_used_at < min_interval:
        return False
    key.last_used_at = now
    session.flush()
    return True
