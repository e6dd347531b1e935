"""Memory per model: what each installed embedder costs a serving process, alone and added to another.

Every measurement runs in a fresh process (``model_memory_probe.py``), so
one model's allocations never sit under another's figures: per embedder, a
process that imports the service and loads that model through ``Pipelines``
and analyses one LFW photo with it; with several embedders, one more that
loads the default model first and then each other one into the same
``Pipelines``. Each process is started ``--repeats`` times, the kinds
interleaved so background load falls on all alike; the docs give medians.

Run from the repository root:
    .venv/bin/python bench/model_memory.py --write-docs
    .venv/bin/python bench/model_memory.py --models-dir /tmp/models   # another folder of models
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort
from models_report import SECTION, Checkpoint, ModelInfo, ModelsResults, ModelSteps, ProcessRun, render
from render_docs import add_output_options, publish
from run_record import DEFAULT_LFW, MODELS_RESULTS, command_line, load_average, machine, timestamp

from app.core.settings import Settings
from app.model_packs.catalog import InstalledModel, installed_models
from app.pipeline.manifest import load_manifest

PROBE = Path(__file__).with_name("model_memory_probe.py")
DEFAULT_IMAGE = DEFAULT_LFW / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"  # one face, the first LFW name


def describe(model: InstalledModel, settings: Settings) -> ModelInfo:
    manifest = model.manifest
    assert manifest is not None and manifest.embedding_size is not None
    detector = manifest.detector or settings.detector
    detector_dir = settings.models_dir / detector
    return {
        "model": model.name,
        "detector": detector,
        "onnx_bytes": (model.path / manifest.file).stat().st_size,
        "detector_onnx_bytes": (detector_dir / load_manifest(detector_dir, verify=False).file).stat().st_size,
        "embedding_size": manifest.embedding_size,
        "input": f"{manifest.input.width}x{manifest.input.height}",
    }


def probe(models_dir: Path, image: Path, models: list[str]) -> dict[str, Any]:
    """One fresh process loading ``models`` in order: its checkpoints, threads and slots."""
    command = [sys.executable, str(PROBE), "--models-dir", str(models_dir), "--image", str(image), *models]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    report: dict[str, Any] = json.loads(done.stdout)
    no_face = [c["model"] for c in report["checkpoints"] if c["label"] == "analyzed" and not c["faces"]]
    if no_face:  # no face, no embedding: the embedder's arenas would not be in the figures
        raise SystemExit(f"{', '.join(no_face)} found no face in {image}; choose another --image")
    return report


def checkpoint(runs: list[dict[str, Any]]) -> Checkpoint:
    """The same checkpoint of every repeat, as its rss and peak readings."""
    rss, peak = [run["rss_kib"] for run in runs], [run["peak_kib"] for run in runs]
    return {
        "rss": {"median_kib": statistics.median(rss), "runs_kib": rss},
        "peak": {"median_kib": statistics.median(peak), "runs_kib": peak},
    }


def process_run(reports: list[dict[str, Any]]) -> ProcessRun:
    """The repeats of one kind of process; each lists the same checkpoints in the same order."""
    by_position = list(zip(*(report["checkpoints"] for report in reports), strict=True))
    python, imported, *model_steps = by_position
    steps: list[ModelSteps] = [
        {
            "model": loaded[0]["model"],
            "loaded": checkpoint(list(loaded)),
            "analyzed": checkpoint(list(analyzed)),
        }
        for loaded, analyzed in zip(model_steps[::2], model_steps[1::2], strict=True)
    ]
    return {"python": checkpoint(list(python)), "imported": checkpoint(list(imported)), "models": steps}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models-dir", type=Path, help="the models folder (default: the settings' models_dir)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="the photo each model analyses")
    add_output_options(parser, MODELS_RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    settings = Settings() if args.models_dir is None else Settings(models_dir=args.models_dir)
    models_dir = settings.models_dir.resolve()
    embedders = [m for m in installed_models(models_dir) if m.kind == "embedder"]
    if not embedders:
        raise SystemExit(f"no embedder is installed in {models_dir}")
    names = [m.name for m in embedders]
    default = settings.embedder if settings.embedder in names else names[0]
    kinds = {name: [name] for name in names}  # a label → the models its process loads, in order
    if len(names) > 1:
        kinds["together"] = [default, *(name for name in names if name != default)]

    load_start = load_average()
    reports: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for repeat in range(args.repeats):
        for kind, models in kinds.items():
            report = probe(models_dir, args.image, models)
            reports[kind].append(report)
            final = report["checkpoints"][-1]
            print(
                f"repeat {repeat + 1}/{args.repeats} {kind}: {final['rss_kib'] / 1024:.0f} MiB resident, "
                f"peak {final['peak_kib'] / 1024:.0f} MiB",
                file=sys.stderr,
            )
    together = reports.pop("together", None)
    first = reports[default][0]
    image, lfw = args.image.resolve(), DEFAULT_LFW.resolve()
    results: ModelsResults = {
        "command": command_line(argv),
        "date": timestamp(),
        "machine": machine(load_start),
        "setup": {
            "repeats": args.repeats,
            "image": str(image.relative_to(lfw) if image.is_relative_to(lfw) else image),
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
            "inference_threads": first["threads"],
            "inference_slots": first["slots"],
            "default_model": default,
        },
        "models": [describe(model, settings) for model in embedders],
        "alone": {name: process_run(runs) for name, runs in reports.items()},
        "together": None if together is None else process_run(together),
    }
    print(f"{SECTION}\n\n{render(results)}")
    publish(args, MODELS_RESULTS, results)


if __name__ == "__main__":
    main(sys.argv[1:])
