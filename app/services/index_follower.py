"""Keeping this process's FAISS indexes, one per collection, in step with the database.

The database is the truth; its change log orders every template added or
removed and every collection dropped. At start each collection's index
comes from its snapshot when no change of that collection came after it,
or is rebuilt from the templates; afterwards a thread replays the log every
``interval`` seconds into each collection's index, so every worker follows
changes made by any other within a second. A request that writes replays
right after its commit (``catch_up``) so its own worker answers with the
change at once, and a search excludes faces removed since the last replay.

Only collections of the loaded embedding model are indexed here; a face of
one collection is never in another's index.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.logging import log_event
from app.core.settings import Settings
from app.db.changes import changes_since, current_change_seq
from app.db.collections import all_collections, collection_models
from app.db.faces import iter_embedding_batches, load_embeddings
from app.db.models import ChangeLog
from app.index import Candidate, FaceIndex, apply_changes
from app.pipeline.similarity import Metric
from app.services.index_snapshots import SnapshotFolder

logger = logging.getLogger(__name__)

# Changes read per query while catching up, so a long backlog is not one huge result.
REPLAY_BATCH = 5_000


class IndexFollower:
    """Owns this process's index of every collection of one embedding model and replays the log onto them."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        settings: Settings,
        snapshots: SnapshotFolder,
        *,
        model_name: str,
        dim: int,
        metric: Metric,
    ) -> None:
        self.model_name = model_name
        self.snapshots = snapshots
        self._session_factory = session_factory
        self._dim, self._metric = dim, metric
        self._kind, self._use_gpu = settings.index_kind, settings.index_use_gpu
        self._interval = settings.index_sync_interval_s
        self._snapshot_interval = settings.index_snapshot_interval_s
        self._indexes: dict[int, FaceIndex] = {}  # collection id → its index
        self._foreign: set[int] = set()  # collections of another model: never indexed here
        # Per collection: the seq of its newest change applied here, and the seq its snapshot holds.
        self._changed_at: dict[int, int] = {}
        self._saved_at: dict[int, int] = {}
        self._indexes_lock = threading.Lock()
        self._replay_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied_seq = 0  # every index holds every change up to here
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
        """Each collection from its snapshot when still current, else rebuilt; then catch up."""
        started = time.perf_counter()
        snapshots = SnapshotFolder.of(settings, database_url, model_name)
        follower = cls(session_factory, settings, snapshots, model_name=model_name, dim=dim, metric=metric)
        loaded = rebuilt = 0
        # One transaction, its change seq read first: on PostgreSQL the rebuilds may also
        # see later commits, which catch_up then replays idempotently.
        with session_factory() as session:
            seq = current_change_seq(session)
            collections = all_collections(session)
            snapshots.remove_all_but({c.id for c in collections})  # a deleted collection's embeddings go
            for collection in collections:
                if collection.model_name != model_name:
                    follower._foreign.add(collection.id)
                    continue
                index = snapshots.load(
                    collection.id, dim, metric, settings.index_kind, settings.index_use_gpu
                )
                if index is not None and collection.change_seq <= index.applied_seq <= seq:
                    follower._saved_at[collection.id] = index.applied_seq
                    loaded += 1
                else:
                    index = follower._new_index()
                    for batch in iter_embedding_batches(session, collection.id, model_name):
                        index.add(batch.face_ids, batch.subject_ids, batch.vectors)
                    follower._changed_at[collection.id] = seq  # worth a snapshot for the next start
                    rebuilt += 1
                follower._indexes[collection.id] = index
        follower._advance(seq)
        follower.catch_up()
        log_event(
            logger,
            "index.opened",
            collections=len(follower._indexes),
            from_snapshot=loaded,
            rebuilt=rebuilt,
            templates=follower.ntotal,
            applied_seq=follower.applied_seq,
            kind=settings.index_kind,
            seconds=round(time.perf_counter() - started, 3),
        )
        return follower

    # ----- what searches see ---------------------------------------------

    @property
    def ntotal(self) -> int:
        """Templates in all of this process's indexes."""
        with self._indexes_lock:
            return sum(index.ntotal for index in self._indexes.values())

    def templates_by_collection(self) -> dict[int, int]:
        with self._indexes_lock:
            return {cid: index.ntotal for cid, index in self._indexes.items()}

    def index_of(self, collection_id: int) -> FaceIndex:
        """The collection's index; an empty one for a collection with no template replayed yet."""
        with self._indexes_lock:
            index = self._indexes.get(collection_id)
            if index is None:
                index = self._indexes[collection_id] = self._new_index()
            return index

    def search_subjects(
        self, collection_id: int, queries: Any, top_n: int, *, exclude_face_ids: Collection[int]
    ) -> list[list[Candidate]]:
        return self.index_of(collection_id).search_subjects(queries, top_n, exclude_face_ids=exclude_face_ids)

    def removed_since_sync(self, session: Session) -> set[int]:
        """Faces removed after ``applied_seq``: what a search must not return yet."""
        return {
            change.face_id
            for change in changes_since(session, self.applied_seq)
            if change.op == "remove" and change.face_id is not None
        }

    def seconds_since_sync(self) -> float | None:
        return None if self.last_synced_at is None else time.monotonic() - self.last_synced_at

    # ----- following the database ----------------------------------------

    def catch_up(self) -> int:
        """Replay every change after ``applied_seq``; returns the new seq. Safe from any thread."""
        with self._replay_lock, self._session_factory() as session:
            while True:
                changes = changes_since(session, self.applied_seq, limit=REPLAY_BATCH)
                if not changes:
                    break
                self._replay(session, changes)
                self._advance(changes[-1].seq)
                if len(changes) < REPLAY_BATCH:
                    break
            self.last_synced_at = time.monotonic()
            return self.applied_seq

    def _replay(self, session: Session, changes: Sequence[ChangeLog]) -> None:
        """One batch of the log, each collection's run of it into its own index, in log order."""
        by_collection: dict[int, list[ChangeLog]] = defaultdict(list)
        for change in changes:
            by_collection[change.collection_id].append(change)
        self._learn_models(session, by_collection.keys())
        added = [c.face_id for c in changes if c.op == "add" and c.face_id is not None]
        batch = load_embeddings(session, added, self.model_name)
        vectors = {} if batch is None else dict(zip(batch.face_ids.tolist(), batch.vectors, strict=True))
        for collection_id, run in by_collection.items():
            dropped = max((c.seq for c in run if c.op == "drop"), default=None)
            if dropped is not None:
                self._drop(collection_id)
                continue
            if collection_id in self._foreign:
                continue
            replayed = []
            for change in run:
                if change.face_id is not None:
                    embedding = vectors.get(change.face_id)
                    replayed.append((change.seq, change.op, change.face_id, change.subject_id, embedding))
            apply_changes(self.index_of(collection_id), replayed)
            self._changed_at[collection_id] = run[-1].seq

    def _learn_models(self, session: Session, collection_ids: Collection[int]) -> None:
        """Mark collections first seen in the log whose model is not this one's (created since start)."""
        with self._indexes_lock:
            unknown = [cid for cid in collection_ids if cid not in self._indexes and cid not in self._foreign]
        if unknown:
            for cid, model in collection_models(session, unknown).items():
                if model != self.model_name:
                    self._foreign.add(cid)

    def _drop(self, collection_id: int) -> None:
        with self._indexes_lock:
            self._indexes.pop(collection_id, None)
        self._foreign.discard(collection_id)
        self._changed_at.pop(collection_id, None)
        self._saved_at.pop(collection_id, None)
        self.snapshots.remove(collection_id)
        log_event(logger, "index.collection_dropped", collection=collection_id)

    def _advance(self, seq: int) -> None:
        """Every index now holds every change up to ``seq`` (those without a change in between too)."""
        with self._indexes_lock:
            self.applied_seq = max(self.applied_seq, seq)
            for index in self._indexes.values():
                index.applied_seq = self.applied_seq

    def _new_index(self) -> FaceIndex:
        index = FaceIndex(self._dim, self._metric, self._kind, use_gpu=self._use_gpu)
        index.applied_seq = self.applied_seq
        return index

    # ----- the background thread and snapshots ---------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="index-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following and leave snapshots for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.save_snapshots()

    def save_snapshots(self) -> None:
        """Write the snapshot of every collection that changed since its last one.

        Replays may go on meanwhile: a snapshot then holds changes newer than
        the seq it records, which replaying again after a restart undoes
        nothing (``apply_changes`` is idempotent), and the collection is saved
        again next time.
        """
        with self._indexes_lock:
            pending = {
                cid: self._indexes[cid]
                for cid, changed in list(self._changed_at.items())
                if changed > self._saved_at.get(cid, -1) and cid in self._indexes
            }
        for collection_id, index in pending.items():
            holds = index.applied_seq
            if self.snapshots.save(collection_id, index):
                self._saved_at[collection_id] = holds
        if pending:
            log_event(logger, "index.snapshots_saved", collections=len(pending), applied_seq=self.applied_seq)

    def _run(self) -> None:
        last_snapshot = time.monotonic()
        failing = False
        while not self._stop.wait(self._interval):
            try:
                self.catch_up()
            except SQLAlchemyError as error:
                # The database is away: keep serving the indexes as they are and retry.
                if not failing:
                    log_event(logger, "index.sync_failed", logging.WARNING, error=type(error).__name__)
                failing = True
                continue
            if failing:
                log_event(logger, "index.sync_recovered", applied_seq=self.applied_seq)
                failing = False
            if time.monotonic() - last_snapshot >= self._snapshot_interval:
                self.save_snapshots()
                last_snapshot = time.monotonic()
