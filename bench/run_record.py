"""What every benchmark run records about itself, and where the results files and the docs live.

Each benchmark writes its figures as JSON under ``bench/results/`` and the
``docs/benchmarks.md`` sections are rendered from those files, so the docs
can be re-rendered (a wording change, a new derived figure) without
rerunning a benchmark on a quiet machine.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, TypedDict

from app.core.cpu import cpu_flags

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS_FILE = REPO_ROOT / "docs" / "benchmarks.md"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
# File names inside a results folder.
PIPELINE_RESULTS, SERVICE_RESULTS, MODELS_RESULTS = "pipeline.json", "service.json", "models.json"
DEFAULT_LFW = REPO_ROOT.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled"


class Machine(TypedDict):
    cpu: str
    cores: int  # os.cpu_count()
    load_start: float  # 1-minute load average when the timed work began
    load_end: float  # ... and when it ended: how busy the machine was meanwhile


def load_average() -> float:
    return os.getloadavg()[0]


def machine(load_start: float) -> Machine:
    """The machine as it is now, at the end of the timed work that began at ``load_start``."""
    return Machine(cpu=cpu_model(), cores=os.cpu_count() or 0, load_start=load_start, load_end=load_average())


def cpu_model() -> str:
    """The CPU's name and whether it has VNNI: int8 timings differ most between the two kinds."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    name = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        "unknown",
    )
    flags = cpu_flags(cpuinfo)
    kind = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-VNNI" if "avx_vnni" in flags else "no VNNI"
    return f"{name} ({kind})"


def command_line(argv: list[str]) -> str:
    """The command that ran this benchmark, as a reader would type it from the repository root,
    led by the ``FACEREC_`` settings it ran under (they change what is measured)."""
    settings = [
        f"{name}={shlex.quote(value)}"
        for name, value in sorted(os.environ.items())
        if name.startswith("FACEREC_")
    ]
    script = shlex.join([os.path.relpath(sys.argv[0], REPO_ROOT), *argv])
    return " ".join([*settings, ".venv/bin/python", script])


def timestamp() -> str:
    """Now, in ISO 8601 to the minute with the local UTC offset."""
    return datetime.datetime.now().astimezone().isoformat(timespec="minutes")


def display_date(iso: str) -> str:
    """``2026-11-29T19:16+00:00`` as the docs print it: ``2026-11-29 19:16 UTC``."""
    moment = datetime.datetime.fromisoformat(iso)
    return f"{moment:%Y-%m-%d %H:%M} {moment.tzname()}"


def write_results(path: Path, results: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def read_results(path: Path) -> Any:
    """The parsed JSON at ``path``, or None when there is none (that benchmark never wrote results)."""
    return json.loads(path.read_text()) if path.is_file() else None
