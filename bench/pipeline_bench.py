"""Our face pipeline against the peer ``face_recognition`` library (dlib), on the same LFW images.

All run in one process on one deterministic sample: per stage (decode,
detect, align/landmarks, embed) and end to end (bytes → embeddings of every
face, the latency a /verify request sees). Ours runs at the default
settings (``FACEREC_PRECISION=int8``: the int8 embedder, and the int8 detector
on a CPU with VNNI) and in fp32
(``FACEREC_PRECISION=fp32``), each with ONNX Runtime's default thread count
and with one thread (dlib runs on one; the peer's CPU time over its wall
time is recorded to show it). Timed passes alternate between the readings
so background load falls on all alike, and each round of passes starts with
a different one; each image's time is its median over the repeats, and the
tables give the median and p90 of those.

Run from the repository root:
    .venv/bin/python bench/pipeline_bench.py --images 200 --repeats 3 --write-docs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dlib
import face_recognition
import numpy as np
import onnxruntime as ort
from pipeline_report import (
    LABELS,
    OURS,
    OURS_FP32,
    OURS_FP32_ONE_THREAD,
    OURS_ONE_THREAD,
    PEER,
    SECTION,
    BatchThroughput,
    LibraryResults,
    PipelineResults,
    Spread,
    render,
)
from render_docs import add_output_options, publish
from run_record import DEFAULT_LFW, PIPELINE_RESULTS, command_line, load_average, machine, timestamp

from app.core.arrays import ImageArray
from app.core.settings import Settings
from app.pipeline.decode import decode_image
from app.pipeline.face_pipeline import FacePipeline

WARMUP_IMAGES = 5
THROUGHPUT_FACES = 64


@dataclass
class Run:
    """Milliseconds per stage per image over the repeats, plus face counts from the end-to-end runs."""

    times: dict[str, dict[int, list[float]]]
    faces: dict[int, int]
    cpu_over_wall: list[float]  # process CPU time over wall time of each pass (the peer's)

    @classmethod
    def empty(cls) -> Run:
        return cls(defaultdict(lambda: defaultdict(list)), {}, [])

    def add(self, stage: str, image: int, seconds: float) -> None:
        self.times[stage][image].append(seconds * 1000.0)

    def results(self) -> LibraryResults:
        """Per stage, the median and p90 over images of each image's median over the repeats."""
        stages: dict[str, Spread] = {}
        for stage, per_image in self.times.items():
            medians = [float(np.median(ms)) for ms in per_image.values()]
            stages[stage] = {"median": float(np.median(medians)), "p90": float(np.percentile(medians, 90))}
        passes = max((len(ms) for ms in self.times["end_to_end"].values()), default=0)
        return {
            "stages_ms": stages,
            "pass_medians_ms": [self.pass_median("end_to_end", repeat) for repeat in range(passes)],
            "images_without_face": sum(n == 0 for n in self.faces.values()),
            "cpu_over_wall": float(np.median(self.cpu_over_wall)) if self.cpu_over_wall else None,
        }

    def pass_median(self, stage: str, repeat: int) -> float:
        """Median over images of one timed pass: shows how load moved between passes."""
        return float(np.median([ms[repeat] for ms in self.times[stage].values() if len(ms) > repeat]))


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
    wall, cpu = clock(), time.process_time()
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
    run.cpu_over_wall.append((time.process_time() - cpu) / (clock() - wall))


def embed_throughput(pipeline: FacePipeline, crops: ImageArray, rounds: int) -> BatchThroughput:
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
        "faces": len(crops),
        "batch_size": embedder.batch_size,
        "single_ms_per_face": per_face(one_at_a_time),
        "batch_ms_per_face": per_face(lambda: embedder.embed(crops)),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200, help="LFW images in the sample")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per library")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW root (one folder per person)")
    add_output_options(parser, PIPELINE_RESULTS)
    parser.add_argument("--raw-json", type=Path, help="also write every per-image timing and face count here")
    return parser.parse_args(argv)


# Each of our readings: the settings it runs with (the rest are the defaults).
READINGS: dict[str, dict[str, Any]] = {
    OURS: {},
    OURS_ONE_THREAD: {"inference_threads": 1},
    OURS_FP32: {"precision": "fp32"},
    OURS_FP32_ONE_THREAD: {"precision": "fp32", "inference_threads": 1},
}


def model_names(fields: dict[str, Any]) -> list[str]:
    """The detector and embedder a reading runs."""
    settings = Settings(**fields)
    return [settings.detector, settings.embedder]


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    load_start = load_average()
    paths, step = sample_lfw(args.lfw, args.images)
    blobs = [p.read_bytes() for p in paths]
    pipelines = {name: FacePipeline.from_settings(Settings(**fields)) for name, fields in READINGS.items()}

    warm = Run.empty()  # thrown away: first-call costs (session set-up, page cache, allocators)
    for pipeline in pipelines.values():
        ours_pass(pipeline, paths[:WARMUP_IMAGES], blobs[:WARMUP_IMAGES], warm)
    peer_pass(paths[:WARMUP_IMAGES], warm)

    runs = {name: Run.empty() for name in [*READINGS, PEER]}
    crops: list[ImageArray] = []

    def run_ours(name: str) -> None:
        seen = ours_pass(pipelines[name], paths, blobs, runs[name])
        if name == OURS:
            crops[:] = seen  # kept for the batch throughput test

    runners: list[tuple[str, Callable[[], object]]] = [
        *((name, partial(run_ours, name)) for name in READINGS),
        (PEER, lambda: peer_pass(paths, runs[PEER])),
    ]
    for repeat in range(args.repeats):
        # Each pass starts with the next runner, so no runner always runs first,
        # right after the warm-up, or always right after the same other one.
        shift = repeat % len(runners)
        spent = []
        for name, runner in runners[shift:] + runners[:shift]:
            started = time.perf_counter()
            runner()
            spent.append(f"{LABELS[name]} {time.perf_counter() - started:.1f} s")
        print(f"pass {repeat + 1}/{args.repeats}: " + ", ".join(spent), file=sys.stderr)
    if not crops:
        raise SystemExit("no faces found by our pipeline: nothing to embed")
    batch = np.stack([crops[k % len(crops)] for k in range(THROUGHPUT_FACES)])  # (64, H, W, 3)
    throughput = {
        name: embed_throughput(pipelines[name], batch, rounds=args.repeats) for name in (OURS, OURS_FP32)
    }

    settings = Settings()
    results: PipelineResults = {
        "command": command_line(argv),
        "date": timestamp(),
        "machine": machine(load_start),
        "sample": {
            "images": len(paths),
            "every_nth_person": step,
            "repeats": args.repeats,
            "warmup_images": WARMUP_IMAGES,
        },
        "software": {
            "onnxruntime": ort.__version__,
            "dlib": dlib.__version__,
            "dlib_blas": bool(dlib.DLIB_USE_BLAS),
            "dlib_avx": bool(dlib.USE_AVX_INSTRUCTIONS),
            "face_recognition": version("face_recognition"),
            "models": {name: model_names(fields) for name, fields in READINGS.items()},
            "detector_min_side": settings.detector_min_side,
            "detector_max_side": settings.detector_max_side,
        },
        "libraries": {name: run.results() for name, run in runs.items()},
        "batch_throughput": throughput,
    }
    print(f"{SECTION}\n\n{render(results)}")
    publish(args, PIPELINE_RESULTS, results)
    if args.raw_json:
        raw = {
            "results": results,
            "images": [str(p.relative_to(args.lfw)) for p in paths],
            **{
                name: {"ms": {k: dict(v) for k, v in run.times.items()}, "faces": run.faces}
                for name, run in runs.items()
            },
        }
        args.raw_json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
