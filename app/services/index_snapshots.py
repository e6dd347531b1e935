"""Where each collection's index snapshot is kept, and which process writes them.

A collection's snapshot is a sidecar and its base (``app.index.snapshot``)
in a folder named by embedding model, index setting and database, so a
snapshot never meets another database's change seq. Snapshots hold
embeddings: a collection's files go when the collection does, in every
worker that replays the drop and, for one deleted while this process was
down, at its next start.

One process per data folder writes snapshots (``SnapshotWriter``: an
exclusive ``flock``, released by the kernel when its holder dies); the
other workers map what it writes, so a base is in memory once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from app.core.logging import log_event
from app.core.settings import Settings
from app.index import FaceIndex, KindSetting
from app.index.snapshot import SnapshotError, read_meta, remove_bases
from app.pipeline.similarity import Metric

logger = logging.getLogger(__name__)

# A sidecar, a base file or its slots file of a collection's snapshot.
_FILE = re.compile(r"^collection-(\d+)\.(?:npz|[0-9a-f]+\.(?:faiss|slots\.npy))$")


def _suffix(settings: Settings, database_url: str) -> str:
    """How a snapshot folder's name ends for this database and index kind (it starts with the model)."""
    return f"-{settings.index_kind}-{hashlib.sha256(database_url.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class SnapshotFolder:
    folder: Path

    @classmethod
    def of(cls, settings: Settings, database_url: str, model_name: str) -> SnapshotFolder:
        folder = Path(settings.data_dir) / "index" / f"{model_name}{_suffix(settings, database_url)}"
        # Before collections, the one gallery's snapshot was this file beside the folder.
        (folder.parent / f"{folder.name}.npz").unlink(missing_ok=True)
        return cls(folder)

    @staticmethod
    def remove_stale(settings: Settings, database_url: str, keep: set[tuple[int, str]]) -> None:
        """Delete every snapshot of this database but those of ``keep``'s (collection id, model) pairs.

        What goes: collections deleted while this process was down, and the
        old model's snapshot of a collection moved to another.
        """
        root, suffix = Path(settings.data_dir) / "index", _suffix(settings, database_url)
        if not root.is_dir():
            return
        for folder in root.iterdir():
            if folder.is_dir() and folder.name.endswith(suffix):
                model = folder.name[: -len(suffix)]
                SnapshotFolder(folder).remove_all_but({cid for cid, name in keep if name == model})

    def path(self, collection_id: int) -> Path:
        return self.folder / f"collection-{collection_id}.npz"

    def load(
        self, collection_id: int, dim: int, metric: Metric, kind: KindSetting, use_gpu: bool | None
    ) -> FaceIndex | None:
        """The collection's snapshot, or None when it is missing or unusable (the caller rebuilds)."""
        return FaceIndex.load(self.path(collection_id), dim, metric, kind, use_gpu=use_gpu)

    def base_file(self, collection_id: int) -> str | None:
        """The base the collection's published snapshot names; None when there is none readable."""
        try:
            return str(read_meta(self.path(collection_id))["base_file"])
        except (SnapshotError, KeyError):
            return None

    def save(self, collection_id: int, index: FaceIndex) -> bool:
        """Write the snapshot atomically; False (logged) when the disk refuses."""
        path = self.path(collection_id)
        try:
            index.save(path)
        except OSError as error:
            log_event(logger, "index.snapshot_failed", logging.WARNING, path=path, error=error)
            return False
        return True

    def remove(self, collection_id: int) -> None:
        """Delete the collection's sidecar and every base of it."""
        path = self.path(collection_id)
        path.unlink(missing_ok=True)
        remove_bases(path, keep=set())

    def remove_all_but(self, keep: set[int]) -> None:
        """Delete the snapshots of collections not in ``keep`` (deleted while this process was down)."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            found = _FILE.match(path.name)
            if found is not None and int(found.group(1)) not in keep:
                path.unlink(missing_ok=True)
                log_event(logger, "index.orphan_snapshot_removed", path=path.name)


class SnapshotWriter:
    """The right to write this database's snapshots in this data folder: held by one process at a time."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        root = Path(settings.data_dir) / "index"
        self._path = root / f".writer{_suffix(settings, database_url)}.lock"
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; True while this process holds it."""
        if self._descriptor is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            return False
        self._descriptor = descriptor
        return True

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor releases the flock
            self._descriptor = None
