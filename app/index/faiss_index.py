"""The 1:N search index: FAISS over face templates, each tagged with its subject.

An index is a **base** FAISS index plus, once the base is memory-mapped
from a snapshot (read-only, shared by every worker), a small exact
**delta** of the templates added since. Slots number the base's labels
first, then the delta's; ``app.index.slots`` maps them to face and subject
ids. Removing a face tombstones its slot, which searches skip. The base is
rebuilt from the live vectors (off the search lock) when tombstones pass
``compact_fraction`` of the slots, when the delta outgrows
``max(DELTA_MIN, merge_fraction x base)``, when the collection's size calls
for another kind (``app.index.kinds``), or when an ivf index has grown
``RETRAIN_GROWTH`` times past the size its centroids were trained on.
Adding a face id that is already present replaces it, so replaying the
database's change log is idempotent.

Similarities are "higher = more alike" whatever the metric (see
``app.pipeline.similarity``): cosine searches inner products of unit-length
vectors, both Euclidean kinds search squared L2 between prepared vectors and
convert it with ``l2_squared_to_similarity``.

Locking: mutators serialise on ``_writer``; searches share a reader-writer
lock that mutations of the live FAISS indexes take exclusively. GPU indexes
are not safe to search from several threads, so there searches take it
exclusively too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast, get_args

import faiss
import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

from app.core.arrays import FloatArray, IntArray
from app.core.logging import log_event
from app.index import ivf
from app.index.candidates import Candidate, distinct_subjects, rank_subjects
from app.index.faiss_build import BuildOptions, build_base, search_parts
from app.index.inputs import checked_templates, last_occurrences, prepared_queries
from app.index.kinds import MMAP_FLAG, IndexKind, KindSetting, kind_for, kind_threshold, new_flat
from app.index.locks import ReadWriteLock
from app.index.slots import Slots, map_head
from app.index.snapshot import (
    SnapshotContents,
    SnapshotError,
    load_index_snapshot,
    read_meta,
    slots_file,
    write_base,
    write_snapshot,
)
from app.pipeline.similarity import Metric, prepare

logger = logging.getLogger(__name__)

# Vectors inserted into an HNSW index per hold of the write lock.
HNSW_ADD_CHUNK = 512
# The delta of a memory-mapped base is merged into a new base past this many templates
# (or merge_fraction of the base, whichever is more).
DELTA_MIN = 20_000
# An ivf index is retrained once it holds this many times what it was trained on.
RETRAIN_GROWTH = 2.0

# OpenMP threads per search. A request is one query and requests run side by side with
# inference on few cores: a fork-join over every core per query waits for cores other
# work holds (measured on 2 cores under load: flat 100k p50 24 ms with 2 threads, 2.4 ms
# with 1). Builds and training, in other threads, keep every core.
SEARCH_THREADS = 1

# GPU k-selection is limited (2048 in current FAISS); deeper fetches stop there.
GPU_MAX_K = 2048

# One search result row: similarities (k,), face ids (k,), subject ids (k,).
Row = tuple[FloatArray, IntArray, IntArray]


def _resolve_gpu(setting: KindSetting, use_gpu: bool | None) -> bool:
    gpus = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is None:
        return setting != "hnsw" and gpus > 0
    if use_gpu and setting == "hnsw":
        raise ValueError("GPU search supports the flat and ivf indexes, not 'hnsw'")
    if use_gpu and gpus == 0:
        raise ValueError("use_gpu=True but the installed faiss sees no GPU")
    return use_gpu


@contextmanager
def _search_threads() -> Iterator[None]:
    """``SEARCH_THREADS`` for this thread's FAISS calls meanwhile (OpenMP settings are per thread)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(SEARCH_THREADS)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class FaceIndex:
    """Face templates searchable by similarity, with face → subject ids.

    ``kind`` is the setting (``app.index.kinds``); ``self.kind`` is what the
    base is built as now. ``applied_seq`` is the database change counter the
    content reflects; the caller sets it after applying changes (see
    ``app.index.replay``).
    """

    def __init__(
        self,
        dim: int,
        metric: Metric,
        kind: KindSetting = "flat",
        *,
        use_gpu: bool | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        compact_fraction: float = 0.2,
        merge_fraction: float = 0.1,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if metric not in get_args(Metric):
            raise ValueError(f"unknown metric {metric!r}")
        if kind not in get_args(KindSetting):
            raise ValueError(f"unknown index kind {kind!r}; expected one of {get_args(KindSetting)}")
        if not 0.0 < compact_fraction < 1.0:
            raise ValueError("compact_fraction must be in (0, 1)")
        self.dim = dim
        self.metric: Metric = metric
        self.setting: KindSetting = kind
        self.kind: IndexKind = kind_for(kind, 0)
        self.on_gpu = _resolve_gpu(kind, use_gpu)
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.compact_fraction = compact_fraction
        self.merge_fraction = merge_fraction
        self.applied_seq = 0
        self.ivf: ivf.IvfTuning | None = None
        self._writer = threading.Lock()
        self._rw = ReadWriteLock()
        self._options = BuildOptions(metric, hnsw_m, ef_construction)
        self._base: Any = self._to_device(
            build_base(self.kind, np.empty((0, dim), np.float32), self._options)[0]
        )
        self._base_slots = 0
        self._base_file: str | None = None  # the snapshot base file holding exactly this base
        self._mapped = False  # the base is that file, memory-mapped read-only: adds go to the delta
        self._delta: Any | None = None  # exact index of what was added after a mapped base
        self._slots = Slots.of(np.empty(0, np.int64), np.empty(0, np.int64))

    @classmethod
    def build(
        cls,
        dim: int,
        metric: Metric,
        kind: KindSetting,
        face_ids: ArrayLike,
        subject_ids: ArrayLike,
        embeddings: ArrayLike,
        *,
        use_gpu: bool | None = None,
    ) -> FaceIndex:
        """An index of these templates at once, built as the kind their number calls for (ivf trained)."""
        index = cls(dim, metric, kind, use_gpu=use_gpu)
        ids, subjects, vectors = checked_templates(face_ids, subject_ids, embeddings, dim)
        keep = last_occurrences(ids)
        with index._writer:
            index._rebuild_from(ids[keep], subjects[keep], prepare(vectors[keep], metric), "build")
        return index

    # ----- content -------------------------------------------------------

    @property
    def ntotal(self) -> int:
        """Number of live templates."""
        return self._slots.live

    def __len__(self) -> int:
        return self.ntotal

    @property
    def mapped(self) -> bool:
        """Whether the base is a memory-mapped snapshot file (shared with other processes)."""
        return self._mapped

    @property
    def base_file(self) -> str | None:
        """The snapshot base file that holds this base, None when it has changed since one was written."""
        return self._base_file

    def face_ids(self) -> IntArray:
        """The live face ids, ascending."""
        with self._rw.read():
            return np.sort(self._slots.faces_at(self._slots.live_slots()))

    def subject_of(self, face_id: int) -> int | None:
        with self._rw.read():
            slot = self._slots.find(int(face_id))
            return None if slot is None else int(self._slots.subjects_at(np.array([slot]))[0])

    def add(self, face_ids: ArrayLike, subject_ids: ArrayLike, embeddings: ArrayLike) -> None:
        """Add (N,) face ids with (N,) subject ids and (N, D) embeddings; a present id is replaced."""
        ids, subjects, vectors = checked_templates(face_ids, subject_ids, embeddings, self.dim)
        if ids.size == 0:
            return
        keep = last_occurrences(ids)
        ids, subjects = ids[keep], subjects[keep]
        prepared = np.ascontiguousarray(prepare(vectors[keep], self.metric))  # (N', D)
        # HNSW inserts are slow (graph search per vector): release the lock between
        # chunks so a bulk enrolment does not stall searches for seconds.
        chunk = HNSW_ADD_CHUNK if self.kind == "hnsw" and not self._mapped else len(ids)
        with self._writer:
            for begin in range(0, len(ids), chunk):
                part = slice(begin, begin + chunk)
                with self._rw.write():
                    self._tombstone(ids[part])
                    self._append(ids[part], subjects[part], prepared[part])
            self._maintain()

    def remove(self, face_ids: ArrayLike) -> int:
        """Remove face ids; unknown ids are ignored. Returns how many were present."""
        ids = np.asarray(face_ids, dtype=np.int64).reshape(-1)
        with self._writer:
            with self._rw.write():
                removed = self._tombstone(ids)
            if removed:
                self._maintain()
        return removed

    # ----- search --------------------------------------------------------

    def search_templates(
        self, queries: ArrayLike, k: int, *, exclude_face_ids: Collection[int] | None = None
    ) -> tuple[FloatArray, IntArray]:
        """(Q, D) queries → similarities (Q, k) and face ids (Q, k), best first.

        Rows with fewer than k live templates are padded with id -1 and
        similarity -inf. ``exclude_face_ids`` drops ids deleted since the last sync.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        prepared = prepared_queries(queries, self.dim, self.metric)
        with self._search_guard(), _search_threads():
            rows = self._fetch(
                prepared, k + 16, exclude_face_ids, lambda faces, _: int((faces >= 0).sum()) >= k
            )
        similarities = np.full((len(rows), k), -np.inf, dtype=np.float32)  # (Q, k)
        ids = np.full((len(rows), k), -1, dtype=np.int64)  # (Q, k)
        for i, (row_similarities, row_faces, _) in enumerate(rows):
            valid = np.flatnonzero(row_faces >= 0)[:k]
            similarities[i, : len(valid)] = row_similarities[valid]
            ids[i, : len(valid)] = row_faces[valid]
        return similarities, ids

    def search_subjects(
        self, queries: ArrayLike, top_n: int, *, exclude_face_ids: Collection[int] | None = None
    ) -> list[list[Candidate]]:
        """(Q, D) queries → per query up to ``top_n`` distinct subjects ranked by their best template.

        Subjects own several templates, so templates are over-fetched (k
        doubling from ``4 * top_n + 16``) until ``top_n`` subjects appear or the
        search has nothing more to give.
        """
        if top_n < 1:
            raise ValueError(f"top_n must be at least 1, got {top_n}")
        prepared = prepared_queries(queries, self.dim, self.metric)
        with self._search_guard(), _search_threads():
            rows = self._fetch(
                prepared,
                4 * top_n + 16,
                exclude_face_ids,
                lambda faces, subjects: distinct_subjects(faces, subjects) >= top_n,
            )
        return [rank_subjects(sims, faces, subjects, top_n) for sims, faces, subjects in rows]

    # ----- snapshots -----------------------------------------------------

    def save(self, path: Path, applied_seq: int | None = None) -> None:
        """Write the snapshot at ``path`` (``app.index.snapshot``); ``applied_seq`` defaults to the index's.

        A base not yet on disk is written first, with its slots; afterwards
        this process maps both too (unless on a GPU), so their memory is the
        page cache's.
        """
        seq = self.applied_seq if applied_seq is None else applied_seq
        with self._writer:
            base_file = self._base_file
            if base_file is None:
                with self._search_guard():
                    base_file = write_base(path, self._cpu_base(), self._slots)
            with self._search_guard():
                delta_faces, delta_subjects = self._slots.tail_arrays(self._base_slots)
                contents = SnapshotContents(
                    self._meta(seq, base_file),
                    self._slots.removed_below(self._base_slots),
                    delta_faces,
                    delta_subjects,
                    self._delta_vectors(),
                )
            write_snapshot(path, contents)
            if self._base_file is None and not self.on_gpu:
                mapped = faiss.read_index(str(path.with_name(base_file)), MMAP_FLAG[self.kind])
                head = map_head(path.with_name(slots_file(base_file)), self._base_slots)
                with self._rw.write():
                    self._base, self._mapped = mapped, True
                    self._slots = self._slots.with_head(head)
            self._base_file = base_file

    def _meta(self, seq: int, base_file: str) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "metric": self.metric,
            "setting": self.setting,
            "kind": self.kind,
            "applied_seq": int(seq),
            "base_file": base_file,
            "base_slots": self._base_slots,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "ivf": None if self.ivf is None else asdict(self.ivf),
        }

    @classmethod
    def load(
        cls,
        path: Path,
        expected_dim: int,
        metric: Metric,
        kind: KindSetting | None = None,
        *,
        use_gpu: bool | None = None,
    ) -> FaceIndex | None:
        """The snapshot at ``path``, or None when it is missing, unreadable or for another model/setting.

        Never raises on a bad file: the caller then rebuilds from the database.
        """
        if not path.exists():
            log_event(logger, "index_snapshot_missing", path=path)
            return None
        try:
            stored = read_meta(path).get("setting") if kind is None else kind
            if stored not in get_args(KindSetting):
                raise SnapshotError(f"unknown index setting {stored!r}")
            setting = cast(KindSetting, stored)
            on_gpu = _resolve_gpu(setting, use_gpu)
            loaded = load_index_snapshot(path, expected_dim, metric, setting, mmap=not on_gpu)
        except SnapshotError as error:
            log_event(logger, "index_snapshot_rejected", logging.WARNING, path=path, reason=error)
            return None
        index = cls(expected_dim, metric, setting, use_gpu=on_gpu, **loaded.options)
        index.kind = loaded.kind  # type: ignore[assignment]  # checked against kinds.FAISS_CLASS
        index.ivf = None if loaded.ivf is None else ivf.IvfTuning(**loaded.ivf)
        index.applied_seq = loaded.applied_seq
        with index._writer, index._rw.write():
            index._base = index._to_device(loaded.base)
            index._base_slots = int(loaded.base.ntotal)
            index._base_file, index._mapped = loaded.base_file, loaded.mapped
            index._slots = loaded.slots
            if len(loaded.delta_vectors):
                index._delta = new_flat(expected_dim, metric)
                index._delta.add(np.ascontiguousarray(loaded.delta_vectors))
        return index

    # ----- internals -----------------------------------------------------

    def _to_device(self, cpu_index: Any) -> Any:
        """On the GPU when asked and the index is flat (ivf's exact re-ranking stays on the CPU)."""
        return faiss.index_cpu_to_all_gpus(cpu_index) if self._base_on_gpu(cpu_index) else cpu_index

    def _cpu_base(self) -> Any:
        return faiss.index_gpu_to_cpu(self._base) if self._base_on_gpu(self._base) else self._base

    def _base_on_gpu(self, index: Any) -> bool:
        return self.on_gpu and not isinstance(index, faiss.IndexRefine)

    def _search_guard(self) -> AbstractContextManager[None]:
        """Shared access to the FAISS indexes for reading; exclusive on GPU."""
        return self._rw.write() if self.on_gpu else self._rw.read()

    def _append(self, ids: IntArray, subjects: IntArray, prepared: FloatArray) -> None:
        """New slots for absent ``ids``; the caller holds the write lock."""
        if self._mapped:
            if self._delta is None:
                self._delta = new_flat(self.dim, self.metric)
            self._delta.add(prepared)
        else:
            self._base.add(prepared)
            self._base_slots += len(ids)
            self._base_file = None
        self._slots.place(ids, subjects)

    def _tombstone(self, ids: IntArray) -> int:
        """Mark the slots of ``ids`` removed; the caller holds the write lock."""
        return sum(self._slots.take(face_id) for face_id in ids.tolist())

    def _delta_vectors(self) -> FloatArray:
        if self._delta is None or self._delta.ntotal == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.asarray(self._delta.reconstruct_n(0, self._delta.ntotal), dtype=np.float32)

    def _rebuild_reason(self) -> str | None:
        slots, live = len(self._slots), self._slots.live
        dead = slots - live  # tombstoned slots
        if dead and dead > self.compact_fraction * slots:
            return "tombstones"
        delta = 0 if self._delta is None else int(self._delta.ntotal)
        if delta > max(DELTA_MIN, self.merge_fraction * self._base_slots):
            return "delta"
        wanted = kind_for(self.setting, live)
        if wanted != self.kind and (wanted == "ivf" or live < 0.5 * kind_threshold(self.setting)):
            return "kind"
        if self.ivf is not None and live > RETRAIN_GROWTH * self.ivf.trained_on:
            return "growth"
        return None

    def _maintain(self) -> None:
        """Rebuild the base from the live vectors when it is due; the caller holds ``_writer``.

        The new base is built while searches keep using the old one, then
        swapped in under the write lock, so a rebuild does not stall them.
        """
        reason = self._rebuild_reason()
        if reason is None:
            return
        live = self._slots.live_slots()  # (L,)
        with self._search_guard():
            vectors = self._vectors_of(live)
        self._rebuild_from(self._slots.faces_at(live), self._slots.subjects_at(live), vectors, reason)

    def _vectors_of(self, slots: IntArray) -> FloatArray:
        """The stored (prepared) vectors of ``slots``, (L, D)."""
        in_base = slots[slots < self._base_slots]
        parts = []
        if in_base.size:
            parts.append(np.asarray(self._cpu_base().reconstruct_batch(in_base), dtype=np.float32))
        in_delta = slots[slots >= self._base_slots] - self._base_slots
        if in_delta.size and self._delta is not None:
            parts.append(np.asarray(self._delta.reconstruct_batch(in_delta), dtype=np.float32))
        return np.concatenate(parts) if parts else np.empty((0, self.dim), dtype=np.float32)

    def _rebuild_from(self, ids: IntArray, subjects: IntArray, prepared: FloatArray, reason: str) -> None:
        """A new base of exactly these templates, swapped in; the caller holds ``_writer``."""
        started = time.perf_counter()
        kind = kind_for(self.setting, len(ids))
        centroids = None
        if kind == "ivf" and self.kind == "ivf" and reason in ("tombstones", "delta"):
            with self._search_guard():
                centroids = ivf.centroids_of(self._cpu_base())
        fresh, tuning = build_base(kind, prepared, self._options, centroids, self.ivf)
        fresh = self._to_device(fresh)
        with self._rw.write():
            slots_before = len(self._slots)
            self._base, self._base_slots, self._delta = fresh, len(ids), None
            self._base_file, self._mapped = None, False
            self.kind, self.ivf = kind, tuning
            self._slots = Slots.of(ids, subjects)
        log_event(
            logger,
            "index_rebuilt",
            reason=reason,
            kind=kind,
            slots_before=slots_before,
            live=len(ids),
            nprobe=None if tuning is None else tuning.nprobe,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _fetch(
        self,
        queries: FloatArray,
        start_k: int,
        exclude_face_ids: Collection[int] | None,
        enough: Callable[[IntArray, IntArray], bool],
    ) -> list[Row]:
        """Search (Q, D) queries, doubling k until ``enough(faces, subjects)`` or nothing more is found."""
        limit = min(len(self._slots), GPU_MAX_K) if self.on_gpu else len(self._slots)
        empty: Row = (np.empty(0, np.float32), np.empty(0, np.int64), np.empty(0, np.int64))
        rows = [empty] * len(queries)
        if limit == 0:
            return rows
        excluded = np.fromiter(exclude_face_ids, dtype=np.int64) if exclude_face_ids else None
        pending = np.arange(len(queries))
        k = min(start_k, limit)
        while pending.size:
            similarities, faces, subjects, exhausted = self._search_slots(queries[pending], k, excluded)
            unfinished = []
            for row, query in enumerate(pending.tolist()):
                if k == limit or exhausted[row] or enough(faces[row], subjects[row]):
                    rows[query] = (similarities[row], faces[row], subjects[row])
                else:
                    unfinished.append(query)
            pending = np.asarray(unfinished, dtype=np.intp)
            k = min(2 * k, limit)
        return rows

    def _search_slots(
        self, queries: FloatArray, k: int, excluded: IntArray | None
    ) -> tuple[FloatArray, IntArray, IntArray, npt.NDArray[np.bool_]]:
        """One search of base and delta → similarities, face ids, subject ids (Q, k), and exhausted (Q,).

        Ids are -1 where not live; a row is exhausted when the search found
        fewer than k slots (asking for more would find nothing new).
        """
        params = None
        if self.kind == "hnsw":
            # Per-call parameters: setting index.hnsw.efSearch would race between threads.
            # (SearchParametersHNSW is missing from faiss's type stubs.)
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))  # type: ignore[attr-defined]
        elif self.kind == "ivf":
            params = ivf.search_parameters(k)
        similarities, labels = search_parts(
            self._base, self._delta, self._base_slots, queries, k, self.metric, params
        )
        found = labels >= 0
        exhausted: npt.NDArray[np.bool_] = np.logical_not(found.all(axis=1))
        slots = np.where(found, labels, 0)
        faces = np.where(found, self._slots.faces_at(slots), -1)
        subjects = np.where(found, self._slots.subjects_at(slots), -1)
        if excluded is not None:
            faces[np.isin(faces, excluded)] = -1
        similarities[faces < 0] = -np.inf
        return similarities, faces.astype(np.int64), subjects.astype(np.int64), exhausted
