"""Keeping this process's FAISS indexes, one per collection, in step with the database.

The database is the truth; its change log orders every template added or
removed and every collection dropped. At start each collection's index
comes from its snapshot when no change of that collection came after it,
or is rebuilt from the templates; afterwards a thread replays the log every
``interval`` seconds into each collection's index, so every worker follows
changes made by any other within a second. A request that writes replays
right after its commit (``catch_up``) so its own worker answers with the
change at once, and a search excludes faces removed since the last replay.

A snapshot older than the collection's last change is loaded too, and the
changes it lacks replayed onto it; only a drop or a move after it forces a
rebuild. One process writes snapshots (``SnapshotWriter``); the others
memory-map each new one once it is published (``adopt_snapshots``), so a
large base is in memory once however many workers serve it.

Each collection's index is in its model's embedding space (size and
metric, from the model's manifest); a collection whose model is not
installed here is not indexed. A collection moved to another model logs a
``rebuild``, and every worker rebuilds its index from the database. A face
of one collection is never in another's index.
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
from app.db.changes import (
    changes_since,
    collection_changes_between,
    current_change_seq,
    faces_removed_since,
)
from app.db.collections import all_collections, collection_models, get_collection_by_id
from app.db.faces import iter_embedding_batches, load_embeddings
from app.db.models import ChangeLog
from app.index import Candidate, FaceIndex, SearchIndex, apply_changes
from app.services.index_engines import EmbeddingSpace, IndexEngine, SpaceOf, engine_for
from app.services.index_sharing import ADOPT_INTERVAL_S, SnapshotSharing
from app.services.index_snapshots import SnapshotFolder, SnapshotWriter

logger = logging.getLogger(__name__)

# Changes read per query while catching up, so a long backlog is not one huge result.
REPLAY_BATCH = 5_000
# A stored index this many changes behind the database is rebuilt rather than replayed.
REPLAY_AT_MOST = 100_000


class IndexFollower(SnapshotSharing):
    """Owns this process's index of every collection and replays the log onto them."""

    def __init__(
        self, session_factory: Callable[[], Session], settings: Settings, database_url: str, spaces: SpaceOf
    ) -> None:
        self._session_factory = session_factory
        self._settings, self._database_url = settings, database_url
        self._spaces = spaces
        self._kind, self._use_gpu = settings.index_kind, settings.index_use_gpu
        self._interval = settings.index_sync_interval_s
        self._snapshot_interval = settings.index_snapshot_interval_s
        self._engine: IndexEngine = engine_for(settings, database_url)
        self._indexes: dict[int, SearchIndex] = {}  # collection id → its index
        self._models: dict[int, str] = {}  # collection id → the model its index holds
        self._foreign: set[int] = set()  # collections whose model is not installed: never indexed here
        # Per collection: the seq of its newest change applied here, and the seq its snapshot holds.
        self._changed_at: dict[int, int] = {}
        self._saved_at: dict[int, int] = {}
        self._indexes_lock = threading.Lock()
        self._replay_lock = threading.Lock()
        self._writer = SnapshotWriter(settings, database_url)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied_seq = 0  # every index holds every change up to here
        self.last_synced_at: float | None = None

    def space_of(self, model_name: str) -> EmbeddingSpace | None:
        """The model's embedding size and metric; None when it is not installed."""
        return self._spaces(model_name)

    @property
    def engine(self) -> IndexEngine:
        """Where the indexes are kept (FAISS snapshots here, or Milvus)."""
        return self._engine

    def snapshots(self, model_name: str) -> SnapshotFolder:
        """Where the snapshots of collections of ``model_name`` are kept."""
        return SnapshotFolder.of(self._settings, self._database_url, model_name)

    @classmethod
    def open(
        cls,
        session_factory: Callable[[], Session],
        *,
        settings: Settings,
        database_url: str,
        spaces: SpaceOf,
    ) -> IndexFollower:
        """Each collection from its snapshot (with the changes it lacks), else rebuilt; then catch up."""
        started = time.perf_counter()
        follower = cls(session_factory, settings, database_url, spaces)
        if not follower._engine.shared:
            follower._writer.try_acquire()
        loaded = rebuilt = 0
        # One transaction, its change seq read first: on PostgreSQL the rebuilds may also
        # see later commits, which catch_up then replays idempotently.
        with session_factory() as session:
            seq = current_change_seq(session)
            collections = all_collections(session)
            engine = follower._engine
            # A deleted collection's embeddings go, and so do those of a collection moved to another model.
            engine.forget_all_but({(c.id, c.model_name) for c in collections})
            for collection in collections:
                space = spaces(collection.model_name)
                if space is None:
                    follower._foreign.add(collection.id)
                    continue
                with engine.guard(session):
                    index = engine.open(collection.id, collection.model_name, space.dim, space.metric)
                    saved = 0 if index is None else index.applied_seq
                    filled = index is not None and follower._fill_in(
                        session, collection.id, collection.model_name, index, seq
                    )
                    if index is not None and filled:
                        engine.persist(index)
                    else:
                        index = follower._rebuilt(session, collection.id, collection.model_name, space, seq)
                if filled:
                    follower._saved_at[collection.id] = saved
                    if collection.change_seq > saved:
                        follower._changed_at[collection.id] = seq
                    loaded += 1
                else:
                    follower._changed_at[collection.id] = seq  # worth a snapshot for the next start
                    rebuilt += 1
                follower._indexes[collection.id] = index
                follower._models[collection.id] = collection.model_name
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
            engine="milvus" if follower._engine.shared else "faiss",
            kind=settings.index_kind,
            snapshot_writer=follower._writer.held,
            seconds=round(time.perf_counter() - started, 3),
        )
        return follower

    def _fill_in(
        self, session: Session, collection_id: int, model_name: str, index: SearchIndex, upto: int
    ) -> bool:
        """Replay onto a stored index (a snapshot, a Milvus collection) the collection's changes after it.

        False when it is of no use: the collection was dropped or moved to
        another model after it, it is more than ``REPLAY_AT_MOST`` changes
        behind, or (a snapshot) it is ahead of ``upto``. A shared index ahead
        of ``upto`` was brought there by another process: it is current.
        """
        if index.applied_seq > upto:
            return self._engine.shared
        changes = collection_changes_between(
            session, collection_id, index.applied_seq, upto, limit=REPLAY_AT_MOST + 1
        )
        if len(changes) > REPLAY_AT_MOST or any(change.op in ("drop", "rebuild") for change in changes):
            return False
        added = [c.face_id for c in changes if c.op == "add" and c.face_id is not None]
        batch = load_embeddings(session, added, model_name)
        vectors = {} if batch is None else dict(zip(batch.face_ids.tolist(), batch.vectors, strict=True))
        apply_changes(
            index,
            [
                (c.seq, c.op, c.face_id, c.subject_id, vectors.get(c.face_id))
                for c in changes
                if c.face_id is not None
            ],
        )
        index.applied_seq = upto
        return True

    def _rebuilt(
        self,
        session: Session,
        collection_id: int,
        model_name: str,
        space: EmbeddingSpace,
        seq: int | None = None,
    ) -> SearchIndex:
        """A new index of the collection's templates as the database holds them now, at ``seq``."""
        batches = iter_embedding_batches(session, collection_id, model_name)
        at = self.applied_seq if seq is None else seq
        return self._engine.build(collection_id, space.dim, space.metric, batches, at)

    # ----- what searches see ---------------------------------------------

    @property
    def ntotal(self) -> int:
        """Templates in all of this process's indexes."""
        with self._indexes_lock:
            return sum(index.ntotal for index in self._indexes.values())

    def templates_by_collection(self) -> dict[int, int]:
        with self._indexes_lock:
            return {cid: index.ntotal for cid, index in self._indexes.items()}

    def index_of(self, collection_id: int) -> SearchIndex:
        """The collection's index; an empty one for a collection with no template replayed yet."""
        with self._indexes_lock:
            index = self._indexes.get(collection_id)
        if index is not None:
            return index
        with self._session_factory() as session:
            self._learn_models(session, [collection_id])
        with self._indexes_lock:
            index = self._indexes.get(collection_id)
            if index is None:
                model = self._models.get(collection_id)
                space = None if model is None else self._spaces(model)
                if space is None:
                    raise LookupError(f"collection {collection_id} has no model installed here")
                index = self._indexes[collection_id] = self._new_index(collection_id, space)
            return index

    def search_subjects(
        self,
        collection_id: int,
        queries: Any,
        top_n: int,
        *,
        exclude_face_ids: Collection[int],
        model_name: str | None = None,
    ) -> list[list[Candidate]]:
        """Search the collection's index; ``model_name`` is the collection's model as the caller read it.

        After a move to another model commits, this worker's index holds the old
        model's vectors until it replays the ``rebuild``; a query of the new model
        must not meet them, so the replay happens now rather than at the next sync.
        """
        if model_name is not None and self._models.get(collection_id, model_name) != model_name:
            self.catch_up()
        return self.index_of(collection_id).search_subjects(queries, top_n, exclude_face_ids=exclude_face_ids)

    def removed_since_sync(self, session: Session) -> set[int]:
        """Faces removed after ``applied_seq``: what a search must not return yet."""
        return faces_removed_since(session, self.applied_seq)

    def seconds_since_sync(self) -> float | None:
        return None if self.last_synced_at is None else time.monotonic() - self.last_synced_at

    # ----- following the database ----------------------------------------

    def catch_up(self) -> int:
        """Replay every change after ``applied_seq``; returns the new seq. Safe from any thread."""
        with self._replay_lock, self._session_factory() as session, self._engine.guard(session):
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
        """One batch of the log, each collection's run of it into its own index, in log order.

        A shared index first reads back how far it is (another process may
        have replayed these changes already) and skips what it holds.
        """
        by_collection: dict[int, list[ChangeLog]] = defaultdict(list)
        for change in changes:
            by_collection[change.collection_id].append(change)
        self._learn_models(session, by_collection.keys())
        if self._engine.shared:
            for collection_id, run in list(by_collection.items()):
                shared = self._indexes.get(collection_id)
                if shared is not None:
                    self._engine.refresh(shared)
                    by_collection[collection_id] = [c for c in run if c.seq > shared.applied_seq]
        vectors = self._added_vectors(session, by_collection)
        for collection_id, run in by_collection.items():
            if not run:
                continue
            dropped = max((c.seq for c in run if c.op == "drop"), default=None)
            if dropped is not None:
                self._drop(collection_id)
                continue
            rebuilt = max((c.seq for c in run if c.op == "rebuild"), default=None)
            if rebuilt is not None:
                self._rebuild(session, collection_id, rebuilt)
            if collection_id in self._foreign:
                continue
            replayed = []
            for change in run:
                if change.face_id is not None and (rebuilt is None or change.seq > rebuilt):
                    embedding = vectors.get(change.face_id)
                    replayed.append((change.seq, change.op, change.face_id, change.subject_id, embedding))
            index = self.index_of(collection_id)
            apply_changes(index, replayed)
            index.applied_seq = max(index.applied_seq, run[-1].seq)
            self._engine.persist(index)
            self._changed_at[collection_id] = run[-1].seq

    def _added_vectors(self, session: Session, by_collection: dict[int, list[ChangeLog]]) -> dict[int, Any]:
        """The embeddings of the faces these changes add, each read as its collection's model's."""
        added: dict[str, list[int]] = defaultdict(list)
        for collection_id, run in by_collection.items():
            model = self._models.get(collection_id)
            if model is not None:
                added[model].extend(c.face_id for c in run if c.op == "add" and c.face_id is not None)
        vectors: dict[int, Any] = {}
        for model, face_ids in added.items():
            batch = load_embeddings(session, face_ids, model)
            if batch is not None:
                vectors.update(zip(batch.face_ids.tolist(), batch.vectors, strict=True))
        return vectors

    def _rebuild(self, session: Session, collection_id: int, seq: int) -> None:
        """The collection moved to another model: its index anew from the database, the old snapshot gone."""
        collection = get_collection_by_id(session, collection_id)
        old_model = self._models.get(collection_id)
        if old_model is not None:
            self._engine.forget(collection_id, old_model)
        if collection is None:
            self._drop(collection_id)
            return
        space = self._spaces(collection.model_name)
        if space is None:
            with self._indexes_lock:
                self._models[collection_id] = collection.model_name
                self._indexes.pop(collection_id, None)
            self._foreign.add(collection_id)
            return
        index = self._rebuilt(session, collection_id, collection.model_name, space, seq)
        # The model and its index change together: a search that sees the new model
        # name must find the new index, never the old model's vectors still in place.
        with self._indexes_lock:
            self._models[collection_id] = collection.model_name
            self._indexes[collection_id] = index
        self._foreign.discard(collection_id)
        self._changed_at[collection_id] = seq
        self._saved_at.pop(collection_id, None)
        log_event(logger, "index.collection_rebuilt", collection=collection_id, model=collection.model_name)

    def _learn_models(self, session: Session, collection_ids: Collection[int]) -> None:
        """The model of collections first seen in the log (created since start); foreign if not installed."""
        with self._indexes_lock:
            unknown = [cid for cid in collection_ids if cid not in self._models and cid not in self._foreign]
        if not unknown:
            return
        for cid, model in collection_models(session, unknown).items():
            with self._indexes_lock:
                self._models[cid] = model
            if self._spaces(model) is None:
                self._foreign.add(cid)

    def _drop(self, collection_id: int) -> None:
        with self._indexes_lock:
            self._indexes.pop(collection_id, None)
            model = self._models.pop(collection_id, None)
        self._foreign.discard(collection_id)
        self._changed_at.pop(collection_id, None)
        self._saved_at.pop(collection_id, None)
        if model is not None:
            self._engine.forget(collection_id, model)
        log_event(logger, "index.collection_dropped", collection=collection_id)

    def _advance(self, seq: int) -> None:
        """Every index now holds every change up to ``seq`` (those without a change in between too)."""
        with self._indexes_lock:
            self.applied_seq = max(self.applied_seq, seq)
            for index in self._indexes.values():
                index.applied_seq = self.applied_seq

    def _new_index(self, collection_id: int, space: EmbeddingSpace) -> SearchIndex:
        """The index of a collection first met since start: empty here, or Milvus's as it stands."""
        model = self._models.get(collection_id, "")
        index = None
        if self._engine.shared:
            index = self._engine.open(collection_id, model, space.dim, space.metric)
        if index is None:
            index = FaceIndex(space.dim, space.metric, self._kind, use_gpu=self._use_gpu)
            index.applied_seq = self.applied_seq
        return index

    # ----- the background thread and snapshots ---------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="index-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following and, as the snapshot writer, leave snapshots for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.save_snapshots()
        self._writer.release()

    def _run(self) -> None:
        last_snapshot = last_adopt = time.monotonic()
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
            now = time.monotonic()
            if now - last_snapshot >= self._snapshot_interval:
                self.save_snapshots()
                last_snapshot = now
            elif self._writer.held:
                self.save_snapshots(unshared_only=True)
            elif now - last_adopt >= ADOPT_INTERVAL_S:
                self.adopt_snapshots()
                last_adopt = now
