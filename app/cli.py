"""The ``facerec`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.logging import configure_logging
from app.core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.model_packs.catalog import Calibrate
    from app.pipeline.face_pipeline import FacePipeline


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
    from app.model_packs.catalog import installed_models

    models = installed_models(_settings(args).models_dir)
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

    settings = _settings(args)
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

    settings = _settings(args)
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


def cmd_eval_calibrate(args: argparse.Namespace) -> int:
    from app.eval.calibrate import calibrate_and_evaluate, write_calibration
    from app.pipeline.face_pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(_settings(args))
    calibration = calibrate_and_evaluate(
        pipeline, args.root, args.pairs, evaluate_on=args.evaluate, cache_dir=args.cache
    )
    if args.manifest is not None:
        write_calibration(args.manifest, calibration)
    _emit(calibration, args.json)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service with uvicorn; the database is prepared once, before any worker starts."""
    import logging
    import os

    settings = _settings(args).model_copy(update={"worker_processes": args.workers})
    if args.workers > 1:
        # Set before anything imports prometheus_client (it reads PROMETHEUS_MULTIPROC_DIR at
        # import), and before uvicorn spawns the workers, which inherit this environment.
        os.environ.update(worker_environment(args, settings))

    import uvicorn

    from app.services.container import prepare_database

    logging.getLogger().setLevel(settings.log_level.upper())
    admin_key = prepare_database(settings)
    if admin_key is not None:
        print(f"first admin API key (shown once, store it now): {admin_key}", file=sys.stderr)
    log_level = settings.log_level.lower()
    if args.workers > 1:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=log_level,
        )
    else:
        from app.main import create_app

        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=log_level)
    return 0


def worker_environment(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """What the workers of ``serve --workers N`` need from this process, as environment variables.

    uvicorn spawns them from an import string: each builds its settings from
    the environment alone, so this is the one place that hands them over.

    - ``FACEREC_WORKER_PROCESSES``: N, from which each worker takes its share of
      the cores (``inference_settings``);
    - ``FACEREC_MODELS_DIR``: ``--models-dir``, when given;
    - ``PROMETHEUS_MULTIPROC_DIR``: ``<data_dir>/prometheus-multiproc``, emptied
      now (a previous run's files would be summed into this run's counts), where
      every worker writes its metrics so that any worker's /metrics reports them all.
    """
    import shutil

    metrics_dir = settings.data_dir / "prometheus-multiproc"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    environment = {
        "FACEREC_WORKER_PROCESSES": str(args.workers),
        # prometheus_client's own variable (app.core.prometheus.MULTIPROC_DIR_ENV), spelled out
        # here so that nothing imports prometheus_client before it is set.
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    if args.models_dir:
        environment["FACEREC_MODELS_DIR"] = str(settings.models_dir)
    return environment


def cmd_collections_reembed(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.db.jobs import get_job
    from app.pipeline.pipelines import Pipelines
    from app.pipeline.runner import inference_settings
    from app.schemas.collections import GivenThresholds
    from app.schemas.reembed import ReembedRequest
    from app.services import reembedding
    from app.services.collections import Target
    from app.services.container import open_database
    from app.services.keys import Principal

    settings = _settings(args)
    given = None
    if (args.verify_threshold is None) != (args.identify_threshold is None):
        raise SystemExit("give both --verify-threshold and --identify-threshold, or neither")
    if args.verify_threshold is not None:
        given = GivenThresholds(verify=args.verify_threshold, identify=args.identify_threshold)
    request = ReembedRequest(model=args.model, thresholds=given, unmovable=args.unmovable)
    _, engine, session_factory = open_database(settings)
    pipeline_settings, workers = inference_settings(settings)
    context = reembedding.MoveContext(session_factory, Pipelines(pipeline_settings, workers), settings)
    try:
        with session_factory() as session:
            job = reembedding.prepare(
                context, session, Target(args.collection_id, Principal("admin", "cli")), request
            )
            job_id, total = job.id, job.total
            session.commit()
        print(f"job {job_id}: moving {total} templates of {args.collection_id} to {args.model}")
        with tqdm(total=total, unit="face", dynamic_ncols=True) as bar:
            reembedding.run_foreground(context, job_id, lambda done: bar.update(done - bar.n))
        with session_factory() as session:
            finished = get_job(session, job_id)
            details = (finished.details if finished is not None else None) or {}
    finally:
        engine.dispose()
    deleted = details.get("deleted") or []
    print(f"collection {args.collection_id} is on {args.model}: {details.get('moved', 0)} templates moved")
    for face in deleted:
        print(f"  deleted {face['face_id']}: {face['reason']}")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from app.services.keys import create_key

    with _database_session(args) as session:
        created = create_key(session, args.role, args.name, actor="cli", collections=args.collection)
        session.commit()
    scope = f" for {', '.join(created.collections)}" if created.collections is not None else ""
    print(f"{args.role} key {created.prefix}…{scope} created; it is shown only now:")
    print(created.key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from app.services.keys import list_keys

    with _database_session(args) as session:
        keys = list_keys(session, include_revoked=args.all)
    print(f"{'PREFIX':<14}{'ROLE':<8}{'CREATED':<22}{'LAST USED':<22}{'REVOKED':<22}{'COLLECTIONS':<24}NAME")
    for key in keys:
        reach = "all" if key.collections is None else ",".join(key.collections) or "(none left)"
        print(
            f"{key.prefix:<14}{key.role:<8}{_when(key.created_at):<22}{_when(key.last_used_at):<22}"
            f"{_when(key.revoked_at):<22}{reach:<24}{key.name}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from app.services.keys import revoke_key

    with _database_session(args) as session:
        key = revoke_key(session, args.prefix, actor="cli")
        session.commit()
    print(f"revoked {key.role} key {key.prefix}")
    return 0


@contextmanager
def _database_session(args: argparse.Namespace) -> Iterator[Session]:
    from app.services.container import open_database

    _, engine, session_factory = open_database(_settings(args))
    try:
        with session_factory() as session:
            yield session
    finally:
        engine.dispose()


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


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

    models = commands.add_parser("models", help="build, import, list or calibrate models").add_subparsers(
        dest="models_command", required=True
    )
    build = models.add_parser("build", help="build the default pack from installed packages")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
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
    _add_service_commands(commands)
    return parser


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


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _add_service_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``serve`` and ``keys``: running the HTTP service and managing its API keys."""
    serve = commands.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=_at_least_one, default=1, help="worker processes (each loads the models)"
    )
    serve.set_defaults(func=cmd_serve)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--role", choices=["client", "admin"], required=True)
    create.add_argument("--name", default="", help="who or what the key is for")
    create.add_argument(
        "--collection",
        action="append",
        metavar="ID",
        help="a client key may use only this collection (repeat for several; default: every collection)",
    )
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke the key whose prefix starts with PREFIX")
    revoke.add_argument("prefix")
    revoke.set_defaults(func=cmd_keys_revoke)

    collections = commands.add_parser("collections", help="manage collections").add_subparsers(
        dest="collections_command", required=True
    )
    reembed = collections.add_parser(
        "reembed", help="move a collection to another model, from the stored crops (no photos needed)"
    )
    reembed.add_argument("collection_id")
    reembed.add_argument("--model", required=True, help="the installed embedder to move to")
    reembed.add_argument(
        "--unmovable",
        choices=["fail", "delete"],
        default="fail",
        help="faces whose stored crop cannot be re-aligned: fail (nothing changes) or delete them",
    )
    reembed.add_argument("--verify-threshold", type=float, help="for a model without calibration")
    reembed.add_argument("--identify-threshold", type=float, help="for a model without calibration")
    reembed.set_defaults(func=cmd_collections_reembed)


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
