"""The index snapshot file: one ``.npz`` holding the FAISS index and its id maps.

One file rather than an index file plus a sidecar, so a single
``os.replace`` publishes it atomically and a crash can never pair an index
with another snapshot's id map. Nothing is pickled: the file is read with
``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
