"""The service at 100,000 and 1,000,000 templates: insert rate, start-up, memory, search time, recall.

Per size, in one fresh SQLite database under ``--work-dir``: the real LFW
people (everyone with 2+ images enrols the first) and synthetic new people
up to N, from ``tools/scale_templates.py`` (its docstring says how they are
drawn and checked). Probes are other images of enrolled people (mated) and
people with one image who are not enrolled (strangers).

- insert: ``add_faces_bulk``, ``--batch`` templates per transaction, the
  database work alone.
- for ``FACEREC_INDEX_KIND`` flat and ivf: ``facerec serve`` to ``/ready``
  with the index built from the database (first start; ``--runs`` times,
  the snapshot deleted before each) and from the snapshot a graceful stop
  leaves (restart), with 1 and with 2 workers; each worker's VmRSS, Pss and
  anonymous memory from ``/proc``; ``/identify`` on the probe images at
  each ``--clients`` level (2 workers: the last level only).
- the pipeline's own time: a second server whose gallery is the real
  people alone (a flat index of 1,680 templates), up for the whole size;
  each level's requests alternate between it and the server measured, in
  blocks, so both meet the same background load.
- the index alone, in this process: the snapshots loaded as a worker loads
  them, each probe embedding searched alone for 11 subjects; ivf's
  recall@10 against flat, and the mated probes each finds among its top 10.
- Milvus Lite (``FACEREC_INDEX_URL``, 1 worker) up to ``--milvus-max``
  templates: ``MilvusFaceIndex.add`` of every template in process, the
  index alone, and the server as above.

Run from the repository root (on two cores 100k takes about 25 minutes, 1M about 35):
    .venv/bin/python bench/scale_bench.py --n 100000 --write-docs
    .venv/bin/python bench/scale_bench.py --n 1000000 --write-docs
    .venv/bin/python bench/scale_bench.py --n 20000 --runs 1 --requests 40   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
from render_docs import add_output_options, publish
from run_record import DEFAULT_LFW, REPO_ROOT, command_line, load_average, machine, read_results, timestamp
from scale_gallery import Gallery, Inserted, insert_gallery, load_gallery, probe_vectors
from scale_report import SECTION, render
from scale_results import SCALE_RESULTS, Accuracy, EngineResults, ScaleResults, ServerRun, SizeResults
from scale_search import (
    FAISS_PASSES,
    compare,
    database_batches,
    load_snapshot,
    milvus_insert,
    remove_snapshots,
    time_single_queries,
)
from scale_server import Load, environment, measured_start
from service_endpoints import Endpoint, make_endpoints
from service_server import Server, running_server
from service_workload import Workload

from app.core.arrays import FloatArray, IntArray
from app.core.settings import Settings
from app.index import FaceIndex, SearchIndex
from app.pipeline.manifest import ModelManifest, load_manifest
from app.pipeline.similarity import Metric

DEFAULT_WORK_DIR = REPO_ROOT / "data" / "bench-scale"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000], help="template counts")
    parser.add_argument(
        "--runs", type=int, default=3, help="server starts per kind; Milvus Lite's index-only passes"
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="/identify concurrency levels")
    parser.add_argument("--requests", type=int, default=300, help="/identify requests per level")
    parser.add_argument("--time-cap", type=float, default=300.0, help="seconds per level before it stops")
    parser.add_argument("--probes", type=int, default=400, help="mated probes")
    parser.add_argument("--strangers", type=int, default=200, help="probes of people not enrolled")
    parser.add_argument("--seed", type=int, default=1, help="tools/scale_templates.py --seed")
    parser.add_argument("--stored-queries", type=int, default=1000, help="stored templates as recall queries")
    parser.add_argument("--batch", type=int, default=5000, help="templates per insert transaction")
    parser.add_argument(
        "--milvus-max", type=int, default=100_000, help="measure Milvus Lite up to this size (0: never)"
    )
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="databases and snapshots")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW root (one folder per person)")
    parser.add_argument("--startup-timeout", type=float, default=1800.0, help="seconds to wait for /ready")
    add_output_options(parser, SCALE_RESULTS)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.requests < 1 or min(args.clients) < 1:
        parser.error("--runs, --requests and --clients must be at least 1")
    return args


class SizeBench:
    """Everything measured at one template count."""

    def __init__(self, args: argparse.Namespace, model: ModelManifest, n: int) -> None:
        self.args, self.model, self.n = args, model, n
        self.dim = cast(int, model.embedding_size)
        self.metric = cast(Metric, model.metric)
        self.folder = args.work_dir / f"n{n}"
        self.gallery_dir = self.folder / "gallery"
        self.levels = [(clients, args.requests) for clients in args.clients]

    def run(self, argv: list[str]) -> SizeResults:
        args, started, load_start = self.args, time.perf_counter(), load_average()
        print(f"== {self.n:,} templates", file=sys.stderr)
        gallery = load_gallery(args.work_dir, self.n, args.seed, args.probes, args.strangers, args.lfw)
        identify = identify_endpoint(gallery)
        probes = probe_vectors(gallery.probes, args.lfw)
        inserted = insert_gallery(self.gallery_dir, gallery, self.model, args.batch)
        rate = inserted.results["templates"] / inserted.results["seconds"]
        print(f"inserted in {inserted.results['seconds']:.1f} s ({rate:,.0f}/s)", file=sys.stderr)
        with ExitStack() as stack:
            load = Load(identify, self.levels, self.baseline(gallery, stack), args.time_cap)
            engines = [self.faiss(kind, load, probes) for kind in ("flat", "ivf")]
            flat, _ = load_snapshot(self.gallery_dir, "flat", self.dim, self.metric)
            ivf, _ = load_snapshot(self.gallery_dir, "ivf", self.dim, self.metric)
            targets = Targets.of(gallery, inserted, flat, probes, args.stored_queries, args.seed)
            accuracy = [targets.compare("ivf", flat, ivf)]
            print(f" {accuracy[-1]}", file=sys.stderr)
            del ivf
            milvus_skipped = None
            if self.n <= args.milvus_max:
                engine, agreement = self.milvus(load, inserted, probes, flat, targets)
                engines.append(engine)
                accuracy.append(agreement)
            else:
                milvus_skipped = f"over --milvus-max {args.milvus_max:,}"
        return SizeResults(
            command=command_line(argv),
            date=timestamp(),
            machine=machine(load_start),
            wall_s=time.perf_counter() - started,
            runs=args.runs,
            model={
                "name": self.model.name,
                "version": self.model.version,
                "dim": self.dim,
                "metric": self.metric,
            },
            templates=self.n,
            real_people=len(gallery.real_people),
            probes={"mated": len(gallery.mated), "strangers": len(gallery.strangers)},
            synthetic={
                "parameters": gallery.parameters,
                "fitted_on": gallery.fitted_on,
                "check": gallery.check,
            },
            insert=inserted.results,
            baseline_templates=len(gallery.real_people),
            engines=engines,
            accuracy=accuracy,
            milvus_skipped=milvus_skipped,
        )

    def starts(self, load: Load, workers: int) -> list[ServerRun]:
        """``--runs`` starts from the stored index, each under the load (2 workers: its last level only)."""
        if workers > 1:
            load = replace(load, levels=load.levels[-1:])
        runs = []
        for run in range(self.args.runs):
            result = measured_start(self.gallery_dir, workers, self.n, self.args.startup_timeout, load)
            mib = [m["rss_kib"] // 1024 for m in result["memory_loaded"]]
            print(
                f" start {run + 1}, {workers} worker(s): ready in {result['startup_s']:.1f} s, RSS {mib} MiB",
                file=sys.stderr,
            )
            runs.append(result)
        return runs

    def first_starts(self, forget: Callable[[], None]) -> list[ServerRun]:
        """``--runs`` starts with the index built from the database, ``forget`` deleting it before each."""
        runs = []
        for _ in range(self.args.runs):
            forget()
            result = measured_start(self.gallery_dir, 1, self.n, self.args.startup_timeout, None)
            print(f" first start: ready in {result['startup_s']:.1f} s", file=sys.stderr)
            runs.append(result)
        return runs

    def baseline(self, gallery: Gallery, stack: ExitStack) -> Server:
        """A server of the real people alone, up until ``stack`` closes: the pipeline's own time."""
        folder = self.folder / "baseline"
        small = insert_gallery(folder, gallery, self.model, self.args.batch, rows=len(gallery.real_people))
        with environment({"FACEREC_INDEX_KIND": "flat", "FACEREC_INDEX_URL": None}):
            server = stack.enter_context(
                running_server(folder, 1, small.results["templates"], self.args.startup_timeout)
            )
        print(f"baseline: {small.results['templates']:,} real people at {server.base_url}", file=sys.stderr)
        return server

    def faiss(self, kind: str, load: Load, probes: FloatArray) -> EngineResults:
        print(f"FAISS {kind}", file=sys.stderr)
        with environment({"FACEREC_INDEX_KIND": kind, "FACEREC_INDEX_URL": None}):
            first = self.first_starts(lambda: remove_snapshots(self.gallery_dir, kind))
            restarts = self.starts(load, workers=1)
            two = self.starts(load, workers=2)
        index, snapshot = load_snapshot(self.gallery_dir, kind, self.dim, self.metric)
        print(f" snapshot: {snapshot}", file=sys.stderr)
        return EngineResults(
            engine=kind,
            first_starts=first,
            restarts=restarts,
            restarts_two_workers=two,
            index_only=time_single_queries(index, probes, FAISS_PASSES),
            snapshot=snapshot,
            insert=None,
        )

    def milvus(
        self, load: Load, inserted: Inserted, probes: FloatArray, flat: FaceIndex, targets: Targets
    ) -> tuple[EngineResults, Accuracy]:
        print("Milvus Lite", file=sys.stderr)
        batches = database_batches(self.gallery_dir, inserted.collection_id, self.model.name)
        store, index, insert = milvus_insert(
            self.folder / "milvus-insert.db", batches, self.dim, self.metric, self.args.batch
        )
        del batches
        rate = insert["templates"] / insert["seconds"]
        print(f" inserted in {insert['seconds']:.1f} s ({rate:,.0f}/s)", file=sys.stderr)
        try:
            index_only = time_single_queries(index, probes, self.args.runs)
            agreement = targets.compare("milvus-lite", flat, index)
        finally:
            store.close()  # Milvus Lite: one process per file
        server_db = self.folder / "milvus-server.db"
        with environment({"FACEREC_INDEX_URL": str(server_db), "FACEREC_INDEX_KIND": None}):
            first = self.first_starts(lambda: remove_path(server_db))
            restarts = self.starts(load, workers=1)
        engine = EngineResults(
            engine="milvus-lite",
            first_starts=first,
            restarts=restarts,
            restarts_two_workers=[],  # Milvus Lite serves one process only
            index_only=index_only,
            snapshot=None,
            insert=insert,
        )
        return engine, agreement


@dataclass(frozen=True)
class Targets:
    """The queries accuracy is measured on, and the subject each mated probe should find."""

    probes: FloatArray  # (P, D) mated, then strangers
    mated: FloatArray  # (M, D)
    mate_subjects: list[int]
    stored: FloatArray  # (S, D) stored templates as queries
    stored_ids: IntArray  # (S,) their face ids

    @classmethod
    def of(
        cls, gallery: Gallery, inserted: Inserted, flat: FaceIndex, probes: FloatArray, stored: int, seed: int
    ) -> Targets:
        row_of = {name: row for row, name in enumerate(gallery.real_people)}
        mates = [int(inserted.face_ids[row_of[path.parent.name]]) for path in gallery.mated]
        subjects = [s for s in (flat.subject_of(face) for face in mates) if s is not None]
        if len(subjects) != len(mates):
            raise SystemExit("an enrolled person's template is missing from the flat index")
        rows = np.sort(np.random.default_rng(seed).choice(len(gallery.templates), stored, replace=False))
        return cls(
            probes=probes,
            mated=probes[: len(gallery.mated)],
            mate_subjects=subjects,
            stored=np.asarray(gallery.templates[rows], dtype=np.float32),
            stored_ids=inserted.face_ids[rows],
        )

    def compare(self, name: str, exact: SearchIndex, engine: SearchIndex) -> Accuracy:
        return compare(
            name, exact, engine, self.probes, self.mated, self.mate_subjects, self.stored, self.stored_ids
        )


def identify_endpoint(gallery: Gallery) -> Endpoint:
    """/identify on the probe images, two mated to one stranger, judged as ``service_endpoints`` does."""
    workload = Workload(gallery=[], mated=gallery.mated, nonmated=gallery.strangers, skipped=0)
    blobs = {path: path.read_bytes() for path in gallery.probes}
    return next(e for e in make_endpoints(workload, blobs) if e.path == "/identify")


def remove_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    path.unlink(missing_ok=True)


def merged(previous: ScaleResults | None, sizes: list[SizeResults]) -> ScaleResults:
    """The results file's sizes with these replacing any of the same template count."""
    kept = [] if previous is None else previous["sizes"]
    fresh = {size["templates"] for size in sizes}
    together = [size for size in kept if size["templates"] not in fresh] + sizes
    return ScaleResults(sizes=sorted(together, key=lambda size: size["templates"]))


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    settings = Settings()
    model = load_manifest(settings.models_dir / settings.embedder, verify=False)
    if model.embedding_size is None or model.metric is None:
        raise SystemExit(f"{model.name} declares no embedding size or metric")
    sizes = []
    for n in args.n:
        size = SizeBench(args, model, n).run(argv)
        raw = args.work_dir / f"scale-{n}.json"
        raw.write_text(json.dumps(size, indent=1) + "\n")  # kept whether or not --write-docs
        print(f"{n:,} templates done in {size['wall_s'] / 60:.1f} min; results in {raw}", file=sys.stderr)
        sizes.append(size)
    results = merged(read_results(args.results_dir / SCALE_RESULTS), sizes)
    print(f"{SECTION}\n\n{render(results)}")
    publish(args, SCALE_RESULTS, results)


if __name__ == "__main__":
    main(sys.argv[1:])
