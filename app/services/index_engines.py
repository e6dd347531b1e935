"""Where a process's collection indexes come from: FAISS in every process, or one Milvus for all.

- ``FaissEngine`` (the default): each worker holds a FAISS index per
  collection, loaded from its snapshot (``app.services.index_snapshots``)
  or rebuilt from the database; every worker replays the change log into
  its own copy.
- ``MilvusEngine`` (``FACEREC_INDEX_URL`` set): one Milvus collection per
  facerec collection, searched by every worker of every machine. Any worker
  may replay the change log into it, but one at a time (``guard``: a
  PostgreSQL advisory lock, or a file lock beside a SQLite database), and
  each replay starts from the seq stored in the Milvus collection itself
  (``refresh``), so writes reach Milvus in the log's order and a crash
  between a write and its seq only replays it again. The database stays
  the truth: a Milvus collection that is lost or of another model is
  rebuilt from it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.db.faces import EmbeddingBatch
from app.index import FaceIndex, SearchIndex, SharedIndex, milvus_store
from app.pipeline.similarity import Metric
from app.services.index_snapshots import SnapshotFolder

_MILVUS_REPLAY_LOCK_KEY = 0x66726563_6D696C76  # "frecmilv"


@dataclass(frozen=True)
class EmbeddingSpace:
    """What an index needs to know of a model."""

    dim: int
    metric: Metric


# A model's space, or None when the model is not installed in this process.
SpaceOf = Callable[[str], EmbeddingSpace | None]


def database_tag(database_url: str) -> str:
    """A short, stable name for a database: snapshot folders and Milvus collections carry it."""
    return hashlib.sha256(database_url.encode()).hexdigest()[:12]


class IndexEngine:
    """How the follower opens, builds and forgets the index of a collection."""

    shared = False  # True: one index that every process searches, no snapshots of its own

    def open(self, collection_id: int, model: str, dim: int, metric: Metric) -> SearchIndex | None:
        """The collection's stored index (its ``applied_seq`` as stored), or None when there is none."""
        raise NotImplementedError

    def build(
        self, collection_id: int, dim: int, metric: Metric, batches: Iterable[EmbeddingBatch], seq: int
    ) -> SearchIndex:
        """An index of exactly these templates, at ``seq``."""
        raise NotImplementedError

    def stored(self, collection_id: int, model: str) -> bool:
        """Whether the collection's index for ``model`` is stored (a snapshot, a Milvus collection)."""
        raise NotImplementedError

    def forget(self, collection_id: int, model: str) -> None:
        """Delete what is stored of the collection's index for ``model``."""

    def forget_all_but(self, keep: set[tuple[int, str]]) -> None:
        """Delete stored indexes of every (collection, model) not in ``keep``."""

    def guard(self, session: Session) -> AbstractContextManager[None]:
        """Held while changes are replayed into the index."""
        return nullcontext()

    def refresh(self, index: SearchIndex) -> None:
        """Bring ``index.applied_seq`` up to what the index holds (another process may have written)."""

    def persist(self, index: SearchIndex) -> None:
        """Make what was just replayed, and its seq, durable."""


class FaissEngine(IndexEngine):
    def __init__(self, settings: Settings, database_url: str) -> None:
        self._settings, self._database_url = settings, database_url

    def snapshots(self, model: str) -> SnapshotFolder:
        return SnapshotFolder.of(self._settings, self._database_url, model)

    def open(self, collection_id: int, model: str, dim: int, metric: Metric) -> FaceIndex | None:
        settings = self._settings
        return self.snapshots(model).load(
            collection_id, dim, metric, settings.index_kind, settings.index_use_gpu
        )

    def build(
        self, collection_id: int, dim: int, metric: Metric, batches: Iterable[EmbeddingBatch], seq: int
    ) -> FaceIndex:
        read = list(batches)
        index = FaceIndex.build(
            dim,
            metric,
            self._settings.index_kind,
            np.concatenate([b.face_ids for b in read]) if read else np.empty(0, np.int64),
            np.concatenate([b.subject_ids for b in read]) if read else np.empty(0, np.int64),
            np.concatenate([b.vectors for b in read]) if read else np.empty((0, dim), np.float32),
            use_gpu=self._settings.index_use_gpu,
        )
        index.applied_seq = seq
        return index

    def stored(self, collection_id: int, model: str) -> bool:
        return self.snapshots(model).path(collection_id).exists()

    def forget(self, collection_id: int, model: str) -> None:
        self.snapshots(model).remove(collection_id)

    def forget_all_but(self, keep: set[tuple[int, str]]) -> None:
        SnapshotFolder.remove_stale(self._settings, self._database_url, keep)


class MilvusEngine(IndexEngine):
    shared = True

    def __init__(self, settings: Settings, database_url: str) -> None:
        assert settings.index_url is not None
        token = None if settings.index_token is None else settings.index_token.get_secret_value()
        self._store = milvus_store(settings.index_url, f"facerec_{database_tag(database_url)}", token)
        self._postgres = database_url.startswith("postgresql")
        self._lock_path = Path(settings.data_dir) / "index" / f".milvus-{database_tag(database_url)}.lock"

    def open(self, collection_id: int, model: str, dim: int, metric: Metric) -> SharedIndex:
        return self._store.open(collection_id, dim, metric)

    def build(
        self, collection_id: int, dim: int, metric: Metric, batches: Iterable[EmbeddingBatch], seq: int
    ) -> SharedIndex:
        index = self._store.recreate(collection_id, dim, metric)
        for batch in batches:
            index.add(batch.face_ids, batch.subject_ids, batch.vectors)
        index.applied_seq = seq
        index.save_applied_seq()
        return index

    def stored(self, collection_id: int, model: str) -> bool:
        return bool(self._store.client.has_collection(self._store.name(collection_id)))

    def forget(self, collection_id: int, model: str) -> None:
        self._store.drop(collection_id)

    def forget_all_but(self, keep: set[tuple[int, str]]) -> None:
        self._store.drop_all_but({collection_id for collection_id, _ in keep})

    def guard(self, session: Session) -> AbstractContextManager[None]:
        if self._postgres:
            # Held until the replaying session's transaction ends; other machines wait here too.
            session.execute(select(func.pg_advisory_xact_lock(_MILVUS_REPLAY_LOCK_KEY)))
            return nullcontext()
        return self._file_lock()

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def refresh(self, index: SearchIndex) -> None:
        cast(SharedIndex, index).reload_applied_seq()

    def persist(self, index: SearchIndex) -> None:
        cast(SharedIndex, index).save_applied_seq()


def engine_for(settings: Settings, database_url: str) -> IndexEngine:
    """Milvus when ``FACEREC_INDEX_URL`` names one, FAISS in this process otherwise."""
    return MilvusEngine(settings, database_url) if settings.index_url else FaissEngine(settings, database_url)
