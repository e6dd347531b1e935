"""One measured start of ``facerec serve`` for the scale benchmark: time to ready, memory, /identify latency.

The server is ``service_server.running_server``'s; the index engine is
chosen through the environment it inherits (``FACEREC_INDEX_KIND``,
``FACEREC_INDEX_URL``). Memory is read from ``/proc`` for each worker
process: ``VmRSS`` counts every resident page, the memory-mapped snapshot
included, in each process that maps it, so it is reported beside ``Pss``
(``smaps_rollup``: shared pages divided among their sharers), the private
pages and the anonymous ones.

/identify latency is measured beside a baseline: a second server, started
once per size, whose gallery is the real people alone. Each level's
requests go in blocks alternating between the two, so the difference is
what the large index costs, under the same background load.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scale_results import ProcessMemory, ServerRun
from service_endpoints import Endpoint
from service_load import WARMUP_REQUESTS, Level, run_level
from service_server import Server, running_server

STARTED = "Application startup complete."
BLOCKS = 5  # a level's requests go in this many blocks, alternating with the baseline
# Memory at rest is read this long after the last request: a worker hands back what a burst
# freed once requests pause for a second (app.core.memory.QUIET_S).
SETTLE_S = 3.0
INDEX_OPENED = re.compile(r"index\.opened .*seconds=([0-9.]+)")


@contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with these variables set (None: removed) while inside; restored after."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def server_pid(server: Server) -> int:
    """The ``facerec serve`` process listening on the server's port."""
    port = server.base_url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            args = _cmdline(int(entry.name))
            if "serve" in args and "--port" in args and args[args.index("--port") + 1] == port:
                return int(entry.name)
    raise SystemExit(f"no facerec serve process on port {port}")


@dataclass(frozen=True)
class Processes:
    supervisor: int | None  # uvicorn's parent with several workers
    workers: list[int]


def processes(server: Server, workers: int) -> Processes:
    main = server_pid(server)
    if workers == 1:
        worker_pids = [main]
    else:
        worker_pids = [pid for pid in _children(main) if "spawn_main" in " ".join(_cmdline(pid))]
    return Processes(main if workers > 1 else None, sorted(worker_pids))


def memory(pid: int) -> ProcessMemory:
    """VmRSS and the ``smaps_rollup`` figures of one process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
    rollup = dict(
        (line.split(":")[0], int(line.split()[1]))
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    )
    return ProcessMemory(
        pid=pid,
        rss_kib=rss,
        pss_kib=rollup["Pss"],
        pss_file_kib=rollup["Pss_File"],
        private_kib=rollup["Private_Clean"] + rollup["Private_Dirty"],
        anonymous_kib=rollup["Anonymous"],
    )


def wait_workers_started(log: Path, workers: int, timeout_s: float) -> None:
    """Until the server log says every worker finished its startup (only one answers /ready)."""
    deadline = time.perf_counter() + timeout_s
    while log.read_text(errors="replace").count(STARTED) < workers:
        if time.perf_counter() > deadline:
            raise SystemExit(f"not every one of {workers} workers started in time")
        time.sleep(0.1)


def index_open_seconds(log: Path) -> list[float]:
    return [float(m.group(1)) for m in INDEX_OPENED.finditer(log.read_text(errors="replace"))]


@dataclass(frozen=True)
class Load:
    """What a measured start sends: /identify levels of (clients, requests), and the baseline beside it."""

    identify: Endpoint
    levels: list[tuple[int, int]]
    baseline: Server  # the same requests against the real people alone, in alternating blocks
    cap_s: float


def shifted(endpoint: Endpoint, offset: int) -> Endpoint:
    """``endpoint`` with request numbers starting at ``offset`` (a block continues the level's probes)."""
    return Endpoint(
        endpoint.path,
        lambda client, i: endpoint.send(client, i + offset),
        lambda i, body: endpoint.judge(i + offset, body),
    )


def paired_level(server: Server, load: Load, clients: int, requests: int) -> tuple[Level, Level]:
    """One level against ``server`` and against the baseline, in ``BLOCKS`` alternating blocks.

    The machine is shared: alternating every few seconds puts the same
    background load on both, so their difference is the large index's.
    """
    merged = (Level(load.identify.path, clients), Level(load.identify.path, clients))
    bounds = np.linspace(0, requests, BLOCKS + 1).round().astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        block = shifted(load.identify, int(start))  # every request of the level sends its own probe
        for target, into in ((load.baseline, merged[1]), (server, merged[0])):
            part = run_level(target, block, clients, int(stop - start), load.cap_s)
            into.latencies_ms += part.latencies_ms
            into.errors.update(part.errors)
            into.correct += part.correct
            into.wall_s += part.wall_s
            into.capped |= part.capped
    return merged


def measured_start(
    data_dir: Path, workers: int, templates: int, timeout_s: float, load: Load | None
) -> ServerRun:
    """Start, time to ready (every worker), memory, then the load's levels; stop."""
    log = data_dir / "server.log"
    with running_server(data_dir, workers, templates, timeout_s) as server:
        began = time.perf_counter() - server.startup_s
        wait_workers_started(log, workers, timeout_s)
        startup_s = time.perf_counter() - began if workers > 1 else server.startup_s
        found = processes(server, workers)
        ready = [memory(pid) for pid in found.workers]
        results, baseline = [], []
        if load is not None:
            for target in (load.baseline, server):
                run_level(target, load.identify, 1, WARMUP_REQUESTS, load.cap_s)
            for clients, requests in load.levels:
                level, base = paired_level(server, load, clients, requests)
                results.append(level.results())
                baseline.append(base.results())
                print(
                    f"  /identify x{clients}: p50 / p99 {percentiles(level)} ms, "
                    f"baseline {percentiles(base)} ms",
                    file=sys.stderr,
                )
        busy = [memory(pid) for pid in found.workers]
        time.sleep(SETTLE_S)
        loaded = [memory(pid) for pid in found.workers]
        supervisor = None if found.supervisor is None else memory(found.supervisor)
    return ServerRun(
        workers=workers,
        startup_s=startup_s,
        index_open_s=index_open_seconds(log),
        memory_ready=ready,
        memory_loaded=loaded,
        memory_busy=busy,
        supervisor=supervisor,
        identify=results,
        identify_baseline=baseline,
    )


def percentiles(level: Level) -> str:
    latency = level.results()["latency_ms"]
    return f"{latency['p50'] or 0:.1f} / {latency['p99'] or 0:.1f}"
