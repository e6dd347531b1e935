"""``facerec models``: build the default pack, import, list and calibrate models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import settings_from_args

if TYPE_CHECKING:
    from app.model_packs.catalog import Calibrate
    from app.pipeline.face_pipeline import FacePipeline


def cmd_models_build(args: argparse.Namespace) -> int:
    from app.model_packs.build import build_default_pack

    settings = settings_from_args(args)
    built = build_default_pack(settings.models_dir, force=args.force, portable_int8=args.portable_int8)
    for name, manifest in built.items():
        print(f"{name}: {manifest.kind} {manifest.source_package} sha256={manifest.sha256[:16]}…")
    print(f"model pack ready in {settings.models_dir}")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from app.model_packs.catalog import installed_models

    models = installed_models(settings_from_args(args).models_dir)
    if args.json:
        print(json.dumps([model.summary() for model in models], indent=2))
        return 0
    for model in models:
        print(_model_line(model.summary()))
    return 0


def _model_line(summary: dict[str, Any]) -> str:
    """One installed model for people: what it takes, gives, and may be used for."""
    if "error" in summary:
        return f"{summary['name']}: unusable: {summary['error']}"
    spec = summary["input"]
    parts = [summary["kind"], f"{spec['width']}x{spec['height']} {spec['color_order']}"]
    if summary["kind"] == "embedder":
        parts.append(f"{summary['embedding_size']}-d {summary['metric']}")
        parts.append("calibrated" if summary["calibrated"] else "uncalibrated")
        if summary["detector"]:
            parts.append(f"detector {summary['detector']}")
    else:
        parts.append(summary["detector_format"])
    parts.append(_licence_line(summary["licence"], summary["commercial_use"]))
    return f"{summary['name']}: " + ", ".join(parts)


def _licence_line(terms: str, commercial_use: bool | None) -> str:
    commercial = {True: "yes", False: "no", None: "unknown"}[commercial_use]
    return f"licence: {terms} (commercial use: {commercial})"


def cmd_models_import(args: argparse.Namespace) -> int:
    from app.model_packs.insightface_pack import import_pack

    settings = settings_from_args(args)
    if (args.calibrate_root is None) != (args.calibrate_pairs is None):
        raise SystemExit("give both --calibrate-root and --calibrate-pairs, or neither")
    calibrate = _pair_list_calibration(args) if args.calibrate_root is not None else None
    result = import_pack(
        args.path,
        settings.models_dir,
        name=args.name,
        settings=settings,
        calibrate=calibrate,
        force=args.force,
    )
    for manifest in result.installed:
        print(f"installed {manifest.name} ({manifest.kind}, {manifest.file}) in {settings.models_dir}")
    for skipped in result.skipped:
        print(f"skipped {skipped.file}: {skipped.reason}")
    licence = result.installed[0].licence_status
    if licence is not None:
        print(_licence_line(licence.terms, licence.commercial_use))
    for name in result.uncalibrated:
        print(
            f"uncalibrated: {name} has no thresholds; a collection can use it only with thresholds given "
            f"explicitly until `facerec models calibrate {name} --calibrate-root DIR --calibrate-pairs FILE`",
            file=sys.stderr,
        )
    return 0


def cmd_models_calibrate(args: argparse.Namespace) -> int:
    from app.model_packs.catalog import calibrate_model

    settings = settings_from_args(args)
    manifest = calibrate_model(settings.models_dir / args.name, settings, _pair_list_calibration(args))
    for point in manifest.thresholds:
        print(f"{manifest.name}: FAR {point.far:g} at similarity {point.threshold:.4f} (FRR {point.frr:.2%})")
    if manifest.open_set is not None:
        for fpir in manifest.open_set.points:
            print(
                f"{manifest.name}: FPIR {fpir.target_fpir:g} with {fpir.gallery_subjects} subjects at "
                f"decision score {fpir.threshold:.4f} (FNIR {fpir.fnir:.2%})"
            )
    return 0


def _pair_list_calibration(args: argparse.Namespace) -> Calibrate:
    """Thresholds over every pair among a pair list's images, written into the manifest (eval calibrate)."""
    from app.eval.calibrate import (
        calibrate_on_pair_list,
        calibrate_open_set_on_folder,
        write_calibration,
        write_open_set,
    )

    def calibrate(pipeline: FacePipeline, manifest_path: Path) -> None:
        write_calibration(
            manifest_path, calibrate_on_pair_list(pipeline, args.calibrate_root, args.calibrate_pairs)
        )
        if getattr(args, "open_set_root", None) is not None:
            write_open_set(manifest_path, calibrate_open_set_on_folder(pipeline, args.open_set_root))

    return calibrate


def _add_calibration_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--calibrate-root", type=Path, required=required, help="folder of <name>/<name>_NNNN.jpg (LFW layout)"
    )
    parser.add_argument(
        "--calibrate-pairs",
        type=Path,
        required=required,
        help="pair list whose images calibrate the thresholds",
    )
    parser.add_argument(
        "--open-set-root",
        type=Path,
        help="folder per identity (e.g. lfw-deepfunneled): also calibrate identify's decision score "
        "by target FPIR on open-set protocols drawn from every image there",
    )


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``models build|list|import|calibrate``."""
    models = commands.add_parser("models", help="build, import, list or calibrate models").add_subparsers(
        dest="models_command", required=True
    )
    build = models.add_parser("build", help="build the default pack from installed packages")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.add_argument(
        "--portable-int8",
        action="store_true",
        help="int8 weights in 7 bits, right on every CPU (default: 8 where the CPU has VNNI)",
    )
    build.set_defaults(func=cmd_models_build)
    listing = models.add_parser("list", help="list the installed models, their licences and calibration")
    listing.add_argument("--json", action="store_true", help="print JSON instead of one line per model")
    listing.set_defaults(func=cmd_models_list)
    imported = models.add_parser("import", help="install an InsightFace pack folder or recogniser .onnx file")
    imported.add_argument("path", type=Path, help="pack folder (e.g. buffalo_l) or one .onnx file")
    imported.add_argument("--name", help="the recogniser's model name (default: the folder's or file's name)")
    imported.add_argument("--force", action="store_true", help="replace installed models of the same name")
    _add_calibration_arguments(imported, required=False)
    imported.set_defaults(func=cmd_models_import)
    calibrating = models.add_parser("calibrate", help="measure an installed embedder's thresholds")
    calibrating.add_argument("name", help="the embedder's folder in the models directory")
    _add_calibration_arguments(calibrating, required=True)
    calibrating.set_defaults(func=cmd_models_calibrate)
