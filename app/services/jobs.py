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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.errors import AppError, JobNotFound
from app.core.logging import log_event
from app.db.base import utcnow
from app.db.jobs import get_job, update_tracked
from app.db.models import Evaluation, Job
from app.db.session import begin_write
from app.schemas.admin import JobPublic
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


def job_or_404(session: Session, job_id: str) -> JobPublic:
    """A job's progress as a status request should see it: an abandoned job shows as failed."""
    begin_write(session)
    job = get_job(session, job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id!r}", {"job_id": job_id})
    expire_if_stale(job)
    return job_public(job)


def job_public(job: Job) -> JobPublic:
    return JobPublic.model_validate(job, from_attributes=True)


def start_after_commit(
    session: Session,
    session_factory: Callable[[], Session],
    model: Tracked,
    row_id: str,
    work: Work,
    cleanup: Callable[[], None] | None = None,
) -> None:
    """Run ``work`` in a background thread once the request's transaction (holding the row) commits.

    ``cleanup`` runs before the row is marked done or failed, and again when
    the thread ends whatever happened (the row deleted before the work began,
    a crash): it must be idempotent.
    """
    after_commit(session, lambda: _spawn(_Task(session_factory, model, row_id, work, cleanup)))


@dataclass(frozen=True)
class _Task:
    session_factory: Callable[[], Session]
    model: Tracked
    row_id: str
    work: Work
    cleanup: Callable[[], None] | None

    def clean_up(self) -> None:
        if self.cleanup is not None:
            self.cleanup()

    def update(self, **fields: Any) -> bool:
        with self.session_factory() as session:
            begin_write(session)
            found = update_tracked(session, self.model, self.row_id, **fields)
            session.commit()
        return found


def _spawn(task: _Task) -> None:
    threading.Thread(target=_run, args=(task,), name=f"facerec-{task.row_id}", daemon=True).start()


def _run(task: _Task) -> None:
    try:
        _run_tracked(task)
    except Exception as error:  # a bug, or the database gone; no request is waiting to hear of it
        log_event(logger, "job.crashed", logging.ERROR, id=task.row_id, error=type(error).__name__)
        logger.debug("job %s traceback", task.row_id, exc_info=True)
        task.clean_up()
        try:
            task.update(state="failed", error=f"internal error ({type(error).__name__})")
        except Exception:  # the database itself failed: the row goes stale and reads as failed
            log_event(logger, "job.unrecorded", logging.ERROR, id=task.row_id)
    finally:
        task.clean_up()  # again for the paths that skipped it; clean-ups may run twice


def _run_tracked(task: _Task) -> None:
    started = time.monotonic()
    if not task.update(state="running"):
        return  # deleted before it began
    last_write = 0.0

    def progress(done: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write >= PROGRESS_INTERVAL_S:
            last_write = now
            try:
                task.update(progress=done)
            except SQLAlchemyError as error:  # best effort: a busy database must not fail the work
                log_event(
                    logger,
                    "job.progress_not_saved",
                    logging.DEBUG,
                    id=task.row_id,
                    error=type(error).__name__,
                )

    try:
        fields = task.work(progress)
    except AppError as error:
        task.clean_up()
        task.update(state="failed", error=error.message[:1000])
        log_event(logger, "job.failed", logging.WARNING, id=task.row_id, code=error.code)
        return
    task.clean_up()  # before "done", so whoever sees the end sees the clean-up done
    task.update(state="done", **fields)
    log_event(logger, "job.done", id=task.row_id, seconds=round(time.monotonic() - started, 2))
