"""/verify and /identify over real HTTP, at 1, 4 and 16 concurrent clients, against a 10,000-face gallery.

The gallery is real: the largest face of LFW images (the face enrolment
would keep, through the same quality gate), embedded once by our pipeline
and cached under ``--cache``, then written straight into a fresh SQLite
database through the ``app/db`` repositories (enrolling 10,000 faces over
HTTP is not what is measured). The real server (``facerec serve``) then
starts on a free port of 127.0.0.1 and is loaded by httpx clients, one
sync client per thread. Probes are images held out of the gallery: for
each LFW person with several images the last one never enters it.
/health is timed idle and while /identify runs at 16 clients.

Run from the repository root:
    .venv/bin/python bench/service_bench.py --write-docs
    .venv/bin/python bench/service_bench.py --quick          # 1,000 faces, fewer requests
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from render_docs import add_output_options, publish
from run_record import (
    DEFAULT_LFW,
    PIPELINE_RESULTS,
    REPO_ROOT,
    SERVICE_RESULTS,
    command_line,
    load_average,
    machine,
    read_results,
    timestamp,
)
from service_cache import EmbeddingCache
from service_endpoints import make_endpoints
from service_load import WARMUP_REQUESTS, run_load
from service_report import SECTION, ServiceResults, render
from service_server import inference_slots, running_server
from service_workload import choose_workload, insert_gallery, split_lfw

from app.cli.service import default_workers
from app.core.settings import Settings

DEFAULT_CACHE = REPO_ROOT / ".cache" / "bench"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gallery", type=int, default=None, help="gallery faces (default 10000; --quick: 1000)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1,000 faces, few requests")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument(
        "--requests",
        type=int,
        nargs="+",
        default=None,
        help="requests per level (default 40 80 160; --quick 8 16 32)",
    )
    parser.add_argument(
        "--time-cap", type=float, default=None, help="seconds per level before it stops (180; 60)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="`facerec serve --workers` (default: serve's own default)"
    )
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW root (one folder per person)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where LFW embeddings are kept")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for /ready")
    add_output_options(parser, SERVICE_RESULTS)
    args = parser.parse_args(argv)
    args.gallery = args.gallery or (1000 if args.quick else 10_000)
    args.requests = args.requests or ([8, 16, 32] if args.quick else [40, 80, 160])
    args.time_cap = args.time_cap or (60.0 if args.quick else 180.0)
    args.workers = args.workers or default_workers(Settings())
    if len(args.requests) != len(args.clients):
        parser.error("give one --requests count per --clients level")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    settings = Settings()
    cache = EmbeddingCache(args.cache, args.lfw, settings)
    t0 = time.perf_counter()
    workload = choose_workload(cache, split_lfw(args.lfw), args.gallery)
    print(
        f"workload: {len(workload.gallery)} gallery faces, {len(workload.mated)} mated and "
        f"{len(workload.nonmated)} non-mated probes ({time.perf_counter() - t0:.0f} s)",
        file=sys.stderr,
    )
    blobs = {path: path.read_bytes() for path in {*workload.gallery, *workload.mated, *workload.nonmated}}

    with tempfile.TemporaryDirectory(prefix="facerec-bench-") as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        inserted = insert_gallery(data_dir, workload, cache)
        print(f"gallery: {inserted} templates inserted ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        with running_server(data_dir, args.workers, inserted, args.startup_timeout) as server:
            print(f"server ready in {server.startup_s:.1f} s at {server.base_url}", file=sys.stderr)
            slots = inference_slots(server)
            load_start = load_average()
            load = run_load(
                server, make_endpoints(workload, blobs), args.clients, args.requests, args.time_cap
            )
            load_machine = machine(load_start)

    results: ServiceResults = {
        "command": command_line(argv),
        "date": timestamp(),
        "machine": load_machine,
        "gallery": {
            "faces": inserted,
            "subjects": len({path.parent.name for path in workload.gallery}),
            "skipped": workload.skipped,
            "index_kind": settings.index_kind,
            "startup_s": server.startup_s,
        },
        "server": {
            "workers": args.workers,
            "inference_slots": slots,
            "environment": sorted(k for k in os.environ if k.startswith("FACEREC_")),
            "warmup_requests": WARMUP_REQUESTS,
        },
        "probes": {"mated": len(workload.mated), "nonmated": len(workload.nonmated)},
        "levels": [level.results() for level in load.levels],
        "health": load.health(),
    }
    print(f"{SECTION}\n\n{render(results, read_results(args.results_dir / PIPELINE_RESULTS))}")
    publish(args, SERVICE_RESULTS, results)


if __name__ == "__main__":
    main(sys.argv[1:])
