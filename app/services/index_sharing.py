"""The FAISS engine's snapshots shared between worker processes: one writes them, the others map them.

Mixed into ``IndexFollower``, whose state it works on. The process holding
the ``SnapshotWriter`` lock saves every changed collection's snapshot each
snapshot interval, and at once the snapshot of a large index whose base it
rebuilt in memory (a merge, a compaction, a retraining), so that memory goes
back to the page cache. The other processes replace their own copy of such
an index by the newly published, memory-mapped snapshot plus the changes it
lacks (``adopt_snapshots``), and take over as writer when the writer dies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

from app.core.logging import log_event
from app.index import FaceIndex, KindSetting, SearchIndex
from app.services.index_engines import IndexEngine, SpaceOf
from app.services.index_snapshots import SnapshotFolder, SnapshotWriter

logger = logging.getLogger(__name__)

# Indexes from this size are worth sharing: the writer snapshots a new base of one at
# once, and the other workers look for a newer snapshot every ADOPT_INTERVAL_S.
SHARE_FROM = 10_000
ADOPT_INTERVAL_S = 5.0


class SnapshotSharing:
    """Saving and adopting snapshots; the attributes are ``IndexFollower``'s."""

    _engine: IndexEngine
    _writer: SnapshotWriter
    _indexes: dict[int, SearchIndex]
    _models: dict[int, str]
    _changed_at: dict[int, int]
    _saved_at: dict[int, int]
    _indexes_lock: threading.Lock
    _replay_lock: threading.Lock
    _session_factory: Callable[[], Session]
    _spaces: SpaceOf
    _kind: KindSetting
    _use_gpu: bool | None
    applied_seq: int

    def snapshots(self, model_name: str) -> SnapshotFolder:
        raise NotImplementedError

    def _fill_in(
        self, session: Session, collection_id: int, model_name: str, index: SearchIndex, upto: int
    ) -> bool:
        raise NotImplementedError

    @property
    def writes_snapshots(self) -> bool:
        return self._writer.held

    def save_snapshots(self, *, unshared_only: bool = False) -> None:
        """As the snapshot writer, write the snapshot of every collection that changed since its last one.

        ``unshared_only``: only those of ``SHARE_FROM`` templates or more whose
        base was rebuilt in memory since: writing it lets every worker map it.

        Replays may go on meanwhile: a snapshot then holds changes newer than
        the seq it records, which replaying again after a restart undoes
        nothing (``apply_changes`` is idempotent), and the collection is saved
        again next time.
        """
        if self._engine.shared or not self._writer.held:
            return
        with self._indexes_lock:
            pending = {
                cid: (index, self._models[cid])
                for cid, changed in list(self._changed_at.items())
                if changed > self._saved_at.get(cid, -1)
                and isinstance(index := self._indexes.get(cid), FaceIndex)
                and cid in self._models
            }
        if unshared_only:
            pending = {
                cid: (index, model)
                for cid, (index, model) in pending.items()
                if index.base_file is None and index.ntotal >= SHARE_FROM
            }
        for collection_id, (index, model) in pending.items():
            holds = index.applied_seq
            if self.snapshots(model).save(collection_id, index):
                self._saved_at[collection_id] = holds
        if pending:
            log_event(logger, "index.snapshots_saved", collections=len(pending), applied_seq=self.applied_seq)

    def adopt_snapshots(self) -> int:
        """Map the newer snapshots the writer has published for this process's large indexes.

        A process that is not the writer holds its own copy of a base it
        rebuilt or merged; once the writer publishes a snapshot of the
        collection, the copy is replaced by the mapped file plus the changes
        the snapshot lacks. Takes over as writer if the writer has gone.
        Returns how many indexes were replaced.
        """
        if self._engine.shared or self._writer.try_acquire():
            return 0
        with self._indexes_lock:
            candidates = [
                (cid, index, self._models[cid])
                for cid, index in self._indexes.items()
                if isinstance(index, FaceIndex) and index.ntotal >= SHARE_FROM and cid in self._models
            ]
        adopted = 0
        for collection_id, index, model in candidates:
            folder = self.snapshots(model)
            published = folder.base_file(collection_id)
            if published is None or published == index.base_file:
                continue
            space = self._spaces(model)
            if space is None:
                continue
            with self._replay_lock, self._session_factory() as session:
                fresh = folder.load(collection_id, space.dim, space.metric, self._kind, self._use_gpu)
                if fresh is None or not self._fill_in(session, collection_id, model, fresh, self.applied_seq):
                    continue
                with self._indexes_lock:
                    if self._indexes.get(collection_id) is not index:
                        continue  # dropped or rebuilt meanwhile
                    self._indexes[collection_id] = fresh
            adopted += 1
            log_event(logger, "index.snapshot_adopted", collection=collection_id, templates=fresh.ntotal)
        return adopted
