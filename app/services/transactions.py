"""Work that must wait until the request's transaction has committed."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from app.core.logging import log_event
from app.db.changes import lock_change_log
from app.db.session import begin_write

logger = logging.getLogger(__name__)

_KEY = "after_commit"


def begin_gallery_write(session: Session) -> None:
    """Start a transaction that changes subjects or their templates; call before reading them.

    Takes the write lock (SQLite) and the change-log lock (PostgreSQL) first,
    so the subject read next cannot be deleted by a concurrent request before
    this one commits: without it an enrolment could add a face to a subject
    another request has just removed.
    """
    begin_write(session)
    lock_change_log(session)


def after_commit(session: Session, callback: Callable[[], object]) -> None:
    """Run ``callback`` once the session's transaction commits; dropped on rollback."""
    callbacks: list[Callable[[], object]] = session.info.setdefault(_KEY, [])
    if callback not in callbacks:
        callbacks.append(callback)


def run_after_commit(session: Session) -> None:
    """Called by the request's session dependency after its commit.

    A failure here cannot undo the commit, so it is logged, not raised: the
    index follower's next poll does the same work.
    """
    for callback in session.info.pop(_KEY, []):
        try:
            callback()
        except Exception as error:
            log_event(logger, "after_commit_failed", logging.WARNING, error=type(error).__name__)


def discard_after_commit(session: Session) -> None:
    session.info.pop(_KEY, None)
