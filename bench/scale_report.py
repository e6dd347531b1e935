"""The docs section rendered from the scale benchmark's results (``scale_results``)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Literal

from run_record import display_date
from scale_results import (
    Accuracy,
    EngineResults,
    ScaleResults,
    ServerRun,
    SizeResults,
    SyntheticCheck,
)

SECTION = "## Scale: 100k and 1M templates"
Percentile = Literal["p50", "p95", "p99"]
MemoryField = Literal["rss_kib", "pss_kib", "pss_file_kib", "private_kib", "anonymous_kib"]
MemoryWhen = Literal["memory_loaded", "memory_busy"]
PassField = Literal["p50_ms", "p99_ms"]
KIB_PER_MIB = 1024


def render(results: ScaleResults) -> str:
    """The section body: the runs, the issue's targets, then every figure per size and engine."""
    sizes = results["sizes"]
    largest = sizes[-1]
    lines = [
        "A gallery of N templates in one SQLite database: the real LFW people (everyone with 2 or more "
        f"images enrols the first: {largest['real_people']:,} subjects) and synthetic new people up to N, "
        "one subject each (`tools/scale_templates.py`, checked below). Probes: "
        f"{largest['probes']['mated']} other images of enrolled people (mated) and "
        f"{largest['probes']['strangers']} people with one image who are not enrolled (strangers), as "
        "images over HTTP and as their embeddings for the index alone.",
        "",
        *(run_line(size) for size in sizes),
        "",
        *targets(largest),
        "",
        "### Figures",
        "",
        f"Medians over {' or '.join(sorted({str(s['runs']) for s in sizes}))} server starts per cell "
        "(index only: over its passes, listed below it); memory at rest after the `/identify` levels.",
        "",
        *figures(sizes),
        "",
        *size_table(sizes),
        "",
        *synthetic_table(largest["synthetic"]),
        "",
        *notes(sizes),
    ]
    return "\n".join(lines) + "\n"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def mib(kib: float | None) -> str:
    return "—" if kib is None else f"{kib / KIB_PER_MIB:,.0f}"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def short(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


def run_line(size: SizeResults) -> str:
    machine = size["machine"]
    return (
        f"- {size['templates']:,} templates: `{size['command']}`, {display_date(size['date'])}, "
        f"{size['wall_s'] / 60:.0f} min; CPU: {machine['cpu']}, `os.cpu_count()` = {machine['cores']}, "
        f"load average (1 min) {machine['load_start']:.2f} at start, {machine['load_end']:.2f} at end"
    )


# ----- derived figures --------------------------------------------------------


def startup(runs: list[ServerRun]) -> float | None:
    return median([run["startup_s"] for run in runs])


def level(runs: list[ServerRun], clients: int, key: Percentile, baseline: bool = False) -> float | None:
    """The median over runs of a latency percentile at ``clients`` (``baseline``: of the baseline's)."""
    values = [
        lvl["latency_ms"][key]
        for run in runs
        for lvl in run["identify_baseline" if baseline else "identify"]
        if lvl["clients"] == clients
    ]
    return median([v for v in values if v is not None])


def client_levels(sizes: list[SizeResults]) -> list[int]:
    return sorted(
        {
            lvl["clients"]
            for size in sizes
            for engine in size["engines"]
            for run in engine["restarts"]
            for lvl in run["identify"]
        }
    )


def right_answers(runs: list[ServerRun], clients: int) -> str:
    levels = [lvl for run in runs for lvl in run["identify"] if lvl["clients"] == clients]
    if not levels:
        return "—"
    return f"{sum(lvl['right_answers'] for lvl in levels)}/{sum(lvl['succeeded'] for lvl in levels)}"


def worker_memory(
    runs: list[ServerRun], worker: int, key: MemoryField, when: MemoryWhen = "memory_loaded"
) -> float | None:
    """The median over runs of one worker's memory figure (KiB) after the load (at rest, or ``when``)."""
    readings = [run.get(when) for run in runs]
    return median([memory[worker][key] for memory in readings if memory is not None and len(memory) > worker])


def second_worker_adds(engine: EngineResults) -> tuple[float, float] | None:
    """KiB the second of 2 workers adds, and that as a share of the first's VmRSS (medians over runs).

    What a worker adds is its anonymous memory: spawned workers share none of
    it, while file-backed pages (the mapped snapshot, libraries) are in the
    page cache once however many map them. The "second" is the worker with
    more of it.
    """
    added: list[float] = []
    shares: list[float] = []
    for run in engine["restarts_two_workers"]:
        first, second = sorted(run["memory_loaded"], key=lambda m: m["anonymous_kib"])[-2:]
        added.append(second["anonymous_kib"])
        shares.append(second["anonymous_kib"] / first["rss_kib"])
    middle, share = median(added), median(shares)
    return None if middle is None or share is None else (middle, share)


def two_workers_over_one(engine: EngineResults) -> float | None:
    """KiB: the Pss of uvicorn's parent and both workers, minus the Pss of a 1-worker run's worker."""
    one = worker_memory(engine["restarts"], 0, "pss_kib")
    two = median(
        [
            sum(m["pss_kib"] for m in run["memory_loaded"])
            + (0 if run["supervisor"] is None else run["supervisor"]["pss_kib"])
            for run in engine["restarts_two_workers"]
        ]
    )
    return None if one is None or two is None else two - one


def index_only(engine: EngineResults, key: PassField) -> float | None:
    return median([p[key] for p in engine["index_only"]["passes"]])


def accuracy_of(size: SizeResults, engine: str) -> Accuracy | None:
    return next((a for a in size["accuracy"] if a["engine"] == engine), None)


def over_pipeline(engine: EngineResults) -> float | None:
    """/identify p99 at 1 client minus the baseline's beside it, per run; the median over runs."""
    differences = []
    for run in engine["restarts"]:
        own = [lvl["latency_ms"]["p99"] for lvl in run["identify"] if lvl["clients"] == 1]
        base = [lvl["latency_ms"]["p99"] for lvl in run["identify_baseline"] if lvl["clients"] == 1]
        if own and base and own[0] is not None and base[0] is not None:
            differences.append(own[0] - base[0])
    return median(differences)


def engine_named(size: SizeResults, name: str) -> EngineResults | None:
    return next((e for e in size["engines"] if e["engine"] == name), None)


# ----- sections -----------------------------------------------------------------


def verdict(met: bool | None) -> str:
    return "—" if met is None else "met" if met else "**NOT met**"


def targets(size: SizeResults) -> list[str]:
    """The issue's bars, read on the approximate kind (ivf) at the largest size measured."""
    ivf = engine_named(size, "ivf")
    accuracy = accuracy_of(size, "ivf")
    if ivf is None or accuracy is None:
        return []
    ready = startup(ivf["restarts"])
    p99 = index_only(ivf, "p99_ms")
    extra = over_pipeline(ivf)
    recall = min(accuracy["recall_at_10_probes"], accuracy["recall_at_10_stored"])
    adds = second_worker_adds(ivf)
    rows = [
        (
            "`/ready` after `facerec serve`, from the snapshot",
            "≤ 30 s",
            f"{seconds(ready)} s",
            ready and ready <= 30,
        ),
        ("index-only search p99 (one face, 11 subjects)", "≤ 5 ms", f"{ms(p99)} ms", p99 and p99 <= 5),
        (
            "`/identify` p99 at 1 client minus the pipeline's own p99",
            "≤ 15 ms",
            f"{'—' if extra is None else f'{extra:+.1f}'} ms",
            None if extra is None else extra <= 15,
        ),
        (
            "recall@10 against exact (probes; stored templates)",
            "≥ 0.99",
            f"{accuracy['recall_at_10_probes']:.4f}; {accuracy['recall_at_10_stored']:.4f}",
            recall >= 0.99,
        ),
        (
            "mated probes exact finds in its top 10 that ivf finds too",
            "all",
            f"{accuracy['found_both']} of {accuracy['found_exact']}",
            accuracy["found_both"] == accuracy["found_exact"],
        ),
        (
            "memory the second worker adds, against the first's RSS",
            "≤ 25 %",
            "—" if adds is None else f"{mib(adds[0])} MiB = {100 * adds[1]:.0f} %",
            None if adds is None else adds[1] <= 0.25,
        ),
    ]
    return [
        f"**The issue's targets**, at {size['templates']:,} templates with the approximate kind "
        "(`FACEREC_INDEX_KIND=ivf`) on this machine:",
        "",
        "| target | bar | measured | |",
        "|---|---|---|---|",
        *(
            f"| {name} | {bar} | {value} | {verdict(None if met is None else bool(met))} |"
            for name, bar, value, met in rows
        ),
    ]


def figures(sizes: list[SizeResults]) -> list[str]:
    columns = [(size, engine) for size in sizes for engine in size["engines"]]
    header = [f"{short(size['templates'])} {ENGINE_NAMES[engine['engine']]}" for size, engine in columns]

    def row(label: str, cell: Callable[[SizeResults, EngineResults], str]) -> str:
        return f"| {label} | " + " | ".join(cell(size, engine) for size, engine in columns) + " |"

    def pair(a: str, b: str) -> str:
        return f"{a} / {b}"

    def adds(size: SizeResults, engine: EngineResults) -> str:
        added = second_worker_adds(engine)
        return "—" if added is None else f"{mib(added[0])} ({100 * added[1]:.0f} %)"

    def accuracy(size: SizeResults, engine: EngineResults) -> Accuracy | None:
        return accuracy_of(size, engine["engine"])

    def recall(size: SizeResults, engine: EngineResults) -> str:
        found = accuracy(size, engine)
        if found is None:
            return "exact" if engine["engine"] == "flat" else "—"
        return pair(f"{found['recall_at_10_probes']:.4f}", f"{found['recall_at_10_stored']:.4f}")

    def mates(size: SizeResults, engine: EngineResults) -> str:
        found = accuracy(size, engine)
        if found is None:
            return "—"
        return f"{found['found_engine']} / {found['found_exact']} / {found['found_both']}"

    def extra(size: SizeResults, engine: EngineResults) -> str:
        value = over_pipeline(engine)
        return "—" if value is None else f"{value:+.1f}"

    def snapshot(size: SizeResults, engine: EngineResults) -> str:
        snap = engine["snapshot"]
        if snap is None:
            return "—"
        ivf = snap["ivf"]
        tuned = "" if ivf is None else f"; nlist {ivf['nlist']:,}, nprobe {ivf['nprobe']:,}"
        return f"{snap['base_bytes'] / 2**20:,.0f} MiB{tuned}"

    def two(key: MemoryField) -> Callable[[SizeResults, EngineResults], str]:
        def cell(size: SizeResults, engine: EngineResults) -> str:
            runs = engine["restarts_two_workers"]
            return pair(mib(worker_memory(runs, 0, key)), mib(worker_memory(runs, 1, key))) if runs else "—"

        return cell

    def busy(size: SizeResults, engine: EngineResults) -> str:
        runs = engine["restarts_two_workers"]
        first, second = (worker_memory(runs, w, "anonymous_kib", "memory_busy") for w in (0, 1))
        return "—" if first is None else pair(mib(first), mib(second))

    clients = client_levels(sizes)

    def latency(
        two_workers: bool, clients: int, baseline: bool = False
    ) -> Callable[[SizeResults, EngineResults], str]:
        def cell(size: SizeResults, engine: EngineResults) -> str:
            runs = engine["restarts_two_workers" if two_workers else "restarts"]
            return pair(ms(level(runs, clients, "p50", baseline)), ms(level(runs, clients, "p99", baseline)))

        return cell

    latency_rows = [
        line
        for n in clients
        for line in (
            row(
                f"`/identify` p50 / p99 at {n} client{'s' if n > 1 else ''}, 1 worker (ms)", latency(False, n)
            ),
            row("... the pipeline's own time beside it (ms)", latency(False, n, baseline=True)),
        )
    ]
    many = clients[-1] if clients else 0
    return [
        "| | " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(columns),
        row(
            "first start to `/ready`, index built from the database (s)",
            lambda s, e: seconds(startup(e["first_starts"])),
        ),
        row(
            "restart to `/ready`, from the snapshot, 1 worker (s)",
            lambda s, e: seconds(startup(e["restarts"])),
        ),
        row("restart to `/ready`, 2 workers (s)", lambda s, e: seconds(startup(e["restarts_two_workers"]))),
        row(
            "1 worker: VmRSS / Pss / anonymous (MiB)",
            lambda s, e: " / ".join(
                mib(worker_memory(e["restarts"], 0, key)) for key in ("rss_kib", "pss_kib", "anonymous_kib")
            ),
        ),
        row("2 workers: VmRSS of each (MiB)", two("rss_kib")),
        row("2 workers: Pss of each (MiB)", two("pss_kib")),
        row("2 workers: anonymous memory of each (MiB)", two("anonymous_kib")),
        row("... right after the last request, before the idle trim (MiB)", busy),
        row("the second worker adds: its anonymous memory, MiB (share of the first's VmRSS)", adds),
        row(
            "2 workers (with uvicorn's parent) over 1, summed Pss (MiB)",
            lambda s, e: mib(two_workers_over_one(e)),
        ),
        *latency_rows,
        row(f"`/identify` p50 / p99 at {many} clients, 2 workers (ms)", latency(True, many)),
        row("`/identify` p99 at 1 client minus the pipeline's own p99 (ms)", extra),
        row("`/identify` right answers at 1 client (all runs)", lambda s, e: right_answers(e["restarts"], 1)),
        row(
            "index only: p50 / p99, one face, 11 subjects (ms)",
            lambda s, e: pair(ms(index_only(e, "p50_ms")), ms(index_only(e, "p99_ms"))),
        ),
        row(
            "index only: p99 of each pass (ms)",
            lambda s, e: ", ".join(ms(p["p99_ms"]) for p in e["index_only"]["passes"]),
        ),
        row("recall@10 against flat: probes / stored templates", recall),
        row("mated probes in the top 10 subjects: this engine / flat / both", mates),
        row("snapshot base file", snapshot),
    ]


ENGINE_NAMES = {"flat": "flat", "ivf": "ivf", "milvus-lite": "Milvus Lite"}


def size_table(sizes: list[SizeResults]) -> list[str]:
    def cells(cell: Callable[[SizeResults], str]) -> str:
        return " | ".join(cell(size) for size in sizes)

    def insert(size: SizeResults) -> str:
        done = size["insert"]
        return (
            f"{done['templates'] / done['seconds']:,.0f} ({done['seconds']:.0f} s; database "
            f"{done['database_bytes'] / 2**20:,.0f} MiB)"
        )

    def milvus_insert(size: SizeResults) -> str:
        engine = engine_named(size, "milvus-lite")
        done = None if engine is None else engine["insert"]
        if done is None:
            return "not measured"
        return f"{done['templates'] / done['seconds']:,.0f} ({done['seconds']:.0f} s)"

    return [
        "| | " + " | ".join(f"{size['templates']:,} templates" for size in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
        f"| insert: `add_faces_bulk` into SQLite, templates/s | {cells(insert)} |",
        f"| insert: `MilvusFaceIndex.add` into Milvus Lite, templates/s | {cells(milvus_insert)} |",
    ]


SERIES = {
    "genuine_pairs": "real genuine pairs (mated probe, its enrolled image)",
    "impostor_pairs": "real impostor pairs (two fitted people)",
    "same_group_pairs": "real impostor pairs within one mixture component",
    "synthetic_to_source": "synthetic to its source person",
    "synthetic_pairs": "synthetic pairs",
    "best_to_real": "a probe's best similarity to the real people",
    "best_to_synthetic": "... to as many synthetic ones",
    "cohort_to_real": "a probe's 11th best to the real people",
    "cohort_to_synthetic": "... to as many synthetic ones",
}


def synthetic_table(synthetic: SyntheticCheck) -> list[str]:
    params, check = synthetic["parameters"], synthetic["check"]
    levels = " | ".join(f"{100 * q:g} %" for q in check["quantile_levels"])
    return [
        f"**The synthetic templates** (`tools/scale_templates.py`, seed {params['seed']}): a Gaussian "
        f"mixture of {params['components']} components fitted on {synthetic['fitted_on']:,} real people (one "
        "image each, strangers left out) in the space the index stores, each template "
        f"`t = mu_k + sqrt(1 - a) (e - mu_k) + sqrt(a) L_k z` with `a` = {params['resample']:g} (the "
        "module docstring says why). Quantiles of the similarity (the model's metric, higher = more "
        f"alike); probe rows over {check['queries']} probes, each against {check['set_size']:,} real people "
        "(its own left out) and as many synthetic templates:",
        "",
        f"| | {levels} |",
        "|---|" + "---:|" * len(check["quantile_levels"]),
        *(
            f"| {label} | " + " | ".join(f"{v:.3f}" for v in check[key]) + " |"
            for key, label in SERIES.items()
        ),
    ]


def notes(sizes: list[SizeResults]) -> list[str]:
    lines = [
        "Notes:",
        "- First start: the snapshot is deleted, so the worker reads every template from the database and "
        "builds the index (ivf: k-means, then `nprobe` tuned for recall@10 on stored templates, "
        "`app/index/ivf.py`); a graceful stop leaves the snapshot the restarts map. With 2 workers, "
        "`/ready` counts once every worker has logged its start-up.",
        "- Memory, from `/proc/<pid>/status` and `smaps_rollup` at rest, 3 s after the `/identify` levels "
        "(a worker hands back the heap a burst freed once requests pause for a second, `app/core/memory.py`; "
        "the anonymous memory right after the last request is listed too): `VmRSS` "
        "counts the memory-mapped snapshot in each worker that maps it; `Pss` divides shared pages among "
        "their sharers, so the workers' `Pss` added up is what they hold together. What the second worker "
        "adds is its anonymous memory (heap: Python and its libraries, the ONNX sessions, and for ivf the "
        "fast-scan codes, which FAISS reads into memory; the slot maps are mapped files): spawned workers "
        "share none of it, while file-backed pages (the snapshot, libraries) are in the page cache once. "
        "The row below it also counts uvicorn's parent process, which only runs with several workers.",
        "- The pipeline's own time is `/identify` on the same probe images against a second server, up "
        "the whole run, whose gallery is the real people alone (a flat index of that size searches in well "
        "under a millisecond): decode, detection, embedding, HTTP and the service around them. Each "
        "level's requests alternate between the two servers in 5 blocks, so both see the same background "
        "load; the difference is taken per server start, then the median.",
        "- Index only: the snapshot loaded in the benchmark's process as a worker loads it (memory-mapped), "
        "each probe embedding searched alone (`search_subjects(q, 11)`) with one FAISS OpenMP thread, as a "
        "worker searches (`SEARCH_THREADS`: requests run side by side), every probe per pass; the cells "
        "are medians over the passes, and the row below them gives each pass's p99, since one pass that "
        "meets other work on the machine moves its p99 most. "
        "Recall@10: `search_templates` top 10 of the engine against flat's, on the probes and on "
        "stored templates (each one's own face left out). Milvus Lite is exact too (FLAT): its row checks "
        "agreement.",
        "- Several hundred requests per level: p99 is close to the maximum. The machine is shared with "
        "other work (see the load average); compare cells within one run.",
    ]
    for size in sizes:
        if size["milvus_skipped"] is not None:
            lines.append(milvus_note(size, sizes))
    return lines


def milvus_note(size: SizeResults, sizes: list[SizeResults]) -> str:
    """Why Milvus Lite was left out at ``size``, with what a smaller size measured."""
    measured = [(s, e) for s in sizes for e in s["engines"] if e["engine"] == "milvus-lite"]
    text = f"- Milvus Lite was not measured at {size['templates']:,} templates ({size['milvus_skipped']})"
    if not measured:
        return text + "."
    small, engine = measured[-1]
    factor = size["templates"] / small["templates"]
    p50 = index_only(engine, "p50_ms")
    insert = engine["insert"]
    rate = None if insert is None else insert["templates"] / insert["seconds"]
    return (
        f"{text}: at {small['templates']:,} its FLAT search took {ms(p50)} ms per face (p50, index only), "
        f"and it scans every template, so about {factor:.0f} times that, "
        f"{ms(None if p50 is None else p50 * factor)} ms, per `/identify` at {size['templates']:,}"
        + (
            ""
            if rate is None
            else f"; its insert ran at {rate:,.0f} templates/s, {size['templates'] / rate / 60:.0f} min for "
            f"{size['templates']:,} in process and again for the server's first start"
        )
        + "."
    )
