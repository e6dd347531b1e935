"""Index snapshot files: the FAISS index in a file of its own, memory-mapped by every worker.

A collection's snapshot is two files in one folder:

- the **base**, ``<stem>.<token>.faiss``: the FAISS index as FAISS writes it,
  under a name never reused. Workers memory-map it read-only
  (``kinds.MMAP_FLAG``), so its vectors sit once in the page cache however
  many processes search it.
- the **sidecar**, ``<stem>.npz``: which base it goes with, the slot maps
  (face and subject per FAISS label, -1 for a removed face), the vectors
  added since the base was written (the delta), the change seq and build
  options. Nothing is pickled: it is read with ``allow_pickle=False``.

The base is written and synced before the sidecar naming it is published
with one ``os.replace``, so a crash never pairs a sidecar with a missing or
half-written base. Bases no sidecar names any more are deleted, except the
previous one, which another process may be opening right now; a process
that maps a deleted base keeps reading it until it lets go (POSIX).
A snapshot is loaded only when everything in it agrees with what the caller
expects; anything else raises ``SnapshotError`` and the caller rebuilds.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from app.core.arrays import FloatArray, IntArray
from app.index.kinds import FAISS_CLASS, FAISS_METRIC, MMAP_FLAG

SNAPSHOT_FORMAT = 2
OPTION_NAMES = ("hnsw_m", "ef_construction", "ef_search")


class SnapshotError(Exception):
    """The snapshot is missing, unreadable, malformed or built for something else."""


@dataclass(frozen=True)
class SnapshotContents:
    """What a sidecar holds; ``meta`` carries dim, metric, setting, kind, applied_seq, base_file, options."""

    meta: dict[str, Any]
    slot_face_ids: IntArray  # (S,) face id per slot, -1 for a removed one
    slot_subject_ids: IntArray  # (S,)
    delta_vectors: FloatArray  # (S - base slots, D) prepared vectors added after the base


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_base(sidecar: Path, cpu_index: Any) -> str:
    """Write a FAISS index as a new base of ``sidecar``'s snapshot; returns its file name."""
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    name = f"{sidecar.stem}.{secrets.token_hex(6)}.faiss"
    final = sidecar.with_name(name)
    tmp = _temporary(final)
    try:
        faiss.write_index(cpu_index, str(tmp))
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _sync_folder(final.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return name


def write_snapshot(path: Path, contents: SnapshotContents) -> None:
    """Publish the sidecar atomically (temporary file, fsync, rename), then drop bases it no longer needs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = _base_named(path)
    meta = dict(contents.meta, format=SNAPSHOT_FORMAT)
    tmp = _temporary(path)
    try:
        with tmp.open("wb") as handle:
            np.savez(
                handle,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                slot_face_ids=contents.slot_face_ids,
                slot_subject_ids=contents.slot_subject_ids,
                delta_vectors=contents.delta_vectors,
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    remove_bases(path, keep={meta["base_file"], previous})


def remove_bases(sidecar: Path, keep: set[str | None]) -> None:
    """Delete the base files of ``sidecar``'s snapshot whose names are not in ``keep``."""
    pattern = re.compile(rf"^{re.escape(sidecar.stem)}\.[0-9a-f]+\.faiss$")
    if not sidecar.parent.is_dir():
        return
    for path in sidecar.parent.iterdir():
        if pattern.match(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)


def _base_named(path: Path) -> str | None:
    try:
        return str(read_meta(path).get("base_file"))
    except SnapshotError:
        return None


def read_meta(path: Path) -> dict[str, Any]:
    """The sidecar's metadata alone (the slot maps are not read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile) as error:
        raise SnapshotError(f"unreadable: {type(error).__name__}") from error
    if not isinstance(meta, dict) or meta.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError("unknown format")
    return meta


def read_snapshot(path: Path) -> SnapshotContents:
    """Read a sidecar; any missing, truncated or malformed file raises ``SnapshotError``."""
    meta = read_meta(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = SnapshotContents(
                meta=meta,
                slot_face_ids=np.asarray(data["slot_face_ids"], dtype=np.int64),
                slot_subject_ids=np.asarray(data["slot_subject_ids"], dtype=np.int64),
                delta_vectors=np.asarray(data["delta_vectors"], dtype=np.float32),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise SnapshotError(f"unreadable: {type(error).__name__}") from error
    if contents.slot_face_ids.ndim != 1 or contents.slot_face_ids.shape != contents.slot_subject_ids.shape:
        raise SnapshotError("id maps disagree")
    return contents


@dataclass(frozen=True)
class LoadedIndex:
    """A checked snapshot: the base FAISS index (on the CPU, memory-mapped unless asked not) and the rest."""

    kind: str
    applied_seq: int
    options: dict[str, int]  # hnsw_m, ef_construction, ef_search
    ivf: dict[str, Any] | None  # an ivf base's training: nlist, nprobe, trained_on, recall_at_10
    base: Any
    base_file: str
    mapped: bool
    slot_face_ids: IntArray  # (S,)
    slot_subject_ids: IntArray  # (S,)
    delta_vectors: FloatArray  # (R, D)


def load_index_snapshot(path: Path, dim: int, metric: str, setting: str | None, *, mmap: bool) -> LoadedIndex:
    """Read and check a snapshot built for this dimension, metric and kind setting (None: any)."""
    contents = read_snapshot(path)
    meta = contents.meta
    try:
        if meta.get("dim") != dim or meta.get("metric") != metric:
            raise SnapshotError("built for another embedding model")
        if setting is not None and meta.get("setting") != setting:
            raise SnapshotError(f"built for index setting {meta.get('setting')!r}, not {setting!r}")
        kind = meta.get("kind")
        if kind not in FAISS_CLASS:
            raise SnapshotError(f"unknown index kind {kind!r}")
        options = {name: int(meta[name]) for name in OPTION_NAMES}
        applied_seq, base_slots = int(meta["applied_seq"]), int(meta["base_slots"])
        base_file = str(meta["base_file"])
        ivf = meta.get("ivf")
    except (KeyError, TypeError, ValueError) as error:
        raise SnapshotError(f"malformed metadata: {error}") from error
    base_path = path.with_name(base_file)
    if base_path.parent != path.parent or not base_path.is_file():
        raise SnapshotError("base file missing")
    try:
        base = faiss.read_index(str(base_path), MMAP_FLAG[kind] if mmap else 0)
    except RuntimeError as error:
        raise SnapshotError("FAISS index unreadable") from error
    if not isinstance(base, FAISS_CLASS[kind]) or base.d != dim:
        raise SnapshotError("FAISS index type or dimension differs")
    if base.metric_type != FAISS_METRIC[metric]:
        raise SnapshotError("FAISS index metric differs")
    slots = len(contents.slot_face_ids)
    if base.ntotal != base_slots or contents.delta_vectors.shape != (slots - base_slots, dim):
        raise SnapshotError("FAISS index and id map differ in size")
    live = contents.slot_face_ids[contents.slot_face_ids >= 0]
    if np.unique(live).size != live.size:
        raise SnapshotError("duplicate face ids")
    return LoadedIndex(
        kind,
        applied_seq,
        options,
        ivf if isinstance(ivf, dict) else None,
        base,
        base_file,
        mmap,
        contents.slot_face_ids,
        contents.slot_subject_ids,
        contents.delta_vectors,
    )
