"""``facerec check``, ``analyze`` and ``eval``: run the models, and measure them on labelled sets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import emit, settings_from_args

if TYPE_CHECKING:
    pass


def cmd_check(args: argparse.Namespace) -> int:
    """Load the configured models and run them once: the set-up's smoke check."""
    import numpy as np

    from app.pipeline.face_pipeline import FacePipeline
    from app.pipeline.runtime import CudaUnusable, check_providers, providers_in_use

    settings = settings_from_args(args)
    pipeline = FacePipeline.from_settings(settings)
    blank = np.full((240, 320, 3), 127, dtype=np.uint8)
    faces = pipeline.analyze(blank)
    crop = np.zeros((1, *pipeline.embedder.crop_size[::-1], 3), dtype=np.uint8)
    embedding = pipeline.embedder.embed(crop)
    providers = ", ".join(f"{model} on {provider}" for model, provider in sorted(providers_in_use().items()))
    try:
        check_providers(allow_cpu_fallback=settings.cpu_fallback)
    except CudaUnusable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"ok: detector {pipeline.detector.__class__.__name__} found {len(faces)} faces in a blank image; "
        f"embedder {pipeline.model.name} gives {embedding.shape[1]}-d embeddings ({pipeline.metric}); "
        f"ONNX Runtime: {providers}"
    )
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from app.pipeline.decode import read_image_file
    from app.pipeline.face_pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings_from_args(args))
    faces = pipeline.analyze(read_image_file(args.image))
    report = [
        {
            "box": [round(float(v), 1) for v in face.box],
            "det_score": round(face.det_score, 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks],
            "quality": {k: round(v, 3) for k, v in face.quality.to_dict().items()},
        }
        for face in faces
    ]
    print(json.dumps({"faces": report}, indent=2))
    return 0


def cmd_eval_pairs(args: argparse.Namespace) -> int:
    from app.eval.run import evaluate_pairs
    from app.pipeline.face_pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings_from_args(args))
    summary = evaluate_pairs(pipeline, args.root, args.pairs, cache_dir=args.cache, plot=args.plot)
    emit(summary, args.json)
    return 0


def cmd_eval_identify(args: argparse.Namespace) -> int:
    from app.eval.run import evaluate_identification
    from app.pipeline.face_pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings_from_args(args))
    summary = evaluate_identification(pipeline, args.root, args.protocol, cache_dir=args.cache)
    emit(summary, args.json)
    return 0


def cmd_eval_calibrate(args: argparse.Namespace) -> int:
    from app.eval.calibrate import calibrate_and_evaluate, write_calibration
    from app.pipeline.face_pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings_from_args(args))
    calibration = calibrate_and_evaluate(
        pipeline, args.root, args.pairs, evaluate_on=args.evaluate, cache_dir=args.cache
    )
    if args.manifest is not None:
        write_calibration(args.manifest, calibration)
    emit(calibration, args.json)
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``check``, ``analyze`` and ``eval pairs|identify|calibrate``."""
    commands.add_parser("check", help="load the models and run them once").set_defaults(func=cmd_check)

    analyze = commands.add_parser("analyze", help="detect and describe the faces in an image")
    analyze.add_argument("image", type=Path)
    analyze.set_defaults(func=cmd_analyze)

    evaluate = commands.add_parser("eval", help="measure accuracy on a labelled set").add_subparsers(
        dest="eval_command", required=True
    )
    pairs = evaluate.add_parser("pairs", help="verification on an LFW-format pair list")
    pairs.add_argument("--root", type=Path, required=True, help="folder of <name>/<name>_NNNN.jpg")
    pairs.add_argument("--pairs", type=Path, required=True, help="pairs file (View 1 or View 2 format)")
    pairs.add_argument("--json", type=Path, help="also write the summary here")
    pairs.add_argument("--plot", type=Path, help="write a ROC/DET plot (PNG)")
    pairs.add_argument("--cache", type=Path, help="cache embeddings by file hash in this folder")
    pairs.set_defaults(func=cmd_eval_pairs)
    identify = evaluate.add_parser("identify", help="closed- and open-set identification")
    identify.add_argument("--root", type=Path, required=True, help="folder the protocol's paths are under")
    identify.add_argument("--protocol", type=Path, required=True, help="CSV: path,identity,role")
    identify.add_argument("--json", type=Path, help="also write the summary here")
    identify.add_argument("--cache", type=Path, help="cache embeddings by file hash in this folder")
    identify.set_defaults(func=cmd_eval_identify)
    calibrate = evaluate.add_parser("calibrate", help="thresholds at FAR 1e-2…1e-5 over all image pairs")
    calibrate.add_argument("--root", type=Path, required=True, help="folder of <name>/<name>_NNNN.jpg")
    calibrate.add_argument("--pairs", type=Path, required=True, help="pair list whose images are used")
    calibrate.add_argument("--evaluate", type=Path, help="also measure accuracy on this pair list")
    calibrate.add_argument("--manifest", type=Path, help="write thresholds and figures into this manifest")
    calibrate.add_argument("--json", type=Path, help="also write the summary here")
    calibrate.add_argument("--cache", type=Path, help="cache embeddings by file hash in this folder")
    calibrate.set_defaults(func=cmd_eval_calibrate)
