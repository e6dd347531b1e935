"""Dependencies shared by the routers: the loaded services, the request's transaction, the caller.

FastAPI runs a plain ``def`` dependency in its thread pool, one hand-off per
dependency per request; those that only read the request are ``async def``
and run on the event loop. Authentication and the session stay plain: they
may wait on the database.

Gallery routes exist twice, unprefixed (acting on ``default``) and under
``/collections/{collection_id}``; each router module builds its routes for a
``TargetDependency`` that yields the collection and the caller. No ``from
__future__ import annotations`` here: FastAPI reads the annotations of the
dependencies ``collection_target`` makes, and they name its arguments.
"""

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from app.api.auth import require_role
from app.db.models import DEFAULT_COLLECTION
from app.services.collections import Target
from app.services.container import Services
from app.services.keys import Principal, Role
from app.services.transactions import discard_after_commit, run_after_commit

require_client = require_role("client")
require_admin = require_role("admin")
_REQUIRE: dict[Role, Callable[..., Principal]] = {"client": require_client, "admin": require_admin}

TargetDependency = Callable[..., Awaitable[Target]]
CollectionPath = Annotated[
    str, Path(min_length=1, max_length=255, description="a collection's `collection_id`")
]


def collection_target(role: Role, *, from_path: bool) -> TargetDependency:
    """A dependency naming the request's collection: the path's, or ``default``; the caller needs ``role``."""
    if from_path:

        async def from_route(
            principal: Annotated[Principal, Depends(_REQUIRE[role])], collection_id: CollectionPath
        ) -> Target:
            return Target(collection_id, principal)

        return from_route

    async def default(principal: Annotated[Principal, Depends(_REQUIRE[role])]) -> Target:
        return Target(DEFAULT_COLLECTION, principal)

    return default


async def get_services(request: Request) -> Services:
    return _services(request)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_session(request: Request) -> Iterator[Session]:
    """The request's transaction: committed when the handler returns, rolled back if it raises.

    Used with ``scope="function"`` so the commit happens before the response
    is sent: a client never sees a success the database did not keep. Work
    registered with ``after_commit`` (the index catching up with this
    request's own change) runs right after the commit.
    """
    session = _services(request).session_factory()
    try:
        yield session
        session.commit()
        run_after_commit(session)
    except BaseException:
        session.rollback()
        discard_after_commit(session)
        raise
    finally:
        session.close()


ServicesDep = Annotated[Services, Depends(get_services)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ClientDep = Annotated[Principal, Depends(require_client)]
AdminDep = Annotated[Principal, Depends(require_admin)]
