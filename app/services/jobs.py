"""Background work (heavy reports, evaluation uploads) in a thread of the worker that got the request.

Progress, state and the result's id are written to the database (``jobs`` or
``evaluations`` rows), so any worker can answer a status request. A worker
that stops mid-job leaves its row "running"; once it has written nothing for
``STALE_AFTER`` it is reported as failed (``expire_if_stale``) and no longer
joined by new requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import AppError
from app.core.logging import log_event
from app.db.base import utcnow
from app.db.models import Evaluation, Job
from app.db.reports import update_tracked
from app.db.session import begin_write
from app.services.transactions import after_commit

logger = logging.getLogger(__name__)

# Progress is written at most this often: each write is a transaction.
PROGRESS_INTERVAL_S = 0.5
# A job silent this long is taken for one whose worker stopped. Every phase of
# a job reports progress far more often than this.
STALE_AFTER = timedelta(minutes=15)

Tracked = type[Job] | type[Evaluation]
ProgressFn = Callable[[int], None]
# The work gets a progress callback and returns the fields to set when it is done.
Work = Callable[[ProgressFn], dict[str, Any]]


def stale_before() -> datetime:
    """Rows last written before this are abandoned."""
    return utcnow() - STALE_AFTER


def expire_if_stale(row: Job | Evaluation) -> None:
    """Mark an abandoned queued/running row failed, in the caller's (write) transaction."""
    if row.state in ("queued", "running") and row.updated_at < stale_before():
        row.state = "failed"
        row.error = "the worker running this job stopped before it finished; start it again"


def start_after_commit(
    session: Session, session_factory: Callable[[], Session], model: Tracked, row_id: str, work: Work
) -> None:
    """Run ``work`` in a background thread once the request's transaction (holding the row) commits."""
    after_commit(session, lambda: _spawn(session_factory, model, row_id, work))


def _spawn(session_factory: Callable[[], Session], model: Tracked, row_id: str, work: Work) -> None:
    thread = threading.Thread(
        target=_run, args=(session_factory, model, row_id, work), name=f"facerec-{row_id}", daemon=True
    )
    thread.start()


def _run(session_factory: Callable[[], Session], model: Tracked, row_id: str, work: Work) -> None:
    started = time.monotonic()
    if not _update(session_factory, model, row_id, state="running"):
        return
    last_write = 0.0

    def progress(done: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write >= PROGRESS_INTERVAL_S:
            last_write = now
            _update(session_factory, model, row_id, progress=done)

    try:
        fields = work(progress)
    except AppError as error:
        _update(session_factory, model, row_id, state="failed", error=error.message[:1000])
        log_event(logger, "job.failed", logging.WARNING, id=row_id, code=error.code)
        return
    except Exception as error:  # a bug: recorded on the row, since no request is waiting for it
        logger.exception("job %s crashed", row_id)
        _update(
            session_factory, model, row_id, state="failed", error=f"internal error ({type(error).__name__})"
        )
        return
    _update(session_factory, model, row_id, state="done", **fields)
    log_event(logger, "job.done", id=row_id, seconds=round(time.monotonic() - started, 2))


def _update(session_factory: Callable[[], Session], model: Tracked, row_id: str, **fields: Any) -> bool:
    with session_factory() as session:
        begin_write(session)
        found = update_tracked(session, model, row_id, **fields)
        session.commit()
    return found
