"""The 1:N search index: FAISS over face templates, each tagged with its subject.

FAISS stores the vectors under sequential labels ("slots"); two arrays map a
slot to its face id and subject id. Removing a face tombstones its slot,
which searches skip, because neither HNSW nor the GPU flat index can delete
vectors; once tombstones pass ``compact_fraction`` of the slots the index is
rebuilt from its live vectors, off the search lock. Adding a face id that is
already present replaces it, so replaying the database's change log is
idempotent.

Similarities are "higher = more alike" whatever the metric (see
``app.pipeline.similarity``): cosine searches inner products of unit-length
vectors, both Euclidean kinds search squared L2 between prepared vectors and
convert it with ``l2_squared_to_similarity``.

Locking: mutators serialise on ``_writer``; searches share a reader-writer
lock that mutations of the live FAISS index take exclusively. GPU indexes are
not safe to search from several threads, so there searches take it
exclusively too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, cast, get_args

import faiss
import numpy as np
from numpy.typing import ArrayLike

from app.core.arrays import FloatArray, IntArray
from app.core.logging import log_event
from app.index.candidates import Candidate, distinct_subjects, rank_subjects
from app.index.locks import ReadWriteLock
from app.index.snapshot import SnapshotContents, SnapshotError, load_index_snapshot, write_snapshot
from app.pipeline.similarity import Metric, l2_squared_to_similarity, prepare

logger = logging.getLogger(__name__)

IndexKind = Literal["flat", "hnsw"]

_FAISS_METRIC = {
    "cosine": faiss.METRIC_INNER_PRODUCT,
    "euclidean": faiss.METRIC_L2,
    "damped_euclidean": faiss.METRIC_L2,
}

# Vectors inserted into an HNSW index per hold of the write lock.
HNSW_ADD_CHUNK = 512

# GPU k-selection is limited (2048 in current FAISS); deeper fetches stop there.
GPU_MAX_K = 2048

# One search result row: similarities (k,), face ids (k,), subject ids (k,).
Row = tuple[FloatArray, IntArray, IntArray]


def _build_flat(dim: int, metric: Metric, hnsw_m: int, ef_construction: int) -> Any:
    return faiss.IndexFlat(dim, _FAISS_METRIC[metric])


def _build_hnsw(dim: int, metric: Metric, hnsw_m: int, ef_construction: int) -> Any:
    index = faiss.IndexHNSWFlat(dim, hnsw_m, _FAISS_METRIC[metric])
    index.hnsw.efConstruction = ef_construction
    return index


# kind → (builder, FAISS class a snapshot of that kind must deserialise to)
_KINDS: dict[str, tuple[Callable[[int, Metric, int, int], Any], type]] = {
    "flat": (_build_flat, faiss.IndexFlat),
    "hnsw": (_build_hnsw, faiss.IndexHNSWFlat),
}


def _resolve_gpu(kind: str, use_gpu: bool | None) -> bool:
    gpus = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is None:
        return kind == "flat" and gpus > 0
    if use_gpu and kind != "flat":
        raise ValueError(f"GPU search supports the flat index only, not {kind!r}")
    if use_gpu and gpus == 0:
        raise ValueError("use_gpu=True but the installed faiss sees no GPU")
    return use_gpu


def _last_occurrences(ids: IntArray) -> IntArray:
    """Positions of the last occurrence of each id, in input order (the last add wins)."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    return np.sort(len(ids) - 1 - first_in_reversed)


class FaceIndex:
    """Face templates searchable by similarity, with face → subject ids.

    ``applied_seq`` is the database change counter the content reflects; the
    caller sets it after applying changes (see ``app.index.replay``).
    """

    def __init__(
        self,
        dim: int,
        metric: Metric,
        kind: IndexKind = "flat",
        *,
        use_gpu: bool | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        compact_fraction: float = 0.2,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if metric not in get_args(Metric):
            raise ValueError(f"unknown metric {metric!r}")
        if kind not in _KINDS:
            raise ValueError(f"unknown index kind {kind!r}; expected one of {sorted(_KINDS)}")
        if not 0.0 < compact_fraction < 1.0:
            raise ValueError("compact_fraction must be in (0, 1)")
        self.dim = dim
        self.metric: Metric = metric
        self.kind: IndexKind = kind
        self.on_gpu = _resolve_gpu(kind, use_gpu)
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.compact_fraction = compact_fraction
        self.applied_seq = 0
        self._writer = threading.Lock()
        self._rw = ReadWriteLock()
        self._index: Any = self._to_device(self._new_cpu_index())
        self._slot_face: IntArray = np.empty(0, dtype=np.int64)  # (S,) -1 where removed
        self._slot_subject: IntArray = np.empty(0, dtype=np.int64)  # (S,)
        self._slot_of: dict[int, int] = {}  # live face id → slot
        self._dead = 0

    # ----- content -------------------------------------------------------

    @property
    def ntotal(self) -> int:
        """Number of live templates."""
        return len(self._slot_of)

    def __len__(self) -> int:
        return self.ntotal

    def face_ids(self) -> IntArray:
        """The live face ids, ascending."""
        with self._rw.read():
            return np.sort(self._slot_face[self._slot_face >= 0])

    def subject_of(self, face_id: int) -> int | None:
        with self._rw.read():
            slot = self._slot_of.get(int(face_id))
            return None if slot is None else int(self._slot_subject[slot])

    def add(self, face_ids: ArrayLike, subject_ids: ArrayLike, embeddings: ArrayLike) -> None:
        """Add (N,) face ids with (N,) subject ids and (N, D) embeddings; a present id is replaced."""
        ids = np.asarray(face_ids, dtype=np.int64).reshape(-1)
        subjects = np.asarray(subject_ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(ids), self.dim) or len(subjects) != len(ids):
            raise ValueError(
                f"expected N ids, N subjects and (N, {self.dim}) embeddings; got {len(ids)}, "
                f"{len(subjects)} and {vectors.shape}"
            )
        if (ids < 0).any():
            raise ValueError("face ids must be non-negative")
        if not np.isfinite(vectors).all():
            raise ValueError("embeddings must be finite")
        if ids.size == 0:
            return
        keep = _last_occurrences(ids)
        ids, subjects = ids[keep], subjects[keep]
        prepared = np.ascontiguousarray(prepare(vectors[keep], self.metric))  # (N', D)
        # HNSW inserts are slow (graph search per vector): release the lock between
        # chunks so a bulk enrolment does not stall searches for seconds.
        chunk = HNSW_ADD_CHUNK if self.kind == "hnsw" else len(ids)
        with self._writer:
            for begin in range(0, len(ids), chunk):
                part = slice(begin, begin + chunk)
                with self._rw.write():
                    self._tombstone(ids[part])
                    start = len(self._slot_face)
                    self._index.add(prepared[part])
                    self._slot_face = np.concatenate([self._slot_face, ids[part]])
                    self._slot_subject = np.concatenate([self._slot_subject, subjects[part]])
                    new_slots = range(start, len(self._slot_face))
                    self._slot_of.update(zip(ids[part].tolist(), new_slots, strict=True))
            self._compact_if_needed()

    def remove(self, face_ids: ArrayLike) -> int:
        """Remove face ids; unknown ids are ignored. Returns how many were present."""
        ids = np.asarray(face_ids, dtype=np.int64).reshape(-1)
        with self._writer:
            with self._rw.write():
                removed = self._tombstone(ids)
            if removed:
                self._compact_if_needed()
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
        prepared = self._prepared_queries(queries)
        with self._search_guard():
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
        whole index has been searched.
        """
        if top_n < 1:
            raise ValueError(f"top_n must be at least 1, got {top_n}")
        prepared = self._prepared_queries(queries)
        with self._search_guard():
            rows = self._fetch(
                prepared,
                4 * top_n + 16,
                exclude_face_ids,
                lambda faces, subjects: distinct_subjects(faces, subjects) >= top_n,
            )
        return [rank_subjects(sims, faces, subjects, top_n) for sims, faces, subjects in rows]

    # ----- snapshots -----------------------------------------------------

    def save(self, path: Path, applied_seq: int | None = None) -> None:
        """Write an atomic snapshot; ``applied_seq`` defaults to the index's own."""
        seq = self.applied_seq if applied_seq is None else applied_seq
        with self._writer:
            with self._search_guard():
                index_bytes = faiss.serialize_index(self._cpu_index())
            meta = {
                "dim": self.dim,
                "metric": self.metric,
                "kind": self.kind,
                "applied_seq": int(seq),
                "hnsw_m": self.hnsw_m,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
            }
            slot_face, slot_subject = self._slot_face.copy(), self._slot_subject.copy()
        write_snapshot(path, SnapshotContents(meta, index_bytes, slot_face, slot_subject))

    @classmethod
    def load(
        cls,
        path: Path,
        expected_dim: int,
        metric: Metric,
        kind: IndexKind | None = None,
        *,
        use_gpu: bool | None = None,
    ) -> FaceIndex | None:
        """The snapshot at ``path``, or None when it is missing, unreadable or for another model/kind.

        Never raises on a bad file: the caller then rebuilds from the database.
        """
        if not path.exists():
            log_event(logger, "index_snapshot_missing", path=path)
            return None
        expected = {name: faiss_class for name, (_, faiss_class) in _KINDS.items() if kind in (None, name)}
        try:
            loaded = load_index_snapshot(path, expected_dim, metric, _FAISS_METRIC[metric], expected)
        except SnapshotError as error:
            log_event(logger, "index_snapshot_rejected", logging.WARNING, path=path, reason=error)
            return None
        built_as = cast(IndexKind, loaded.kind)  # one of ``expected``'s keys, so of _KINDS'
        index = cls(expected_dim, metric, built_as, use_gpu=use_gpu, **loaded.options)
        index._install(loaded.cpu_index, loaded.slot_face_ids, loaded.slot_subject_ids)
        index.applied_seq = loaded.applied_seq
        return index

    # ----- internals -----------------------------------------------------

    def _new_cpu_index(self) -> Any:
        build, _ = _KINDS[self.kind]
        return build(self.dim, self.metric, self.hnsw_m, self.ef_construction)

    def _to_device(self, cpu_index: Any) -> Any:
        return faiss.index_cpu_to_all_gpus(cpu_index) if self.on_gpu else cpu_index

    def _cpu_index(self) -> Any:
        return faiss.index_gpu_to_cpu(self._index) if self.on_gpu else self._index

    def _search_guard(self) -> AbstractContextManager[None]:
        """Shared access to the FAISS index for reading; exclusive on GPU."""
        return self._rw.write() if self.on_gpu else self._rw.read()

    def _install(self, cpu_index: Any, slot_face: IntArray, slot_subject: IntArray) -> None:
        with self._writer, self._rw.write():
            self._index = self._to_device(cpu_index)
            self._slot_face = slot_face
            self._slot_subject = slot_subject
            live = np.flatnonzero(slot_face >= 0)
            self._slot_of = dict(zip(slot_face[live].tolist(), live.tolist(), strict=True))
            self._dead = len(slot_face) - len(live)

    def _tombstone(self, ids: IntArray) -> int:
        """Mark the slots of ``ids`` removed; the caller holds the write lock."""
        removed = 0
        for face_id in ids.tolist():
            slot = self._slot_of.pop(face_id, None)
            if slot is not None:
                self._slot_face[slot] = -1
                removed += 1
        self._dead += removed
        return removed

    def _compact_if_needed(self) -> None:
        """Rebuild from live vectors once tombstones pass the threshold; the caller holds ``_writer``.

        The new index is built while searches keep using the old one, then
        swapped in under the write lock, so an HNSW rebuild does not stall them.
        """
        slots = len(self._slot_face)
        if self._dead == 0 or self._dead <= self.compact_fraction * slots:
            return
        live = np.flatnonzero(self._slot_face >= 0)  # (L,)
        fresh = self._new_cpu_index()
        if live.size:
            with self._search_guard():
                vectors = self._cpu_index().reconstruct_batch(live)  # (L, D)
            fresh.add(np.ascontiguousarray(vectors, dtype=np.float32))
        fresh = self._to_device(fresh)
        slot_face, slot_subject = self._slot_face[live], self._slot_subject[live]
        with self._rw.write():
            self._index = fresh
            self._slot_face, self._slot_subject = slot_face, slot_subject
            self._slot_of = dict(zip(slot_face.tolist(), range(len(live)), strict=True))
            self._dead = 0
        log_event(logger, "index_compacted", kind=self.kind, slots_before=slots, live=int(live.size))

    def _prepared_queries(self, queries: ArrayLike) -> FloatArray:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}), got {q.shape}")
        if not np.isfinite(q).all():
            raise ValueError("queries must be finite")
        return np.ascontiguousarray(prepare(q, self.metric))  # (Q, D)

    def _fetch(
        self,
        queries: FloatArray,
        start_k: int,
        exclude_face_ids: Collection[int] | None,
        enough: Callable[[IntArray, IntArray], bool],
    ) -> list[Row]:
        """Search (Q, D) queries, doubling k until ``enough(faces, subjects)`` or k covers every slot."""
        limit = min(len(self._slot_face), GPU_MAX_K) if self.on_gpu else len(self._slot_face)
        empty: Row = (np.empty(0, np.float32), np.empty(0, np.int64), np.empty(0, np.int64))
        rows = [empty] * len(queries)
        if limit == 0:
            return rows
        excluded = np.fromiter(exclude_face_ids, dtype=np.int64) if exclude_face_ids else None
        pending = np.arange(len(queries))
        k = min(start_k, limit)
        while pending.size:
            similarities, faces, subjects = self._search_slots(queries[pending], k, excluded)  # (P, k)
            unfinished = []
            for row, query in enumerate(pending.tolist()):
                if k == limit or enough(faces[row], subjects[row]):
                    rows[query] = (similarities[row], faces[row], subjects[row])
                else:
                    unfinished.append(query)
            pending = np.asarray(unfinished, dtype=np.intp)
            k = min(2 * k, limit)
        return rows

    def _search_slots(
        self, queries: FloatArray, k: int, excluded: IntArray | None
    ) -> tuple[FloatArray, IntArray, IntArray]:
        """One FAISS search → similarities, face ids, subject ids, each (Q, k); id -1 where not live."""
        params = None
        if self.kind == "hnsw":
            # Per-call parameters: setting index.hnsw.efSearch would race between threads.
            # (SearchParametersHNSW is missing from faiss's type stubs.)
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))  # type: ignore[attr-defined]
        distances, labels = self._index.search(queries, k, params=params)  # (Q, k) each
        if self.metric == "cosine":
            similarities = np.asarray(distances, dtype=np.float32)
        else:
            similarities = l2_squared_to_similarity(distances)
        found = labels >= 0
        slots = np.where(found, labels, 0)
        faces = np.where(found, self._slot_face[slots], -1)
        subjects = np.where(found, self._slot_subject[slots], -1)
        if excluded is not None:
            faces[np.isin(faces, excluded)] = -1
        similarities[faces < 0] = -np.inf
        return similarities, faces, subjects
