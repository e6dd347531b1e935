"""The `facerec-train` command line: prepare crops, train, evaluate and export a model."""

from __future__ import annotations

import argparse
import copy
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.core.arrays import ImageArray
from app.core.logging import configure_logging
from app.core.settings import Settings
from app.pipeline.decode import IMAGE_SUFFIXES, read_image_file
from app.pipeline.geometry import DEFAULT_CROP_SIZE

if TYPE_CHECKING:
    from training.config import ExperimentConfig


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(models_dir=args.models_dir) if args.models_dir else Settings()


def crop_size(args: argparse.Namespace) -> int:
    """--size, else the input size of --backbone's default configuration, else 128."""
    if args.size is not None:
        return int(args.size)
    if args.backbone is not None:
        from training.models import create_backbone

        return create_backbone(args.backbone).input_size
    return DEFAULT_CROP_SIZE


def cmd_prepare(args: argparse.Namespace) -> int:
    from training.data.prepare import (
        FaceCropper,
        IdentitySelection,
        names_in_pair_list,
        prepare_identities,
        summarise_failures,
    )

    exclude: set[str] = set()
    for pairs_file in args.exclude_pairs or []:
        exclude |= names_in_pair_list(pairs_file)
    for names_file in args.exclude_names or []:
        exclude |= {line.strip() for line in names_file.read_text().splitlines() if line.strip()}
    selection = IdentitySelection(
        min_images=args.min_images,
        max_identities=args.max_identities,
        max_images_per_identity=args.max_images_per_identity,
        exclude=frozenset(exclude),
    )
    cropper = FaceCropper.from_settings(_settings(args), crop_size(args))
    summary = prepare_identities(args.source, args.out, cropper, selection, progress=not args.quiet)
    print(f"prepared {summary.describe()} in {args.out}")
    if summary.failures:
        print(f"failures listed in {args.out / 'failures.csv'}: {summarise_failures(summary.failures)}")
    return 0


def cmd_prepare_pairs(args: argparse.Namespace) -> int:
    from training.data.prepare import FaceCropper, prepare_pair_list, summarise_failures

    cropper = FaceCropper.from_settings(_settings(args), crop_size(args))
    summary = prepare_pair_list(args.root, args.pairs, args.out, cropper, progress=not args.quiet)
    print(f"prepared {summary.describe()} in {args.out}")
    if summary.failures:
        print(f"failures listed in {args.out / 'failures.csv'}: {summarise_failures(summary.failures)}")
    return 0


def load_config(args: argparse.Namespace) -> ExperimentConfig:
    """The named config module's CONFIG, with the command line's overrides applied."""
    module = importlib.import_module(f"training.configs.{args.config}")
    config: ExperimentConfig = copy.deepcopy(module.CONFIG)
    if args.name:
        config.name = args.name
    if args.out_dir:
        config.out_dir = args.out_dir
    if args.crops:
        config.data.crops_dir = args.crops
    if args.pairs:
        config.data.pairs_file = args.pairs
    if args.pairs_crops:
        config.data.pairs_crops_dir = args.pairs_crops
    if args.epochs is not None:
        config.train.epochs = args.epochs
    if args.iterations_per_epoch is not None:
        config.train.iterations_per_epoch = args.iterations_per_epoch
    if args.time_budget is not None:
        config.train.time_budget_minutes = args.time_budget
    if args.head:
        config.model.head = args.head
    if args.optimizer:
        config.optim.optimizer = args.optimizer
    if args.lr is not None:
        config.optim.lr = args.lr
    return config


def cmd_train(args: argparse.Namespace) -> int:
    from training.train import train

    config = load_config(args)
    result = train(config, resume=args.resume, progress=not args.quiet)
    state = result.state
    print(
        f"{config.name}: {state.iteration} iterations in {state.epoch} epochs, {state.seconds / 60:.1f} min "
        f"(stopped by {result.stopped_by}); results in {result.run_dir}"
    )
    for row in state.evaluations:
        print("  " + describe_evaluation(row))
    return 0


def describe_evaluation(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']} (iteration {row['iteration']})"]
    if "pairs_accuracy_mean" in row:
        parts.append(
            f"pairs accuracy {row['pairs_accuracy_mean']:.4f} ± {row['pairs_accuracy_std']:.4f}, "
            f"AUC {row['pairs_auc']:.4f}, EER {row['pairs_eer']:.4f}"
        )
    if "top1" in row:
        parts.append(f"held-out top-1 {row['top1']:.4f}")
    return ": ".join(parts[:1]) + ": " + "; ".join(parts[1:]) if len(parts) > 1 else parts[0]


def cmd_export(args: argparse.Namespace) -> int:
    from training.export import export_model, load_trained_network, untrained_network

    if (args.run is None) == (args.backbone is None):
        raise SystemExit("export needs either a training run folder or --backbone (an untrained model)")
    if args.run is not None:
        net = load_trained_network(args.run)
        description = args.description or f"trained by facerec-train (run {args.run.name})"
    else:
        arguments = {"input_size": args.input_size} if args.input_size else {}
        net = untrained_network(args.backbone, **arguments)
        description = args.description or f"untrained {args.backbone} (random weights, for testing)"
    settings = _settings(args)
    crops = parity_crops(args, settings, net.input_size)
    result = export_model(
        net,
        args.out,
        parity_crops=crops,
        version=args.version,
        description=description,
        settings=settings,
        calibration_root=args.calibrate_root,
        calibration_pairs=args.calibrate_pairs,
        progress=not args.quiet,
    )
    print(
        f"exported {result.manifest.name}: {net.input_size}x{net.input_size} input, "
        f"{result.manifest.embedding_size}-d embeddings, ONNX vs torch max |diff| "
        f"{result.parity_max_abs_diff:.2e} on {result.parity_crops} real crops"
    )
    for point in result.manifest.thresholds:
        print(f"  threshold at FAR {point.far:g}: {point.threshold:.4f} (FRR {point.frr:.2%})")
    print(f"serve it with FACEREC_MODELS_DIR={args.out.parent} FACEREC_EMBEDDER={args.out.name}")
    return 0


def parity_crops(args: argparse.Namespace, settings: Settings, size: int) -> ImageArray:
    """Real crops at the model's size: prepared ones, or photos cut now with the service's detector."""
    from training.data.dataset import load_crops
    from training.data.prepare import FaceCropper

    if args.parity_crops:
        crops = load_crops(sorted(args.parity_crops.rglob("*.png"))[: args.parity_count])
        if len(crops) and crops.shape[1] != size:
            raise SystemExit(f"crops in {args.parity_crops} are {crops.shape[1]} px, the model takes {size}")
        return crops
    if args.parity_photos:
        cropper = FaceCropper.from_settings(settings, size)
        photos = sorted(p for p in args.parity_photos.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        cut = [cropper.crop(read_image_file(p)) for p in photos[: args.parity_count]]
        found = [c for c in cut if c is not None]
        return np.stack(found) if found else np.zeros((0, size, size, 3), np.uint8)
    raise SystemExit("export needs real crops for the parity check: --parity-crops or --parity-photos")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerec-train", description=__doc__)
    parser.add_argument("--log-level", default="WARNING")
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="photos (one folder per identity) -> aligned face crops")
    prepare.add_argument("source", type=Path, help="folder with one sub-folder of photos per identity")
    prepare.add_argument("out", type=Path, help="output folder for the crops")
    prepare.add_argument("--min-images", type=int, default=1, help="skip identities with fewer photos")
    prepare.add_argument("--max-identities", type=int, default=None)
    prepare.add_argument("--max-images-per-identity", type=int, default=None)
    prepare.add_argument(
        "--exclude-pairs",
        type=Path,
        action="append",
        help="leave out every identity this LFW pair list names",
    )
    prepare.add_argument("--exclude-names", type=Path, action="append", help="file with one name per line")
    prepare.set_defaults(handler=cmd_prepare)

    pairs = commands.add_parser("prepare-pairs", help="crop every image of an LFW-format pair list")
    pairs.add_argument("root", type=Path, help="the LFW image root (…/lfw-deepfunneled)")
    pairs.add_argument("pairs", type=Path, help="the pair list (pairsDevTest.txt format)")
    pairs.add_argument("out", type=Path)
    pairs.set_defaults(handler=cmd_prepare_pairs)

    run = commands.add_parser("train", help="train a model from a config in training/configs/")
    run.add_argument("--config", required=True, help="module in training/configs/, e.g. lfw_demo_arcface")
    run.add_argument("--name", help="run name (the folder under --out-dir)")
    run.add_argument("--out-dir", type=Path)
    run.add_argument("--crops", type=Path, help="prepared training crops")
    run.add_argument("--pairs", type=Path, help="LFW-format pair list for per-epoch verification")
    run.add_argument("--pairs-crops", type=Path, help="the pair list's prepared crops")
    run.add_argument("--epochs", type=int)
    run.add_argument("--iterations-per-epoch", type=int)
    run.add_argument("--time-budget", type=float, help="minutes; stop (evaluate, save) after this long")
    run.add_argument("--head", help="override the config's head (classification mode)")
    run.add_argument("--optimizer", choices=["sgd", "adamw"])
    run.add_argument("--lr", type=float, help="base learning rate")
    run.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=cmd_train)

    export = commands.add_parser("export", help="backbone -> ONNX + manifest the service loads")
    export.add_argument("out", type=Path, help="the model folder to write; its name is FACEREC_EMBEDDER")
    export.add_argument("--run", type=Path, help="a finished training run folder (runs/<name>)")
    export.add_argument("--backbone", help="export an untrained backbone instead (checks the serving path)")
    export.add_argument("--input-size", type=int, help="with --backbone: the crop side")
    export.add_argument("--parity-crops", type=Path, help="prepared crops (at the model's size) for parity")
    export.add_argument("--parity-photos", type=Path, help="or photos, cut with the service's detector")
    export.add_argument("--parity-count", type=int, default=32)
    export.add_argument("--calibrate-root", type=Path, help="LFW image root for threshold calibration")
    export.add_argument("--calibrate-pairs", type=Path, help="pair list whose images calibrate thresholds")
    export.add_argument("--version", default="1")
    export.add_argument("--description", default="")
    export.set_defaults(handler=cmd_export)

    for sub in (prepare, pairs):
        sub.add_argument("--size", type=int, help="crop side in pixels (default: --backbone's input, or 128)")
        sub.add_argument("--backbone", help="take the crop size from this backbone's default input")
    for sub in (prepare, pairs, export):
        sub.add_argument("--models-dir", type=Path, default=None, help="where the detector pack lives")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
