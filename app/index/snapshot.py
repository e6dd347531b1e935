"""The index snapshot file: one ``.npz`` holding the FAISS index and its id maps.

One file rather than an index file plus a sidecar, so a single
``os.replace`` publishes it atomically and a crash can never pair an index
with another snapshot's id map. Nothing is pickled: the file is read with
``allow_pickle=False``. A snapshot is loaded only when everything in it
agrees with what the caller expects (dimension, metric, kind, id maps);
anything else raises ``SnapshotError`` and the caller rebuilds.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from app.core.arrays import IntArray

SNAPSHOT_FORMAT = 1


class SnapshotError(Exception):
    """The snapshot file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class SnapshotContents:
    """What a snapshot holds; ``meta`` carries metric, kind, dim, applied_seq and build options."""

    meta: dict[str, Any]
    index_bytes: NDArray[np.uint8]  # faiss.serialize_index output
    slot_face_ids: IntArray  # (S,) face id per FAISS label, -1 for a removed slot
    slot_subject_ids: IntArray  # (S,)


def write_snapshot(path: Path, contents: SnapshotContents) -> None:
    """Write ``contents`` to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(contents.meta, format=SNAPSHOT_FORMAT)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as handle:
            np.savez(
                handle,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                index=contents.index_bytes,
                slot_face_ids=contents.slot_face_ids,
                slot_subject_ids=contents.slot_subject_ids,
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_snapshot(path: Path) -> SnapshotContents:
    """Read a snapshot; any missing, truncated or malformed file raises ``SnapshotError``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            contents = SnapshotContents(
                meta=meta,
                index_bytes=np.ascontiguousarray(data["index"], dtype=np.uint8),
                slot_face_ids=np.asarray(data["slot_face_ids"], dtype=np.int64),
                slot_subject_ids=np.asarray(data["slot_subject_ids"], dtype=np.int64),
            )
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile) as error:
        raise SnapshotError(f"unreadable: {type(error).__name__}") from error
    if not isinstance(meta, dict) or meta.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError("unknown format")
    if contents.slot_face_ids.ndim != 1 or contents.slot_face_ids.shape != contents.slot_subject_ids.shape:
        raise SnapshotError("id maps disagree")
    return contents


@dataclass(frozen=True)
class LoadedIndex:
    """A checked snapshot: the FAISS index (on the CPU), its id maps, and how it was built."""

    kind: str
    applied_seq: int
    options: dict[str, int]  # the index's build and search options (hnsw_m, ef_construction, ef_search)
    cpu_index: Any
    slot_face_ids: IntArray  # (S,)
    slot_subject_ids: IntArray  # (S,)


OPTION_NAMES = ("hnsw_m", "ef_construction", "ef_search")


def load_index_snapshot(
    path: Path, dim: int, metric: str, faiss_metric: int, kinds: dict[str, type]
) -> LoadedIndex:
    """Read and check a snapshot; ``kinds`` maps each acceptable kind to the FAISS class it holds."""
    contents = read_snapshot(path)
    meta = contents.meta
    try:
        if meta.get("dim") != dim or meta.get("metric") != metric:
            raise SnapshotError("built for another embedding model")
        kind = meta.get("kind")
        if kind not in kinds:
            raise SnapshotError(f"index kind {kind!r} is not the configured one")
        options = {name: int(meta[name]) for name in OPTION_NAMES}
        applied_seq = int(meta["applied_seq"])
    except (KeyError, TypeError, ValueError) as error:
        raise SnapshotError(f"malformed metadata: {error}") from error
    try:
        cpu_index = faiss.deserialize_index(contents.index_bytes)
    except RuntimeError as error:
        raise SnapshotError("FAISS index unreadable") from error
    if not isinstance(cpu_index, kinds[kind]) or cpu_index.d != dim:
        raise SnapshotError("FAISS index type or dimension differs")
    if cpu_index.metric_type != faiss_metric:
        raise SnapshotError("FAISS index metric differs")
    if cpu_index.ntotal != len(contents.slot_face_ids):
        raise SnapshotError("FAISS index and id map differ in size")
    live = contents.slot_face_ids[contents.slot_face_ids >= 0]
    if np.unique(live).size != live.size:
        raise SnapshotError("duplicate face ids")
    return LoadedIndex(
        kind, applied_seq, options, cpu_index, contents.slot_face_ids, contents.slot_subject_ids
    )
