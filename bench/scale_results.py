"""The scale benchmark's results as kept in ``bench/results/scale.json``: their JSON shape."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from run_record import Machine
from service_report import LevelResults

SCALE_RESULTS = "scale.json"


class InsertResults(TypedDict):
    templates: int
    batch: int  # templates per transaction
    seconds: float  # wall time of the transactions alone (templates prepared before each)
    cpu_seconds: float  # of this process in them (SQLite's work included)
    database_bytes: int  # the SQLite file afterwards


class ProcessMemory(TypedDict):
    pid: int
    rss_kib: int  # VmRSS: every resident page, shared ones counted in each process
    pss_kib: int  # Pss (smaps_rollup): shared pages divided among the processes sharing them
    pss_file_kib: int  # Pss_File: the file-backed part of it (the mapped snapshot, libraries)
    private_kib: int  # Private_Clean + Private_Dirty: pages no other process maps now
    anonymous_kib: int  # Anonymous: heap and the like, never shared between spawned workers


class ServerRun(TypedDict):
    workers: int
    startup_s: float  # `facerec serve` to /ready with every template (and every worker started)
    index_open_s: list[float]  # each worker's own `index.opened` seconds, from the server log
    memory_ready: list[ProcessMemory]  # each worker, once ready
    memory_loaded: list[ProcessMemory]  # each worker, at rest SETTLE_S after the /identify levels
    memory_busy: NotRequired[list[ProcessMemory]]  # each worker, right after them
    supervisor: ProcessMemory | None  # uvicorn's parent process with several workers
    identify: list[LevelResults]  # one per client level, in the order run
    identify_baseline: list[LevelResults]  # the same levels against the real people alone, alongside


class IndexOnlyPass(TypedDict):
    p50_ms: float
    p99_ms: float


class IndexOnly(TypedDict):
    queries: int  # probe embeddings, each searched alone
    top_n: int  # distinct subjects per query, as /identify asks
    passes: list[IndexOnlyPass]


class IvfMeta(TypedDict):
    nlist: int
    nprobe: int
    trained_on: int
    recall_at_10: float  # measured at training on stored templates


class Snapshot(TypedDict):
    kind: str  # what the snapshot's base is built as
    base_bytes: int  # the memory-mapped .faiss file
    ivf: IvfMeta | None


class EngineResults(TypedDict):
    engine: str  # "flat", "ivf" (FACEREC_INDEX_KIND) or "milvus-lite" (FACEREC_INDEX_URL)
    first_starts: list[ServerRun]  # index built from the database, 1 worker
    restarts: list[ServerRun]  # index from the snapshot (or the Milvus collection), 1 worker
    restarts_two_workers: list[ServerRun]
    index_only: IndexOnly
    snapshot: Snapshot | None  # FAISS only
    insert: InsertResults | None  # Milvus only: MilvusFaceIndex.add of every template, in process


class Accuracy(TypedDict):
    """Another engine against FAISS flat (exact), on the same templates."""

    engine: str  # "ivf", "milvus-lite"
    probe_queries: int
    stored_queries: int  # stored templates as queries (each one's own face left out)
    recall_at_10_probes: float
    recall_at_10_stored: float
    mated_probes: int
    found_exact: int  # mated probes whose person flat has among the top 10 subjects
    found_engine: int  # ... that the engine has there
    found_both: int


class SyntheticCheck(TypedDict):
    parameters: dict[str, Any]  # tools/scale_templates.py's
    fitted_on: int  # real people the mixture was fitted on
    check: dict[str, Any]  # its similarity quantiles


class SizeResults(TypedDict):
    command: str
    date: str  # ISO 8601, local offset
    machine: Machine  # load average when the size's work began and ended
    wall_s: float  # the whole size, generation to the last measurement
    runs: int  # server starts per measurement (and Milvus Lite's index-only passes)
    model: dict[str, Any]  # name, version, dim, metric
    templates: int
    real_people: int
    probes: dict[str, int]  # mated, strangers
    synthetic: SyntheticCheck
    insert: InsertResults
    baseline_templates: int  # the baseline server's gallery: the real people alone
    engines: list[EngineResults]
    accuracy: list[Accuracy]
    milvus_skipped: str | None  # why Milvus Lite was not measured at this size


class ScaleResults(TypedDict):
    sizes: list[SizeResults]  # one per template count, ascending
