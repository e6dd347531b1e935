"""The memory-per-model benchmark's results: their JSON shape, and the docs section rendered from them.

The JSON holds what ``/proc/self/status`` said at each checkpoint of each
process (every repeat's value and their median); what a model adds is the
difference between two checkpoints of the same process, derived here, per
repeat, and the median of those differences reported.
"""

from __future__ import annotations

import statistics
from typing import TypedDict

from run_record import Machine, display_date

SECTION = "## Memory per model"
KIB_PER_MIB = 1024


class Reading(TypedDict):
    """One figure of ``/proc/self/status``, in KiB: each repeat's value (in order) and their median."""

    median_kib: float
    runs_kib: list[int]


class Checkpoint(TypedDict):
    rss: Reading  # VmRSS: resident now
    peak: Reading  # VmHWM: the most that was resident at any moment so far


class ModelSteps(TypedDict):
    model: str
    loaded: Checkpoint  # after ``Pipelines.runner(model)``: embedder and detector sessions built
    analyzed: Checkpoint  # after its first ``runner.analyze(image, max_faces=1)``


class ProcessRun(TypedDict):
    """One kind of process, started afresh ``repeats`` times: its checkpoints in order."""

    python: Checkpoint  # the interpreter, before the service's modules are imported
    imported: Checkpoint  # after ``import app.main``
    models: list[ModelSteps]  # in the order they were loaded


class ModelInfo(TypedDict):
    model: str  # the folder name, what a collection names
    detector: str  # the detector folder its pipeline runs: its pack's, else the configured one
    onnx_bytes: int  # the embedder's ONNX file
    detector_onnx_bytes: int
    embedding_size: int
    input: str  # "150x150": the aligned crop the embedder takes


class Setup(TypedDict):
    repeats: int  # fresh processes per measurement
    image: str  # the photo analysed, relative to the LFW root when it is under it
    onnxruntime: str
    python: str
    inference_threads: int  # ONNX Runtime intra-op threads per session (the service's rule for this machine)
    inference_slots: int
    default_model: str  # loaded first when several share a process


class ModelsResults(TypedDict):
    command: str
    date: str  # ISO 8601, local offset
    machine: Machine
    setup: Setup
    models: list[ModelInfo]  # every embedder installed, by name
    alone: dict[str, ProcessRun]  # model → a process loading that model only
    together: ProcessRun | None  # the default model, then every other one; None with a single embedder


def mib(kib: float) -> str:
    return f"{kib / KIB_PER_MIB:,.1f}"


def file_mib(size: int) -> str:
    return f"{size / 2**20:,.1f}"


def differences(after: Reading, before: Reading) -> list[int]:
    """KiB ``after`` minus ``before``, one per repeat: each process's own difference."""
    return [a - b for a, b in zip(after["runs_kib"], before["runs_kib"], strict=True)]


def grown(after: Reading, before: Reading) -> float:
    """The median over repeats of what the process grew by from ``before`` to ``after``, KiB."""
    return statistics.median(differences(after, before))


def grown_with_range(after: Reading, before: Reading) -> str:
    """The median growth in bold, then the least and the most of the repeats: how steady it is."""
    each = differences(after, before)
    return f"**+{mib(statistics.median(each))}** ({mib(min(each))}–{mib(max(each))})"


def alone_rows(results: ModelsResults) -> list[str]:
    rows = []
    for info in results["models"]:
        run = results["alone"][info["model"]]
        imported, (steps,) = run["imported"]["rss"], run["models"]
        loaded, analyzed = steps["loaded"]["rss"], steps["analyzed"]["rss"]
        rows.append(
            f"| `{info['model']}` ({info['embedding_size']}-d, {info['input']}) | `{info['detector']}` "
            f"| {file_mib(info['onnx_bytes'])} + {file_mib(info['detector_onnx_bytes'])} "
            f"| {mib(imported['median_kib'])} | +{mib(grown(loaded, imported))} "
            f"| +{mib(grown(analyzed, loaded))} | {grown_with_range(analyzed, imported)} "
            f"| {mib(analyzed['median_kib'])} | {mib(steps['analyzed']['peak']['median_kib'])} |"
        )
    return rows


def together_rows(run: ProcessRun) -> list[str]:
    rows = []
    before = run["imported"]["rss"]
    for position, steps in enumerate(run["models"], start=1):
        loaded, analyzed = steps["loaded"]["rss"], steps["analyzed"]["rss"]
        rows.append(
            f"| {position} | `{steps['model']}` | +{mib(grown(loaded, before))} "
            f"| +{mib(grown(analyzed, loaded))} | {grown_with_range(analyzed, before)} "
            f"| {mib(analyzed['median_kib'])} | {mib(steps['analyzed']['peak']['median_kib'])} |"
        )
        before = analyzed
    return rows


def render(results: ModelsResults) -> str:
    """The section body: set-up, each model alone, models added to one process, what the figures mean."""
    setup, machine = results["setup"], results["machine"]
    python_rss = [run["python"]["rss"]["median_kib"] for run in results["alone"].values()]
    lines = [
        f"- Command: `{results['command']}`",
        f"- Date: {display_date(results['date'])}; CPU: {machine['cpu']}, `os.cpu_count()` = "
        f"{machine['cores']}; load average (1 min) {machine['load_start']:.2f} at start, "
        f"{machine['load_end']:.2f} at end",
        f"- Python {setup['python']}, onnxruntime {setup['onnxruntime']}; the service's rule for this "
        f"machine: {setup['inference_slots']} inference slots, {setup['inference_threads']} intra-op "
        f"thread(s) per ONNX session; image analysed: LFW `{setup['image']}`",
        f"- Every figure is the median over {setup['repeats']} fresh processes "
        "(`bench/model_memory_probe.py`, one per measurement and repeat); MiB of resident memory "
        "(`VmRSS`, peak `VmHWM`, from `/proc/self/status`); ONNX files in MiB on disk",
        "",
        "Each model alone, in a process of its own: the resident set once the service's modules are "
        "imported (`import app.main`), what `Pipelines(settings, slots).runner(model)` adds (its embedder "
        "and detector ONNX sessions), what its first `runner.analyze(photo, max_faces=1)` adds (ONNX "
        "Runtime's arenas, first-run buffers), and the process at the end.",
        "",
        "| model | detector | ONNX files, embedder + detector | after imports | load | first analyze "
        "| **model in all** (least–most) | process | process peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *alone_rows(results),
        "",
        f"The interpreter alone, before any import: {mib(statistics.median(python_rss))} MiB.",
    ]
    together = results["together"]
    if together is not None:
        lines += [
            "",
            f"Models added to one process, as a service loads each collection's model on first use: "
            f"the default (`{setup['default_model']}`) first, then each other embedder; each row is what "
            "that model added to the process as the row above left it.",
            "",
            "| loaded | model | load | first analyze | **added in all** (least–most) | process "
            "| process peak |",
            "|---:|---|---:|---:|---:|---:|---:|",
            *together_rows(together),
        ]
    lines += [
        "",
        "What the figures mean: *after imports* is paid once per process, whatever it serves. *Model in "
        "all* is what a process serving that model alone needs on top of it, first-use costs included "
        "(code and buffers the first inference touches, which a second model finds already there). "
        "*Added in all* is what one more model costs a process that already serves the default: the "
        "figure to add for each further model of its kind. Each column is a median of its own, so a "
        "row's *load* and *first analyze* need not add up to its *in all*; the range after it is the "
        "least and the most of the repeats. Each model's pipeline opens its own detector session, so a "
        "model that runs the same detector as another still adds a copy of it. The figures are per "
        "process: `facerec serve --workers N` runs N processes, each loading the models its requests "
        "need. The first analyze embeds one face (with its mirror image by default, a batch of two); a "
        "request with many faces embeds them in larger batches and grows ONNX Runtime's arenas "
        "further, so these are the least a loaded model holds, not the most. The peak column is what a "
        "memory limit must leave room for: loading can pass through more than stays resident. Resident "
        "memory counts the shared libraries' pages that were touched, and glibc keeps freed heap for "
        "reuse, so a difference between two checkpoints is what the process grew by, not the size of "
        "one object.",
    ]
    return "\n".join(lines)
