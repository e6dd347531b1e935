"""``facerec collections``: enrol a folder (or a CSV list) of photos, move a collection to another model."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import at_least_one, settings_from_args

if TYPE_CHECKING:
    from app.services.bulk_import import ImportSummary

IMPORT_HELP = """\
Enrol many photos at once, as POST /enroll would one by one: each photo's
largest face, through the same quality gate, one template per subject and
image bytes. Either DIR holds one sub-folder per subject (the folder's name
is the subject id; its image files are the photos), or --csv lists rows
path,subject_id[,name] (paths relative to the CSV's folder; the name is
given to subjects the import creates). Photos already stored for their
subject are skipped before any inference, so an interrupted import (Ctrl-C,
kill) loses at most its last batch: run it again to resume. A collection
that is being moved to another model (collections reembed) is refused until
the move has finished. Exits 0 when the import ran, even if photos were
rejected (--rejected lists them).
"""


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

    settings = settings_from_args(args)
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


def cmd_collections_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.db.models import DEFAULT_COLLECTION
    from app.pipeline.pipelines import Pipelines
    from app.pipeline.runner import inference_settings
    from app.services.bulk_import import DEFAULT_BATCH, BulkImport, ImportContext, list_csv, list_folder
    from app.services.container import open_database

    if (args.folder is None) == (args.csv is None):
        raise SystemExit("give one of DIR (one sub-folder per subject) and --csv FILE")
    try:
        if args.csv is not None:
            listing = list_csv(args.csv)
        elif args.folder.is_dir():
            listing = list_folder(args.folder)
        else:
            raise SystemExit(f"{args.folder} is not a folder")
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SystemExit(f"cannot read {args.csv or args.folder}: {error}") from None

    settings = settings_from_args(args)
    _, engine, session_factory = open_database(settings)
    pipeline_settings, workers = inference_settings(settings)
    context = ImportContext(session_factory, Pipelines(pipeline_settings, workers), settings)
    total = len(listing.items) + len(listing.rejected)
    try:
        with tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            importer = BulkImport(
                context,
                args.collection or DEFAULT_COLLECTION,
                batch_size=args.batch_size or DEFAULT_BATCH,
                progress=bar.update,
            )
            try:
                summary = importer.run(listing)
            except KeyboardInterrupt:
                bar.close()
                print_summary(importer.summary, listing.ignored)
                print("interrupted: the batch in flight was not stored; run the same command to resume")
                write_rejected(args.rejected, importer.summary)
                return 130
    finally:
        engine.dispose()
    print_summary(summary, listing.ignored)
    write_rejected(args.rejected, summary)
    return 0


def print_summary(summary: ImportSummary, ignored: int) -> None:
    print(
        f"collection {summary.collection_id} ({summary.model}): {summary.enrolled} enrolled "
        f"({summary.subjects_created} new subjects), {summary.skipped_stored} skipped as already stored, "
        f"{summary.duplicates} duplicates, {len(summary.rejected)} rejected"
    )
    for code, count in summary.rejected_by_code().items():
        print(f"  rejected {code}: {count}")
    if ignored:
        print(f"  ignored {ignored} files or folders that are not photos of a subject folder")
    print(
        f"{summary.done} of {summary.listed} images in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.1f} images/s), {summary.analysed} analysed"
    )


def write_rejected(path: Path | None, summary: ImportSummary) -> None:
    if path is None:
        return
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "code", "message"])
        writer.writerows([r.path, r.code, r.message] for r in summary.rejected)
    print(f"rejected photos listed in {path}")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``collections import-folder`` and ``collections reembed``."""
    group = commands.add_parser("collections", help="manage collections").add_subparsers(
        dest="collections_command", required=True
    )
    reembed = group.add_parser(
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
    importer = group.add_parser(
        "import-folder",
        help="enrol a folder (or CSV list) of photos into a collection; resumable",
        description=IMPORT_HELP,
    )
    importer.add_argument("folder", nargs="?", type=Path, metavar="DIR", help="one sub-folder per subject")
    importer.add_argument(
        "--csv", type=Path, metavar="FILE", help="rows path,subject_id[,name] instead of DIR"
    )
    importer.add_argument(
        "--collection", metavar="ID", help="the collection to enrol into (default: the default collection)"
    )
    importer.add_argument("--rejected", type=Path, metavar="FILE", help="write the rejected photos as CSV")
    importer.add_argument(
        "--batch-size",
        type=at_least_one,
        metavar="N",
        help="photos per transaction (default 512): what an interrupt can lose",
    )
    importer.set_defaults(func=cmd_collections_import)
