"""The face pipeline benchmark's results: their JSON shape, and the docs section rendered from them.

Only figures that were measured are stored (medians, p90s, counts);
ratios, shares and faces per second are derived here, when rendering.
"""

from __future__ import annotations

from typing import TypedDict

from run_record import Machine, display_date

SECTION = "## Face pipeline"
# Keys of ``libraries``: our readings (bench/pipeline_bench.py READINGS) and the peer.
OURS, OURS_ONE_THREAD = "ours", "ours_one_thread"
OURS_FP32, OURS_FP32_ONE_THREAD = "ours_fp32", "ours_fp32_one_thread"
PEER = "face_recognition"
LABELS = {
    OURS: "ours",
    OURS_ONE_THREAD: "ours, 1 thread",
    OURS_FP32: "ours fp32",
    OURS_FP32_ONE_THREAD: "ours fp32, 1 thread",
    PEER: "face_recognition",
}
# The peer's end-to-end median over ours, for the default settings with and without threads.
SPEEDUP_BAR = 6.0
BARRED = (OURS, OURS_ONE_THREAD)
# (key, row label, what ours runs, what the peer runs); a stage missing from a library leaves a cell empty.
STAGES = (
    ("decode", "decode", "`decode_image(bytes)`", "`load_image_file(path)`"),
    ("detect", "detect", "RetinaFace-MNet0.25 (ONNX)", "HOG, upsample 1"),
    ("align", "landmarks / align", "affine warp (landmarks come with detection)", "5-point shape predictor"),
    ("embed", "embed one face", "align + ResNet (ONNX)", "`face_encodings`: 5-point + chip + ResNet"),
    ("end_to_end", "**end to end**", "decode + `analyze`, all faces", "`face_encodings(load_image_file(p))`"),
)


class Spread(TypedDict):
    """Milliseconds per image over the images (each image: the median of its timed passes)."""

    median: float
    p90: float


class LibraryResults(TypedDict):
    stages_ms: dict[str, Spread]  # STAGES key → spread; a stage that never ran is absent
    pass_medians_ms: list[float]  # end-to-end median over the images of each timed pass, in order
    images_without_face: int  # images where the end-to-end run found no face
    cpu_over_wall: float | None  # the peer's process CPU time over wall time (1.0: one thread busy)


class Sample(TypedDict):
    images: int
    every_nth_person: int  # the first image of every n-th LFW person (sorted by name)
    repeats: int  # timed passes per library
    warmup_images: int  # run once per library before timing, and thrown away


class Software(TypedDict):
    onnxruntime: str
    dlib: str
    dlib_blas: bool
    dlib_avx: bool
    face_recognition: str
    models: dict[str, list[str]]  # our reading → [detector, embedder]
    detector_min_side: int  # px, the detector's input long side
    detector_max_side: int


class BatchThroughput(TypedDict):
    faces: int  # aligned LFW crops embedded
    batch_size: int  # the embedder's batch
    single_ms_per_face: float  # one crop per call
    batch_ms_per_face: float  # ``batch_size`` crops per call


class PipelineResults(TypedDict):
    command: str
    date: str  # ISO 8601, local offset
    machine: Machine
    sample: Sample
    software: Software
    libraries: dict[str, LibraryResults]  # LABELS' keys
    batch_throughput: dict[str, BatchThroughput]  # OURS, OURS_FP32


def spread(library: LibraryResults, stage: str) -> str:
    cell = library["stages_ms"].get(stage)
    return f"{cell['median']:.1f} / {cell['p90']:.1f}" if cell else "—"


def end_to_end_median(library: LibraryResults) -> float:
    return library["stages_ms"]["end_to_end"]["median"]


def render(results: PipelineResults) -> str:
    """The section body: environment, the stage table, the verdict lines, per-pass figures and notes."""
    sample, software, machine, libraries = (
        results["sample"], results["software"], results["machine"], results["libraries"]
    )  # fmt: skip
    ours, peer = libraries[OURS], libraries[PEER]
    columns = [libraries[key] for key in LABELS]  # in the header's order, whatever the file's
    models = "; ".join(f"{LABELS[name]}: {' + '.join(pair)}" for name, pair in software["models"].items())
    lines = [
        f"- Command: `{results['command']}`",
        f"- Date: {display_date(results['date'])}; {sample['images']} LFW images (deep-funneled, first "
        f"image of every {sample['every_nth_person']}th person), repeats: {sample['repeats']} timed passes "
        f"per reading, alternated, each round starting with the next one, after {sample['warmup_images']} "
        "warm-up images each",
        f"- CPU: {machine['cpu']}, `os.cpu_count()` = {machine['cores']}; load average (1 min) "
        f"{machine['load_start']:.2f} at start, {machine['load_end']:.2f} at end",
        f'- onnxruntime {software["onnxruntime"]} (threads: its default, one per core, unless "1 thread"); '
        f"dlib {software['dlib']} (BLAS {on_off(software['dlib_blas'])}, "
        f"AVX {on_off(software['dlib_avx'])}), "
        f"face_recognition {software['face_recognition']}, whose CPU time over wall time was "
        f"{peer['cpu_over_wall'] or 0:.2f} (one thread); our models: {models}; detector input long side "
        f"{software['detector_min_side']}–{software['detector_max_side']} px",
        "",
        "Milliseconds per image, median / p90 over images (each image: median of its passes). "
        "The landmarks and embed rows time the largest face only; end to end handles every face. "
        f"*{LABELS[OURS]}* is the default (`FACEREC_PRECISION=int8`: the int8 embedder, "
        "and the int8 detector on a CPU with VNNI; "
        "`FACEREC_MIRROR_FACES=true`: each aligned face is embedded with its mirror image in one batch and "
        f"the two averaged); *{LABELS[OURS_FP32]}* is `FACEREC_PRECISION=fp32`; *1 thread* is "
        "`FACEREC_INFERENCE_THREADS=1`.",
        "",
        f"| stage | {' | '.join(LABELS.values())} | ours runs | {LABELS[PEER]} runs |",
        "|---|" + "---:|" * len(LABELS) + "---|---|",
    ]
    for key, label, ours_does, peer_does in STAGES:
        cells = " | ".join(spread(library, key) for library in columns)
        lines.append(f"| {label} | {cells} | {ours_does} | {peer_does} |")
    lines += [
        "| faces per second (1000 / median end to end) | "
        + " | ".join(f"{1000 / end_to_end_median(library):.1f}" for library in columns)
        + " | | |",
        "| images with no face found | "
        + " | ".join(str(library["images_without_face"]) for library in columns)
        + " | | |",
        "",
    ]
    for name in LABELS:
        if name == PEER:
            continue
        ratio = end_to_end_median(peer) / end_to_end_median(libraries[name])
        verdict = f": **{'met' if ratio >= SPEEDUP_BAR else 'NOT met'}**" if name in BARRED else ""
        bar = f" (the bar: ≥ {SPEEDUP_BAR:g}×)" if name in BARRED else ""
        lines.append(f"**End to end, {LABELS[PEER]} / {LABELS[name]} = {ratio:.2f}×**{bar}{verdict}.")
    lines += [
        "",
        *(per_pass(libraries[name], peer, name) for name in LABELS if name != PEER),
        "",
        where_time_goes(ours, peer),
        "",
        *runtime_notes(software),
        *(
            f"Embedder batch throughput, {LABELS[name]} ({t['faces']} aligned LFW crops): "
            f"{t['single_ms_per_face']:.1f} ms per face one at a time, {t['batch_ms_per_face']:.1f} ms per "
            f"face in batches of {t['batch_size']} (the service embeds all faces of a request in one batch)."
            for name, t in results["batch_throughput"].items()
        ),
    ]
    return "\n".join(lines) + "\n"


def on_off(flag: bool) -> str:
    return "on" if flag else "off"


def per_pass(ours: LibraryResults, peer: LibraryResults, name: str) -> str:
    cells = []
    pairs = zip(ours["pass_medians_ms"], peer["pass_medians_ms"], strict=True)
    for number, (mine, theirs) in enumerate(pairs, start=1):
        cells.append(f"pass {number}: {mine:.1f} / {theirs:.1f} ms ({theirs / mine:.1f}×)")
    return (
        f"End-to-end median of each pass, {LABELS[name]} / {LABELS[PEER]} (load moves between passes): "
        f"{'; '.join(cells)}."
    )


def where_time_goes(ours: LibraryResults, peer: LibraryResults) -> str:
    """Each stage's median as a share of the end-to-end median, for both libraries."""
    parts = []
    for name, library in ((OURS, ours), (PEER, peer)):
        total = end_to_end_median(library)
        shares = ", ".join(
            f"{key} {100 * cell['median'] / total:.0f}%"
            for key, *_ in STAGES[:-1]
            if (cell := library["stages_ms"].get(key)) is not None
        )
        parts.append(f"{LABELS[name]}: {shares}")
    note = (
        " The peer's landmarks row is repeated inside its embed row; ours' end to end also scores"
        " face quality."
        if "align" in peer["stages_ms"]
        else ""
    )
    return f"Where the end-to-end median goes (stage median / end-to-end median): {'; '.join(parts)}.{note}"


def runtime_notes(software: Software) -> list[str]:
    """Caveats that change how the embed row reads, derived from the run's set-up."""
    notes = []
    if all("dlib-resnet" in pair[1] for pair in software["models"].values()):
        notes.append(
            "Both libraries embed with the same dlib ResNet weights (ours converted to ONNX, and in the"
            " default reading quantised to int8), so the embed row compares runtimes, not models."
        )
    if not software["dlib_blas"]:
        notes.append(
            "This dlib build has no BLAS: its ResNet runs on dlib's own matrix code. A dlib compiled"
            " against OpenBLAS or MKL would likely narrow the embed gap (not measured here)."
        )
    return [*notes, ""] if notes else []
