"""Our face pipeline against the peer ``face_recognition`` library (dlib), on the same LFW images.

Both run in one process on one deterministic sample: per stage (decode,
detect, align/landmarks, embed) and end to end (bytes → embeddings of every
face, the latency a /verify request sees). Timed passes alternate between
the libraries so background load falls on both alike, and each round of
passes starts with a different one; each image's time is its median over
the repeats, and the tables give the median and p90 of those.

Run from the repository root:
    .venv/bin/python bench/pipeline_bench.py --images 200 --repeats 3 --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import dlib
import face_recognition
import numpy as np
import onnxruntime as ort
from docs_section import write_section

from app.core.arrays import ImageArray
from app.core.settings import Settings
from app.pipeline.decode import decode_image
from app.pipeline.face_pipeline import FacePipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO_ROOT.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled"
DOCS_FILE = REPO_ROOT / "docs" / "benchmarks.md"
SECTION = "## Face pipeline"
WARMUP_IMAGES = 5
THROUGHPUT_FACES = 64

OURS, BLEND, PEER = "ours", "ours, both framings", "face_recognition"
# (key, row label, what ours runs, what the peer runs); a missing key leaves a cell empty.
STAGES = (
    ("decode", "decode", "`decode_image(bytes)`", "`load_image_file(path)`"),
    ("detect", "detect", "RetinaFace-MNet0.25 (ONNX)", "HOG, upsample 1"),
    ("align", "landmarks / align", "affine warp (landmarks come with detection)", "5-point shape predictor"),
    ("embed", "embed one face", "align + ResNet (ONNX)", "`face_encodings`: 5-point + chip + ResNet"),
    ("end_to_end", "**end to end**", "decode + `analyze`, all faces", "`face_encodings(load_image_file(p))`"),
)


@dataclass
class Run:
    """Milliseconds per stage per image over the repeats, plus face counts from the end-to-end runs."""

    times: dict[str, dict[int, list[float]]]
    faces: dict[int, int]

    @classmethod
    def empty(cls) -> Run:
        return cls(defaultdict(lambda: defaultdict(list)), {})

    def add(self, stage: str, image: int, seconds: float) -> None:
        self.times[stage][image].append(seconds * 1000.0)

    def per_image(self, stage: str) -> list[float]:
        """Each image's median over the repeats (images where the stage ran)."""
        return [float(np.median(ms)) for ms in self.times.get(stage, {}).values()]

    @property
    def passes(self) -> int:
        return max((len(ms) for ms in self.times["end_to_end"].values()), default=0)

    def pass_median(self, stage: str, repeat: int) -> float:
        """Median over images of one timed pass: shows how load moved between passes."""
        return float(np.median([ms[repeat] for ms in self.times[stage].values() if len(ms) > repeat]))

    def summary(self, stage: str) -> tuple[float, float] | None:
        """(median, p90) in ms over images, or None when the stage never ran."""
        values = self.per_image(stage)
        return (float(np.median(values)), float(np.percentile(values, 90))) if values else None


def sample_lfw(root: Path, count: int) -> tuple[list[Path], int]:
    """(the first image of every k-th person, k); sorted names, k chosen to give ``count`` images."""
    people = sorted(p for p in root.iterdir() if p.is_dir())
    step = max(1, len(people) // count)
    return [min(person.glob("*.jpg")) for person in people[::step]][:count], step


def ours_pass(pipeline: FacePipeline, paths: list[Path], blobs: list[bytes], run: Run) -> list[ImageArray]:
    """One timed pass of our pipeline; returns the aligned crops (for the batch throughput test)."""
    crops_seen: list[ImageArray] = []
    clock = time.perf_counter
    for i, (path, blob) in enumerate(zip(paths, blobs, strict=True)):
        t0 = clock()
        image = decode_image(blob)
        t1 = clock()
        detections = pipeline.detect(image)
        t2 = clock()
        run.add("decode", i, t1 - t0)
        run.add("detect", i, t2 - t1)
        if detections:  # largest first: align and embed that one face, as the peer's row does
            t2 = clock()
            crops = pipeline.align(image, detections[:1])
            t3 = clock()
            pipeline.embed(image, detections[:1])  # aligns again: each mode's framings and mirrors
            t4 = clock()
            run.add("align", i, t3 - t2)
            run.add("embed", i, t4 - t3)
            crops_seen.append(crops[0])
        t0 = clock()
        faces = pipeline.analyze(decode_image(path.read_bytes()))
        run.add("end_to_end", i, clock() - t0)
        run.faces[i] = len(faces)
    return crops_seen


def peer_pass(paths: list[Path], run: Run) -> None:
    """One timed pass of face_recognition with its defaults (HOG, upsample 1, 5-point, 1 jitter)."""
    clock = time.perf_counter
    for i, path in enumerate(paths):
        t0 = clock()
        image = face_recognition.load_image_file(path)
        t1 = clock()
        locations = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
        t2 = clock()
        run.add("decode", i, t1 - t0)
        run.add("detect", i, t2 - t1)
        if locations:
            largest = [max(locations, key=lambda box: (box[2] - box[0]) * (box[1] - box[3]))]
            t2 = clock()
            face_recognition.face_landmarks(image, largest, model="small")
            t3 = clock()
            face_recognition.face_encodings(image, known_face_locations=largest, num_jitters=1, model="small")
            t4 = clock()
            run.add("align", i, t3 - t2)
            run.add("embed", i, t4 - t3)
        t0 = clock()
        encodings = face_recognition.face_encodings(face_recognition.load_image_file(path))
        run.add("end_to_end", i, clock() - t0)
        run.faces[i] = len(encodings)


def embed_throughput(pipeline: FacePipeline, crops: ImageArray, rounds: int) -> dict[str, float]:
    """ms per face embedding ``crops`` one at a time vs in the embedder's batches (median of rounds)."""
    embedder = pipeline.embedder

    def per_face(call: Callable[[], object]) -> float:
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            call()
            samples.append((time.perf_counter() - t0) * 1000.0 / len(crops))
        return float(np.median(samples))

    def one_at_a_time() -> None:
        for k in range(len(crops)):
            embedder.embed(crops[k : k + 1])

    embedder.embed(crops[: embedder.batch_size])  # warm the batched shape
    return {
        "single_ms_per_face": per_face(one_at_a_time),
        "batch_ms_per_face": per_face(lambda: embedder.embed(crops)),
        "batch_size": float(embedder.batch_size),
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def fmt(cell: tuple[float, float] | None) -> str:
    return f"{cell[0]:.1f} / {cell[1]:.1f}" if cell else "—"


def render(ours: Run, blend: Run, peer: Run, throughput: dict[str, float], meta: dict[str, object]) -> str:
    """The section body: environment, the stage table, the verdict line and the batch line."""
    lines = [
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}; {meta['images']} LFW images (deep-funneled, first image of every "
        f"{meta['step']}th person), repeats: {meta['repeats']} timed passes per library, alternated, "
        f"each round starting with the next one, after {WARMUP_IMAGES} warm-up images each",
        f"- CPU: {meta['cpu']}, `os.cpu_count()` = {meta['cores']}; load average (1 min) "
        f"{meta['load_start']:.2f} at start, {meta['load_end']:.2f} at end",
        f"- onnxruntime {meta['onnxruntime']} (intra-op threads: {meta['ort_threads']}); "
        f"dlib {meta['dlib']} (BLAS {meta['dlib_blas']}, AVX {meta['dlib_avx']}), face_recognition "
        f"{meta['face_recognition']}; our model pack: {meta['models']}, detector input long side "
        f"{meta['detector_sides']} px",
        "",
        "Milliseconds per image, median / p90 over images (each image: median of its passes). "
        "The landmarks and embed rows time the largest face only; end to end handles every face. "
        f"*{OURS}* is the default (`FACEREC_MIRROR_FACES=true`: each aligned face is embedded with its "
        f"mirror image and the two averaged); *{BLEND}* adds `FACEREC_BLEND_FRAMINGS=true` (each face is "
        "also framed by the model's template alone, without its correction, and the two framings' "
        "embeddings averaged: four embeddings per face).",
        "",
        f"| stage | {OURS} | {BLEND} | {PEER} | ours runs | {PEER} runs |",
        "|---|---:|---:|---:|---|---|",
    ]
    runs = ((OURS, ours), (BLEND, blend), (PEER, peer))
    for key, label, ours_does, peer_does in STAGES:
        cells = " | ".join(fmt(run.summary(key)) for _, run in runs)
        lines.append(f"| {label} | {cells} | {ours_does} | {peer_does} |")
    e2e = {name: run.summary("end_to_end") for name, run in runs}
    medians = {name: cell[0] for name, cell in e2e.items() if cell}
    assert len(medians) == len(runs)
    no_face = {name: sum(n == 0 for n in run.faces.values()) for name, run in runs}
    lines += [
        "| faces per second (1000 / median end to end) | "
        + " | ".join(f"{1000 / medians[name]:.1f}" for name, _ in runs)
        + " | | |",
        "| images with no face found | " + " | ".join(str(no_face[name]) for name, _ in runs) + " | | |",
        "",
    ]
    for name in (OURS, BLEND):
        ratio = medians[PEER] / medians[name]
        lines.append(
            f"**End to end, {PEER} / {name} = {ratio:.2f}×** (the bar is ≥ 4×: at most a quarter of "
            f"{PEER}'s median): **{'met' if ratio >= 4.0 else 'NOT met'}**."
        )
    lines += [
        "",
        per_pass(ours, peer),
        per_pass(blend, peer, BLEND),
        "",
        where_time_goes(ours, peer),
        "",
        *runtime_notes(meta),
        f"Embedder batch throughput ({THROUGHPUT_FACES} aligned LFW crops): "
        f"{throughput['single_ms_per_face']:.1f} ms per face one at a time, "
        f"{throughput['batch_ms_per_face']:.1f} ms per face in batches of {throughput['batch_size']:.0f} "
        "(the service embeds all faces of a request in one batch).",
    ]
    return "\n".join(lines) + "\n"


def per_pass(ours: Run, peer: Run, name: str = OURS) -> str:
    cells = []
    for r in range(ours.passes):
        mine, theirs = ours.pass_median("end_to_end", r), peer.pass_median("end_to_end", r)
        cells.append(f"pass {r + 1}: {mine:.1f} / {theirs:.1f} ms ({theirs / mine:.1f}×)")
    return f"End-to-end median of each pass, {name} / {PEER} (load moves between passes): {'; '.join(cells)}."


def where_time_goes(ours: Run, peer: Run) -> str:
    """Each stage's median as a share of the end-to-end median, for both libraries."""
    parts = []
    for name, run in ((OURS, ours), (PEER, peer)):
        total = run.summary("end_to_end")
        assert total is not None
        shares = ", ".join(
            f"{key} {100 * cell[0] / total[0]:.0f}%"
            for key, *_ in STAGES[:-1]
            if (cell := run.summary(key)) is not None
        )
        parts.append(f"{name}: {shares}")
    note = (
        " The peer's landmarks row is repeated inside its embed row; ours' end to end also scores"
        " face quality."
        if peer.summary("align")
        else ""
    )
    return f"Where the end-to-end median goes (stage median / end-to-end median): {'; '.join(parts)}.{note}"


def runtime_notes(meta: dict[str, object]) -> list[str]:
    """Caveats that change how the embed row reads, derived from this run's set-up."""
    notes = []
    if "dlib-resnet" in str(meta["models"]):
        notes.append(
            "Both libraries embed with the same dlib ResNet weights (ours converted to ONNX), so the embed"
            " row compares runtimes, not models."
        )
    if meta["dlib_blas"] == "off":
        notes.append(
            "This dlib build has no BLAS: its ResNet runs on dlib's own matrix code. A dlib compiled"
            " against OpenBLAS or MKL would likely narrow the embed gap (not measured here)."
        )
    return [*notes, ""] if notes else []


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200, help="LFW images in the sample")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per library")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: default)")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW root (one folder per person)")
    parser.add_argument("--write-docs", action="store_true", help=f"replace '{SECTION}' in {DOCS_FILE}")
    parser.add_argument("--json", type=Path, help="also write the raw per-image numbers here")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    load_start = os.getloadavg()[0]
    paths, step = sample_lfw(args.lfw, args.images)
    blobs = [p.read_bytes() for p in paths]
    settings = Settings(inference_threads=args.threads)
    pipeline = FacePipeline.from_settings(settings)
    blend_pipeline = FacePipeline.from_settings(settings.model_copy(update={"blend_framings": True}))

    warm = Run.empty()  # thrown away: first-call costs (session set-up, page cache, allocators)
    ours_pass(pipeline, paths[:WARMUP_IMAGES], blobs[:WARMUP_IMAGES], warm)
    ours_pass(blend_pipeline, paths[:WARMUP_IMAGES], blobs[:WARMUP_IMAGES], warm)
    peer_pass(paths[:WARMUP_IMAGES], warm)

    ours, blend, peer = Run.empty(), Run.empty(), Run.empty()
    crops: list[ImageArray] = []

    def run_ours() -> None:
        crops[:] = ours_pass(pipeline, paths, blobs, ours)  # kept for the batch throughput test

    runners: list[tuple[str, Callable[[], object]]] = [
        (OURS, run_ours),
        (BLEND, lambda: ours_pass(blend_pipeline, paths, blobs, blend)),
        (PEER, lambda: peer_pass(paths, peer)),
    ]
    for repeat in range(args.repeats):
        # Each pass starts with the next runner, so no runner always runs first,
        # right after the warm-up, or always right after the same other one.
        shift = repeat % len(runners)
        spent = []
        for name, runner in runners[shift:] + runners[:shift]:
            started = time.perf_counter()
            runner()
            spent.append(f"{name} {time.perf_counter() - started:.1f} s")
        print(f"pass {repeat + 1}/{args.repeats}: " + ", ".join(spent), file=sys.stderr)
    if not crops:
        raise SystemExit("no faces found by our pipeline: nothing to embed")
    batch = np.stack([crops[k % len(crops)] for k in range(THROUGHPUT_FACES)])  # (64, H, W, 3)
    throughput = embed_throughput(pipeline, batch, rounds=args.repeats)

    meta: dict[str, object] = {
        "command": f".venv/bin/python {shlex.join([os.path.relpath(sys.argv[0], REPO_ROOT), *argv])}",
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "images": len(paths),
        "step": step,
        "repeats": args.repeats,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "onnxruntime": ort.__version__,
        "ort_threads": args.threads or "0 = ONNX Runtime's default, one per physical core",
        "dlib": dlib.__version__,
        "dlib_blas": "on" if dlib.DLIB_USE_BLAS else "off",
        "dlib_avx": "on" if dlib.USE_AVX_INSTRUCTIONS else "off",
        "face_recognition": version("face_recognition"),
        "models": f"{settings.detector} + {settings.embedder}",
        "detector_sides": f"{settings.detector_min_side}–{settings.detector_max_side}",
    }
    body = render(ours, blend, peer, throughput, meta)
    print(f"{SECTION}\n\n{body}")
    if args.write_docs:
        write_section(DOCS_FILE, SECTION, body)
    if args.json:
        raw = {
            "meta": meta,
            "images": [str(p.relative_to(args.lfw)) for p in paths],
            "throughput": throughput,
            **{
                name: {"ms": {k: dict(v) for k, v in run.times.items()}, "faces": run.faces}
                for name, run in ((OURS, ours), (BLEND, blend), (PEER, peer))
            },
        }
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
