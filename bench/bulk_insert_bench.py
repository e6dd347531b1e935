"""Writing prepared templates: ``add_faces_bulk`` against ``add_face`` one by one, SQLite (and PostgreSQL).

What a bulk import's database side costs, apart from inference. Templates
are prepared before the clock starts: random unit vectors of the default
model's embedding size, ``--per-subject`` templates per (new) subject, box
and quality as enrolment stores them, no crops. Only database work is
timed: each batch's transaction, from taking the gallery write lock to its
commit, as ``facerec collections import-folder`` runs it. Every run writes
into a fresh database: a new SQLite file, or a database created (and
dropped afterwards) on the ``--postgres`` server.

Run from the repository root:
    .venv/bin/python bench/bulk_insert_bench.py --n 1000000 --runs 1
    .venv/bin/python bench/bulk_insert_bench.py --n 100000 \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from sqlalchemy import make_url
from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.db.bulk_faces import NewTemplate, add_faces_bulk
from app.db.collections import get_collection
from app.db.faces import add_face, count_faces
from app.db.models import DEFAULT_COLLECTION
from app.db.session import create_engine_for, make_session_factory, upgrade_database
from app.db.subjects import get_or_create_subject
from app.pipeline.manifest import load_manifest
from app.services.transactions import begin_gallery_write

QUALITY = {"det_score": 0.999, "face_size": 92.0, "sharpness": 120.0, "score": 0.8}


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    dim: int


def prepared_batch(model: Model, start: int, count: int, per_subject: int) -> list[NewTemplate]:
    """Templates ``start`` … ``start + count - 1``, the same on every run."""
    rng = np.random.default_rng(start)
    vectors = rng.standard_normal((count, model.dim), dtype=np.float32)  # (B, D)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        NewTemplate(
            subject_id=f"person-{(start + offset) // per_subject:08d}",
            embedding=vector,
            box=(40.0, 52.0, 132.0, 160.0),
            det_score=QUALITY["det_score"],
            quality=QUALITY["score"],
            image_sha256=hashlib.sha256(f"image-{start + offset}".encode()).hexdigest(),
            quality_json=dict(QUALITY),
        )
        for offset, vector in enumerate(vectors)
    ]


def write_bulk(session: Session, collection_id: int, model: Model, templates: list[NewTemplate]) -> int:
    return add_faces_bulk(
        session, collection_id, templates, model_name=model.name, model_version=model.version
    ).added


def write_one_by_one(session: Session, collection_id: int, model: Model, templates: list[NewTemplate]) -> int:
    added = 0
    for template in templates:
        subject, _ = get_or_create_subject(session, collection_id, template.subject_id)
        _, stored = add_face(
            session,
            subject,
            template.embedding,
            model_name=model.name,
            model_version=model.version,
            box=template.box,
            det_score=template.det_score,
            quality=template.quality,
            image_sha256=template.image_sha256,
            quality_json=template.quality_json,
        )
        added += stored
    return added


Writer = Callable[[Session, int, Model, list[NewTemplate]], int]
Databases = Callable[[], AbstractContextManager[str]]  # a fresh database's URL, for one run


@dataclass(frozen=True)
class Timing:
    seconds: float  # wall clock
    cpu_seconds: float  # of this process (SQLite's work included, a PostgreSQL server's not)


def timed_run(url: str, writer: Writer, model: Model, n: int, batch: int, per_subject: int) -> Timing:
    """Time of the database work to write ``n`` templates into the fresh database at ``url``."""
    upgrade_database(url)
    engine = create_engine_for(url)
    factory = make_session_factory(engine)
    seconds = cpu_seconds = 0.0
    try:
        with factory() as session:
            collection = get_collection(session, DEFAULT_COLLECTION)
            assert collection is not None, "the migration creates the default collection"
            collection_id = collection.id
        for start in range(0, n, batch):
            templates = prepared_batch(model, start, min(batch, n - start), per_subject)
            started, cpu_started = time.perf_counter(), time.process_time()
            with factory() as session:
                begin_gallery_write(session)
                added = writer(session, collection_id, model, templates)
                session.commit()
            seconds += time.perf_counter() - started
            cpu_seconds += time.process_time() - cpu_started
            assert added == len(templates)
        with factory() as session:
            stored = count_faces(session, collection_id)
        if stored != n:
            raise SystemExit(f"{stored} templates stored, {n} written")
    finally:
        engine.dispose()
    return Timing(seconds, cpu_seconds)


@contextmanager
def fresh_sqlite(workdir: Path | None) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bulk-bench-", dir=workdir) as folder:
        yield f"sqlite:///{Path(folder) / 'facerec.db'}"


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A new database on the server (created and dropped through ``server_url``'s database)."""
    server = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"facerec_bench_{uuid.uuid4().hex[:12]}"

    def admin() -> psycopg.Connection:
        return psycopg.connect(
            host=server.host,
            port=server.port or 5432,
            user=server.username,
            password=server.password,
            dbname=server.database,
            autocommit=True,
        )

    with admin() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(
    label: str,
    databases: Databases,
    writer: Writer,
    model: Model,
    n: int,
    args: argparse.Namespace,
) -> None:
    runs = []
    for _ in range(args.runs):
        with databases() as url:
            runs.append(timed_run(url, writer, model, n, args.batch, args.per_subject))
    median = statistics.median(run.seconds for run in runs)
    cpu = statistics.median(run.cpu_seconds for run in runs)
    print(
        f"{label:<28}{n:>11,}{args.runs:>6}{median:>11.2f}{n / median:>14,.0f}{cpu:>10.2f}"
        f"   runs: {', '.join(f'{run.seconds:.2f}' for run in runs)} s",
        flush=True,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="templates written by add_faces_bulk")
    parser.add_argument(
        "--one-by-one", type=int, default=5_000, help="templates written by add_face, one by one (0: none)"
    )
    parser.add_argument("--per-subject", type=int, default=10, help="templates per subject")
    parser.add_argument("--batch", type=int, default=1_000, help="templates per transaction")
    parser.add_argument("--runs", type=int, default=3, help="runs of each; the median is reported")
    parser.add_argument("--postgres", help="also a PostgreSQL server: each run creates and drops a database")
    parser.add_argument("--workdir", type=Path, help="where the SQLite files go (default: the temp folder)")
    args = parser.parse_args(argv)
    for name in ("n", "per_subject", "batch", "runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = Settings()
    manifest = load_manifest(settings.models_dir / settings.embedder, verify=False)
    if manifest.embedding_size is None:
        raise SystemExit(f"{manifest.name} declares no embedding size")
    model = Model(manifest.name, manifest.version, manifest.embedding_size)
    print(
        f"{model.name} ({model.dim} floats), {args.per_subject} templates per subject, "
        f"{args.batch} per transaction; seconds of database work, median of {args.runs}"
    )
    print(f"{'':<28}{'templates':>11}{'runs':>6}{'seconds':>11}{'templates/s':>14}{'cpu s':>10}")
    backends: list[tuple[str, Databases]] = [("sqlite", lambda: fresh_sqlite(args.workdir))]
    if args.postgres:
        backends.append(("postgresql", lambda: fresh_postgres(args.postgres)))
    for backend, databases in backends:
        measure(f"{backend} add_faces_bulk", databases, write_bulk, model, args.n, args)
        if args.one_by_one:
            measure(f"{backend} add_face", databases, write_one_by_one, model, args.one_by_one, args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
