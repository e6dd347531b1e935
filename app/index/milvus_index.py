"""The 1:N search index on Milvus: one collection of face templates, each tagged with its subject.

The public interface is ``FaceIndex``'s, so the change-log replay
(``app.index.replay``) drives either engine. Rows are ``face_id`` (primary
key), ``subject_id`` and ``vector``; ``add`` upserts, so replaying the log is
idempotent. The content lives in Milvus, not in this object: every read asks
the collection, with Strong consistency, so it sees every acknowledged write.

Similarities are "higher = more alike" as everywhere (``app.pipeline.similarity``):
cosine searches inner products (IP) of unit vectors; both Euclidean kinds
search L2 between prepared vectors, which Milvus reports squared, converted
with ``l2_squared_to_similarity``. The index is FLAT, exact like FaceIndex's
"flat" kind (Milvus Lite's AUTOINDEX is an approximate HNSW).

``applied_seq`` is stored in the collection's properties, next to the data,
so a new process knows which change-log seq the content reflects.

Milvus Lite specifics this module works around: rows not yet flushed are
searched row by row in Python (about 20 µs per row per query), so adds are
flushed every ``flush_rows`` rows; its write-ahead log is not fsynced per
write, so ``save_applied_seq`` flushes before storing the seq; its FLAT L2
search materialises (queries × rows × dim) differences, so L2 queries go in
small batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterable
from typing import Any, get_args

import numpy as np
from numpy.typing import ArrayLike
from pymilvus import DataType, MilvusClient, MilvusException

from app.core.arrays import FloatArray, IntArray
from app.core.logging import log_event
from app.index.candidates import Candidate, distinct_subjects, rank_subjects
from app.index.inputs import checked_templates, last_occurrences, prepared_queries
from app.pipeline.similarity import Metric, l2_squared_to_similarity, prepare

logger = logging.getLogger(__name__)

_MILVUS_METRIC = {"cosine": "IP", "euclidean": "L2", "damped_euclidean": "L2"}

# Milvus refuses a search limit (top k) above 16384; Milvus Lite does not, a server does.
MAX_TOPK = 16384

# Rows per upsert call: a few MB per gRPC message at typical dimensions.
UPSERT_BATCH = 4096

# Ids per `face_id in [...]` lookup when counting what ``remove`` finds.
LOOKUP_BATCH = 4096

# Queries per search call: Milvus caps nq at 16384; Milvus Lite's flat L2 needs
# (queries × segment rows × dim) floats, so L2 goes a few queries at a time.
QUERY_BATCH = {"IP": 1024, "L2": 4}

# Unflushed rows after which ``add``/``remove`` flush (see the module docstring).
FLUSH_ROWS = 1024

# How long a template count is reused (see ``ntotal``).
COUNT_TTL_S = 1.0
# MilvusException.code when the collection does not exist (dropped by another process).
COLLECTION_MISSING = 100

SEQ_PROPERTY = "facerec.applied_seq"
METRIC_PROPERTY = "facerec.metric"
_CONSISTENCY = "Strong"

# One search result row: similarities (k,), face ids (k,), subject ids (k,), best first.
Row = tuple[FloatArray, IntArray, IntArray]


def _not_in(field: str, values: Iterable[int]) -> str:
    listed = ", ".join(str(int(value)) for value in values)
    return f"{field} not in [{listed}]" if listed else ""


def _both(*clauses: str) -> str:
    return " and ".join(clause for clause in clauses if clause)


def _layout_mismatch(description: dict[str, Any], dim: int, metric: Metric) -> str | None:
    """Why an existing collection cannot hold this index's templates, or None when it can."""
    fields = {field["name"]: field for field in description.get("fields", [])}
    expected = {"face_id": DataType.INT64, "subject_id": DataType.INT64, "vector": DataType.FLOAT_VECTOR}
    if set(fields) != set(expected) or any(fields[name]["type"] != kind for name, kind in expected.items()):
        return "schema"
    if not fields["face_id"].get("is_primary") or description.get("auto_id"):
        return "schema"
    if int(fields["vector"].get("params", {}).get("dim", -1)) != dim:
        return "dim"
    if description.get("properties", {}).get(METRIC_PROPERTY) != metric:
        return "metric"
    return None


class MilvusFaceIndex:
    """Face templates in a Milvus collection, searchable by similarity, with face → subject ids.

    Build it with ``open``, which creates the collection when needed and reads
    back the stored ``applied_seq``. ``applied_seq`` is then a plain attribute
    the caller sets after applying changes (see ``app.index.replay``) and
    persists with ``save_applied_seq``.
    """

    def __init__(
        self,
        client: MilvusClient,
        collection: str,
        dim: int,
        metric: Metric,
        *,
        flush_rows: int = FLUSH_ROWS,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if metric not in get_args(Metric):
            raise ValueError(f"unknown metric {metric!r}")
        if flush_rows < 1:
            raise ValueError(f"flush_rows must be at least 1, got {flush_rows}")
        self.client = client
        self.collection = collection
        self.dim = dim
        self.metric: Metric = metric
        self.flush_rows = flush_rows
        self.applied_seq = 0
        self._milvus_metric = _MILVUS_METRIC[metric]
        self._writer = threading.Lock()
        self._unflushed = 0
        self._count: tuple[float, int] | None = None  # (when, templates)

    @classmethod
    def open(
        cls,
        client: MilvusClient,
        collection: str,
        dim: int,
        metric: Metric,
        *,
        flush_rows: int = FLUSH_ROWS,
    ) -> MilvusFaceIndex:
        """The index on ``collection``, created if missing; ``applied_seq`` is read back from it.

        A collection laid out for another dimension or metric holds another
        model's templates: it is dropped and recreated empty (seq 0), so the
        caller replays the whole change log.
        """
        index = cls(client, collection, dim, metric, flush_rows=flush_rows)
        if client.has_collection(collection):
            reason = _layout_mismatch(client.describe_collection(collection), dim, metric)
            if reason is not None:
                log_event(
                    logger,
                    "milvus_collection_recreated",
                    logging.WARNING,
                    collection=collection,
                    reason=reason,
                )
                client.drop_collection(collection)
        if not client.has_collection(collection):
            index._create()
        # A reopened collection starts released; rows recovered from the WAL sit unflushed.
        client.load_collection(collection)
        client.flush(collection)
        index.reload_applied_seq()
        return index

    # ----- content -------------------------------------------------------

    @property
    def ntotal(self) -> int:
        """Number of templates in the collection (0 once it is gone), counted at most every ``COUNT_TTL_S``.

        A count is a round trip (tens of ms on Milvus Lite) and /ready,
        /metrics and the admin page ask for it often.
        """
        now = time.monotonic()
        if self._count is not None and now - self._count[0] < COUNT_TTL_S:
            return self._count[1]
        try:
            rows = self.client.query(
                self.collection, filter="", output_fields=["count(*)"], consistency_level=_CONSISTENCY
            )
            count = int(rows[0]["count(*)"])
        except MilvusException as error:
            if error.code != COLLECTION_MISSING:
                raise
            count = 0
        self._count = (now, count)
        return count

    def __len__(self) -> int:
        return self.ntotal

    def face_ids(self) -> IntArray:
        """The face ids in the collection, ascending."""
        rows = self.client.query(
            self.collection, filter="face_id >= 0", output_fields=["face_id"], consistency_level=_CONSISTENCY
        )
        return np.sort(np.fromiter((row["face_id"] for row in rows), dtype=np.int64, count=len(rows)))

    def subject_of(self, face_id: int) -> int | None:
        rows = self.client.get(
            self.collection, ids=[int(face_id)], output_fields=["subject_id"], consistency_level=_CONSISTENCY
        )
        return int(rows[0]["subject_id"]) if rows else None

    def add(self, face_ids: ArrayLike, subject_ids: ArrayLike, embeddings: ArrayLike) -> None:
        """Upsert (N,) face ids with (N,) subject ids and (N, D) embeddings; a present id is replaced."""
        ids, subjects, vectors = checked_templates(face_ids, subject_ids, embeddings, self.dim)
        if ids.size == 0:
            return
        keep = last_occurrences(ids)  # Milvus would also keep the last, but says so nowhere
        ids, subjects = ids[keep], subjects[keep]
        prepared = prepare(vectors[keep], self.metric)  # (N', D)
        with self._writer:
            for begin in range(0, len(ids), UPSERT_BATCH):
                part = slice(begin, begin + UPSERT_BATCH)
                rows = [
                    {"face_id": face, "subject_id": subject, "vector": vector}
                    for face, subject, vector in zip(
                        ids[part].tolist(), subjects[part].tolist(), prepared[part], strict=True
                    )
                ]
                self.client.upsert(self.collection, rows)
            self._wrote(len(ids))

    def remove(self, face_ids: ArrayLike) -> int:
        """Remove face ids; unknown ids are ignored. Returns how many were present."""
        ids = np.unique(np.asarray(face_ids, dtype=np.int64).reshape(-1))
        removed = 0
        with self._writer:
            for begin in range(0, len(ids), LOOKUP_BATCH):
                wanted = ids[begin : begin + LOOKUP_BATCH].tolist()
                rows = self.client.query(
                    self.collection,
                    filter=f"face_id in {wanted}",
                    output_fields=["face_id"],
                    consistency_level=_CONSISTENCY,
                )
                present = [int(row["face_id"]) for row in rows]
                if present:
                    self.client.delete(self.collection, ids=present)
                    removed += len(present)
            self._wrote(removed)
        return removed

    # ----- search --------------------------------------------------------

    def search_templates(
        self, queries: ArrayLike, k: int, *, exclude_face_ids: Collection[int] | None = None
    ) -> tuple[FloatArray, IntArray]:
        """(Q, D) queries → similarities (Q, k) and face ids (Q, k), best first.

        Rows with fewer than k templates are padded with id -1 and similarity
        -inf. ``exclude_face_ids`` drops ids deleted since the last sync.
        """
        if not 1 <= k <= MAX_TOPK:
            raise ValueError(f"k must be in [1, {MAX_TOPK}], got {k}")
        prepared = prepared_queries(queries, self.dim, self.metric)
        rows = self._search(prepared, k, _not_in("face_id", exclude_face_ids or ()))
        similarities = np.full((len(rows), k), -np.inf, dtype=np.float32)  # (Q, k)
        ids = np.full((len(rows), k), -1, dtype=np.int64)  # (Q, k)
        for i, (row_similarities, row_faces, _) in enumerate(rows):
            similarities[i, : len(row_faces)] = row_similarities
            ids[i, : len(row_faces)] = row_faces
        return similarities, ids

    def search_subjects(
        self, queries: ArrayLike, top_n: int, *, exclude_face_ids: Collection[int] | None = None
    ) -> list[list[Candidate]]:
        """(Q, D) queries → per query up to ``top_n`` distinct subjects ranked by their best template.

        Templates are over-fetched (``4 * top_n + 16`` first). A query still
        short of ``top_n`` subjects searches again, k doubling up to Milvus's
        limit, with the subjects it already holds filtered out: those rounds
        hold only templates below the earlier ones, so appending them keeps
        the row sorted and the ranking exact however many templates a subject
        owns. (Milvus Lite's ``group_by_field`` over-fetches a fixed 10 × limit
        and can miss subjects, so it is not used.)
        """
        if top_n < 1:
            raise ValueError(f"top_n must be at least 1, got {top_n}")
        prepared = prepared_queries(queries, self.dim, self.metric)
        excluded = _not_in("face_id", exclude_face_ids or ())
        k = min(4 * top_n + 16, MAX_TOPK)
        rows = self._search(prepared, k, excluded)
        results = []
        for query, row in zip(prepared, rows, strict=True):
            row = self._complete_subjects(query, row, k, top_n, excluded)
            results.append(rank_subjects(*row, top_n))
        return results

    # ----- persistence ---------------------------------------------------

    def reload_applied_seq(self) -> int:
        """Read back the stored ``applied_seq`` (another process may have advanced it) and use it.

        0 when the collection is gone (dropped by another process).
        """
        if not self.client.has_collection(self.collection):
            self.applied_seq = 0
            return 0
        properties = self.client.describe_collection(self.collection).get("properties", {})
        self.applied_seq = int(properties.get(SEQ_PROPERTY, 0))
        return self.applied_seq

    def save_applied_seq(self) -> None:
        """Store ``applied_seq`` in the collection's properties, after flushing the data it covers.

        The flush puts acknowledged writes into data files before the seq is
        written, so after a crash the stored seq is at or behind the content,
        never ahead (replaying changes again is harmless).
        """
        with self._writer:
            self.client.flush(self.collection)
            self._unflushed = 0
            self.client.alter_collection_properties(
                self.collection, properties={SEQ_PROPERTY: str(int(self.applied_seq))}
            )

    def drop(self) -> None:
        """Delete the collection: its templates are gone for every process using it."""
        with self._writer:
            self.client.drop_collection(self.collection)
            self._unflushed = 0
        log_event(logger, "milvus_collection_dropped", collection=self.collection)

    # ----- internals -----------------------------------------------------

    def _create(self) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("face_id", DataType.INT64, is_primary=True)
        schema.add_field("subject_id", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        index_params = self.client.prepare_index_params()
        index_params.add_index(field_name="vector", index_type="FLAT", metric_type=self._milvus_metric)
        self.client.create_collection(
            self.collection,
            schema=schema,
            consistency_level=_CONSISTENCY,
            properties={METRIC_PROPERTY: self.metric, SEQ_PROPERTY: "0"},
        )
        # sync=False: pymilvus's wait for the (empty, instant) index build polls every 0.5 s
        # through an RPC Milvus Lite lacks; loading the collection waits for the index anyway.
        self.client.create_index(self.collection, index_params, sync=False)
        log_event(
            logger, "milvus_collection_created", collection=self.collection, dim=self.dim, metric=self.metric
        )

    def _wrote(self, rows: int) -> None:
        """Count unflushed rows and flush past ``flush_rows``; the caller holds ``_writer``."""
        self._count = None
        self._unflushed += rows
        if self._unflushed >= self.flush_rows:
            self.client.flush(self.collection)
            self._unflushed = 0

    def _search(self, queries: FloatArray, k: int, expr: str) -> list[Row]:
        """Search (Q, D) prepared queries → per query up to k (similarities, face ids, subject ids)."""
        rows: list[Row] = []
        step = QUERY_BATCH[self._milvus_metric]
        for begin in range(0, len(queries), step):
            try:
                results = self.client.search(
                    self.collection,
                    data=list(queries[begin : begin + step]),
                    limit=k,
                    filter=expr,
                    output_fields=["subject_id"],
                    anns_field="vector",
                    search_params={"metric_type": self._milvus_metric},
                    consistency_level=_CONSISTENCY,
                )
            except MilvusException as error:
                if error.code != COLLECTION_MISSING:
                    raise
                # Dropped by another process (the facerec collection was deleted): nothing to find.
                empty: Row = (np.empty(0, np.float32), np.empty(0, np.int64), np.empty(0, np.int64))
                rows.extend([empty] * len(queries[begin : begin + step]))
                continue
            for hits in results:
                distances = np.asarray(hits.distances, dtype=np.float32)  # (h,)
                if self._milvus_metric == "L2":
                    similarities = l2_squared_to_similarity(distances)
                else:
                    similarities = distances
                faces = np.asarray(hits.ids, dtype=np.int64)  # (h,)
                subjects = np.fromiter((hit["entity"]["subject_id"] for hit in hits), np.int64, len(faces))
                order = np.argsort(-similarities, kind="stable")  # rank_subjects relies on it
                rows.append((similarities[order], faces[order], subjects[order]))
        return rows

    def _complete_subjects(self, query: FloatArray, row: Row, k: int, top_n: int, excluded: str) -> Row:
        """Extend one query's row until it holds ``top_n`` subjects or the collection is exhausted."""
        similarities, faces, subjects = row
        fetched = len(faces)
        while fetched == k and distinct_subjects(faces, subjects) < top_n:
            k = min(2 * k, MAX_TOPK)
            others = _both(excluded, _not_in("subject_id", np.unique(subjects).tolist()))
            [(more_similarities, more_faces, more_subjects)] = self._search(query[None], k, others)
            similarities = np.concatenate([similarities, more_similarities])
            faces = np.concatenate([faces, more_faces])
            subjects = np.concatenate([subjects, more_subjects])
            fetched = len(more_faces)
        return similarities, faces, subjects


class MilvusStore:
    """A Milvus server (or a Milvus Lite file) holding one Milvus collection per facerec collection.

    ``uri`` is what ``MilvusClient`` takes: ``http://host:19530`` for a server
    or cluster, a local path ending in ``.db`` for Milvus Lite (one process
    only). Collection names start with ``namespace``, so several facerec
    databases can share one Milvus without meeting each other's templates.
    """

    def __init__(self, uri: str, namespace: str, token: str | None = None) -> None:
        self.uri = uri
        self.namespace = namespace
        self.client = MilvusClient(uri=uri, token=token or "")

    def name(self, collection_id: int) -> str:
        return f"{self.namespace}_c{collection_id}"

    def open(self, collection_id: int, dim: int, metric: Metric) -> MilvusFaceIndex:
        """The collection's index, created empty when missing; its ``applied_seq`` as stored."""
        return MilvusFaceIndex.open(self.client, self.name(collection_id), dim, metric)

    def recreate(self, collection_id: int, dim: int, metric: Metric) -> MilvusFaceIndex:
        """An empty index for the collection, whatever Milvus held for it before."""
        self.drop(collection_id)
        return self.open(collection_id, dim, metric)

    def drop(self, collection_id: int) -> None:
        """Delete the collection's templates from Milvus (nothing when there are none)."""
        name = self.name(collection_id)
        if self.client.has_collection(name):
            self.client.drop_collection(name)
            log_event(logger, "milvus_collection_dropped", collection=name)

    def drop_all_but(self, keep: set[int]) -> None:
        """Delete the Milvus collections of this namespace whose facerec collection is not in ``keep``."""
        prefix = f"{self.namespace}_c"
        for name in self.client.list_collections():
            if (
                name.startswith(prefix)
                and name[len(prefix) :].isdigit()
                and int(name[len(prefix) :]) not in keep
            ):
                self.client.drop_collection(name)
                log_event(logger, "milvus_orphan_collection_dropped", collection=name)

    def close(self) -> None:
        self.client.close()
