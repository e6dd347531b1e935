"""The scale benchmark's gallery: templates from ``tools/scale_templates.py``, written into a fresh SQLite.

The templates (real LFW people first, then synthetic ones) are generated
once per size and seed into the work folder and reused while their
parameters match. The database is always written afresh, through
``add_faces_bulk`` as a bulk import does, and only that database work is
timed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from run_record import DEFAULT_LFW, REPO_ROOT
from scale_results import InsertResults

from app.core.arrays import FloatArray, IntArray
from app.core.settings import Settings
from app.db.bulk_faces import NewTemplate, add_faces_bulk
from app.db.collections import ensure_default_collection
from app.db.session import (
    begin_write,
    create_engine_for,
    database_url,
    make_session_factory,
    upgrade_database,
)
from app.pipeline.manifest import ModelManifest
from app.services.transactions import begin_gallery_write

TOOL = REPO_ROOT / "tools" / "scale_templates.py"
EMBEDDINGS = REPO_ROOT / "data" / "study" / "lfw-dlib-resnet-v1.npz"
QUALITY = {"det_score": 0.999, "face_size": 92.0, "sharpness": 120.0, "score": 0.8}
BOX = (40.0, 52.0, 132.0, 160.0)


@dataclass(frozen=True)
class Gallery:
    templates: FloatArray  # (N, D) raw embeddings, the real people's rows first
    real_people: list[str]  # LFW names of the first rows, one each
    mated: list[Path]  # LFW images of enrolled people, never in the gallery
    strangers: list[Path]  # LFW images of people not enrolled
    check: dict[str, Any]  # the tool's similarity quantiles
    parameters: dict[str, Any]  # the tool's parameters
    fitted_on: int

    @property
    def probes(self) -> list[Path]:
        return self.mated + self.strangers


def load_gallery(work_dir: Path, n: int, seed: int, probes: int, strangers: int, lfw: Path) -> Gallery:
    """The tool's templates for these parameters, generated first when the work folder lacks them."""
    out = work_dir / f"templates-{n}-seed{seed}.npy"
    wanted = {"n": n, "seed": seed, "probes": probes, "strangers": strangers}
    meta_file = out.with_suffix(".json")
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() and out.is_file() else None
    if meta is None or any(meta["parameters"].get(k) != v for k, v in wanted.items()):
        command = [sys.executable, str(TOOL), "--out", str(out), "--embeddings", str(EMBEDDINGS)]
        command += [f"--{k}={v}" for k, v in wanted.items()]
        print(f"generating templates: {' '.join(command[1:])}", file=sys.stderr)
        subprocess.run(command, check=True, cwd=REPO_ROOT)
        meta = json.loads(meta_file.read_text())
    return Gallery(
        templates=np.load(out, mmap_mode="r"),
        real_people=meta["real_people"],
        mated=[lfw / p for p in meta["mated_probes"]],
        strangers=[lfw / p for p in meta["strangers"]],
        check=meta["check"],
        parameters=meta["parameters"],
        fitted_on=meta["fitted_on"],
    )


def probe_vectors(paths: list[Path], lfw: Path = DEFAULT_LFW) -> FloatArray:
    """The (P, D) embeddings of these LFW images, as ``tools/embed_lfw.py`` computed them."""
    data = np.load(EMBEDDINGS)
    row_of = {str(p): i for i, p in enumerate(data["paths"])}
    rows = [row_of[path.relative_to(lfw).as_posix()] for path in paths]
    return np.asarray(data["vectors"][rows], dtype=np.float32)


def subject_name(row: int, real_people: list[str]) -> str:
    """The subject's external id: the LFW name for a real row, ``synthetic-0000001`` for the others."""
    return real_people[row] if row < len(real_people) else f"synthetic-{row - len(real_people) + 1:07d}"


def batch_of(templates: FloatArray, start: int, stop: int, real_people: list[str]) -> list[NewTemplate]:
    return [
        NewTemplate(
            subject_id=subject_name(row, real_people),
            embedding=np.asarray(templates[row], dtype=np.float32),
            box=BOX,
            det_score=QUALITY["det_score"],
            quality=QUALITY["score"],
            image_sha256=hashlib.sha256(f"scale-template-{row}".encode()).hexdigest(),
            quality_json=dict(QUALITY),
        )
        for row in range(start, stop)
    ]


@dataclass(frozen=True)
class Inserted:
    results: InsertResults
    collection_id: int
    face_ids: IntArray  # (N,) the face id of each template row


def insert_gallery(
    data_dir: Path, gallery: Gallery, model: ModelManifest, batch: int, rows: int | None = None
) -> Inserted:
    """A fresh SQLite in ``data_dir`` holding the first ``rows`` templates (default all), one subject each.

    Each batch is one transaction, from the gallery write lock to its
    commit; the time of those transactions is what is reported.
    """
    if data_dir.exists():
        shutil.rmtree(data_dir)
    url = database_url(Settings(data_dir=data_dir, database_url=None))
    upgrade_database(url)
    engine = create_engine_for(url)
    factory = make_session_factory(engine)
    total = len(gallery.templates) if rows is None else rows
    names = {name: name.replace("_", " ") for name in gallery.real_people}
    face_ids = np.empty(total, dtype=np.int64)
    seconds = cpu_seconds = 0.0
    try:
        with factory() as session:
            begin_write(session)
            collection_id = ensure_default_collection(session, model.name).id
            session.commit()
        for start in range(0, total, batch):
            stop = min(total, start + batch)
            templates = batch_of(gallery.templates, start, stop, gallery.real_people)
            began, cpu_began = time.perf_counter(), time.process_time()
            with factory() as session:
                begin_gallery_write(session)
                added = add_faces_bulk(
                    session,
                    collection_id,
                    templates,
                    model_name=model.name,
                    model_version=model.version,
                    subject_names=names,
                )
                session.commit()
            seconds += time.perf_counter() - began
            cpu_seconds += time.process_time() - cpu_began
            if added.added != len(templates):
                raise SystemExit(
                    f"{len(templates) - added.added} templates of rows {start}-{stop} not stored"
                )
            face_ids[start:stop] = [face_id for face_id in added.face_ids if face_id is not None]
    finally:
        engine.dispose()
    database = data_dir / "facerec.db"
    return Inserted(
        InsertResults(
            templates=total,
            batch=batch,
            seconds=seconds,
            cpu_seconds=cpu_seconds,
            database_bytes=database.stat().st_size,
        ),
        collection_id,
        face_ids,
    )
