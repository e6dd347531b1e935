"""The index alone, in this process: single-query search time, ivf against flat, and Milvus Lite's insert.

FAISS indexes are the snapshots the server left at its last stop, loaded
as a worker loads them (``FaceIndex.load``, memory-mapped). Each probe
embedding is searched alone, as one /identify face is, for ``top_n``
distinct subjects.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import cast

import numpy as np
from scale_results import Accuracy, IndexOnly, IndexOnlyPass, InsertResults, IvfMeta, Snapshot

from app.core.arrays import FloatArray, IntArray
from app.core.settings import Settings
from app.db.faces import EmbeddingBatch, iter_embedding_batches
from app.db.session import create_engine_for, database_url, make_session_factory
from app.index import FaceIndex, KindSetting, SearchIndex
from app.index.milvus_index import MilvusFaceIndex, MilvusStore
from app.index.snapshot import read_meta
from app.pipeline.similarity import Metric

TOP_N = 11  # what /identify asks the index for: the top subject and its cohort of 10
FAISS_PASSES = 5  # index-only passes over the probes per FAISS kind (about 3,000 searches at 1M in 15 s)
RECALL_K = 10


def snapshot_path(data_dir: Path, kind: str) -> Path:
    """The one collection snapshot the server wrote under ``FACEREC_INDEX_KIND=kind``."""
    found = sorted((data_dir / "index").glob(f"*-{kind}-*/collection-*.npz"))
    if len(found) != 1:
        raise SystemExit(f"expected one {kind} snapshot under {data_dir / 'index'}, found {len(found)}")
    return found[0]


def remove_snapshots(data_dir: Path, kind: str) -> None:
    for folder in (data_dir / "index").glob(f"*-{kind}-*"):
        if folder.is_dir():  # not the writer's lock file beside the folders
            shutil.rmtree(folder)


def load_snapshot(data_dir: Path, kind: str, dim: int, metric: Metric) -> tuple[FaceIndex, Snapshot]:
    path = snapshot_path(data_dir, kind)
    index = FaceIndex.load(path, dim, metric, cast(KindSetting, kind), use_gpu=False)
    if index is None:
        raise SystemExit(f"{path} did not load")
    base = path.with_name(str(read_meta(path)["base_file"]))
    ivf = None if index.ivf is None else IvfMeta(**asdict(index.ivf))  # type: ignore[typeddict-item]
    return index, Snapshot(kind=index.kind, base_bytes=base.stat().st_size, ivf=ivf)


def time_single_queries(index: SearchIndex, queries: FloatArray, passes: int) -> IndexOnly:
    """p50/p99 of ``search_subjects(q, TOP_N)`` per query, each pass over every query in turn.

    FAISS searches with the threads a worker's search has (``faiss_index.SEARCH_THREADS``:
    one per query, whatever the process's OpenMP default).
    """
    index.search_subjects(queries[:5], TOP_N)  # warm: lazy set-up
    results = []
    for _ in range(passes):
        times = []
        for query in queries:
            began = time.perf_counter()
            index.search_subjects(query[None], TOP_N)
            times.append(1000 * (time.perf_counter() - began))
        results.append(
            IndexOnlyPass(p50_ms=float(np.percentile(times, 50)), p99_ms=float(np.percentile(times, 99)))
        )
        print(
            f"  index only: p50 {results[-1]['p50_ms']:.2f} p99 {results[-1]['p99_ms']:.2f} ms",
            file=sys.stderr,
        )
    return IndexOnly(queries=len(queries), top_n=TOP_N, passes=results)


def neighbours(index: SearchIndex, queries: FloatArray, own: IntArray | None) -> list[set[int]]:
    """Each query's top ``RECALL_K`` face ids, its own face (``own``, for stored templates) left out."""
    _, ids = index.search_templates(queries, RECALL_K + 1)  # (Q, k + 1)
    out = []
    for row, mine in zip(ids.tolist(), [None] * len(ids) if own is None else own.tolist(), strict=True):
        out.append(set([face for face in row if face >= 0 and face != mine][:RECALL_K]))
    return out


def recall(found: list[set[int]], truth: list[set[int]]) -> float:
    hits = sum(len(f & t) for f, t in zip(found, truth, strict=True))
    return hits / max(1, sum(len(t) for t in truth))


def mates_found(index: SearchIndex, mated: FloatArray, mate_subjects: list[int]) -> list[bool]:
    """Per mated probe: is its person among the top ``RECALL_K`` subjects?"""
    ranked = index.search_subjects(mated, RECALL_K)
    return [
        subject in {c.subject_id for c in row} for row, subject in zip(ranked, mate_subjects, strict=True)
    ]


def compare(
    name: str,
    exact: SearchIndex,
    approximate: SearchIndex,
    probes: FloatArray,
    mated: FloatArray,
    mate_subjects: list[int],
    stored: FloatArray,
    stored_ids: IntArray,
) -> Accuracy:
    """Recall@10 of ``approximate`` against ``exact`` and the mated probes each finds in its top 10."""
    by_exact = mates_found(exact, mated, mate_subjects)
    by_approximate = mates_found(approximate, mated, mate_subjects)
    return Accuracy(
        engine=name,
        probe_queries=len(probes),
        stored_queries=len(stored),
        recall_at_10_probes=recall(neighbours(approximate, probes, None), neighbours(exact, probes, None)),
        recall_at_10_stored=recall(
            neighbours(approximate, stored, stored_ids), neighbours(exact, stored, stored_ids)
        ),
        mated_probes=len(mated),
        found_exact=sum(by_exact),
        found_engine=sum(by_approximate),
        found_both=sum(a and b for a, b in zip(by_exact, by_approximate, strict=True)),
    )


def database_batches(data_dir: Path, collection_id: int, model_name: str) -> list[EmbeddingBatch]:
    """Every template of the collection as the server reads them to build an index."""
    engine = create_engine_for(database_url(Settings(data_dir=data_dir, database_url=None)))
    try:
        with make_session_factory(engine)() as session:
            return list(iter_embedding_batches(session, collection_id, model_name))
    finally:
        engine.dispose()


def milvus_insert(
    uri: Path, batches: list[EmbeddingBatch], dim: int, metric: Metric, batch: int
) -> tuple[MilvusStore, MilvusFaceIndex, InsertResults]:
    """A fresh Milvus Lite file holding these templates; the time of ``add`` and the final flush."""
    if uri.is_dir():
        shutil.rmtree(uri)
    uri.unlink(missing_ok=True)
    store = MilvusStore(str(uri), "scale_bench")
    index = store.open(1, dim, metric)  # Milvus collection scale_bench_c1
    face_ids = np.concatenate([b.face_ids for b in batches])
    subject_ids = np.concatenate([b.subject_ids for b in batches])
    vectors = np.concatenate([b.vectors for b in batches])
    began, cpu_began = time.perf_counter(), time.process_time()
    for start in range(0, len(face_ids), batch):
        part = slice(start, start + batch)
        index.add(face_ids[part], subject_ids[part], vectors[part])
    index.save_applied_seq()  # flushes what is left
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began
    size = (
        sum(f.stat().st_size for f in uri.rglob("*") if f.is_file()) if uri.is_dir() else uri.stat().st_size
    )
    return (
        store,
        index,
        InsertResults(
            templates=len(face_ids),
            batch=batch,
            seconds=seconds,
            cpu_seconds=cpu_seconds,
            database_bytes=size,
        ),
    )
