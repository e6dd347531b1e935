"""Keeping this process's FAISS index in step with the database.

The database is the truth; its change log orders every template added or
removed. At start the index comes from a snapshot taken at the database's
current change seq, or is rebuilt from the templates; afterwards a thread
replays the log every ``interval`` seconds, so every worker follows changes
made by any other within a second. A request that writes replays right
after its commit (``catch_up``) so its own worker answers with the change
at once, and a search excludes faces removed since the last replay.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.logging import log_event
from app.core.settings import Settings
from app.db.changes import changes_since, current_change_seq
from app.db.faces import iter_embedding_batches, load_embeddings
from app.index import FaceIndex, apply_changes
from app.pipeline.similarity import Metric

logger = logging.getLogger(__name__)

# Changes read per query while catching up, so a long backlog is not one huge result.
REPLAY_BATCH = 5_000


def snapshot_path(settings: Settings, database_url: str, model_name: str) -> Path:
    """Per model, index kind and database: a snapshot never meets another database's change seq."""
    database = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return Path(settings.data_dir) / "index" / f"{model_name}-{settings.index_kind}-{database}.npz"


class IndexFollower:
    """Owns the index of one embedding model and replays the change log onto it."""

    def __init__(
        self,
        index: FaceIndex,
        session_factory: Callable[[], Session],
        model_name: str,
        snapshot: Path,
        *,
        interval: float = 0.3,
        snapshot_interval: float = 300.0,
    ) -> None:
        self.index = index
        self.model_name = model_name
        self.snapshot = snapshot
        self._session_factory = session_factory
        self._interval = interval
        self._snapshot_interval = snapshot_interval
        self._replay_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved_seq = -1
        self.last_synced_at: float | None = None

    @classmethod
    def open(
        cls,
        session_factory: Callable[[], Session],
        *,
        settings: Settings,
        database_url: str,
        model_name: str,
        dim: int,
        metric: Metric,
    ) -> IndexFollower:
        """Load the snapshot if it is at the database's change seq, else rebuild; then catch up."""
        path = snapshot_path(settings, database_url, model_name)
        started = time.perf_counter()
        with session_factory() as session:
            database_seq = current_change_seq(session)
        index = FaceIndex.load(path, dim, metric, settings.index_kind, use_gpu=settings.index_use_gpu)
        source = "snapshot"
        if index is None or index.applied_seq != database_seq:
            source = "database"
            index = _rebuild(session_factory, model_name, dim, metric, settings)
        follower = cls(
            index,
            session_factory,
            model_name,
            path,
            interval=settings.index_sync_interval_s,
            snapshot_interval=settings.index_snapshot_interval_s,
        )
        if source == "snapshot":
            follower._saved_seq = index.applied_seq
        follower.catch_up()
        log_event(
            logger,
            "index.opened",
            source=source,
            templates=index.ntotal,
            applied_seq=index.applied_seq,
            kind=index.kind,
            gpu=index.on_gpu,
            seconds=round(time.perf_counter() - started, 3),
        )
        return follower

    # ----- following the database ----------------------------------------

    def catch_up(self) -> int:
        """Replay every change after ``applied_seq``; returns the new seq. Safe from any thread."""
        with self._replay_lock, self._session_factory() as session:
            while True:
                changes = changes_since(session, self.index.applied_seq, limit=REPLAY_BATCH)
                if not changes:
                    break
                added = [change.face_id for change in changes if change.op == "add"]
                batch = load_embeddings(session, added, self.model_name)
                vectors = (
                    {} if batch is None else dict(zip(batch.face_ids.tolist(), batch.vectors, strict=True))
                )
                apply_changes(
                    self.index,
                    [
                        (
                            change.seq,
                            change.op,
                            change.face_id,
                            change.subject_id,
                            vectors.get(change.face_id),
                        )
                        for change in changes
                    ],
                )
                if len(changes) < REPLAY_BATCH:
                    break
            self.last_synced_at = time.monotonic()
            return self.index.applied_seq

    def removed_since_sync(self, session: Session) -> set[int]:
        """Faces removed after ``applied_seq``: what a search must not return yet."""
        return {
            change.face_id
            for change in changes_since(session, self.index.applied_seq)
            if change.op == "remove"
        }

    def seconds_since_sync(self) -> float | None:
        return None if self.last_synced_at is None else time.monotonic() - self.last_synced_at

    # ----- the background thread -----------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="index-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following and leave a snapshot for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.save_snapshot()

    def save_snapshot(self) -> None:
        seq = self.index.applied_seq
        if seq == self._saved_seq:
            return
        try:
            self.index.save(self.snapshot)
        except OSError as error:
            log_event(logger, "index.snapshot_failed", logging.WARNING, path=self.snapshot, error=error)
            return
        self._saved_seq = seq
        log_event(logger, "index.snapshot_saved", applied_seq=seq, templates=self.index.ntotal)

    def _run(self) -> None:
        last_snapshot = time.monotonic()
        failing = False
        while not self._stop.wait(self._interval):
            try:
                self.catch_up()
            except SQLAlchemyError as error:
                # The database is away: keep serving the index as it is and retry.
                if not failing:
                    log_event(logger, "index.sync_failed", logging.WARNING, error=type(error).__name__)
                failing = True
                continue
            if failing:
                log_event(logger, "index.sync_recovered", applied_seq=self.index.applied_seq)
                failing = False
            if time.monotonic() - last_snapshot >= self._snapshot_interval:
                self.save_snapshot()
                last_snapshot = time.monotonic()


def _rebuild(
    session_factory: Callable[[], Session], model_name: str, dim: int, metric: Metric, settings: Settings
) -> FaceIndex:
    """Every template of the model, read in one transaction after its change seq.

    See ``iter_embedding_batches``: the caller replays the changes after that seq.
    """
    index = FaceIndex(dim, metric, settings.index_kind, use_gpu=settings.index_use_gpu)
    with session_factory() as session:
        seq = current_change_seq(session)
        for batch in iter_embedding_batches(session, model_name):
            index.add(batch.face_ids, batch.subject_ids, batch.vectors)
    index.applied_seq = seq
    return index
