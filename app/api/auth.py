"""The authentication dependency: the caller's API key, checked for a role.

Keys travel in ``X-API-Key``; ``app.services.keys.authenticate`` looks them
up. A missing or unknown key is a 401, a key without the role a 403.
``admin`` holds every ``client`` right.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from app.core.errors import Forbidden
from app.services.keys import API_KEY_HEADER, Principal, Role, authenticate

_RANK: dict[str, int] = {"client": 1, "admin": 2}

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="an API key from `facerec keys create`"
)


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
