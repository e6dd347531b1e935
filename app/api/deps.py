"""Dependencies shared by the routers: the loaded services, the request's transaction, the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.api.auth import require_role
from app.services.container import Services
from app.services.keys import Principal
from app.services.transactions import discard_after_commit, run_after_commit


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_session(request: Request) -> Iterator[Session]:
    """The request's transaction: committed when the handler returns, rolled back if it raises.

    Used with ``scope="function"`` so the commit happens before the response
    is sent: a client never sees a success the database did not keep. Work
    registered with ``after_commit`` (the index catching up with this
    request's own change) runs right after the commit.
    """
    session = get_services(request).session_factory()
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
ClientDep = Annotated[Principal, Depends(require_role("client"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
