"""Index snapshot files: the FAISS index in a file of its own, memory-mapped by every worker.

A collection's snapshot is three files in one folder:

- the **base**, ``<stem>.<token>.faiss``: the FAISS index as FAISS writes it,
  under a name never reused. Workers memory-map it read-only
  (``kinds.MMAP_FLAG``), so its vectors sit once in the page cache however
  many processes search it.
- the base's **slots**, ``<stem>.<token>.slots.npy``: face and subject of
  each of its labels and the face ids sorted (``app.index.slots``), mapped
  copy-on-write by every worker for the same reason.
- the **sidecar**, ``<stem>.npz``: which base it goes with, the base's slots
  removed since it was written, the slots and vectors added since (the
  delta), the change seq and build options. Nothing is pickled: it is read
  with ``allow_pickle=False``.

The base and its slots are written and synced before the sidecar naming
them is published with one ``os.replace``, so a crash never pairs a sidecar
with a missing or half-written base. Bases (with their slots) no sidecar
names any more are deleted, except the previous one, which another process
may be opening right now; a process that maps a deleted base keeps reading
it until it lets go (POSIX).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from app.core.arrays import FloatArray, IntArray
from app.index.kinds import FAISS_CLASS, FAISS_METRIC, MMAP_FLAG
from app.index.slots import Slots, SlotsError, map_head

SNAPSHOT_FORMAT = 3
SLOTS_SUFFIX = ".slots.npy"
OPTION_NAMES = ("hnsw_m", "ef_construction", "ef_search")


class SnapshotError(Exception):
    """The snapshot is missing, unreadable, malformed or built for something else."""


@dataclass(frozen=True)
class SnapshotContents:
    """What a sidecar holds; ``meta`` carries dim, metric, setting, kind, applied_seq, base_file, options."""

    meta: dict[str, Any]
    removed_base_slots: IntArray  # (R,) slots of the base whose face was removed
    delta_face_ids: IntArray  # (T,) face id per slot after the base, -1 for a removed one
    delta_subject_ids: IntArray  # (T,)
    delta_vectors: FloatArray  # (T, D) prepared vectors added after the base


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def slots_file(base_file: str) -> str:
    """The name of the slots file that goes with a base file."""
    return base_file.removesuffix(".faiss") + SLOTS_SUFFIX


def write_base(sidecar: Path, cpu_index: Any, slots: Slots) -> str:
    """Write a FAISS index and its slots as a new base of ``sidecar``'s snapshot; returns its file name."""
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    name = f"{sidecar.stem}.{secrets.token_hex(6)}.faiss"
    size = int(cpu_index.ntotal)
    _write_synced(sidecar.with_name(slots_file(name)), lambda tmp: slots.save_head(tmp, size))
    _write_synced(sidecar.with_name(name), lambda tmp: faiss.write_index(cpu_index, str(tmp)))
    _sync_folder(sidecar.parent)
    return name


def _write_synced(final: Path, write: Callable[[Path], None]) -> None:
    """``write`` to a temporary file, synced, then renamed to ``final``."""
    tmp = _temporary(final)
    try:
        write(tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_snapshot(path: Path, contents: SnapshotContents) -> None:
    """Publish the sidecar atomically (temporary file, fsync, rename), then drop bases it no longer needs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = _base_named(path)
    meta = dict(contents.meta, format=SNAPSHOT_FORMAT)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a handle: given a path, savez would add ".npz" to it
            np.savez(
                handle,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                removed_base_slots=contents.removed_base_slots,
                delta_face_ids=contents.delta_face_ids,
                delta_subject_ids=contents.delta_subject_ids,
                delta_vectors=contents.delta_vectors,
            )

    _write_synced(path, write)
    remove_bases(path, keep={meta["base_file"], previous})


def remove_bases(sidecar: Path, keep: set[str | None]) -> None:
    """Delete the base files (and their slots) of ``sidecar``'s snapshot whose names are not in ``keep``."""
    pattern = re.compile(rf"^({re.escape(sidecar.stem)}\.[0-9a-f]+)\.(?:faiss|slots\.npy)$")
    if not sidecar.parent.is_dir():
        return
    for path in sidecar.parent.iterdir():
        found = pattern.match(path.name)
        if found is not None and f"{found.group(1)}.faiss" not in keep:
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
                removed_base_slots=np.asarray(data["removed_base_slots"], dtype=np.int64),
                delta_face_ids=np.asarray(data["delta_face_ids"], dtype=np.int64),
                delta_subject_ids=np.asarray(data["delta_subject_ids"], dtype=np.int64),
                delta_vectors=np.asarray(data["delta_vectors"], dtype=np.float32),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise SnapshotError(f"unreadable: {type(error).__name__}") from error
    if contents.delta_face_ids.ndim != 1 or contents.delta_face_ids.shape != contents.delta_subject_ids.shape:
        raise SnapshotError("id maps disagree")
    if contents.removed_base_slots.ndim != 1:
        raise SnapshotError("malformed removed slots")
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
    slots: Slots  # the base's (mapped when the base is) with the delta's after them
    delta_vectors: FloatArray  # (T, D)


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
    if base.ntotal != base_slots or contents.delta_vectors.shape != (len(contents.delta_face_ids), dim):
        raise SnapshotError("FAISS index and id map differ in size")
    removed = contents.removed_base_slots
    if removed.size and (removed.min() < 0 or removed.max() >= base_slots):
        raise SnapshotError("removed slots outside the base")
    try:
        head = map_head(path.with_name(slots_file(base_file)), base_slots)
    except SlotsError as error:
        raise SnapshotError(f"base slots: {error}") from error
    slots = Slots(head if mmap else np.array(head))
    slots.mark_removed(removed)
    slots.place(contents.delta_face_ids, contents.delta_subject_ids)
    live = slots.faces_at(slots.live_slots())
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
        slots,
        contents.delta_vectors,
    )
